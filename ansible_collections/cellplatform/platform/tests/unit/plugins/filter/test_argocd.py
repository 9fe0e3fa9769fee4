# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Argo CD Application built for a plan component, checked against the Application CRD schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.filter.argocd import argocd_application

GITOPS = {"repo_url": "https://gitea.cell.lan/platform/cell.git", "revision": "main", "path": "apps"}
METALLB = {
    "name": "metallb", "layer": "l1", "chart": "metallb", "repo": "https://metallb.github.io/metallb",
    "version": "0.16.1", "namespace": "metallb-system", "release": "metallb",
    "values_file": "l1/metallb/values.yaml", "manifests": ["l1/metallb/manifests.yaml"],
    "sync_wave": -6, "privileged": True,
}


def _schema(root):
    index = json.loads((root / "INDEX.json").read_text())
    return json.loads((root / index["kubernetes_crds"]["argoproj.io/v1alpha1"]["Application"]).read_text())


def test_application_follows_the_component():
    app = argocd_application(METALLB, GITOPS)
    chart, values, manifests = app["spec"]["sources"]
    assert chart == {"repoURL": "https://metallb.github.io/metallb", "chart": "metallb", "targetRevision": "0.16.1",
                     "helm": {"releaseName": "metallb", "valueFiles": ["$values/l1/metallb/values.yaml"]}}
    assert values == {"repoURL": GITOPS["repo_url"], "targetRevision": "main", "ref": "values"}
    assert manifests["path"] == "l1/metallb" and manifests["directory"] == {"include": "manifests.yaml"}
    assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-6"
    assert app["spec"]["destination"]["namespace"] == "metallb-system"
    labels = app["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert "SkipDryRunOnMissingResource=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert "finalizers" not in app["metadata"]


def test_application_validates_against_the_crd_schema(schema_root):
    # schema_root: the project's conftest.py (the upstream schema store; skipped without one)
    jsonschema.Draft7Validator(_schema(schema_root)).validate(argocd_application(METALLB, GITOPS))


def test_oci_chart_drops_the_scheme():
    comp = dict(METALLB, repo="oci://ghcr.io/sergelogvinov/charts", chart="karpenter-provider-proxmox", manifests=[], privileged=False)
    app = argocd_application(comp, GITOPS)
    assert app["spec"]["sources"][0]["repoURL"] == "ghcr.io/sergelogvinov/charts"
    assert "managedNamespaceMetadata" not in app["spec"]["syncPolicy"]


@pytest.mark.parametrize("component,gitops,message", [
    ({"name": "x", "namespace": "n"}, GITOPS, "neither a chart nor manifests"),
    (dict(METALLB, version=None), GITOPS, "component metallb needs 'version'"),
    (METALLB, {"revision": "main"}, "cellplatform_gitops needs 'repo_url'"),
])
def test_incomplete_input_is_named(component, gitops, message):
    with pytest.raises(AnsibleFilterError, match=message):
        argocd_application(component, gitops)
