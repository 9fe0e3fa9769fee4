#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: sops_file
short_description: Store a file as a SOPS file with age recipients, or decrypt one into a private file
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - With O(state=encrypted), encrypts a plaintext file (O(src)) or a string (O(content)) into the SOPS
    file O(dest) (C(*.yaml) is stored as SOPS YAML, anything else as a SOPS binary file). The file is only
    rewritten when its decrypted content, its recipient set or its O(encrypted_regex) differs, so reruns
    report C(changed=false) and leave it byte-identical, and a change of O(age_recipients) re-encrypts it.
  - With O(state=decrypted), decrypts the SOPS file O(src) into the plaintext file O(dest) with mode
    C(0600); a parent directory created by the module gets mode C(0700). Use it for the run's private
    work directory (C(cellplatform_cell.work_dir)), never for C(build/) or the repository.
  - An existing O(dest) that O(age_identity) cannot decrypt is an error with O(state=encrypted); it is
    never overwritten (fail closed).
  - The module never returns file content; diffs only say whether the content changes.
  - To read single values in a task, use the C(community.sops.sops) lookup instead.
options:
  state:
    description:
      - C(encrypted) writes O(dest) as a SOPS file; C(decrypted) writes O(dest) as plaintext.
    type: str
    choices: [encrypted, decrypted]
    default: encrypted
  src:
    description:
      - With O(state=encrypted), the plaintext file to encrypt (mutually exclusive with O(content)).
      - With O(state=decrypted), the SOPS file to decrypt (required).
    type: path
  content:
    description:
      - With O(state=encrypted), the plaintext to encrypt instead of O(src). Never logged.
    type: str
  dest:
    description:
      - The file to write (C(0600), written atomically).
    type: path
    required: true
  encrypted_regex:
    description:
      - With O(state=encrypted), only keys matching this regular expression are encrypted (C(^(data|stringData)$)
        for Kubernetes Secret manifests). Default is every value.
    type: str
extends_documentation_fragment:
  - cellplatform.platform.sops
attributes:
  check_mode:
    support: full
    description: Decrypts to compare but writes nothing; reports what would change.
  diff_mode:
    support: partial
    description: Reports that the (secret) content would change, and why, without showing it.
seealso:
  - plugin: community.sops.sops
    plugin_type: lookup
  - module: cellplatform.platform.sops_recipients
  - module: cellplatform.platform.talos_secrets
'''

EXAMPLES = r'''
- name: Store the kubeconfig encrypted next to the other cell secrets
  cellplatform.platform.sops_file:
    state: encrypted
    src: "{{ cellplatform_cell.kubeconfig.path }}"
    dest: "{{ cellplatform_cell.secrets_dir }}/kubeconfig.sops.yaml"
    age_recipients: "{{ cellplatform_cell.age.recipients }}"
    age_identity: "{{ cellplatform_cell.age.identity }}"

- name: Decrypt the talosconfig for this run only (0600 file in a 0700 directory)
  cellplatform.platform.sops_file:
    state: decrypted
    src: "{{ cellplatform_cell.secrets_dir }}/talosconfig.sops.yaml"
    dest: "{{ cellplatform_cell.work_dir }}/talosconfig"
    age_identity: "{{ cellplatform_cell.age.identity }}"

- name: Store a generated value without it ever touching disk in plaintext
  cellplatform.platform.sops_file:
    content: "{{ generated_password }}"
    dest: "{{ cellplatform_cell.secrets_dir }}/grafana-admin.sops"
    age_recipients: "{{ cellplatform_cell.age.recipients }}"
  no_log: true
'''

RETURN = r'''
dest:
  description: Absolute path of the file that was (or would be) written.
  returned: always
  type: str
  sample: /srv/cell/inventories/production/secrets/kubeconfig.sops.yaml
created:
  description: Whether O(dest) did not exist before.
  returned: always
  type: bool
  sample: false
reason:
  description:
    - Why O(dest) was (or would be) written - V(missing), V(content), V(recipients) (the recipient set
      changed), V(settings) (another O(encrypted_regex)) or V(mode) - or null when it was up to date.
  returned: always
  type: str
  sample: recipients
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import atomic_write
from ansible_collections.cellplatform.platform.plugins.module_utils.sops import (
    SOPS_COMMON_ARGS, Sops, SopsError, file_format, recipients_of)


def _read(path, what):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        raise SopsError('cannot read %s %s: %s; check src' % (what, path, exc.strerror or exc), path)


def run(module):
    params = module.params
    dest = os.path.abspath(params['dest'])
    created = not os.path.exists(dest)
    result = dict(changed=False, dest=dest, created=created, reason=None)
    sops = Sops(params['age_identity'], binary=params['sops_binary'])
    if params['state'] == 'encrypted':
        if params['src'] is not None:
            plaintext = _read(params['src'], 'plaintext file')
            if recipients_of(plaintext, file_format(params['src'])) is not None:
                raise SopsError('src %s is already a SOPS file; state=encrypted expects a plaintext src (use '
                                'state=decrypted to decrypt it)' % params['src'], params['src'])
        else:
            plaintext = params['content'].encode('utf-8')
        reason, _before = sops.write_if_changed(dest, plaintext, params['age_recipients'],
                                                encrypted_regex=params['encrypted_regex'],
                                                check_mode=module.check_mode)
    else:
        plaintext = sops.decrypt_file(params['src'])
        reason = 'missing' if created else None
        if not created:
            if _read(dest, 'destination file') != plaintext:
                reason = 'content'
            elif (os.stat(dest).st_mode & 0o777) != 0o600:
                reason = 'mode'
        if reason and not module.check_mode:
            atomic_write(dest, plaintext, mode=0o600)
    result.update(changed=bool(reason), reason=reason)
    if module._diff:
        state = params['state']
        result['diff'] = dict(
            before_header=dest, after_header=dest,
            before='' if created else '<%s content: not shown>\n' % state,
            after='<%s content: not shown%s>\n' % (state, (', %s changed' % reason) if reason else ''))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            SOPS_COMMON_ARGS,
            state=dict(type='str', default='encrypted', choices=['encrypted', 'decrypted']),
            src=dict(type='path'),
            content=dict(type='str', no_log=True),
            dest=dict(type='path', required=True),
            encrypted_regex=dict(type='str'),
        ),
        mutually_exclusive=[('src', 'content')],
        required_if=[('state', 'encrypted', ('src', 'content'), True)],
        supports_check_mode=True,
    )
    if module.params['state'] == 'decrypted':
        if module.params['content'] is not None:
            module.fail_json(msg='content is only valid with state=encrypted; use src for the SOPS file to decrypt')
        if module.params['src'] is None:
            module.fail_json(msg='src is required with state=decrypted: set src to the SOPS file to decrypt')
    try:
        result = run(module)
    except SopsError as exc:
        module.fail_json(msg=str(exc), dest=module.params['dest'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
