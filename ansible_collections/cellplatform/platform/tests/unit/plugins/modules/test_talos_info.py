# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.talos_info (in-process, scripted talosctl)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

import pytest

from ansible_collections.cellplatform.platform.plugins.module_utils import talosctl as talosctl_utils
from ansible_collections.cellplatform.platform.plugins.modules import talos_info
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    CP, WORKERS, Script, cert_required, fake_talosctl, json_stream, machinestatus, resource, run_module, timed_out)

MEMBER_ID = '0f56d3d82142ea44'


def machinetype(ip, mtype):
    return (0, json_stream(resource(ip, 'MachineTypes.config.talos.dev', 'machine-type', mtype, 'config')), '')


def etcdmember(ip, member_id):
    return (0, json_stream(resource(ip, 'EtcdMembers.etcd.talos.dev', 'local', dict(memberID=member_id), 'etcd')), '')


@pytest.fixture
def env(tmp_path, monkeypatch):
    script = Script()
    monkeypatch.setattr(talos_info, 'Talosctl', fake_talosctl(script))
    tc = tmp_path / 'talosconfig'
    tc.write_text('context: cell\n')
    return script, dict(talosconfig=str(tc), retry_delay=0, retries=0)


def configured_cp(script, ip, member=MEMBER_ID):
    script.node(ip, 'configured')
    script.on('get', 'machinetype', node=ip, answer=machinetype(ip, 'controlplane'))
    script.on('get', 'etcdmembers', node=ip, answer=etcdmember(ip, member))


def test_state_mapping_of_a_mixed_cell(env):
    script, args = env
    configured_cp(script, CP[0])
    script.node(CP[1], 'maintenance')
    script.node(CP[2], 'unreachable')
    script.node(WORKERS[0], 'configured')
    script.on('get', 'machinetype', node=WORKERS[0], answer=machinetype(WORKERS[0], 'worker'))
    nodes = [CP[0], CP[1], CP[2], WORKERS[0]]
    r = run_module(talos_info, dict(args, nodes=nodes))
    assert r['_rc'] == 0, r
    assert r['changed'] is False
    assert r['configured'] == [CP[0], WORKERS[0]]
    assert r['maintenance'] == [CP[1]]
    assert r['unreachable_nodes'] == [CP[2]]
    assert r['etcd_members'] == [CP[0]]
    n = r['nodes']
    assert n[CP[0]] == dict(state='configured', stage='running', ready=True, machine_type='controlplane',
                            etcd_member_id=MEMBER_ID)
    assert n[CP[1]]['state'] == 'maintenance' and n[CP[1]]['stage'] == 'maintenance'
    assert n[CP[1]]['machine_type'] is None and n[CP[1]]['etcd_member_id'] is None
    assert n[CP[2]]['state'] == 'unreachable' and 'connection refused' in n[CP[2]]['error']
    assert n[WORKERS[0]]['machine_type'] == 'worker' and n[WORKERS[0]]['etcd_member_id'] is None


def test_workers_are_never_asked_for_etcd(env):
    script, args = env
    script.node(WORKERS[0], 'configured')
    script.on('get', 'machinetype', node=WORKERS[0], answer=machinetype(WORKERS[0], 'worker'))
    r = run_module(talos_info, dict(args, nodes=[WORKERS[0]]))
    assert r['_rc'] == 0
    assert script.find('get', 'etcdmembers') == []


def test_maintenance_nodes_are_only_asked_machinestatus(env):
    script, args = env
    script.node(CP[1], 'maintenance')
    r = run_module(talos_info, dict(args, nodes=[CP[1]]))
    assert r['_rc'] == 0 and r['maintenance'] == [CP[1]]
    assert {c.words[:2] for c in script.calls} == {('get', 'machinestatus')}
    insecure = [c for c in script.calls if c.insecure]
    assert insecure and all(c.talosconfig is None for c in insecure)


def test_without_talosconfig_only_the_maintenance_api_is_used(env):
    script, args = env
    del args['talosconfig']
    script.on('get', 'machinestatus', node=CP[0], insecure=True, answer=machinestatus(CP[0], 'maintenance', False))
    script.on('get', 'machinestatus', node=CP[1], insecure=True,
              answer=cert_required(CP[1]))
    r = run_module(talos_info, dict(args, nodes=CP[:2]))
    assert r['_rc'] == 0, r
    assert r['maintenance'] == [CP[0]] and r['configured'] == [CP[1]]
    assert all(c.insecure for c in script.calls)
    assert r['nodes'][CP[1]]['machine_type'] is None


def test_fail_on_unreachable(env):
    script, args = env
    configured_cp(script, CP[0])
    script.node(CP[2], 'unreachable')
    r = run_module(talos_info, dict(args, nodes=[CP[0], CP[2]], fail_on_unreachable=True))
    assert r['_rc'] == 1 and CP[2] in r['msg'] and 'port 50000' in r['msg']
    assert r['unreachable_nodes'] == [CP[2]] and r['configured'] == [CP[0]]


def test_every_unreachable_node_is_named_in_one_message_within_one_probe_timeout(env):
    script, args = env

    def hang(call):
        time.sleep(0.3)
        raise talosctl_utils._ProcessTimeout()   # pylint: disable=protected-access
    script.node(CP[0], 'maintenance')
    script.node(CP[1], 'unreachable')
    script.on('get', node=CP[2], answer=timed_out(CP[2]))
    for ip in WORKERS:
        script.on('get', node=ip, answer=hang)
    start = time.time()
    r = run_module(talos_info, dict(args, nodes=list(CP) + list(WORKERS), fail_on_unreachable=True, detail='state',
                                    probe_timeout=3))
    assert time.time() - start < 2.0          # asked at the same time, not one after the other
    assert r['_rc'] == 1 and r['unreachable_nodes'] == [CP[1], CP[2]] + list(WORKERS)
    assert r['msg'].startswith('the Talos API (port 50000) of 5 node(s) did not answer within 3 seconds')
    assert '%s (connection refused on port 50000)' % CP[1] in r['msg']
    assert '%s (i/o timeout on port 50000)' % CP[2] in r['msg']
    assert '%s (no answer within 3 seconds (probe_timeout))' % WORKERS[2] in r['msg']
    assert 'nothing was changed' in r['msg'] and CP[0] not in r['msg']


def test_detail_state_asks_only_what_a_node_is(env):
    script, args = env
    script.node(CP[0], 'configured')
    r = run_module(talos_info, dict(args, nodes=[CP[0]], detail='state'))
    assert r['_rc'] == 0 and r['configured'] == [CP[0]]
    assert {c.words[:2] for c in script.calls} == {('get', 'machinestatus')}
    assert r['nodes'][CP[0]]['machine_type'] is None


def test_unreachable_is_reported_not_failed_by_default(env):
    script, args = env
    script.node(CP[2], 'unreachable')
    r = run_module(talos_info, dict(args, nodes=[CP[2]]))
    assert r['_rc'] == 0 and r['unreachable_nodes'] == [CP[2]]
    # never a result key `unreachable`: Ansible would mark the host running the task unreachable
    assert 'unreachable' not in r


def test_foreign_node_fails_with_x509_message(env):
    script, args = env
    script.node(CP[0], 'foreign')
    r = run_module(talos_info, dict(args, nodes=[CP[0]]))
    assert r['_rc'] == 1 and 'x509' in r['msg'] and r['node'] == CP[0]


def test_empty_nodes_is_rejected(env):
    script, args = env
    r = run_module(talos_info, dict(args, nodes=[]))
    assert r['_rc'] == 1 and 'nodes is empty' in r['msg']
    assert script.calls == []


def test_check_mode_returns_the_same_facts(env):
    script, args = env
    configured_cp(script, CP[0])
    r = run_module(talos_info, dict(args, nodes=[CP[0]]), check=True)
    assert r['_rc'] == 0 and r['changed'] is False and r['etcd_members'] == [CP[0]]
