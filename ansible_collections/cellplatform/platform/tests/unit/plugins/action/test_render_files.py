# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""render_files end to end through ansible-playbook: write, rerun, check mode, diff, prune, plan."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[7]

PLAYBOOK = textwrap.dedent("""\
    - name: Render
      hosts: localhost
      gather_facts: false
      tasks:
        - name: Render the layer
          cellplatform.platform.render_files:
            root: "{{ root }}"
            prune: [nodes]
            files: "{{ files }}"
            layer: l0
            cell:
              name: cell
              nodes: [{name: cp-1, ip: 192.168.100.51, role: controlplane}]
              gitops: {repo_url: "https://git.example.org/cell.git", revision: main, path: apps}
              work_dir: /should/not/reach/plan.json
            components: "{{ components }}"
          register: out
        - name: Show the result
          ansible.builtin.debug:
            var: out
    """)


CILIUM = {"name": "cilium", "namespace": "kube-system", "values": {"ipam": {"mode": "kubernetes"}},
          "chart": {"repo": "https://helm.cilium.io/", "name": "cilium", "version": "1.20.0"}}


def run(tmp_path, files, *extra, components=(CILIUM,)):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps({"root": str(tmp_path / "build"), "files": files,
                                                    "components": list(components)}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(tmp_path / "play.yml"),
         "-e", "@" + str(tmp_path / "vars.json"), *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    data = json.loads(proc.stdout)
    task = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return proc.returncode, task


FILES = [
    {"path": "nodes/cp-1.yaml", "documents": [{"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": "cp-1"}]},
    {"path": "nodes/cp-2.yaml", "documents": [{"kind": "HostnameConfig", "hostname": "cp-2"}]},
    {"path": "terraform/cell.auto.tfvars.json", "data": {"b": 1, "a": 2}},
]


@pytest.mark.slow
def test_write_rerun_check_diff_prune(tmp_path):
    rc, first = run(tmp_path, FILES)
    assert rc == 0 and first["changed"] is True
    build = tmp_path / "build"
    assert (build / "nodes/cp-1.yaml").read_text() == (
        "---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: 'off'\nhostname: cp-1\n")
    assert json.loads((build / "terraform/cell.auto.tfvars.json").read_text()) == {"a": 2, "b": 1}
    plan = json.loads((build / "plan.json").read_text())
    assert plan["components"][0]["name"] == "cilium" and plan["cell"]["name"] == "cell"
    assert "work_dir" not in plan["cell"] and "gitops" not in plan["cell"]    # machine-specific keys stay out
    assert plan["components"][0]["values_file"] == "l0/cilium/values.yaml"
    assert (build / "l0/cilium/values.yaml").read_text() == "ipam:\n  mode: kubernetes\n"
    app = (build / "apps/cilium.yaml").read_text()
    assert "chart: cilium" in app and "$values/l0/cilium/values.yaml" in app
    assert not (build / "l0/cilium/namespace.yaml").exists()               # kube-system belongs to Kubernetes
    assert "| cilium |" in (build / "PLAN.md").read_text()
    snapshot = {p: p.read_bytes() for p in build.rglob("*") if p.is_file()}
    mtimes = {p: p.stat().st_mtime_ns for p in snapshot}

    rc, second = run(tmp_path, FILES)
    assert rc == 0 and second["changed"] is False
    assert set(second["files"].values()) == {"unchanged"}
    assert {p: p.stat().st_mtime_ns for p in snapshot} == mtimes

    # Drop cp-2 and change cp-1: check mode reports both, writes nothing, and shows the diff.
    changed = [dict(FILES[0], documents=[{"kind": "HostnameConfig", "hostname": "cp-1-renamed"}]), FILES[2]]
    rc, check = run(tmp_path, changed, "--check", "--diff")
    assert rc == 0 and check["changed"] is True
    assert check["files"]["nodes/cp-1.yaml"] == "updated" and check["files"]["nodes/cp-2.yaml"] == "removed"
    assert any("cp-1-renamed" in d["after"] for d in check["diff"])
    assert {p: p.read_bytes() for p in snapshot} == snapshot

    rc, applied = run(tmp_path, changed)
    assert rc == 0 and applied["changed"] is True
    assert not (build / "nodes/cp-2.yaml").exists()
    assert "cp-1-renamed" in (build / "nodes/cp-1.yaml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("files,message", [
    ([{"path": "../escape.yaml", "data": {}}], "must be a normalised path relative to root"),
    ([{"path": "a.yaml", "data": {}, "content": "x"}], "needs exactly one of data, documents or content"),
    ([{"path": "plan.json", "data": {}}], "generated from the 'layer' and 'components' options"),
    ([{"path": "k.txt", "content": "-----BEGIN RSA PRIVATE KEY-----"}], "refusing to write private key material"),
])
def test_bad_input_fails_before_writing(tmp_path, files, message):
    rc, task = run(tmp_path, files)
    assert rc != 0 and task["failed"] is True
    assert message in task["msg"]
    assert not (tmp_path / "build").exists()


@pytest.mark.slow
@pytest.mark.parametrize("component,message", [
    (dict(CILIUM, chart=dict(CILIUM["chart"], version="latest")), "chart version 'latest' is not pinned"),
    (dict(CILIUM, valuez={}), "unknown field(s) valuez"),
    (dict(CILIUM, layer="l2"), "says layer l2 but is listed by layer l0"),
])
def test_bad_component_record_fails_before_writing(tmp_path, component, message):
    rc, task = run(tmp_path, FILES, components=[component])
    assert rc != 0 and message in task["msg"]
    assert not (tmp_path / "build").exists()
