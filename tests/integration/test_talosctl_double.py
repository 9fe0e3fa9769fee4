"""Contract tests of the talosctl test double (tests/doubles/talosctl) against the brief (section 1).

The double is only worth something if it fails where real talosctl v1.13.9 fails, so these
tests pin the texts, exit codes and output shapes the runner and modules rely on. Most run the
double's ``main()`` in-process (fast); one runs the executable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import types

import pytest
import yaml

from talos_fixtures import (  # pylint: disable=import-error
    CELL, CONTROLPLANE, DOUBLES, WORKERS, double_state, fake_cell_configs)

import talosctl_double  # noqa: E402  pylint: disable=import-error
from talosctl_double import cli  # noqa: E402  pylint: disable=import-error


@pytest.fixture
def env(tmp_path, monkeypatch):
    state = str(tmp_path / "state")
    double_state.create_cell(state, [(n, ip) for n, ip, _ in CELL])
    bundle, paths, tc = fake_cell_configs(str(tmp_path))
    monkeypatch.setenv("TALOSCTL_DOUBLE_STATE", state)
    monkeypatch.delenv("TALOSCTL_DOUBLE_STRICT", raising=False)
    monkeypatch.delenv("TALOSCONFIG", raising=False)
    monkeypatch.delenv("TALOSCTL_DOUBLE_VERSION", raising=False)
    return types.SimpleNamespace(state=state, paths=paths, tc=tc, tmp=tmp_path)


def talosctl(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_version_client_short(env, capsys):
    assert talosctl(capsys, "version", "--client", "--short") == (0, "Client:\nTalos v1.13.9\n", "")


def test_node_flags_rejected_on_offline_commands(env, capsys):
    rc, out, err = talosctl(capsys, "gen", "secrets", "-n", "192.168.100.51")
    assert rc == 1 and err.startswith("unknown shorthand flag: 'n' in -n\n\nUsage:")
    rc, out, err = talosctl(capsys, "validate", "--talosconfig", "x", "-c", "a.yaml")
    assert rc == 1 and err.startswith("unknown flag: --talosconfig\n\n")


def test_unknown_command_and_flag(env, capsys):
    rc, _, err = talosctl(capsys, "frobnicate")
    assert rc == 1 and err.startswith('unknown command "frobnicate" for "talosctl"\n\nUsage:')
    rc, _, err = talosctl(capsys, "bootstrap", "--wait")
    assert rc == 1 and err.startswith("unknown flag: --wait\n\n")
    rc, _, err = talosctl(capsys, "apply-config", "-f", "x", "--mode", "interactive")
    assert rc == 1 and "valid values are auto, no-reboot, reboot, staged, try" in err


def test_endpoints_required(env, capsys, tmp_path):
    tc = tmp_path / "empty-tc"
    tc.write_text("context: c\ncontexts:\n  c:\n    endpoints: []\n    ca: x\n")
    rc, _, err = talosctl(capsys, "--talosconfig", str(tc), "-n", CONTROLPLANE[0], "version")
    assert rc == 1 and err.strip() == "failed to determine endpoints"


def test_maintenance_get_is_a_json_object_stream(env, capsys):
    rc, out, _ = talosctl(capsys, "get", "machinestatus", "--insecure", "-n", CONTROLPLANE[0], "-o", "json")
    assert rc == 0 and not out.lstrip().startswith("[")
    with pytest.raises(ValueError):
        json.loads(out + out)  # two objects are not one JSON document
    obj = json.loads(out)
    assert obj["node"] == CONTROLPLANE[0] and obj["spec"]["stage"] == "maintenance"
    assert obj["metadata"]["type"] == "MachineStatuses.runtime.talos.dev" and obj["metadata"]["id"] == "machine"


def test_insecure_multiple_nodes(env, capsys, monkeypatch):
    nodes = ",".join(WORKERS[:2])
    rc, _, _ = talosctl(capsys, "apply-config", "--insecure", "-n", nodes, "-f", env.paths[WORKERS[0]])
    assert rc == 0
    assert double_state.node(env.state, WORKERS[0])["stage"] == "running"
    assert double_state.node(env.state, WORKERS[1])["stage"] == "maintenance"  # silently skipped (#11773)
    monkeypatch.setenv("TALOSCTL_DOUBLE_STRICT", "1")
    rc, _, err = talosctl(capsys, "apply-config", "--insecure", "-n", ",".join(WORKERS[1:]), "-f",
                          env.paths[WORKERS[1]])
    assert rc == 1 and "applies only to the first node" in err
    assert double_state.node(env.state, WORKERS[1])["stage"] == "maintenance"


def test_mtls_vs_maintenance_and_configured(env, capsys):
    ip = CONTROLPLANE[0]
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, "version")
    assert rc == 1 and "x509: certificate signed by unknown authority" in err
    assert talosctl(capsys, "apply-config", "-i", "-n", ip, "-f", env.paths[ip])[0] == 0
    rc, _, err = talosctl(capsys, "apply-config", "-i", "-n", ip, "-f", env.paths[ip])
    assert rc == 1 and "tls: certificate required" in err and "\t* %s: rpc error: code = Unavailable" % ip in err
    rc, out, _ = talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, "version", "--short")
    assert rc == 0 and "Talos v1.13.9" in out


def test_dry_run_summary_and_bare_patch(env, capsys, tmp_path):
    ip = WORKERS[0]
    talosctl(capsys, "apply-config", "-i", "-n", ip, "-f", env.paths[ip])
    rc, out, err = talosctl(capsys, "apply-config", "--talosconfig", env.tc, "-n", ip, "-e", ip, "-f",
                            env.paths[ip], "--dry-run")
    assert rc == 0 and out == ""
    assert err == ("Dry run summary:\nApplied configuration without a reboot (skipped in dry-run).\n"
                   "Config diff:\n\nNo changes.\n")
    patch = tmp_path / "p.yaml"
    patch.write_text("apiVersion: v1alpha1\nkind: HostnameConfig\nauto: \"off\"\nhostname: x\n")
    rc, _, err = talosctl(capsys, "apply-config", "--talosconfig", env.tc, "-n", ip, "-e", ip, "-f", str(patch))
    assert rc == 1 and "code = InvalidArgument desc = the applied machine configuration doesn't contain v1alpha1" in err


def test_bootstrap_contract(env, capsys):
    ip = CONTROLPLANE[0]
    double_state.preconfigure(env.state, dict((n, env.paths[n]) for n in CONTROLPLANE))
    double_state.set_cluster(env.state, join_calls=0)
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", ",".join(CONTROLPLANE), "bootstrap")
    assert rc == 1 and err.strip() == 'command "bootstrap" is not supported with multiple nodes'
    assert talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, "bootstrap")[0] == 0
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, "bootstrap")
    assert rc == 1 and err == ("error executing bootstrap: 1 error occurred:\n\t* %s: rpc error: code = "
                               "AlreadyExists desc = etcd data directory is not empty\n\n\n" % ip)
    rc, out, _ = talosctl(capsys, "--talosconfig", env.tc, "-n", CONTROLPLANE[1], "-e", ip, "etcd", "members")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["NODE", "ID", "HOSTNAME", "PEER", "URLS", "CLIENT", "URLS", "LEARNER"]
    assert len(lines) == 4 and lines[1].startswith("%s   " % CONTROLPLANE[1])   # tabwriter, padding 3
    assert double_state.count_calls(env.state, "bootstrap") == 3


ETCD_REFUSED = ('error getting members: 1 error occurred:\n\t* %s: rpc error: code = Unavailable desc = connection '
                'error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:2379: connect: connection refused"'
                '\n\n\n')


def test_etcd_members_before_bootstrap_is_answered_by_the_local_etcd_client(env, capsys):
    """What made the old guard refuse: the node's API answers, its local etcd (127.0.0.1:2379) does not."""
    ip = CONTROLPLANE[0]
    double_state.preconfigure(env.state, env.paths)
    rc, out, err = talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, "etcd", "members")
    assert (rc, out, err) == (1, "", ETCD_REFUSED % ip)
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", WORKERS[0], "-e", WORKERS[0], "etcd", "members")
    assert rc == 1 and ("* %s: rpc error: code = Unimplemented desc = member list is only available on control "
                        "plane nodes" % WORKERS[0]) in err


def _run(argv, timeout=None):
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    start = time.time()
    proc = subprocess.run([os.path.join(DOUBLES, "talosctl")] + argv, capture_output=True, text=True,
                          env=dict(os.environ, PATH=path), check=False, timeout=timeout)
    return proc, time.time() - start


def test_etcd_members_before_bootstrap_can_hang_until_its_deadline(env):
    ip = CONTROLPLANE[0]
    double_state.preconfigure(env.state, env.paths)
    double_state.set_cluster(env.state, pre_bootstrap_etcd="hang", etcd_deadline_seconds=1.5)
    base = ["--talosconfig", env.tc, "-n", ip, "-e", ip]
    proc, took = _run(base + ["etcd", "members"])
    assert took >= 1.5 and proc.returncode == 1
    assert proc.stderr == ("error getting members: 1 error occurred:\n\t* %s: rpc error: code = DeadlineExceeded "
                           "desc = context deadline exceeded\n\n\n" % ip)
    # it really blocks: a caller's timeout stops it mid-wait ...
    with pytest.raises(subprocess.TimeoutExpired):
        _run(base + ["etcd", "members"], timeout=0.5)
    # ... and it holds no lock while it waits: the node's API still answers other calls at once
    import threading
    waiting = threading.Thread(target=_run, args=(base + ["etcd", "members"],))
    waiting.start()
    time.sleep(0.3)
    proc, took = _run(base + ["get", "machinestatus", "-o", "json"])
    waiting.join()
    assert proc.returncode == 0 and took < 1.2


def test_etcd_service_resource_and_member_before_and_after_bootstrap(env, capsys):
    cp1, cp2 = CONTROLPLANE[0], CONTROLPLANE[1]
    double_state.preconfigure(env.state, env.paths)
    double_state.set_cluster(env.state, join_calls=2)

    def tc(ip, *argv):
        return talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, *argv)
    # before bootstrap: the Services resource of etcd does not exist (it only exists while etcd runs) ...
    rc, out, err = tc(cp1, "get", "services", "etcd", "-o", "json")
    assert (rc, out) == (1, "") and err == ("1 error occurred:\n\t* rpc error: code = NotFound desc = resource "
                                            "Services.v1alpha1.talos.dev(runtime/etcd@undefined) doesn't exist\n\n\n")
    rc, out, _ = tc(cp1, "get", "services", "-o", "json")
    ids = [o["metadata"]["id"] for o in _stream(out)]
    assert rc == 0 and "etcd" not in ids and "apid" in ids
    # ... there is no local member, and `service etcd` says Preparing
    assert tc(cp1, "get", "etcdmembers", "-o", "json") == (0, "", "")
    rc, out, _ = tc(cp1, "service", "etcd")
    assert rc == 0 and out.splitlines()[:4] == ["NODE     %s" % cp1, "ID       etcd", "STATE    Preparing",
                                                "HEALTH   ?"]
    assert out.splitlines()[4] == "EVENTS   [Preparing]: Running pre state (5s ago)"
    # bootstrap: cp-1 runs etcd at once
    assert tc(cp1, "bootstrap")[0] == 0
    rc, out, _ = tc(cp1, "get", "services", "etcd", "-o", "json")
    obj = json.loads(out)
    assert rc == 0 and list(obj) == ["metadata", "node", "spec"]   # Go's encoding/json sorts map keys
    assert obj["spec"] == {"healthy": True, "running": True, "unknown": False}
    assert obj["metadata"]["namespace"] == "runtime" and obj["metadata"]["type"] == "Services.v1alpha1.talos.dev"
    member = json.loads(tc(cp1, "get", "etcdmembers", "-o", "json")[1])
    assert member["metadata"]["id"] == "local" and member["metadata"]["namespace"] == "etcd"
    assert len(member["spec"]["memberID"]) == 16
    # cp-2 joins: Preparing for join_calls calls that reach it, then a member of the same cluster
    assert "STATE    Preparing" in tc(cp2, "service", "etcd")[1]
    assert tc(cp2, "get", "services", "etcd", "-o", "json")[0] == 1
    rc, out, _ = tc(cp2, "get", "services", "etcd", "-o", "json")
    assert rc == 0 and json.loads(out)["spec"]["running"] is True
    assert "STATE    Running" in tc(cp2, "service", "etcd")[1]
    rc, out, _ = tc(cp2, "service")
    lines = out.splitlines()
    assert lines[0] == "NODE" + " " * 13 + "SERVICE      STATE     HEALTH   LAST CHANGE   LAST EVENT"
    assert lines[1] == "%s   apid         Running   OK       5s ago        Health check successful" % cp2
    assert double_state.etcd_clusters(env.state) == {1: [cp1, cp2]}


def _stream(out):
    decoder = json.JSONDecoder()
    idx, objs = 0, []
    while idx < len(out.strip()):
        obj, idx = decoder.raw_decode(out, idx)
        objs.append(obj)
        while idx < len(out) and out[idx].isspace():
            idx += 1
    return objs


def test_bootstrapping_a_second_empty_control_plane_splits_etcd(env, capsys):
    """The hazard the guard prevents: real Talos bootstraps any empty data directory, also a second one."""
    double_state.preconfigure(env.state, env.paths)
    double_state.set_cluster(env.state, join_calls=5)
    for ip in CONTROLPLANE[:2]:
        assert talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, "bootstrap")[0] == 0
    clusters = double_state.etcd_clusters(env.state)
    assert len(clusters) == 2 and sorted(sum(clusters.values(), [])) == CONTROLPLANE[:2]


def test_a_node_whose_talos_api_is_down(env, capsys):
    ip = CONTROLPLANE[2]
    double_state.preconfigure(env.state, env.paths)
    double_state.set_unreachable(env.state, ip, "refused")
    dial = ('rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp '
            '%s:50000: connect: connection refused"' % ip)
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, "get", "machinestatus", "-o", "json")
    assert (rc, err) == (1, dial + "\n")   # COSI: printed bare
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", ip, "-e", ip, "bootstrap")
    assert (rc, err) == (1, "error executing bootstrap: " + dial + "\n")
    rc, _, err = talosctl(capsys, "-n", ip, "get", "machinestatus", "--insecure", "-o", "json")
    assert (rc, err) == (1, dial + "\n")
    # a dial that times out blocks for the dial timeout, then fails with i/o timeout
    double_state.set_unreachable(env.state, ip, "timeout")
    double_state.set_cluster(env.state, dial_timeout_seconds=1)
    proc, took = _run(["--talosconfig", env.tc, "-n", ip, "-e", ip, "get", "machinestatus", "-o", "json"])
    assert took >= 1 and proc.returncode == 1 and ("dial tcp %s:50000: i/o timeout" % ip) in proc.stderr
    with pytest.raises(ValueError):
        double_state.set_unreachable(env.state, ip, "deadline")


def test_a_node_can_die_mid_run_and_health_notices(env, capsys):
    ip = CONTROLPLANE[2]
    double_state.preconfigure(env.state, env.paths, bootstrapped=True)
    double_state.crash_after(env.state, ip, "apply-config")
    base = ["--talosconfig", env.tc, "-n", ip, "-e", ip]
    assert talosctl(capsys, *(base + ["apply-config", "-f", env.paths[ip], "--dry-run"]))[0] == 0
    rc, _, err = talosctl(capsys, *(base + ["get", "machinestatus", "-o", "json"]))
    assert rc == 1 and "dial tcp %s:50000: connect: connection refused" % ip in err
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", CONTROLPLANE[0], "-e", CONTROLPLANE[0], "health",
                          "--wait-timeout", "1s")
    assert rc == 1 and "apid is not ready on nodes ['%s']" % ip in err


def test_a_node_installed_from_maintenance_reboots_before_it_answers(env, capsys):
    ip = WORKERS[0]
    double_state.set_cluster(env.state, reboot_calls=2)
    assert talosctl(capsys, "apply-config", "-i", "-n", ip, "-f", env.paths[ip])[0] == 0
    base = ["--talosconfig", env.tc, "-n", ip, "-e", ip, "get", "machinestatus", "-o", "json"]
    for _ in range(2):
        rc, _, err = talosctl(capsys, *base)
        assert rc == 1 and "connect: connection refused" in err
    rc, out, _ = talosctl(capsys, *base)
    assert rc == 0 and json.loads(out)["spec"]["stage"] == "running"


def test_faults_and_partial_version(env, capsys):
    double_state.preconfigure(env.state, dict((n, env.paths[n]) for n in CONTROLPLANE))
    double_state.set_unreachable(env.state, CONTROLPLANE[2], "refused")
    rc, out, err = talosctl(capsys, "--talosconfig", env.tc, "-e", CONTROLPLANE[0], "-n",
                            ",".join(CONTROLPLANE), "version")
    assert rc == 0 and out.count("NODE:") == 2
    assert err.startswith("WARNING: %s: rpc error: code = Unavailable" % CONTROLPLANE[2])
    assert "connect: connection refused" in err
    double_state.inject_failure(env.state, "bootstrap", "FailedPrecondition", "bootstrap is not available yet")
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", CONTROLPLANE[0], "bootstrap")
    assert rc == 1 and "code = FailedPrecondition desc = bootstrap is not available yet" in err
    assert talosctl(capsys, "--talosconfig", env.tc, "-n", CONTROLPLANE[0], "bootstrap")[0] == 0


def test_health_node_lists(env, capsys):
    double_state.preconfigure(env.state, env.paths, bootstrapped=True)
    base = ["--talosconfig", env.tc, "-n", CONTROLPLANE[0], "-e", CONTROLPLANE[0], "health", "--wait-timeout", "1s"]
    rc, out, _ = talosctl(capsys, *(base + ["--control-plane-nodes", ",".join(CONTROLPLANE),
                                            "--worker-nodes", ",".join(WORKERS)]))
    assert rc == 0 and "waiting for all k8s nodes to report ready: OK" in out
    rc, _, err = talosctl(capsys, *(base + ["--control-plane-nodes", ",".join(CONTROLPLANE),
                                            "--worker-nodes", WORKERS[0]]))
    assert rc == 1 and "unexpected nodes with IPs ['%s', '%s']" % (WORKERS[1], WORKERS[2]) in err
    rc, _, err = talosctl(capsys, "--talosconfig", env.tc, "-n", ",".join(CONTROLPLANE), "health")
    assert rc == 1 and "exactly one node" in err


def test_gen_commands_dispatch_to_gen_module(env, capsys, monkeypatch):
    seen = {}

    def handler(args, ctx):
        seen.update(args=args, strict=ctx.strict, state_dir=ctx.state_dir)
        ctx.record({"handled": True})
        ctx.stdout.write("done\n")
        return 0

    fake = types.ModuleType("talosctl_double.gen")
    fake.COMMANDS = {("config", "endpoint"): handler}
    monkeypatch.setitem(sys.modules, "talosctl_double.gen", fake)
    monkeypatch.setattr(talosctl_double, "gen", fake, raising=False)
    rc, out, _ = talosctl(capsys, "--talosconfig", "tc", "config", "endpoint", "1.2.3.4")
    assert (rc, out) == (0, "done\n")
    assert seen == dict(args=["--talosconfig", "tc", "1.2.3.4"], strict=False, state_dir=env.state)
    assert double_state.calls(env.state)[-1]["details"] == [{"handled": True}]
    rc, _, err = talosctl(capsys, "gen", "secrets")
    assert rc == 1 and err.startswith('unknown command "gen secrets" for "talosctl"')


def test_executable_records_calls(env):
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    proc = subprocess.run([os.path.join(DOUBLES, "talosctl"), "version", "--client"], capture_output=True, text=True,
                          env=dict(os.environ, PATH=path), check=False)
    assert proc.returncode == 0 and "\tTag:         v1.13.9" in proc.stdout
    last = double_state.calls(env.state)[-1]
    assert last["argv"] == ["version", "--client"] and last["command"] == "version" and last["rc"] == 0


# --- day 2: upgrade, upgrade-k8s, reset, etcd leave/remove-member/status/snapshot, recover (day2.py) --------
SCHEMATIC = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
IMAGE = "factory.talos.dev/nocloud-installer/%s:%%s" % SCHEMATIC


@pytest.fixture
def running(env):
    """The env cell configured and bootstrapped (every control plane an etcd member); short reboots."""
    double_state.preconfigure(env.state, env.paths, bootstrapped=True)
    double_state.set_cluster(env.state, upgrade_reboot_seconds=0.4, etcd_settle_seconds=0.3)
    return env


def node_args(env, ip):
    return ["--talosconfig", env.tc, "-n", ip, "-e", ip]


def test_version_server_part_is_the_long_form_with_the_nodes_version(running, capsys):
    double_state.update(running.state, lambda c: c.nodes[WORKERS[0]].update(version="v1.13.8"))
    rc, out, _ = talosctl(capsys, "version", "--short", *node_args(running, WORKERS[0]))
    assert rc == 0 and "Client:\nTalos v1.13.9\nServer:\n\tNODE:        %s\n\tTag:         v1.13.8\n" % WORKERS[0] in out


def test_upgrade_reboots_the_node_and_wait_blocks_until_it_is_back(running, capsys, monkeypatch):
    ip = WORKERS[0]
    monkeypatch.setenv("TALOSCTL_DOUBLE_STRICT", "1")
    rc, _, err = talosctl(capsys, "upgrade", "--image", IMAGE % "v1.13.10", *node_args(running, ip))
    assert rc == 1 and "upgrade --drain makes talosctl cordon and drain" in err
    rc, _, err = talosctl(capsys, "upgrade", "--image", IMAGE % "v1.13.10", "--wait", "--insecure", "--drain=false",
                          *node_args(running, ip))
    assert rc == 1 and err.startswith("Flag --insecure has been deprecated") and "cannot use --wait and --insecure" in err
    started = time.time()
    rc, out, err = talosctl(capsys, "upgrade", "--image", IMAGE % "v1.13.10", "--drain=false", "--wait",
                            *node_args(running, ip))
    assert rc == 0 and time.time() - started >= 0.4, err
    assert err == ("%s: pulled image %s\n%s: upgrade completed\nwatching nodes: [%s]\n    * %s: post check passed\n"
                   % (ip, IMAGE % "v1.13.10", ip, ip, ip))
    node = double_state.node(running.state, ip)
    assert node["version"] == "v1.13.10" and node["schematic"] == SCHEMATIC and node["reboots"] == 1
    rc, out, _ = talosctl(capsys, "get", "extensions", "-o", "json", *node_args(running, ip))
    assert json.loads(out)["spec"]["metadata"] == {"name": "schematic", "version": SCHEMATIC, "author": "Image Factory",
                                                    "description": "Image Factory schematic of this image"}


def test_upgrade_without_wait_leaves_the_node_down_for_a_while(running, capsys):
    ip = WORKERS[1]
    rc, _, _ = talosctl(capsys, "upgrade", "-i", IMAGE % "v1.13.10", "--drain=false", "--wait=false",
                        *node_args(running, ip))
    assert rc == 0
    rc, _, err = talosctl(capsys, "version", *node_args(running, ip))
    assert rc == 1 and "dial tcp %s:50000: connect: connection refused" % ip in err
    time.sleep(0.5)
    assert talosctl(capsys, "version", *node_args(running, ip))[0] == 0


def test_upgrade_refusals_of_the_installer(running, capsys):
    ip = WORKERS[2]
    rc, _, err = talosctl(capsys, "upgrade", "-i", "ghcr.io/siderolabs/installer:latest", "--drain=false",
                          *node_args(running, ip))
    assert rc == 1 and "error pulling upgrade image" in err and "NotFound" in err
    double_state.update(running.state, lambda c: c.nodes[ip].update(version="v1.10.4"))
    rc, _, err = talosctl(capsys, "upgrade", "-i", IMAGE % "v1.13.10", "--drain=false", *node_args(running, ip))
    assert rc == 1 and "host version 1.10.4 is too old to upgrade to Talos 1.13.10" in err
    assert err.rstrip().endswith("error during upgrade: node %s: upgrade failed with exit code 1" % ip)
    assert double_state.node(running.state, ip)["version"] == "v1.10.4"


def test_upgrade_does_not_protect_quorum_and_the_double_records_it(running, capsys):
    """Talos 1.13's LifecycleService upgrade does not check etcd: two control planes down at once lose quorum."""
    for ip in CONTROLPLANE[:2]:
        assert talosctl(capsys, "upgrade", "-i", IMAGE % "v1.13.10", "--drain=false", "--wait=false",
                        *node_args(running, ip))[0] == 0
    cluster = double_state.cluster(running.state)
    assert cluster["max_down"] == 2 and cluster["quorum_losses"][0]["up"] == [CONTROLPLANE[2]]


def test_upgrade_wait_timeout(running, capsys):
    double_state.set_slow_boot(running.state, WORKERS[0], 5)
    rc, _, err = talosctl(capsys, "upgrade", "-i", IMAGE % "v1.13.10", "--drain=false", "--timeout", "1s",
                          *node_args(running, WORKERS[0]))
    assert rc == 1 and err.endswith("    * %s: context deadline exceeded\n" % WORKERS[0])


def test_etcd_status_table_and_the_errors_of_a_node_without_etcd(running, capsys):
    rc, out, _ = talosctl(capsys, "etcd", "status", *node_args(running, CONTROLPLANE[0]))
    lines = out.splitlines()
    assert rc == 0 and lines[0].startswith("NODE             MEMBER             DB SIZE   IN USE             LEADER")
    assert lines[1].startswith("%s   " % CONTROLPLANE[0]) and len(lines) == 2
    rc, _, err = talosctl(capsys, "etcd", "status", *node_args(running, WORKERS[0]))
    assert rc == 1 and "code = Unimplemented desc = etcd status is only available on control plane nodes" in err
    double_state.update(running.state, lambda c: c.nodes[CONTROLPLANE[1]].update(etcd_ready_at=time.time() + 60))
    rc, _, err = talosctl(capsys, "etcd", "status", *node_args(running, CONTROLPLANE[1]))
    assert rc == 1 and err.startswith("error getting status: 1 error occurred:") and "127.0.0.1:2379" in err


def test_etcd_leave_remove_member_and_a_replaced_machine(running, capsys):
    members = double_state.etcd_member_list(running.state)
    cp2, cp3 = members[1]["id"], members[2]["id"]
    rc, _, err = talosctl(capsys, "etcd", "leave", "--talosconfig", running.tc, "-n", ",".join(CONTROLPLANE[:2]),
                          "-e", CONTROLPLANE[0])
    assert rc == 1 and err.strip() == 'command "etcd leave" is not supported with multiple nodes'
    rc, _, err = talosctl(capsys, "etcd", "remove-member", "zz", *node_args(running, CONTROLPLANE[0]))
    assert rc == 1 and 'error parsing member ID: strconv.ParseUint: parsing "zz": invalid syntax' in err
    rc, _, err = talosctl(capsys, "etcd", "remove-member", "00000000000000ff", *node_args(running, CONTROLPLANE[0]))
    assert rc == 1 and "code = NotFound desc = etcdserver: member not found" in err
    # cp-3 dies and is removed from cp-1; the machine comes back with its old disk: its etcd does not rejoin
    double_state.set_unreachable(running.state, CONTROLPLANE[2], "refused")
    assert talosctl(capsys, "etcd", "remove-member", cp3, *node_args(running, CONTROLPLANE[0]))[0] == 0
    double_state.set_unreachable(running.state, CONTROLPLANE[2], None)
    assert [m["name"] for m in double_state.etcd_member_list(running.state)] == ["cp-1", "cp-2"]
    rc, out, _ = talosctl(capsys, "service", "etcd", *node_args(running, CONTROLPLANE[2]))
    assert rc == 0 and re.search(r"^STATE\s+Finished$", out, re.M), out
    # cp-2 leaves: 1 of 1 left running - fine; the last member cannot leave
    assert talosctl(capsys, "etcd", "leave", *node_args(running, CONTROLPLANE[1]))[0] == 0
    assert [m["id"] for m in double_state.etcd_member_list(running.state)] == [members[0]["id"]]
    assert cp2 not in [m["id"] for m in double_state.etcd_member_list(running.state)]
    rc, _, err = talosctl(capsys, "etcd", "leave", *node_args(running, CONTROLPLANE[0]))
    assert rc == 1 and "unhealthy cluster" in err


def test_a_fresh_machine_replaces_the_member_of_its_name_when_it_joins(running, capsys):
    """Talos' etcd join (services/etcd.go addMember): a machine with an empty data directory removes the member of
    its own hostname, then adds itself with a new ID; a member with its address under another name is refused."""
    double_state.set_cluster(running.state, join_calls=0)
    double_state.set_unreachable(running.state, CONTROLPLANE[2], "refused")
    old = [m["id"] for m in double_state.etcd_member_list(running.state) if m["name"] == "cp-3"][0]

    def rebuild(name):   # a new machine with cp-3's address, in maintenance mode
        def _f(c):
            c.nodes[CONTROLPLANE[2]] = double_state.new_node(name, CONTROLPLANE[2])
        return _f
    double_state.update(running.state, rebuild("cp-9"))
    assert talosctl(capsys, "apply-config", "-i", "-n", CONTROLPLANE[2], "-f", running.paths[CONTROLPLANE[2]])[0] == 0
    for _ in range(2):
        talosctl(capsys, "version", *node_args(running, CONTROLPLANE[2]))
    node = double_state.node(running.state, CONTROLPLANE[2])
    assert node["etcd_member_id"] is None and "Peer URLs already exists" in node["join_blocked"]
    # the same name: the stale member is replaced (2 of 3 members run: a quorum for the change)
    double_state.update(running.state, rebuild("cp-3"))
    assert talosctl(capsys, "apply-config", "-i", "-n", CONTROLPLANE[2], "-f", running.paths[CONTROLPLANE[2]])[0] == 0
    talosctl(capsys, "version", *node_args(running, CONTROLPLANE[2]))
    node = double_state.node(running.state, CONTROLPLANE[2])
    listed = double_state.etcd_member_list(running.state)
    assert [m["name"] for m in listed] == ["cp-1", "cp-2", "cp-3"] and node["etcd_member_id"] not in (None, old)
    assert [e["member"] for e in double_state.events(running.state, "etcd-remove-member")] == [old]


def test_reset_graceful_leaves_etcd_and_returns_to_maintenance(running, capsys):
    ip = CONTROLPLANE[2]
    rc, _, err = talosctl(capsys, "reset", "--wipe-mode", "most", *node_args(running, ip))
    assert rc == 1 and 'invalid argument "most" for "--wipe-mode" flag' in err
    rc, _, err = talosctl(capsys, "reset", "--reboot", "--system-labels-to-wipe", "STATE,EPHEMERAL",
                          *node_args(running, ip))
    assert rc == 0 and err.endswith("    * %s: post check passed\n" % ip)
    assert [m["name"] for m in double_state.etcd_member_list(running.state)] == ["cp-1", "cp-2"]
    node = double_state.node(running.state, ip)
    assert node["stage"] == "maintenance" and node["config"] is None
    assert talosctl(capsys, "version", "--insecure", "-n", ip)[0] == 0


def test_reset_not_graceful_keeps_the_member_and_without_reboot_powers_off(running, capsys):
    ip = WORKERS[0]
    assert talosctl(capsys, "reset", "--graceful=false", *node_args(running, ip))[0] == 0
    rc, _, err = talosctl(capsys, "version", "--insecure", "-n", ip)
    assert rc == 1 and "connection refused" in err
    assert talosctl(capsys, "reset", "--graceful=false", "--reboot", "--system-labels-to-wipe", "EPHEMERAL",
                    *node_args(running, CONTROLPLANE[1]))[0] == 0
    assert len(double_state.etcd_member_list(running.state)) == 3
    assert double_state.node(running.state, CONTROLPLANE[1])["stage"] == "running"


def test_snapshot_and_recover(running, capsys, tmp_path):
    path = str(tmp_path / "db.snapshot")
    rc, _, err = talosctl(capsys, "etcd", "snapshot", path, "--talosconfig", running.tc, "-n",
                          ",".join(CONTROLPLANE[:2]), "-e", CONTROLPLANE[0])
    assert rc == 1 and 'command "etcd snapshot" is not supported with multiple nodes' in err
    rc, out, _ = talosctl(capsys, "etcd", "snapshot", path, *node_args(running, CONTROLPLANE[0]))
    assert rc == 0 and out.startswith('etcd snapshot saved to "%s" (' % path)
    assert "snapshot info: hash " in out and ", revision 1, " in out
    assert os.path.getsize(path) % 512 == 32 and not os.path.exists(path + ".part")
    double_state.etcd_write(running.state, 9)
    ip = CONTROLPLANE[1]
    rc, _, err = talosctl(capsys, "bootstrap", "--recover-from", path, *node_args(running, ip))
    assert rc == 1 and "AlreadyExists" in err, "a node with etcd data is never recovered over"
    for cp in CONTROLPLANE:
        assert talosctl(capsys, "reset", "--graceful=false", "--reboot", "--system-labels-to-wipe", "EPHEMERAL",
                        *node_args(running, cp))[0] == 0
    broken = tmp_path / "broken.snapshot"
    broken.write_bytes(b"\0" * 544)
    rc, _, err = talosctl(capsys, "bootstrap", "--recover-from", str(broken), *node_args(running, ip))
    assert rc == 1 and "invalid database" in err
    rc, out, _ = talosctl(capsys, "bootstrap", "--recover-from", path, *node_args(running, ip))
    assert rc == 0 and out.startswith('recovering from snapshot "%s": hash ' % path)
    assert double_state.etcd_revision(running.state) == 1


def test_upgrade_k8s_dry_run_then_upgrade(running, capsys):
    def images(c):
        for n in c.nodes.values():
            docs = list(yaml.safe_load_all(n["config"]))
            docs[0]["machine"]["kubelet"] = {"image": "ghcr.io/siderolabs/kubelet:v1.36.3"}
            if n["machine_type"] == "controlplane":
                docs[0]["cluster"]["apiServer"] = {"image": "registry.k8s.io/kube-apiserver:v1.36.3"}
            n["config"] = yaml.safe_dump_all(docs)
    double_state.update(running.state, images)
    cp = CONTROLPLANE[0]
    rc, out, _ = talosctl(capsys, "upgrade-k8s", "--to", "1.36.4", "--dry-run", *node_args(running, cp))
    assert rc == 0 and "automatically detected the lowest Kubernetes version 1.36.3\n" in out
    assert " > update kube-apiserver: 1.36.3 -> 1.36.4\n > skipped in dry-run\n" in out
    assert " > update kubelet: 1.36.3 -> 1.36.4\n" in out
    assert all("kubelet:v1.36.3" in double_state.node(running.state, ip)["config"] for ip in CONTROLPLANE + WORKERS)
    rc, _, err = talosctl(capsys, "upgrade-k8s", "--to", "1.38.0", *node_args(running, cp))
    assert rc == 1 and err.strip() == 'unsupported upgrade path 1.36->1.38 (from "1.36.3" to "1.38.0")'
    rc, out, _ = talosctl(capsys, "upgrade-k8s", "--to", "1.36.4", *node_args(running, cp))
    assert rc == 0 and ' > "%s": machine configuration patched' % cp in out
    assert all("kubelet:v1.36.4" in double_state.node(running.state, ip)["config"] for ip in CONTROLPLANE + WORKERS)
    rc, out, _ = talosctl(capsys, "upgrade-k8s", "--to", "1.36.4", "--dry-run", *node_args(running, cp))
    assert rc == 0 and "> update" not in out
