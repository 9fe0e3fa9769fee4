# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""talos_secrets, talos_config, sops_file and reading values through community.sops, against the
talosctl test double.

The real sops binary and real age keys throughout; talosctl is tests/doubles/talosctl, which
generates real PKI for the bundle and a fresh admin certificate on every `gen config` like the real tool.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import secrets_fixtures as sf  # noqa: E402  (explicit fixtures module, not a conftest)

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils  # noqa: E402

CP_IPS = ['192.168.100.51', '192.168.100.52', '192.168.100.53']


class Cell(object):
    """One cell's files: age keys, the double's state (six machines in maintenance), rendered
    patches (build/), the inventory's secrets dir and the private work dir."""

    def __init__(self, tmp_path, keys=None):
        self.tmp = Path(tmp_path)
        self.state = str(self.tmp / 'state')
        self.keys = keys or sf.AgeKeys(self.tmp / 'keys')
        self.build = self.tmp / 'build'
        self.patches, self.nodes = sf.write_patches(self.build / 'cell' / 'l0' / 'talos')
        self.secrets_dir = self.tmp / 'inventory' / 'secrets'
        self.work = self.tmp / 'work'
        self.bundle = self.secrets_dir / 'talos-secrets.sops.yaml'
        self.talosconfig = self.secrets_dir / 'talosconfig.sops.yaml'
        self.configs = self.work / 'configs'


@pytest.fixture
def cell(tmp_path, monkeypatch):
    """A fresh cell with nothing generated yet."""
    c = Cell(tmp_path)
    sf.talos_env(monkeypatch, c.state)
    sf.make_cell(c.state)
    return c


@pytest.fixture(scope='module')
def baseline(tmp_path_factory):
    """A cell after its first talos_secrets + talos_config run (generated once per module: every
    talosctl call is a process, so tests copy this instead of regenerating it)."""
    c = Cell(tmp_path_factory.mktemp('baseline'))
    with pytest.MonkeyPatch.context() as mp:
        sf.talos_env(mp, c.state)
        sf.make_cell(c.state)
        failed, c.secrets_result = sf.run_module('talos_secrets', secrets_args(c))
        assert not failed, c.secrets_result
        failed, c.config_result = sf.run_module('talos_config', config_args(c), diff=True)
        assert not failed, c.config_result
    return c


@pytest.fixture
def generated(baseline, tmp_path, monkeypatch):
    """A private copy of the baseline cell (same keys, bundle, configs and double state)."""
    for part in ('state', 'build', 'inventory', 'work', 'keys'):
        shutil.copytree(str(baseline.tmp / part), str(tmp_path / part), copy_function=shutil.copy2)
    keys = copy.copy(baseline.keys)
    keys.identity = tmp_path / 'keys' / 'keys.txt'
    c = Cell(tmp_path, keys=keys)
    sf.talos_env(monkeypatch, c.state)
    return c


def secrets_args(c, **extra):
    args = dict(path=str(c.bundle), cluster_configured=False, age_recipients=c.keys.recipients,
                age_identity=str(c.keys.identity), work_dir=str(c.work))
    args.update(extra)
    return args


def config_args(c, **extra):
    args = dict(cluster_name='cell', cluster_endpoint='https://192.168.100.50:6443', secrets_bundle=str(c.bundle),
                talos_version='v1.13.9', kubernetes_version='1.36.3', install_image=sf.INSTALL_IMAGE,
                install_disk='/dev/sda', patches=c.patches, nodes=c.nodes, dest=str(c.configs),
                talosconfig_dest=str(c.talosconfig), talos_endpoints=CP_IPS, age_recipients=c.keys.recipients,
                age_identity=str(c.keys.identity), work_dir=str(c.work))
    args.update(extra)
    return args


def snapshot(*dirs):
    """{path: (bytes, mtime_ns)} of every file below dirs."""
    out = {}
    for d in dirs:
        for root, _dirs, files in os.walk(str(d)):
            for name in files:
                path = os.path.join(root, name)
                out[path] = (open(path, 'rb').read(), os.stat(path).st_mtime_ns)
    return out


def open_file(path, identity):
    """The plaintext of a SOPS file, opened as an operator would (sops decrypt with the identity)."""
    return sops_utils.decrypt_file(str(path), str(identity))


def encrypt_to(path, text, recipients, identity):
    path.write_bytes(sops_utils.Sops(str(identity)).encrypt(text, recipients, str(path)))


def bundle_secrets(c):
    return sf.secret_values(open_file(c.bundle, c.keys.identity))


def assert_no_secret(text, secrets, where):
    for value in secrets:
        assert value not in text, 'a secret value from the bundle appears in %s' % where


# --- talos_secrets ---------------------------------------------------------------------------
def test_bundle_is_generated_once_and_never_rewritten(cell):
    failed, result = sf.run_module('talos_secrets', secrets_args(cell))
    assert not failed, result
    assert result['changed'] and result['generated'] and result['contract'] == 'v1.13'
    assert stat.S_IMODE(cell.bundle.stat().st_mode) == 0o600
    gen = sf.calls(cell.state, 'gen secrets')
    assert len(gen) == 1 and gen[0]['argv'][gen[0]['argv'].index('--talos-version') + 1] == 'v1.13'
    assert gen[0]['rc'] == 0
    # encrypted to the recipient, a complete bundle (Appendix B layout) inside
    raw = cell.bundle.read_bytes()
    assert sops_utils.recipients_of_file(str(cell.bundle)) == cell.keys.recipients
    assert b'ENC[AES256_GCM' in raw and b'cluster:' in raw          # sops YAML: keys readable, values not
    bundle = yaml.safe_load(open_file(cell.bundle, cell.keys.identity))
    assert set(bundle) == {'cluster', 'secrets', 'trustdinfo', 'certs'}
    assert set(bundle['certs']) == {'etcd', 'k8s', 'k8saggregator', 'k8sserviceaccount', 'os'}
    # the plaintext lived only in a private temp dir that is gone
    assert [p for p in cell.work.rglob('*') if p.is_file()] == []
    mtime = cell.bundle.stat().st_mtime_ns

    failed, again = sf.run_module('talos_secrets', secrets_args(cell))
    assert not failed and not again['changed'] and not again['generated'] and again['exists']
    assert cell.bundle.read_bytes() == raw and cell.bundle.stat().st_mtime_ns == mtime
    assert len(sf.calls(cell.state, 'gen secrets')) == 1
    # even a caller that says the cluster is unconfigured cannot get it regenerated
    failed, again = sf.run_module('talos_secrets', secrets_args(cell, cluster_configured=True))
    assert not failed and not again['generated'] and cell.bundle.read_bytes() == raw


def test_check_mode_reports_would_generate_and_writes_nothing(cell):
    failed, result = sf.run_module('talos_secrets', secrets_args(cell), check_mode=True)
    assert not failed and result['changed'] and not result['generated']
    assert 'would generate' in result['msg']
    assert not cell.bundle.exists() and sf.calls(cell.state, 'gen secrets') == []


def test_nodes_are_asked_and_maintenance_nodes_allow_generation(cell):
    failed, result = sf.run_module('talos_secrets', secrets_args(
        cell, cluster_configured=None, nodes=[ip for _n, ip, _r in sf.CELL_NODES], retries=0))
    assert not failed, result
    assert result['generated'] and set(result['node_states'].values()) == {'maintenance'}


@pytest.mark.parametrize('caller_says', [None, False])
def test_missing_bundle_with_a_configured_node_fails_closed(cell, caller_says):
    sf.make_cell(cell.state, configured=['192.168.100.52'])
    failed, result = sf.run_module('talos_secrets', secrets_args(
        cell, cluster_configured=caller_says, nodes=[ip for _n, ip, _r in sf.CELL_NODES], retries=0))
    assert failed
    assert 'nodes 192.168.100.52 already run a configured Talos' in result['msg']
    assert 'restore it from backup' in result['msg'] and 'lock you out' in result['msg']
    assert str(cell.bundle) in result['msg']
    assert not cell.bundle.exists() and sf.calls(cell.state, 'gen secrets') == []


def test_missing_bundle_with_cluster_configured_fails_closed(cell):
    failed, result = sf.run_module('talos_secrets', secrets_args(cell, cluster_configured=True))
    assert failed and 'already run a configured Talos' in result['msg'] and 'restore it from backup' in result['msg']
    assert not cell.bundle.exists() and sf.calls(cell.state, 'gen secrets') == []


def test_unreachable_node_fails_closed(cell):
    from talosctl_double import state as double_state
    double_state.set_unreachable(str(cell.state), '192.168.100.61')
    failed, result = sf.run_module('talos_secrets', secrets_args(
        cell, cluster_configured=None, nodes=[ip for _n, ip, _r in sf.CELL_NODES], retries=0))
    assert failed and '192.168.100.61' in result['msg'] and 'cannot be proven' in result['msg']
    assert sf.calls(cell.state, 'gen secrets') == []


def test_undecryptable_bundle_fails_closed_and_is_kept(cell):
    cell.secrets_dir.mkdir(parents=True)
    encrypt_to(cell.bundle, 'cluster: {}\n', cell.keys.other_recipients, cell.keys.identity)
    before = cell.bundle.read_bytes()
    failed, result = sf.run_module('talos_secrets', secrets_args(cell))
    assert failed
    assert str(cell.bundle) in result['msg'] and 'never regenerated' in result['msg']
    assert 'no key in the age identity file' in result['msg'] and str(cell.keys.identity) in result['msg']
    assert cell.bundle.read_bytes() == before and sf.calls(cell.state, 'gen secrets') == []


def test_plaintext_or_incomplete_bundle_fails_closed(cell):
    cell.secrets_dir.mkdir(parents=True)
    cell.bundle.write_bytes(b'cluster:\n  id: abc\n')
    failed, result = sf.run_module('talos_secrets', secrets_args(cell))
    assert failed and 'not a SOPS-encrypted file' in result['msg'] and 'abc' not in result['msg']
    encrypt_to(cell.bundle, 'cluster:\n  id: abc\n', cell.keys.recipients, cell.keys.identity)
    failed, result = sf.run_module('talos_secrets', secrets_args(cell))
    assert failed and 'incomplete' in result['msg'] and 'cluster.secret' in result['msg']
    assert sf.calls(cell.state, 'gen secrets') == []


def test_generating_without_recipients_is_a_clear_error(cell):
    failed, result = sf.run_module('talos_secrets', secrets_args(cell, age_recipients=[]))
    assert failed and 'age_recipients is empty' in result['msg'] and 'age1' in result['msg']
    assert not cell.bundle.exists() and sf.calls(cell.state, 'gen secrets') == []


def test_one_of_cluster_configured_or_nodes_is_required(cell):
    args = secrets_args(cell)
    del args['cluster_configured']
    failed, result = sf.run_module('talos_secrets', args)
    assert failed and 'cluster_configured' in result['msg'] and 'nodes' in result['msg']


# --- talos_config ----------------------------------------------------------------------------
def decrypted(cell, name):
    return open_file(cell.configs / ('%s.sops.yaml' % name), cell.keys.identity).decode()


def test_configs_are_generated_encrypted_and_follow_the_cell(baseline):
    cell, result = baseline, baseline.config_result
    names = [n for n, _ip, _r in sf.CELL_NODES]
    assert result['changed'] and result['changed_nodes'] == names and result['validated']
    assert result['talosconfig'] == dict(path=str(cell.talosconfig), changed=True)
    # one batched gen config with the documented flags; per-node patch + validate
    gen = sf.calls(cell.state, 'gen config')
    assert len(gen) == 1
    argv = gen[0]['argv']
    for flag, value in (('--talos-version', 'v1.13'), ('--kubernetes-version', '1.36.3'),
                        ('--install-image', sf.INSTALL_IMAGE), ('--install-disk', '/dev/sda'),
                        ('--output-types', 'controlplane,worker,talosconfig')):
        assert argv[argv.index(flag) + 1] == value
    assert argv[2:4] == ['cell', 'https://192.168.100.50:6443']
    assert '--with-docs=false' in argv and '--with-examples=false' in argv and '--force' in argv
    assert len(sf.calls(cell.state, 'machineconfig patch')) == 6
    validations = sf.calls(cell.state, 'validate')
    assert len(validations) == 6 and all('--strict' in c['argv'] and c['rc'] == 0 for c in validations)

    for name, ip, role in sf.CELL_NODES:
        path = cell.configs / ('%s.sops.yaml' % name)
        assert sops_utils.recipients_of_file(str(path)) == cell.keys.recipients
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = decrypted(cell, name)
        docs = list(yaml.safe_load_all(text))
        assert docs[0]['machine']['type'] == role
        assert docs[0]['cluster']['network']['podSubnets'] == ['10.244.0.0/16']
        assert docs[0]['cluster']['network']['serviceSubnets'] == ['10.96.0.0/16']
        hostname = [d for d in docs if d.get('kind') == 'HostnameConfig']
        assert hostname == [dict(apiVersion='v1alpha1', kind='HostnameConfig', auto='off', hostname=name)]
        assert "auto: 'off'" in text or 'auto: "off"' in text        # stays a string for YAML 1.2 readers
        link = [d for d in docs if d.get('kind') == 'LinkConfig'][0]
        assert link['addresses'] == [dict(address='%s/24' % ip)]
        vips = [d for d in docs if d.get('kind') == 'Layer2VIPConfig']
        assert len(vips) == (1 if role == 'controlplane' else 0)
    assert stat.S_IMODE(cell.configs.stat().st_mode) == 0o700

    talosconfig = yaml.safe_load(open_file(cell.talosconfig, cell.keys.identity))
    context = talosconfig['contexts'][talosconfig['context']]
    assert context['endpoints'] == CP_IPS and context['nodes'] == [CP_IPS[0]]
    assert '192.168.100.50' not in context['endpoints']
    # the talosconfig trusts the bundle's OS CA (one PKI for every output: pitfall 1)
    bundle = yaml.safe_load(open_file(cell.bundle, cell.keys.identity))
    assert context['ca'] == bundle['certs']['os']['crt']
    assert yaml.safe_load_all(decrypted(cell, 'cp-1')).__next__()['machine']['ca']['crt'] == context['ca']


def test_configs_are_schema_valid(baseline, schema_root):
    validator = sf.schema_validator(schema_root)
    for name, _ip, _role in sf.CELL_NODES:
        assert sf.validate_talos_schema(decrypted(baseline, name), validator) == [], name


def test_schema_check_is_strict_enough_to_fail(schema_root):
    validator = sf.schema_validator(schema_root)
    bad = 'version: v1alpha1\nmachine:\n  type: worker\n  network: {hostname: x}\n'
    assert sf.validate_talos_schema(bad, validator) != []
    assert sf.validate_talos_schema('version: v1alpha1\npersist: true\nmachine: {type: worker}\n', validator) == []


def test_rerun_is_unchanged_and_leaves_every_file_untouched(generated):
    cell = generated
    before = snapshot(cell.configs, cell.secrets_dir)
    # the nodes exactly as the cell model (cellplatform_cell.nodes) holds them, patches by directory
    model_nodes = [dict(name=n, ip=ip, role=r, address='%s/24' % ip, install_disk='/dev/sda', vm_id=100 + i)
                   for i, (n, ip, r) in enumerate(sf.CELL_NODES)]
    patch_dir = str(Path(cell.nodes[0]['patch'][0]).parent)
    failed, result = sf.run_module('talos_config', config_args(cell, nodes=model_nodes, node_patch_dir=patch_dir))
    assert not failed, result
    assert not result['changed'] and result['changed_nodes'] == [] and not result['talosconfig']['changed']
    assert snapshot(cell.configs, cell.secrets_dir) == before
    # gen config really issued a new admin certificate; the stored talosconfig was kept anyway
    assert len(sf.calls(cell.state, 'gen config')) == 2
    assert [p for p in cell.work.rglob('*') if p.is_file() and cell.configs not in p.parents] == []


def test_check_mode_and_diff_report_a_change_without_writing_or_leaking(generated):
    cell = generated
    before = snapshot(cell.configs, cell.secrets_dir)
    worker2 = Path(cell.nodes[4]['patch'][0])
    worker2.write_text(worker2.read_text().replace('mtu: 1500', 'mtu: 9000'))
    missing_work_dir = cell.tmp / 'not-created'          # check mode must not even create the work dir
    failed, result = sf.run_module('talos_config', config_args(cell, work_dir=str(missing_work_dir)),
                                   check_mode=True, diff=True)
    assert not failed, result
    assert result['changed'] and result['changed_nodes'] == ['worker-2']
    assert snapshot(cell.configs, cell.secrets_dir) == before and not missing_work_dir.exists()
    diff = result['diff']
    assert len(diff) == 1 and diff[0]['before_header'].startswith(str(cell.configs / 'worker-2.sops.yaml'))
    assert 'mtu: 1500' in diff[0]['before'] and 'mtu: 9000' in diff[0]['after']
    assert '<redacted>' in diff[0]['after']
    assert_no_secret(json.dumps(result), bundle_secrets(cell), 'the check-mode/diff result')
    # the real run writes exactly that file
    failed, result = sf.run_module('talos_config', config_args(cell, validate=False))
    after = snapshot(cell.configs, cell.secrets_dir)
    changed = sorted(p for p in after if after[p] != before.get(p))
    assert changed == [str(cell.configs / 'worker-2.sops.yaml')]


def test_changed_endpoints_replace_the_talosconfig(generated):
    cell = generated
    failed, result = sf.run_module('talos_config', config_args(cell, talos_endpoints=CP_IPS[:2], validate=False))
    assert not failed and result['talosconfig']['changed'] and result['changed_nodes'] == []
    talosconfig = yaml.safe_load(open_file(cell.talosconfig, cell.keys.identity))
    assert talosconfig['contexts']['cell']['endpoints'] == CP_IPS[:2]


def test_no_secret_in_results_build_dir_work_dir_or_talosctl_calls(baseline):
    cell, secrets_result, result = baseline, baseline.secrets_result, baseline.config_result
    assert len(result['diff']) == 7   # first run with --diff: six configs and the talosconfig
    secrets = bundle_secrets(cell)
    assert len(secrets) > 20
    # the configs really carry them (so the checks below can fail)
    assert any(value in decrypted(cell, 'cp-1') for value in secrets)
    assert_no_secret(json.dumps(secrets_result), secrets, 'the talos_secrets result')
    assert_no_secret(json.dumps(result), secrets, 'the talos_config result (with diff)')
    for path, (data, _mtime) in snapshot(cell.build, cell.work).items():
        assert_no_secret(data.decode('latin-1'), secrets, path)
    assert_no_secret((Path(cell.state) / 'calls.jsonl').read_text(), secrets, 'the talosctl argv')


def test_hostname_without_auto_off_fails_validation_naming_the_node(generated):
    cell = generated
    shutil.rmtree(str(cell.configs))
    patches, nodes = sf.write_patches(cell.tmp / 'bad', hostname_auto_off=False)
    failed, result = sf.run_module('talos_config', config_args(cell, patches=patches, nodes=nodes))
    assert failed
    assert "'auto' and 'hostname' cannot be set at the same time" in result['msg']
    assert 'node cp-1' in result['msg'] or 'node ' in result['msg']
    assert not cell.configs.exists() or list(cell.configs.iterdir()) == []


def test_input_problems_are_reported_together(cell):
    nodes = [dict(cell.nodes[0]), dict(cell.nodes[0]), dict(cell.nodes[3], patches=[], role='master')]
    nodes[1]['patch'] = [str(cell.tmp / 'missing.yaml')]
    failed, result = sf.run_module('talos_config', config_args(
        cell, nodes=nodes, talos_endpoints=['192.168.100.50'], age_recipients=[]))
    assert failed
    problems = result['problems']
    assert any("talos_endpoints[0] = '192.168.100.50' is the API VIP" in p for p in problems)
    assert any("nodes[1].name = 'cp-1' appears twice" in p for p in problems)
    assert any('missing.yaml' in p and 'does not exist' in p for p in problems)
    assert any('nodes[2] has unsupported key(s) patches' in p for p in problems)
    assert any("nodes[2].role = 'master' is not valid" in p for p in problems)
    assert any('secrets_bundle' in p for p in problems)
    assert any('age_recipients is empty' in p for p in problems)
    assert sf.calls(cell.state, 'gen config') == []


def test_undecryptable_existing_config_is_not_overwritten(generated):
    cell = generated
    target = cell.configs / 'worker-3.sops.yaml'
    encrypt_to(target, 'foreign: true\n', cell.keys.other_recipients, cell.keys.identity)
    before = target.read_bytes()
    failed, result = sf.run_module('talos_config', config_args(cell, validate=False))
    assert failed and str(target) in result['msg']
    assert target.read_bytes() == before


def test_orphaned_configs_are_reported_not_deleted(generated):
    cell = generated
    failed, result = sf.run_module('talos_config', config_args(cell, nodes=cell.nodes[:5], validate=False))
    assert not failed and result['orphaned'] == [str(cell.configs / 'worker-3.sops.yaml')]
    assert (cell.configs / 'worker-3.sops.yaml').exists()


# --- sops_file -----------------------------------------------------------------------------------
def test_sops_file_encrypt_decrypt_idempotent(cell, tmp_path):
    plain = tmp_path / 'platform.yaml'
    plain.write_text('tsig_secret: c2VjcmV0LXRzaWc=\ngit:\n  password: hunter2\n')
    enc = tmp_path / 'inv' / 'platform.sops.yaml'
    args = dict(state='encrypted', src=str(plain), dest=str(enc), age_recipients=cell.keys.recipients,
                age_identity=str(cell.keys.identity))
    failed, result = sf.run_module('sops_file', args)
    assert not failed and result['changed'] and result['created']
    raw = enc.read_bytes()
    failed, result = sf.run_module('sops_file', args)
    assert not failed and not result['changed'] and enc.read_bytes() == raw
    assert 'hunter2' not in json.dumps(result)

    out = tmp_path / 'run' / 'private' / 'platform.yaml'
    dargs = dict(state='decrypted', src=str(enc), dest=str(out), age_identity=str(cell.keys.identity))
    failed, result = sf.run_module('sops_file', dargs, check_mode=True)
    assert not failed and result['changed'] and not out.exists()
    failed, result = sf.run_module('sops_file', dargs)
    assert not failed and result['changed'] and yaml.safe_load(out.read_text()) == yaml.safe_load(plain.read_text())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert 'hunter2' not in json.dumps(result)
    failed, result = sf.run_module('sops_file', dargs)
    assert not failed and not result['changed']

    content_args = dict(args, src=None, content='password: hunter2-content\n')
    del content_args['src']
    failed, result = sf.run_module('sops_file', content_args, diff=True)
    assert not failed and result['changed'] and 'hunter2' not in json.dumps(result)
    assert yaml.safe_load(open_file(enc, cell.keys.identity)) == {'password': 'hunter2-content'}


def test_sops_file_errors_name_the_problem(cell, tmp_path):
    enc = tmp_path / 'x.sops'
    encrypt_to(enc, 'x', cell.keys.other_recipients, cell.keys.identity)
    failed, result = sf.run_module('sops_file', dict(state='decrypted', src=str(enc), dest=str(tmp_path / 'x'),
                                                    age_identity=str(cell.keys.identity)))
    assert failed and str(enc) in result['msg'] and not (tmp_path / 'x').exists()
    failed, result = sf.run_module('sops_file', dict(content='x', dest=str(tmp_path / 'y.sops'),
                                                    age_recipients=['age1nope'], age_identity=str(cell.keys.identity)))
    assert failed and "age_recipients[0] = 'age1nope'" in result['msg']


# --- through ansible-playbook at -vvv ------------------------------------------------------------
@pytest.mark.slow
def test_no_secret_in_ansible_output_at_vvv_and_community_sops_lookup(generated):
    """One real ansible-playbook -vvv --diff run: talos_secrets (kept), talos_config (one node's
    patch changed, so a redacted diff is printed), and values read the way the roles read them
    (community.sops.sops + cellplatform.platform.secret_values: value and error)."""
    cell = generated
    worker2 = Path(cell.nodes[4]['patch'][0])
    worker2.write_text(worker2.read_text().replace('mtu: 1500', 'mtu: 9000'))
    platform = cell.secrets_dir / 'platform.sops.yaml'
    encrypt_to(platform, 'tsig_secret: s3cr3t-tsig-value\ngit:\n  password: hunter2-git\n', cell.keys.recipients,
               cell.keys.identity)
    lookup = ("(lookup('community.sops.sops', '{0}', age_keyfile='{1}') | from_yaml"
              " | cellplatform.platform.secret_values(['%s'], '{0}') | first)").format(platform, cell.keys.identity)
    playbook = cell.tmp / 'site.yml'
    playbook.write_text(textwrap.dedent('''\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: Secrets bundle
              cellplatform.platform.talos_secrets: {args_secrets}
              register: bundle
            - name: Machine configs
              cellplatform.platform.talos_config: {args_config}
              register: configs
            - name: Only worker-2 changed and the bundle was kept
              ansible.builtin.assert:
                that:
                  - not bundle.changed
                  - configs.changed_nodes == ['worker-2']
            - name: The lookup returns the decrypted values
              ansible.builtin.assert:
                that:
                  - {lookup_tsig} | hash('sha256') == '{tsig_sha}'
                  - {lookup_git} | hash('sha256') == '{git_sha}'
              no_log: true
            - name: A missing key is a clear error
              block:
                - name: Look up a key that is not there
                  ansible.builtin.debug:
                    msg: "{{{{ {lookup_missing} | length }}}}"
              rescue:
                - name: The error names the key and the file
                  ansible.builtin.assert:
                    that:
                      - ansible_failed_result.msg is search("proxmox_token is not in")
                      - ansible_failed_result.msg is search("platform.sops.yaml")
        ''').format(
            args_secrets=json.dumps(secrets_args(cell)), args_config=json.dumps(config_args(cell)),
            lookup_tsig=lookup % 'tsig_secret', lookup_git=lookup % 'git.password',
            lookup_missing=lookup % 'proxmox_token',
            tsig_sha=hashlib.sha256(b's3cr3t-tsig-value').hexdigest(),
            git_sha=hashlib.sha256(b'hunter2-git').hexdigest()))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(sf.REPO), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_CONFIG=str(cell.tmp / 'ansible.cfg'))
    (cell.tmp / 'ansible.cfg').write_text('[defaults]\ngathering = explicit\n')
    proc = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-vvv', '--diff', str(playbook)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(cell.tmp), timeout=600)
    output = proc.stdout.decode('utf-8', 'replace')
    assert proc.returncode == 0, output[-4000:]
    assert re.search(r'ok=\d+\s+changed=1\s+unreachable=0\s+failed=0\s+skipped=0\s+rescued=1', output), output[-2000:]
    assert 'mtu: 9000' in output and '<redacted>' in output        # the redacted diff was shown
    secrets = bundle_secrets(cell) + ['s3cr3t-tsig-value', 'hunter2-git']
    assert_no_secret(output, secrets, 'ansible-playbook -vvv --diff output')


# --- the talosctl double's config-generation contract (tests/doubles/talosctl_double/gen.py) ------
class _Ctx(object):
    def __init__(self, tmp, strict=False):
        import io
        self.state_dir, self.strict = str(tmp), strict
        self.stdout, self.stderr = io.StringIO(), io.StringIO()
        self.records = []

    def record(self, data):
        self.records.append(data)


def _double_gen():
    from talosctl_double import gen
    return gen


def test_double_strategic_merge_follows_talos_rules():
    gen = _double_gen()
    base = [dict(version='v1alpha1', machine=dict(certSANs=['a'], kubelet=dict(image='k')),
                 cluster=dict(network=dict(podSubnets=['10.244.0.0/16'], serviceSubnets=['10.96.0.0/12']),
                              apiServer=dict(auditPolicy=dict(rules=[1, 2])))),
            dict(apiVersion='v1alpha1', kind='HostnameConfig', auto='stable')]
    patch = yaml.safe_dump_all([
        dict(machine=dict(certSANs=['b'], kubelet={'$patch': 'delete'}),
             cluster=dict(network=dict(podSubnets=['10.1.0.0/16'], serviceSubnets=['10.2.0.0/16']),
                          apiServer=dict(auditPolicy=dict(rules=[3])))),
        {'apiVersion': 'v1alpha1', 'kind': 'HostnameConfig', '$patch': 'delete'},
        dict(apiVersion='v1alpha1', kind='LinkConfig', name='net0', addresses=[dict(address='10.0.0.1/24')]),
    ])
    out = gen.apply_patches(base, [patch])
    v1 = out[0]
    assert v1['machine'] == dict(certSANs=['a', 'b'])                       # appended; field deleted
    assert v1['cluster']['network'] == dict(podSubnets=['10.1.0.0/16'], serviceSubnets=['10.2.0.0/16'])
    assert v1['cluster']['apiServer']['auditPolicy'] == dict(rules=[3])     # replaced
    assert [d.get('kind') for d in out] == [None, 'LinkConfig']             # deleted; missing doc appended
    again = gen.apply_patches(out, [yaml.safe_dump(dict(apiVersion='v1alpha1', kind='LinkConfig', name='net0',
                                                        addresses=[dict(address='10.0.0.2/24')]))])
    assert again[1]['addresses'] == [dict(address='10.0.0.1/24'), dict(address='10.0.0.2/24')]
    with pytest.raises(gen.CommandError, match='v1alpha1 document cannot be deleted'):
        gen.apply_patches(base, [yaml.safe_dump({'version': 'v1alpha1', '$patch': 'delete'})])
    with pytest.raises(gen.CommandError, match='touches document v1alpha1/LinkConfig net0 twice'):
        gen.apply_patches(base, ['kind: LinkConfig\napiVersion: v1alpha1\nname: net0\n---\n'
                                 'kind: LinkConfig\napiVersion: v1alpha1\nname: net0\n'])


def test_double_rejects_json6902_on_multi_document_configs():
    gen = _double_gen()
    ops = '[{"op": "add", "path": "/machine/certSANs/-", "value": "x"}]'
    base = [dict(version='v1alpha1', machine=dict(certSANs=[])), dict(apiVersion='v1alpha1', kind='HostnameConfig',
                                                                      auto='stable')]
    with pytest.raises(gen.CommandError) as exc:
        gen.apply_patches(base, [ops])
    assert str(exc.value) == 'JSON6902 patches are not supported for multi-document machine configuration'
    assert gen.apply_patches(base[:1], [ops])[0]['machine']['certSANs'] == ['x']


def test_double_validate_hostname_rules_and_strict_worker_vip(tmp_path):
    gen = _double_gen()
    v1 = dict(version='v1alpha1', machine=dict(type='worker', install=dict(disk='/dev/sda')),
              cluster=dict(controlPlane=dict(endpoint='https://192.168.100.50:6443')))
    cases = [
        ([v1, dict(apiVersion='v1alpha1', kind='HostnameConfig', auto='stable', hostname='w')], False,
         "'auto' and 'hostname' cannot be set at the same time"),
        ([v1, dict(apiVersion='v1alpha1', kind='HostnameConfig', auto='off', hostname='w')], False, None),
        ([v1, dict(apiVersion='v1alpha1', kind='Layer2VIPConfig', name='192.168.100.50', link='net0')], False, None),
        ([v1, dict(apiVersion='v1alpha1', kind='Layer2VIPConfig', name='192.168.100.50', link='net0')], True,
         'Layer2VIPConfig is only valid on control-plane nodes'),
    ]
    for docs, strict, error in cases:
        path = tmp_path / 'c.yaml'
        path.write_text(gen.dump_all(docs))
        ctx = _Ctx(tmp_path, strict=strict)
        rc = gen.COMMANDS[('validate',)](['-c', str(path), '-m', 'metal', '--strict'], ctx)
        if error:
            assert rc == 1 and error in ctx.stderr.getvalue(), ctx.stderr.getvalue()
        else:
            assert rc == 0 and 'is valid for metal mode' in ctx.stdout.getvalue(), ctx.stderr.getvalue()
    assert "auto: 'off'" in gen.dump(dict(auto='off'))


def test_double_gen_secrets_contract(tmp_path, monkeypatch):
    gen = _double_gen()
    monkeypatch.chdir(tmp_path)
    ctx = _Ctx(tmp_path)
    assert gen.COMMANDS[('gen', 'secrets')](['--talos-version', 'v1.13'], ctx) == 0
    bundle = yaml.safe_load((tmp_path / 'secrets.yaml').read_text())          # default output file
    for field in gen.BUNDLE_FIELDS:
        node = bundle
        for part in field:
            node = node[part]
        assert isinstance(node, str) and node
    assert bundle['certs']['os']['crt'].startswith('LS0tLS1CRUdJTi')        # base64 PEM
    ctx = _Ctx(tmp_path)
    assert gen.COMMANDS[('gen', 'secrets')]([], ctx) == 1
    assert ctx.stderr.getvalue() == 'file "secrets.yaml" already exists, use --force to overwrite\n'
    ctx = _Ctx(tmp_path)
    assert gen.COMMANDS[('gen', 'secrets')](['--bogus'], ctx) == 1
    assert ctx.stderr.getvalue().startswith('unknown flag: --bogus\n\n')
    ctx = _Ctx(tmp_path)
    assert gen.COMMANDS[('gen', 'secrets')](['-o', 'b.yaml', '--talos-version', 'v1.14'], ctx) == 1
    assert 'newer than talosctl v1.13' in ctx.stderr.getvalue()
