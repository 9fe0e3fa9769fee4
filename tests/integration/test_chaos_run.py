"""playbooks/chaos-run.yml against the fake Kubernetes API (the cell as L5 leaves it).

A thread plays Chaos Mesh's controller: for a run object of the library it reports AllInjected,
then AllRecovered, as chaos-controller-manager does (status.conditions). Cases:

* a pod kill of Kyverno's admission controller: a fresh UNPAUSED copy of the paused library
  object is created (the library object is never written), the run waits for the injection,
  the experiment's duration and the recovery, checks the admission controller's rollout and that
  every node is Ready, and reports PASSED with what the experiment proves;
* the same experiment while the checked Deployment is gone: the run reports FAILED, names the
  check that did not hold and keeps the run object;
* an experiment that is not in the library, and a cell where L5 is not applied: refused with the
  fix, before anything is written.

    scripts/netns-run .venv/bin/pytest -q tests/integration/test_chaos_run.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path
import urllib.request

import pytest

from apply_fixtures import (apply_run_setup, crd, deployment, Player, preinstall, recap, run_playbook,
                            SecretsDir)
from fake_kube_api import FakeKubeAPI

PAUSE = "experiment.chaos-mesh.org/pause"
RUN_OF = "cellplatform.io/chaos-run-of"
NODES = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"]


def _create(api, path, obj):
    req = urllib.request.Request(api.url + path, data=json.dumps(obj).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only (fake API on 127.0.0.1)
        return json.loads(resp.read())


class ChaosMeshPlays(Player):
    """Plays chaos-controller-manager for run objects (label cellplatform.io/chaos-run-of):
    AllInjected ``delay`` seconds after the object appears, AllRecovered ``delay`` later."""

    def __init__(self, api, delay=0.5):
        super().__init__()
        self.api = api
        self.delay = delay
        self.runs = {}
        # runs of earlier tests are history: only objects created from now on are played
        self.before = {o["metadata"]["name"] for o in api.list("chaos-mesh.org/v1alpha1", "PodChaos", "chaos-mesh")}

    def _run(self):
        seen = {}
        while not self.stop.is_set():
            for obj in self.api.list("chaos-mesh.org/v1alpha1", "PodChaos", "chaos-mesh"):
                name = obj["metadata"]["name"]
                if RUN_OF not in (obj["metadata"].get("labels") or {}) or name in self.before:
                    continue
                first = seen.setdefault(name, time.monotonic())
                self.runs.setdefault(name, obj)
                if time.monotonic() - first >= self.delay:
                    self.api.set_condition("chaos-mesh.org/v1alpha1", "PodChaos", name, "chaos-mesh", "AllInjected")
                if time.monotonic() - first >= 2 * self.delay:
                    self.api.set_condition("chaos-mesh.org/v1alpha1", "PodChaos", name, "chaos-mesh", "AllRecovered")
            self.stop.wait(0.1)


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chaosrun")
    api = FakeKubeAPI(ready_delay=0.2).start()
    try:
        secrets = SecretsDir(tmp, api.kubeconfig())
        env, extra, _state, _build = apply_run_setup(tmp, secrets, tmp / "charts")
        extra.update({"l5_resilience_chaos_default_duration": "2s", "l5_resilience_chaos_poll_interval": 1,
                      "l5_resilience_chaos_inject_timeout": 30, "l5_resilience_chaos_check_timeout": 8})
        preinstall(api, [crd("chaos-mesh.org", "PodChaos", "podchaos", ("v1alpha1",)),
                         crd("chaos-mesh.org", "NetworkChaos", "networkchaos", ("v1alpha1",))])
        for ns in ("chaos-mesh", "kyverno"):
            _create(api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for name in NODES:
            _create(api, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                                           "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        dep = deployment("kyverno-admission-controller", 3)
        dep["metadata"]["namespace"] = "kyverno"
        _create(api, "/apis/apps/v1/namespaces/kyverno/deployments", dep)
        # the paused library object as L5 applied it
        _create(api, "/apis/chaos-mesh.org/v1alpha1/namespaces/chaos-mesh/podchaos", {
            "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
            "metadata": {"name": "pod-kill-kyverno", "namespace": "chaos-mesh", "annotations": {PAUSE: "true"}},
            "spec": {"action": "pod-kill", "mode": "one", "selector": {"namespaces": ["kyverno"]}}})
        time.sleep(0.5)
        yield {"api": api, "env": dict(env, ANSIBLE_PIPELINING="1"), "extra": extra,
               "plaintext": Path(extra["cellplatform_work_dir"]) / "plaintext"}
    finally:
        api.stop()


def _run(cell, *more):
    extra = dict(cell["extra"])
    for item in more:
        extra.update(item)
    # -v: the gates' results (what each waited for) are part of the report
    return run_playbook("playbooks/chaos-run.yml", cell["env"], extra, ["-v"])


def _library_writes(api):
    return [e for e in api.writes() if e["kind"] == "PodChaos" and e["name"] == "pod-kill-kyverno"]


def test_pod_kill_runs_a_fresh_copy_and_passes(cell):
    api = cell["api"]
    library_writes = len(_library_writes(api))
    started = time.monotonic()
    with ChaosMeshPlays(api) as chaos:
        rc, out = _run(cell, {"experiment": "pod-kill-kyverno"})
    took = time.monotonic() - started
    assert rc == 0, out[-6000:]
    assert recap(out)["failed"] == 0
    (name, run), = chaos.runs.items()
    assert name.startswith("pod-kill-kyverno-")
    assert run["metadata"]["labels"][RUN_OF] == "pod-kill-kyverno"
    assert PAUSE not in (run["metadata"].get("annotations") or {})
    # the run is the rendered library experiment (the role's definition), not the live object
    assert run["spec"] == {"action": "pod-kill", "mode": "one",
                           "selector": {"namespaces": ["kyverno"],
                                        "labelSelectors": {"app.kubernetes.io/component": "admission-controller"}}}
    assert len(_library_writes(api)) == library_writes          # the library object stays paused
    text = " ".join(out.split())
    assert "PASSED: PodChaos chaos-mesh/%s" % name in text
    assert "proves: Losing one Kyverno admission controller replica" in text
    assert "ran 2s" in text and took >= 2
    # it waited for the injection, the recovery, the rollout and every node, in that order
    order = [text.index(s) for s in ("PodChaos chaos-mesh/%s: AllInjected=True" % name,
                                     "PodChaos chaos-mesh/%s: AllRecovered=True" % name,
                                     "Deployment kyverno/kyverno-admission-controller")]
    assert order == sorted(order), order
    assert "every Node" in text
    # the kubeconfig was decrypted into the plaintext directory for the run, and is gone after it
    assert cell["plaintext"].is_dir() and list(cell["plaintext"].iterdir()) == []


def test_a_check_that_does_not_hold_fails_the_run(cell):
    api = cell["api"]
    req = urllib.request.Request(api.url + "/apis/apps/v1/namespaces/kyverno/deployments/kyverno-admission-controller",
                                 method="DELETE")
    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
        resp.read()
    with ChaosMeshPlays(api) as chaos:
        rc, out = _run(cell, {"experiment": "pod-kill-kyverno"})
    assert rc != 0
    (name, _run_obj), = chaos.runs.items()
    text = " ".join(out.split())
    assert "FAILED: experiment pod-kill-kyverno (run %s" % name in text
    assert "Check what the experiment hit is ready again and every node is Ready" in text
    assert "kyverno-admission-controller" in text
    assert api.get("chaos-mesh.org/v1alpha1", "PodChaos", name, "chaos-mesh")   # kept for the dashboard
    assert list(cell["plaintext"].iterdir()) == []                                 # removed on failure too


@pytest.mark.parametrize("experiment, expected", [
    ("pod-kill-everything", ["experiment pod-kill-everything is not in the library", "pod-kill-kyverno",
                             "worker-kubelet-cut-off"]),
    ("pod-kill-cert-manager", ["PodChaos chaos-mesh/pod-kill-cert-manager does not exist in the cluster",
                               "apply L5 first"]),
], ids=["not-in-the-library", "library-not-applied"])
def test_refused_with_the_fix_before_anything_is_written(cell, experiment, expected):
    api = cell["api"]
    writes = len(api.writes())
    rc, out = _run(cell, {"experiment": experiment})
    assert rc != 0
    text = " ".join(out.split())
    for want in expected:
        assert want in text, want
    assert len(api.writes()) == writes
