"""Helpers for the talos module integration tests (driven against tests/doubles/talosctl).

- ``fake_cell_configs``: a small stand-in for ``talosctl gen config`` + per-node patches that writes
  complete multi-document machine configs (v1alpha1 doc with machine.type, machine.ca, secrets
  and a HostnameConfig) plus a talosconfig whose CA matches, with random (fake) key material.
- ``run_module``: runs a collection module in-process (ansible-core >= 2.19 needs both
  ``basic._ANSIBLE_ARGS`` and ``basic._ANSIBLE_PROFILE = "legacy"``) and returns its JSON result.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys

import yaml

from ansible_collections.cellplatform.platform.tests.unit.plugins.modules import module_harness

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOUBLES = os.path.join(REPO, "tests", "doubles")
if DOUBLES not in sys.path:
    sys.path.insert(0, DOUBLES)

from talosctl_double import state as double_state  # noqa: E402  pylint: disable=wrong-import-position

CELL = [
    ("cp-1", "192.168.100.51", "controlplane"),
    ("cp-2", "192.168.100.52", "controlplane"),
    ("cp-3", "192.168.100.53", "controlplane"),
    ("worker-1", "192.168.100.61", "worker"),
    ("worker-2", "192.168.100.62", "worker"),
    ("worker-3", "192.168.100.63", "worker"),
]
CONTROLPLANE = [ip for _, ip, role in CELL if role == "controlplane"]
WORKERS = [ip for _, ip, role in CELL if role == "worker"]
ALL = [ip for _, ip, _ in CELL]


def fake_pem(label):
    body = base64.b64encode(secrets.token_bytes(48)).decode()
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, body, label)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def bundle():
    """A fake secrets bundle: what the tests must never see in any module output."""
    return {
        "os_ca_crt": b64(fake_pem("CERTIFICATE")),
        "os_ca_key": b64(fake_pem("EC PRIVATE KEY")),
        "k8s_ca_crt": b64(fake_pem("CERTIFICATE")),
        "k8s_ca_key": b64(fake_pem("EC PRIVATE KEY")),
        "machine_token": "%s.%s" % (secrets.token_hex(3), secrets.token_hex(8)),
        "cluster_token": "%s.%s" % (secrets.token_hex(3), secrets.token_hex(8)),
        "cluster_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
        "secretbox": base64.b64encode(secrets.token_bytes(32)).decode(),
        "admin_crt": b64(fake_pem("CERTIFICATE")),
        "admin_key": b64(fake_pem("ED25519 PRIVATE KEY")),
    }


def machine_config(name, role, b, hostname=None, install_disk="/dev/sda"):
    v1 = {
        "version": "v1alpha1",
        "debug": False,
        "persist": True,
        "machine": {
            "type": role,
            "token": b["machine_token"],
            "ca": {"crt": b["os_ca_crt"], "key": b["os_ca_key"] if role == "controlplane" else ""},
            "certSANs": ["192.168.100.50", "api.cell.lan"],
            "install": {"disk": install_disk,
                        "image": "factory.talos.dev/nocloud-installer/ce4c9805:v1.13.9"},
        },
        "cluster": {
            "id": "cellid",
            "secret": b["cluster_secret"],
            "clusterName": "cell",
            "controlPlane": {"endpoint": "https://192.168.100.50:6443"},
            "network": {"podSubnets": ["10.244.0.0/16"], "serviceSubnets": ["10.96.0.0/16"]},
            "token": b["cluster_token"],
            "secretboxEncryptionSecret": b["secretbox"],
            "ca": {"crt": b["k8s_ca_crt"], "key": b["k8s_ca_key"]},
        },
    }
    host = {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": hostname or name}
    return yaml.safe_dump_all([v1, host], sort_keys=False)


def talosconfig(b, endpoints, ca=None):
    return yaml.safe_dump({"context": "cell", "contexts": {"cell": {
        "endpoints": list(endpoints), "nodes": [endpoints[0]] if endpoints else [],
        "ca": ca or b["os_ca_crt"], "crt": b["admin_crt"], "key": b["admin_key"]}}}, sort_keys=False)


def fake_cell_configs(workdir, b=None, cell=CELL):
    """Write <workdir>/configs/<name>.yaml and <workdir>/talosconfig; returns (bundle, paths)."""
    b = b or bundle()
    cfgdir = os.path.join(workdir, "configs")
    os.makedirs(cfgdir, mode=0o700, exist_ok=True)
    paths = {}
    for name, ip, role in cell:
        path = os.path.join(cfgdir, "%s.yaml" % name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(machine_config(name, role, b))
        paths[ip] = path
    tc = os.path.join(workdir, "talosconfig")
    with open(tc, "w", encoding="utf-8") as f:
        f.write(talosconfig(b, CONTROLPLANE))
    return b, paths, tc


def warning_texts(result):
    """The warning messages of a module result (ansible-core >= 2.19 wraps them in WarningSummary)."""
    out = []
    for w in result.get("warnings", []):
        out.append(w if isinstance(w, str) else (w.get("event") or {}).get("msg", json.dumps(w)))
    return out


def secret_values(b):
    """Strings that must not appear in module output."""
    out = set()
    for v in b.values():
        out.add(v)
        out.add(base64.b64decode(v).decode(errors="replace").splitlines()[1] if v.startswith("LS0t") else v)
    return [s for s in out if len(s) >= 12]


def run_module(module, args, check=False, diff=False):
    """Run a module's main() in-process; returns the result dict (failed=True on fail_json)."""
    result = module_harness.run_module(module, args, check=check, diff=diff)
    result.pop("_rc", None)
    return result


__all__ = ["CELL", "CONTROLPLANE", "WORKERS", "ALL", "double_state", "fake_cell_configs", "bundle",
           "machine_config", "talosconfig", "run_module", "secret_values", "warning_texts", "REPO", "DOUBLES"]
