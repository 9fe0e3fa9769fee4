#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: age_file
short_description: Encrypt a file to age recipients or decrypt an age file, idempotent by content
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - With O(state=encrypted), encrypts a plaintext file (O(src)) or a string (O(content)) into the
    age file O(dest). The file is only rewritten when its decrypted content differs (age ciphertext
    is random), so reruns report C(changed=false) and leave the file byte-identical.
  - With O(state=decrypted), decrypts the age file O(src) into the plaintext file O(dest) with mode
    C(0600); a parent directory created by the module gets mode C(0700). Use this for the run's
    private work directory (C(cellplatform_work_dir)), never for C(build/) or the repository.
  - An existing O(dest) that O(age_identity) cannot decrypt is an error with O(state=encrypted); it is
    never overwritten (fail closed).
  - The module never returns file content; diffs only say whether the content changes.
  - Runs on the controller (the machine that holds the age identity).
options:
  state:
    description:
      - C(encrypted) writes O(dest) as an age file; C(decrypted) writes O(dest) as plaintext.
    type: str
    choices: [encrypted, decrypted]
    default: encrypted
  src:
    description:
      - With O(state=encrypted), the plaintext file to encrypt (mutually exclusive with O(content)).
      - With O(state=decrypted), the age file to decrypt (required).
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
extends_documentation_fragment:
  - cellplatform.platform.age
attributes:
  check_mode:
    support: full
    description: Decrypts to compare but writes nothing; reports what would change.
  diff_mode:
    support: partial
    description: Reports that the (secret) content would change without showing it.
seealso:
  - plugin: cellplatform.platform.age_secret
    plugin_type: lookup
  - module: cellplatform.platform.talos_secrets
'''

EXAMPLES = r'''
- name: Encrypt the platform secrets the operator wrote by hand
  cellplatform.platform.age_file:
    state: encrypted
    src: "{{ cellplatform_work_dir }}/platform.yaml"
    dest: "{{ cellplatform_secrets_dir }}/platform.yaml.age"
    age_recipients: "{{ cellplatform_age_recipients }}"
    age_identity: "{{ cellplatform_age_identity }}"

- name: Decrypt the talosconfig for this run only (0600 file in a 0700 directory)
  cellplatform.platform.age_file:
    state: decrypted
    src: "{{ cellplatform_secrets_dir }}/talosconfig.age"
    dest: "{{ cellplatform_work_dir }}/talosconfig"
    age_identity: "{{ cellplatform_age_identity }}"

- name: Store a generated value without it ever touching disk in plaintext
  cellplatform.platform.age_file:
    content: "{{ generated_password }}"
    dest: "{{ cellplatform_secrets_dir }}/argocd-admin.age"
    age_recipients: "{{ cellplatform_age_recipients }}"
  no_log: true
'''

RETURN = r'''
dest:
  description: Absolute path of the file that was (or would be) written.
  returned: always
  type: str
  sample: /srv/cell/inventories/production/secrets/platform.yaml.age
state:
  description:
    - The file state of O(dest) (C(file) once it exists). Like M(ansible.builtin.copy), the result
      also carries O(dest)'s C(mode), C(owner), C(group) and C(size).
  returned: when O(dest) exists
  type: str
  sample: file
mode:
  description: The mode of O(dest) (C(0600) for decrypted plaintext).
  returned: when O(dest) exists
  type: str
  sample: "0600"
created:
  description: Whether O(dest) did not exist before.
  returned: always
  type: bool
  sample: false
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cellplatform.platform.plugins.module_utils import age_crypto


def _read(path, what):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        raise age_crypto.AgeError('cannot read %s %s: %s; check src' % (what, path, exc.strerror or exc))


def run(module):
    params = module.params
    state = params['state']
    dest = os.path.abspath(params['dest'])
    identity = params['age_identity']
    created = not os.path.exists(dest)
    result = dict(changed=False, dest=dest, created=created)

    if state == 'encrypted':
        if params['src'] is not None:
            plaintext = _read(params['src'], 'plaintext file')
            if age_crypto.is_age_data(plaintext):
                raise age_crypto.AgeError(
                    'src %s is already age-encrypted; state=encrypted expects a plaintext src (use '
                    'state=decrypted to decrypt it)' % params['src'])
        else:
            plaintext = params['content'].encode('utf-8')
        changed = age_crypto.write_if_changed(dest, plaintext, params['age_recipients'], identity,
                                              check_mode=module.check_mode)
    else:
        if params['src'] is None:
            module.fail_json(msg='src is required with state=decrypted: set src to the .age file to decrypt', **result)
        src = params['src']
        plaintext = age_crypto.decrypt_file(src, identity)
        changed = True
        if not created:
            changed = _read(dest, 'destination file') != plaintext or \
                (os.stat(dest).st_mode & 0o777) != 0o600
        if changed and not module.check_mode:
            age_crypto.atomic_write(dest, plaintext, mode=0o600)
    result['changed'] = changed
    if module._diff:
        result['diff'] = dict(
            before_header=dest, after_header=dest,
            before='' if created else '<%s content: not shown>\n' % state,
            after='<%s content: not shown%s>\n' % (state, ', changed' if changed else ''))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', default='encrypted', choices=['encrypted', 'decrypted']),
            src=dict(type='path'),
            content=dict(type='str', no_log=True),
            dest=dict(type='path', required=True),
            age_recipients=dict(type='list', elements='str', default=[]),
            age_identity=dict(type='path', default=age_crypto.DEFAULT_IDENTITY),
        ),
        mutually_exclusive=[('src', 'content')],
        required_if=[('state', 'encrypted', ('src', 'content'), True)],
        supports_check_mode=True,
    )
    if not age_crypto.HAS_PYRAGE:
        module.fail_json(msg=str(age_crypto.AgeError(
            "the Python library 'pyrage' is required on the controller: pip install 'pyrage>=1.2'")))
    if module.params['content'] is not None and module.params['state'] == 'decrypted':
        module.fail_json(msg='content is only valid with state=encrypted; use src for the .age file to decrypt')
    try:
        result = run(module)
    except age_crypto.AgeError as exc:
        module.fail_json(msg=str(exc), dest=module.params['dest'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
