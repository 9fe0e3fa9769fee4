"""The day-2 modules against the talosctl test double: talos_upgrade, talos_etcd, talos_reset,
talos_upgrade_k8s, talos_info (detail=versions), talos_bootstrap (recover_from), talos_kubeconfig
(renew) and cell_credentials_info.

Each test gets its own bootstrapped cell of six machines (the double's preconfigure: every node
configured from complete machine configs, the control planes one etcd cluster). Modules run in-process;
every talosctl call is a real subprocess of the double (strict mode), recorded in calls.jsonl.
"""

from __future__ import annotations

import base64
import datetime
import os
import sys
import time

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.modules import (
    cell_credentials_info, talos_bootstrap, talos_etcd, talos_info, talos_kubeconfig, talos_reset, talos_upgrade,
    talos_upgrade_k8s)

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils
from secrets_fixtures import AgeKeys  # pylint: disable=import-error
from talos_fixtures import (  # pylint: disable=import-error
    ALL, CELL, CONTROLPLANE, DOUBLES, WORKERS, double_state, fake_cell_configs, run_module, warning_texts)

FAST = dict(retries=3, retry_delay=0.01, timeout=60, probe_timeout=5)
SCHEMATIC = 'ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515'
IMAGE = 'factory.talos.dev/nocloud-installer/%s:%s' % (SCHEMATIC, '%s')
NAMES = dict((ip, name) for name, ip, _ in CELL)


def complete(path, k8s='1.36.3', talos='v1.13.9'):
    """Give a fixture config what `gen config` puts there: the installer of the cell's schematic and the images."""
    with open(path) as f:
        docs = list(yaml.safe_load_all(f))
    v1 = docs[0]
    v1['machine']['install']['image'] = IMAGE % talos
    v1['machine']['kubelet'] = {'image': 'ghcr.io/siderolabs/kubelet:v%s' % k8s}
    if v1['machine']['type'] == 'controlplane':
        for key, image in (('apiServer', 'kube-apiserver'), ('controllerManager', 'kube-controller-manager'),
                           ('scheduler', 'kube-scheduler'), ('proxy', 'kube-proxy')):
            v1['cluster'][key] = {'image': 'registry.k8s.io/%s:v%s' % (image, k8s)}
    with open(path, 'w') as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)


class Cell(object):
    def __init__(self, root, state, paths, tc):
        self.root, self.state, self.paths, self.tc = root, state, paths, tc

    def common(self, **kw):
        out = dict(FAST, talosconfig=self.tc)
        out.update(kw)
        return out

    def node(self, ip):
        return double_state.node(self.state, ip)

    def calls(self, command):
        return [c for c in double_state.calls(self.state) if c.get('command') == command]


@pytest.fixture
def cell(tmp_path, monkeypatch):
    state = str(tmp_path / 'state')
    double_state.create_cell(state, [(name, ip) for name, ip, _ in CELL])
    double_state.set_cluster(state, upgrade_reboot_seconds=0.5, etcd_settle_seconds=0.5)
    work = tmp_path / 'work'
    work.mkdir(mode=0o700)
    _b, paths, tc = fake_cell_configs(str(work))
    for path in paths.values():
        complete(path)
    double_state.preconfigure(state, paths, bootstrapped=True)
    monkeypatch.setenv('PATH', os.pathsep.join([DOUBLES, os.path.dirname(sys.executable), os.environ['PATH']]))
    monkeypatch.setenv('TALOSCTL_DOUBLE_STATE', state)
    monkeypatch.setenv('TALOSCTL_DOUBLE_STRICT', '1')
    monkeypatch.delenv('TALOSCONFIG', raising=False)
    monkeypatch.delenv('TALOSCTL_DOUBLE_VERSION', raising=False)
    return Cell(tmp_path, state, paths, tc)


# --- talos_info detail=versions -----------------------------------------------------------------------
def test_versions_of_every_node(cell):
    r = run_module(talos_info, cell.common(nodes=ALL, detail='versions'))
    assert not r.get('failed'), r
    for ip in ALL:
        assert r['nodes'][ip]['talos_version'] == 'v1.13.9'
        assert r['nodes'][ip]['schematic'] == SCHEMATIC
        assert r['nodes'][ip]['kubernetes_version'] == '1.36.3'


# --- talos_upgrade ------------------------------------------------------------------------------------
def test_upgrade_waits_for_the_reboot_and_a_rerun_changes_nothing(cell):
    ip = WORKERS[0]
    check = run_module(talos_upgrade, cell.common(node=ip, image=IMAGE % 'v1.13.10'), check=True)
    assert check['changed'] and check['upgraded'] and cell.calls('upgrade') == []
    started = time.time()
    r = run_module(talos_upgrade, cell.common(node=ip, image=IMAGE % 'v1.13.10', wait_timeout=30))
    assert not r.get('failed'), r
    assert r['changed'] and r['version_before'] == 'v1.13.9' and r['version_after'] == 'v1.13.10'
    assert time.time() - started >= 0.5, 'the upgrade returns only once the node is back'
    argv = cell.calls('upgrade')[0]['argv']
    assert '--drain=false' in argv and '--wait' in argv and argv[argv.index('--image') + 1] == IMAGE % 'v1.13.10'
    again = run_module(talos_upgrade, cell.common(node=ip, image=IMAGE % 'v1.13.10'))
    assert not again['changed'] and len(cell.calls('upgrade')) == 1


def test_another_schematic_is_upgraded_even_at_the_same_version(cell):
    other = 'factory.talos.dev/nocloud-installer/%s:v1.13.9' % ('0' * 64)
    r = run_module(talos_upgrade, cell.common(node=WORKERS[1], image=other, wait_timeout=30))
    assert r['changed'] and r['schematic_after'] == '0' * 64


def test_upgrade_refuses_an_image_without_a_version_and_reports_installer_refusals(cell):
    r = run_module(talos_upgrade, cell.common(node=WORKERS[0], image='ghcr.io/siderolabs/installer:latest'))
    assert r['failed'] and 'has no Talos version as its tag' in r['msg'] and cell.calls('upgrade') == []
    # the installer refuses a host more than its supported range behind (compatibility.UpgradeableFrom)
    double_state.update(cell.state, lambda c: c.nodes[WORKERS[0]].update(version='v1.10.4'))
    r = run_module(talos_upgrade, cell.common(node=WORKERS[0], image=IMAGE % 'v1.13.10', wait_timeout=30))
    assert r['failed'] and 'upgrade failed with exit code 1' in r['msg'], r
    assert cell.node(WORKERS[0])['version'] == 'v1.10.4'


def test_upgrade_that_does_not_come_back_in_time_fails_as_a_timeout(cell):
    double_state.set_slow_boot(cell.state, WORKERS[2], 30)
    r = run_module(talos_upgrade, cell.common(node=WORKERS[2], image=IMAGE % 'v1.13.10', wait_timeout=1,
                                              retries=0, retry_deadline=1, probe_timeout=1))
    assert r['failed'] and 'did not come back from the upgrade reboot within wait_timeout=1s' in r['msg'], r
    assert 'context deadline exceeded' in r['stderr']


# --- talos_etcd ---------------------------------------------------------------------------------------
def test_status_is_healthy_with_every_member_and_waits_for_a_settling_member(cell):
    names = [NAMES[ip] for ip in CONTROLPLANE]
    r = run_module(talos_etcd, cell.common(action='status', nodes=CONTROLPLANE, expected_members=names))
    assert r['healthy'] and r['problems'] == [] and r['leader']
    assert sorted(m['hostname'] for m in r['members']) == names and all(m['running'] for m in r['members'])
    # cp-2 reboots: etcd answers again only after it settled; the gate waits for it. The windows leave room for a
    # busy machine (the first question must still see cp-2 down), the wait covers the rest.
    double_state.update(cell.state, lambda c: c.nodes[CONTROLPLANE[1]].update(down_until=time.time() + 4,
                                                                                etcd_ready_at=time.time() + 6))
    now = run_module(talos_etcd, cell.common(action='status', nodes=CONTROLPLANE, expected_members=names,
                                             fail_unhealthy=False))
    assert not now['healthy'] and any(CONTROLPLANE[1] in p for p in now['problems'])
    assert [m['running'] for m in now['members']].count(False) == 1
    waited = run_module(talos_etcd, cell.common(action='status', nodes=CONTROLPLANE, expected_members=names,
                                                wait_timeout=30, poll=0.3))
    assert waited['healthy'] and waited['elapsed'] >= 0.5, waited


def test_status_fails_with_every_problem(cell):
    double_state.set_unreachable(cell.state, CONTROLPLANE[2], 'refused')
    r = run_module(talos_etcd, cell.common(action='status', nodes=CONTROLPLANE,
                                           expected_members=['cp-1', 'cp-2', 'cp-3', 'cp-4']))
    assert r['failed'] and 'etcd is not healthy' in r['msg']
    assert 'etcd on 192.168.100.53 does not answer (connection refused on port 50000)' in r['msg']
    assert 'etcd lists no member for cp-4' in r['msg']


def test_snapshot_leave_and_remove_member(cell):
    dest = str(cell.root / 'work' / 'etcd.snapshot')
    r = run_module(talos_etcd, cell.common(action='snapshot', node=CONTROLPLANE[0], dest=dest))
    assert r['changed'] and r['snapshot']['revision'] == 1 and os.path.getsize(dest) % 512 == 32
    assert not os.path.exists(dest + '.part')
    # a worker is no etcd member: leave changes nothing
    assert not run_module(talos_etcd, cell.common(action='leave', node=WORKERS[0])).get('changed')
    # cp-2 dies; its member is removed from cp-1 by name (2 of 3 members run: a quorum); again: not listed any more
    double_state.set_unreachable(cell.state, CONTROLPLANE[1], 'refused')
    rm = run_module(talos_etcd, cell.common(action='remove_member', node=CONTROLPLANE[0], member='cp-2'))
    assert not rm.get('failed') and rm['changed'] and rm['removed']['hostname'] == 'cp-2', rm
    assert not run_module(talos_etcd, cell.common(action='remove_member', node=CONTROLPLANE[0], member='cp-2'))['changed']
    assert [m['name'] for m in double_state.etcd_member_list(cell.state)] == ['cp-1', 'cp-3']
    # cp-3 leaves itself (1 of 2 left afterwards is the last member); a second leave finds no local member
    left = run_module(talos_etcd, cell.common(action='leave', node=CONTROLPLANE[2]))
    assert not left.get('failed') and left['changed'] and left['removed']['id'], left
    assert not run_module(talos_etcd, cell.common(action='leave', node=CONTROLPLANE[2]))['changed']
    assert [m['name'] for m in double_state.etcd_member_list(cell.state)] == ['cp-1']


def test_remove_member_without_quorum_is_refused_by_etcd(cell):
    double_state.set_unreachable(cell.state, CONTROLPLANE[1], 'refused')
    double_state.set_unreachable(cell.state, CONTROLPLANE[2], 'refused')
    r = run_module(talos_etcd, cell.common(action='remove_member', node=CONTROLPLANE[0], member='cp-3'))
    assert r['failed'] and 'unhealthy cluster' in r['msg'] and not r['changed']
    assert len(double_state.etcd_member_list(cell.state)) == 3


# --- talos_reset --------------------------------------------------------------------------------------
def test_reset_wipes_back_to_maintenance_and_a_rerun_changes_nothing(cell):
    ip = CONTROLPLANE[2]
    r = run_module(talos_reset, cell.common(node=ip, wait_timeout=30))
    assert r['changed'] and r['state_before'] == 'configured', r
    argv = cell.calls('reset')[0]['argv']
    assert '--graceful=true' in argv and '--reboot=true' in argv and 'STATE,EPHEMERAL' in argv
    # graceful: the control plane left etcd first
    assert [m['name'] for m in double_state.etcd_member_list(cell.state)] == ['cp-1', 'cp-2']
    time.sleep(0.6)
    assert cell.node(ip)['stage'] == 'maintenance'
    again = run_module(talos_reset, cell.common(node=ip))
    assert not again['changed'] and again['state_before'] == 'maintenance' and len(cell.calls('reset')) == 1


def test_reset_of_a_dead_node(cell):
    double_state.set_unreachable(cell.state, WORKERS[1], 'refused')
    r = run_module(talos_reset, cell.common(node=WORKERS[1]))
    assert r['failed'] and 'does not answer' in r['msg']
    r = run_module(talos_reset, cell.common(node=WORKERS[1], allow_unreachable=True))
    assert not r['changed'] and not r['reset'] and any('destroy the machine or wipe it' in w for w in warning_texts(r))


def test_non_graceful_ephemeral_wipe_keeps_the_member_listed(cell):
    r = run_module(talos_reset, cell.common(node=CONTROLPLANE[1], graceful=False, system_labels_to_wipe=['EPHEMERAL'],
                                            wait_timeout=30))
    assert r['changed']
    assert [m['name'] for m in double_state.etcd_member_list(cell.state)] == ['cp-1', 'cp-2', 'cp-3']
    assert cell.node(CONTROLPLANE[1])['stage'] == 'running' and not cell.node(CONTROLPLANE[1])['etcd_member_id']


# --- talos_upgrade_k8s --------------------------------------------------------------------------------
def test_upgrade_k8s_dry_run_first_and_nothing_when_current(cell):
    same = run_module(talos_upgrade_k8s, cell.common(node=CONTROLPLANE[0], to='1.36.3'))
    assert not same['changed'] and same['plan'] == [] and same['version_before'] == '1.36.3'
    check = run_module(talos_upgrade_k8s, cell.common(node=CONTROLPLANE[0], to='1.36.4'), check=True)
    assert check['changed'] and 'kube-apiserver: 1.36.3 -> 1.36.4' in check['plan']
    assert 'kubelet: 1.36.3 -> 1.36.4' in check['plan']
    assert all('kubelet:v1.36.3' in cell.node(ip)['config'] for ip in ALL)
    r = run_module(talos_upgrade_k8s, cell.common(node=CONTROLPLANE[0], to='1.36.4'))
    assert r['changed'] and all('kubelet:v1.36.4' in cell.node(ip)['config'] for ip in ALL)
    assert [('--dry-run' in c['argv']) for c in cell.calls('upgrade-k8s')] == [True, True, True, False]
    assert not run_module(talos_upgrade_k8s, cell.common(node=CONTROLPLANE[0], to='1.36.4'))['changed']


def test_upgrade_k8s_refusals_come_from_the_dry_run(cell, monkeypatch):
    # talosctl 1.13 knows upgrade paths up to 1.36 (go-kubernetes v0.2.38)
    r = run_module(talos_upgrade_k8s, cell.common(node=CONTROLPLANE[0], to='1.37.0'))
    assert r['failed'] and 'unsupported upgrade path 1.36->1.37' in r['msg'] and r['plan'] == []
    # talosctl 1.14 knows the path, but the nodes' Talos 1.13 does not support Kubernetes 1.37
    monkeypatch.setenv('TALOSCTL_DOUBLE_VERSION', 'v1.14.0')
    r = run_module(talos_upgrade_k8s, cell.common(node=CONTROLPLANE[0], to='1.37.0', talos_version='v1.14.0'))
    assert r['failed'] and 'version of Kubernetes 1.37.0 is too new to be used with Talos 1.13.9' in r['msg'], r
    assert all('--dry-run' in c['argv'] for c in cell.calls('upgrade-k8s'))
    r = run_module(talos_upgrade_k8s, cell.common(node=CONTROLPLANE[0], to='v1.36'))
    assert r['failed'] and 'is not a Kubernetes version' in r['msg']


# --- talos_bootstrap recover_from ---------------------------------------------------------------------
def test_recover_etcd_from_a_snapshot(cell):
    dest = str(cell.root / 'work' / 'etcd.snapshot')
    run_module(talos_etcd, cell.common(action='snapshot', node=CONTROLPLANE[0], dest=dest))
    double_state.etcd_write(cell.state, 41)
    assert double_state.etcd_revision(cell.state) == 42
    # etcd data still there: the guard sees etcd running, nothing is recovered
    r = run_module(talos_bootstrap, cell.common(nodes=CONTROLPLANE, bootstrap_node=CONTROLPLANE[1], recover_from=dest))
    assert not r['changed'] and r['already_bootstrapped'] and not r['recovered']
    for ip in CONTROLPLANE:
        assert run_module(talos_reset, cell.common(node=ip, graceful=False, system_labels_to_wipe=['EPHEMERAL'],
                                                   wait_timeout=30))['changed']
    time.sleep(1.1)
    r = run_module(talos_bootstrap, cell.common(nodes=CONTROLPLANE, bootstrap_node=CONTROLPLANE[1], recover_from=dest))
    assert r['changed'] and r['bootstrapped'] and r['recovered'], r
    argv = cell.calls('bootstrap')[-1]['argv']
    assert argv[argv.index('--recover-from') + 1] == dest
    assert double_state.etcd_revision(cell.state) == 1, 'the snapshot revision, not the later writes'
    names = [NAMES[ip] for ip in CONTROLPLANE]
    healthy = run_module(talos_etcd, cell.common(action='status', nodes=CONTROLPLANE, expected_members=names,
                                                 wait_timeout=30, poll=0.3))
    assert healthy['healthy'], healthy


def test_recover_refuses_a_missing_snapshot(cell):
    r = run_module(talos_bootstrap, cell.common(nodes=CONTROLPLANE, bootstrap_node=CONTROLPLANE[0],
                                                recover_from=str(cell.root / 'nope.snapshot')))
    assert r['failed'] and 'does not exist' in r['msg'] and cell.calls('bootstrap') == []


# --- talos_kubeconfig renew ---------------------------------------------------------------------------
def test_kubeconfig_renew_replaces_an_equivalent_file(cell):
    dest = str(cell.root / 'work' / 'kubeconfig')
    assert run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest))['changed']
    with open(dest, 'rb') as f:
        first = f.read()
    kept = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest))
    assert not kept['changed'] and kept['reason'] == 'equivalent'
    renewed = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest, renew=True))
    assert renewed['changed'] and renewed['reason'] == 'renewed'
    with open(dest, 'rb') as f:
        assert f.read() != first


# --- cell_credentials_info ----------------------------------------------------------------------------
def _cert_b64(days):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'admin')])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now + datetime.timedelta(days=days, hours=1)).sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


def test_credentials_expiry_is_reported_never_an_error(tmp_path):
    keys = AgeKeys(tmp_path / 'age')
    sops = sops_utils.Sops(str(keys.identity))

    def store(name, doc, recipients=None):
        path = tmp_path / name
        path.write_bytes(sops.encrypt(yaml.safe_dump(doc).encode(), recipients or keys.recipients, str(path)))
        return str(path)
    files = {
        'talosconfig': store('talosconfig.sops.yaml', {'context': 'cell', 'contexts': {'cell': {'crt': _cert_b64(10)}}}),
        'kubeconfig': store('kubeconfig.sops.yaml', {'users': [{'name': 'admin@cell', 'user': {
            'client-certificate-data': _cert_b64(300)}}]}),
        'broken': store('broken.sops.yaml', {'contexts': {'cell': {'crt': base64.b64encode(b'not a cert').decode()}}}),
        'foreign': store('foreign.sops.yaml', {'contexts': {'cell': {'crt': _cert_b64(5)}}}, keys.other_recipients),
        'missing': str(tmp_path / 'nope.sops.yaml'),
    }
    r = run_module(cell_credentials_info, dict(files=files, age_identity=str(keys.identity), warn_days=30))
    assert not r.get('failed'), r
    creds = r['credentials']
    assert creds['talosconfig']['status'] == 'expiring' and creds['talosconfig']['days_left'] == 10
    assert creds['kubeconfig']['status'] == 'ok' and creds['kubeconfig']['days_left'] == 300
    assert creds['broken']['status'] == 'unknown' and 'not a PEM X.509 certificate' in \
        creds['broken']['certificates'][0]['reason']
    assert creds['missing']['status'] == 'missing'
    # a file the identity cannot open is unknown (the sops runner's reason), never an error or a guess
    assert creds['foreign']['status'] == 'unknown' and creds['foreign']['reason']
    assert r['expiring'] == ['talosconfig']
    warnings = warning_texts(r)
    assert len(warnings) == 1 and 'renew-credentials.yml' in warnings[0] and "talosconfig expires" in warnings[0]
    assert 'BEGIN' not in str(r)
