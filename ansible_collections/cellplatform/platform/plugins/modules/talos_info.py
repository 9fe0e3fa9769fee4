#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_info
short_description: Report the state of Talos nodes
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Queries every given node (in parallel) and reports whether it is in maintenance mode, configured or unreachable,
    its boot stage, readiness, machine type and etcd membership.
  - Configured nodes are queried over mTLS with O(talosconfig); nodes in maintenance mode through the read-only
    maintenance API (C(get machinestatus --insecure)).
  - Never changes anything.
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  nodes:
    description:
      - IP addresses of the nodes to query.
    type: list
    elements: str
    required: true
  fail_on_unreachable:
    description:
      - Fail when a node cannot be reached instead of reporting it as V(unreachable).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same queries in check mode.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_apply
'''

EXAMPLES = r'''
- name: Find out which nodes still wait in maintenance mode
  cellplatform.platform.talos_info:
    nodes: "{{ cellplatform_cell.nodes | map(attribute='ip') | list }}"
    talosconfig: "{{ cellplatform_work_dir }}/talosconfig"
  register: talos_nodes

- name: Show them
  ansible.builtin.debug:
    msg: "{{ talos_nodes.maintenance }}"
'''

RETURN = r'''
nodes:
  description: Per node IP, what was found.
  returned: always
  type: dict
  sample:
    192.168.100.51:
      state: configured
      stage: running
      ready: true
      machine_type: controlplane
      etcd_member_id: 0f56d3d82142ea44
    192.168.100.61:
      state: maintenance
      stage: maintenance
      ready: false
      machine_type: null
      etcd_member_id: null
  contains:
    state:
      description: V(maintenance), V(configured) or V(unreachable).
      type: str
    stage:
      description: C(machinestatus) stage (C(maintenance), C(installing), C(running), C(rebooting), ...).
      type: str
    ready:
      description: C(machinestatus) C(status.ready).
      type: bool
    machine_type:
      description: C(controlplane) or C(worker) (configured nodes).
      type: str
    etcd_member_id:
      description: The etcd member ID when the node is an etcd member.
      type: str
    error:
      description: Why the node is unreachable.
      type: str
maintenance:
  description: IPs of the nodes in maintenance mode.
  returned: always
  type: list
  elements: str
  sample: [192.168.100.61]
configured:
  description: IPs of the configured nodes.
  returned: always
  type: list
  elements: str
  sample: [192.168.100.51]
unreachable:
  description: IPs of the nodes that did not answer.
  returned: always
  type: list
  elements: str
  sample: []
etcd_members:
  description: IPs of the nodes that are etcd members.
  returned: always
  type: list
  elements: str
  sample: [192.168.100.51]
'''

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError)


def describe(talos, ip):
    details = talos.node_details(ip)
    info = dict(state=details['state'], stage=details['stage'], ready=details['ready'], machine_type=None,
                etcd_member_id=None)
    if details.get('error'):
        info['error'] = details['error']
    if details['state'] != 'configured' or not talos.talosconfig:
        return info
    mtype = talos.get('machinetype', ip)
    if mtype:
        info['machine_type'] = mtype[0].get('spec')
    if info['machine_type'] == 'controlplane':
        members = talos.get('etcdmember', ip, namespace='etcd')
        if members:
            info['etcd_member_id'] = (members[0].get('spec') or {}).get('memberID')
    return info


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        nodes=dict(type='list', elements='str', required=True),
        fail_on_unreachable=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    nodes = module.params['nodes']
    if not nodes:
        module.fail_json(msg="nodes is empty; pass the IPs of the Talos nodes to query")
    talos = Talosctl(module)
    try:
        with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
            found = dict(zip(nodes, pool.map(lambda ip: describe(talos, ip), nodes)))
    except TalosctlError as e:
        module.fail_json(**e.to_result())
    result = dict(changed=False, nodes=found)
    for state in ('maintenance', 'configured', 'unreachable'):
        result[state] = [ip for ip in nodes if found[ip]['state'] == state]
    result['etcd_members'] = [ip for ip in nodes if found[ip]['etcd_member_id']]
    if module.params['fail_on_unreachable'] and result['unreachable']:
        module.fail_json(msg="Talos nodes %s are unreachable on port 50000; check that they are powered on and have "
                             "their addresses" % ', '.join(result['unreachable']), **result)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
