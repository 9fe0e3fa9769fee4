"""L6 apply path end to end: ``playbooks/site.yml -t l6`` against the test doubles (helm double +
in-process fake Kubernetes API), twice.

The cluster holds what L0-L2 left (the platform namespaces, the CiliumNetworkPolicy CRD of
Cilium's chart). Checks what a real cluster would have been asked to do:

* Falco's pinned release (modern eBPF driver) into its privileged namespace, created first, with
  exactly the rendered values, sending its events to Falcosidekick, whose release posts them to
  L4's Alertmanager and Loki (the reference cell has L4);
* the RBAC baseline: ClusterRoles platform-admin / platform-operator / platform-team, their bindings
  to the inventory's groups, the team namespace (restricted) with its RoleBinding;
* every rendered NetworkPolicy and CiliumNetworkPolicy in the API, after the CRD is Established
  and after the team namespace exists; default-deny in every platform namespace;
* L7's namespace, which does not exist yet on a new cell, created before its policies as exactly
  the Namespace L7 renders (l6/network-policies/later-namespaces.yaml; test_site_render.py checks
  that file against L7's own namespace.yaml);
* a second run that changes nothing (changed=0, no write, no Helm upgrade).

    scripts/netns-run .venv/bin/pytest -q tests/integration/test_l6_apply.py
"""

from __future__ import annotations

import re
import time

import pytest
import yaml

from apply_fixtures import (apply_run_setup, crd, daemonset, deployment, helm_calls, preinstall, recap, run_playbook,
                            SecretsDir, write_chart)
from fake_kube_api import FakeKubeAPI

# Namespaces the lower layers created for the reference cell (L0-L5). L7's `backstage` does not
# exist yet, as on a brand-new cell: L6 creates it (as L7 renders it) before its policies.
LOWER_NAMESPACES = ("longhorn-system", "metallb-system", "external-dns", "cert-manager", "gateway", "argocd",
                    "kyverno", "linkerd", "linkerd-cni", "cnpg-system", "gitea", "harbor", "tekton-operator",
                    "tekton-pipelines", "ci", "monitoring", "observability", "object-store", "velero",
                    "etcd-backup", "chaos-mesh")
LATER_NAMESPACES = ("backstage",)
CNP_CRD = crd("cilium.io", "CiliumNetworkPolicy", "ciliumnetworkpolicies", ("v2",))


@pytest.fixture(scope="module")
def l6_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l6apply")
    api = FakeKubeAPI(ready_delay=0.3, crd_delay=0.3).start()
    try:
        secrets = SecretsDir(tmp, api.kubeconfig())
        charts = tmp / "charts"
        write_chart(charts, "falco", "9.1.0", "0.44.1", [daemonset("falco")])
        write_chart(charts, "falcosidekick", "0.14.0", "2.32.0", [deployment("falcosidekick", 2)])
        env, extra, state, build_root = apply_run_setup(
            tmp, secrets, charts, component_wait_timeout=60, component_poll_interval=1)
        env["ANSIBLE_PIPELINING"] = "1"
        preinstall(api, [CNP_CRD] + [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                                     for ns in LOWER_NAMESPACES])
        # check mode on the cell first: succeeds, previews what it can, writes nothing anywhere
        writes_before, events_before = len(api.writes()), len(api.events)
        rc0, out0 = run_playbook("playbooks/site.yml", env, extra, ["-t", "l6", "--check", "--diff"])
        check = {"rc0": rc0, "out0": out0, "check_writes": api.writes()[writes_before:],
                 "check_dry_runs": [e for e in api.events[events_before:] if e["dry_run"] and (e["code"] or 0) < 400],
                 "check_calls": helm_calls(state),
                 "check_build": sorted(str(p) for p in build_root.rglob("*")) if build_root.exists() else []}
        writes0 = len(api.writes())
        start = time.monotonic()
        rc1, out1 = run_playbook("playbooks/site.yml", env, extra, ["-t", "l6"])
        took1 = time.monotonic() - start
        writes1 = len(api.writes())
        calls1 = helm_calls(state)
        start = time.monotonic()
        rc2, out2 = run_playbook("playbooks/site.yml", env, extra, ["-t", "l6"])
        took2 = time.monotonic() - start
        yield {"api": api, "build": build_root / "cell", "rc1": rc1, "out1": out1, "rc2": rc2, "out2": out2,
               "writes0": writes0, "writes1": writes1, "calls1": calls1, "calls2": helm_calls(state)[len(calls1):],
               "took": (took1, took2), **check}
    finally:
        api.stop()


def _seq(api, kind, name=None, namespace=None):
    return [e["seq"] for e in api.writes() if e["kind"] == kind and (name is None or e["name"] == name)
            and (namespace is None or e["namespace"] == namespace)]


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_check_mode_previews_what_exists_and_writes_nothing(l6_run):
    assert l6_run["rc0"] == 0, l6_run["out0"][-8000:]
    assert l6_run["check_writes"] == []
    assert [c for c in l6_run["check_calls"] if c["command"] in ("upgrade", "install", "uninstall")] == []
    assert l6_run["check_build"] == []
    # the policies of the namespaces that exist were dry-run; those of namespaces a real run creates first
    # (falco, the team's shop, L7's backstage) are named as not previewed
    dry = {(e["kind"], e["namespace"]) for e in l6_run["check_dry_runs"]}
    assert ("NetworkPolicy", "argocd") in dry and ("CiliumNetworkPolicy", "argocd") in dry
    assert not {ns for _kind, ns in dry} & {"falco", "shop", "backstage"}
    said = re.findall(r"Check mode: the objects in ([^;]+?) are not previewed", l6_run["out0"].replace("\n", " "))
    assert [sorted(s.replace(",", " ").split()) for s in said] == [["shop"], ["backstage", "falco", "shop"]], said
    assert ("Namespace", "") in {(e["kind"], e["namespace"] or "") for e in l6_run["check_dry_runs"]}


def test_first_run_succeeds_quickly(l6_run):
    assert l6_run["rc1"] == 0, l6_run["out1"][-8000:]
    assert recap(l6_run["out1"])["failed"] == 0
    # A bound against hangs, not a benchmark: the wall time grows with the machine's load (every
    # module call is a process; about 75 s per run with a load average of 12 on 2 CPUs).
    assert l6_run["took"][0] < 240 and l6_run["took"][1] < 240, l6_run["took"]


def test_falco_release_with_the_rendered_values_in_its_privileged_namespace(l6_run):
    api = l6_run["api"]
    upgrades = [c for c in l6_run["calls1"] if c["command"] == "upgrade"]
    assert [(c["argv"][-2], c["namespace"]) for c in upgrades] == [("falco", "falco"), ("falcosidekick", "falco")]
    argv = upgrades[0]["argv"]
    assert argv[-1] == "falco" and "--version=9.1.0" in argv and "--repo=https://falcosecurity.github.io/charts" in argv
    given = yaml.safe_load(list(upgrades[0]["values_files"].values())[0])
    assert given == yaml.safe_load((l6_run["build"] / "l6/falco/values.yaml").read_text())
    assert given["driver"]["kind"] == "modern_ebpf" and given["falcosidekick"]["enabled"] is False
    # L4 is in the reference cell: events go to Falcosidekick, which posts to Alertmanager and Loki
    assert given["falco"]["http_output"] == {"enabled": True,
                                             "url": "http://falcosidekick.falco.svc.cluster.local:2801/"}
    sidekick = yaml.safe_load(list(upgrades[1]["values_files"].values())[0])
    assert sidekick == yaml.safe_load((l6_run["build"] / "l6/falcosidekick/values.yaml").read_text())
    assert sidekick["config"]["alertmanager"]["hostport"] == \
        "http://kube-prometheus-stack-alertmanager.monitoring.svc.cluster.local:9093"
    assert sidekick["config"]["loki"]["hostport"] == "http://loki.observability.svc.cluster.local:3100"
    ns = api.get("v1", "Namespace", "falco")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    helm_first = min(e["seq"] for e in api.writes() if e["field_manager"] == "helm")
    assert min(_seq(api, "Namespace", "falco")) < helm_first


def test_rbac_baseline_binds_the_inventory_groups(l6_run):
    api = l6_run["api"]
    rbac = "rbac.authorization.k8s.io/v1"
    admin = api.get(rbac, "ClusterRole", "platform-admin")
    assert admin["rules"][0] == {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    operator = api.get(rbac, "ClusterRole", "platform-operator")
    assert {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}} in \
        operator["aggregationRule"]["clusterRoleSelectors"]
    extra = api.get(rbac, "ClusterRole", "platform-operator-extra")
    assert {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["patch"]} in extra["rules"]
    assert not any("secrets" in r.get("resources", []) for r in extra["rules"])
    for name, group in (("platform-admin", "platform-admins"), ("platform-operator", "platform-operators")):
        binding = api.get(rbac, "ClusterRoleBinding", name)
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]
    shop = api.get("v1", "Namespace", "shop")
    assert shop["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    team = api.get(rbac, "RoleBinding", "team-shop", "shop")
    assert team["roleRef"]["name"] == "platform-team"
    assert team["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "shop-developers"}]


def test_every_rendered_policy_is_applied_after_its_namespace_and_crd(l6_run):
    api = l6_run["api"]
    rendered = _docs(l6_run["build"] / "l6/network-policies/manifests.yaml")
    namespaces = {d["metadata"]["namespace"] for d in rendered}
    assert set(LOWER_NAMESPACES) | set(LATER_NAMESPACES) | {"falco", "shop"} == namespaces
    shop_created = min(_seq(api, "Namespace", "shop"))
    for doc in rendered:
        meta = doc["metadata"]
        live = api.get(doc["apiVersion"], doc["kind"], meta["name"], meta["namespace"])
        assert live is not None and live["spec"] == doc["spec"], (doc["kind"], meta)
        assert min(_seq(api, doc["kind"], meta["name"], meta["namespace"])) > shop_created
    for ns in namespaces:
        deny = api.get("networking.k8s.io/v1", "NetworkPolicy", "default-deny", ns)
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, ns
    cnp = api.get("cilium.io/v2", "CiliumNetworkPolicy", "argocd", "argocd")
    assert {"fromEntities": ["ingress"], "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]} in \
        cnp["spec"]["ingress"]


def test_later_layers_namespaces_are_created_first_as_those_layers_render_them(l6_run):
    api = l6_run["api"]
    later = _docs(l6_run["build"] / "l6/network-policies/later-namespaces.yaml")
    assert [d["metadata"]["name"] for d in later] == list(LATER_NAMESPACES)
    for doc in later:
        name = doc["metadata"]["name"]
        live = api.get("v1", "Namespace", name)
        assert live is not None, name
        assert live["metadata"]["labels"] == doc["metadata"]["labels"], name
        writes = [e for e in api.writes() if e["kind"] == "Namespace" and e["name"] == name]
        assert {e["field_manager"] for e in writes} == {"cellplatform"}
        policies = [e["seq"] for e in api.writes() if e["namespace"] == name]
        assert policies and min(policies) > min(e["seq"] for e in writes)


def test_second_run_changes_nothing(l6_run):
    assert l6_run["rc2"] == 0, l6_run["out2"][-8000:]
    assert recap(l6_run["out2"])["changed"] == 0, l6_run["out2"][-8000:]
    assert [c for c in l6_run["calls2"] if c["command"] in ("upgrade", "install")] == []
    assert len(l6_run["api"].writes()) == l6_run["writes1"] > l6_run["writes0"]
