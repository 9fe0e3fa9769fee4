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
  - Queries every given node at the same time and reports whether it is in maintenance mode, configured or
    unreachable, its boot stage and readiness and, with O(detail=full), its machine type and etcd membership.
  - Configured nodes are queried over mTLS with O(talosconfig); nodes in maintenance mode through the read-only
    maintenance API (C(get machinestatus --insecure)).
  - Every question is a probe bounded by O(probe_timeout) (a transient refusal is retried at most twice within that
    time), so a cell with unreachable nodes is answered within seconds. A node is V(unreachable) when its Talos API
    (port 50000) refuses the connection, the dial times out or it gives no answer within O(probe_timeout).
  - With O(fail_on_unreachable) it is the reachability check before a change, with one failure that names every
    unreachable node and why it did not answer.
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
      - Fail, with one message naming every unreachable node, when any node cannot be reached instead of reporting
        it as V(unreachable).
    type: bool
    default: false
  detail:
    description:
      - V(state) asks only what a node is (maintenance, configured or unreachable; stage and readiness) - one or two
        calls per node, the reachability check.
      - V(full) also asks configured nodes for their machine type and control planes for their etcd member ID.
      - V(versions) also asks configured nodes what they run - the Talos version (C(talosctl version), the
        C(Tag) of the server part), the Image Factory schematic (the C(schematic) pseudo-extension of
        C(get extensions)) and the Kubernetes version of the kubelet (the image tag of C(get kubeletspecs kubelet)) -
        what a rolling upgrade plans from.
    type: str
    choices: [state, full, versions]
    default: full
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

- name: Fail fast, with one message, when any node's Talos API does not answer
  cellplatform.platform.talos_info:
    nodes: "{{ cellplatform_cell.nodes | map(attribute='ip') | list }}"
    talosconfig: "{{ cellplatform_work_dir }}/talosconfig"
    detail: state
    probe_timeout: 10
    fail_on_unreachable: true
  run_once: true
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
      description: C(controlplane) or C(worker) (configured nodes, O(detail=full)).
      type: str
    etcd_member_id:
      description: The etcd member ID when the node is an etcd member (O(detail=full)).
      type: str
    talos_version:
      description: The Talos version the node runs, for example C(v1.13.9) (O(detail=versions), configured nodes).
      type: str
    schematic:
      description: The Image Factory schematic ID of its image, or null for an image without one (O(detail=versions)).
      type: str
    kubernetes_version:
      description: The kubelet's Kubernetes version without C(v), for example C(1.36.3) (O(detail=versions)).
      type: str
    error:
      description: Why the node is unreachable (for example C(connection refused on port 50000)).
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
unreachable_nodes:
  description:
    - IPs of the nodes that did not answer.
    - Not called C(unreachable), which Ansible reads as "the host of this task is unreachable".
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl)


def describe(talos, ip, detail):
    details = talos.node_details(ip)
    info = dict(state=details['state'], stage=details['stage'], ready=details['ready'], machine_type=None,
                etcd_member_id=None)
    if details.get('error'):
        info['error'] = details['error']
    if detail == 'versions':
        info.update(talos_version=None, schematic=None, kubernetes_version=None)
    if detail == 'state' or details['state'] != 'configured' or not talos.talosconfig:
        return info
    if detail == 'versions':
        info.update(talos.node_versions(ip))
        return info
    mtype = talos.get('machinetype', ip)
    if mtype:
        info['machine_type'] = mtype[0].get('spec')
    if info['machine_type'] == 'controlplane':
        members = talos.get('etcdmembers', ip)
        if members:
            info['etcd_member_id'] = (members[0].get('spec') or {}).get('memberID')
    return info


def unreachable_message(found, ips, probe_timeout):
    """One message for every unreachable node: what did not answer, why, and what to check."""
    return ("the Talos API (port 50000) of %d node(s) did not answer within %s seconds (probe_timeout): %s; nothing "
            "was changed. Check that they are powered on, have their addresses and that port 50000 is reachable "
            "from the controller, then rerun"
            % (len(ips), probe_timeout, ', '.join('%s (%s)' % (ip, found[ip].get('error') or 'no answer')
                                                  for ip in ips)))


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        nodes=dict(type='list', elements='str', required=True),
        fail_on_unreachable=dict(type='bool', default=False),
        detail=dict(type='str', default='full', choices=['state', 'full', 'versions']),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    nodes = module.params['nodes']
    if not nodes:
        module.fail_json(msg="nodes is empty; pass the IPs of the Talos nodes to query")
    talos = Talosctl(module)
    found, errors = talos.probe_nodes(nodes, probe=lambda ip: describe(talos, ip, module.params['detail']))
    if errors:
        failed = [ip for ip in nodes if ip in errors]
        first = errors[failed[0]]
        result = first.to_result()
        if len(failed) > 1:
            result['msg'] = '%s (also failed: %s)' % (first.message, '; '.join(errors[ip].message for ip in failed[1:]))
        module.fail_json(**result)
    result = dict(changed=False, nodes=found)
    for state, key in (('maintenance', 'maintenance'), ('configured', 'configured'),
                       ('unreachable', 'unreachable_nodes')):
        result[key] = [ip for ip in nodes if found[ip]['state'] == state]
    result['etcd_members'] = [ip for ip in nodes if found[ip]['etcd_member_id']]
    if module.params['fail_on_unreachable'] and result['unreachable_nodes']:
        module.fail_json(msg=unreachable_message(found, result['unreachable_nodes'], talos.probe_timeout), **result)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
