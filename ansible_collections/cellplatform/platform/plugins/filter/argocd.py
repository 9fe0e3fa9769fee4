# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argo CD Application for one rendered platform component (filter argocd_application)."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError

PSA_PRIVILEGED = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/audit": "privileged",
    "pod-security.kubernetes.io/warn": "privileged",
}


def _require(mapping, key, what):
    value = mapping.get(key)
    if value in (None, ""):
        raise AnsibleFilterError("argocd_application: %s needs '%s'" % (what, key))
    return value


def argocd_application(component, gitops, project="platform", namespace="argocd",
                       destination_server="https://kubernetes.default.svc"):
    """Return the Argo CD Application that deploys ``component`` exactly as the collection does.

    The chart, version, release name and values file are the ones the Ansible apply step uses,
    so Argo CD adopts the release instead of fighting it. Values and extra manifests come from
    the GitOps repository, which holds the rendered build tree at its root.
    """
    if not isinstance(component, dict):
        raise AnsibleFilterError("argocd_application: expected a component mapping, got %r" % (component,))
    name = _require(component, "name", "the component")
    what = "component %s" % name
    repo_url = _require(gitops, "repo_url", "cellplatform_gitops")
    revision = _require(gitops, "revision", "cellplatform_gitops")
    sources = []
    if component.get("chart"):
        repo = _require(component, "repo", what)
        helm = {"releaseName": component.get("release") or name}
        if component.get("values_file"):
            helm["valueFiles"] = ["$values/%s" % component["values_file"]]
        sources.append({
            # Argo CD addresses Helm OCI registries without the oci:// scheme (enableOCI repo).
            "repoURL": repo[len("oci://"):] if repo.startswith("oci://") else repo,
            "chart": component["chart"],
            "targetRevision": str(_require(component, "version", what)),
            "helm": helm,
        })
        if component.get("values_file"):
            sources.append({"repoURL": repo_url, "targetRevision": revision, "ref": "values"})
    for manifest in component.get("manifests") or []:
        sources.append({
            "repoURL": repo_url,
            "targetRevision": revision,
            "path": posixpath.dirname(manifest) or ".",
            "directory": {"include": posixpath.basename(manifest)},
        })
    if not sources:
        raise AnsibleFilterError("argocd_application: %s has neither a chart nor manifests" % what)

    sync_options = ["CreateNamespace=true", "ServerSideApply=true"]
    if component.get("manifests"):
        # Custom resources of a chart's own CRDs: skip the dry run until the CRDs exist.
        sync_options.append("SkipDryRunOnMissingResource=true")
    sync_policy = {
        "automated": {"prune": True, "selfHeal": True},
        "syncOptions": sync_options,
        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
    }
    if component.get("privileged"):
        # Talos enforces PodSecurity baseline; these namespaces run host-level agents.
        sync_policy["managedNamespaceMetadata"] = {"labels": dict(PSA_PRIVILEGED)}

    spec = {
        "project": project,
        "sources": sources,
        "destination": {"server": destination_server, "namespace": _require(component, "namespace", what)},
        "syncPolicy": sync_policy,
    }
    if component.get("ignore_differences"):
        spec["ignoreDifferences"] = component["ignore_differences"]
    annotations = {"argocd.argoproj.io/sync-wave": str(component.get("sync_wave", 0))}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": annotations,
            "labels": {
                "app.kubernetes.io/part-of": "cellplatform",
                "app.kubernetes.io/managed-by": "cellplatform",
                "cellplatform.io/layer": str(component.get("layer", "")),
            },
        },
        "spec": spec,
    }


class FilterModule:
    def filters(self):
        return {"argocd_application": argocd_application}
