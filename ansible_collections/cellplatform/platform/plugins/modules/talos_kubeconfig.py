#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_kubeconfig
short_description: Fetch the admin kubeconfig of a Talos cluster into a 0600 file
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Runs C(talosctl kubeconfig TMP --force) against one control-plane node, into a fresh private temporary file
    (so existing contexts are never renamed and no prompt can hang the run), then moves it to O(dest) with mode
    C(0600) when it differs.
  - Talos issues a new admin client certificate on every call. The existing O(dest) is kept (C(changed=false)) when
    it describes the same clusters, users and contexts and its client certificate is valid for more than
    O(renew_before_days) days; otherwise it is replaced.
  - The kubeconfig holds credentials and is never returned.
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  node:
    description:
      - IP address of a control-plane node (the first one, by convention); also used as the endpoint.
    type: str
    required: true
  dest:
    description:
      - Path of the kubeconfig file to write (mode C(0600); the directory must exist).
    type: path
    required: true
  context_name:
    description:
      - Context name to use instead of the Talos default C(admin@<cluster>) (C(--force-context-name)).
    type: str
  renew_before_days:
    description:
      - Replace O(dest) when its client certificate expires within this many days.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: The kubeconfig is fetched and compared (read-only for the cluster) but O(dest) is not written.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_bootstrap
notes:
  - The kubeconfig server is the cluster endpoint (the API VIP); it answers only after bootstrap.
'''

EXAMPLES = r'''
- name: Fetch the admin kubeconfig
  cellplatform.platform.talos_kubeconfig:
    node: "{{ cellplatform_cell.talos_endpoints[0] }}"
    dest: "{{ cellplatform_work_dir }}/kubeconfig"
    talosconfig: "{{ cellplatform_work_dir }}/talosconfig"
  run_once: true
  delegate_to: localhost
'''

RETURN = r'''
dest:
  description: Path of the kubeconfig file.
  returned: always
  type: str
  sample: /home/ops/.cache/cellplatform/cell/kubeconfig
servers:
  description: The API server URLs of the clusters in the kubeconfig.
  returned: always
  type: list
  elements: str
  sample: ["https://192.168.100.50:6443"]
current_context:
  description: The current context of the kubeconfig.
  returned: always
  type: str
  sample: admin@cell
reason:
  description: Why O(dest) was (or would be) written, or kept.
  returned: always
  type: str
  sample: identical
'''

import base64
import datetime
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

try:
    from cryptography import x509
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover
    HAS_CRYPTOGRAPHY = False

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError)

VOLATILE_USER_KEYS = ('client-certificate-data', 'client-key-data')


def identity(doc):
    """The kubeconfig without the per-call client credentials."""
    doc = dict(doc or {})
    users = []
    for u in doc.get('users') or []:
        u = dict(u)
        u['user'] = dict((k, v) for k, v in (u.get('user') or {}).items() if k not in VOLATILE_USER_KEYS)
        users.append(u)
    doc['users'] = users
    return doc


def cert_days_left(doc):
    """Smallest number of days any client certificate of *doc* is still valid; None if unknown."""
    if not HAS_CRYPTOGRAPHY:
        return None
    left = None
    for u in (doc or {}).get('users') or []:
        data = (u.get('user') or {}).get('client-certificate-data')
        if not data:
            continue
        try:
            cert = x509.load_pem_x509_certificate(base64.b64decode(data))
        except ValueError:
            return None
        end = getattr(cert, 'not_valid_after_utc', None) or cert.not_valid_after.replace(
            tzinfo=datetime.timezone.utc)
        days = (end - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400.0
        left = days if left is None else min(left, days)
    return left


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        node=dict(type='str', required=True),
        dest=dict(type='path', required=True),
        context_name=dict(type='str'),
        renew_before_days=dict(type='int', default=30),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_YAML:
        module.fail_json(msg='PyYAML is required on the controller')
    node = module.params['node']
    dest = module.params['dest']
    destdir = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(destdir):
        module.fail_json(msg="dest %s: directory %s does not exist; create it (mode 0700) first" % (dest, destdir))
    if not module.params['talosconfig']:
        module.fail_json(msg="talosconfig is required: kubeconfig is fetched over mTLS; pass the cell's talosconfig")
    talos = Talosctl(module)
    tmpdir = tempfile.mkdtemp(prefix='.talos-kubeconfig-', dir=destdir)
    try:
        fetched = os.path.join(tmpdir, 'kubeconfig')
        args = ['kubeconfig', fetched, '--force']
        if module.params['context_name']:
            args += ['--force-context-name', module.params['context_name']]
        talos.run(args, nodes=[node], endpoints=[node], retry_codes=('FailedPrecondition',))
        with open(fetched, 'rb') as f:
            new_bytes = f.read()
        new_doc = yaml.safe_load(new_bytes) or {}
        result = dict(changed=False, dest=dest, current_context=new_doc.get('current-context'),
                      servers=[(c.get('cluster') or {}).get('server') for c in new_doc.get('clusters') or []])
        reason = None
        if not os.path.exists(dest):
            reason = 'missing'
        else:
            with open(dest, 'rb') as f:
                old_bytes = f.read()
            try:
                old_doc = yaml.safe_load(old_bytes) or {}
            except yaml.YAMLError:
                old_doc = None
            if old_bytes == new_bytes:
                reason = None
            elif not isinstance(old_doc, dict) or identity(old_doc) != identity(new_doc):
                reason = 'different cluster, user or context'
            else:
                left = cert_days_left(old_doc)
                if left is None:
                    reason = 'client certificate unreadable'
                elif left < module.params['renew_before_days']:
                    reason = 'client certificate expires in %d days' % int(left)
            if reason is None and (os.stat(dest).st_mode & 0o777) != 0o600:
                reason = 'mode is not 0600'
                if not module.check_mode:
                    os.chmod(dest, 0o600)
                    result.update(changed=True, reason=reason)
                    module.exit_json(**result)
        result['reason'] = reason or 'identical'
        if reason is None:
            module.exit_json(**result)
        result['changed'] = True
        if not module.check_mode:
            os.chmod(fetched, 0o600)
            os.replace(fetched, dest)
        module.exit_json(**result)
    except TalosctlError as e:
        module.fail_json(**e.to_result())
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def main():
    run_module()


if __name__ == '__main__':
    main()
