"""The cells the playbook tests build: a copy of the reference inventory, a real age key, a private work
dir and a fresh state of the talosctl test double (tests/doubles/talosctl) with six machines in
maintenance mode; and how a test runs a playbook of the collection against it (inside
scripts/netns-run, loopback only) and reads the PLAY RECAP. Used by test_site_talos.py and
test_day2.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOUBLES = REPO / 'tests' / 'doubles'
if str(DOUBLES) not in sys.path:
    sys.path.insert(0, str(DOUBLES))

from talosctl_double import state as double  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils  # noqa: E402

pyrage = pytest.importorskip('pyrage')  # a declared test dependency; missing means a broken venv

NODES = [('cp-1', '192.168.100.51'), ('cp-2', '192.168.100.52'), ('cp-3', '192.168.100.53'),
         ('worker-1', '192.168.100.61'), ('worker-2', '192.168.100.62'), ('worker-3', '192.168.100.63')]
RECAP_RE = re.compile(r'^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)'
                      r'\s+failed=(?P<failed>\d+)', re.M)


def make_cell(tmp_path_factory, name='site_talos', **double_settings):
    """A copy of the reference inventory, an age key, a work dir and a fresh double state of six maintenance
    nodes; *double_settings* go into the double's cluster state (pre_bootstrap_etcd, etcd_deadline_seconds...)."""
    root = tmp_path_factory.mktemp(name)
    inv = root / 'inventories' / 'production'
    shutil.copytree(REPO / 'inventories' / 'production', inv)
    for old in (inv / 'secrets').glob('*.age'):
        old.unlink()
    identity = pyrage.x25519.Identity.generate()
    keys = root / 'age' / 'keys.txt'
    keys.parent.mkdir(mode=0o700)
    keys.write_text('# test key\n%s\n' % identity)
    keys.chmod(0o600)
    state = root / 'double'
    double.create_cell(str(state), NODES)
    if double_settings:
        double.set_cluster(str(state), **double_settings)
    home = root / 'home'
    home.mkdir()
    extra = {
        'cellplatform_age_recipients': [str(identity.to_public())],
        'cellplatform_age_identity': str(keys),
        'cellplatform_work_dir': str(root / 'work'),
        # bare metal (provisioner none) has no Proxmox API for Karpenter: the preflight refuses it
        'cellplatform_karpenter': {'enabled': False},
    }
    env = dict(os.environ)
    env.update({
        'PATH': os.pathsep.join([str(DOUBLES), os.path.dirname(sys.executable), env.get('PATH', '')]),
        'TALOSCTL_DOUBLE_STATE': str(state),
        'TALOSCTL_DOUBLE_STRICT': '1',
        'ANSIBLE_COLLECTIONS_PATH': str(REPO),
        'ANSIBLE_CONFIG': str(REPO / 'ansible.cfg'),
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_NOCOLOR': '1',
        'HOME': str(home),
    })
    if os.environ.get('CELLPLATFORM_PROFILE'):
        env['ANSIBLE_CALLBACKS_ENABLED'] = 'ansible.posix.profile_tasks'
    return {'root': root, 'inv': inv, 'state': state, 'identity': identity, 'keys': keys,
            'extra': extra, 'env': env, 'build': root / 'build' / 'cell', 'runs': []}

def run_playbook(cell, playbook, *args, extra=None, check=False, timeout=900):
    """ansible-playbook <playbook> against the cell (inventory, age key, work dir, doubles on PATH)."""
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    argv = [str(REPO / 'scripts' / 'netns-run'), ansible_playbook, '-i', str(cell['inv'] / 'hosts.yml'),
            str(REPO / 'playbooks' / playbook)] + list(args) + \
        ['-e', json.dumps(cell['extra'] if extra is None else extra)] + (['--check', '--diff'] if check else [])
    proc = subprocess.run(argv, cwd=str(REPO), env=cell['env'], capture_output=True, text=True, timeout=timeout)
    cell['runs'].append(proc)
    if os.environ.get('CELLPLATFORM_PROFILE'):
        print(proc.stdout[-4000:])
    return proc


def recap(proc):
    rows = {m.group('host'): {k: int(m.group(k)) for k in ('ok', 'changed', 'unreachable', 'failed')}
            for m in RECAP_RE.finditer(proc.stdout)}
    assert rows, 'no PLAY RECAP in the output:\n%s' % proc.stdout[-3000:]
    return rows


def changed_hosts(proc):
    """{host: changed count} of the hosts that changed something."""
    return {h: r['changed'] for h, r in recap(proc).items() if r['changed']}


def sops_open(path, identity_file):
    """The plaintext of a SOPS file, opened the way an operator does (the venv's sops, SOPS_AGE_KEY_FILE)."""
    env = dict(os.environ, SOPS_AGE_KEY_FILE=str(identity_file), SOPS_DISABLE_VERSION_CHECK='1')
    proc = subprocess.run([shutil.which('sops') or os.path.join(os.path.dirname(sys.executable), 'sops'),
                           'decrypt', str(path)], env=env, capture_output=True, timeout=60, check=False)
    return proc.stdout if proc.returncode == 0 else None


def sops_files(cell):
    """Every SOPS file of the cell: the inventory's secrets and the build tree's machine configs."""
    files = [p for p in sorted((cell['inv'] / 'secrets').iterdir()) if p.is_file() and not p.name.startswith('.')
             and sops_utils.is_sops_file(str(p))]
    return files + sorted((cell['build'] / 'talos' / 'machineconfigs').glob('*.sops.yaml'))


def fail_text(proc):
    return 'rc=%s\nSTDOUT:\n%s\nSTDERR:\n%s' % (proc.returncode, proc.stdout[-6000:], proc.stderr[-3000:])
