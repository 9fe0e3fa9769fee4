# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.talos_apply (in-process, scripted talosctl)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

import pytest

from ansible_collections.cellplatform.platform.plugins.module_utils import talosctl as talosctl_utils
from ansible_collections.cellplatform.platform.plugins.modules import talos_apply
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    Script, cert_required, dry_run, fail, fake_talosctl, machinestatus, refused, run_module, x509, OK)

NODE = '192.168.100.51'
SECRET_KEY = 'c2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3Qtc2hvdw=='
TOKEN = 'abcdef.0123456789abcdef'
CONFIG = """version: v1alpha1
machine:
  type: controlplane
  token: %s
  ca:
    crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUI=
    key: %s
cluster:
  secret: %s
---
apiVersion: v1alpha1
kind: HostnameConfig
auto: stable
""" % (TOKEN, SECRET_KEY, SECRET_KEY)

DIFF = """@@ -3,7 +3,7 @@
 machine:
-  token: %s
+  token: zyxwvu.zyxwvutsrqponmlk
   ca:
-    key: %s
+    key: bmV3LXNlY3JldC1rZXk=
""" % (TOKEN, SECRET_KEY)


@pytest.fixture
def env(tmp_path, monkeypatch):
    script = Script()
    monkeypatch.setattr(talos_apply, 'Talosctl', fake_talosctl(script))
    cfg = tmp_path / 'cp-1.yaml'
    cfg.write_text(CONFIG)
    tc = tmp_path / 'talosconfig'
    tc.write_text('context: cell\n')
    args = dict(node=NODE, config=str(cfg), talosconfig=str(tc), retry_delay=0, retries=3)
    return script, args


def apply_calls(script, dry=None):
    if dry is None:
        return script.find('apply-config')
    return script.find('apply-config', has=('--dry-run',)) if dry else script.find('apply-config', lacks=('--dry-run',))


def installing_node(script, ip, refusals_after_apply=0):
    """A node in maintenance mode that, once it took its config, reboots (refusing *refusals_after_apply*
    probes) and then answers over mTLS as configured."""
    node = dict(configured=False, refusals=refusals_after_apply)

    def mtls(call):
        if not node['configured']:
            return x509(ip)
        if node['refusals'] > 0:
            node['refusals'] -= 1
            return refused(ip)
        return machinestatus(ip)

    def insecure(call):
        return cert_required(ip) if node['configured'] else machinestatus(ip, 'maintenance', False)

    def apply(call):
        node['configured'] = True
        return OK
    script.on('get', 'machinestatus', node=ip, insecure=False, answer=mtls)
    script.on('get', 'machinestatus', node=ip, insecure=True, answer=insecure)
    script.on('apply-config', node=ip, insecure=True, answer=apply)
    return node


def test_maintenance_node_gets_exactly_one_insecure_apply_without_talosconfig(env):
    script, args = env
    installing_node(script, NODE)
    r = run_module(talos_apply, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['applied'] is True and r['insecure'] is True
    assert r['state_before'] == 'maintenance' and r['reboot_required'] is True
    calls = apply_calls(script)
    assert len(calls) == 1
    call = calls[0]
    assert call.insecure and call.nodes == [NODE] and call.endpoints == [NODE]
    assert call.talosconfig is None and '--talosconfig' not in call.argv
    assert '--dry-run' not in call.argv
    assert call.argv[call.argv.index('--file') + 1] == args['config']
    assert call.argv[call.argv.index('--mode') + 1] == 'auto'


def test_maintenance_node_without_talosconfig_option(env):
    script, args = env
    del args['talosconfig']
    script.on('get', 'machinestatus', node=NODE, insecure=True, answer=machinestatus(NODE, 'maintenance', False))
    script.on('apply-config', answer=OK)
    r = run_module(talos_apply, args)
    assert r['_rc'] == 0 and r['applied'] is True
    assert [c.insecure for c in apply_calls(script)] == [True]
    assert all(c.talosconfig is None for c in script.calls)


def test_maintenance_check_mode_reports_change_but_never_applies(env):
    script, args = env
    script.node(NODE, 'maintenance').on('apply-config', answer=OK)
    r = run_module(talos_apply, args, check=True, diff=True)
    assert r['_rc'] == 0 and r['changed'] is True and r['applied'] is False
    assert apply_calls(script) == []
    after = r['diff']['after']
    assert 'machine:' in after
    assert SECRET_KEY not in after and TOKEN not in after
    assert SECRET_KEY not in json.dumps(r)


def test_configured_no_changes_is_ok_and_not_applied(env):
    script, args = env
    script.node(NODE, 'configured').on('apply-config', has=('--dry-run',), answer=dry_run())
    r = run_module(talos_apply, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is False and r['applied'] is False and r['state_before'] == 'configured'
    assert len(apply_calls(script, dry=True)) == 1
    assert apply_calls(script, dry=False) == []
    dry = apply_calls(script, dry=True)[0]
    assert not dry.insecure and dry.talosconfig == args['talosconfig'] and dry.nodes == [NODE]


def test_configured_with_diff_applies_once_over_mtls(env):
    script, args = env
    script.node(NODE, 'configured')
    script.on('apply-config', has=('--dry-run',), answer=dry_run(DIFF, reboot=True))
    script.on('apply-config', answer=OK)
    r = run_module(talos_apply, dict(args, mode='no-reboot'), diff=True)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['applied'] is True and r['reboot_required'] is True
    real = apply_calls(script, dry=False)
    assert len(real) == 1
    assert not real[0].insecure and real[0].talosconfig == args['talosconfig']
    assert real[0].nodes == [NODE] and real[0].endpoints == [NODE]
    assert real[0].argv[real[0].argv.index('--mode') + 1] == 'no-reboot'
    # dry-run first, then the apply
    heads = [c for c in script.calls if c.words[:1] == ('apply-config',)]
    assert '--dry-run' in heads[0].argv and '--dry-run' not in heads[1].argv


def test_configured_diff_is_redacted(env):
    script, args = env
    script.node(NODE, 'configured')
    script.on('apply-config', has=('--dry-run',), answer=dry_run(DIFF))
    script.on('apply-config', answer=OK)
    r = run_module(talos_apply, args, diff=True)
    prepared = r['diff']['prepared']
    assert '@@ -3,7 +3,7 @@' in prepared
    dumped = json.dumps(r)
    for secret in (SECRET_KEY, TOKEN, 'bmV3LXNlY3JldC1rZXk=', 'zyxwvu.zyxwvutsrqponmlk'):
        assert secret not in dumped


def test_configured_check_mode_stops_after_the_dry_run(env):
    script, args = env
    script.node(NODE, 'configured')
    script.on('apply-config', has=('--dry-run',), answer=dry_run(DIFF))
    script.on('apply-config', answer=OK)
    r = run_module(talos_apply, args, check=True)
    assert r['_rc'] == 0 and r['changed'] is True and r['applied'] is False
    assert len(apply_calls(script, dry=True)) == 1
    assert apply_calls(script, dry=False) == []


def test_failed_precondition_is_retried_then_applied(env):
    script, args = env
    busy = fail('error applying new configuration', NODE, 'FailedPrecondition',
                'another apply configuration is already in progress')
    script.node(NODE, 'configured')
    script.on('apply-config', has=('--dry-run',), answer=dry_run(DIFF))
    script.on('apply-config', answer=[busy, busy, OK])
    r = run_module(talos_apply, args)
    assert r['_rc'] == 0, r
    assert r['applied'] is True
    assert len(apply_calls(script, dry=False)) == 3


def test_failed_precondition_gives_up_after_retries(env):
    script, args = env
    busy = fail('error applying new configuration', NODE, 'FailedPrecondition',
                'configuration was already applied and node is rebooting')
    script.node(NODE, 'maintenance').on('apply-config', answer=busy)
    r = run_module(talos_apply, dict(args, retries=2))
    assert r['_rc'] == 1 and r.get('failed') is True
    assert r['code'] == 'FailedPrecondition' and r['node'] == NODE
    assert len(apply_calls(script)) == 3
    assert 'retry later' in r['msg']


def test_invalid_argument_is_not_retried(env):
    script, args = env
    bad = fail('error applying new configuration', NODE, 'InvalidArgument',
               "the applied machine configuration doesn't contain v1alpha1 config")
    script.node(NODE, 'configured')
    script.on('apply-config', has=('--dry-run',), answer=bad)
    r = run_module(talos_apply, args)
    assert r['_rc'] == 1 and r['code'] == 'InvalidArgument'
    assert len(apply_calls(script)) == 1
    assert 'not a bare patch' in r['msg']


def test_configured_node_without_talosconfig_fails_with_fix(env):
    script, args = env
    del args['talosconfig']
    script.on('get', 'machinestatus', node=NODE, insecure=True, answer=cert_required(NODE))
    r = run_module(talos_apply, args)
    assert r['_rc'] == 1
    assert 'talosconfig' in r['msg'] and NODE in r['msg']
    assert apply_calls(script) == []


def test_unreachable_node_fails_within_one_probe(env):
    script, args = env
    script.node(NODE, 'unreachable')
    r = run_module(talos_apply, dict(args, retries=10))
    assert r['_rc'] == 1 and NODE in r['msg'] and 'did not answer within 10 seconds (probe_timeout)' in r['msg']
    assert 'connection refused on port 50000' in r['msg'] and 'nothing was applied' in r['msg']
    assert apply_calls(script) == []
    # one probe (a refusal retried at most twice), not `retries` attempts with long backoff
    assert len(script.find('get', 'machinestatus')) == 1 + talosctl_utils.PROBE_RETRIES


def test_after_the_install_the_node_is_waited_for_until_it_answers_configured(env):
    script, args = env
    installing_node(script, NODE, refusals_after_apply=3)   # reboots: refuses 3 probes
    r = run_module(talos_apply, args)
    assert r['_rc'] == 0, r
    assert r['applied'] is True and r['waited'] >= 0
    probes = script.find('get', 'machinestatus', lacks=('--insecure',))
    assert len(probes) >= 3   # asked again until it answered over mTLS


def test_node_that_does_not_come_back_fails_with_a_timeout_message(env):
    script, args = env
    installing_node(script, NODE, refusals_after_apply=10 ** 6)
    start = time.time()
    r = run_module(talos_apply, dict(args, wait_timeout=1))
    assert time.time() - start < 5
    assert r['_rc'] == 1 and r['applied'] is True
    assert 'did not answer over mTLS as a configured node within 1 seconds (wait_timeout)' in r['msg']


def test_without_wait_the_task_returns_right_after_the_apply(env):
    script, args = env
    installing_node(script, NODE, refusals_after_apply=10 ** 6)
    r = run_module(talos_apply, dict(args, wait=False))
    assert r['_rc'] == 0 and r['applied'] is True and r['waited'] == 0.0


def test_a_retried_insecure_apply_that_already_got_through_is_checked_over_mtls(env):
    """The first apply-config --insecure reached the node but its answer was lost (Unavailable); the retry meets
    a node that already requires mTLS: the module goes on with a dry-run instead of failing."""
    script, args = env
    state = dict(configured=False)

    def mtls(call):
        return machinestatus(NODE) if state['configured'] else x509(NODE)

    def insecure_apply(call):
        if state['configured']:
            return cert_required(NODE, 'error applying new configuration')
        state['configured'] = True
        return fail('error applying new configuration', NODE, 'Unavailable', 'error reading from server: EOF')
    script.on('get', 'machinestatus', node=NODE, insecure=False, answer=mtls)
    script.on('get', 'machinestatus', node=NODE, insecure=True, answer=machinestatus(NODE, 'maintenance', False))
    script.on('apply-config', insecure=True, answer=insecure_apply)
    script.on('apply-config', insecure=False, has=('--dry-run',), answer=dry_run())
    r = run_module(talos_apply, args)
    assert r['_rc'] == 0, r
    assert r['applied'] is True and r['changed'] is True
    assert len(apply_calls(script, dry=True)) == 1 and len(script.find('apply-config', has=('--insecure',))) == 2


def test_missing_dry_run_summary_fails(env):
    script, args = env
    script.node(NODE, 'configured').on('apply-config', has=('--dry-run',), answer=(0, '', 'Applied configuration\n'))
    r = run_module(talos_apply, args)
    assert r['_rc'] == 1 and 'Dry run summary' in r['msg'] and 'install talosctl' in r['msg']
    assert apply_calls(script, dry=False) == []


@pytest.mark.parametrize('content, words', [
    ('machine:\n  type: worker\n', "no 'version: v1alpha1' document"),
    ('version: v1alpha1\nmachine:\n  type: init\n', "machine.type 'init'"),
    ('version: v1alpha1\nmachine: [unclosed\n', 'not readable YAML'),
])
def test_bad_config_files_fail_before_any_talosctl_call(env, tmp_path, content, words):
    script, args = env
    bad = tmp_path / 'bad.yaml'
    bad.write_text(content)
    r = run_module(talos_apply, dict(args, config=str(bad)))
    assert r['_rc'] == 1 and words in r['msg'] and str(bad) in r['msg']
    assert script.calls == []


def test_missing_config_file_names_the_path(env, tmp_path):
    script, args = env
    r = run_module(talos_apply, dict(args, config=str(tmp_path / 'nope.yaml')))
    assert r['_rc'] == 1 and 'nope.yaml' in r['msg'] and 'does not exist' in r['msg']
    assert script.calls == []


def test_invalid_mode_is_rejected_by_argument_spec(env):
    script, args = env
    r = run_module(talos_apply, dict(args, mode='interactive'))
    assert r['_rc'] == 1 and 'mode' in r['msg'] and 'interactive' in r['msg']
    assert script.calls == []
