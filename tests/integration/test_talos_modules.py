"""Talos modules against the talosctl test double (tests/doubles/talosctl).

Each test gets its own simulated cell of six machines in maintenance mode (the reference
inventory's addresses are only data for the double; nothing is dialled). Modules run
in-process; every talosctl call they make is a real subprocess of the double, recorded in
calls.jsonl, which the assertions count.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.cellplatform.platform.plugins.modules import (
    talos_apply, talos_bootstrap, talos_health, talos_info, talos_kubeconfig)

from talos_fixtures import (  # pylint: disable=import-error
    ALL, CELL, CONTROLPLANE, DOUBLES, REPO, WORKERS, double_state, fake_cell_configs, run_module,
    secret_values, talosconfig, warning_texts)

FAST = dict(retries=3, retry_delay=0.01, timeout=60)


class Cell(object):
    def __init__(self, root, state, paths, tc, bundle):
        self.root = root
        self.state = state
        self.paths = paths
        self.tc = tc
        self.bundle = bundle

    def common(self, **kw):
        out = dict(FAST, talosconfig=self.tc)
        out.update(kw)
        return out

    def count(self, command, flag=None):
        return double_state.count_calls(self.state, command, flag)

    def node(self, ip):
        return double_state.node(self.state, ip)


@pytest.fixture
def cell(tmp_path, monkeypatch):
    state = str(tmp_path / "state")
    double_state.create_cell(state, [(name, ip) for name, ip, _ in CELL])
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    bundle, paths, tc = fake_cell_configs(str(work))
    monkeypatch.setenv("PATH", os.pathsep.join([DOUBLES, os.path.dirname(sys.executable), os.environ["PATH"]]))
    monkeypatch.setenv("TALOSCTL_DOUBLE_STATE", state)
    monkeypatch.setenv("TALOSCTL_DOUBLE_STRICT", "1")
    monkeypatch.delenv("TALOSCONFIG", raising=False)
    monkeypatch.delenv("TALOSCTL_DOUBLE_VERSION", raising=False)
    return Cell(tmp_path, state, paths, tc, bundle)


def assert_no_secrets(cell, *results):
    text = json.dumps(results)
    for s in secret_values(cell.bundle):
        assert s not in text


def apply_all(cell, check=False, diff=False, **kw):
    return dict((ip, run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip], **kw), check=check,
                                diff=diff)) for ip in ALL)


def bootstrap(cell, check=False, **kw):
    args = cell.common(nodes=CONTROLPLANE, bootstrap_node=CONTROLPLANE[0])
    args.update(kw)
    return run_module(talos_bootstrap, args, check=check)


def configured(cell, bootstrapped=True, nodes=ALL):
    """Put nodes straight into the post-apply state (tests whose subject is not the apply)."""
    double_state.preconfigure(cell.state, dict((ip, cell.paths[ip]) for ip in nodes), bootstrapped=bootstrapped)


# --- the happy path: first run and rerun ---------------------------------------------------
def test_first_run_from_maintenance_then_rerun_changes_nothing(cell):
    info = run_module(talos_info, cell.common(nodes=ALL))
    assert info["maintenance"] == ALL and info["configured"] == [] and not info["changed"]

    first = apply_all(cell, diff=True)
    for ip, r in first.items():
        assert r["changed"] and r["applied"] and r["insecure"] and r["state_before"] == "maintenance", r
        assert r["diff"]["before"] == "" and "<redacted>" in r["diff"]["after"]
    applies = [c for c in double_state.calls(cell.state) if c["command"] == "apply-config"]
    insecure = [c for c in applies if "--insecure" in c["argv"]]
    assert len(insecure) == 6
    for c in insecure:  # one node per --insecure call, endpoint == node
        nodes = c["argv"][c["argv"].index("--nodes") + 1]
        assert "," not in nodes and c["argv"][c["argv"].index("--endpoints") + 1] == nodes
        assert "--talosconfig" not in c["argv"]
    assert [cell.node(ip)["stage"] for ip in ALL] == ["running"] * 6

    b = bootstrap(cell)
    assert b["changed"] and b["bootstrapped"] and not b["already_bootstrapped"], b
    assert dict((ip, (c["state"], c["etcd_service"])) for ip, c in b["control_planes"].items()) == \
        dict((ip, ("etcd_not_running", "Preparing")) for ip in CONTROLPLANE)
    assert cell.count("bootstrap") == 1 and cell.count("etcd members") == 0
    argv = [c for c in double_state.calls(cell.state) if c["command"] == "bootstrap"][0]["argv"]
    assert argv[argv.index("--nodes") + 1] == CONTROLPLANE[0]

    dest = str(cell.root / "work" / "kubeconfig")
    k = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest))
    assert k["changed"] and k["reason"] == "missing" and k["servers"] == ["https://192.168.100.50:6443"]
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert "client-key-data" not in json.dumps(k)
    with open(dest) as f:
        first_bytes = f.read()
    h = run_module(talos_health, cell.common(node=CONTROLPLANE[0], control_plane_nodes=CONTROLPLANE,
                                            worker_nodes=WORKERS, wait_timeout=5))
    assert h["healthy"] and not h["changed"] and "etcd to be healthy" in h["checks"], h

    # --- second run: nothing applied, nothing bootstrapped, kubeconfig kept ---------------
    applies_before = cell.count("apply-config")
    second = apply_all(cell, diff=True)
    for ip, r in second.items():
        assert not r["changed"] and not r["applied"] and r["state_before"] == "configured", r
        assert "diff" not in r
    new_applies = [c for c in double_state.calls(cell.state) if c["command"] == "apply-config"][applies_before:]
    assert len(new_applies) == 6 and all("--dry-run" in c["argv"] for c in new_applies)
    b2 = bootstrap(cell)
    assert not b2["changed"] and b2["already_bootstrapped"] and not b2["bootstrapped"]
    assert b2["etcd_members"] == CONTROLPLANE and all(c["member_id"] for c in b2["control_planes"].values())
    assert cell.count("bootstrap") == 1
    assert list(double_state.etcd_clusters(cell.state).values()) == [CONTROLPLANE]
    k2 = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest))
    assert not k2["changed"] and k2["reason"] == "equivalent"   # talosctl issued a new client cert
    with open(dest) as f:
        assert f.read() == first_bytes
    info = run_module(talos_info, cell.common(nodes=ALL))
    assert info["configured"] == ALL and info["etcd_members"] == CONTROLPLANE
    assert info["nodes"][WORKERS[0]]["machine_type"] == "worker"
    assert info["nodes"][CONTROLPLANE[0]]["ready"] is True
    assert_no_secrets(cell, first, second, b, b2, k, k2, h, info)


# --- check mode and diff -------------------------------------------------------------------
def test_check_mode_changes_nothing(cell):
    res = apply_all(cell, check=True)
    assert all(r["changed"] and not r["applied"] for r in res.values())
    assert cell.count("apply-config") == 0
    assert all(cell.node(ip)["stage"] == "maintenance" for ip in ALL)

    configured(cell, bootstrapped=False)
    b = bootstrap(cell, check=True)
    assert b["changed"] and not b["bootstrapped"]
    assert cell.count("bootstrap") == 0 and not double_state.cluster(cell.state)["bootstrapped"]

    dest = str(cell.root / "work" / "kubeconfig")
    k = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest), check=True)
    assert k["changed"] and not os.path.exists(dest)


def test_changed_config_uses_dry_run_and_redacted_diff(cell):
    configured(cell)
    ip = WORKERS[1]
    with open(cell.paths[ip]) as f:
        text = f.read()
    with open(cell.paths[ip], "w") as f:
        f.write(text.replace("hostname: worker-2", "hostname: worker-two"))
    before = cell.node(ip)["apply_count"]
    r = run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip]), check=True, diff=True)
    assert r["changed"] and not r["applied"] and r["reboot_required"] is False
    assert "+hostname: worker-two" in r["diff"]["prepared"] and "-hostname: worker-2" in r["diff"]["prepared"]
    assert cell.node(ip)["apply_count"] == before
    r = run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip]), diff=True)
    assert r["changed"] and r["applied"]
    assert cell.node(ip)["apply_count"] == before + 1
    # .machine.install is applied without a reboot (Runtime.CanApplyImmediate): an upgrade changes the image there
    with open(cell.paths[ip], "w") as f:
        f.write(text.replace("disk: /dev/sda", "disk: /dev/vda"))
    r = run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip], mode="no-reboot"), check=True)
    assert r["changed"] and r["reboot_required"] is False and not r.get("failed"), r
    # a field outside that list (.persist) needs a reboot: no-reboot mode is refused with Talos' own reason
    with open(cell.paths[ip], "w") as f:
        f.write(text.replace("persist: true", "persist: false"))
    r = run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip], mode="no-reboot"), check=True)
    assert r.get("failed") and "InvalidArgument" in r["msg"] and "can't be applied in immediate mode" in r["msg"]
    r = run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip]), check=True)
    assert r["changed"] and r["reboot_required"] is True
    assert run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip]))["applied"]
    assert not run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip]))["changed"]
    assert_no_secrets(cell, r)


# --- failures and recovery ------------------------------------------------------------------
def test_unreachable_node_then_rerun_converges_and_bootstraps_once(cell):
    double_state.set_unreachable(cell.state, WORKERS[1], "refused")
    double_state.set_unreachable(cell.state, CONTROLPLANE[2], "timeout")
    double_state.set_cluster(cell.state, dial_timeout_seconds=30)
    start = time.time()
    res = apply_all(cell, probe_timeout=2)
    assert time.time() - start < 20   # two dead nodes cost a probe each, not retry chains
    assert res[WORKERS[1]]["failed"] and "connection refused on port 50000" in res[WORKERS[1]]["msg"]
    assert WORKERS[1] in res[WORKERS[1]]["msg"] and "powered on" in res[WORKERS[1]]["msg"]
    assert res[CONTROLPLANE[2]]["failed"] and "did not answer within 2 seconds" in res[CONTROLPLANE[2]]["msg"]
    assert sum(1 for r in res.values() if r.get("applied")) == 4
    # a control plane that cannot be asked blocks bootstrap (it could already run etcd)
    b = bootstrap(cell, probe_timeout=2)
    assert b["failed"] and "cannot bootstrap etcd" in b["msg"] and CONTROLPLANE[2] in b["msg"]
    assert b["unreachable_nodes"] == [CONTROLPLANE[2]]
    assert cell.count("bootstrap") == 0

    double_state.set_unreachable(cell.state, WORKERS[1], None)
    double_state.set_unreachable(cell.state, CONTROLPLANE[2], None)
    res = apply_all(cell)
    applied = sorted(ip for ip, r in res.items() if r["applied"])
    assert applied == sorted([WORKERS[1], CONTROLPLANE[2]])
    assert all(not r.get("failed") for r in res.values())
    assert bootstrap(cell)["bootstrapped"]
    assert not bootstrap(cell)["changed"]
    assert cell.count("bootstrap") == 1
    assert run_module(talos_health, cell.common(node=CONTROLPLANE[0], wait_timeout=5))["healthy"]
    assert all(cell.node(ip)["etcd_member_id"] for ip in CONTROLPLANE)
    assert len(double_state.etcd_clusters(cell.state)) == 1


def test_transient_failed_precondition_is_retried(cell):
    double_state.inject_failure(cell.state, "apply-config", "FailedPrecondition",
                                "another apply configuration is already in progress", count=2, node=WORKERS[0])
    r = run_module(talos_apply, cell.common(node=WORKERS[0], config=cell.paths[WORKERS[0]]))
    assert r["applied"] and not r.get("failed")
    assert cell.count("apply-config") == 3
    configured(cell, bootstrapped=False, nodes=[ip for ip in ALL if ip != WORKERS[0]])
    double_state.inject_failure(cell.state, "bootstrap", "FailedPrecondition", "time is not in sync yet", count=2)
    b = bootstrap(cell)
    assert b["bootstrapped"] and cell.count("bootstrap") == 3
    # retries exhausted -> clear failure naming the code and the node
    double_state.inject_failure(cell.state, "apply-config", "FailedPrecondition",
                                "configuration was already applied and node is rebooting, cannot apply more "
                                "configuration changes until next reboot", count=10, node=WORKERS[2])
    r = run_module(talos_apply, cell.common(node=WORKERS[2], config=cell.paths[WORKERS[2]], retries=2))
    assert r["failed"] and r["code"] == "FailedPrecondition" and WORKERS[2] in r["msg"]
    assert "after 3 attempts" in r["msg"]


def test_bootstrap_not_available_while_installing_is_retried(cell):
    double_state.set_cluster(cell.state, install_calls=8)
    for ip in CONTROLPLANE:
        assert run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip]))["applied"]
    assert cell.node(CONTROLPLANE[0])["stage"] == "installing"
    b = bootstrap(cell, retries=6)
    assert b["bootstrapped"], b
    assert cell.count("bootstrap") >= 2


def test_already_exists_is_success(cell):
    configured(cell, bootstrapped=False)
    double_state.inject_failure(cell.state, "bootstrap", "AlreadyExists", "etcd data directory is not empty")
    b = bootstrap(cell)
    assert not b.get("failed") and not b["changed"] and b["already_bootstrapped"] and not b["bootstrapped"]
    assert cell.count("bootstrap") == 1


def test_existing_etcd_without_designated_node_is_not_bootstrapped(cell):
    configured(cell)

    def drop_first(c):
        c.nodes[CONTROLPLANE[0]].update(etcd_member_id=None, etcd_data=False, join_calls_left=10)
    double_state.update(cell.state, drop_first)
    b = bootstrap(cell)
    assert not b["changed"] and b["already_bootstrapped"] and b["etcd_members"] == CONTROLPLANE[1:]
    assert b["joining"] == [CONTROLPLANE[0]] and b["control_planes"][CONTROLPLANE[0]]["etcd_service"] == "Preparing"
    assert any("second etcd cluster" in w for w in warning_texts(b))
    assert cell.count("bootstrap") == 0


def test_bootstrap_argument_errors(cell):
    b = bootstrap(cell, bootstrap_node=WORKERS[0])
    assert b["failed"] and WORKERS[0] in b["msg"] and "first control-plane node" in b["msg"]
    configured(cell, bootstrapped=False, nodes=[ip for ip in ALL if ip != CONTROLPLANE[1]])
    b = bootstrap(cell)  # a CP still in maintenance is "not configured": no candidate, no obstacle
    assert b["bootstrapped"] and b["control_planes"][CONTROLPLANE[1]]["state"] == "maintenance"
    assert [c["argv"][c["argv"].index("--nodes") + 1] for c in double_state.calls(cell.state)
            if c["command"] == "bootstrap"] == [CONTROLPLANE[0]]


def test_x509_mismatch_is_explained(cell):
    configured(cell, bootstrapped=False)
    other = str(cell.root / "work" / "other-talosconfig")
    with open(other, "w") as f:
        f.write(talosconfig(cell.bundle, CONTROLPLANE, ca="LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCm90aGVyCg=="))
    r = run_module(talos_apply, cell.common(node=WORKERS[0], config=cell.paths[WORKERS[0]], talosconfig=other))
    assert r["failed"]
    assert "node belongs to another cluster or the talosconfig/secrets bundle is wrong" in r["msg"]
    assert WORKERS[0] in r["msg"]
    b = bootstrap(cell, talosconfig=other)
    assert b["failed"] and "another cluster" in b["msg"] and cell.count("bootstrap") == 0
    info = run_module(talos_info, cell.common(nodes=[CONTROLPLANE[0]], talosconfig=other))
    assert info["failed"] and "another cluster" in info["msg"]


def test_configured_node_without_talosconfig_is_refused(cell):
    configured(cell, nodes=[WORKERS[0]])
    args = dict(FAST, node=WORKERS[0], config=cell.paths[WORKERS[0]])
    r = run_module(talos_apply, args)
    assert r["failed"] and "pass the cell's talosconfig" in r["msg"]


def test_bare_patch_is_rejected_before_any_call(cell, tmp_path):
    patch = tmp_path / "patch.yaml"
    patch.write_text("apiVersion: v1alpha1\nkind: HostnameConfig\nauto: \"off\"\nhostname: x\n")
    r = run_module(talos_apply, cell.common(node=WORKERS[0], config=str(patch)))
    assert r["failed"] and "v1alpha1" in r["msg"] and "not a patch" in r["msg"]
    assert cell.count("apply-config") == 0


# --- the bootstrap guard against the real pre-bootstrap behaviour of etcd -----------------------
@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_guard_bootstraps_a_fresh_cluster_whatever_etcd_members_would_do(cell, mode):
    """Before bootstrap `etcd members` refuses (127.0.0.1:2379) or hangs until its deadline; the guard
    never asks it, so neither mode keeps the first bootstrap from happening, and it is fast."""
    double_state.set_cluster(cell.state, pre_bootstrap_etcd=mode, etcd_deadline_seconds=30, join_calls=3)
    configured(cell, bootstrapped=False)
    start = time.time()
    b = bootstrap(cell, probe_timeout=5)
    assert b["bootstrapped"] and not b.get("failed"), b
    assert time.time() - start < 15
    assert cell.count("etcd members") == 0 and cell.count("bootstrap") == 1
    # right after bootstrap the other control planes still join (Preparing): bootstrapped, never again
    again = bootstrap(cell, probe_timeout=5)
    assert not again["changed"] and again["already_bootstrapped"] and again["joining"] == CONTROLPLANE[1:]
    assert all(again["control_planes"][ip]["etcd_service"] == "Preparing" for ip in CONTROLPLANE[1:])
    assert cell.count("bootstrap") == 1
    assert run_module(talos_health, cell.common(node=CONTROLPLANE[0], wait_timeout=5))["healthy"]
    assert list(double_state.etcd_clusters(cell.state).values()) == [CONTROLPLANE]


@pytest.mark.parametrize("down", [CONTROLPLANE[0], CONTROLPLANE[2]])
def test_a_control_plane_down_after_bootstrap_never_leads_to_a_second_bootstrap(cell, down):
    configured(cell)
    double_state.set_unreachable(cell.state, down, "refused")
    b = bootstrap(cell)
    assert not b.get("failed") and not b["changed"] and b["already_bootstrapped"], b
    assert b["unreachable_nodes"] == [down] and down not in b["etcd_members"]
    assert any(down in w and "did not answer" in w for w in warning_texts(b))
    assert cell.count("bootstrap") == 0


def test_one_transient_fault_in_every_step_converges_in_one_pass(cell):
    """Unavailable once on apply-config, on a state probe, on bootstrap and on kubeconfig: one pass converges."""
    refused = ('connection error: desc = "transport: Error while dialing: dial tcp %s:50000: connect: '
               'connection refused"')
    double_state.inject_failure(cell.state, "apply-config", "Unavailable", refused % WORKERS[0], node=WORKERS[0])
    double_state.inject_failure(cell.state, "get", "Unavailable", refused % WORKERS[1], node=WORKERS[1])
    double_state.inject_failure(cell.state, "bootstrap", "Unavailable", "error reading from server: EOF")
    double_state.inject_failure(cell.state, "kubeconfig", "Unavailable", refused % CONTROLPLANE[0])
    res = apply_all(cell)
    assert all(r["applied"] and not r.get("failed") for r in res.values()), res
    b = bootstrap(cell)
    assert b["bootstrapped"], b
    k = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=str(cell.root / "work" / "kubeconfig")))
    assert k["changed"] and not k.get("failed"), k
    assert all(f["count"] == 0 for f in double_state.cluster(cell.state)["fail_next"])   # every fault was hit
    assert cell.count("bootstrap") == 2 and cell.count("kubeconfig") == 2
    assert [cell.node(ip)["apply_count"] for ip in ALL] == [1] * 6


def test_unreachable_nodes_are_reported_together_within_seconds(cell):
    double_state.set_cluster(cell.state, dial_timeout_seconds=60)
    double_state.set_unreachable(cell.state, CONTROLPLANE[1], "refused")
    double_state.set_unreachable(cell.state, WORKERS[0], "timeout")
    double_state.set_unreachable(cell.state, WORKERS[2], "refused")
    start = time.time()
    r = run_module(talos_info, cell.common(nodes=ALL, detail="state", fail_on_unreachable=True, probe_timeout=3))
    took = time.time() - start
    assert r["failed"] and took < 10, took
    assert r["unreachable_nodes"] == [CONTROLPLANE[1], WORKERS[0], WORKERS[2]] and r["maintenance"] == \
        [CONTROLPLANE[0], CONTROLPLANE[2], WORKERS[1]]
    assert "%s (connection refused on port 50000)" % CONTROLPLANE[1] in r["msg"]
    assert "%s (no answer within 3 seconds (probe_timeout))" % WORKERS[0] in r["msg"]
    assert "%s (connection refused on port 50000)" % WORKERS[2] in r["msg"]
    assert str(cell.root) not in json.dumps(r)


def test_a_node_rebooting_after_its_install_is_waited_for(cell):
    double_state.set_cluster(cell.state, reboot_calls=3)
    res = dict((ip, run_module(talos_apply, cell.common(node=ip, config=cell.paths[ip]))) for ip in CONTROLPLANE)
    assert all(r["applied"] and not r.get("failed") for r in res.values()), res
    assert all(cell.node(ip)["reboot_calls_left"] == 0 for ip in CONTROLPLANE)
    b = bootstrap(cell)   # every control plane answers again: the guard can decide
    assert b["bootstrapped"] and b["unreachable_nodes"] == []


# --- version pinning -------------------------------------------------------------------------
def test_talosctl_version_mismatch(cell, monkeypatch):
    monkeypatch.setenv("TALOSCTL_DOUBLE_VERSION", "v1.12.5")
    r = run_module(talos_info, cell.common(nodes=ALL))
    assert r["failed"] and "v1.12.5" in r["msg"] and "install talosctl v1.13.9" in r["msg"]
    assert cell.count("get") == 0
    monkeypatch.setenv("TALOSCTL_DOUBLE_VERSION", "v1.13.4")
    r = run_module(talos_info, cell.common(nodes=ALL))
    assert not r.get("failed") and any("patch release" in w for w in warning_texts(r))


def test_hung_talosctl_times_out(cell):
    # a probe that gets no answer: the node is unreachable, reported within probe_timeout
    double_state.set_hang(cell.state, "get", 5)
    start = time.time()
    r = run_module(talos_info, cell.common(nodes=[WORKERS[0]], probe_timeout=1))
    assert not r.get("failed") and r["unreachable_nodes"] == [WORKERS[0]]
    assert r["nodes"][WORKERS[0]]["error"] == "no answer within 1 seconds (probe_timeout)"
    assert time.time() - start < 4.5
    # a step that hangs: a timeout, worded as one (not "check power / port 50000")
    configured(cell)
    double_state.set_hang(cell.state, "kubeconfig", 5)
    start = time.time()
    r = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=str(cell.root / "work" / "kubeconfig"),
                                                 timeout=1))
    assert r["failed"] and r["code"] == "Timeout" and time.time() - start < 4.5
    assert "talosctl kubeconfig on node %s did not finish within 1 seconds (option timeout)" % CONTROLPLANE[0] \
        in r["msg"]
    assert "powered on" not in r["msg"] and str(cell.root) not in json.dumps(r)


def test_missing_binary(cell):
    r = run_module(talos_info, cell.common(nodes=ALL, talosctl_path=str(cell.root / "nope" / "talosctl")))
    assert r["failed"] and "install talosctl v1.13.9" in r["msg"]


# --- kubeconfig and health -------------------------------------------------------------------
def test_kubeconfig_renewal_and_mode(cell):
    configured(cell)
    dest = str(cell.root / "work" / "kubeconfig")
    assert run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest))["changed"]
    os.chmod(dest, 0o644)
    r = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest))
    assert r["changed"] and r["reason"] == "mode is not 0600"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    r = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest))
    assert not r["changed"] and r["reason"] == "equivalent"
    r = run_module(talos_kubeconfig, cell.common(node=CONTROLPLANE[0], dest=dest, context_name="ops@cell"))
    assert r["changed"] and r["current_context"] == "ops@cell"
    assert [n for n in os.listdir(os.path.dirname(dest)) if n.startswith(".talos-kubeconfig-")] == []


def test_health_lists_discovery_and_timeout(cell):
    h = run_module(talos_health, cell.common(node=CONTROLPLANE[0], wait_timeout=1))
    assert h["failed"] and "another cluster" in h["msg"]
    configured(cell)
    double_state.set_cluster(cell.state, extra_k8s_nodes=["192.168.100.70"])
    h = run_module(talos_health, cell.common(node=CONTROLPLANE[0], control_plane_nodes=CONTROLPLANE,
                                            worker_nodes=WORKERS, wait_timeout=1))
    assert h["failed"] and "unexpected nodes with IPs ['192.168.100.70']" in h["msg"]
    assert "leave both lists empty" in h["msg"]
    h = run_module(talos_health, cell.common(node=CONTROLPLANE[0], wait_timeout=1))
    assert h["healthy"] and h["discovery"]
    argv = [c for c in double_state.calls(cell.state) if c["command"] == "health"][-1]["argv"]
    assert "--control-plane-nodes" not in argv and "--worker-nodes" not in argv
    double_state.set_cluster(cell.state, health_blocker="waiting for all k8s nodes to report ready: node not ready")
    start = time.time()
    h = run_module(talos_health, cell.common(node=CONTROLPLANE[0], wait_timeout=1))
    assert h["failed"] and "within wait_timeout=1s" in h["msg"] and "node not ready" in h["msg"]
    assert time.time() - start < 10


# --- the real thing: ansible-playbook with forks ---------------------------------------------
PLAYBOOK = textwrap.dedent("""\
    - name: Talos nodes
      hosts: cell
      connection: local
      gather_facts: false
      tasks:
        - name: Apply the machine configuration
          cellplatform.platform.talos_apply:
            node: "{{ cellplatform_node_ip }}"
            config: "{{ work }}/configs/{{ inventory_hostname }}.yaml"
            talosconfig: "{{ work }}/talosconfig"
            retry_delay: 0.01
    - name: Cluster
      hosts: localhost
      connection: local
      gather_facts: false
      vars:
        cps: "{{ groups['controlplane'] | map('extract', hostvars, 'cellplatform_node_ip') | list }}"
        wks: "{{ groups['workers'] | map('extract', hostvars, 'cellplatform_node_ip') | list }}"
      tasks:
        - name: Bootstrap
          cellplatform.platform.talos_bootstrap:
            nodes: "{{ cps }}"
            bootstrap_node: "{{ cps[0] }}"
            talosconfig: "{{ work }}/talosconfig"
            retry_delay: 0.01
        - name: Kubeconfig
          cellplatform.platform.talos_kubeconfig:
            node: "{{ cps[0] }}"
            dest: "{{ work }}/kubeconfig"
            talosconfig: "{{ work }}/talosconfig"
        - name: Health
          cellplatform.platform.talos_health:
            node: "{{ cps[0] }}"
            control_plane_nodes: "{{ cps }}"
            worker_nodes: "{{ wks }}"
            wait_timeout: 5
            talosconfig: "{{ work }}/talosconfig"
    """)


@pytest.mark.slow
def test_playbook_applies_in_parallel_and_is_idempotent(cell, monkeypatch):
    work = cell.root / "work"
    inv = {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                           "ansible_python_interpreter": sys.executable}},
                   "vars": {"work": str(work)},
                   "children": {"cell": {"children": {
                       "controlplane": {"hosts": dict((n, {"cellplatform_node_ip": ip}) for n, ip, r in CELL
                                                      if r == "controlplane")},
                       "workers": {"hosts": dict((n, {"cellplatform_node_ip": ip}) for n, ip, r in CELL
                                                 if r == "worker")}},
                       "vars": {"ansible_python_interpreter": sys.executable}}}}}
    (cell.root / "hosts.json").write_text(json.dumps(inv))
    (cell.root / "site.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=REPO, TALOSCTL_DOUBLE_LATENCY="0.4",
               ANSIBLE_FORKS="6", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_LOCAL_TEMP=str(cell.root / "ansible-tmp"))
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(cell.root / "hosts.json"),
           str(cell.root / "site.yml")]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    applies = [c for c in double_state.calls(cell.state) if c["command"] == "apply-config"]
    assert len(applies) == 6
    # parallel: the apply calls (0.4 s latency each) of different nodes overlap in time
    overlap = max(sum(1 for o in applies if o["time"] <= c["time"] < o["time"] + o["duration"]) for c in applies)
    assert overlap >= 3, "apply-config calls ran one after another: %s" % applies
    assert cell.count("bootstrap") == 1
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    recap = [line for line in second.stdout.splitlines() if "changed=" in line]
    assert len(recap) == 7 and all("changed=0" in line for line in recap), second.stdout
    assert cell.count("bootstrap") == 1
    for s in secret_values(cell.bundle):
        assert s not in first.stdout + second.stdout


def test_configs_from_talosctl_gen_work_end_to_end(cell):
    """Cross-check with the double's gen commands (gen.py): the talosconfig and machine configs that
    `talosctl gen secrets/gen config` produce must drive apply -> bootstrap -> rerun unchanged."""
    out = cell.root / "gen"
    env = dict(os.environ)

    def talosctl(*argv):
        proc = subprocess.run(["talosctl"] + list(argv), capture_output=True, text=True, env=env, check=False,
                              cwd=str(cell.root))
        assert proc.returncode == 0, proc.stderr
    talosctl("gen", "secrets", "-o", str(cell.root / "secrets.yaml"), "--talos-version", "v1.13")
    talosctl("gen", "config", "cell", "https://192.168.100.50:6443", "--with-secrets", str(cell.root / "secrets.yaml"),
             "--talos-version", "v1.13", "--kubernetes-version", "1.36.3", "--output-types",
             "controlplane,worker,talosconfig", "--output", str(out), "--with-docs=false", "--with-examples=false")
    tc = str(out / "talosconfig")
    talosctl("--talosconfig", tc, "config", "endpoint", *CONTROLPLANE)

    def args(ip):
        return dict(FAST, talosconfig=tc, node=ip,
                    config=str(out / ("controlplane.yaml" if ip in CONTROLPLANE else "worker.yaml")))
    assert all(run_module(talos_apply, args(ip))["applied"] for ip in ALL)
    b = run_module(talos_bootstrap, dict(FAST, talosconfig=tc, nodes=CONTROLPLANE, bootstrap_node=CONTROLPLANE[0]))
    assert b["bootstrapped"], b
    assert not any(run_module(talos_apply, args(ip))["changed"] for ip in ALL)
    with open(str(cell.root / "secrets.yaml")) as f:
        secrets_text = f.read()
    for value in re.findall(r"(?:crt|key|secret|token): (\S{16,})", secrets_text):
        assert value not in json.dumps(b)
        if value.startswith("LS0t"):
            assert base64.b64decode(value).decode().splitlines()[1] not in json.dumps(b)
