"""The whole site rendered once: what holds across layers.

Every layer renders its own records, so a few promises can only be checked on the whole tree:

* every Argo CD Application's sources are allowed by the platform AppProject (L2 lists the chart
  repositories of every layer; a component whose repository is missing could never sync);
* every plan.json component has its Application, values file and manifests on disk, and its
  Application points at exactly those files;
* every namespace a component runs privileged is excluded from Kyverno's Pod Security policies
  and webhooks, or Kyverno would refuse the platform's own host-level agents;
* every component named in a depends_on exists in the plan;
* every UI of every layer has one name of its own under the cell's DNS domain, and its HTTPRoute
  hangs on the shared Gateway's HTTPS listener; the Gateway's address is the one MetalLB keeps
  for it; exactly one provider makes the default StorageClass;
* every StorageClass a rendered values file or manifest names is the cell's default one
  (plan.json cell.storage.class_name): every PVC of every chart lands on the cell's storage.
* every namespace a platform component runs in is in the daily Velero backup, except the ones
  that must not be (kube-system: the etcd snapshots; the storage and object store namespaces);
  and the control planes grant the Talos API exactly to the etcd snapshot component's namespace.

    scripts/netns-run .venv/bin/pytest -q tests/integration/test_site_render.py
"""

from __future__ import annotations

import ipaddress
import json

import pytest
import yaml

from apply_fixtures import REPO, run_playbook


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    rc, out = run_playbook("playbooks/site.yml", {}, {"cellplatform_mode": "render",
                                                     "cellplatform_build_root": str(tmp / "build")})
    assert rc == 0, out[-5000:]
    build = tmp / "build" / "cell"
    return {"build": build, "plan": json.loads((build / "plan.json").read_text())}


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _project(build):
    return next(d for d in _docs(build / "l2/argocd/manifests.yaml") if d["kind"] == "AppProject")


def test_every_application_source_is_allowed_by_the_project(site):
    build, plan = site["build"], site["plan"]
    allowed = set(_project(build)["spec"]["sourceRepos"])
    missing = {}
    for comp in plan["components"]:
        app = yaml.safe_load((build / comp["application"]).read_text())
        for source in app["spec"]["sources"]:
            if source["repoURL"] not in allowed:
                missing[comp["name"]] = source["repoURL"]
    assert not missing, ("the AppProject does not allow these Applications' sources (add the repository to "
                         "l2_core_platform_argocd_project_extra_source_repos): %s" % missing)


def test_every_component_has_its_files_and_its_application_points_at_them(site):
    build, plan = site["build"], site["plan"]
    assert {c["layer"] for c in plan["components"]} >= {"l0", "l1", "l2"}
    for comp in plan["components"]:
        app = yaml.safe_load((build / comp["application"]).read_text())
        assert app["metadata"]["name"] == comp["name"]
        assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == str(comp["sync_wave"])
        assert app["spec"]["destination"]["namespace"] == comp["namespace"]
        sources = app["spec"]["sources"]
        if comp.get("chart"):
            assert (build / comp["values_file"]).is_file(), comp["values_file"]
            assert sources[0]["chart"] == comp["chart"] and sources[0]["targetRevision"] == comp["version"]
            assert sources[0]["helm"]["valueFiles"] == ["$values/" + comp["values_file"]]
        for manifest in comp["manifests"]:
            assert (build / manifest).is_file(), manifest
            assert any(s.get("path") == manifest.rsplit("/", 1)[0]
                       and s.get("directory", {}).get("include") == manifest.rsplit("/", 1)[1] for s in sources), manifest


def test_privileged_namespaces_are_exempt_from_kyverno(site):
    build, plan = site["build"], site["plan"]
    privileged = {c["namespace"] for c in plan["components"] if c.get("privileged")}
    assert privileged, "no privileged component rendered: the check would be vacuous"
    kyverno = yaml.safe_load((build / "l2/kyverno/values.yaml").read_text())
    policies = yaml.safe_load((build / "l2/kyverno-policies/values.yaml").read_text())
    webhook_excluded = set(kyverno["config"]["resourceFiltersIncludeNamespaces"])
    policy_excluded = set(policies["vpolExclude"]["excludeNamespaces"])
    assert privileged <= policy_excluded, "not excluded from the Pod Security policies: %s" % (
        privileged - policy_excluded)
    assert privileged <= webhook_excluded, "not excluded from Kyverno's webhooks: %s" % (privileged - webhook_excluded)


def test_dependencies_exist(site):
    names = {c["name"] for c in site["plan"]["components"]}
    dangling = {c["name"]: d for c in site["plan"]["components"] for d in c.get("depends_on", []) if d not in names}
    assert not dangling, dangling


def test_the_collection_is_the_only_source_of_the_tree(site):
    """Nothing under build/ that no layer owns (an orphan would be synced by Argo CD forever)."""
    build, plan = site["build"], site["plan"]
    owned = {"plan.json", "PLAN.md"}
    for comp in plan["components"]:
        owned |= {comp["application"], *comp["manifests"]} | ({comp["values_file"]} if comp.get("values_file") else set())
    other = sorted(str(p.relative_to(build)) for p in build.rglob("*") if p.is_file()
                   and str(p.relative_to(build)) not in owned)
    # layer files that are not a component's: Talos patches and node documents, Terraform, Karpenter,
    # the network-policy matrix, the needs it was generated from and the later layers' Namespaces L6
    # creates first at apply time (never in an Application's source),
    # the Backstage catalog (read by Backstage from the GitOps repository, not by Argo CD)
    unexplained = [p for p in other if not p.startswith(("talos/", "terraform/", "l1/karpenter/",
                                                          "l7/backstage-catalog/"))
                   and p not in ("l6/network-policies/matrix.md", "l6/network-policies/needs.json",
                                 "l6/network-policies/later-namespaces.yaml")]
    assert not unexplained, unexplained


def _storage_classes(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("storageClass", "storageClassName") and isinstance(value, str):
                found.append(value)
            else:
                _storage_classes(value, found)
    elif isinstance(node, list):
        for item in node:
            _storage_classes(item, found)
    return found


def test_every_pvc_is_on_the_cells_storage_class(site):
    build, plan = site["build"], site["plan"]
    wanted = plan["cell"]["storage"]["class_name"]
    found = {}
    for comp in plan["components"]:
        for rel in ([comp["values_file"]] if comp.get("values_file") else []) + comp["manifests"]:
            for doc in _docs(build / rel):
                classes = _storage_classes(doc, [])
                if classes:
                    found.setdefault(rel, set()).update(classes)
    assert found, "no StorageClass named anywhere: the check would be vacuous"
    wrong = {rel: classes for rel, classes in found.items() if classes != {wanted}}
    assert not wrong, "PVCs on another StorageClass than the cell's %s: %s" % (wanted, wrong)


# Components that run no pods of their own or serve no metrics, and why (docs/l4-observability.md).
UNMONITORED = {
    "gateway-api-crds": "CRDs only",
    "prometheus-operator-crds": "CRDs only",
    "gateway": "no pods: Cilium's Envoy serves it (cilium's ServiceMonitors)",
    "local-path-provisioner": "no metrics endpoint",
    "kyverno-policies": "policies only",
    "linkerd-crds": "CRDs only",
    "linkerd-cni": "no metrics endpoint",
    "image-verification": "a Kyverno policy only (Kyverno's ServiceMonitors)",
}


def test_every_platform_component_is_monitored(site):
    """Every component of L0-L4 that runs pods declares the prometheus-operator objects its chart
    or manifests create (record field monitors), so Prometheus scrapes it; L4 scrapes them all."""
    comps = [c for c in site["plan"]["components"] if c["layer"] in ("l0", "l1", "l2", "l3", "l4")]
    assert {c["layer"] for c in comps} == {"l0", "l1", "l2", "l3", "l4"}, "a layer was not rendered"
    missing = sorted(c["name"] for c in comps if not c.get("monitors") and c["name"] not in UNMONITORED)
    assert not missing, "components without monitors (and no reason in UNMONITORED): %s" % missing
    # (local-path-provisioner is not rendered with the reference cell's Longhorn)
    stale = sorted(c["name"] for c in comps if c.get("monitors") and c["name"] in UNMONITORED)
    assert not stale, "UNMONITORED lists components that are monitored now: %s" % stale
    # what a record's own manifests create is declared too (its CRDs gate the apply)
    undeclared = {}
    for comp in comps:
        kinds = {d["kind"] for rel in comp["manifests"] for d in _docs(site["build"] / rel)
                 if str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/")}
        if kinds - set(comp.get("monitors", [])):
            undeclared[comp["name"]] = sorted(kinds - set(comp.get("monitors", [])))
    assert not undeclared, "manifests create prometheus-operator objects their monitors do not list: %s" % undeclared
    # one owner of the prometheus-operator CRDs: L0, before anything that renders a monitor
    plan = {c["name"]: c for c in comps}
    crds = plan["prometheus-operator-crds"]
    assert crds["layer"] == "l0" and all(c["sync_wave"] >= crds["sync_wave"] for c in comps if c.get("monitors"))
    kps = yaml.safe_load((site["build"] / plan["kube-prometheus-stack"]["values_file"]).read_text())
    assert kps["crds"]["enabled"] is False


# L3's charts ship no rules: L4's platform rules and dashboard cover them, by their metrics' prefixes.
L3_METRICS = {"cloudnative-pg": "cnpg_", "harbor": "harbor_", "tekton": "tekton_"}


def test_l4_platform_rules_and_dashboard_cover_l3(site):
    build = site["build"]
    rule, dashboard = _docs(build / "l4/platform-monitoring/manifests.yaml")
    groups = {g["name"]: " ".join(r["expr"] for r in g["rules"]) for g in rule["spec"]["groups"]}
    uncovered = {group: prefix for group, prefix in L3_METRICS.items() if prefix not in groups.get(group, "")}
    assert not uncovered, "L3 components without platform rules on their metrics: %s" % uncovered
    exprs = " ".join(p["targets"][0]["expr"]
                     for p in json.loads(dashboard["data"]["cellplatform-components.json"])["panels"])
    missing = [prefix for prefix in list(L3_METRICS.values()) + ["gitea_"] if prefix not in exprs]
    assert not missing, "no panel of the platform dashboard shows the metrics %s" % missing


def test_talos_logs_go_to_the_reserved_receiver_address(site):
    """L0's per-node patches point machine.logging at the address L4's receiver Service asks MetalLB
    for, which L1 reserves (never auto-assigned) and the plan's network picture shows."""
    build, cell = site["build"], site["plan"]["cell"]
    receiver = cell["observability"]["log_receiver"]
    for node in cell["nodes"]:
        docs = _docs(build / ("talos/nodes/%s.yaml" % node["name"]))
        logging = next(d["machine"]["logging"] for d in docs if "logging" in d.get("machine", {}))
        assert logging["destinations"] == [{"endpoint": receiver["endpoint"], "format": "json_lines",
                                            "extraTags": {"node": node["name"], "cluster": cell["name"]}}]
    service = next(d for d in _docs(build / "l4/fluent-bit/manifests.yaml") if d["kind"] == "Service")
    assert service["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == receiver["address"]
    assert service["spec"]["ports"][0]["port"] == receiver["port"]
    pools = {d["metadata"]["name"]: d for d in _docs(build / "l1/metallb/manifests.yaml") if d["kind"] == "IPAddressPool"}
    reserved = [p for p in pools.values() if receiver["address"] + "/32" in p["spec"]["addresses"]]
    assert len(reserved) == 1 and reserved[0]["spec"]["autoAssign"] is False
    address = ipaddress.ip_address(receiver["address"])
    auto = [r.split("-") for p in pools.values() if p["spec"]["autoAssign"] for r in p["spec"]["addresses"]]
    assert auto and all(not ipaddress.ip_address(low) <= address <= ipaddress.ip_address(high) for low, high in auto), \
        "the receiver's address is handed out automatically"
    assert receiver["address"] in (build / "PLAN.md").read_text()


def test_linkerd_sends_spans_to_the_l4_collector(site):
    build, cell = site["build"], site["plan"]["cell"]
    linkerd = yaml.safe_load((build / "l2/linkerd-control-plane/values.yaml").read_text())
    assert linkerd["proxy"]["tracing"]["collector"]["endpoint"] == cell["observability"]["otlp"]["grpc"]
    otel = next(c for c in site["plan"]["components"] if c["name"] == "opentelemetry-collector")
    assert otel["release"] == cell["observability"]["otlp"]["service"]
    assert otel["namespace"] == cell["observability"]["namespace"]


def test_prometheus_operator_crds_are_pinned_to_the_upstream_files(schema_root):
    """The sha256 L0 pins for each CRD file is the upstream file's (the store holds the same files,
    verbatim, from prometheus-community/helm-charts at the tag), and the ten files are all of them."""
    import hashlib
    defaults = yaml.safe_load((REPO / "ansible_collections/cellplatform/platform/roles/l0_infrastructure/defaults/main.yml")
                              .read_text())["l0_infrastructure_prometheus_operator_crds"]
    stored = schema_root / "prometheus-operator" / "v0.93.1" / "crds"
    assert sorted(m["file"] for m in defaults["manifests"]) == sorted(p.name for p in stored.iterdir())
    for item in defaults["manifests"]:
        digest = hashlib.sha256((stored / item["file"]).read_bytes()).hexdigest()
        assert item["checksum"] == "sha256:" + digest, item["file"]
    assert defaults["url"].endswith("/%s/%s" % (defaults["version"], defaults["path"]))
def _routes(build, comp):
    return [d for m in comp["manifests"] if m.endswith("/routes.yaml") for d in _docs(build / m)]


def test_every_ui_has_its_own_name_and_a_route_on_the_shared_gateway(site):
    build, plan = site["build"], site["plan"]
    gateway, domain = plan["cell"]["gateway"], plan["cell"]["dns_domain"]
    urls = [ui["url"] for comp in plan["components"] for ui in comp.get("ui", [])]
    hosts = ("argocd", "backstage", "chaos", "gitea", "grafana", "harbor", "hubble", "tekton")
    assert sorted(urls) == ["https://%s.%s" % (host, domain) for host in hosts]
    assert len(set(urls)) == len(urls)
    for comp in plan["components"]:
        routes = _routes(build, comp)
        assert len(routes) == len(comp.get("ui", [])), comp["name"]
        for route, ui in zip(routes, comp.get("ui", [])):
            assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                    "name": gateway["name"], "namespace": gateway["namespace"],
                                                    "sectionName": gateway["https_listener"]}]
            (hostname,) = route["spec"]["hostnames"]
            # one label under the domain: covered by the Gateway's wildcard certificate
            assert ui["url"] == "https://" + hostname and hostname.split(".", 1)[1] == domain
            assert route["metadata"]["namespace"] == comp["namespace"]


def test_the_gateway_address_is_kept_for_the_gateway(site):
    build, plan = site["build"], site["plan"]
    address = plan["cell"]["gateway"]["address"]
    pools = {d["metadata"]["name"]: d["spec"] for d in _docs(build / "l1/metallb/manifests.yaml")
             if d["kind"] == "IPAddressPool"}
    reserved = [spec for spec in pools.values() if spec["addresses"] == ["%s/32" % address]]
    assert len(reserved) == 1 and reserved[0]["autoAssign"] is False
    auto = [spec for spec in pools.values() if spec["autoAssign"]]
    assert auto and all(address not in rng.split("-") for spec in auto for rng in spec["addresses"])
    gateway = next(d for d in _docs(build / "l1/gateway/manifests.yaml") if d["kind"] == "Gateway")
    assert gateway["spec"]["addresses"] == [{"type": "IPAddress", "value": address}]
    assert gateway["spec"]["infrastructure"]["annotations"]["metallb.io/loadBalancerIPs"] == address


def test_one_default_storage_class_and_the_gateway_api_crds_before_cilium(site):
    plan = site["plan"]
    providers = [c for c in plan["components"] if c["name"] in ("longhorn", "local-path-provisioner")]
    assert [c["name"] for c in providers] == [plan["cell"]["storage"]["provider"].replace("local-path", "local-path-provisioner")]
    waves = {c["name"]: c["sync_wave"] for c in plan["components"]}
    assert waves["gateway-api-crds"] < waves["cilium"] < waves[providers[0]["name"]]
    assert waves["cert-manager"] < waves["gateway"]


# Namespaces the daily Velero backup leaves out on purpose (docs/l5-resilience.md): the cluster's
# own (the etcd snapshots hold its state), the storage providers' (their volumes are backed up
# through the pods that mount them) and the object store the backups are written to.
NOT_BACKED_UP = {"kube-system", "longhorn-system", "local-path-storage", "object-store"}


def test_every_platform_namespace_is_backed_up(site):
    build, plan = site["build"], site["plan"]
    schedule = next(d for d in _docs(build / "l5/velero/manifests.yaml") if d["kind"] == "Schedule")
    included = set(schedule["spec"]["template"]["includedNamespaces"])
    namespaces = {c["namespace"] for c in plan["components"]}
    assert namespaces - NOT_BACKED_UP - included == set(), "add these to l5_resilience_backup_namespaces"
    assert not included & NOT_BACKED_UP


def test_the_talos_api_is_granted_to_the_etcd_snapshot_namespace_only(site):
    build, plan = site["build"], site["plan"]
    (etcd,) = [c for c in plan["components"] if c["name"] == "etcd-backup"]
    patch = _docs(build / "talos/patches/controlplane.yaml")[0]
    assert patch["machine"]["features"]["kubernetesTalosAPIAccess"] == {
        "enabled": True, "allowedRoles": ["os:etcd:backup"], "allowedKubernetesNamespaces": [etcd["namespace"]]}
    sa = next(d for d in _docs(build / "l5/etcd-backup/manifests.yaml") if d["kind"] == "ServiceAccount")
    assert sa["metadata"]["namespace"] == etcd["namespace"] and sa["spec"]["roles"] == ["os:etcd:backup"]
    assert "features" not in _docs(build / "talos/patches/worker.yaml")[0].get("machine", {})


def test_l6_creates_later_layers_namespaces_exactly_as_they_render_them(site):
    """The Namespaces L6 applies before its policies (a later layer's namespace does not exist yet on a
    new cell) are the very documents their own layers render, so neither layer changes the other's;
    no Application carries them (one owner per Namespace in Argo CD: the later layer's)."""
    build = site["build"]
    later = _docs(build / "l6/network-policies/later-namespaces.yaml")
    assert [d["metadata"]["name"] for d in later] == ["backstage"]
    own = {}
    for path in sorted(build.glob("l[7-9]/*/namespace.yaml")):
        for doc in _docs(path):
            own.setdefault(doc["metadata"]["name"], doc)
    assert later == [own[d["metadata"]["name"]] for d in later]
    sources = [src for path in build.rglob("*.yaml") for doc in _docs(path)
               if doc.get("kind") == "Application" for src in doc["spec"].get("sources", [])]
    assert sources and not [src for src in sources if "later-namespaces" in json.dumps(src)]


def test_the_policies_sync_after_every_namespace_exists(site):
    """Argo CD: the network-policies Application is the last sync wave, so every namespace it polices
    was created by its own layer's Application first (the app-of-apps waits per wave: L2's health check)."""
    apps = {}
    for path in site["build"].glob("apps/*.yaml"):
        for doc in _docs(path):
            if doc.get("kind") == "Application":
                apps[doc["metadata"]["name"]] = int(doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    policies = apps.pop("network-policies")
    assert apps and policies > max(apps.values()), (policies, max(apps.items(), key=lambda kv: kv[1]))
    argocd_values = yaml.safe_load((site["build"] / "l2/argocd/values.yaml").read_text())
    assert "resource.customizations.health.argoproj.io_Application" in argocd_values["configs"]["cm"]


def test_plan_says_the_node_firewall_is_off(site):
    plan = (site["build"] / "PLAN.md").read_text()
    assert "### Node firewall\n\nOff: every node port answers every source" in plan
    assert site["plan"]["cell"]["node_firewall"] is None
