# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for tests/integration/test_talos_secrets_config.py (imported explicitly, not a conftest).

* ``AgeKeys``: real age keys (pyrage) in a SOPS-style key file with comments and two keys.
* ``run_module``: runs a collection module in-process the way Ansible does (module args through
  ``basic._ANSIBLE_ARGS``, the ``legacy`` profile required by ansible-core >= 2.19) and returns
  its JSON result; talosctl calls go to the talosctl test double put first on PATH.
* ``talos_env``: PATH + TALOSCTL_DOUBLE_STATE for the talosctl test double (tests/doubles).
* ``write_patches``: the rendered strategic-merge patches of the reference cell (brief 2.7).
* ``secret_values``: every secret leaf of a decrypted secrets bundle.
* ``validate_talos_schema``: every document of a machine config against the upstream Talos
  v1.13.9 JSON schema of the schema store (the ``schema_root`` fixture of conftest.py).
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
from pathlib import Path

import yaml

from ansible_collections.cellplatform.platform.tests.unit.plugins.modules import module_harness

REPO = Path(__file__).resolve().parents[2]
DOUBLES = REPO / 'tests' / 'doubles'
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(DOUBLES) not in sys.path:
    sys.path.insert(0, str(DOUBLES))

from talosctl_double import state as double_state  # noqa: E402  (tests/doubles)

CELL_NODES = [
    ('cp-1', '192.168.100.51', 'controlplane'), ('cp-2', '192.168.100.52', 'controlplane'),
    ('cp-3', '192.168.100.53', 'controlplane'), ('worker-1', '192.168.100.61', 'worker'),
    ('worker-2', '192.168.100.62', 'worker'), ('worker-3', '192.168.100.63', 'worker'),
]
INSTALL_IMAGE = ('factory.talos.dev/nocloud-installer/'
                 'ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:v1.13.9')


class AgeKeys(object):
    """Two real age keys in one SOPS-style identity file, plus an unrelated third key."""

    def __init__(self, directory):
        from pyrage import x25519
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.first = x25519.Identity.generate()
        self.second = x25519.Identity.generate()
        self.other = x25519.Identity.generate()
        self.identity = directory / 'keys.txt'
        self.identity.write_text(
            '# created: 2026-11-26T10:00:00Z\n# public key: %s\n%s\n\n# created: 2026-11-26T10:00:01Z\n'
            '# public key: %s\n%s\n' % (self.first.to_public(), self.first, self.second.to_public(), self.second))
        self.identity.chmod(0o600)
        self.other_identity = directory / 'other.txt'
        self.other_identity.write_text('# public key: %s\n%s\n' % (self.other.to_public(), self.other))
        self.recipients = [str(self.second.to_public())]
        self.other_recipients = [str(self.other.to_public())]


def talos_env(monkeypatch, state_dir, strict=False):
    """Put the talosctl test double first on PATH with its state in ``state_dir``."""
    state_dir = str(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    monkeypatch.setenv('PATH', '%s%s%s%s%s' % (DOUBLES, os.pathsep, Path(sys.executable).parent, os.pathsep,
                                               os.environ.get('PATH', '')))
    monkeypatch.setenv('TALOSCTL_DOUBLE_STATE', state_dir)
    monkeypatch.delenv('TALOSCONFIG', raising=False)
    if strict:
        monkeypatch.setenv('TALOSCTL_DOUBLE_STRICT', '1')
    else:
        monkeypatch.delenv('TALOSCTL_DOUBLE_STRICT', raising=False)
    return state_dir


def calls(state_dir, command=None):
    return [c for c in double_state.calls(str(state_dir)) if command is None or c.get('command') == command]


def make_cell(state_dir, configured=()):
    """The reference cell's six machines in maintenance mode; IPs in ``configured`` already run Talos."""
    double_state.create_cell(str(state_dir), [(name, ip) for name, ip, _role in CELL_NODES])

    def _configure(cell):
        for ip in configured:
            node = cell.nodes[ip]
            node.update(stage='running', machine_type='controlplane', ca='LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==')
    if configured:
        double_state.update(str(state_dir), _configure)


def run_module(name, args, check_mode=False, diff=False):
    """Run cellplatform.platform.<name> in-process at -vvv; returns (failed, result dict)."""
    module = importlib.import_module('ansible_collections.cellplatform.platform.plugins.modules.%s' % name)
    result = module_harness.run_module(module, args, check=check_mode, diff=diff, verbosity=3)
    result.pop('_rc', None)
    return bool(result.get('failed')), result


def write_patches(root, nodes=CELL_NODES, hostname_auto_off=True):
    """The rendered L0 patches of the reference cell (brief 2.7); returns (patches, nodes) module args."""
    root = Path(root)
    (root / 'nodes').mkdir(parents=True, exist_ok=True)
    common = root / 'common.yaml'
    common.write_text(
        'machine:\n  kubelet:\n    nodeIP:\n      validSubnets: [192.168.100.0/24]\n'
        '    extraArgs:\n      rotate-server-certificates: "true"\n'
        '  install:\n    disk: /dev/sda\n    image: %s\n'
        'cluster:\n  network:\n    cni:\n      name: none\n    podSubnets: [10.244.0.0/16]\n'
        '    serviceSubnets: [10.96.0.0/16]\n  proxy:\n    disabled: true\n'
        '---\napiVersion: v1alpha1\nkind: ResolverConfig\nnameservers:\n  - address: 192.168.100.1\n'
        '---\napiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [192.168.100.1]\n' % INSTALL_IMAGE)
    controlplane = root / 'controlplane.yaml'
    controlplane.write_text(
        'machine:\n  certSANs: [192.168.100.50, api.cell.lan]\n'
        'cluster:\n  apiServer:\n    certSANs: [192.168.100.50, api.cell.lan]\n'
        '  allowSchedulingOnControlPlanes: false\n  etcd:\n    advertisedSubnets: [192.168.100.0/24]\n')
    worker = root / 'worker.yaml'
    worker.write_text('machine:\n  nodeLabels:\n    node.cellplatform.io/pool: static\n')
    node_args = []
    for name, ip, role in nodes:
        auto = 'auto: "off"\n' if hostname_auto_off else ''
        text = ('apiVersion: v1alpha1\nkind: HostnameConfig\n%shostname: %s\n'
                '---\napiVersion: v1alpha1\nkind: LinkAliasConfig\nname: net0\n'
                'selector:\n  match: link.driver == "virtio_net"\n'
                '---\napiVersion: v1alpha1\nkind: LinkConfig\nname: net0\nup: true\nmtu: 1500\n'
                'addresses:\n  - address: %s/24\nroutes:\n  - gateway: 192.168.100.1\n' % (auto, name, ip))
        if role == 'controlplane':
            text += '---\napiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 192.168.100.50\nlink: net0\n'
        path = root / 'nodes' / ('%s.yaml' % name)
        path.write_text(text)
        node_args.append(dict(name=name, ip=ip, role=role, patch=[str(path)]))
    return dict(common=[str(common)], controlplane=[str(controlplane)], worker=[str(worker)]), node_args


def secret_values(bundle_text):
    """Every secret string in a decrypted bundle, plus the PEM/base64 forms configs may carry."""
    bundle = yaml.safe_load(bundle_text)
    values = []

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, str) and node:
            values.append(node)
            if node.startswith('LS0t'):
                pem = base64.b64decode(node).decode('ascii')
                body = ''.join(pem.strip().splitlines()[1:-1])
                values.append(body[:40])   # the key material itself, as it would appear decoded
    walk(bundle)
    return values


def schema_validator(schema_root):
    """The Talos v1.13.9 machine-config validator of the schema store at *schema_root*."""
    import jsonschema
    path = Path(schema_root) / 'talos' / 'v1.13.9' / 'config.schema.json'
    if not path.is_file():
        raise AssertionError('Talos v1.13.9 schema not found at %s: the schema store is incomplete' % path)
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema)


def validate_talos_schema(text, validator):
    """Errors of every document of a machine config against the Talos v1.13.9 schema.

    ``persist`` is removed from the v1alpha1 document first: talosctl 1.13 still generates it
    (deprecated, still accepted by Talos) but the strict schema no longer lists it (brief 1.0,
    pitfall 9). Nothing else is removed.
    """
    errors = []
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if doc is None:
            continue
        if 'kind' not in doc:
            doc = dict(doc)
            doc.pop('persist', None)
        for error in validator.iter_errors(doc):
            where = '/'.join(map(str, error.path))
            errors.append('document %d (%s): %s at %s' % (index, doc.get('kind', 'v1alpha1'), error.message[:200], where))
    return errors
