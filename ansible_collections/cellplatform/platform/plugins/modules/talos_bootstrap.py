#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_bootstrap
short_description: Bootstrap etcd on the first Talos control-plane node, exactly once
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Runs C(talosctl bootstrap) on O(bootstrap_node), the first control-plane node of the cell, only when no
    control-plane node is an etcd member yet.
  - Before bootstrapping it asks B(every) control-plane node in O(nodes) for its etcd members (C(etcd members) over
    mTLS). If any node reports members, the cluster exists and nothing is done. A node that is still in maintenance
    mode counts as "not a member". A node that cannot be asked (unreachable, wrong CA) stops the task, because bootstrapping
    without knowing could create a second etcd cluster.
  - C(AlreadyExists) (C(etcd data directory is not empty)) is success without change. C(FailedPrecondition)
    (C(bootstrap is not available yet), C(time is not in sync yet)) is retried with backoff (O(retries),
    O(retry_delay)).
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  nodes:
    description:
      - IP addresses of all control-plane nodes of the cell.
    type: list
    elements: str
    required: true
  bootstrap_node:
    description:
      - IP address of the control-plane node to bootstrap, always the first control-plane node of the inventory.
      - Must be one of O(nodes).
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: The etcd membership checks run (they are read-only); the bootstrap itself is only reported.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_apply
  - module: cellplatform.platform.talos_health
notes:
  - Requires O(talosconfig); the nodes must already have their configuration (M(cellplatform.platform.talos_apply)).
'''

EXAMPLES = r'''
- name: Bootstrap etcd once, on the first control plane
  cellplatform.platform.talos_bootstrap:
    nodes: "{{ groups['controlplane'] | map('extract', hostvars, 'cellplatform_node_ip') | list }}"
    bootstrap_node: "{{ hostvars[groups['controlplane'][0]].cellplatform_node_ip }}"
    talosconfig: "{{ cellplatform_work_dir }}/talosconfig"
  run_once: true
  delegate_to: localhost
'''

RETURN = r'''
bootstrapped:
  description: Whether this task ran a successful C(talosctl bootstrap).
  returned: always
  type: bool
  sample: true
already_bootstrapped:
  description: Whether the cluster was found bootstrapped (etcd members present, or C(AlreadyExists)).
  returned: always
  type: bool
  sample: false
etcd_members:
  description: Per control-plane node IP, the etcd member IDs it reported (empty when it is not a member).
  returned: always
  type: dict
  sample: {192.168.100.51: ["0f56d3d82142ea44"], 192.168.100.52: [], 192.168.100.53: []}
node_states:
  description: Per control-plane node IP, V(configured) or V(maintenance).
  returned: always
  type: dict
  sample: {192.168.100.51: configured}
bootstrap_node:
  description: The node that was (or would be) bootstrapped.
  returned: always
  type: str
  sample: 192.168.100.51
'''

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError, classify)


def parse_members(out):
    """Member IDs from the ``etcd members`` table (NODE ID HOSTNAME PEER-URLS CLIENT-URLS LEARNER)."""
    ids = []
    for line in (out or '').splitlines():
        cols = line.split()
        if len(cols) >= 2 and cols[0] != 'NODE':
            ids.append(cols[1])
    return ids


def membership(talos, ip):
    """Return (state, member_ids) for control-plane node *ip*; raises TalosctlError when unknown."""
    rc, out, err = talos.run(['etcd', 'members'], nodes=[ip], endpoints=[ip], check=False, retries=0)
    if rc == 0:
        return 'configured', parse_members(out)
    kind = classify(err)
    if kind == 'unreachable':
        e = talos.error(['etcd', 'members'], rc, out, err, nodes=[ip])
        e.message = ("cannot tell whether control-plane node %s is already an etcd member: %s; refusing to "
                     "bootstrap, which could create a second etcd cluster. Bring the node back and rerun"
                     % (ip, e.message))
        raise e
    if kind in ('x509', 'tls_required', 'no_endpoints'):
        state = talos.node_state(ip)  # raises the x509 error unless the node is in maintenance mode
        if state == 'maintenance':
            return 'maintenance', []
        if state == 'unreachable':
            raise TalosctlError("cannot tell whether control-plane node %s is already an etcd member: unreachable; "
                                "refusing to bootstrap" % ip, code='Unavailable', node=ip)
        raise talos.error(['etcd', 'members'], rc, out, err, nodes=[ip])
    if 'rpc error' in err:
        # configured node whose etcd does not run: not a member (yet)
        return 'configured', []
    raise talos.error(['etcd', 'members'], rc, out, err, nodes=[ip])


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        nodes=dict(type='list', elements='str', required=True),
        bootstrap_node=dict(type='str', required=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    nodes = module.params['nodes']
    first = module.params['bootstrap_node']
    if first not in nodes:
        module.fail_json(msg="bootstrap_node %s is not one of the control-plane nodes %s; set it to the first "
                             "control-plane node of the inventory" % (first, ', '.join(nodes)))
    if not module.params['talosconfig']:
        module.fail_json(msg="talosconfig is required: bootstrap and the etcd checks use mTLS; pass the cell's "
                             "decrypted talosconfig")
    talos = Talosctl(module)
    result = dict(changed=False, bootstrapped=False, already_bootstrapped=False, bootstrap_node=first,
                  etcd_members={}, node_states={})
    try:
        with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
            found = dict(zip(nodes, pool.map(lambda ip: membership(talos, ip), nodes)))
        result['node_states'] = dict((ip, v[0]) for ip, v in found.items())
        result['etcd_members'] = dict((ip, v[1]) for ip, v in found.items())
        members = [ip for ip in nodes if found[ip][1]]
        if members:
            result['already_bootstrapped'] = True
            if first not in members:
                module.warn("etcd already runs (control-plane nodes %s report members) but the designated bootstrap "
                            "node %s is not a member; not bootstrapping (that would create a second etcd cluster). "
                            "Check %s: it joins the existing cluster once it is configured and running"
                            % (', '.join(members), first, first))
            module.exit_json(**result)
        if found[first][0] == 'maintenance':
            module.fail_json(msg="bootstrap_node %s is still in maintenance mode; apply its configuration "
                                 "(cellplatform.platform.talos_apply) before bootstrapping" % first, **result)
        result['changed'] = True
        if module.check_mode:
            module.exit_json(**result)
        rc, out, err = talos.run(['bootstrap'], nodes=[first], endpoints=[first], check=False,
                                 retry_codes=('FailedPrecondition',))
        if rc != 0:
            e = talos.error(['bootstrap'], rc, out, err, nodes=[first], attempts=talos.last_attempts)
            if e.code == 'AlreadyExists':
                result.update(changed=False, already_bootstrapped=True)
                module.exit_json(**result)
            raise e
        result['bootstrapped'] = True
        module.exit_json(**result)
    except TalosctlError as e:
        result.update(e.to_result())
        result['changed'] = False
        module.fail_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
