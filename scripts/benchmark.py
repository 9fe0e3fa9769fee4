#!/usr/bin/env python3
"""Benchmark: render time of the reference cell and of a 3 + 200 node cell, and a simulated
L0 Talos apply with per-call latency injected into the talosctl test double, run with many
forks (parallel) and with one fork (serial).

    make bench                                  # runs inside scripts/netns-run (loopback only)
    .venv/bin/python scripts/benchmark.py --runs 3 --latency 0.5 --write docs/benchmarks.md

Figures are wall-clock seconds on the machine it runs on; the script prints the machine
(CPU count, load average before the run) next to them. It measures, it does not assert:
timing checks belong in a benchmark, not in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOUBLES = REPO / "tests" / "doubles"
sys.path.insert(0, str(DOUBLES))

from talosctl_double import state as double  # noqa: E402  pylint: disable=wrong-import-position

BIN = Path(sys.executable).parent
MARK_BEGIN = "<!-- benchmark:begin -->"
MARK_END = "<!-- benchmark:end -->"


def env_for(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(REPO),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": os.pathsep.join([str(BIN), env.get("PATH", "")]),
    })
    env.update(extra or {})
    return env


APPLY_TASK = re.compile(r"Talos \| Apply the machine config .*? -+ (\d+\.\d+)s")


def playbook(inventory, args, env, output=False):
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "playbooks" / "site.yml")] + args
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=str(REPO), env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-3000:])
        raise SystemExit("benchmark run failed: %s" % " ".join(argv))
    return (took, proc.stdout) if output else took


def copy_reference(root):
    inv = root / "inventories" / "production"
    shutil.copytree(REPO / "inventories" / "production", inv)
    for old in (inv / "secrets").glob("*.sops*"):
        old.unlink()
    return inv


def big_inventory(root, workers):
    """3 control planes + N workers on a /16 (a /24 cannot hold 200 workers)."""
    inv = copy_reference(root)
    hosts = {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                             "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
                     "children": {"cell": {"children": {"controlplane": {"hosts": {}}, "workers": {"hosts": {}}}}}}}
    groups = hosts["all"]["children"]["cell"]["children"]
    for i in range(1, 4):
        groups["controlplane"]["hosts"]["cp-%d" % i] = {
            "cellplatform_node_ip": "10.20.0.%d" % (10 + i), "cellplatform_node_vm_id": 1000 + i}
    for i in range(1, workers + 1):
        groups["workers"]["hosts"]["worker-%d" % i] = {
            "cellplatform_node_ip": "10.20.%d.%d" % (1 + (i - 1) // 250, 1 + (i - 1) % 250),
            "cellplatform_node_vm_id": 2000 + i}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    cellvars = yaml.safe_load((inv / "group_vars" / "all" / "cell.yml").read_text())
    cellvars["cellplatform_network"].update(cidr="10.20.0.0/16", gateway="10.20.0.1",
                                            nameservers=["10.20.0.1"], ntp_servers=["10.20.0.1"])
    cellvars["cellplatform_api_vip"] = "10.20.0.10"
    cellvars["cellplatform_lb_pool"] = {"start": "10.20.250.1", "end": "10.20.250.100"}
    cellvars["cellplatform_karpenter"]["address_range"] = {"start": "10.20.200.1", "end": "10.20.200.50"}
    cellvars["cellplatform_external_dns"]["rfc2136"]["host"] = "10.20.0.1"
    cellvars["cellplatform_external_dns"]["pdns"]["server"] = "http://10.20.0.1:8081"
    (inv / "group_vars" / "all" / "cell.yml").write_text(yaml.safe_dump(cellvars, sort_keys=False))
    return inv


def bench_render(label, inventory, root, runs, rows):
    build = root / ("build-" + "".join(ch if ch.isalnum() else "-" for ch in label))
    args = ["-e", "cellplatform_mode=render", "-e", json.dumps({"cellplatform_build_root": str(build)})]
    env = env_for()
    cold = []
    warm = []
    for _ in range(runs):
        shutil.rmtree(build, ignore_errors=True)
        cold.append(playbook(inventory, args, env))
        warm.append(playbook(inventory, args, env))
    files = sum(1 for p in build.rglob("*") if p.is_file())
    rows.append((label, "render, empty build dir", statistics.median(cold), "%d files" % files))
    rows.append((label, "render again (nothing changes)", statistics.median(warm), "%d files" % files))


def bench_apply(root, latency, rows, runs):
    """Maintenance -> bootstrapped for 3 + 3 nodes through site.yml -t talos, with latency."""
    import pyrage  # pylint: disable=import-outside-toplevel

    nodes = [("cp-1", "192.168.100.51"), ("cp-2", "192.168.100.52"), ("cp-3", "192.168.100.53"),
             ("worker-1", "192.168.100.61"), ("worker-2", "192.168.100.62"), ("worker-3", "192.168.100.63")]
    results = {}
    step = {}
    for forks in (20, 1):
        times = []
        steps = []
        for run in range(runs):
            case = root / ("apply-f%d-%d" % (forks, run))
            inv = copy_reference(case)
            identity = pyrage.x25519.Identity.generate()
            keys = case / "keys.txt"
            keys.write_text("%s\n" % identity)
            keys.chmod(0o600)
            state = case / "double"
            double.create_cell(str(state), nodes)
            extra = {"cellplatform_age_recipients": [str(identity.to_public())],
                     "cellplatform_age_identity": str(keys), "cellplatform_work_dir": str(case / "work"),
                     "cellplatform_build_root": str(case / "build"),
                     # bare metal (provisioner none): no Proxmox API for Karpenter
                     "cellplatform_karpenter": {"enabled": False}}
            env = env_for({"PATH": os.pathsep.join([str(DOUBLES), str(BIN), os.environ.get("PATH", "")]),
                           "TALOSCTL_DOUBLE_STATE": str(state), "TALOSCTL_DOUBLE_LATENCY": str(latency),
                           "ANSIBLE_FORKS": str(forks), "HOME": str(case),
                           "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                           "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all"})
            took, out = playbook(inv, ["-t", "talos", "-e", "cellplatform_mode=apply",
                                       "-e", "cellplatform_provisioner=none", "-e", json.dumps(extra)], env, output=True)
            times.append(took)
            match = APPLY_TASK.search(out)
            if not match:
                raise SystemExit("benchmark: no timing for the apply-config task in the profile output")
            steps.append(float(match.group(1)))
            calls = len(double.calls(str(state)))
        results[forks] = statistics.median(times)
        step[forks] = statistics.median(steps)
        rows.append(("3 + 3 nodes", "talos apply from maintenance (whole run), %.2f s/talosctl call, forks=%d" % (latency, forks),
                     results[forks], "%d talosctl calls" % calls))
        rows.append(("3 + 3 nodes", "of which the per-node apply-config task, forks=%d" % forks, step[forks], "6 nodes"))
    return results[1] / results[20], step[1] / step[20]


def markdown(rows, speedup, meta):
    lines = [MARK_BEGIN, "", "Measured %s on %s (%d CPUs, load average %.1f before the run), median of %d runs." % (
        meta["date"], meta["machine"], meta["cpus"], meta["load"], meta["runs"]), "",
             "| cell | what | seconds | size |", "|---|---|---|---|"]
    for cell, what, seconds, count in rows:
        lines.append("| %s | %s | %.1f | %s |" % (cell, what, seconds, "" if count is None else count))
    lines += ["", "Parallel speed-up (forks=1 time / forks=20 time): **%.1f×** for the per-node apply-config step, "
              "%.1f× for the whole run (secrets, configs, bootstrap, kubeconfig and health are cluster-scoped and "
              "run once either way)." % (speedup[1], speedup[0]), "", MARK_END]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions per figure (median is reported)")
    parser.add_argument("--workers", type=int, default=200, help="workers of the large cell")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds added to every talosctl call")
    parser.add_argument("--write", metavar="FILE", help="replace the figures between the markers in FILE")
    opts = parser.parse_args()
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cpus": os.cpu_count() or 0,
            "load": os.getloadavg()[0], "runs": opts.runs}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cellplatform-bench-") as tmp:
        root = Path(tmp)
        bench_render("3 + 3 nodes (reference)", copy_reference(root / "ref"), root, opts.runs, rows)
        bench_render("3 + %d nodes" % opts.workers, big_inventory(root / "big", opts.workers), root, opts.runs, rows)
        speedup = bench_apply(root, opts.latency, rows, opts.runs)
    text = markdown(rows, speedup, meta)
    sys.stdout.write(text)
    if opts.write:
        path = Path(opts.write)
        doc = path.read_text()
        start, end = doc.index(MARK_BEGIN), doc.index(MARK_END) + len(MARK_END)
        path.write_text(doc[:start] + text.rstrip("\n") + doc[end:])


if __name__ == "__main__":
    main()
