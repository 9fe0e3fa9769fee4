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


def kubeconfig(cert, server='https://192.168.100.50:6443', context='admin@cell', key=KEY_DATA, ca='Q0EtREFUQQ=='):
    return yaml.safe_dump({
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': context,
        'clusters': [{'name': 'cell', 'cluster': {'server': server, 'certificate-authority-data': ca}}],
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
    assert r['_rc'] == 0 and r['changed'] is False and r['reason'] == 'equivalent'
    assert dest.read_text() == old


def test_credentials_are_compared_as_opaque_data_never_as_x509(env):
    """Talos issues a new certificate per call; whatever its format (here: not X.509 at all), only its
    presence matters, so a rerun keeps the stored file."""
    script, args, dest = env
    old = kubeconfig('Tk9ULUFOLVg1MDktMQ==')
    dest.write_text(old)
    os.chmod(str(dest), 0o600)
    script.on('kubeconfig', answer=serving(kubeconfig('Tk9ULUFOLVg1MDktMg==', key='T1RIRVIta2V5')))
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 0 and r['changed'] is False and r['reason'] == 'equivalent'
    assert dest.read_text() == old


@pytest.mark.parametrize('change', [
    dict(server='https://10.0.0.1:6443'),
    dict(context='ops@cell'),
    dict(ca='T1RIRVItQ0E='),
    dict(cert=''),                 # the stored file lacks the client credential
])
def test_anything_but_the_credential_differing_replaces_the_file(env, change):
    script, args, dest = env
    stored = dict(cert=CERT_LONG)
    stored.update(change)
    dest.write_text(kubeconfig(**stored) if 'cert' in change else kubeconfig(CERT_LONG, **change))
    os.chmod(str(dest), 0o600)
    new = kubeconfig(CERT_LONG_2)
    script.on('kubeconfig', answer=serving(new))
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 0 and r['changed'] is True and r['reason'] == 'different cluster, user or context'
    assert dest.read_text() == new


def test_transient_failures_are_retried(env):
    script, args, dest = env
    text = kubeconfig(CERT_LONG)
    served = serving(text)
    answers = [fail('error copying', NODE, 'Unavailable', 'error reading from server: EOF')]

    def flaky(call):
        return answers.pop(0) if answers else served(call)
    script.on('kubeconfig', answer=flaky)
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 0 and r['changed'] is True and len(script.find('kubeconfig')) == 2


def test_failure_message_never_shows_the_private_temp_path(env):
    script, args, dest = env

    def denied(call):
        return (1, '', 'error copying: open %s: permission denied\n' % call.argv[1])
    script.on('kubeconfig', answer=denied)
    r = run_module(talos_kubeconfig, args)
    assert r['_rc'] == 1 and '.talos-kubeconfig-' not in json.dumps(r) and str(dest.parent) not in json.dumps(r)
    assert 'talosctl kubeconfig on node %s' % NODE in r['msg'] and '<kubeconfig>' in r['msg']


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
