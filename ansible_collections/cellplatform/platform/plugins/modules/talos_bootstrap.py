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
  - Runs C(talosctl bootstrap) on O(bootstrap_node), the first control-plane node of the cell, only when the Talos API
    of B(every) control-plane node in O(nodes) answered and none of them runs etcd.
  - "The guard asks each control plane's Talos API, never its etcd: C(get services etcd -o json) (the C(Services)
    resource of etcd exists only while the service runs) and C(get etcdmembers -o json) (the C(local) member exists
    once the node is an etcd member). For a control plane whose etcd does not run it also reads C(service etcd) to
    report the service state (C(Preparing) before bootstrap or while joining)."
  - It never uses C(talosctl etcd members). That call is answered by the node's local etcd client, so before bootstrap
    it fails at once with C(dial tcp 127.0.0.1:2379 connect connection refused) or blocks until its deadline and
    ends with C(DeadlineExceeded); neither says anything about the node being reachable.
  - All control planes are asked at the same time; every question is a probe bounded by O(probe_timeout).
  - "Outcomes per control plane: etcd running (or a local member) - the cluster is bootstrapped; the Talos API answers
    and etcd does not run - not bootstrapped (or still joining); maintenance mode - not configured, not a candidate;
    the Talos API does not answer (port 50000 refused, dial timeout, no answer within O(probe_timeout)) - unreachable."
  - As soon as B(any) control plane runs etcd or has a local member, the cluster counts as bootstrapped and the task
    returns C(ok) without calling bootstrap, even when another control plane is down, in maintenance or still joining
    (the health gates decide about those). Otherwise an unreachable control plane stops the task (it might already
    run etcd; bootstrapping then could create a second etcd cluster), and so does O(bootstrap_node) in maintenance
    mode.
  - C(AlreadyExists) (C(etcd data directory is not empty)) is success without change. C(FailedPrecondition)
    (C(bootstrap is not available yet), C(time is not in sync yet)) and transient failures (C(Unavailable),
    C(DeadlineExceeded), connection refused/reset) are retried with backoff (O(retries), O(retry_delay),
    O(retry_deadline)); bootstrap is only ever sent to O(bootstrap_node).
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
  recover_from:
    description:
      - Path of an etcd snapshot (plaintext, on the controller) to recover etcd from - C(talosctl bootstrap
        --recover-from). Disaster recovery only; the same guard applies (every control plane answered, none runs etcd,
        which is the case once their EPHEMERAL partitions were wiped).
      - Here C(AlreadyExists) is an error - the node still holds etcd data, so nothing was recovered.
    type: path
  recover_skip_hash_check:
    description:
      - C(--recover-skip-hash-check), for a copy of an etcd data directory instead of a snapshot (no checksum).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: The probes run (they are read-only); the bootstrap itself is only reported.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_apply
  - module: cellplatform.platform.talos_health
  - module: cellplatform.platform.talos_info
notes:
  - Requires O(talosconfig); the nodes must already have their configuration (M(cellplatform.platform.talos_apply)).
'''

EXAMPLES = r'''
- name: Bootstrap etcd once, on the first control plane
  cellplatform.platform.talos_bootstrap:
    nodes: "{{ groups['controlplane'] | map('extract', hostvars, 'cellplatform_node_ip') | list }}"
    bootstrap_node: "{{ hostvars[groups['controlplane'][0]].cellplatform_node_ip }}"
    talosconfig: "{{ cellplatform_work_dir }}/talosconfig"
    probe_timeout: 10
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
  description: Whether the cluster was found bootstrapped (a control plane runs etcd or is a member, or C(AlreadyExists)).
  returned: always
  type: bool
  sample: false
control_planes:
  description: Per control-plane node IP, what its Talos API said.
  returned: always
  type: dict
  sample:
    192.168.100.51: {state: etcd_running, etcd_service: Running, member_id: 0f56d3d82142ea44, error: null}
    192.168.100.52: {state: etcd_not_running, etcd_service: Preparing, member_id: null, error: null}
    192.168.100.53: {state: unreachable, etcd_service: null, member_id: null, error: connection refused on port 50000}
  contains:
    state:
      description: V(etcd_running), V(etcd_not_running), V(maintenance) or V(unreachable).
      type: str
    etcd_service:
      description: State of the etcd service (C(Running), C(Preparing), ...) when the node answered over mTLS.
      type: str
    member_id:
      description: The node's etcd member ID (resource C(EtcdMembers) C(local)) when it is a member.
      type: str
    error:
      description: Why an unreachable node did not answer.
      type: str
etcd_members:
  description: IPs of the control planes that run etcd or have a local etcd member.
  returned: always
  type: list
  elements: str
  sample: [192.168.100.51]
joining:
  description: IPs of the control planes that answered without running etcd while another one runs it (joining).
  returned: always
  type: list
  elements: str
  sample: [192.168.100.52]
unreachable_nodes:
  description:
    - IPs of the control planes whose Talos API did not answer.
    - Not called C(unreachable), which Ansible reads as "the host of this task is unreachable".
  returned: always
  type: list
  elements: str
  sample: []
recovered:
  description: Whether etcd was (or would be) recovered from O(recover_from).
  returned: always
  type: bool
  sample: false
bootstrap_node:
  description: The node that was (or would be) bootstrapped.
  returned: always
  type: str
  sample: 192.168.100.51
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, TRANSIENT_KINDS, Talosctl, TalosctlError, classify, parse_rpc_errors, unreachable_reason)


def _first_spec(talos, out, args, ip):
    objs = talos.parse_objects(out, args, ip)
    return (objs[0].get('spec') or {}) if objs else None


def parse_service_state(out):
    """STATE of ``talosctl service <id>`` (``NODE``/``ID``/``STATE``/``HEALTH`` lines), or None."""
    for line in (out or '').splitlines():
        cols = line.split(None, 1)
        if len(cols) == 2 and cols[0] == 'STATE':
            return cols[1].strip()
    return None


class NoAnswer(Exception):
    """The Talos API of the node did not answer a question (refused, dial timeout, no answer in time)."""

    def __init__(self, why):
        super().__init__(why)
        self.why = why


def question(talos, args, ip):
    """One probe to *ip*: (rc, out, err); NoAnswer when the node's Talos API did not answer."""
    rc, out, err = talos.probe_answer(args, ip)
    if rc is None:
        raise NoAnswer(err)
    if rc != 0 and classify(err) in TRANSIENT_KINDS:
        raise NoAnswer(unreachable_reason(err))
    return rc, out, err


def ask(talos, ip):
    """What control plane *ip* says about etcd (see RETURN control_planes); raises TalosctlError when unknown."""
    try:
        return etcd_state(talos, ip)
    except NoAnswer as e:
        return dict(state='unreachable', etcd_service=None, member_id=None, error=e.why)


def etcd_state(talos, ip):
    """ask() without the NoAnswer handling: get services etcd, get etcdmembers, service etcd."""
    args = ['get', 'services', 'etcd', '-o', 'json']
    rc, out, err = question(talos, args, ip)
    service = None   # no Services resource (NotFound): etcd is not running; the resource only exists while it runs
    if rc == 0:
        service = _first_spec(talos, out, args, ip)
    elif classify(err) in ('x509', 'tls_required', 'no_endpoints'):
        details = talos.node_details(ip)   # raises the x509 error unless the node is in maintenance mode
        if details['state'] == 'maintenance':
            return dict(state='maintenance', etcd_service=None, member_id=None, error=None)
        if details['state'] == 'unreachable':
            raise NoAnswer(details.get('error'))
        raise talos.error(args, rc, out, err, nodes=[ip])
    elif not any(e['code'] == 'NotFound' for e in parse_rpc_errors(err)):
        raise talos.error(args, rc, out, err, nodes=[ip])
    running = bool(service and service.get('running'))

    args = ['get', 'etcdmembers', '-o', 'json']
    rc, out, err = question(talos, args, ip)
    if rc != 0:
        raise talos.error(args, rc, out, err, nodes=[ip])
    member_id = (_first_spec(talos, out, args, ip) or {}).get('memberID') or None

    etcd_service = 'Running' if running else None
    if not running:
        # the human-readable state of the service (Preparing while it waits for bootstrap or to join)
        rc, out, err = talos.probe_answer(['service', 'etcd'], ip)
        etcd_service = parse_service_state(out) if rc == 0 else None
    return dict(state='etcd_running' if running or member_id else 'etcd_not_running', etcd_service=etcd_service,
                member_id=member_id, error=None)


def describe(found, ips):
    return ', '.join('%s (%s)' % (ip, found[ip]['error'] or found[ip]['state']) for ip in ips)


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        nodes=dict(type='list', elements='str', required=True),
        bootstrap_node=dict(type='str', required=True),
        recover_from=dict(type='path'),
        recover_skip_hash_check=dict(type='bool', default=False),
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
    if module.params['recover_from'] and not os.path.isfile(module.params['recover_from']):
        module.fail_json(msg="recover_from: the etcd snapshot to recover from does not exist; decrypt it into the "
                             "private work directory first")
    talos = Talosctl(module)
    result = dict(changed=False, bootstrapped=False, already_bootstrapped=False, bootstrap_node=first,
                  control_planes={}, etcd_members=[], joining=[], unreachable_nodes=[], recovered=False)
    try:
        found, errors = talos.probe_nodes(nodes, probe=lambda ip: ask(talos, ip))
        if errors:
            raise errors[[ip for ip in nodes if ip in errors][0]]
        result['control_planes'] = found
        members = [ip for ip in nodes if found[ip]['state'] == 'etcd_running']
        down = [ip for ip in nodes if found[ip]['state'] == 'unreachable']
        result['etcd_members'] = members
        result['unreachable_nodes'] = down
        if members:
            result['already_bootstrapped'] = True
            result['joining'] = [ip for ip in nodes if found[ip]['state'] == 'etcd_not_running']
            if first not in members:
                module.warn("etcd already runs on control-plane nodes %s but the designated bootstrap node %s does not "
                            "run it (%s); not bootstrapping (that would create a second etcd cluster). It joins the "
                            "existing cluster once it is configured and running; the health gate checks that"
                            % (', '.join(members), first, found[first]['etcd_service'] or found[first]['state']))
            if down:
                module.warn("the cluster is bootstrapped, but the Talos API of control-plane nodes %s did not answer; "
                            "bring them back (the health gate waits for them)" % describe(found, down))
            module.exit_json(**result)
        if down:
            module.fail_json(msg="cannot bootstrap etcd: the Talos API of control-plane node(s) %s did not answer, so "
                                 "it is unknown whether etcd already runs there, and bootstrapping %s could create a "
                                 "second etcd cluster; nothing was bootstrapped. Check that they are powered on, have "
                                 "their addresses and that port 50000 is reachable from the controller, then rerun"
                                 % (describe(found, down), first), **result)
        if found[first]['state'] == 'maintenance':
            module.fail_json(msg="bootstrap_node %s is still in maintenance mode (not configured), so etcd cannot be "
                                 "bootstrapped there; apply its machine configuration first "
                                 "(cellplatform.platform.talos_apply) and rerun" % first, **result)
        result['changed'] = True
        result['recovered'] = bool(module.params['recover_from'])
        if module.check_mode:
            module.exit_json(**result)
        args = ['bootstrap']
        if module.params['recover_from']:
            args += ['--recover-from', module.params['recover_from']]
            if module.params['recover_skip_hash_check']:
                args.append('--recover-skip-hash-check')
        rc, out, err = talos.run(args, nodes=[first], endpoints=[first], check=False,
                                 retry_codes=('FailedPrecondition',))
        if rc != 0:
            e = talos.error(args, rc, out, err, nodes=[first], attempts=talos.last_attempts)
            if e.code == 'AlreadyExists' and module.params['recover_from']:
                module.fail_json(msg="cannot recover etcd on %s: its etcd data directory is not empty (AlreadyExists), "
                                     "so nothing was recovered; wipe its EPHEMERAL partition first (talos_reset with "
                                     "system_labels_to_wipe [EPHEMERAL]) and rerun" % first, **result)
            if e.code == 'AlreadyExists':
                result.update(changed=False, already_bootstrapped=True)
                module.exit_json(**result)
            raise e
        result['bootstrapped'] = True
        result['already_bootstrapped'] = False
        result['recovered'] = bool(module.params['recover_from'])
        module.exit_json(**result)
    except TalosctlError as e:
        result.update(e.to_result())
        result['changed'] = False
        module.fail_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
