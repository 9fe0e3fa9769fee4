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
  - Talos issues a new admin client certificate (and key) on every call, so two fetches never have the same bytes.
    The existing O(dest) is therefore kept (C(changed=false)) when it is equivalent to the fetched one in everything
    but the per-call credentials - the same clusters (name, server, CA data), contexts (cluster, user, namespace),
    users (names and every field except C(client-certificate-data)/C(client-key-data), which must be present) and
    current context - and replaced otherwise. Replacing it on every run would report a change on every run and
    rotate the admin credential of everyone using the file.
  - Certificates are compared as opaque data, never parsed as X.509, so nothing depends on a crypto library or on
    the certificate format. To renew the stored admin credential (Talos issues it for one year), set O(renew) (the
    C(renew-credentials.yml) playbook does) - the fetched kubeconfig replaces O(dest) even when it is equivalent. The
    control plane signs it with the cluster's Kubernetes CA; that CA is not touched.
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
  renew:
    description:
      - Replace O(dest) with the freshly issued kubeconfig even when it is equivalent (an explicit renewal of the admin
        client certificate); every run with it reports a change.
    type: bool
    default: false
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
  - C(Unavailable), C(DeadlineExceeded), connection refused/reset and C(FailedPrecondition) are retried with backoff
    (O(retries), O(retry_delay), O(retry_deadline)).
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
  description:
    - Why O(dest) was (or would be) written, or kept - V(missing), V(different cluster, user or context),
      V(mode is not 0600), V(renewed) (O(renew)), V(identical) (same bytes) or V(equivalent) (only the per-call client
      credentials differ).
  returned: always
  type: str
  sample: equivalent
'''

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError)

# Issued anew by Talos on every `talosctl kubeconfig`: compared only for being present.
VOLATILE_USER_KEYS = ('client-certificate-data', 'client-key-data')


def _by_name(entries, field):
    """{name: entry[field]} of a kubeconfig list (clusters, contexts, users)."""
    out = {}
    for entry in entries or []:
        if isinstance(entry, dict):
            out[entry.get('name')] = entry.get(field) or {}
    return out


def essence(doc):
    """What a kubeconfig says, without the per-call client credentials (their presence is kept)."""
    doc = doc if isinstance(doc, dict) else {}
    users = {}
    for name, user in _by_name(doc.get('users'), 'user').items():
        user = dict(user) if isinstance(user, dict) else {}
        kept = dict((k, v) for k, v in user.items() if k not in VOLATILE_USER_KEYS)
        kept['credentials present'] = sorted(k for k in VOLATILE_USER_KEYS if user.get(k))
        users[name] = kept
    return dict(clusters=_by_name(doc.get('clusters'), 'cluster'), contexts=_by_name(doc.get('contexts'), 'context'),
                users=users, current_context=doc.get('current-context'))


def equivalent(old_doc, new_doc):
    """True when the stored kubeconfig *old_doc* may stay although *new_doc* was just fetched."""
    old, new = essence(old_doc), essence(new_doc)
    return old == new and all(u['credentials present'] == list(VOLATILE_USER_KEYS) for u in old['users'].values())


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        node=dict(type='str', required=True),
        dest=dict(type='path', required=True),
        context_name=dict(type='str'),
        renew=dict(type='bool', default=False),
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
        reason = kept = None
        if not os.path.exists(dest):
            reason = 'missing'
        else:
            with open(dest, 'rb') as f:
                old_bytes = f.read()
            try:
                old_doc = yaml.safe_load(old_bytes) or {}
            except yaml.YAMLError:
                old_doc = None
            kept = 'identical' if old_bytes == new_bytes else None
            if kept is None and isinstance(old_doc, dict) and equivalent(old_doc, new_doc):
                kept = 'equivalent'
            if module.params['renew'] and kept != 'identical':
                kept, reason = None, 'renewed'
            elif kept is None:
                reason = 'different cluster, user or context'
            if reason is None and (os.stat(dest).st_mode & 0o777) != 0o600:
                reason = 'mode is not 0600'
                if not module.check_mode:
                    os.chmod(dest, 0o600)
                    result.update(changed=True, reason=reason)
                    module.exit_json(**result)
        result['reason'] = reason or kept
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
