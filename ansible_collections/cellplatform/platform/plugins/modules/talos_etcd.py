#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_etcd
short_description: etcd of a Talos cluster - health with every member, snapshot, leave, remove a member
version_added: 0.2.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - "O(action=status): asks C(talosctl etcd status) on every control plane in O(nodes) at the same time (each a probe
    bounded by O(probe_timeout)) and C(talosctl etcd members) on one that answered. The cluster is healthy when every
    node answered, all agree on one leader, none reports errors or is a learner and the member list holds exactly
    O(expected_members). With O(wait_timeout) it asks again every O(poll) seconds until healthy; the failure says
    what is still wrong. RV(members) says for every listed member whether its etcd answered (C(running)), which is
    what a quorum decision needs."
  - "O(action=members): the member list, from the first node of O(nodes) that answers."
  - "O(action=snapshot): C(talosctl etcd snapshot O(dest)) from O(node) (talosctl writes C(<dest>.part) and renames
    it when the snapshot is complete and its checksum is present). Always a new snapshot (C(changed=true))."
  - "O(action=leave): C(talosctl etcd leave) on O(node) - the node removes its own member and stops etcd. A node that
    is no etcd member (no C(local) EtcdMember resource) is left alone."
  - "O(action=remove_member): C(talosctl etcd remove-member <ID>) on O(node), a B(healthy) peer, for the member named
    O(member) (its hostname, the node name, or its ID) - the way to drop the member of a dead node. A member that is not
    listed any more is not an error (C(changed=false))."
  - Membership changes need a quorum of the listed members; decide first (the C(remove-node.yml) playbook refuses a
    removal that would break quorum or leave an even count before it touches anything).
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [status, members, snapshot, leave, remove_member]
  nodes:
    description:
      - Control-plane IPs to ask (O(action=status), O(action=members)).
    type: list
    elements: str
    default: []
  node:
    description:
      - The control plane that takes the snapshot, leaves, or (a healthy peer) removes O(member).
    type: str
  member:
    description:
      - O(action=remove_member) - the member to remove - its hostname (the inventory node name) or its ID (16 hex digits).
    type: str
  dest:
    description:
      - O(action=snapshot) - absolute path of the snapshot file; its directory must exist. It holds every secret of the
        cluster - write it into the private work directory and encrypt it.
    type: path
  expected_members:
    description:
      - O(action=status) - the hostnames etcd must list, exactly (the control planes of the inventory). Empty does not
        check the list.
    type: list
    elements: str
    default: []
  wait_timeout:
    description:
      - O(action=status) - seconds to keep asking until the cluster is healthy; V(0) asks once.
    type: int
    default: 0
  poll:
    description:
      - O(action=status) - seconds between two rounds of questions.
    type: float
    default: 2.0
  fail_unhealthy:
    description:
      - O(action=status) - fail when the cluster is not healthy (after O(wait_timeout)). V(false) reports it instead.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: C(status) and C(members) run (read-only); C(snapshot), C(leave) and C(remove_member) are only reported.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_upgrade
  - module: cellplatform.platform.talos_reset
  - module: cellplatform.platform.talos_bootstrap
notes:
  - Never uses the API VIP; every call goes to one control plane's Talos API.
'''

EXAMPLES = r'''
- name: Wait until etcd is healthy with every control plane as a member
  cellplatform.platform.talos_etcd:
    action: status
    nodes: "{{ cellplatform_cell.talos_endpoints }}"
    expected_members: "{{ cellplatform_cell.controlplane }}"
    wait_timeout: 600
    talosconfig: "{{ cellplatform_cell.work_dir }}/talosconfig"

- name: Snapshot etcd into the private work directory
  cellplatform.platform.talos_etcd:
    action: snapshot
    node: 192.168.100.51
    dest: "{{ cellplatform_cell.work_dir }}/etcd.snapshot"
    talosconfig: "{{ cellplatform_cell.work_dir }}/talosconfig"

- name: Remove the member of a dead control plane from a healthy peer
  cellplatform.platform.talos_etcd:
    action: remove_member
    node: 192.168.100.51
    member: cp-3
    talosconfig: "{{ cellplatform_cell.work_dir }}/talosconfig"
'''

RETURN = r'''
healthy:
  description: O(action=status) - whether etcd is healthy with exactly the expected members.
  returned: always
  type: bool
  sample: true
problems:
  description: O(action=status) - what is not healthy, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["etcd on 192.168.100.53 does not answer (connection refused on port 50000)"]
members:
  description: The member list etcd keeps (O(action=status), O(action=members), O(action=remove_member)).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Member ID, 16 hex digits.
      type: str
    hostname:
      description: The member's name (the node's hostname).
      type: str
    peer_urls:
      description: Peer URLs.
      type: list
      elements: str
    learner:
      description: Whether the member is a learner.
      type: bool
    running:
      description: O(action=status) - whether the member's etcd answered C(etcd status) (null when its node was not asked).
      type: bool
  sample: [{id: 0ea30cf63edbc73c, hostname: cp-1, peer_urls: ["https://192.168.100.51:2380"], learner: false, running: true}]
status:
  description: O(action=status) - per node IP, its C(etcd status) row or why it did not answer.
  returned: always
  type: dict
  sample: {192.168.100.51: {member: 0ea30cf63edbc73c, leader: 0ea30cf63edbc73c, raft_index: 1001, errors: ""}}
leader:
  description: O(action=status) - the leader's member ID when the nodes agree on one.
  returned: always
  type: str
  sample: 0ea30cf63edbc73c
elapsed:
  description: O(action=status) - seconds spent waiting.
  returned: always
  type: float
  sample: 4.2
snapshot:
  description: O(action=snapshot) - what talosctl reported about the snapshot it wrote.
  returned: when a snapshot was written
  type: dict
  sample: {path: /home/ops/.cache/cellplatform/cell/etcd.snapshot, size: 20975648, revision: 53012, keys: 1421, node: 192.168.100.51}
removed:
  description: O(action=leave) or O(action=remove_member) - the member that was (or would be) removed.
  returned: when a member was (or would be) removed
  type: dict
  sample: {id: 02a745f01c7fadcd, hostname: cp-3}
'''

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError, dial_failure, parse_etcd_members, parse_etcd_status,
    parse_rpc_errors, unreachable_reason)

_SNAPSHOT_RE = re.compile(r'snapshot info: hash (?P<hash>[0-9a-f]+), revision (?P<revision>\d+), total keys (?P<keys>\d+), '
                          r'total size (?P<size>\d+)')
_MEMBER_ID_RE = re.compile(r'^[0-9a-fA-F]{1,16}$')
NO_LEADER = '0' * 16


def why_not(err):
    """Why a question was not answered: the failed dial (port 50000 - the node; 2379 - its etcd) or the gRPC error."""
    errors = parse_rpc_errors(err)
    return dial_failure(err) or ('%s: %s' % (errors[0]['code'], errors[0]['desc']) if errors else unreachable_reason(err))


def ask_status(talos, ip):
    """(row, None) for a node whose etcd answered ``etcd status``, else (None, why)."""
    rc, out, err = talos.probe_answer(['etcd', 'status'], ip)
    if rc is None:
        return None, err
    if rc != 0:
        return None, why_not(err)
    rows = [r for r in parse_etcd_status(out) if r['node'] in (ip, None)]
    if not rows:
        return None, 'etcd status printed no row for the node'
    return rows[0], None


def ask_members(talos, ips):
    """The member list from the first of *ips* that answers ``etcd members``; (members, None) or ([], why)."""
    why = 'no node to ask'
    for ip in ips:
        rc, out, err = talos.probe_answer(['etcd', 'members'], ip)
        if rc == 0:
            seen = []
            for m in parse_etcd_members(out):
                if m['id'] not in [x['id'] for x in seen]:
                    seen.append(dict(id=m['id'], hostname=m['hostname'], peer_urls=m['peer_urls'],
                                     learner=m['learner']))
            return seen, None
        why = err if rc is None else why_not(err)
    return [], why


def evaluate(nodes, rows, whys, members, members_why, expected):
    """Problems of one round of questions (pure): see the module description."""
    problems = []
    for ip in nodes:
        if ip not in rows:
            problems.append('etcd on %s does not answer (%s)' % (ip, whys.get(ip) or 'no answer'))
    leaders = set()
    for ip in nodes:
        row = rows.get(ip)
        if row is None:
            continue
        if row['errors']:
            problems.append('etcd on %s reports errors: %s' % (ip, row['errors']))
        if row['learner']:
            problems.append('etcd on %s is still a learner' % ip)
        if not row['leader'] or row['leader'] == NO_LEADER:
            problems.append('etcd on %s has no leader' % ip)
        else:
            leaders.add(row['leader'])
    if len(leaders) > 1:
        problems.append('the members disagree on the leader (%s)' % ', '.join(sorted(leaders)))
    if rows and not members:
        problems.append('no member list (%s)' % (members_why or 'no answer'))
    names = [m['hostname'] for m in members]
    if expected and members:
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        doubled = sorted(set(n for n in names if names.count(n) > 1))
        if missing:
            problems.append('etcd lists no member for %s' % ', '.join(missing))
        if extra:
            problems.append('etcd lists members that are not control planes of the inventory: %s' % ', '.join(extra))
        if doubled:
            problems.append('etcd lists more than one member named %s (a stale member of a replaced machine)'
                            % ', '.join(doubled))
    for m in members:
        if m['learner']:
            problems.append('member %s (%s) is still a learner' % (m['hostname'], m['id']))
    return problems, (sorted(leaders)[0] if len(leaders) == 1 else None)


def status(module, talos):
    p = module.params
    nodes = p['nodes']
    if not nodes:
        module.fail_json(msg="nodes is empty; pass the IPs of the control planes whose etcd to ask")
    started = time.monotonic()
    while True:
        found, errors = talos.probe_nodes(nodes, probe=lambda ip: ask_status(talos, ip))
        if errors:
            raise errors[[ip for ip in nodes if ip in errors][0]]
        rows = dict((ip, r) for ip, (r, _why) in found.items() if r is not None)
        whys = dict((ip, why) for ip, (r, why) in found.items() if r is None)
        members, members_why = ask_members(talos, [ip for ip in nodes if ip in rows]) if rows else ([], None)
        problems, leader = evaluate(nodes, rows, whys, members, members_why, p['expected_members'])
        answered = set(r['member'] for r in rows.values())
        for m in members:
            m['running'] = m['id'] in answered
        elapsed = time.monotonic() - started
        if not problems or elapsed >= p['wait_timeout']:
            break
        time.sleep(max(0.1, min(p['poll'], p['wait_timeout'] - elapsed)))
    result = dict(changed=False, healthy=not problems, problems=problems, members=members, leader=leader,
                  elapsed=round(elapsed, 1),
                  status=dict((ip, rows[ip] if ip in rows else dict(error=whys.get(ip))) for ip in nodes))
    if problems and p['fail_unhealthy']:
        waited = ' after waiting %ds' % p['wait_timeout'] if p['wait_timeout'] else ''
        result['msg'] = ('etcd is not healthy%s: %s. Look at the failing members (`talosctl -n <ip> service etcd`, '
                         '`talosctl -n <ip> logs etcd`) and rerun when etcd is healthy'
                         % (waited, '; '.join(problems)))
        module.fail_json(**result)
    module.exit_json(**result)


def find_member(members, wanted):
    by_name = [m for m in members if m['hostname'] == wanted]
    if len(by_name) > 1:
        raise ValueError("etcd lists %d members named %s (%s); pass the ID of the one to remove as member"
                         % (len(by_name), wanted, ', '.join(m['id'] for m in by_name)))
    if by_name:
        return by_name[0]
    if _MEMBER_ID_RE.match(wanted or ''):
        wid = '%016x' % int(wanted, 16)
        for m in members:
            if m['id'] == wid:
                return m
    return None


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        action=dict(type='str', required=True, choices=['status', 'members', 'snapshot', 'leave', 'remove_member']),
        nodes=dict(type='list', elements='str', default=[]),
        node=dict(type='str'),
        member=dict(type='str'),
        dest=dict(type='path'),
        expected_members=dict(type='list', elements='str', default=[]),
        wait_timeout=dict(type='int', default=0),
        poll=dict(type='float', default=2.0),
        fail_unhealthy=dict(type='bool', default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec, supports_check_mode=True,
        required_if=[('action', 'snapshot', ('node', 'dest')), ('action', 'leave', ('node',)),
                     ('action', 'remove_member', ('node', 'member'))])
    p = module.params
    if not p['talosconfig']:
        module.fail_json(msg="talosconfig is required: etcd is managed over mTLS; pass the cell's decrypted talosconfig")
    action = p['action']
    talos = Talosctl(module)
    result = dict(changed=False, healthy=False, problems=[], members=[], status={}, leader=None, elapsed=0.0)
    try:
        if action == 'status':
            status(module, talos)
        if action == 'members':
            members, why = ask_members(talos, p['nodes'])
            if not members:
                module.fail_json(msg="no control plane of %s answered `talosctl etcd members` (%s)"
                                     % (', '.join(p['nodes']) or '(none)', why), **result)
            result['members'] = members
            module.exit_json(**result)
        node = p['node']
        if action == 'snapshot':
            dest = os.path.abspath(p['dest'])
            if not os.path.isdir(os.path.dirname(dest)):
                module.fail_json(msg="dest %s: its directory does not exist; create the private work directory first"
                                     % dest, **result)
            result['changed'] = True
            if module.check_mode:
                module.exit_json(**result)
            rc, out, err = talos.run(['etcd', 'snapshot', dest], nodes=[node], endpoints=[node])
            m = _SNAPSHOT_RE.search(out)
            if not m or not os.path.isfile(dest):
                module.fail_json(msg="talosctl etcd snapshot on node %s did not report a complete snapshot" % node,
                                 **result)
            result['snapshot'] = dict(path=dest, size=int(m.group('size')), revision=int(m.group('revision')),
                                      keys=int(m.group('keys')), node=node)
            module.exit_json(**result)
        if action == 'leave':
            local = talos.get('etcdmembers', node)
            if not local:
                module.exit_json(**result)
            result['removed'] = dict(id=(local[0].get('spec') or {}).get('memberID'), hostname=None)
            result['changed'] = True
            if not module.check_mode:
                talos.run(['etcd', 'leave'], nodes=[node], endpoints=[node])
            module.exit_json(**result)
        # remove_member
        members, why = ask_members(talos, [node])
        if not members:
            module.fail_json(msg="the peer %s did not answer `talosctl etcd members` (%s); pass a healthy control plane "
                                 "as node" % (node, why), **result)
        result['members'] = members
        try:
            member = find_member(members, p['member'])
        except ValueError as e:
            module.fail_json(msg=str(e), **result)
        if member is None:
            module.exit_json(**result)
        result['removed'] = dict(id=member['id'], hostname=member['hostname'])
        result['changed'] = True
        if not module.check_mode:
            rc, out, err = talos.run(['etcd', 'remove-member', member['id']], nodes=[node], endpoints=[node], check=False)
            if rc != 0:
                e = talos.error(['etcd', 'remove-member'], rc, out, err, nodes=[node], attempts=talos.last_attempts)
                if e.code != 'NotFound':
                    raise e
                result['changed'] = False
        module.exit_json(**result)
    except TalosctlError as e:
        result.update(e.to_result())
        result['changed'] = False
        module.fail_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
