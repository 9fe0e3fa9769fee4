"""The component pipeline end to end with a throwaway component: one record, nothing else.

A playbook that knows nothing about the component but its record renders it with
cellplatform.platform.render_files and applies it with the cellplatform.platform.component role
against the test doubles (helm double + in-process fake Kubernetes API). Proves what
docs/development.md promises: a new component is a record plus its values and manifests, and
it gets its namespace (with PodSecurity labels), pinned Helm release, gate, manifests, Secrets
from the encrypted platform secrets, Argo CD Application and plan.json entry from the pipeline.

    scripts/netns-run .venv/bin/pytest -q tests/integration/test_component_pipeline.py
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time

import pytest
import yaml

from apply_fixtures import (apply_run_setup, crd, deployment, helm_calls, recap, run_playbook, SecretsDir, webhook,
                            write_chart)
from fake_kube_api import FakeKubeAPI

RECORD = {
    "name": "echo-server",
    "namespace": "echo",
    "pod_security": "baseline",
    "chart": {"repo": "https://charts.example.org/echo", "name": "echo", "version": "1.2.3"},
    "values": {"replicaCount": 2, "message": "hello"},
    "manifests": [{"apiVersion": "echo.example.org/v1", "kind": "Greeting",
                   "metadata": {"name": "world", "namespace": "echo"}, "spec": {"text": "hi"}}],
    "secrets": [{"name": "echo-token", "keys": {"token": "echo_token"}}],
    "gate": {"crds": ["greetings.echo.example.org"], "deployments": ["echo-server"], "webhooks": ["echo-webhook"]},
    "manifests_gate": {"conditions": [{"api_version": "echo.example.org/v1", "kind": "Greeting", "name": "world",
                                       "namespace": "echo", "type": "Ready"}]},
    "depends_on": ["cilium"],
    "sync_wave": 3,
    "plan": {"notes": "a throwaway component of the pipeline test"},
}

PLAYBOOK = """\
- name: A layer that is nothing but one record
  hosts: localhost
  gather_facts: false
  vars:
    record: %s
  tasks:
    - name: Preflight
      cellplatform.platform.cell_preflight:
        layers: [l0]
      tags: [always]
    - name: Render the record
      cellplatform.platform.render_files:
        root: "{{ cellplatform_cell.build_dir }}"
        layer: l3
        cell: "{{ cellplatform_cell }}"
        components: ["{{ record }}"]
      tags: [always]
    - name: Apply the record through the pipeline
      ansible.builtin.include_role:
        name: cellplatform.platform.component
      vars:
        component_records: ["{{ record }}"]
        component_layer: l3
      tags: [always]
""" % json.dumps(RECORD)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    api = FakeKubeAPI(ready_delay=1.5, crd_delay=1.5).start()
    try:
        secrets = SecretsDir(tmp, api.kubeconfig())
        secrets.platform["echo_token"] = "ECHOTOKEN-0123456789abcdef"
        secrets.write("platform.sops.yaml", yaml.safe_dump(secrets.platform))
        charts = tmp / "charts"
        write_chart(charts, "echo", "1.2.3", "v1",
                    [crd("echo.example.org", "Greeting", "greetings")] + [deployment("echo-server", 2)]
                    + webhook("echo-webhook-config", "echo-webhook", "echo.example.org", "v1", ["greetings"]))
        env, extra, state, build_root = apply_run_setup(tmp, secrets, charts, component_poll_interval=1,
                                                        component_wait_timeout=30)
        book = tmp / "layer.yml"
        book.write_text(PLAYBOOK)
        runs = {}
        runs["other_tag"] = run_playbook(str(book), env, extra, ["-t", "l2"])
        writes_other = len(api.writes())
        # The Greeting turns Ready 2 s after it exists, when "its controller" says so: the
        # manifests gate has to wait for it.
        stop = threading.Event()

        def controller():
            while not stop.is_set():
                if api.get("echo.example.org/v1", "Greeting", "world", "echo"):
                    time.sleep(2)
                    api.set_condition("echo.example.org/v1", "Greeting", "world", "echo", "Ready")
                    return
                time.sleep(0.2)

        thread = threading.Thread(target=controller, daemon=True)
        thread.start()
        runs["first"] = run_playbook(str(book), env, extra, ["-t", "echo_server", "-v"])
        stop.set()
        writes1, calls1 = len(api.writes()), helm_calls(state)
        runs["second"] = run_playbook(str(book), env, extra, ["-t", "l3"])
        yield {"api": api, "runs": runs, "writes_other": writes_other, "writes1": writes1, "calls1": calls1,
               "calls2": helm_calls(state)[len(calls1):], "build": build_root / "cell", "secrets": secrets}
    finally:
        api.stop()


def test_a_run_for_other_tags_touches_nothing(pipeline):
    rc, out = pipeline["runs"]["other_tag"]
    assert rc == 0, out[-4000:]
    assert pipeline["writes_other"] == 0


def test_one_record_renders_every_file(pipeline):
    build = pipeline["build"]
    assert yaml.safe_load((build / "l3/echo-server/values.yaml").read_text()) == RECORD["values"]
    ns = yaml.safe_load((build / "l3/echo-server/namespace.yaml").read_text())
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert yaml.safe_load((build / "l3/echo-server/manifests.yaml").read_text())["kind"] == "Greeting"
    app = yaml.safe_load((build / "apps/echo-server.yaml").read_text())
    assert app["spec"]["sources"][0]["chart"] == "echo" and app["spec"]["sources"][0]["targetRevision"] == "1.2.3"
    assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "3"
    plan = json.loads((build / "plan.json").read_text())
    entry = next(c for c in plan["components"] if c["name"] == "echo-server")
    assert entry["layer"] == "l3" and entry["depends_on"] == ["cilium"] and entry["version"] == "1.2.3"
    assert "a throwaway component" in (build / "PLAN.md").read_text()
    assert "ECHOTOKEN" not in "".join(p.read_text() for p in build.rglob("*") if p.is_file())


def test_one_record_is_applied_in_pipeline_order(pipeline):
    rc, out = pipeline["runs"]["first"]
    assert rc == 0, out[-6000:]
    api = pipeline["api"]
    writes = api.writes()
    seq = {}
    for e in writes:
        seq.setdefault((e["kind"], e["name"], e["field_manager"] == "helm"), e["seq"])
    namespace = seq[("Namespace", "echo", False)]
    secret = seq[("Secret", "echo-token", False)]
    release = min(e["seq"] for e in writes if e["field_manager"] == "helm")
    greeting = seq[("Greeting", "world", False)]
    established = next(e["seq"] for e in api.events if e["verb"] == "established"
                       and e["name"] == "greetings.echo.example.org")
    assert namespace < secret < release < established < greeting
    upgrade = [c for c in pipeline["calls1"] if c["command"] == "upgrade"]
    assert len(upgrade) == 1 and "--version=1.2.3" in upgrade[0]["argv"] and upgrade[0]["namespace"] == "echo"
    token = api.get("v1", "Secret", "echo-token", "echo")
    assert base64.b64decode(token["data"]["token"]).decode() == "ECHOTOKEN-0123456789abcdef"
    assert "ECHOTOKEN" not in out
    waited = re.findall(r"echo-server: ready after (\d+)s \(([^)]*)", out)
    assert any("Greeting echo/world: Ready=True" in detail and int(s) >= 1 for s, detail in waited), waited


def test_second_run_changes_nothing(pipeline):
    rc, out = pipeline["runs"]["second"]
    assert rc == 0, out[-4000:]
    assert recap(out)["changed"] == 0, out[-4000:]
    assert [c for c in pipeline["calls2"] if c["command"] in ("upgrade", "install")] == []
    assert len(pipeline["api"].writes()) == pipeline["writes1"]
