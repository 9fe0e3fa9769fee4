# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.talos_bootstrap (in-process, scripted talosctl)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.cellplatform.platform.plugins.modules import talos_bootstrap
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    CP, OK, Script, etcd_members, fail, fake_talosctl, refused, run_module, warnings_of, x509)

FIRST = CP[0]
NOT_RUNNING = 'failed to create etcd client: etcd is not running (waiting to join the cluster)'


def not_member(ip):
    return fail('error getting members', ip, 'Unknown', NOT_RUNNING)


@pytest.fixture
def env(tmp_path, monkeypatch):
    script = Script()
    monkeypatch.setattr(talos_bootstrap, 'Talosctl', fake_talosctl(script))
    tc = tmp_path / 'talosconfig'
    tc.write_text('context: cell\n')
    args = dict(nodes=list(CP), bootstrap_node=FIRST, talosconfig=str(tc), retry_delay=0, retries=3)
    return script, args


def no_members_anywhere(script):
    for ip in CP:
        script.on('etcd', 'members', node=ip, answer=not_member(ip))


def test_members_on_any_control_plane_means_no_bootstrap(env):
    script, args = env
    script.on('etcd', 'members', node=CP[0], answer=not_member(CP[0]))
    script.on('etcd', 'members', node=CP[1], answer=etcd_members(CP[1], [('0f56d3d82142ea44', 'cp-2', CP[1])]))
    script.on('etcd', 'members', node=CP[2], answer=not_member(CP[2]))
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is False and r['bootstrapped'] is False and r['already_bootstrapped'] is True
    assert r['etcd_members'] == {CP[0]: [], CP[1]: ['0f56d3d82142ea44'], CP[2]: []}
    assert script.find('bootstrap') == []
    # the designated node is not a member: that is worth a warning, never a second bootstrap
    assert any(FIRST in w and 'second etcd cluster' in w for w in warnings_of(r))


def test_every_control_plane_is_asked_over_mtls(env):
    script, args = env
    no_members_anywhere(script)
    script.on('bootstrap', answer=OK)
    run_module(talos_bootstrap, args)
    asked = script.find('etcd', 'members')
    assert sorted(c.nodes[0] for c in asked) == sorted(CP)
    assert all(c.nodes == c.endpoints and not c.insecure and c.talosconfig == args['talosconfig'] for c in asked)


def test_no_members_bootstraps_the_designated_node_once(env):
    script, args = env
    no_members_anywhere(script)
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['bootstrapped'] is True and r['already_bootstrapped'] is False
    calls = script.find('bootstrap')
    assert len(calls) == 1
    assert calls[0].nodes == [FIRST] and calls[0].endpoints == [FIRST] and not calls[0].insecure


def test_bootstrap_node_other_than_first_entry(env):
    script, args = env
    no_members_anywhere(script)
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, dict(args, bootstrap_node=CP[2]))
    assert r['_rc'] == 0 and r['bootstrap_node'] == CP[2]
    assert [c.nodes for c in script.find('bootstrap')] == [[CP[2]]]


def test_already_exists_is_ok_without_change(env):
    script, args = env
    no_members_anywhere(script)
    script.on('bootstrap', answer=fail('error executing bootstrap', FIRST, 'AlreadyExists',
                                       'etcd data directory is not empty'))
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is False and r['already_bootstrapped'] is True and r['bootstrapped'] is False
    assert len(script.find('bootstrap')) == 1


def test_failed_precondition_is_retried(env):
    script, args = env
    no_members_anywhere(script)
    early = fail('error executing bootstrap', FIRST, 'FailedPrecondition', 'time is not in sync yet')
    script.on('bootstrap', answer=[early, early, OK])
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0 and r['bootstrapped'] is True
    assert len(script.find('bootstrap')) == 3


def test_other_bootstrap_error_fails_unchanged(env):
    script, args = env
    no_members_anywhere(script)
    script.on('bootstrap', answer=fail('error executing bootstrap', FIRST, 'PermissionDenied', 'not authorized'))
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and r['changed'] is False and r['code'] == 'PermissionDenied'
    assert r['node'] == FIRST


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
    no_members_anywhere(script)
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args, check=True)
    assert r['_rc'] == 0 and r['changed'] is True and r['bootstrapped'] is False
    assert script.find('bootstrap') == []
    assert len(script.find('etcd', 'members')) == 3


def test_unreachable_control_plane_refuses_to_bootstrap(env):
    script, args = env
    script.on('etcd', 'members', node=CP[0], answer=not_member(CP[0]))
    script.on('etcd', 'members', node=CP[1], answer=refused(CP[1], 'error getting members'))
    script.on('etcd', 'members', node=CP[2], answer=not_member(CP[2]))
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and r['changed'] is False
    assert CP[1] in r['msg'] and 'refusing to bootstrap' in r['msg']
    assert script.find('bootstrap') == []


def test_maintenance_control_plane_counts_as_not_member(env):
    script, args = env
    script.on('etcd', 'members', node=CP[0], answer=not_member(CP[0]))
    script.on('etcd', 'members', node=CP[1], answer=not_member(CP[1]))
    script.on('etcd', 'members', node=CP[2], answer=x509(CP[2], 'error getting members'))
    script.node(CP[2], 'maintenance')
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 0, r
    assert r['node_states'] == {CP[0]: 'configured', CP[1]: 'configured', CP[2]: 'maintenance'}
    assert [c.nodes for c in script.find('bootstrap')] == [[FIRST]]


def test_designated_node_in_maintenance_fails_without_bootstrap(env):
    script, args = env
    script.on('etcd', 'members', node=FIRST, answer=x509(FIRST, 'error getting members'))
    script.node(FIRST, 'maintenance')
    for ip in CP[1:]:
        script.on('etcd', 'members', node=ip, answer=not_member(ip))
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and 'maintenance' in r['msg'] and FIRST in r['msg'] and 'talos_apply' in r['msg']
    assert script.find('bootstrap') == []


def test_foreign_cluster_node_stops_the_task(env):
    script, args = env
    for ip in CP[:2]:
        script.on('etcd', 'members', node=ip, answer=not_member(ip))
    script.on('etcd', 'members', node=CP[2], answer=x509(CP[2], 'error getting members'))
    script.node(CP[2], 'foreign')
    script.on('bootstrap', answer=OK)
    r = run_module(talos_bootstrap, args)
    assert r['_rc'] == 1 and 'x509' in r['msg']
    assert script.find('bootstrap') == []


def test_parse_members_skips_header():
    out = etcd_members(CP[0], [('aa', 'cp-1', CP[0]), ('bb', 'cp-2', CP[1])])[1]
    assert talos_bootstrap.parse_members(out) == ['aa', 'bb']
    assert talos_bootstrap.parse_members('') == []
