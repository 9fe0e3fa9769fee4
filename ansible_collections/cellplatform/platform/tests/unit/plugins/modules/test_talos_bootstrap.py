# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.talos_bootstrap (in-process, scripted talosctl).

The guard asks each control plane's Talos API (``get services etcd``, ``get etcdmembers``,
``service etcd``), never ``etcd members``: the Script has no answer for ``etcd members``, so any
such call fails the test with "unexpected talosctl call".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

import pytest

from ansible_collections.cellplatform.platform.plugins.module_utils import talosctl as talosctl_utils
from ansible_collections.cellplatform.platform.plugins.modules import talos_bootstrap
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    CP, OK, Script, etcd_service, fail, fake_talosctl, refused_desc, run_module, service_info, warnings_of)

FIRST = CP[0]
MEMBER = '0f56d3d82142ea44'


@pytest.fixture
def env(tmp_path, monkeypatch):
    script = Script()
    monkeypatch.setattr(talos_bootstrap, 'Talosctl', fake_talosctl(script))
    tc = tmp_path / 'talosconfig'
    tc.write_text('context: cell\n')
    args = dict(nodes=list(CP), bootstrap_node=FIRST, talosconfig=str(tc), retry_delay=0, retries=3, probe_timeout=7)
    return script, args


def all_preparing(script):
    for ip in CP:
        script.control_plane(ip, 'preparing')


def control_planes(script, *states):
    """Script the three control planes in these states (Script.control_plane); bootstrap would succeed."""
    for ip, state in zip(CP, states):
        script.control_plane(ip, state)
    script.on('bootstrap', answer=OK)


def test_before_bootstrap_the_designated_node_is_bootstrapped_once(env):
    script, args = env
    all_preparing(script)
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['bootstrapped'] is True and r['already_bootstrapped'] is False
    assert r['control_planes'] == dict((ip, dict(state='etcd_not_running', etcd_service='Preparing', member_id=None,
                                                 error=None)) for ip in CP)
    assert r['etcd_members'] == [] and r['unreachable_nodes'] == [] and r['joining'] == []
    calls = script.find('bootstrap')
    assert len(calls) == 1
    assert calls[0].nodes == [FIRST] and calls[0].endpoints == [FIRST] and not calls[0].insecure


def test_the_guard_asks_the_talos_api_never_etcd(env):
    script, args = env
    all_preparing(script)
    script.on('bootstrap', answer=OK)
    run_module(talos_bootstrap, args)
    assert script.find('etcd') == []
    for words in (('get', 'services', 'etcd'), ('get', 'etcdmembers'), ('service', 'etcd')):
        asked = script.find(*words)
        assert sorted(c.nodes[0] for c in asked) == sorted(CP), words
        assert all(c.nodes == c.endpoints and not c.insecure and c.talosconfig == args['talosconfig'] for c in asked)
    assert all('-o' in c.argv and c.argv[c.argv.index('-o') + 1] == 'json' for c in script.find('get'))
    # every question is a probe: bounded by probe_timeout
    assert all(0 < c.timeout <= args['probe_timeout'] for c in script.find('get') + script.find('service'))


def test_control_planes_are_asked_at_the_same_time(env):
    script, args = env

    def slow(call):
        time.sleep(0.4)
        return etcd_service(call.nodes[0], running=False)
    for ip in CP:
        script.on('get', 'services', 'etcd', node=ip, answer=slow)
        script.control_plane(ip, 'preparing')
    script.on('bootstrap', answer=OK)
    start = time.time()
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0 and r['bootstrapped']
    assert time.time() - start < 1.0   # three 0.4 s probes in parallel, not 1.2 s in a row


def test_any_control_plane_running_etcd_means_bootstrapped_even_with_one_down(env):
    script, args = env
    # the designated node still joining (Preparing), cp-2 runs etcd, cp-3 went down after bootstrap
    control_planes(script, 'preparing', 'running', 'refused')
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is False and r['bootstrapped'] is False and r['already_bootstrapped'] is True
    assert r['etcd_members'] == [CP[1]] and r['joining'] == [CP[0]] and r['unreachable_nodes'] == [CP[2]]
    assert 'unreachable' not in r   # Ansible would read it as "this host is unreachable"
    assert r['control_planes'][CP[1]]['member_id'] == MEMBER
    assert r['control_planes'][CP[2]] == dict(state='unreachable', etcd_service=None, member_id=None,
                                              error='connection refused on port 50000')
    assert script.find('bootstrap') == []
    texts = ' '.join(warnings_of(r))
    assert FIRST in texts and 'second etcd cluster' in texts and 'Preparing' in texts
    assert CP[2] in texts and 'did not answer' in texts


def test_a_local_member_counts_even_while_the_service_restarts(env):
    script, args = env
    control_planes(script, 'member', 'preparing', 'preparing')
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0 and r['already_bootstrapped'] and not r['bootstrapped']
    assert r['control_planes'][CP[0]]['state'] == 'etcd_running' and r['control_planes'][CP[0]]['member_id'] == MEMBER
    assert script.find('bootstrap') == []


def test_unreachable_control_plane_refuses_to_bootstrap(env):
    script, args = env
    control_planes(script, 'preparing', 'refused', 'preparing')
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and r['changed'] is False
    assert 'cannot bootstrap etcd' in r['msg'] and '%s (connection refused on port 50000)' % CP[1] in r['msg']
    assert 'second etcd cluster' in r['msg'] and 'powered on' in r['msg']
    assert r['unreachable_nodes'] == [CP[1]]
    assert script.find('bootstrap') == []
    # a refusal is retried, but only a little (probe), never a long retry chain
    assert len(script.find('get', 'services', node=CP[1])) == 1 + talosctl_utils.PROBE_RETRIES


def test_a_control_plane_that_does_not_answer_in_time_is_unreachable(env):
    script, args = env

    def hang(call):
        raise talosctl_utils._ProcessTimeout()   # pylint: disable=protected-access
    script.control_plane(CP[0], 'preparing')
    script.control_plane(CP[1], 'preparing')
    script.on('get', node=CP[2], answer=hang)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and '%s (no answer within 7 seconds (probe_timeout))' % CP[2] in r['msg']
    assert len(script.find('get', node=CP[2])) == 1   # a hang is not asked again
    assert script.find('bootstrap') == []


def test_preparing_is_not_unreachable(env):
    """The node's API answered and its etcd does not run: "not bootstrapped", never "unreachable"."""
    script, args = env
    all_preparing(script)
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args, check=True)
    assert r['_rc'] == 0 and r['unreachable_nodes'] == []
    assert set(c['state'] for c in r['control_planes'].values()) == {'etcd_not_running'}


def test_already_exists_is_ok_without_change(env):
    script, args = env
    all_preparing(script)
    script.on('bootstrap', answer=fail('error executing bootstrap', FIRST, 'AlreadyExists',
                                       'etcd data directory is not empty'))
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is False and r['already_bootstrapped'] is True and r['bootstrapped'] is False
    assert len(script.find('bootstrap')) == 1


def test_failed_precondition_and_unavailable_are_retried_on_the_same_node(env):
    script, args = env
    all_preparing(script)
    early = fail('error executing bootstrap', FIRST, 'FailedPrecondition', 'time is not in sync yet')
    dropped = fail('error executing bootstrap', FIRST, 'Unavailable', refused_desc(FIRST))
    script.on('bootstrap', answer=[early, dropped, OK])
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0 and r['bootstrapped'] is True
    calls = script.find('bootstrap')
    assert len(calls) == 3 and all(c.nodes == [FIRST] for c in calls)


def test_failed_precondition_gives_up_after_the_retries(env):
    script, args = env
    all_preparing(script)
    script.on('bootstrap', answer=fail('error executing bootstrap', FIRST, 'FailedPrecondition',
                                       'bootstrap is not available yet'))
    r = run_module(talos_bootstrap, dict(args, retries=2))
    assert r['_rc'] == 1 and r['code'] == 'FailedPrecondition' and 'after 3 attempts' in r['msg']
    assert FIRST in r['msg'] and len(script.find('bootstrap')) == 3


def test_bootstrap_node_other_than_first_entry(env):
    script, args = env
    all_preparing(script)
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, dict(args, bootstrap_node=CP[2]))
    assert r['_rc'] == 0 and r['bootstrap_node'] == CP[2]
    assert [c.nodes for c in script.find('bootstrap')] == [[CP[2]]]


def test_other_bootstrap_error_fails_unchanged(env):
    script, args = env
    all_preparing(script)
    script.on('bootstrap', answer=fail('error executing bootstrap', FIRST, 'PermissionDenied', 'not authorized'))
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and r['changed'] is False and r['code'] == 'PermissionDenied'
    assert r['node'] == FIRST and len(script.find('bootstrap')) == 1


def test_bootstrap_node_not_in_nodes_names_field_and_value(env):
    script, args = env
    r = run_module(talos_bootstrap, dict(args, bootstrap_node='192.168.100.99'))
    assert r['_rc'] == 1
    assert 'bootstrap_node' in r['msg'] and '192.168.100.99' in r['msg'] and CP[0] in r['msg']
    assert script.calls == []


def test_talosconfig_is_required(env):
    script, args = env
    del args['talosconfig']
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and 'talosconfig' in r['msg']
    assert script.calls == []


def test_check_mode_never_bootstraps(env):
    script, args = env
    all_preparing(script)
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args, check=True)
    assert r['_rc'] == 0 and r['changed'] is True and r['bootstrapped'] is False
    assert script.find('bootstrap') == []
    assert len(script.find('get', 'services', 'etcd')) == 3


def test_maintenance_control_plane_is_not_a_candidate_but_no_obstacle(env):
    script, args = env
    control_planes(script, 'preparing', 'preparing', 'maintenance')
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0, r
    assert r['control_planes'][CP[2]]['state'] == 'maintenance'
    assert [c.nodes for c in script.find('bootstrap')] == [[FIRST]]


def test_designated_node_in_maintenance_fails_without_bootstrap(env):
    script, args = env
    script.control_plane(FIRST, 'maintenance')
    for ip in CP[1:]:
        script.control_plane(ip, 'preparing')
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and 'maintenance mode' in r['msg'] and FIRST in r['msg'] and 'talos_apply' in r['msg']
    assert script.find('bootstrap') == []


def test_foreign_cluster_node_stops_the_task(env):
    script, args = env
    for ip in CP[:2]:
        script.control_plane(ip, 'preparing')
    script.control_plane(CP[2], 'foreign')
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and 'x509' in r['msg'] and r['node'] == CP[2]
    assert script.find('bootstrap') == []


def test_parse_service_state():
    assert talos_bootstrap.parse_service_state(service_info(FIRST, 'etcd', 'Preparing')[1]) == 'Preparing'
    assert talos_bootstrap.parse_service_state('NODE     x\nID       etcd\nSTATE    Running\n') == 'Running'
    assert talos_bootstrap.parse_service_state('') is None
