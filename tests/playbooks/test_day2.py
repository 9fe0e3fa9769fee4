"""Day 2 end to end: upgrade.yml, adding a node with site.yml, remove-node.yml (quorum refusals, a live
worker, a dead control plane replaced by a fresh machine), etcd-snapshot.yml / etcd-restore.yml and
renew-credentials.yml, on a cell built by site.yml on the talosctl double.

Real parts: ansible-playbook, the whole collection, the real sops binary and real age keys; every secret
the playbooks write (snapshots, renewed credentials) is a SOPS file opened here the way an operator does. Stand-ins: the talosctl
test double (tests/doubles/talosctl, strict mode) - machines that reboot for a while after an upgrade
or reset, etcd membership, quorum, snapshots - and the in-process fake Kubernetes API
(tests/doubles/fake_kube_api.py on 127.0.0.1) with one Node per machine, pods to drain and a thread
that plays the kubelets: a node whose Talos API is down is NotReady, and Ready again when it is back
(after an optional delay, to make a node come back slowly). Everything runs inside scripts/netns-run.

The tests of this module share one cell and run in file order: each starts from where the previous
one left it (the cell is upgraded, then grows, then shrinks).

    scripts/netns-run .venv/bin/python -m pytest -q tests/playbooks/test_day2.py
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time

import pytest
import yaml

from cell_harness import (  # pylint: disable=import-error
    DOUBLES, NODES, REPO, changed_hosts, double, fail_text, make_cell, recap, run_playbook, sops_utils)

import sys  # noqa: E402  pylint: disable=wrong-import-order
if str(DOUBLES) not in sys.path:
    sys.path.insert(0, str(DOUBLES))
from fake_kube_api import FakeKubeAPI  # noqa: E402  pylint: disable=import-error,wrong-import-position
# the double's cli first: it imports day2 to register the day-2 commands (day2 imports cli back)
from talosctl_double import cli as _double_cli  # noqa: E402,F401  pylint: disable=import-error,wrong-import-position,unused-import
from talosctl_double import day2 as double_snapshots  # noqa: E402  pylint: disable=import-error,wrong-import-position

# One cell, ~25 ansible-playbook runs (upgrade, remove, replace, restore, renew): about 13 minutes of
# CPU, so `make test-extended` runs this file and `make test` leaves it out (docs/proven.md says so).
pytestmark = [pytest.mark.slow, pytest.mark.extended]

NAMES = [name for name, _ip in NODES]
IP = dict(NODES)
CONTROL_PLANES = [name for name in NAMES if name.startswith('cp-')]
WORKERS = [name for name in NAMES if name.startswith('worker-')]
# the reference cell's Image Factory schematic (what every installer image of the cell is built from)
SCHEMATIC = yaml.safe_load((REPO / 'inventories' / 'production' / 'group_vars' / 'all' / 'cell.yml').read_text())[
    'cellplatform_talos_schematic_id']
TARGET = 'v1.13.10'
# Fast but real waits: every gate polls, every node reboots for a while.
KNOBS = {
    'l0_infrastructure_gate_poll': 0.3,
    'l0_infrastructure_etcd_timeout': 60,
    'l0_infrastructure_node_ready_timeout': 30,
    'l0_infrastructure_drain_timeout': 30,
    'l0_infrastructure_upgrade_timeout': 60,
    'l0_infrastructure_talos_probe_timeout': 5,
}


class Kubelets(object):
    """Plays the kubelets for the fake API: a node whose Talos API is down (rebooting, dead, reset) is NotReady;
    once it answers again it is Ready after ``delay[name]`` seconds. Every change is recorded in ``timeline``."""

    def __init__(self, api, state):
        self.api, self.state = api, str(state)
        self.delay = {}
        self.timeline = []
        self._back = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def ready(self, name):
        node = self.api.get('v1', 'Node', name)
        conds = ((node or {}).get('status') or {}).get('conditions') or []
        return any(c.get('type') == 'Ready' and c.get('status') == 'True' for c in conds)

    def _set(self, name, ready):
        if self.api.set_node_ready(name, ready):
            self.timeline.append((time.time(), name, 'Ready' if ready else 'NotReady'))

    def _run(self):
        while not self._stop.is_set():
            try:
                cell = double.Cell(self.state)
                down = set(double.down_now(cell))
                with self.api.lock:
                    names = [key[3] for key in self.api.objects if key[1] == 'Node']
                ips = dict((n['name'], n['ip']) for n in cell.nodes.values())
                for name in names:
                    ip = ips.get(name)
                    if ip is None:
                        continue
                    is_ready = self.ready(name)
                    if ip in down or (cell.nodes[ip].get('stage') == 'maintenance'):
                        self._back.pop(name, None)
                        if is_ready:
                            self._set(name, False)
                    elif not is_ready:
                        since = self._back.setdefault(name, time.time())
                        if time.time() - since >= self.delay.get(name, 0):
                            self._set(name, True)
            except (OSError, ValueError, KeyError):
                pass  # a state file replaced while it was read: look again
            self._stop.wait(0.2)


def add_node(api, name, ip, kubelet='v1.36.3'):
    api.handle('POST', '/api/v1/nodes', {
        'apiVersion': 'v1', 'kind': 'Node', 'metadata': {'name': name},
        'spec': {'podCIDR': '10.244.%s.0/24' % ip.rsplit('.', 1)[1]},
        'status': {'addresses': [{'type': 'InternalIP', 'address': ip}],
                   'nodeInfo': {'kubeletVersion': kubelet, 'architecture': 'amd64', 'bootID': name,
                                'containerRuntimeVersion': 'containerd://2.1.5', 'kernelVersion': '6.18.1-talos',
                                'kubeProxyVersion': '', 'machineID': name, 'operatingSystem': 'linux',
                                'osImage': 'Talos (v1.13.9)', 'systemUUID': name},
                   'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'KubeletReady'}]}},
        'application/json')


@pytest.fixture(scope='module')
def cell(tmp_path_factory):
    """A cell built by site.yml (-t talos) on the double, plus the fake Kubernetes API with its nodes and pods."""
    c = make_cell(tmp_path_factory, 'day2', pre_bootstrap_etcd='refuse', upgrade_reboot_seconds=0.4,
                  etcd_settle_seconds=0.3)
    proc = run_playbook(c, 'site.yml', '-t', 'talos', '-e', 'cellplatform_provisioner=none',
                        '-e', 'cellplatform_mode=apply', timeout=600)
    assert proc.returncode == 0, fail_text(proc)
    api = FakeKubeAPI(auto_ready=False).start()
    for name, ip in NODES:
        add_node(api, name, ip)
    api.handle('POST', '/api/v1/namespaces', {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'apps'}},
               'application/json')
    for name in NAMES:
        api.add_pod('kube-system', 'cilium-%s' % name, name, owner_kind='DaemonSet')
    for name in WORKERS:
        api.add_pod('apps', 'web-7d9f-%s' % name, name)
    kubeconfig = c['root'] / 'fake-kubeconfig'
    api.write_kubeconfig(str(kubeconfig))
    kubelets = Kubelets(api, c['state']).start()
    c.update(api=api, kubelets=kubelets, kubeconfig=str(kubeconfig))
    # built without Terraform (the bpg/proxmox provider cannot be installed here): remove-node's VM step is
    # proven with real terraform in tests/integration/test_terraform.py (destroy_exactly)
    c['day2'] = dict(c['extra'], cellplatform_kubeconfig=str(kubeconfig), cellplatform_provisioner='none', **KNOBS)
    yield c
    kubelets.stop()
    api.stop()


def day2(cell, playbook, *args, check=False, extra=None, timeout=900):
    return run_playbook(cell, playbook, *args, extra=dict(cell['day2'], **(extra or {})), check=check,
                        timeout=timeout)


def calls_since(cell, before, command=None):
    new = double.calls(str(cell['state']))[before:]
    return [c for c in new if command is None or c.get('command') == command]


def ncalls(cell):
    return len(double.calls(str(cell['state'])))


def node(cell, name):
    return double.node(str(cell['state']), IP.get(name) or name)


def upgrades(cell, since=0.0):
    return [e for e in double.events(str(cell['state']), 'upgrade') if e['time'] >= since]


def snapshots(cell):
    return sorted((cell['inv'] / 'secrets' / 'etcd-snapshots').glob('*.snapshot.sops'))


def decrypt(cell, path):
    return sops_utils.decrypt_file(str(path), str(cell['keys']))


def snapshot_info(cell, path):
    """What the double recorded in the snapshot a SOPS file holds (decrypted with the cell's identity)."""
    plain = cell['root'] / 'snapshot.check'
    plain.write_bytes(decrypt(cell, path))
    try:
        info, error = double_snapshots.read_snapshot(str(plain))
    finally:
        plain.unlink()
    assert error is None, error
    return info


def install_image(text):
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict) and doc.get('version') == 'v1alpha1':
            return doc['machine']['install']['image']
    return None


# --- upgrade.yml -------------------------------------------------------------------------------------
def test_check_mode_plans_the_upgrade_and_touches_nothing(cell):
    before = ncalls(cell)
    proc = day2(cell, 'upgrade.yml', '-e', 'cellplatform_talos_version=%s' % TARGET,
                '-e', 'cellplatform_upgrade_batch_size=2', check=True)
    assert proc.returncode == 0, fail_text(proc)
    # control planes one per batch, workers in batches of the inventory's size (2 + 1)
    assert proc.stdout.count('PLAY [Upgrade | Control planes, one at a time]') == 3
    assert proc.stdout.count('PLAY [Upgrade | Workers, in batches]') == 2
    out = re.sub(r'\s+', ' ', proc.stdout)
    assert 'Nodes to upgrade: %s' % ', '.join(NAMES) in out, out[-4000:]
    assert 'etcd snapshot would be taken' in out
    assert calls_since(cell, before, 'upgrade') == [] and calls_since(cell, before, 'etcd snapshot') == []
    assert [c for c in calls_since(cell, before, 'apply-config') if '--dry-run' not in c['argv']] == []
    assert not snapshots(cell)
    assert all(node(cell, n)['version'] == 'v1.13.9' for n in NAMES)
    # it tells the truth: the upgrades it would do are reported as changes, per node
    changed = changed_hosts(proc)
    assert all(changed.get(n) for n in NAMES), changed


@pytest.fixture(scope='module')
def upgraded(cell):
    """The Done-when run: cp-2 comes back slowly in Kubernetes; everything upgraded to v1.13.10."""
    cell['kubelets'].delay['cp-2'] = 4.0
    started = time.time()
    before = ncalls(cell)
    proc = day2(cell, 'upgrade.yml', '-e', 'cellplatform_talos_version=%s' % TARGET)
    cell['kubelets'].delay.pop('cp-2')
    assert proc.returncode == 0, fail_text(proc)
    return dict(proc=proc, started=started, before=before)


def test_upgrade_takes_a_snapshot_first_and_upgrades_every_node_once(cell, upgraded):
    state = str(cell['state'])
    found = snapshots(cell)
    assert len(found) == 1 and found[0].name.endswith('-before-upgrade.snapshot.sops'), found
    # a SOPS binary file encrypted to the cell's recipients, holding the snapshot the double took
    assert sops_utils.recipients_of_file(str(found[0])) == cell['extra']['cellplatform_age_recipients']
    info = snapshot_info(cell, found[0])
    assert info['revision'] == double.events(str(cell['state']), 'etcd-snapshot')[-1]['revision'], info
    snap = double.events(state, 'etcd-snapshot')
    ups = upgrades(cell, upgraded['started'])
    assert snap and snap[-1]['time'] < ups[0]['time'], 'the snapshot must come before the first upgrade'
    assert [e['node'] for e in ups] == [IP[n] for n in NAMES], 'control planes first, then the workers, each once'
    assert all(e['version_from'] == 'v1.13.9' and e['version_to'] == TARGET for e in ups)
    image = 'factory.talos.dev/nocloud-installer/%s:%s' % (SCHEMATIC, TARGET)
    assert all(e['image'] == image for e in ups)
    for name in NAMES:
        n = node(cell, name)
        assert n['version'] == TARGET and n['schematic'] == SCHEMATIC, (name, n['version'], n['schematic'])
    assert double.cluster(state)['max_down'] == 1, 'at most one node down at any moment'
    assert double.cluster(state)['quorum_losses'] == []
    # drained through the Kubernetes API, uncordoned afterwards, the drain mark removed
    api = cell['api']
    evicted = [e for e in api.events if e['verb'] == 'evict']
    assert sorted(e['name'] for e in evicted) == sorted('web-7d9f-%s' % w for w in WORKERS), evicted
    for name in NAMES:
        meta = api.get('v1', 'Node', name)
        assert not (meta.get('spec') or {}).get('unschedulable'), name
        assert 'cellplatform.io/drained-for' not in (meta['metadata'].get('annotations') or {}), name
    assert all(cell['kubelets'].ready(n) for n in NAMES)


def test_a_node_that_comes_back_slowly_holds_the_next_one(cell, upgraded):
    timeline = [t for t in cell['kubelets'].timeline if t[0] >= upgraded['started']]
    cp2_ready = [t for t, name, what in timeline if name == 'cp-2' and what == 'Ready']
    cp2_down = [t for t, name, what in timeline if name == 'cp-2' and what == 'NotReady']
    cp3_start = [e['time'] for e in upgrades(cell, upgraded['started']) if e['node'] == IP['cp-3']]
    assert cp2_ready and cp2_down and cp3_start
    assert cp2_ready[0] - cp2_down[0] >= 4.0, 'cp-2 was slow to become Ready'
    assert cp3_start[0] > cp2_ready[0], 'cp-3 started before cp-2 was Ready again'
    # and nobody was NotReady while another node was
    down = set()
    for _t, name, what in sorted(timeline):
        if what == 'NotReady':
            down.add(name)
            assert len(down) == 1, down
        else:
            down.discard(name)


def test_machine_configs_carry_the_new_install_image(cell, upgraded):
    image = 'factory.talos.dev/nocloud-installer/%s:%s' % (SCHEMATIC, TARGET)
    for name in NAMES:
        stored = decrypt(cell, cell['build'] / 'talos' / 'machineconfigs' / ('%s.sops.yaml' % name)).decode()
        assert install_image(stored) == image, name
        assert install_image(node(cell, name)['config']) == image, name
    common = list(yaml.safe_load_all((cell['build'] / 'talos' / 'patches' / 'common.yaml').read_text()))
    assert common[0]['machine']['install']['image'] == image


def test_a_second_run_upgrades_nothing(cell, upgraded):
    before_calls = ncalls(cell)
    t0 = time.time()
    proc = day2(cell, 'upgrade.yml', '-e', 'cellplatform_talos_version=%s' % TARGET)
    assert proc.returncode == 0, fail_text(proc)
    assert upgrades(cell, t0) == []
    assert calls_since(cell, before_calls, 'upgrade') == [] and calls_since(cell, before_calls, 'etcd snapshot') == []
    assert len(snapshots(cell)) == 1
    assert changed_hosts(proc) == {}, proc.stdout[-5000:]
    # certificates a year away are outside the default 30-day window: no expiry warning
    assert 'admin client certificate' not in proc.stdout + proc.stderr


def test_site_yml_afterwards_keeps_the_new_install_image(cell, upgraded):
    before = ncalls(cell)
    proc = run_playbook(cell, 'site.yml', '-t', 'talos', '-e', 'cellplatform_provisioner=none',
                        '-e', 'cellplatform_mode=apply', '-e', 'cellplatform_talos_version=%s' % TARGET, timeout=600)
    assert proc.returncode == 0, fail_text(proc)
    assert [c for c in calls_since(cell, before, 'apply-config') if '--dry-run' not in c['argv']] == []
    assert changed_hosts(proc) == {}, proc.stdout[-4000:]


# --- refusals: nothing is touched -----------------------------------------------------------------
def assert_untouched(cell, before, snaps_before):
    assert calls_since(cell, before, 'upgrade') == [], 'an upgrade ran'
    assert calls_since(cell, before, 'etcd snapshot') == [], 'a snapshot was taken'
    assert [c for c in calls_since(cell, before, 'apply-config') if '--dry-run' not in c['argv']] == []
    assert len(snapshots(cell)) == snaps_before
    assert not [e for e in cell['api'].events[cell['api_events']:] if e['verb'] in ('patch', 'evict', 'delete')]


def refused(cell, proc):
    out = re.sub(r'\s+', ' ', proc.stdout)
    assert proc.returncode != 0, fail_text(proc)
    assert 'upgrade.yml refused to start' in out or 'Preflight found' in out, out[-4000:]
    return out


@pytest.fixture
def watch(cell):
    cell['api_events'] = len(cell['api'].events)
    return ncalls(cell), len(snapshots(cell))


def test_refuses_a_talos_jump_of_more_than_one_minor(cell, upgraded, watch):
    state = str(cell['state'])
    double.update(state, lambda c: c.nodes[IP['cp-2']].update(version='v1.11.5'))
    try:
        proc = day2(cell, 'upgrade.yml', '-e', 'cellplatform_talos_version=%s' % TARGET)
    finally:
        double.update(state, lambda c: c.nodes[IP['cp-2']].update(version=TARGET))
    out = refused(cell, proc)
    assert 'cp-2 (192.168.100.52) runs Talos v1.11.5 and %s is more than one minor version ahead' % TARGET in out
    assert_untouched(cell, *watch)


def test_refuses_a_kubernetes_version_the_target_talos_does_not_support(cell, upgraded, watch):
    # the target itself (the preflight says so)
    proc = day2(cell, 'upgrade.yml', '-e', 'cellplatform_talos_version=%s' % TARGET,
                '-e', 'cellplatform_kubernetes_version=1.37.1')
    out = refused(cell, proc)
    assert 'cellplatform_kubernetes_version: 1.37.1' in out and 'v1.13' in out, out[-3000:]
    # the version running now, which the nodes would keep during a Talos minor upgrade
    state = str(cell['state'])

    def kubelet(version):
        def _f(c):
            for n in c.nodes.values():
                n['config'] = re.sub(r'kubelet:v1\.\d+\.\d+', 'kubelet:%s' % version, n['config'])
        return _f
    double.update(state, kubelet('v1.32.4'))
    cell['env']['TALOSCTL_DOUBLE_VERSION'] = 'v1.14.0'
    try:
        proc = day2(cell, 'upgrade.yml', '-e', 'cellplatform_talos_version=v1.14.0',
                    '-e', 'cellplatform_kubernetes_version=1.33.2')
    finally:
        cell['env'].pop('TALOSCTL_DOUBLE_VERSION')
        double.update(state, kubelet('v1.36.3'))
    out = refused(cell, proc)
    assert 'the cell runs Kubernetes 1.32.4, which Talos v1.14.0 does not support (1.33-1.37)' in out, out[-3000:]
    assert_untouched(cell, *watch)


def test_refuses_a_cluster_that_is_not_healthy_now(cell, upgraded, watch):
    state = str(cell['state'])
    double.update(state, lambda c: c.nodes[IP['cp-3']].update(etcd_ready_at=time.time() + 3600))
    try:
        proc = day2(cell, 'upgrade.yml', '-e', 'cellplatform_talos_version=v1.13.11')
    finally:
        double.update(state, lambda c: c.nodes[IP['cp-3']].update(etcd_ready_at=0))
    out = re.sub(r'\s+', ' ', proc.stdout)
    assert proc.returncode != 0
    assert 'etcd is not healthy: etcd on 192.168.100.53 does not answer' in out, out[-3000:]
    assert_untouched(cell, *watch)


def test_a_limit_without_localhost_is_refused(cell, upgraded, watch):
    proc = day2(cell, 'upgrade.yml', '--limit', 'cp-1', '-e', 'cellplatform_talos_version=v1.13.11')
    out = re.sub(r'\s+', ' ', proc.stdout)
    assert proc.returncode != 0
    assert 'Include localhost in the limit, e.g. --limit cp-1,localhost' in out, out[-3000:]
    assert_untouched(cell, *watch)


# --- resume after an interruption, --limit, Kubernetes -----------------------------------------------
def test_an_interrupted_upgrade_resumes_where_it_stopped(cell, upgraded):
    """v1.13.11 and Kubernetes 1.36.4. Run 1: cp-3's upgrade fails (Unavailable) - the run stops with cp-1 and
    cp-2 done, cp-3 drained. Run 2, --limit cp-3,localhost: only cp-3; Kubernetes waits for the workers.
    Run 3: worker-1 is upgraded but never becomes Ready within the gate - the run stops with it cordoned.
    Run 4: nothing is upgraded twice; worker-1 is only gated and uncordoned; then Kubernetes."""
    state = str(cell['state'])
    versions = ['-e', 'cellplatform_talos_version=v1.13.11', '-e', 'cellplatform_kubernetes_version=1.36.4']
    t0 = time.time()
    double.inject_failure(state, 'upgrade', 'Unavailable', 'connection error: desc = "transport: error reading '
                          'server preface: EOF"', count=1, node=IP['cp-3'])
    run1 = day2(cell, 'upgrade.yml', *versions)
    assert run1.returncode != 0
    assert [e['node'] for e in upgrades(cell, t0)] == [IP['cp-1'], IP['cp-2']]
    assert len(snapshots(cell)) == 2
    cp3 = cell['api'].get('v1', 'Node', 'cp-3')
    assert cp3['spec'].get('unschedulable') and 'cellplatform.io/drained-for' in cp3['metadata']['annotations']

    t1 = time.time()
    run2 = day2(cell, 'upgrade.yml', '--limit', 'cp-3,localhost', *versions)
    assert run2.returncode == 0, fail_text(run2)
    assert [e['node'] for e in upgrades(cell, t1)] == [IP['cp-3']]
    assert re.search(r'Kubernetes stays at 1\.36\.3: nodes worker-1, worker-2, worker-3 do not run Talos v1\.13\.11',
                     re.sub(r'\s+', ' ', run2.stdout))
    assert not cell['api'].get('v1', 'Node', 'cp-3')['spec'].get('unschedulable')

    t2 = time.time()
    cell['kubelets'].delay['worker-1'] = 1000
    try:
        run3 = day2(cell, 'upgrade.yml', *versions, extra={'l0_infrastructure_node_ready_timeout': 3})
    finally:
        cell['kubelets'].delay.pop('worker-1')
    assert run3.returncode != 0
    assert [e['node'] for e in upgrades(cell, t2)] == [IP['worker-1']]
    assert 'timed out after 3s waiting for Node worker-1' in re.sub(r'\s+', ' ', run3.stdout)
    assert cell['api'].get('v1', 'Node', 'worker-1')['spec'].get('unschedulable')

    t3 = time.time()
    run4 = day2(cell, 'upgrade.yml', *versions)
    assert run4.returncode == 0, fail_text(run4)
    assert [e['node'] for e in upgrades(cell, t3)] == [IP['worker-2'], IP['worker-3']]
    for name in NAMES:
        assert node(cell, name)['version'] == 'v1.13.11'
        meta = cell['api'].get('v1', 'Node', name)
        assert not meta['spec'].get('unschedulable') and 'cellplatform.io/drained-for' not in \
            (meta['metadata'].get('annotations') or {}), name
    # Kubernetes: a dry run first, then the upgrade, once
    k8s = [c for c in double.calls(state) if c.get('command') == 'upgrade-k8s' and c['time'] >= t0]
    assert [('--dry-run' in c['argv']) for c in k8s] == [True, False], [c['argv'] for c in k8s]
    assert all('kubelet:v1.36.4' in node(cell, n)['config'] for n in NAMES)
    assert double.cluster(state)['max_down'] == 1 and double.cluster(state)['quorum_losses'] == []
    # and a rerun with the same versions changes nothing
    t4 = time.time()
    run5 = day2(cell, 'upgrade.yml', *versions)
    assert run5.returncode == 0, fail_text(run5)
    assert upgrades(cell, t4) == [] and changed_hosts(run5) == {}, run5.stdout[-4000:]
    assert [c for c in double.calls(state) if c.get('command') == 'upgrade-k8s' and c['time'] >= t4
            and '--dry-run' not in c['argv']] == []
    cell['day2'].update(cellplatform_talos_version='v1.13.11', cellplatform_kubernetes_version='1.36.4')
    cell['extra'].update(cellplatform_talos_version='v1.13.11', cellplatform_kubernetes_version='1.36.4')


# --- adding a node: site.yml ---------------------------------------------------------------------------
def set_hosts(cell, add=None, drop=None):
    """Edit the cell's hosts.yml like an operator: add {group: {name: ip}}, drop [names]."""
    path = cell['inv'] / 'hosts.yml'
    doc = yaml.safe_load(path.read_text())
    groups = doc['all']['children']['cell']['children']
    for group, hosts in (add or {}).items():
        for name, ip in hosts.items():
            groups[group]['hosts'][name] = {'cellplatform_node_ip': ip}
    for name in drop or []:
        for group in groups.values():
            group['hosts'].pop(name, None)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def site(cell):
    return run_playbook(cell, 'site.yml', '-t', 'talos', '-e', 'cellplatform_provisioner=none',
                        '-e', 'cellplatform_mode=apply', timeout=600)


def test_adding_a_host_to_the_inventory_and_running_site_yml_joins_only_that_node(cell):
    state = str(cell['state'])
    ip = '192.168.100.64'
    double.update(state, lambda c: c.nodes.__setitem__(ip, double.new_node('worker-4', ip)))
    set_hosts(cell, add={'workers': {'worker-4': ip}})
    before = ncalls(cell)
    proc = site(cell)
    assert proc.returncode == 0, fail_text(proc)
    applies = [c for c in calls_since(cell, before, 'apply-config') if '--dry-run' not in c['argv']]
    assert len(applies) == 1 and '--insecure' in applies[0]['argv'], [c['argv'] for c in applies]
    assert applies[0]['argv'][applies[0]['argv'].index('--nodes') + 1] == ip
    assert calls_since(cell, before, 'bootstrap') == [], 'a joining node never leads to a bootstrap'
    new = double.node(state, ip)
    assert new['stage'] == 'running' and new['version'] == 'v1.13.11' and new['schematic'] == SCHEMATIC
    changed = changed_hosts(proc)
    assert 'worker-4' in changed and set(changed) <= {'worker-4', 'localhost'}, changed
    add_node(cell['api'], 'worker-4', ip, kubelet='v1.36.4')
    IP['worker-4'] = ip


# --- remove-node.yml --------------------------------------------------------------------------------------
def removal_refused(cell, proc, text):
    out = re.sub(r'\s+', ' ', proc.stdout)
    assert proc.returncode != 0 and text in out, out[-3000:]
    return out


def test_remove_node_refusals_touch_nothing(cell, watch):
    before = ncalls(cell)
    proc = day2(cell, 'remove-node.yml', '-e', 'node=cp-9', '-e', 'confirm=cp-9')
    removal_refused(cell, proc, 'node=cp-9 is not a node of cell cell; pass -e node=<name>, one of: cp-1, cp-2')
    proc = day2(cell, 'remove-node.yml', '-e', 'node=worker-2', '-e', 'confirm=worker-1')
    removal_refused(cell, proc, 'Not confirmed: the name typed (or -e confirm=...) is not worker-2')
    proc = day2(cell, 'remove-node.yml', '-e', 'node=worker-2')     # no TTY: nothing can be typed
    removal_refused(cell, proc, 'Not confirmed')
    proc = day2(cell, 'remove-node.yml', '-e', 'node=cp-3', '-e', 'confirm=cp-3')
    removal_refused(cell, proc, 'removing cp-3 leaves 2 etcd members, an even number')
    state = str(cell['state'])
    double.set_unreachable(state, IP['cp-2'], 'refused')
    try:
        proc = day2(cell, 'remove-node.yml', '-e', 'node=cp-3', '-e', 'confirm=cp-3',
                    '-e', 'allow_even_controlplanes=true')
    finally:
        double.set_unreachable(state, IP['cp-2'], None)
    removal_refused(cell, proc, 'removing cp-3 would leave 1 of 2 members running, below the quorum of 2')
    touched = [c['command'] for c in calls_since(cell, before)
               if c['command'] in ('reset', 'etcd leave', 'etcd remove-member', 'upgrade')]
    assert touched == []
    assert not [e for e in cell['api'].events[cell['api_events']:] if e['verb'] in ('patch', 'evict', 'delete')]
    assert len(double.etcd_member_list(state)) == 3


def test_remove_a_worker_and_a_rerun_changes_nothing(cell):
    state = str(cell['state'])
    cell['api'].add_pod('apps', 'web-7d9f-again', 'worker-3')
    before = ncalls(cell)
    preview = day2(cell, 'remove-node.yml', '-e', 'node=worker-3', '-e', 'confirm=worker-3', check=True)
    assert preview.returncode == 0, fail_text(preview)
    assert changed_hosts(preview).get('localhost'), 'check mode reports the drain, reset and deletion it would do'
    assert calls_since(cell, before, 'reset') == [] and cell['api'].get('v1', 'Node', 'worker-3') is not None
    assert cell['api'].get('v1', 'Pod', 'web-7d9f-again', 'apps') is not None
    proc = day2(cell, 'remove-node.yml', '-e', 'node=worker-3', '-e', 'confirm=worker-3')
    assert proc.returncode == 0, fail_text(proc)
    assert [e['name'] for e in cell['api'].events if e['verb'] == 'evict'][-1] == 'web-7d9f-again'
    assert cell['api'].get('v1', 'Node', 'worker-3') is None
    resets = double.events(state, 'reset')
    assert resets[-1]['node'] == IP['worker-3'] and resets[-1]['graceful'] and resets[-1]['reboot']
    time.sleep(0.6)
    assert double.node(state, IP['worker-3'])['stage'] == 'maintenance'
    assert 'Now delete it from the inventory' in re.sub(r'\s+', ' ', proc.stdout)
    before = ncalls(cell)
    again = day2(cell, 'remove-node.yml', '-e', 'node=worker-3', '-e', 'confirm=worker-3')
    assert again.returncode == 0, fail_text(again)
    assert changed_hosts(again) == {}, again.stdout[-4000:]
    assert calls_since(cell, before, 'reset') == []
    set_hosts(cell, drop=['worker-3'])


def test_replace_a_dead_control_plane(cell):
    """cp-3 dies: its member is removed from a healthy peer (it cannot leave itself), its reset is skipped, its Node
    deleted; a fresh machine with the same name and address joins through site.yml - no bootstrap, one etcd
    cluster, a new member ID."""
    state = str(cell['state'])
    double.set_unreachable(state, IP['cp-3'], 'refused')
    old = [m['id'] for m in double.etcd_member_list(state) if m['name'] == 'cp-3'][0]
    proc = day2(cell, 'remove-node.yml', '-e', 'node=cp-3', '-e', 'confirm=cp-3', '-e', 'allow_even_controlplanes=true')
    assert proc.returncode == 0, fail_text(proc)
    removed = double.events(state, 'etcd-remove-member')
    assert removed[-1]['member'] == old and removed[-1]['by'] in (IP['cp-1'], IP['cp-2'])
    assert [m['name'] for m in double.etcd_member_list(state)] == ['cp-1', 'cp-2']
    assert 'was not reset: its Talos API does not answer' in re.sub(r'\s+', ' ', proc.stderr)
    assert cell['api'].get('v1', 'Node', 'cp-3') is None
    # the fresh machine boots in maintenance mode with the same name and address; the inventory is unchanged
    double.update(state, lambda c: c.nodes.__setitem__(IP['cp-3'], double.new_node('cp-3', IP['cp-3'])))
    before = ncalls(cell)
    joined = site(cell)
    assert joined.returncode == 0, fail_text(joined)
    assert calls_since(cell, before, 'bootstrap') == []
    applies = [c for c in calls_since(cell, before, 'apply-config') if '--dry-run' not in c['argv']]
    assert [c['argv'][c['argv'].index('--nodes') + 1] for c in applies] == [IP['cp-3']]
    members = double.etcd_member_list(state)
    assert [m['name'] for m in members] == ['cp-1', 'cp-2', 'cp-3'] and old not in [m['id'] for m in members]
    assert len(double.etcd_clusters(state)) == 1
    add_node(cell['api'], 'cp-3', IP['cp-3'], kubelet='v1.36.4')


# --- etcd-snapshot.yml / etcd-restore.yml ----------------------------------------------------------------
def test_snapshot_on_demand_and_restore(cell):
    state = str(cell['state'])
    count = len(snapshots(cell))
    proc = day2(cell, 'etcd-snapshot.yml')
    assert proc.returncode == 0, fail_text(proc)
    found = snapshots(cell)
    assert len(found) == count + 1 and found[-1].name.endswith('-on-demand.snapshot.sops')
    revision = double.etcd_revision(state)
    work = cell['root'] / 'work'
    assert not (work / 'etcd-snapshot').exists(), 'the private directory of the plaintext snapshot is removed'
    assert not [p for p in work.rglob('*') if p.is_file() and p.name.startswith('etcd')], list(work.rglob('*'))
    double.etcd_write(state, 7)      # the cluster goes on; then disaster
    clusters_before = double.cluster(state)['etcd_clusters']
    wrong = day2(cell, 'etcd-restore.yml', '-e', 'confirm=prod')
    assert wrong.returncode != 0 and 'Not confirmed' in re.sub(r'\s+', ' ', wrong.stdout)
    assert double.etcd_revision(state) == revision + 7
    before = ncalls(cell)
    preview = day2(cell, 'etcd-restore.yml', '-e', 'confirm=cell', '-e', 'snapshot=%s' % found[-1], check=True)
    assert preview.returncode == 0, fail_text(preview)
    assert 'Check mode: after the wipe, etcd would be recovered' in re.sub(r'\s+', ' ', preview.stdout)
    assert calls_since(cell, before, 'reset') == [] and calls_since(cell, before, 'bootstrap') == []
    assert double.etcd_revision(state) == revision + 7
    proc = day2(cell, 'etcd-restore.yml', '-e', 'confirm=cell', '-e', 'snapshot=%s' % found[-1])
    assert proc.returncode == 0, fail_text(proc)
    assert double.etcd_revision(state) == revision, 'etcd holds the snapshot, not the later writes'
    assert double.cluster(state)['etcd_clusters'] == clusters_before + 1
    assert [m['name'] for m in double.etcd_member_list(state)] == ['cp-1', 'cp-2', 'cp-3']
    resets = [e for e in double.events(state, 'reset') if e['labels'] == ['EPHEMERAL']]
    assert sorted(e['node'] for e in resets[-3:]) == sorted(IP[n] for n in CONTROL_PLANES)
    assert all(not e['graceful'] for e in resets[-3:])
    boot = double.events(state, 'bootstrap')[-1]
    assert boot['node'] == IP['cp-1'] and boot['recovered_revision'] == revision
    # the decrypted snapshot lived in a private directory of the work dir, gone after the run
    argv = [c for c in double.calls(state) if c.get('command') == 'bootstrap'][-1]['argv']
    assert argv[argv.index('--recover-from') + 1] == str(work / 'etcd-snapshot' / 'etcd.snapshot'), argv
    assert not (work / 'etcd-snapshot').exists()
    assert not [p for p in work.rglob('*') if p.is_file() and p.name.startswith('etcd')], list(work.rglob('*'))


# --- renew-credentials.yml --------------------------------------------------------------------------------
def client_serials(cell):
    secrets = cell['inv'] / 'secrets'
    tc = yaml.safe_load(decrypt(cell, secrets / 'talosconfig.sops.yaml'))
    kc = yaml.safe_load(decrypt(cell, secrets / 'kubeconfig.sops.yaml'))
    from cryptography import x509
    return {'talosconfig': x509.load_pem_x509_certificate(base64.b64decode(tc['contexts']['cell']['crt'])).serial_number,
            'kubeconfig': x509.load_pem_x509_certificate(
                base64.b64decode(kc['users'][0]['user']['client-certificate-data'])).serial_number}


def test_renew_credentials_issues_new_certificates_and_touches_nothing_else(cell):
    secrets = cell['inv'] / 'secrets'
    bundle = (secrets / 'talos-secrets.sops.yaml').read_bytes()
    configs = dict((p.name, p.read_bytes()) for p in (cell['build'] / 'talos' / 'machineconfigs').glob('*.sops.yaml'))
    serials = client_serials(cell)
    before = ncalls(cell)
    # Talos issues the admin certificates for 365 days: a warning window of 400 days puts them inside it, so the
    # 30-day preflight warning (default window) is proven to fire, naming the file and the fix
    # (provisioner none like every day-2 run here: a Proxmox cell's apply preflight wants its Terraform token)
    proc = run_playbook(cell, 'renew-credentials.yml', timeout=600,
                        extra=dict(cell['extra'], cellplatform_provisioner='none', l0_infrastructure_credentials_warn_days=400))
    assert proc.returncode == 0, fail_text(proc)
    # the new talosconfig and the fetched admin kubeconfig were plaintext only inside the run
    assert list((cell['root'] / 'work' / 'plaintext').iterdir()) == []
    warned = re.sub(r'\s+', ' ', proc.stdout + proc.stderr)
    for name in ('talosconfig', 'kubeconfig'):
        assert "admin client certificate in the cell's %s expires on" % name in warned, warned[-3000:]
    assert 'renew it with `ansible-playbook playbooks/renew-credentials.yml`' in warned
    renewed = client_serials(cell)
    assert renewed['talosconfig'] != serials['talosconfig'] and renewed['kubeconfig'] != serials['kubeconfig']
    assert (secrets / 'talos-secrets.sops.yaml').read_bytes() == bundle, 'the cluster PKI is untouched'
    assert dict((p.name, p.read_bytes()) for p in (cell['build'] / 'talos' / 'machineconfigs').glob('*.sops.yaml')) == configs
    touched = [c['command'] for c in calls_since(cell, before)
               if c['command'] in ('apply-config', 'reset', 'upgrade', 'bootstrap', 'upgrade-k8s')]
    assert touched == []
    # the new credentials are the ones a later site.yml keeps (equivalent: nothing changes)
    stored = dict((n, (secrets / n).read_bytes()) for n in ('talosconfig.sops.yaml', 'kubeconfig.sops.yaml'))
    proc = site(cell)
    assert proc.returncode == 0, fail_text(proc)
    assert changed_hosts(proc) == {}, proc.stdout[-4000:]
    assert stored == dict((n, (secrets / n).read_bytes()) for n in stored)
