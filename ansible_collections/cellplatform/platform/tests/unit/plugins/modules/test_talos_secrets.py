# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.talos_secrets (in-process, scripted talosctl, the real sops, real age keys)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils
from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import atomic_write
from ansible_collections.cellplatform.platform.plugins.modules import talos_secrets
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    CP, AgeKeys, Script, bundle_yaml, fake_talosctl, leaks, run_module)


def generating(text):
    """Answer of `talosctl gen secrets --output-file PATH`: writes PATH."""
    def answer(call):
        with open(call.argv[call.argv.index('--output-file') + 1], 'w') as handle:
            handle.write(text)
        return (0, '', '')
    return answer


@pytest.fixture
def env(tmp_path, monkeypatch):
    script = Script()
    monkeypatch.setattr(talos_secrets, 'Talosctl', fake_talosctl(script))
    keys = AgeKeys(tmp_path / 'keys')
    secrets = tmp_path / 'secrets'
    secrets.mkdir()
    work = tmp_path / 'work'
    args = dict(path=str(secrets / 'talos-secrets.sops.yaml'), age_recipients=keys.recipients,
                age_identity=str(keys.identity), work_dir=str(work), retry_delay=0, retries=0)
    return script, args, keys, work


def store(keys, path, text, recipients):
    atomic_write(path, sops_utils.Sops(str(keys.identity)).encrypt(text, recipients, path))


def gen_calls(script):
    return script.find('gen', 'secrets')


def test_missing_bundle_for_unconfigured_nodes_is_generated_encrypted(env):
    script, args, keys, work = env
    for ip in CP:
        script.node(ip, 'maintenance')
    script.on('gen', 'secrets', answer=generating(bundle_yaml()))
    r = run_module(talos_secrets, dict(args, nodes=CP))
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['generated'] is True and r['contract'] == 'v1.13'
    assert r['node_states'] == dict((ip, 'maintenance') for ip in CP)
    (call,) = gen_calls(script)
    assert call.argv[call.argv.index('--talos-version') + 1] == 'v1.13'
    assert '--nodes' not in call.argv and '--talosconfig' not in call.argv and not call.insecure
    raw = open(args['path'], 'rb').read()
    assert sops_utils.recipients_of_file(args['path']) == keys.recipients and b'ENC[AES256_GCM' in raw
    assert (os.stat(args['path']).st_mode & 0o777) == 0o600
    assert yaml.safe_load(sops_utils.decrypt_file(args['path'], str(keys.identity))) == yaml.safe_load(bundle_yaml())
    assert leaks(r) == []
    # the plaintext lived in a private temp dir under work_dir and is gone
    assert os.path.dirname(os.path.dirname(call.argv[call.argv.index('--output-file') + 1])) == str(work)
    assert os.listdir(str(work)) == []
    assert os.listdir(os.path.dirname(args['path'])) == ['talos-secrets.sops.yaml']


def test_cluster_configured_false_without_nodes_generates_without_asking_nodes(env):
    script, args, keys, work = env
    script.on('gen', 'secrets', answer=generating(bundle_yaml()))
    r = run_module(talos_secrets, dict(args, cluster_configured=False))
    assert r['_rc'] == 0 and r['generated'] is True
    assert script.find('get') == [] and len(gen_calls(script)) == 1


def test_existing_valid_bundle_is_kept_without_talosctl(env):
    script, args, keys, work = env
    store(keys, args['path'], bundle_yaml(), keys.recipients)
    before = open(args['path'], 'rb').read()
    r = run_module(talos_secrets, dict(args, nodes=CP))
    assert r['_rc'] == 0, r
    assert r['changed'] is False and r['exists'] is True and r['generated'] is False
    assert script.calls == []
    assert open(args['path'], 'rb').read() == before
    assert leaks(r) == []


def test_existing_bundle_for_other_recipients_fails_closed(env):
    script, args, keys, work = env
    store(keys, args['path'], bundle_yaml(), keys.other_recipients)
    before = open(args['path'], 'rb').read()
    r = run_module(talos_secrets, dict(args, cluster_configured=False))
    assert r['_rc'] == 1
    assert args['path'] in r['msg'] and 'never regenerated' in r['msg'] and 'identity' in r['msg']
    assert open(args['path'], 'rb').read() == before
    assert gen_calls(script) == []


def test_existing_incomplete_bundle_names_the_missing_fields(env):
    script, args, keys, work = env
    doc = yaml.safe_load(bundle_yaml())
    del doc['trustdinfo']
    doc['certs']['os']['key'] = ''
    store(keys, args['path'], yaml.safe_dump(doc), keys.recipients)
    r = run_module(talos_secrets, dict(args, cluster_configured=False))
    assert r['_rc'] == 1
    assert 'trustdinfo.token' in r['msg'] and 'certs.os.key' in r['msg'] and 'restore it from backup' in r['msg']
    assert leaks(r) == [] and gen_calls(script) == []


def test_existing_plaintext_file_fails_closed(env):
    script, args, keys, work = env
    with open(args['path'], 'w') as handle:
        handle.write(bundle_yaml())
    r = run_module(talos_secrets, dict(args, cluster_configured=False))
    assert r['_rc'] == 1 and 'not a SOPS-encrypted file' in r['msg']
    assert leaks(r) == [] and gen_calls(script) == []
    assert open(args['path']).read() == bundle_yaml()


def test_cluster_configured_true_and_missing_bundle_refuses(env):
    script, args, keys, work = env
    r = run_module(talos_secrets, dict(args, cluster_configured=True))
    assert r['_rc'] == 1 and 'the caller (cluster_configured) says' in r['msg'] and 'restore it from backup' in r['msg']
    assert 'cluster_configured=' not in r['msg']   # never suggests a setting
    assert not os.path.exists(args['path']) and script.calls == []


def test_one_configured_node_refuses_and_names_it(env):
    script, args, keys, work = env
    script.node(CP[0], 'maintenance')
    script.node(CP[1], 'configured')
    script.node(CP[2], 'maintenance')
    r = run_module(talos_secrets, dict(args, nodes=CP))
    assert r['_rc'] == 1 and CP[1] in r['msg'] and 'lock you out' in r['msg']
    assert CP[0] not in r['msg']
    assert gen_calls(script) == [] and not os.path.exists(args['path'])


def test_cluster_configured_false_but_configured_node_still_refuses(env):
    script, args, keys, work = env
    script.node(CP[0], 'configured')
    r = run_module(talos_secrets, dict(args, cluster_configured=False, nodes=[CP[0]]))
    assert r['_rc'] == 1 and CP[0] in r['msg']
    assert gen_calls(script) == [] and not os.path.exists(args['path'])


def test_unreachable_nodes_refuse_in_one_message(env):
    script, args, keys, work = env
    script.node(CP[0], 'maintenance')
    script.node(CP[1], 'unreachable')
    script.node(CP[2], 'unreachable')
    r = run_module(talos_secrets, dict(args, nodes=list(CP)))
    assert r['_rc'] == 1
    assert '%s (connection refused on port 50000), %s (connection refused on port 50000)' % (CP[1], CP[2]) \
        in r['msg'] and 'did not answer within 10 seconds (probe_timeout)' in r['msg']
    assert 'restore the bundle from backup' in r['msg'] and 'cluster_configured' not in r['msg']
    assert r['node_states'] == {CP[0]: 'maintenance', CP[1]: 'unreachable', CP[2]: 'unreachable'}
    assert gen_calls(script) == [] and not os.path.exists(args['path'])


def test_node_of_another_cluster_refuses(env, tmp_path):
    script, args, keys, work = env
    tc = tmp_path / 'talosconfig'
    tc.write_text('context: cell\n')
    script.node(CP[0], 'foreign')
    r = run_module(talos_secrets, dict(args, nodes=[CP[0]], talosconfig=str(tc)))
    assert r['_rc'] == 1 and r['node'] == CP[0]
    assert 'cannot tell whether node(s) %s' % CP[0] in r['msg'] and 'x509' in r['msg']
    assert 'cluster_configured' not in r['msg']
    assert gen_calls(script) == []


def test_configured_node_without_talosconfig_still_counts_as_configured(env):
    script, args, keys, work = env
    script.node(CP[0], 'configured')
    r = run_module(talos_secrets, dict(args, nodes=[CP[0]]))
    assert r['_rc'] == 1 and 'nodes %s already run a configured Talos' % CP[0] in r['msg']
    assert [c.insecure for c in script.calls] == [True]
    assert gen_calls(script) == []


def test_check_mode_generates_nothing(env):
    script, args, keys, work = env
    script.node(CP[0], 'maintenance')
    script.on('gen', 'secrets', answer=generating(bundle_yaml()))
    r = run_module(talos_secrets, dict(args, nodes=[CP[0]]), check=True)
    assert r['_rc'] == 0 and r['changed'] is True and r['generated'] is False and 'check mode' in r['msg']
    assert gen_calls(script) == [] and not os.path.exists(args['path'])
    assert not os.path.exists(str(work))


def test_check_mode_writes_a_throwaway_bundle_for_the_preview_only_when_asked(env, tmp_path):
    """preview_path: a check-mode run of a new cell gets an encrypted throwaway bundle there (never at
    path), so the machine configs that would be applied can be shown; the cell's bundle is not written."""
    script, args, keys, work = env
    script.node(CP[0], 'maintenance')
    script.on('gen', 'secrets', answer=generating(bundle_yaml()))
    preview = tmp_path / 'plaintext' / 'talos-secrets.preview.sops.yaml'
    preview.parent.mkdir()
    r = run_module(talos_secrets, dict(args, nodes=[CP[0]], preview_path=str(preview)), check=True)
    assert r['_rc'] == 0 and r['changed'] is True and r['generated'] is False, r
    assert r['preview'] == str(preview) and not os.path.exists(args['path'])
    assert sops_utils.recipients_of_file(str(preview)) == keys.recipients and b'ENC[AES256_GCM' in preview.read_bytes()
    assert yaml.safe_load(sops_utils.decrypt_file(str(preview), str(keys.identity)))['cluster']
    assert len(gen_calls(script)) == 1
    # the plaintext of the generation lived under work_dir and is gone
    assert [p for p in work.rglob('*') if p.is_file()] == []
    # an existing bundle is verified, not previewed
    preview.unlink()
    run_module(talos_secrets, dict(args, nodes=[CP[0]]))
    r = run_module(talos_secrets, dict(args, nodes=[CP[0]], preview_path=str(preview)), check=True)
    assert r['_rc'] == 0 and r['changed'] is False and 'preview' not in r and not preview.exists()


def test_empty_recipients_fail_before_generating(env):
    script, args, keys, work = env
    script.on('gen', 'secrets', answer=generating(bundle_yaml()))
    r = run_module(talos_secrets, dict(args, cluster_configured=False, age_recipients=[]))
    assert r['_rc'] == 1 and 'age_recipients is empty' in r['msg']
    assert gen_calls(script) == [] and not os.path.exists(args['path'])


def test_invalid_recipient_names_field_index_and_value(env):
    script, args, keys, work = env
    script.on('gen', 'secrets', answer=generating(bundle_yaml()))
    r = run_module(talos_secrets, dict(args, cluster_configured=False, age_recipients=['age1nope']))
    assert r['_rc'] == 1 and "age_recipients[0] = 'age1nope'" in r['msg'] and 'age-keygen -y' in r['msg']
    assert gen_calls(script) == []


def test_incomplete_generated_bundle_is_not_written(env):
    script, args, keys, work = env
    doc = yaml.safe_load(bundle_yaml())
    del doc['secrets']['bootstraptoken']
    script.on('gen', 'secrets', answer=generating(yaml.safe_dump(doc)))
    r = run_module(talos_secrets, dict(args, cluster_configured=False))
    assert r['_rc'] == 1 and 'secrets.bootstraptoken' in r['msg'] and 'install' in r['msg']
    assert not os.path.exists(args['path']) and leaks(r) == []
    assert os.listdir(str(work)) == []
    assert os.listdir(os.path.dirname(args['path'])) == []


def test_either_cluster_configured_or_nodes_is_required(env):
    script, args, keys, work = env
    r = run_module(talos_secrets, args)
    assert r['_rc'] == 1 and 'cluster_configured' in r['msg'] and 'nodes' in r['msg']
    assert script.calls == []


def test_bad_talos_version_names_value_and_form(env):
    script, args, keys, work = env
    r = run_module(talos_secrets, dict(args, cluster_configured=False, talos_version='latest'))
    assert r['_rc'] == 1 and "'latest'" in r['msg'] and 'vX.Y.Z' in r['msg']
    assert script.calls == []


def test_unreadable_fresh_bundle_is_not_left_behind(env):
    script, args, keys, work = env
    script.on('gen', 'secrets', answer=generating(bundle_yaml()))
    r = run_module(talos_secrets, dict(args, cluster_configured=False, age_recipients=keys.other_recipients))
    assert r['_rc'] == 1 and 'no key in the age identity file' in r['msg']
    assert not os.path.exists(args['path'])
    assert os.listdir(os.path.dirname(args['path'])) == []


@pytest.mark.parametrize('version, contract', [('v1.13.9', 'v1.13'), ('1.14.0', 'v1.14'), ('v1.14.0-rc.1', 'v1.14')])
def test_talos_contract(version, contract):
    assert talos_secrets.talos_contract(version) == contract


def test_gen_secrets_failure_writes_nothing(env):
    script, args, keys, work = env
    script.on('gen', 'secrets', answer=(1, '', 'unknown flag: --talos-version\n'))
    r = run_module(talos_secrets, dict(args, cluster_configured=False))
    assert r['_rc'] == 1 and 'install talosctl' in r['msg']
    assert not os.path.exists(args['path']) and os.listdir(str(work)) == []


@pytest.mark.parametrize('answer', [
    (1, '', 'unknown flag: --talos-version\n'),
    generating('cluster: {id: x}\n'),
], ids=['talosctl-error', 'incomplete-bundle'])
def test_failed_generation_reports_unchanged(env, answer):
    script, args, keys, work = env
    script.on('gen', 'secrets', answer=answer)
    r = run_module(talos_secrets, dict(args, cluster_configured=False))
    assert r['_rc'] == 1 and not os.path.exists(args['path'])
    assert r['changed'] is False
