#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_health
short_description: Wait until a Talos cluster reports healthy
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Runs C(talosctl health) in server mode against one node (the checks run on the node) and waits up to
    O(wait_timeout) seconds for etcd, apid, kubelet, the control plane static pods and the Kubernetes nodes.
  - With O(control_plane_nodes) and O(worker_nodes) the cluster must consist of exactly these nodes. Leave both
    empty once Karpenter adds workers, so Talos discovers the nodes itself (an explicit list then fails with
    C(unexpected nodes with IPs)).
  - A failure before the first check ran (the node's Talos API refused the connection, dropped it or ran into a
    deadline) is transient and retried with backoff (O(retries), O(retry_delay), O(retry_deadline)); once talosctl
    reports checks, the outcome is final (the wait itself is O(wait_timeout)).
  - Read-only; never reports a change.
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  node:
    description:
      - IP address of the control-plane node that runs the checks (also the endpoint).
    type: str
    required: true
  control_plane_nodes:
    description:
      - IP addresses of all control-plane nodes (C(--control-plane-nodes)). Empty means discovery.
    type: list
    elements: str
    default: []
  worker_nodes:
    description:
      - IP addresses of all worker nodes (C(--worker-nodes)). Empty means discovery.
    type: list
    elements: str
    default: []
  wait_timeout:
    description:
      - Seconds to wait for the cluster to become healthy (C(--wait-timeout)).
      - The talosctl process itself is given this plus 60 seconds (or O(timeout) if larger).
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    description: Read-only; the checks run in check mode too.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_bootstrap
notes:
  - With CNI C(none) the nodes stay NotReady until Cilium runs, so health cannot pass before Cilium is installed.
'''

EXAMPLES = r'''
- name: Wait for the cell to be healthy (static nodes only, before Karpenter)
  cellplatform.platform.talos_health:
    node: "{{ cellplatform_cell.talos_endpoints[0] }}"
    control_plane_nodes: "{{ groups['controlplane'] | map('extract', hostvars, 'cellplatform_node_ip') | list }}"
    worker_nodes: "{{ groups['workers'] | map('extract', hostvars, 'cellplatform_node_ip') | list }}"
    wait_timeout: 900
    talosconfig: "{{ cellplatform_work_dir }}/talosconfig"
  run_once: true

- name: Health with node discovery (Karpenter adds workers)
  cellplatform.platform.talos_health:
    node: 192.168.100.51
    talosconfig: /home/ops/.cache/cellplatform/cell/talosconfig
'''

RETURN = r'''
healthy:
  description: Whether all checks passed.
  returned: always
  type: bool
  sample: true
checks:
  description: The checks that talosctl reported as passed.
  returned: always
  type: list
  elements: str
  sample: ["etcd to be healthy", "all k8s nodes to report ready"]
discovery:
  description: Whether the node lists were left to discovery.
  returned: always
  type: bool
  sample: false
'''

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    PERMANENT_KINDS, TALOSCTL_COMMON_ARGS, TRANSIENT_KINDS, Talosctl, TalosctlError, redact)

_OK_RE = re.compile(r'^waiting for (.+?): OK\s*$')
_WAIT_RE = re.compile(r'^waiting for (.+?): (.+)$')


def reached_checks(out):
    """Whether talosctl health got as far as reporting a check (then its failure is not transient)."""
    return any(_WAIT_RE.match(line) for line in (out or '').splitlines())


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        node=dict(type='str', required=True),
        control_plane_nodes=dict(type='list', elements='str', default=[]),
        worker_nodes=dict(type='list', elements='str', default=[]),
        wait_timeout=dict(type='int', default=900),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if p['worker_nodes'] and not p['control_plane_nodes']:
        module.fail_json(msg="worker_nodes is set but control_plane_nodes is empty; give both lists, or neither "
                             "to let Talos discover the nodes")
    if not p['talosconfig']:
        module.fail_json(msg="talosconfig is required: health runs over mTLS; pass the cell's talosconfig")
    if p['wait_timeout'] <= 0:
        module.fail_json(msg="wait_timeout=%s must be a positive number of seconds" % p['wait_timeout'])
    talos = Talosctl(module)
    node = p['node']
    args = ['health', '--wait-timeout', '%ds' % p['wait_timeout']]
    if p['control_plane_nodes']:
        args += ['--control-plane-nodes', ','.join(p['control_plane_nodes'])]
    if p['worker_nodes']:
        args += ['--worker-nodes', ','.join(p['worker_nodes'])]
    result = dict(changed=False, healthy=False, checks=[], discovery=not p['control_plane_nodes'])
    try:
        rc, out, err = talos.run(args, nodes=[node], endpoints=[node], check=False,
                                 timeout=max(p['timeout'], p['wait_timeout'] + 60),
                                 retry_if=lambda rc, out, err: not reached_checks(out))
    except TalosctlError as e:
        result.update(e.to_result())
        module.fail_json(**result)
    result['checks'] = [m.group(1) for m in (_OK_RE.match(line) for line in out.splitlines()) if m]
    if rc == 0:
        result['healthy'] = True
        module.exit_json(**result)
    # reached: health printed at least one check line (every OK line is one too)
    pending = None
    reached = reached_checks(out)
    for line in out.splitlines():
        m = _WAIT_RE.match(line)
        if m and m.group(2).strip() not in ('OK', '...'):
            pending = '%s: %s' % (m.group(1), m.group(2).strip())
    e = talos.error(args, rc, out, err, nodes=[node], attempts=talos.last_attempts)
    detail = redact(err.strip().splitlines()[-1]) if err.strip() else ''
    hint = ''
    if 'unexpected nodes with IPs' in err + out:
        hint = ('; the cluster has nodes that are not in control_plane_nodes/worker_nodes (Karpenter workers?): '
                'leave both lists empty to use discovery')
    elif 'deadline exceeded' in (err + out).lower():
        hint = '; the cluster did not become healthy within wait_timeout=%ss' % p['wait_timeout']
    result.update(e.to_result())
    if e.kind in PERMANENT_KINDS or (e.kind in TRANSIENT_KINDS and not reached):
        module.fail_json(**result)
    result['msg'] = ('talosctl health on node %s failed%s%s: %s%s'
                     % (node, ' while waiting for ' + pending if pending else '',
                        ' after passing %d checks' % len(result['checks']) if result['checks'] else '',
                        detail or e.message, hint))
    module.fail_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
