"""L2 render mode follows the inventory, and the L2 checks can fail.

* render with non-default inventory values (enforce mode, another Argo CD domain, GitOps repo,
  revision and path) and check they reach the values, policies, root Application and plan;
* check mode on an empty build root writes nothing;
* the molecule values-key check and tests/support/verify_build.py reject a mutated build
  (a typo in a values key, a ValidatingPolicy with an invalid validationAction).

Run inside scripts/netns-run:
    scripts/netns-run python -m pytest tests/integration/test_l2_render.py -q
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from apply_fixtures import REPO, run_playbook

GITOPS = {"repo_url": "https://git.example.test/ops/fleet.git", "revision": "release-1", "path": "clusters/cell"}


@pytest.fixture(scope="module")
def enforce_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l2render")
    extra = {"cellplatform_mode": "render", "cellplatform_build_root": str(tmp / "build"),
             "cellplatform_policy_mode": "enforce", "cellplatform_argocd_domain": "cd.cell.lan",
             "cellplatform_gitops": GITOPS}
    rc, out = run_playbook("playbooks/l2.yml", {"ANSIBLE_PIPELINING": "1"}, extra)
    assert rc == 0, out[-5000:]
    return tmp / "build" / "cell"


def _yaml(path):
    return yaml.safe_load(path.read_text())


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_values_follow_the_inventory(enforce_build):
    b = enforce_build
    argocd = _yaml(b / "l2/argocd/values.yaml")
    assert argocd["global"]["domain"] == "cd.cell.lan"
    # the UI's route is the pipeline's (the record's ui), named after the domain's first label
    assert argocd["server"]["httproute"] == {"enabled": False}
    (route,) = _docs(b / "l2/argocd/routes.yaml")
    assert route["metadata"]["name"] == "cd-ui" and route["spec"]["hostnames"] == ["cd.cell.lan"]
    kp = _yaml(b / "l2/kyverno-policies/values.yaml")
    assert kp["validationFailureAction"] == "Enforce" and kp["failurePolicy"] == "Fail"
    assert _yaml(b / "l2/kyverno/values.yaml")["features"]["forceFailurePolicyIgnore"]["enabled"] is False
    for pol in _docs(b / "l2/kyverno-policies/manifests.yaml"):
        # a namespace without a NetworkPolicy is only ever reported (it exists before its policies)
        want = ["Audit"] if pol["metadata"]["name"] == "require-network-policy" else ["Deny"]
        assert pol["spec"]["validationActions"] == want, pol["metadata"]["name"]
    project, root = _docs(b / "l2/argocd/manifests.yaml")
    assert root["spec"]["source"]["repoURL"] == GITOPS["repo_url"]
    assert root["spec"]["source"]["targetRevision"] == "release-1"
    assert root["spec"]["source"]["path"] == "clusters/cell"
    assert GITOPS["repo_url"] in project["spec"]["sourceRepos"]
    plan = json.loads((b / "plan.json").read_text())
    l2 = [c for c in plan["components"] if c["layer"] == "l2"]
    assert {c["application"] for c in l2} == {"clusters/cell/%s.yaml" % c["name"] for c in l2}
    for c in l2:
        app = _yaml(b / c["application"])
        assert app["spec"]["sources"][0]["targetRevision"] == c["version"]
        assert any(s.get("repoURL") == GITOPS["repo_url"] and s.get("targetRevision") == "release-1"
                   for s in app["spec"]["sources"])


def test_check_mode_writes_nothing(tmp_path):
    extra = {"cellplatform_mode": "render", "cellplatform_build_root": str(tmp_path / "build")}
    rc, out = run_playbook("playbooks/l2.yml", {"ANSIBLE_PIPELINING": "1"}, extra, ["--check"])
    assert rc == 0, out[-5000:]
    assert "changed=1" in out
    assert not (tmp_path / "build" / "cell" / "l2").exists()


def test_values_key_check_rejects_a_typo(enforce_build, tmp_path, schema_root):
    b = tmp_path / "cell"
    shutil.copytree(enforce_build, b)
    script = REPO / "molecule" / "l2_core_platform" / "check_values.py"
    ok = subprocess.run([sys.executable, str(script), str(b), "--schemas", str(schema_root)],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert ok.returncode == 0, ok.stdout
    values = _yaml(b / "l2/kyverno/values.yaml")
    values["admissionController"]["replica"] = 3
    (b / "l2/kyverno/values.yaml").write_text(yaml.safe_dump(values))
    bad = subprocess.run([sys.executable, str(script), str(b), "--schemas", str(schema_root)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert bad.returncode == 1 and "admissionController.replica " in bad.stdout, bad.stdout


def test_schema_check_rejects_an_invalid_policy(enforce_build, tmp_path, schema_root):
    b = tmp_path / "cell"
    shutil.copytree(enforce_build, b)
    path = b / "l2/kyverno-policies/manifests.yaml"
    docs = _docs(path)
    docs[0]["spec"]["validationActions"] = ["Enforce"]          # not Deny | Audit | Warn
    path.write_text(yaml.safe_dump_all(docs))
    proc = subprocess.run([sys.executable, str(REPO / "tests/support/verify_build.py"), str(b), "--layer", "l2",
                           "--schemas", str(schema_root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 1
    assert "disallow-latest-tag" in proc.stdout and "validationActions" in proc.stdout, proc.stdout
