# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.talos_config (in-process, scripted talosctl, the real sops, real age keys).

The scripted talosctl emulates the offline commands talos_config uses (``gen config``, ``config
endpoint``/``config node``, ``machineconfig patch``, ``validate``) just far enough to write the files
the module reads: configs carry the bundle's secrets and every ``gen config`` issues a fresh admin
client certificate, as the real one does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils
from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import atomic_write
from ansible_collections.cellplatform.platform.plugins.modules import talos_config
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    CP, WORKERS, AgeKeys, BUNDLE_SECRETS, OK, Script, bundle_yaml, fake_talosctl, leaks, make_cert, run_module)

ENDPOINT = 'https://192.168.100.50:6443'
IMAGE = 'factory.talos.dev/nocloud-installer/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:v1.13.9'
CA = make_cert(3650, 'talos')
NODES = [dict(name='cp-1', role='controlplane', ip=CP[0]), dict(name='cp-2', role='controlplane', ip=CP[1]),
         dict(name='worker-1', role='worker', ip=WORKERS[0])]


def _flag(argv, name):
    return argv[argv.index(name) + 1]


def _merge(base, patch):
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class FakeGen(object):
    """Offline talosctl commands of talos_config; ``client_cert()`` makes the admin cert each gen config issues."""

    def __init__(self, script, client_cert=lambda: make_cert(365)):
        self.client_cert = client_cert
        script.on('gen', 'config', answer=self.gen_config)
        script.on('config', 'endpoint', answer=self.config_edit('endpoints'))
        script.on('config', 'node', answer=self.config_edit('nodes'))
        script.on('machineconfig', 'patch', answer=self.patch)
        script.on('validate', answer=OK)

    def gen_config(self, call):
        bundle = yaml.safe_load(open(_flag(call.argv, '--with-secrets')).read())
        out = _flag(call.argv, '--output')
        os.makedirs(out, exist_ok=True)
        patches = [(f, p[1:]) for f, p in zip(call.argv, call.argv[1:])
                   if f in ('--config-patch', '--config-patch-control-plane', '--config-patch-worker')]
        for role in ('controlplane', 'worker'):
            doc = dict(version='v1alpha1', machine=dict(
                type=role, token=bundle['trustdinfo']['token'],
                ca=dict(crt=bundle['certs']['os']['crt'], key=bundle['certs']['os']['key']),
                install=dict(disk=_flag(call.argv, '--install-disk'), image=_flag(call.argv, '--install-image'))),
                cluster=dict(id=bundle['cluster']['id'], secret=bundle['cluster']['secret'],
                             controlPlane=dict(endpoint=call.argv[3]), clusterName=call.argv[2]))
            for flag, path in patches:
                if flag == '--config-patch' or flag.endswith(role.replace('controlplane', 'control-plane')):
                    _merge(doc, yaml.safe_load(open(path).read()))
            text = yaml.safe_dump(doc, sort_keys=False) + '---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n'
            with open(os.path.join(out, '%s.yaml' % role), 'w') as handle:
                handle.write(text)
        tc = dict(context=call.argv[2], contexts={call.argv[2]: dict(
            endpoints=[], ca=CA, crt=self.client_cert(), key=BUNDLE_SECRETS['key'])})
        with open(os.path.join(out, 'talosconfig'), 'w') as handle:
            handle.write(yaml.safe_dump(tc, sort_keys=False))
        return OK

    @staticmethod
    def config_edit(field):
        def answer(call):
            path = _flag(call.argv, '--talosconfig')
            doc = yaml.safe_load(open(path).read())
            values = call.argv[2:call.argv.index('--talosconfig')]
            doc['contexts'][doc['context']][field] = values
            with open(path, 'w') as handle:
                handle.write(yaml.safe_dump(doc, sort_keys=False))
            return OK
        return answer

    @staticmethod
    def patch(call):
        docs = list(yaml.safe_load_all(open(call.argv[2]).read()))
        for flag, path in zip(call.argv, call.argv[1:]):
            if flag == '--patch':
                _merge(docs[0], yaml.safe_load(open(path[1:]).read()))
        with open(_flag(call.argv, '--output'), 'w') as handle:
            handle.write(yaml.safe_dump_all(docs, sort_keys=False))
        return OK


@pytest.fixture
def env(tmp_path, monkeypatch):
    script = Script()
    monkeypatch.setattr(talos_config, 'Talosctl', fake_talosctl(script))
    keys = AgeKeys(tmp_path / 'keys')
    secrets = tmp_path / 'secrets'
    secrets.mkdir()
    bundle = secrets / 'talos-secrets.sops.yaml'
    bundle.write_bytes(sops_utils.Sops(str(keys.identity)).encrypt(bundle_yaml(), keys.recipients, str(bundle)))
    patches = tmp_path / 'build' / 'l0' / 'talos'
    (patches / 'nodes').mkdir(parents=True)
    (patches / 'all.yaml').write_text('machine:\n  kubelet:\n    nodeIP:\n      validSubnets: [192.168.100.0/24]\n')
    (patches / 'controlplane.yaml').write_text('cluster:\n  allowSchedulingOnControlPlanes: false\n')
    (patches / 'worker.yaml').write_text('machine:\n  nodeLabels:\n    role: worker\n')
    for node in NODES:
        (patches / 'nodes' / ('%s.yaml' % node['name'])).write_text(
            'machine:\n  network:\n    hostname: %s\n' % node['name'])
    work = tmp_path / 'work'
    args = dict(cluster_name='cell', cluster_endpoint=ENDPOINT, secrets_bundle=str(bundle), install_image=IMAGE,
                patches=dict(common=[str(patches / 'all.yaml')], controlplane=[str(patches / 'controlplane.yaml')],
                             worker=[str(patches / 'worker.yaml')]),
                nodes=[dict(n) for n in NODES], node_patch_dir=str(patches / 'nodes'),
                dest=str(secrets / 'configs'), talosconfig_dest=str(secrets / 'talosconfig.sops.yaml'),
                talos_endpoints=CP[:2], age_recipients=keys.recipients, age_identity=str(keys.identity),
                work_dir=str(work), retry_delay=0, retries=0)
    return script, args, keys, work


def read(path, keys):
    return sops_utils.decrypt_file(path, str(keys.identity)).decode()


def snapshot(args):
    files = [os.path.join(args['dest'], f) for f in sorted(os.listdir(args['dest']))] + [args['talosconfig_dest']]
    return dict((f, open(f, 'rb').read()) for f in files)


def test_first_run_writes_every_node_and_the_talosconfig_encrypted(env):
    script, args, keys, work = env
    FakeGen(script)
    r = run_module(talos_config, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['contract'] == 'v1.13' and r['validated'] is True
    assert r['changed_nodes'] == ['cp-1', 'cp-2', 'worker-1'] and r['talosconfig']['changed'] is True
    assert sorted(os.listdir(args['dest'])) == ['cp-1.sops.yaml', 'cp-2.sops.yaml', 'worker-1.sops.yaml']
    for name, role in (('cp-1', 'controlplane'), ('worker-1', 'worker')):
        path = os.path.join(args['dest'], '%s.sops.yaml' % name)
        assert sops_utils.recipients_of_file(path) == keys.recipients
        assert (os.stat(path).st_mode & 0o777) == 0o600
        doc = list(yaml.safe_load_all(read(path, keys)))[0]
        assert doc['machine']['type'] == role and doc['machine']['network']['hostname'] == name
        assert doc['machine']['kubelet']['nodeIP']['validSubnets'] == ['192.168.100.0/24']
    assert (os.stat(args['dest']).st_mode & 0o777) == 0o700
    tc = yaml.safe_load(read(args['talosconfig_dest'], keys))
    assert tc['contexts']['cell']['endpoints'] == CP[:2] and tc['contexts']['cell']['nodes'] == [CP[0]]
    assert leaks(r) == []
    assert os.listdir(str(work)) == []   # the private temp dir is gone


def test_gen_config_argv(env):
    script, args, keys, work = env
    FakeGen(script)
    run_module(talos_config, args)
    (gen,) = script.find('gen', 'config')
    argv = gen.argv
    assert argv[2:4] == ['cell', ENDPOINT]
    assert _flag(argv, '--talos-version') == 'v1.13' and _flag(argv, '--kubernetes-version') == '1.36.3'
    assert _flag(argv, '--install-image') == IMAGE and _flag(argv, '--install-disk') == '/dev/sda'
    assert _flag(argv, '--config-patch') == '@' + args['patches']['common'][0]
    assert _flag(argv, '--config-patch-control-plane') == '@' + args['patches']['controlplane'][0]
    assert _flag(argv, '--config-patch-worker') == '@' + args['patches']['worker'][0]
    assert _flag(argv, '--output-types') == 'controlplane,worker,talosconfig'
    assert '--with-docs=false' in argv and '--with-examples=false' in argv and '--force' in argv
    assert os.path.dirname(os.path.dirname(_flag(argv, '--with-secrets'))) == str(work)
    assert '--nodes' not in argv and '--talosconfig' not in argv
    (endpoint,) = script.find('config', 'endpoint')
    assert endpoint.argv[2:4] == CP[:2] and '--nodes' not in endpoint.argv
    assert len(script.find('machineconfig', 'patch')) == 3
    assert len(script.find('validate')) == 3
    for call in script.find('validate'):
        assert _flag(call.argv, '--mode') == 'metal' and '--strict' in call.argv


def test_rerun_is_unchanged_and_byte_identical(env):
    script, args, keys, work = env
    FakeGen(script)
    run_module(talos_config, args)
    before = snapshot(args)
    r = run_module(talos_config, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is False and r['changed_nodes'] == [] and r['talosconfig']['changed'] is False
    assert snapshot(args) == before


def test_talosconfig_is_kept_when_only_the_issued_credential_differs(env):
    """gen config issues a new admin certificate every time; it is compared as opaque data (never parsed as
    X.509), so even a certificate no X.509 parser would read keeps a rerun at changed=false."""
    script, args, keys, work = env
    FakeGen(script, client_cert=lambda: base64.b64encode(os.urandom(48)).decode())
    run_module(talos_config, args)
    before = snapshot(args)
    r = run_module(talos_config, args)
    assert r['_rc'] == 0, r
    assert r['changed'] is False and r['talosconfig']['changed'] is False
    assert snapshot(args) == before


TC = dict(context='cell',
          contexts=dict(cell=dict(endpoints=list(CP), nodes=[CP[0]], ca=CA, crt='Q1JULTE=', key='S0VZLTE=')))


def _tc(**change):
    doc = yaml.safe_load(yaml.safe_dump(TC))
    doc['contexts']['cell'].update(change)
    return yaml.safe_dump(doc)


@pytest.mark.parametrize('old,new,kept', [
    (_tc(), _tc(crt='Q1JULTI=', key='S0VZLTI='), True),                 # fresh credential only
    (_tc(), _tc(endpoints=CP[:2]), False),                              # endpoints changed
    (_tc(), _tc(nodes=[CP[1]]), False),                                 # default node changed
    (_tc(), _tc(ca='T1RIRVItQ0E='), False),                             # another cluster's CA
    (_tc(crt=''), _tc(), False),                                        # the stored one has no credential
    (_tc(), _tc(cluster='omni'), False),                                # any other setting
    (_tc(), yaml.safe_dump(dict(TC, context='other', contexts=dict(other=TC['contexts']['cell']))), False),
    ('not: [yaml', _tc(), False),
])
def test_talosconfig_equivalence(old, new, kept):
    assert talos_config.talosconfig_equivalent(old, new) is kept


def test_changed_patch_rewrites_only_that_node(env):
    script, args, keys, work = env
    FakeGen(script)
    run_module(talos_config, args)
    before = snapshot(args)
    with open(os.path.join(args['node_patch_dir'], 'cp-2.yaml'), 'w') as handle:
        handle.write('machine:\n  network:\n    hostname: cp-two\n')
    r = run_module(talos_config, args)
    assert r['changed'] is True and r['changed_nodes'] == ['cp-2']
    after = snapshot(args)
    changed = sorted(os.path.basename(f) for f in after if after[f] != before[f])
    assert changed == ['cp-2.sops.yaml']


def test_check_mode_writes_nothing(env):
    script, args, keys, work = env
    FakeGen(script)
    r = run_module(talos_config, args, check=True)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['changed_nodes'] == ['cp-1', 'cp-2', 'worker-1']
    assert not os.path.exists(args['dest']) and not os.path.exists(args['talosconfig_dest'])
    assert not os.path.exists(str(work))


def test_diff_is_redacted(env):
    script, args, keys, work = env
    FakeGen(script)
    run_module(talos_config, args)
    with open(os.path.join(args['node_patch_dir'], 'cp-1.yaml'), 'w') as handle:
        handle.write('machine:\n  network:\n    hostname: cp-one\n')
    r = run_module(talos_config, args, diff=True)
    assert r['_rc'] == 0
    (diff,) = r['diff']
    assert diff['before_header'].endswith('cp-1.sops.yaml (secrets redacted)')
    assert 'hostname: cp-1' in diff['before'] and 'hostname: cp-one' in diff['after']
    assert '<redacted>' in diff['after']
    assert leaks(r) == []


def test_all_input_problems_are_reported_at_once(env, tmp_path):
    script, args, keys, work = env
    bad = dict(args, cluster_endpoint='http://192.168.100.50:6443', talos_endpoints=[],
               secrets_bundle=str(tmp_path / 'missing.sops.yaml'), parallelism=0, age_recipients=[],
               nodes=[dict(name='cp 1', role='controlplane'), dict(name='w', role='master', disk='/dev/vda'),
                      dict(name='w', role='worker', patch=str(tmp_path / 'none.yaml'))],
               node_patch_dir=None)
    r = run_module(talos_config, bad)
    assert r['_rc'] == 1
    text = '\n'.join(r['problems'])
    for words in ("cluster_endpoint 'http://192.168.100.50:6443'", 'talos_endpoints is empty',
                  "nodes[0].name = 'cp 1'", "nodes[1].role = 'master'", 'nodes[1] has unsupported key(s) disk',
                  "nodes[2].name = 'w' appears twice", 'nodes[2].patch[0]', 'missing.sops.yaml',
                  'parallelism = 0', 'age_recipients is empty'):
        assert words in text, words
    assert r['msg'].startswith('talos_config cannot run: ')
    assert script.calls == []


def test_vip_as_talos_endpoint_is_rejected(env):
    script, args, keys, work = env
    r = run_module(talos_config, dict(args, talos_endpoints=[CP[0], '192.168.100.50']))
    assert r['_rc'] == 1
    assert r['problems'] == ["talos_endpoints[1] = '192.168.100.50' is the API VIP (host of cluster_endpoint); the "
                             "VIP depends on etcd and kube-apiserver, so use the control-plane IP addresses instead"]


def test_cell_without_control_plane_is_rejected(env):
    script, args, keys, work = env
    r = run_module(talos_config, dict(args, nodes=[dict(NODES[2])]))
    assert r['_rc'] == 1 and any('no node with role controlplane' in p for p in r['problems'])


def test_validate_failure_names_node_and_writes_nothing(env):
    script, args, keys, work = env
    script.on('validate', has=('--config',), answer=lambda call: (
        (1, '', '1 error occurred:\n\t* hostname config: HostnameConfig: auto must be "off"\n')
        if call.argv[call.argv.index('--config') + 1].endswith('worker-1.yaml') else OK))
    FakeGen(script)
    r = run_module(talos_config, args)
    assert r['_rc'] == 1
    assert 'worker-1 (worker)' in r['msg'] and 'validate --mode metal --strict' in r['msg']
    assert not os.path.exists(args['talosconfig_dest'])
    assert not os.path.exists(args['dest']) or os.listdir(args['dest']) == []
    assert leaks(r) == []


def test_validate_false_skips_validation(env):
    script, args, keys, work = env
    FakeGen(script)
    r = run_module(talos_config, dict(args, validate=False))
    assert r['_rc'] == 0 and r['validated'] is False and script.find('validate') == []


def test_unreadable_secrets_bundle_fails_before_gen_config(env):
    script, args, keys, work = env
    FakeGen(script)
    r = run_module(talos_config, dict(args, age_identity=str(keys.other_identity)))
    assert r['_rc'] == 1 and 'no key in the age identity file' in r['msg'] and args['secrets_bundle'] in r['msg']
    assert script.find('gen', 'config') == []
    assert os.listdir(str(work)) == []


def test_existing_config_for_other_recipients_is_never_overwritten(env):
    script, args, keys, work = env
    FakeGen(script)
    os.makedirs(args['dest'])
    foreign = os.path.join(args['dest'], 'cp-1.sops.yaml')
    runner = sops_utils.Sops(str(keys.identity))
    atomic_write(foreign, runner.encrypt('version: v1alpha1\n', keys.other_recipients, foreign))
    before = open(foreign, 'rb').read()
    r = run_module(talos_config, args)
    assert r['_rc'] == 1 and foreign in r['msg']
    assert open(foreign, 'rb').read() == before
    assert not os.path.exists(args['talosconfig_dest'])


@pytest.mark.parametrize('change', ['add', 'swap'])
def test_a_changed_recipient_set_rewrites_every_file(env, change):
    """Adding a key, or replacing the one key by another (same count: the bug age headers hid)."""
    script, args, keys, work = env
    FakeGen(script)
    run_module(talos_config, args)
    wanted = keys.all_recipients if change == 'add' else [keys.all_recipients[0]]
    r = run_module(talos_config, dict(args, age_recipients=wanted))
    assert r['_rc'] == 0 and r['changed_nodes'] == ['cp-1', 'cp-2', 'worker-1'] and r['talosconfig']['changed']
    for path in [os.path.join(args['dest'], '%s.sops.yaml' % n['name']) for n in NODES] + [args['talosconfig_dest']]:
        assert sops_utils.recipients_of_file(path) == sorted(wanted), path
    r = run_module(talos_config, dict(args, age_recipients=wanted))
    assert r['changed'] is False


def test_orphaned_configs_are_reported_not_deleted(env):
    script, args, keys, work = env
    FakeGen(script)
    run_module(talos_config, args)
    r = run_module(talos_config, dict(args, nodes=[dict(n) for n in NODES[:2]]))
    orphan = os.path.join(args['dest'], 'worker-1.sops.yaml')
    assert r['_rc'] == 0 and r['orphaned'] == [orphan] and os.path.exists(orphan)


def test_redact_tree_masks_nested_secrets():
    tree = dict(machine=dict(ca=dict(crt='A', key='B'), token='T', network=dict(hostname='cp-1')),
                cluster=dict(secretboxEncryptionSecret='S', id='I', clusterName='cell'))
    out = talos_config.redact_tree(tree)
    assert out == dict(machine=dict(ca=dict(crt='<redacted>', key='<redacted>'), token='<redacted>',
                                    network=dict(hostname='cp-1')),
                       cluster=dict(secretboxEncryptionSecret='<redacted>', id='<redacted>', clusterName='cell'))
    assert 'B' not in json.dumps(out).replace('<redacted>', '')
