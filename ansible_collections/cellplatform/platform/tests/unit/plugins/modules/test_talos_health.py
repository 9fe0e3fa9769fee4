# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.talos_health (in-process, scripted talosctl)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.cellplatform.platform.plugins.modules import talos_health
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    CP, WORKERS, Script, fail, fake_talosctl, refused, run_module, x509)

NODE = CP[0]
HEALTHY = ('discovered nodes: ["192.168.100.51" "192.168.100.52"]\n'
           'waiting for etcd to be healthy: ...\n'
           'waiting for etcd to be healthy: OK\n'
           'waiting for apid to be ready: ...\n'
           'waiting for apid to be ready: OK\n'
           'waiting for all k8s nodes to report ready: ...\n'
           'waiting for all k8s nodes to report ready: OK\n')
NOT_READY = ('waiting for etcd to be healthy: ...\n'
             'waiting for etcd to be healthy: OK\n'
             'waiting for all k8s nodes to report ready: ...\n'
             'waiting for all k8s nodes to report ready: some nodes are not ready: [worker-1]\n')


@pytest.fixture
def env(tmp_path, monkeypatch):
    script = Script()
    monkeypatch.setattr(talos_health, 'Talosctl', fake_talosctl(script))
    tc = tmp_path / 'talosconfig'
    tc.write_text('context: cell\n')
    args = dict(node=NODE, talosconfig=str(tc), retry_delay=0)
    return script, args


def value(call, flag):
    return call.argv[call.argv.index(flag) + 1] if flag in call.argv else None


def test_node_lists_are_passed_as_the_brief_says(env):
    script, args = env
    script.on('health', answer=(0, HEALTHY, ''))
    r = run_module(talos_health, dict(args, control_plane_nodes=CP, worker_nodes=WORKERS, wait_timeout=600))
    assert r['_rc'] == 0, r
    assert r['healthy'] is True and r['changed'] is False and r['discovery'] is False
    (call,) = script.find('health')
    assert value(call, '--control-plane-nodes') == ','.join(CP)
    assert value(call, '--worker-nodes') == ','.join(WORKERS)
    assert value(call, '--wait-timeout') == '600s'
    assert call.nodes == [NODE] and call.endpoints == [NODE] and not call.insecure
    assert call.talosconfig == args['talosconfig']
    assert r['checks'] == ['etcd to be healthy', 'apid to be ready', 'all k8s nodes to report ready']


def test_talosctl_timeout_outlasts_wait_timeout(env):
    script, args = env
    script.on('health', answer=(0, HEALTHY, ''))
    run_module(talos_health, dict(args, wait_timeout=1200, timeout=300))
    assert script.find('health')[0].timeout == 1260


def test_without_lists_discovery_is_used(env):
    script, args = env
    script.on('health', answer=(0, HEALTHY, ''))
    r = run_module(talos_health, args)
    assert r['_rc'] == 0 and r['discovery'] is True
    (call,) = script.find('health')
    assert '--control-plane-nodes' not in call.argv and '--worker-nodes' not in call.argv
    assert value(call, '--wait-timeout') == '900s'


def test_control_planes_only(env):
    script, args = env
    script.on('health', answer=(0, HEALTHY, ''))
    r = run_module(talos_health, dict(args, control_plane_nodes=CP))
    assert r['_rc'] == 0
    (call,) = script.find('health')
    assert value(call, '--control-plane-nodes') == ','.join(CP) and '--worker-nodes' not in call.argv


def test_workers_without_control_planes_is_an_argument_error(env):
    script, args = env
    r = run_module(talos_health, dict(args, worker_nodes=WORKERS))
    assert r['_rc'] == 1 and 'worker_nodes' in r['msg'] and 'control_plane_nodes' in r['msg']
    assert script.calls == []


@pytest.mark.parametrize('bad', [0, -5])
def test_non_positive_wait_timeout_is_rejected(env, bad):
    script, args = env
    r = run_module(talos_health, dict(args, wait_timeout=bad))
    assert r['_rc'] == 1 and 'wait_timeout=%d' % bad in r['msg'] and 'positive' in r['msg']
    assert script.calls == []


def test_talosconfig_required(env):
    script, args = env
    del args['talosconfig']
    r = run_module(talos_health, args)
    assert r['_rc'] == 1 and 'talosconfig' in r['msg']
    assert script.calls == []


def test_a_non_transient_failure_runs_once(env):
    script, args = env
    script.on('health', answer=fail('error checking health', NODE, 'FailedPrecondition', 'still booting'))
    r = run_module(talos_health, dict(args, retries=5))
    assert r['_rc'] == 1 and r['healthy'] is False
    assert len(script.find('health')) == 1


def test_a_transient_failure_before_any_check_is_retried(env):
    script, args = env
    script.on('health', answer=[refused(NODE, 'error checking health'), (0, HEALTHY, '')])
    r = run_module(talos_health, dict(args, retries=5))
    assert r['_rc'] == 0 and r['healthy'] is True
    assert len(script.find('health')) == 2


def test_a_failure_after_checks_ran_is_final(env):
    """Health that waited and then ran into its deadline must not be run again (that would double the wait)."""
    script, args = env
    err = 'healthcheck error: rpc error: code = DeadlineExceeded desc = context deadline exceeded\n'
    script.on('health', answer=(1, NOT_READY, err))
    r = run_module(talos_health, dict(args, retries=5, wait_timeout=60))
    assert r['_rc'] == 1 and len(script.find('health')) == 1


def test_failure_names_the_pending_check_and_passed_checks(env):
    script, args = env
    err = 'healthcheck error: rpc error: code = DeadlineExceeded desc = context deadline exceeded\n'
    script.on('health', answer=(1, NOT_READY, err))
    r = run_module(talos_health, dict(args, wait_timeout=60))
    assert r['_rc'] == 1 and r['healthy'] is False
    assert 'all k8s nodes to report ready: some nodes are not ready: [worker-1]' in r['msg']
    assert 'after passing 1 checks' in r['msg']
    assert 'wait_timeout=60s' in r['msg']
    assert r['checks'] == ['etcd to be healthy']


def test_unexpected_nodes_hints_at_discovery(env):
    script, args = env
    out = 'waiting for all k8s nodes to report: ...\n'
    err = 'healthcheck error: unexpected nodes with IPs ["192.168.100.70"]\n'
    script.on('health', answer=(1, out, err))
    r = run_module(talos_health, dict(args, control_plane_nodes=CP, worker_nodes=WORKERS))
    assert r['_rc'] == 1 and 'unexpected nodes with IPs' in r['msg']
    assert 'leave both lists empty' in r['msg']


def test_x509_failure_keeps_the_runner_message(env):
    script, args = env
    script.on('health', answer=x509(NODE, 'error checking health'))
    r = run_module(talos_health, args)
    assert r['_rc'] == 1 and 'x509' in r['msg'] and 'talosconfig' in r['msg']
    assert r['node'] == NODE


def test_unreachable_before_any_check(env):
    script, args = env
    script.on('health', answer=refused(NODE, 'error checking health'))
    r = run_module(talos_health, dict(args, retries=2))
    assert r['_rc'] == 1 and "Talos API does not answer (connection refused on port 50000)" in r['msg']
    assert 'after 3 attempts' in r['msg'] and len(script.find('health')) == 3


def test_check_mode_still_runs_the_read_only_check(env):
    script, args = env
    script.on('health', answer=(0, HEALTHY, ''))
    r = run_module(talos_health, args, check=True)
    assert r['_rc'] == 0 and r['healthy'] is True and r['changed'] is False
    assert len(script.find('health')) == 1
