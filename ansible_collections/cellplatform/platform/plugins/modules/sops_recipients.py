#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: sops_recipients
short_description: Keep every SOPS file of a cell encrypted to exactly its age recipients
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Writes the C(.sops.yaml) creation rules of a secrets directory from O(age_recipients), so an operator
    can C(sops edit) (and create) the cell's secrets there.
  - Re-encrypts every SOPS file under O(paths) whose recipient set differs from O(age_recipients), with a
    new data key (C(sops rotate --add-age/--rm-age)). Any change of the I(set) counts, including replacing
    one recipient by another; afterwards every file opens with the new keys and none with a removed key.
    The decrypted content never changes (nothing is regenerated) and nothing is decrypted to disk.
  - With O(migrate), turns the legacy age files (C(*.age), written before the cell's secrets became SOPS
    files) under O(paths) into SOPS files once (C(talos-secrets.yaml.age) -> C(talos-secrets.sops.yaml),
    C(talosconfig.age) -> C(talosconfig.sops.yaml), C(linkerd-issuer.key.age) -> C(linkerd-issuer.key.sops));
    an age file is removed only after its SOPS file was read back with the same content.
  - Re-keying and migrating need O(age_identity) to hold a key that opens the files as they are.
  - Files that are neither SOPS nor legacy age files (a README) are left alone; so are dot files.
options:
  paths:
    description:
      - Directories (walked) and files holding the cell's SOPS files; missing ones are skipped.
    type: list
    elements: path
    required: true
  config:
    description:
      - Path of the C(.sops.yaml) to write (one creation rule for C(*.sops.yaml) and C(*.sops) files with
        O(age_recipients)). Omit it to write none.
    type: path
  migrate:
    description: Turn legacy C(*.age) files into SOPS files.
    type: bool
    default: true
extends_documentation_fragment:
  - cellplatform.platform.sops
attributes:
  check_mode:
    support: full
    description: Reports what would be written, migrated and re-keyed; writes nothing.
  diff_mode:
    support: full
    description: The C(.sops.yaml) text before and after (public keys only) and the files that would change.
seealso:
  - module: cellplatform.platform.sops_file
  - plugin: community.sops.sops
    plugin_type: lookup
'''

EXAMPLES = r'''
- name: Keep the cell's secrets encrypted to the inventory's recipients (migrates .age files once)
  cellplatform.platform.sops_recipients:
    paths:
      - "{{ cellplatform_cell.secrets_dir }}"
      - "{{ cellplatform_cell.build_dir }}/talos/machineconfigs"
    config: "{{ cellplatform_cell.secrets_dir }}/.sops.yaml"
    age_recipients: "{{ cellplatform_cell.age.recipients }}"
    age_identity: "{{ cellplatform_cell.age.identity }}"
'''

RETURN = r'''
config_changed:
  description: Whether O(config) was (or would be) written.
  returned: always
  type: bool
  sample: false
migrated:
  description: Legacy age files turned into SOPS files (C(from), C(to)).
  returned: always
  type: list
  elements: dict
  sample: [{"from": "/srv/cell/inventories/prod/secrets/kubeconfig.age", "to": "/srv/cell/inventories/prod/secrets/kubeconfig.sops.yaml"}]
rekeyed:
  description: SOPS files re-encrypted to O(age_recipients) (C(path), and the recipients C(before) and C(after)).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/srv/cell/inventories/prod/secrets/platform.sops.yaml", "before": ["age1old..."], "after": ["age1new..."]}]
files:
  description: Every SOPS file found under O(paths) (after migration).
  returned: always
  type: list
  elements: str
  sample: ["/srv/cell/inventories/prod/secrets/platform.sops.yaml"]
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cellplatform.platform.plugins.module_utils import cell_secrets
from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import atomic_write
from ansible_collections.cellplatform.platform.plugins.module_utils.sops import (
    SOPS_COMMON_ARGS, Sops, SopsError, check_recipients, creation_rules)

CONFIG_HEADER = ('Written by cellplatform.platform.sops_recipients from cellplatform_age_recipients: edit the\n'
                 'inventory, not this file. sops finds it from the current directory, so run sops here\n'
                 '(cd into this directory) to create a secret: sops edit <name>.sops.yaml')


def main():
    module = AnsibleModule(
        argument_spec=dict(
            SOPS_COMMON_ARGS,
            paths=dict(type='list', elements='path', required=True),
            config=dict(type='path'),
            migrate=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, config_changed=False, migrated=[], rekeyed=[], files=[])
    try:
        recipients = sorted(set(check_recipients(params['age_recipients'])))
        diffs = []
        if params['config']:
            path = os.path.abspath(params['config'])
            text = creation_rules([dict(path_regex=cell_secrets.SECRETS_PATH_REGEX, recipients=recipients)],
                                  header=CONFIG_HEADER)
            before = None
            if os.path.exists(path):
                with open(path, 'r') as handle:
                    before = handle.read()
            if before != text:
                result['config_changed'] = True
                diffs.append(dict(before_header=path, after_header=path, before=before or '', after=text))
                if not module.check_mode:
                    atomic_write(path, text.encode('utf-8'), mode=0o644)
        sops = Sops(params['age_identity'], binary=params['sops_binary'])
        result.update(cell_secrets.sync(sops, params['paths'], recipients, migrate=params['migrate'],
                                        check_mode=module.check_mode))
    except SopsError as exc:
        module.fail_json(msg=str(exc), **result)
    for entry in result['migrated']:
        diffs.append(dict(before_header=entry['from'], after_header=entry['to'],
                          before='<age file>\n', after='<SOPS file, same content>\n'))
    for entry in result['rekeyed']:
        diffs.append(dict(before_header=entry['path'], after_header=entry['path'],
                          before='recipients: %s\n' % ', '.join(entry['before']),
                          after='recipients: %s\n' % ', '.join(entry['after'])))
    result['changed'] = bool(result['config_changed'] or result['migrated'] or result['rekeyed'])
    if module._diff and diffs:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
