"""L4 apply path end to end against the test doubles (helm double + in-process fake Kubernetes API).

Runs playbooks/l4.yml in apply mode (--check on the fresh cluster, then twice at -vvv) and checks
what a real cluster would have been asked to do: the namespaces (monitoring privileged for
node-exporter and Fluent Bit's hostPath, observability baseline) before the releases; the releases
in order with the pinned charts (grafana-community for Loki, Tempo and Grafana) and the rendered
values files; kube-prometheus-stack installed only once the prometheus-operator CRDs L0 applies are
Established (the records' ``monitors`` put them in front of every chart that renders a
ServiceMonitor); the platform PrometheusRule only once the operator's webhook answers; the Talos
log receiver Service at its reserved LoadBalancer address; Grafana's admin Secret built from the
SOPS-encrypted platform secrets (created before the release, rendered only encrypted for
KSOPS) and its UI routed through the shared Gateway; check mode without any
write; a second run that changes nothing; no secret value in build/ or any output.

The cluster starts with what L0-L2 leave (Gateway API CRDs, Cilium's GatewayClass, cert-manager's
CRDs); the prometheus-operator CRDs arrive during the first run, not yet Established, right before
kube-prometheus-stack needs them.

Run inside scripts/netns-run (loopback only):
    scripts/netns-run python -m pytest tests/integration/test_l4_apply.py -q
"""

from __future__ import annotations

import base64
import json
import re
import secrets as pysecrets
import threading
import urllib.request

import pytest
import yaml

from apply_fixtures import (apply_run_setup, Conditions, crd, daemonset, deployment, gateway_api_crds, gateway_class,
                            helm_calls, preinstall, prometheus_operator_crds, recap, REPO, run_playbook, SecretsDir,
                            statefulset, webhook, write_chart)
from fake_kube_api import FakeKubeAPI
from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils

# The extended suite (`make test-extended`, docs/proven.md): three playbook runs of L4 against the doubles: minutes of CPU.
pytestmark = pytest.mark.extended

KPS = "kube-prometheus-stack"
# (release, namespace, chart, version, repo, values file)
RELEASES = [
    (KPS, "monitoring", KPS, "88.5.3", "https://prometheus-community.github.io/helm-charts",
     "l4/kube-prometheus-stack/values.yaml"),
    ("loki", "observability", "loki", "18.11.0", "https://grafana-community.github.io/helm-charts",
     "l4/loki/values.yaml"),
    ("tempo", "observability", "tempo", "2.2.4", "https://grafana-community.github.io/helm-charts",
     "l4/tempo/values.yaml"),
    ("opentelemetry-collector", "observability", "opentelemetry-collector", "0.170.0",
     "https://open-telemetry.github.io/opentelemetry-helm-charts", "l4/opentelemetry-collector/values.yaml"),
    ("fluent-bit", "monitoring", "fluent-bit", "0.58.1", "https://fluent.github.io/helm-charts",
     "l4/fluent-bit/values.yaml"),
    ("grafana", "observability", "grafana", "12.11.1", "https://grafana-community.github.io/helm-charts",
     "l4/grafana/values.yaml"),
]
# Conditions the prometheus-operator reports on what the chart creates: played by Conditions.
CONDITIONS = [("monitoring.coreos.com/v1", "Prometheus", KPS + "-prometheus", "monitoring", "Available"),
              ("monitoring.coreos.com/v1", "Alertmanager", KPS + "-alertmanager", "monitoring", "Available")]
PROMETHEUS_OPERATOR_CRD_DELAY = 4


def l4_charts(charts_dir):
    """Chart fixtures for the L4 charts at the versions the role pins: what each install leaves."""
    write_chart(charts_dir, KPS, "88.5.3", "v0.93.1", [
        deployment(KPS + "-operator"), deployment(KPS + "-kube-state-metrics"),
        daemonset(KPS + "-prometheus-node-exporter"),
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
         "metadata": {"name": KPS + "-prometheus", "namespace": "{{NAMESPACE}}"}, "spec": {"replicas": 1}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Alertmanager",
         "metadata": {"name": KPS + "-alertmanager", "namespace": "{{NAMESPACE}}"}, "spec": {"replicas": 1}},
    ] + webhook(KPS + "-admission", KPS + "-operator", "monitoring.coreos.com", "v1", ["prometheusrules"]))
    write_chart(charts_dir, "loki", "18.11.0", "3.7.6", [statefulset("loki")])
    write_chart(charts_dir, "tempo", "2.2.4", "2.10.8", [statefulset("tempo")])
    write_chart(charts_dir, "opentelemetry-collector", "0.170.0", "0.158.0",
                [deployment("opentelemetry-collector", 2)])
    write_chart(charts_dir, "fluent-bit", "0.58.1", "5.1.1", [daemonset("fluent-bit")])
    write_chart(charts_dir, "grafana", "12.11.1", "13.2.0", [deployment("grafana")])


class CRDsArriveLate(object):
    """Plays L0 applying the prometheus-operator CRDs late: once the first L4 namespace exists (the
    step right before kube-prometheus-stack's CRD gate), create them through the API without
    establishing them; the fake API establishes them ``crd_delay`` seconds later, as a real API
    server does. So the gate must find them pending and wait."""

    def __init__(self, api, crds, trigger=("v1", "Namespace", "monitoring", None)):
        self.api, self.crds, self.trigger = api, crds, trigger
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.posted_at = None

    def _run(self):
        while not self.stop.is_set():
            if self.api.get(*self.trigger):
                self.posted_at = len(self.api.events)
                for obj in self.crds:
                    req = urllib.request.Request(
                        self.api.url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                        data=json.dumps(obj).encode(), method="POST", headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only (fake API on 127.0.0.1)
                        resp.read()
                return
            self.stop.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def l4_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l4apply")
    api = FakeKubeAPI(ready_delay=1, crd_delay=PROMETHEUS_OPERATOR_CRD_DELAY).start()
    try:
        secrets = SecretsDir(tmp, api.kubeconfig())
        admin_password = "GRAFANAPASSWORD-%s" % pysecrets.token_hex(12)
        secrets.platform.update({"grafana_admin_user": "platform-admin", "grafana_admin_password": admin_password})
        secrets.write("platform.sops.yaml", yaml.safe_dump(secrets.platform))
        charts = tmp / "charts"
        l4_charts(charts)
        env, extra, state, build_root = apply_run_setup(
            tmp, secrets, charts, component_poll_interval=1, component_wait_timeout=60)
        env["ANSIBLE_PIPELINING"] = "1"
        # what L0-L2 left, except the prometheus-operator CRDs (they arrive below)
        preinstall(api, gateway_api_crds() + [gateway_class()] + [
            crd("cert-manager.io", "Certificate", "certificates"), crd("cert-manager.io", "Issuer", "issuers")])
        writes_before = len(api.writes())
        rc0, out0 = run_playbook("playbooks/l4.yml", env, extra, ["--check", "--diff"])
        check_writes, check_calls = len(api.writes()) - writes_before, helm_calls(state)
        check_build = sorted(str(p) for p in build_root.rglob("*")) if build_root.exists() else []
        with CRDsArriveLate(api, prometheus_operator_crds()) as late, Conditions(api, CONDITIONS, delay=1) as controllers:
            rc1, out1 = run_playbook("playbooks/l4.yml", env, extra, ["-vvv"])
        assert late.posted_at, "the monitoring namespace was never created"
        writes1 = len(api.writes())
        calls1 = helm_calls(state)
        rc2, out2 = run_playbook("playbooks/l4.yml", env, extra, ["-vvv"])
        yield {"crds_posted_at": late.posted_at, "check_build": check_build, "rc0": rc0, "out0": out0,
               "check_writes": check_writes, "check_calls": check_calls, "conditions": controllers.set_at,
               "api": api, "secrets": secrets, "admin_password": admin_password, "state": state, "build": build_root / "cell", "tmp": tmp,
               "rc1": rc1, "out1": out1, "rc2": rc2, "out2": out2, "writes1": writes1, "calls1": calls1,
               "calls2": helm_calls(state)[len(calls1):]}
    finally:
        api.stop()


def check_check_mode_on_fresh_cluster_changes_nothing(run):
    assert run["rc0"] == 0, run["out0"][-6000:]
    assert recap(run["out0"])["changed"] > 0            # it reports what the apply would do
    assert run["check_writes"] == 0                     # ... without changing the cluster
    assert [c for c in run["check_calls"] if c["command"] in ("upgrade", "install", "uninstall")] == []
    assert run["check_build"] == []                      # render_files wrote nothing either


def check_first_run_succeeds(run):
    assert run["rc1"] == 0, run["out1"][-8000:]
    assert recap(run["out1"])["failed"] == 0


def check_releases_in_order_with_pinned_charts_and_rendered_values(run):
    upgrades = [c for c in run["calls1"] if c["command"] == "upgrade"]
    assert [(c["argv"][-2], c["namespace"]) for c in upgrades] == [(r[0], r[1]) for r in RELEASES]
    for call, (release, _ns, chart, version, repo, values_rel) in zip(upgrades, RELEASES):
        argv = call["argv"]
        assert argv[-1] == chart and "--version=%s" % version in argv and "--repo=%s" % repo in argv, argv
        assert "--wait" in argv and "-i" in argv
        # helm got exactly the values the render step wrote (the file the Argo CD Application uses)
        assert len(call["values_files"]) == 1, call
        given = yaml.safe_load(list(call["values_files"].values())[0])
        assert given == yaml.safe_load((run["build"] / values_rel).read_text()), release
        assert call["kubeconfig_server"] == run["api"].url
    # the Talos specifics reached kube-prometheus-stack: control-plane scrape addresses, no kube-proxy
    kps = yaml.safe_load((run["build"] / RELEASES[0][5]).read_text())
    control_planes = ["192.168.100.51", "192.168.100.52", "192.168.100.53"]
    assert kps["kubeEtcd"]["endpoints"] == kps["kubeScheduler"]["endpoints"] == control_planes
    assert kps["kubeControllerManager"]["endpoints"] == control_planes and kps["kubeEtcd"]["service"]["port"] == 2381
    assert kps["kubeProxy"]["enabled"] is False and kps["crds"]["enabled"] is False
    spec = kps["prometheus"]["prometheusSpec"]
    assert (spec["retention"], spec["retentionSize"]) == ("15d", "13824MB")
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "longhorn"


def check_namespaces_with_podsecurity_labels_before_releases(run):
    api = run["api"]
    labels = {ns: api.get("v1", "Namespace", ns)["metadata"]["labels"] for ns in ("monitoring", "observability")}
    assert labels["monitoring"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["observability"]["pod-security.kubernetes.io/enforce"] == "baseline"
    writes = api.writes()
    for ns in ("monitoring", "observability"):
        created = min(e["seq"] for e in writes if e["kind"] == "Namespace" and e["name"] == ns)
        first_helm = min(e["seq"] for e in writes if e["field_manager"] == "helm" and e["namespace"] == ns)
        assert created < first_helm, ns


def check_charts_with_monitors_waited_for_the_prometheus_operator_crds(run):
    """The prometheus-operator CRDs were created (as by L0) without being Established; the
    requires_crds gate the records' monitors imply held kube-prometheus-stack back until they were."""
    api = run["api"]
    established = {e["name"]: e["seq"] for e in api.events if e["verb"] == "established"}
    needed = ["servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com",
              "prometheuses.monitoring.coreos.com", "alertmanagers.monitoring.coreos.com"]
    assert set(needed) <= set(established), sorted(established)
    first_release = min(e["seq"] for e in api.writes() if e["field_manager"] == "helm")
    assert all(established[name] < first_release for name in needed)
    assert all(established[name] > run["crds_posted_at"] for name in needed)
    # the gate found them pending and waited (they became Established seconds after they appeared)
    out = re.sub(r"\s+", " ", run["out1"])
    crd_gate = [(int(secs), what) for secs, what in
                re.findall(r"kube-prometheus-stack: ready after (\d+)s \((CustomResourceDefinition [^)]*)\)", out)]
    assert crd_gate and "servicemonitors.monitoring.coreos.com" in crd_gate[0][1], crd_gate
    assert crd_gate[0][0] >= 1, crd_gate


def check_platform_rules_only_after_the_operator_webhook_answers(run):
    api = run["api"]
    rule = api.get("monitoring.coreos.com/v1", "PrometheusRule", "platform-components", "observability")
    assert rule and {g["name"] for g in rule["spec"]["groups"]} >= {"cert-manager", "longhorn", "argocd", "linkerd"}
    # Prometheus' own templates survived rendering (never evaluated by Jinja)
    assert "{{ $labels.name }}" in json.dumps(rule)
    # the operator's ValidatingWebhookConfiguration refuses PrometheusRules until its endpoints are
    # ready: nothing was refused and nothing retried, so the gate held the rules back
    assert api.get("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", KPS + "-admission")
    rejected = [e for e in api.events if e["kind"] == "PrometheusRule" and (e["code"] or 0) >= 500]
    assert rejected == []
    retried = re.findall(r"FAILED - RETRYING: \[localhost\]: (?:\S+ : )?([^(]+)", run["out1"])
    assert retried == [], retried
    dashboard = api.get("v1", "ConfigMap", "cellplatform-components-dashboard", "observability")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["cellplatform-components.json"])["panels"]
    assert len(panels) >= 15 and all(p["targets"][0]["expr"] for p in panels)
    # kube-prometheus-stack was only considered ready once the operator reported both CRs Available
    out = re.sub(r"\s+", " ", run["out1"])
    gates = [out[m.start():m.start() + 1500] for m in re.finditer(r"kube-prometheus-stack: ready after \d+s \(", out)]
    gate = next((g for g in gates if "(Deployment monitoring/kube-prometheus-stack-operator" in g[:120]), "")
    assert gate, gates
    for want in ("Prometheus monitoring/kube-prometheus-stack-prometheus: Available=True",
                 "Alertmanager monitoring/kube-prometheus-stack-alertmanager: Available=True",
                 "webhook Service monitoring/kube-prometheus-stack-operator"):
        assert want in gate[:1500], (want, gate[:1500])


def check_talos_log_receiver_at_its_reserved_address(run):
    svc = run["api"].get("v1", "Service", "talos-log-receiver", "monitoring")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == "192.168.100.201"
    assert svc["spec"]["ports"] == [{"name": "talos", "port": 5170, "targetPort": "talos", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "fluent-bit", "app.kubernetes.io/instance": "fluent-bit"}
    values = yaml.safe_load((run["build"] / "l4/fluent-bit/values.yaml").read_text())
    assert "Port 5170" in values["config"]["inputs"] and values["extraPorts"][0]["name"] == "talos"


def check_grafana_admin_from_the_encrypted_secrets_and_its_route(run):
    api = run["api"]
    secret = api.get("v1", "Secret", "grafana-admin", "observability")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"admin-user": "platform-admin", "admin-password": run["admin_password"]}
    writes = api.writes()
    secret_seq = min(e["seq"] for e in writes if e["kind"] == "Secret" and e["name"] == "grafana-admin")
    grafana_seq = min(e["seq"] for e in writes if e["field_manager"] == "helm" and e["name"] == "grafana")
    assert secret_seq < grafana_seq
    # ... and the same object is in the GitOps tree SOPS-encrypted, a kustomize (KSOPS) source of its Application
    rendered = run["build"] / "l4/grafana/secrets/grafana-admin.sops.yaml"
    assert sops_utils.recipients_of_file(str(rendered)) == [run["secrets"].recipient]
    doc = yaml.safe_load(sops_utils.decrypt_file(str(rendered), str(run["secrets"].identity)))
    assert doc["stringData"] == data
    assert doc["metadata"] == {k: v for k, v in secret["metadata"].items() if k in ("name", "namespace", "labels")}
    app = yaml.safe_load((run["build"] / "apps/grafana.yaml").read_text())
    assert any(src.get("path") == "l4/grafana/secrets" and "kustomize" in src for src in app["spec"]["sources"])
    route = api.get("gateway.networking.k8s.io/v1", "HTTPRoute", "grafana-ui", "observability")
    assert route["spec"]["hostnames"] == ["grafana.cell.lan"]
    assert route["spec"]["parentRefs"][0] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                              "name": "platform", "namespace": "gateway", "sectionName": "https"}
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "grafana", "port": 80}]
    values = yaml.safe_load((run["build"] / "l4/grafana/values.yaml").read_text())
    assert values["admin"]["existingSecret"] == "grafana-admin"
    sources = {d["uid"]: d for d in values["datasources"]["datasources.yaml"]["datasources"]}
    assert sources["tempo"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert sources["loki"]["jsonData"]["derivedFields"][0]["datasourceUid"] == "tempo"


def check_second_run_changes_nothing(run):
    assert run["rc2"] == 0, run["out2"][-6000:]
    assert recap(run["out2"])["changed"] == 0, run["out2"][-6000:]
    assert [c for c in run["calls2"] if c["command"] in ("upgrade", "install")] == []
    assert len(run["api"].writes()) == run["writes1"]


def check_no_secret_in_build_tree_or_output(run):
    leaks = []
    texts = {"check run output": run["out0"], "run 1 -vvv output": run["out1"], "run 2 -vvv output": run["out2"]}
    for path in run["build"].rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    for path in run["state"].glob("*"):
        texts[str(path)] = path.read_text()
    for value in run["secrets"].secret_values + [run["admin_password"]]:
        for where, text in texts.items():
            if value in text.replace("\n", ""):
                leaks.append("%s in %s" % (value.split("-")[0][:12], where))
    assert leaks == []
    hits = [str(p) for p in (REPO / "build").rglob("*") if p.is_file()
            and run["admin_password"] in p.read_text(errors="replace")] if (REPO / "build").exists() else []
    assert hits == []


@pytest.mark.slow
def test_l4_apply_end_to_end(l4_run):
    """One test (one module-scoped set of playbook runs) that runs every check in order; each
    check names what failed."""
    check_check_mode_on_fresh_cluster_changes_nothing(l4_run)
    check_first_run_succeeds(l4_run)
    check_releases_in_order_with_pinned_charts_and_rendered_values(l4_run)
    check_namespaces_with_podsecurity_labels_before_releases(l4_run)
    check_charts_with_monitors_waited_for_the_prometheus_operator_crds(l4_run)
    check_platform_rules_only_after_the_operator_webhook_answers(l4_run)
    check_talos_log_receiver_at_its_reserved_address(l4_run)
    check_grafana_admin_from_the_encrypted_secrets_and_its_route(l4_run)
    check_second_run_changes_nothing(l4_run)
    check_no_secret_in_build_tree_or_output(l4_run)
