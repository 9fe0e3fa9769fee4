# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Component records: validation, defaults, the files and plan entries they render, tag selection."""

from __future__ import annotations

import json

import jsonschema
import pytest

from ansible_collections.cellplatform.platform.plugins.plugin_utils import component as comp

GITOPS = {"repo_url": "https://gitea.cell.lan/platform/cell.git", "revision": "main", "path": "apps",
          "project": "platform", "namespace": "argocd"}
METALLB = {
    "name": "metallb", "namespace": "metallb-system", "pod_security": "privileged",
    "chart": {"repo": "https://metallb.github.io/metallb", "name": "metallb", "version": "0.16.1",
              "namespace": "ignored", "sync_wave": -6},
    "values": {"frrk8s": {"enabled": False}},
    "manifests": [{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                   "metadata": {"name": "cell-pool", "namespace": "metallb-system"}}],
    "gate": {"deployments": ["metallb-controller"], "webhooks": ["metallb-webhook-service"]},
    "sync_wave": "-6",
}


def records(*items, layer="l1"):
    return comp.records_for(list(items), layer)


def test_defaults_are_filled_in():
    rec = comp.normalise(METALLB, "l1")
    assert rec["layer"] == "l1" and rec["enabled"] is True and rec["tags"] == ["metallb"]
    assert rec["chart"] == {"repo": "https://metallb.github.io/metallb", "name": "metallb", "version": "0.16.1",
                            "release": "metallb"}
    assert rec["sync_wave"] == -6                      # templated text becomes the integer
    assert rec["secrets"] == [] and rec["depends_on"] == [] and rec["prepare"] is None
    assert comp.normalise({"name": "external-dns", "namespace": "x", "manifests": [{}]}, "l1")["tags"] == ["external_dns"]


@pytest.mark.parametrize("record,message", [
    ("metallb", "must be a mapping"),
    (dict(METALLB, name="MetalLB"), "name must be a DNS label"),
    (dict(METALLB, chartt={}), "unknown field(s) chartt; known fields: name, layer"),
    (dict(METALLB, namespace=None), "namespace is required"),
    (dict(METALLB, pod_security="strict"), "pod_security 'strict' is not one of privileged, baseline, restricted"),
    (dict(METALLB, chart={"repo": "r", "name": "n"}), "chart needs version"),
    (dict(METALLB, chart=dict(METALLB["chart"], version="^0.16")), "chart version '^0.16' is not pinned"),
    (dict(METALLB, chart=None), "values without a chart"),
    (dict(METALLB, chart=None, values={}, manifests=[]), "neither a chart nor manifests"),
    (dict(METALLB, gate={"deploymentz": []}), "gate has unknown check(s) deploymentz"),
    (dict(METALLB, manifests="x"), "field manifests must be list"),
    (dict(METALLB, enabled="maybe"), "field enabled must be bool"),
    (dict(METALLB, remote_manifests=[{"url": "https://x/y.yaml", "checksum": "md5:1"}]), "checksum 'sha256:<hex>'"),
    (dict(METALLB, secrets=[{"name": "s"}]), "secrets[0] needs name and keys"),
    (dict(METALLB, prepare={"role": "r"}), "prepare needs tasks_from"),
    (dict(METALLB, layer="l2"), "says layer l2 but is listed by layer l1"),
    (dict(METALLB, ui=[{"service": "x"}]), "ui[0] needs service and port"),
    (dict(METALLB, ui=[{"service": "x", "port": 80, "host": "Bad_Host"}]), "ui[0].host 'Bad_Host' must be a DNS label"),
    (dict(METALLB, ui=[{"service": "x", "port": 70000}]), "ui[0].port 70000 is not a port number"),
    (dict(METALLB, ui=[{"service": "x", "port": 80}, {"service": "y", "port": 80, "host": "metallb"}]),
     "ui lists host metallb twice"),
    (dict(METALLB, argocd={"sourcez": []}), "argocd has unknown key(s) sourcez"),
    (dict(METALLB, argocd={"sources": [{"path": "x"}]}), "argocd.sources must be a list of Application sources"),
    (dict(METALLB, network={"inbound": []}), "network has unknown key(s) inbound"),
    (dict(METALLB, network={"ingress": [{"peer": "internet"}]}), "peer 'internet' is not one of apiserver"),
    (dict(METALLB, network={"egress": [{"peer": "world", "ports": [443], "protocol": "ICMP"}]}), "protocol 'ICMP'"),
    (dict(METALLB, network={"egress": [{"peer": "world", "ports": [0]}]}), "ports must be a list of port numbers"),
    (dict(METALLB, network={"egress": [{"peer": "world", "port": 443}]}), "unknown key(s) port"),
])
def test_bad_records_name_the_component_and_the_field(record, message):
    with pytest.raises(comp.ComponentError) as err:
        comp.normalise(record, "l1")
    assert message in str(err.value)


def test_a_layer_lists_each_component_once_with_dependencies_first():
    with pytest.raises(comp.ComponentError, match="metallb is listed twice"):
        records(METALLB, METALLB)
    later = {"name": "pool", "namespace": "metallb-system", "manifests": [{}], "depends_on": ["metallb"]}
    with pytest.raises(comp.ComponentError, match="pool depends on metallb, which comes later"):
        records(later, METALLB)
    with pytest.raises(comp.ComponentError, match="depends on itself"):
        records(dict(METALLB, depends_on=["metallb"]))
    # a dependency on a lower layer's component (not in this list) is fine
    assert records(dict(METALLB, depends_on=["cilium"]))[0]["depends_on"] == ["cilium"]


def test_ui_and_network_are_normalised():
    rec = comp.normalise(dict(METALLB, ui=[{"service": "argocd-server", "port": "80"}],
                              network={"ingress": [{"peer": "apiserver", "ports": [9443], "why": "webhook"}],
                                       "egress": [{"peer": "namespace:kube-system", "ports": [53], "protocol": "UDP"},
                                                  {"peer": "cidr:192.0.2.0/24", "ports": ["https"]}]}), "l1")
    assert rec["ui"] == [{"host": "metallb", "service": "argocd-server", "port": 80, "path": "/", "title": "metallb"}]
    assert rec["network"]["ingress"][0]["peer"] == "apiserver"


def test_disabled_components_leave_no_trace():
    assert records(dict(METALLB, enabled=False)) == []
    assert records(dict(METALLB, enabled="False")) == []


def test_the_first_component_of_a_namespace_creates_it():
    policies = {"name": "metallb-config", "namespace": "metallb-system", "manifests": [{}]}
    ccm = {"name": "ccm", "namespace": "kube-system", "manifests": [{}]}
    out = records(METALLB, policies, ccm)
    assert [r["namespace_create"] for r in out] == [True, False, False]
    with pytest.raises(comp.ComponentError, match="namespace kube-system belongs to Kubernetes"):
        records(dict(ccm, namespace_create=True))


def test_namespace_document_carries_part_of_name_extra_labels_then_pod_security():
    rec = records(dict(METALLB, namespace_labels={"example.org/team": "net"}))[0]
    doc = comp.namespace_document(rec)
    assert doc["metadata"]["name"] == "metallb-system"
    assert list(doc["metadata"]["labels"].items()) == [
        ("app.kubernetes.io/part-of", "cellplatform"), ("app.kubernetes.io/name", "metallb-system"),
        ("example.org/team", "net"), ("pod-security.kubernetes.io/enforce", "privileged"),
        ("pod-security.kubernetes.io/audit", "privileged"), ("pod-security.kubernetes.io/warn", "privileged")]
    plain = records({"name": "x", "namespace": "x", "manifests": [{}]})[0]
    assert "pod-security.kubernetes.io/enforce" not in comp.namespace_document(plain)["metadata"]["labels"]


def test_plan_entry_points_at_every_rendered_file():
    rec = records(dict(METALLB, depends_on=["cilium"], plan={"notes": "L2 only"}))[0]
    entry = comp.plan_entry(rec, GITOPS)
    assert entry == {
        "name": "metallb", "layer": "l1", "namespace": "metallb-system",
        "manifests": ["l1/metallb/namespace.yaml", "l1/metallb/manifests.yaml"],
        "application": "apps/metallb.yaml", "sync_wave": -6, "privileged": True,
        "chart": "metallb", "repo": "https://metallb.github.io/metallb", "version": "0.16.1", "release": "metallb",
        "values_file": "l1/metallb/values.yaml", "depends_on": ["cilium"], "notes": "L2 only"}


def test_application_follows_the_component():
    app = comp.application(records(METALLB)[0], GITOPS)
    chart, values, namespace, manifests = app["spec"]["sources"]
    assert chart == {"repoURL": "https://metallb.github.io/metallb", "chart": "metallb", "targetRevision": "0.16.1",
                     "helm": {"releaseName": "metallb", "valueFiles": ["$values/l1/metallb/values.yaml"]}}
    assert values == {"repoURL": GITOPS["repo_url"], "targetRevision": "main", "ref": "values"}
    assert namespace["directory"] == {"include": "namespace.yaml"}
    assert manifests["path"] == "l1/metallb" and manifests["directory"] == {"include": "manifests.yaml"}
    assert app["metadata"]["namespace"] == "argocd" and app["spec"]["project"] == "platform"
    assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-6"
    assert app["spec"]["destination"]["namespace"] == "metallb-system"
    labels = app["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert "SkipDryRunOnMissingResource=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert "finalizers" not in app["metadata"]


def test_application_of_an_oci_chart_and_the_cells_project():
    karp = {"name": "karpenter", "namespace": "kube-system", "values": {},
            "chart": {"repo": "oci://ghcr.io/sergelogvinov/charts", "name": "karpenter-provider-proxmox",
                      "version": "0.4.9", "release": "karpenter-provider-proxmox"},
            "argocd": {"sync_options": ["ServerSideApply=true", "PruneLast=true"],
                       "ignore_differences": [{"kind": "Secret", "jsonPointers": ["/data"]}]}}
    app = comp.application(records(karp)[0], dict(GITOPS, project="cells", namespace="gitops"))
    assert app["spec"]["sources"][0]["repoURL"] == "ghcr.io/sergelogvinov/charts"
    assert app["spec"]["sources"][0]["helm"]["releaseName"] == "karpenter-provider-proxmox"
    assert len(app["spec"]["sources"]) == 2                 # chart + $values; no namespace file for kube-system
    assert "managedNamespaceMetadata" not in app["spec"]["syncPolicy"]
    assert app["spec"]["syncPolicy"]["syncOptions"] == ["CreateNamespace=true", "ServerSideApply=true", "PruneLast=true"]
    assert app["spec"]["ignoreDifferences"] == [{"kind": "Secret", "jsonPointers": ["/data"]}]
    assert app["spec"]["project"] == "cells" and app["metadata"]["namespace"] == "gitops"


def test_application_validates_against_the_crd_schema(schema_root):
    index = json.loads((schema_root / "INDEX.json").read_text())
    schema = json.loads((schema_root / index["kubernetes_crds"]["argoproj.io/v1alpha1"]["Application"]).read_text())
    for rec in records(METALLB, {"name": "pool", "namespace": "metallb-system", "manifests": [{}],
                                 "argocd": {"ignore_differences": [{"kind": "Secret", "jsonPointers": ["/data"]}]}}):
        jsonschema.Draft7Validator(schema).validate(comp.application(rec, GITOPS))


def test_application_needs_the_gitops_repository():
    with pytest.raises(comp.ComponentError, match="cellplatform_gitops.repo_url"):
        comp.application(records(METALLB)[0], {"revision": "main"})


def test_render_files_for_writes_each_file_once():
    files = comp.render_files_for(records(METALLB), GITOPS)
    assert [f["path"] for f in files] == [
        "l1/metallb/namespace.yaml", "l1/metallb/values.yaml", "l1/metallb/manifests.yaml", "apps/metallb.yaml"]
    assert files[1]["data"] == {"frrk8s": {"enabled": False}}
    assert files[2]["documents"][0]["kind"] == "IPAddressPool"


@pytest.mark.parametrize("run,skip,selected", [
    (["all"], [], ["metallb", "proxmox-ccm", "karpenter"]),
    (["l1"], [], ["metallb", "proxmox-ccm", "karpenter"]),
    (["karpenter"], [], ["proxmox-ccm", "karpenter"]),
    (["proxmox_ccm"], [], ["proxmox-ccm"]),
    (["l2"], [], []),
    (["all"], ["karpenter"], ["metallb"]),
    (["l1"], ["l1"], []),
    (["all"], ["all"], []),
])
def test_tags_select_components(run, skip, selected):
    recs = records(METALLB,
                   {"name": "proxmox-ccm", "namespace": "kube-system", "manifests": [{}], "tags": ["karpenter", "proxmox_ccm"]},
                   {"name": "karpenter", "namespace": "kube-system", "manifests": [{}]})
    assert [r["name"] for r in comp.select_for_run(recs, run, skip)] == selected


# --- Secrets -------------------------------------------------------------------------------------
PLATFORM = {"external_dns_tsig_secret": "TSIG-VALUE-1", "port": 5353, "flag": True,
            "git": {"password": "GIT-PASSWORD-2"}}
SOURCE = "/srv/inv/secrets/platform.sops.yaml"


def test_secret_documents_build_the_objects_apply_creates_and_render_encrypts():
    rec = comp.normalise(dict(METALLB, secrets=[
        {"name": "tsig", "keys": {"tsig-secret": "external_dns_tsig_secret", "port": "port", "on": "flag"}},
        {"name": "repo", "namespace": "argocd", "type": "Opaque", "labels": {"argocd.argoproj.io/secret-type": "repository"},
         "string_data": {"url": "https://git.example.org/c.git"}, "keys": {"password": "git.password"}}]), "l1")
    docs = comp.secret_documents(rec, PLATFORM, SOURCE)
    assert docs[0] == {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {"name": "tsig", "namespace": "metallb-system",
                                    "labels": {"app.kubernetes.io/part-of": "cellplatform",
                                               "app.kubernetes.io/managed-by": "cellplatform"}},
                       "stringData": {"tsig-secret": "TSIG-VALUE-1", "port": "5353", "on": "true"}}
    assert docs[1]["metadata"]["namespace"] == "argocd"
    assert docs[1]["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    assert docs[1]["stringData"] == {"url": "https://git.example.org/c.git", "password": "GIT-PASSWORD-2"}
    assert comp.paths(rec)["secrets"] == "l1/metallb/secrets"
    assert comp.secret_file(rec, "tsig") == "l1/metallb/secrets/tsig.sops.yaml"
    files = dict((f["path"], f["data"]) for f in comp.secrets_files(rec, docs))
    assert files["l1/metallb/secrets/ksops.yaml"]["files"] == ["./tsig.sops.yaml", "./repo.sops.yaml"]
    app = comp.application(rec, GITOPS, with_secrets=True)
    assert app["spec"]["sources"][-1] == {"repoURL": GITOPS["repo_url"], "targetRevision": "main",
                                          "path": "l1/metallb/secrets", "kustomize": {}}
    assert not any(s.get("path") == "l1/metallb/secrets" for s in comp.application(rec, GITOPS)["spec"]["sources"])


def test_optional_secrets_drop_missing_keys_and_empty_secrets():
    rec = comp.normalise(dict(METALLB, secrets=[
        {"name": "repo", "keys": {"password": "gitops_repo_password", "tsig": "external_dns_tsig_secret"},
         "optional": True},
        {"name": "ssh", "keys": {"sshPrivateKey": "gitops_repo_ssh_key"}, "optional": "true"}]), "l1")
    docs = comp.secret_documents(rec, PLATFORM, SOURCE)
    assert [d["metadata"]["name"] for d in docs] == ["repo"] and docs[0]["stringData"] == {"tsig": "TSIG-VALUE-1"}


def test_missing_keys_and_bad_values_name_key_file_and_fix_never_a_value():
    rec = comp.normalise(dict(METALLB, secrets=[{"name": "s", "keys": {"a": "nope", "b": "also_nope"}}]), "l1")
    with pytest.raises(comp.ComponentError) as err:
        comp.secret_documents(rec, PLATFORM, SOURCE)
    text = str(err.value)
    assert "component metallb, Secret s: nope, also_nope are not in %s" % SOURCE in text
    assert "external_dns_tsig_secret" in text and "sops edit" in text and "TSIG-VALUE-1" not in text
    rec = comp.normalise(dict(METALLB, secrets=[{"name": "s", "keys": {"a": "git"}}]), "l1")
    with pytest.raises(comp.ComponentError) as err:
        comp.secret_documents(rec, PLATFORM, SOURCE)
    assert "git in %s is a dict" % SOURCE in str(err.value) and "GIT-PASSWORD" not in str(err.value)


def test_secrets_from_a_generated_sops_file_read_that_file_only():
    rec = comp.normalise(dict(METALLB, secrets=[
        {"name": "tsig", "keys": {"tsig-secret": "external_dns_tsig_secret"}},
        {"name": "oauth", "file": "backstage-gitea.sops.yaml", "keys": {"ID": "oauth_client_id"}}]), "l1")
    assert comp.secret_files(rec) == ["backstage-gitea.sops.yaml"]
    generated = {"backstage-gitea.sops.yaml": ({"oauth_client_id": "CLIENT-3"}, "/srv/inv/secrets/backstage-gitea.sops.yaml")}
    docs = comp.secret_documents(rec, PLATFORM, SOURCE, generated)
    assert [d["stringData"] for d in docs] == [{"tsig-secret": "TSIG-VALUE-1"}, {"ID": "CLIENT-3"}]
    # a key that only the platform secrets have is not found in the generated file, and the error names that file
    rec = comp.normalise(dict(METALLB, secrets=[
        {"name": "oauth", "file": "backstage-gitea.sops.yaml", "keys": {"T": "external_dns_tsig_secret"}}]), "l1")
    with pytest.raises(comp.ComponentError) as err:
        comp.secret_documents(rec, PLATFORM, SOURCE, generated)
    assert "backstage-gitea.sops.yaml" in str(err.value) and "TSIG-VALUE-1" not in str(err.value)
    with pytest.raises(comp.ComponentError, match="was not read"):
        comp.secret_documents(rec, PLATFORM, SOURCE)


@pytest.mark.parametrize("secrets, message", [
    ([{"name": "s", "keys": {"a": "b"}, "file": "../x.sops.yaml"}], "must be the name of a SOPS YAML file"),
    ([{"name": "s", "keys": {"a": "b"}, "file": "plain.yaml"}], "must be the name of a SOPS YAML file"),
    ([{"name": "s", "keys": {"a": "b"}, "data": {}}], "secrets[0] has unknown key(s) data"),
    ([{"name": "S_1", "keys": {"a": "b"}}], "secrets[0]: name 'S_1' must be a DNS label"),
    ([{"name": "s", "keys": {"a": "b"}}, {"name": "s", "keys": {"c": "d"}}], "lists a Secret name twice"),
    ([{"name": "s", "keys": {"a": "b"}, "labels": {"x": 1}}], "labels must map names to strings"),
])
def test_bad_secret_entries_are_refused(secrets, message):
    with pytest.raises(comp.ComponentError) as err:
        comp.normalise(dict(METALLB, secrets=secrets), "l1")
    assert message in str(err.value)


# --- UI routes through the shared Gateway, upstream manifests -------------------------------------

CELL = {"dns_domain": "cell.lan", "gateway": {"name": "platform", "namespace": "gateway", "https_listener": "https",
                                              "address": "192.168.100.200"}}
ARGOCD = {"name": "argocd", "namespace": "argocd",
          "chart": {"repo": "https://argoproj.github.io/argo-helm", "name": "argo-cd", "version": "10.1.1"},
          "ui": [{"service": "argocd-server", "port": 80, "title": "Argo CD"}]}


def test_ui_becomes_an_httproute_on_the_shared_gateways_https_listener():
    rec = records(ARGOCD, layer="l2")[0]
    (route,) = comp.route_documents(rec, CELL)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "argocd-ui" and route["metadata"]["namespace"] == "argocd"
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "platform", "namespace": "gateway", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["argocd.cell.lan"]
    assert route["spec"]["rules"] == [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                       "backendRefs": [{"name": "argocd-server", "port": 80}]}]


def test_routes_are_rendered_planned_and_part_of_the_application():
    rec = records(ARGOCD, layer="l2")[0]
    files = comp.render_files_for([rec], GITOPS, CELL)
    assert [f["path"] for f in files] == ["l2/argocd/namespace.yaml", "l2/argocd/values.yaml",
                                          "l2/argocd/routes.yaml", "apps/argocd.yaml"]
    assert files[2]["documents"] == comp.route_documents(rec, CELL)
    entry = comp.plan_entry(rec, GITOPS, CELL)
    assert entry["manifests"] == ["l2/argocd/namespace.yaml", "l2/argocd/routes.yaml"]
    assert entry["ui"] == [{"url": "https://argocd.cell.lan", "title": "Argo CD", "service": "argocd-server",
                            "port": 80}]
    sources = comp.application(rec, GITOPS)["spec"]["sources"]
    assert {"repoURL": GITOPS["repo_url"], "targetRevision": "main", "path": "l2/argocd",
            "directory": {"include": "routes.yaml"}} in sources


def test_a_ui_path_shows_in_its_url_and_several_uis_get_one_route_each():
    rec = records(dict(ARGOCD, ui=[{"service": "a", "port": 80, "path": "/admin", "host": "admin"},
                                   {"service": "b", "port": 8080}]), layer="l2")[0]
    assert [u["url"] for u in comp.ui_urls(rec, CELL)] == ["https://admin.cell.lan/admin", "https://argocd.cell.lan"]
    assert [r["metadata"]["name"] for r in comp.route_documents(rec, CELL)] == ["admin-ui", "argocd-ui"]


def test_a_ui_without_the_shared_gateway_is_refused():
    rec = records(ARGOCD, layer="l2")[0]
    for cell in (None, {"dns_domain": "cell.lan"}, {"gateway": CELL["gateway"]}):
        with pytest.raises(comp.ComponentError, match="publishes a UI .* no shared Gateway or DNS domain"):
            comp.route_documents(rec, cell)
    assert comp.route_documents(records(METALLB)[0], None) == []


def test_two_components_of_a_layer_cannot_share_a_host():
    with pytest.raises(comp.ComponentError, match="components argocd and other both publish a UI as host argocd"):
        records(ARGOCD, {"name": "other", "namespace": "x", "manifests": [{}],
                         "ui": [{"service": "s", "port": 80, "host": "argocd"}]}, layer="l2")


CRDS = {"name": "gateway-api-crds", "namespace": "kube-system",
        "remote_manifests": [{"url": "https://raw.githubusercontent.com/o/r/v1/a.yaml", "checksum": "sha256:" + "0" * 64},
                             {"url": "https://raw.githubusercontent.com/o/r/v1/b.yaml", "checksum": "sha256:" + "1" * 64}],
        "argocd": {"sources": [{"repoURL": "https://github.com/o/r.git", "targetRevision": "v1", "path": "crds"}]}}


def test_remote_manifests_are_planned_and_argo_cd_reads_them_from_their_source():
    rec = records(CRDS, layer="l0")[0]
    assert comp.render_files_for([rec], GITOPS) == [{"path": "apps/gateway-api-crds.yaml",
                                                     "data": comp.application(rec, GITOPS)}]
    assert comp.application(rec, GITOPS)["spec"]["sources"] == CRDS["argocd"]["sources"]
    assert comp.plan_entry(rec, GITOPS)["remote_manifests"] == [m["url"] for m in CRDS["remote_manifests"]]
    bare = records(dict(CRDS, argocd={}), layer="l0")[0]
    with pytest.raises(comp.ComponentError, match="Application would have no source"):
        comp.application(bare, GITOPS)


def test_routes_validate_against_the_gateway_api_crd(schema_root):
    index = json.loads((schema_root / "INDEX.json").read_text())
    schema = json.loads((schema_root / index["kubernetes_crds"]["gateway.networking.k8s.io/v1"]["HTTPRoute"]).read_text())
    rec = records(dict(ARGOCD, ui=[{"service": "a", "port": 80, "path": "/x", "host": "x"}]), layer="l2")[0]
    for route in comp.route_documents(rec, CELL):
        jsonschema.Draft7Validator(schema).validate(route)
