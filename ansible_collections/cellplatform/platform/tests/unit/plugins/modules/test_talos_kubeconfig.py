# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.talos_kubeconfig (in-process, scripted talosctl)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.modules import talos_kubeconfig
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    Script, fail, fake_talosctl, make_cert, run_module)

NODE = '192.168.100.51'
KEY_DATA = 'S0VZLURBVEEtbXVzdC1uZXZlci1sZWF2ZS10aGUtbW9kdWxl'


CERT_LONG = make_cert(365)
CERT_LONG_2 = make_cert(365)
CERT_SHORT = make_cert(5)


def kubeconfig(cert, server='https://192.168.100.50:6443', context='admin@cell', key=KEY_DATA):
    return yaml.safe_dump({
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': context,
        'clusters': [{'name': 'cell', 'cluster': {'server': server, 'certificate-authority-data': 'Q0EtREFUQQ=='}}],
        'contexts': [{'name': context, 'context': {'cluster': 'cell', 'user': context}}],
        'users': [{'name': context, 'user': {'client-certificate-data': cert, 'client-key-data': key}}],
    }, sort_keys=True)


def serving(text):
    """Answer of `talosctl kubeconfig PATH --force`: writes PATH."""
    def answer(call):
        with open(call.argv[1], 'w') as handle:
            handle.write(text)
        return (0, '', '')
    return answer


@pytest.fixture
def env(tmp_path, monkeypatch):
    script = Script()
    monkeypatch.setattr(talos_kubeconfig, 'Talosctl', fake_talosctl(script))
    tc = tmp_path / 'talosconfig'
    tc.write_text('context: cell\n')
    dest = tmp_path / 'work' / 'kubeconfig'
    dest.parent.mkdir(mode=0o700)
    args = dict(node=NODE, dest=str(dest), talosconfig=str(tc), retry_delay=0, retries=2)
    return script, args, dest


def leftovers(dest):
    return [f for f in os.listdir(str(dest.parent)) if f != dest.name]


def test_missing_dest_is_written_0600_and_content_never_returned(env):
    script, args, dest = env
    text = kubeconfig(CERT_LONG)
    script.on('kubeconfig', answer=serving(text))
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['reason'] == 'missing'
    assert dest.read_text() == text
    assert (os.stat(str(dest)).st_mode & 0o777) == 0o600
    dumped = json.dumps(r)
    assert KEY_DATA not in dumped and CERT_LONG not in dumped
    assert r['servers'] == ['https://192.168.100.50:6443'] and r['current_context'] == 'admin@cell'
    assert leftovers(dest) == []


def test_fetch_argv_uses_force_mtls_and_one_node(env):
    script, args, dest = env
    script.on('kubeconfig', answer=serving(kubeconfig(CERT_LONG)))
    run_module(talos_kubeconfig, dict(args, context_name='admin@cell-x'))
    (call,) = script.find('kubeconfig')
    assert '--force' in call.argv and call.nodes == [NODE] and call.endpoints == [NODE]
    assert not call.insecure and call.talosconfig == args['talosconfig']
    assert call.argv[call.argv.index('--force-context-name') + 1] == 'admin@cell-x'
    # fetched into a private temp dir next to dest, never dest itself
    assert call.argv[1] != str(dest) and os.path.dirname(os.path.dirname(call.argv[1])) == str(dest.parent)


def test_identical_content_is_unchanged_and_file_untouched(env):
    script, args, dest = env
    text = kubeconfig(CERT_LONG)
    dest.write_text(text)
    os.chmod(str(dest), 0o600)
    os.utime(str(dest), (1000000000, 1000000000))
    before = os.stat(str(dest))
    script.on('kubeconfig', answer=serving(text))
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 0 and r['changed'] is False and r['reason'] == 'identical'
    after = os.stat(str(dest))
    assert (after.st_ino, after.st_mtime) == (before.st_ino, before.st_mtime)
    assert leftovers(dest) == []


def test_fresh_client_cert_for_same_cluster_keeps_the_stored_file(env):
    script, args, dest = env
    old = kubeconfig(CERT_LONG)
    dest.write_text(old)
    os.chmod(str(dest), 0o600)
    script.on('kubeconfig', answer=serving(kubeconfig(CERT_LONG_2, key='T1RIRVIta2V5')))
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 0 and r['changed'] is False
    assert dest.read_text() == old


def test_expiring_client_cert_is_renewed(env):
    script, args, dest = env
    dest.write_text(kubeconfig(CERT_SHORT))
    os.chmod(str(dest), 0o600)
    new = kubeconfig(CERT_LONG)
    script.on('kubeconfig', answer=serving(new))
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 0 and r['changed'] is True and 'expires in' in r['reason']
    assert dest.read_text() == new


def test_different_server_is_rewritten(env):
    script, args, dest = env
    dest.write_text(kubeconfig(CERT_LONG, server='https://10.0.0.1:6443'))
    os.chmod(str(dest), 0o644)
    new = kubeconfig(CERT_LONG)
    script.on('kubeconfig', answer=serving(new))
    r = run_module(talos_kubeconfig, args)
    assert r['changed'] is True and r['reason'] == 'different cluster, user or context'
    assert dest.read_text() == new and (os.stat(str(dest)).st_mode & 0o777) == 0o600


def test_wrong_mode_is_fixed_without_rewriting(env):
    script, args, dest = env
    text = kubeconfig(CERT_LONG)
    dest.write_text(text)
    os.chmod(str(dest), 0o644)
    script.on('kubeconfig', answer=serving(text))
    r = run_module(talos_kubeconfig, args)
    assert r['changed'] is True and r['reason'] == 'mode is not 0600'
    assert (os.stat(str(dest)).st_mode & 0o777) == 0o600


def test_check_mode_writes_nothing(env):
    script, args, dest = env
    script.on('kubeconfig', answer=serving(kubeconfig(CERT_LONG)))
    r = run_module(talos_kubeconfig, args, check=True)
    assert r['_rc'] == 0 and r['changed'] is True
    assert not dest.exists() and leftovers(dest) == []


def test_check_mode_does_not_chmod(env):
    script, args, dest = env
    text = kubeconfig(CERT_LONG)
    dest.write_text(text)
    os.chmod(str(dest), 0o644)
    script.on('kubeconfig', answer=serving(text))
    r = run_module(talos_kubeconfig, args, check=True)
    assert r['changed'] is True
    assert (os.stat(str(dest)).st_mode & 0o777) == 0o644


def test_missing_dest_directory_fails_with_fix(env, tmp_path):
    script, args, dest = env
    r = run_module(talos_kubeconfig, dict(args, dest=str(tmp_path / 'nope' / 'kubeconfig')))
    assert r['_rc'] == 1 and 'does not exist' in r['msg'] and 'nope' in r['msg']
    assert script.calls == []


def test_talosconfig_required(env):
    script, args, dest = env
    del args['talosconfig']
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 1 and 'talosconfig' in r['msg']
    assert script.calls == []


def test_talosctl_failure_is_reported_and_temp_dir_removed(env):
    script, args, dest = env
    script.on('kubeconfig', answer=fail('error copying', NODE, 'Unimplemented',
                                        'kubeconfig is only available on control plane nodes'))
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 1 and r['code'] == 'Unimplemented' and r['node'] == NODE
    assert not dest.exists() and leftovers(dest) == []
