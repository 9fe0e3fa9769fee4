#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_upgrade_k8s
short_description: Upgrade Kubernetes of a Talos cluster - a dry run first, the upgrade only when it changes something
version_added: 0.2.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - "Runs C(talosctl upgrade-k8s --to O(to) --dry-run) against one control plane. talosctl detects the lowest
    Kubernetes version of the control plane, checks the upgrade path (the same minor or the next) and that every
    node's Talos supports O(to), and prints one C(> update <component>: <old> -> <new>) line for everything it would
    change."
  - When the dry run lists nothing to update, the cluster already runs O(to) - C(changed=false), nothing else runs.
  - Otherwise (and not in check mode) runs C(talosctl upgrade-k8s --to O(to)) - the static pods of the control
    planes, then the kubelet of every node, then the bootstrap manifests - and returns the plan of the dry run.
    Gate the cluster afterwards (nodes Ready, etcd healthy, Talos health).
  - A failure of the dry run (unsupported path, a Talos version that does not support O(to)) is reported before
    anything changed, with talosctl's reason.
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  node:
    description: IP of the control plane talosctl talks to (C(-n)/C(-e)); all nodes are upgraded.
    type: str
    required: true
  to:
    description: Target Kubernetes version, C(MAJOR.MINOR.PATCH) without C(v).
    type: str
    required: true
  upgrade_timeout:
    description: Seconds the whole upgrade (pre-pull, static pods, kubelets, manifests) may take.
    type: int
    default: 1800
attributes:
  check_mode:
    support: full
    description: The dry run runs (it changes nothing); the upgrade is only reported.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_upgrade
notes:
  - C(upgrade-k8s) re-applies the Talos bootstrap manifests; Cilium is a Helm release here (not an inline manifest), so
    it is not touched (brief pitfall 19).
'''

EXAMPLES = r'''
- name: Upgrade Kubernetes to the inventory's version (dry run first)
  cellplatform.platform.talos_upgrade_k8s:
    node: "{{ cellplatform_cell.talos_endpoints[0] }}"
    to: "{{ cellplatform_cell.talos.kubernetes_version }}"
    talosconfig: "{{ cellplatform_cell.work_dir }}/talosconfig"
'''

RETURN = r'''
upgraded:
  description: Whether the upgrade ran (or would, in check mode).
  returned: always
  type: bool
  sample: true
version_before:
  description: The lowest Kubernetes version talosctl detected on the control plane (null when it did not say).
  returned: always
  type: str
  sample: 1.36.3
plan:
  description: The updates of the dry run, one per component and node (C(kube-apiserver 1.36.3 -> 1.36.4)).
  returned: always
  type: list
  elements: str
  sample: ["kube-apiserver: 1.36.3 -> 1.36.4", "kubelet: 1.36.3 -> 1.36.4"]
output:
  description: The lines talosctl printed during the upgrade (redacted).
  returned: when the upgrade ran
  type: list
  elements: str
'''

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError)

_UPDATE_RE = re.compile(r'^\s*> update (?P<what>\S+): (?P<old>\S+) -> (?P<new>\S+)\s*$')
_DETECTED_RE = re.compile(r'automatically detected the lowest Kubernetes version (?P<version>\S+)')
_VERSION_RE = re.compile(r'^\d+\.\d+\.\d+$')


def parse_plan(out):
    """(detected version, ["component: old -> new"]) of an ``upgrade-k8s --dry-run`` log."""
    detected = _DETECTED_RE.search(out or '')
    plan = []
    for line in (out or '').splitlines():
        m = _UPDATE_RE.match(line)
        if m:
            plan.append('%s: %s -> %s' % (m.group('what'), m.group('old'), m.group('new')))
    return (detected.group('version') if detected else None), plan


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        node=dict(type='str', required=True),
        to=dict(type='str', required=True),
        upgrade_timeout=dict(type='int', default=1800),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if not p['talosconfig']:
        module.fail_json(msg="talosconfig is required: upgrade-k8s runs over mTLS; pass the cell's talosconfig")
    to = p['to'].strip()
    if not _VERSION_RE.match(to):
        module.fail_json(msg="to=%s is not a Kubernetes version; use MAJOR.MINOR.PATCH without v, e.g. 1.36.4" % to)
    node = p['node']
    talos = Talosctl(module)
    result = dict(changed=False, upgraded=False, version_before=None, plan=[])
    try:
        rc, out, err = talos.run(['upgrade-k8s', '--to', to, '--dry-run'], nodes=[node], endpoints=[node],
                                 timeout=max(p['timeout'], 600))
        result['version_before'], result['plan'] = parse_plan(out)
        if not result['plan']:
            module.exit_json(**result)
        result.update(changed=True, upgraded=True)
        if module.check_mode:
            module.exit_json(**result)
        # upgrade-k8s skips what is already done, so a transient failure may be retried (the run policy)
        rc, out, err = talos.run(['upgrade-k8s', '--to', to], nodes=[node], endpoints=[node],
                                 timeout=max(p['timeout'], p['upgrade_timeout']))
        result['output'] = [line for line in out.splitlines() if line.strip()]
        module.exit_json(**result)
    except TalosctlError as e:
        result.update(e.to_result())
        module.fail_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
