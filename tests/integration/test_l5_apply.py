"""L5 apply path end to end against the test doubles (helm double + in-process fake Kubernetes API).

Runs ``site.yml -t l5`` in apply mode twice (the whole preflight first, then only L5) and checks
what a real cluster would have been asked to do:

* the namespaces with their PodSecurity levels (velero and chaos-mesh privileged, etcd-backup
  restricted, object-store baseline) before anything is installed into them;
* the releases in order with the pinned charts and exactly the rendered values files: SeaweedFS,
  Velero, Chaos Mesh;
* the object store credentials as Secrets built from the SOPS-encrypted platform secrets (Velero's
  as AWS_* variables, SeaweedFS's two identities, the CronJob's), each before the release or
  manifests that read it, and in the GitOps tree only SOPS-encrypted;
* Velero's BackupStorageLocation and Schedule only after Velero's CRDs are Established and its
  server and node agent are ready;
* the Talos ServiceAccount of the etcd snapshot CronJob held back until Talos' CRD
  (serviceaccounts.talos.dev, registered by L0's patch) is Established, and the component ready
  only once Talos answered with its Secret (played by a thread, as Talos' controller would);
* the experiment library applied PAUSED after Chaos Mesh's webhook answers; the dashboard's
  HTTPRoute on the shared Gateway;
* a second run that changes nothing; no secret value in build/, the helm double's records or output.

Run inside scripts/netns-run (loopback only):
    scripts/netns-run .venv/bin/pytest -q tests/integration/test_l5_apply.py
"""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest
import yaml

from apply_fixtures import (apply_run_setup, crd, daemonset, deployment, gateway_api_crds, gateway_class, helm_calls,
                            Player, preinstall, recap, run_playbook, SecretsDir, webhook, write_chart)
from fake_kube_api import FakeKubeAPI
from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils

# The extended suite (`make test-extended`, docs/proven.md): several site.yml -t l5 runs against the doubles: minutes of CPU.
pytestmark = pytest.mark.extended

# (release, namespace, chart, version, repo, values file)
RELEASES = [
    ("seaweedfs", "object-store", "seaweedfs", "4.44.0", "https://seaweedfs.github.io/seaweedfs/helm",
     "l5/seaweedfs/values.yaml"),
    ("velero", "velero", "velero", "12.1.0", "https://vmware-tanzu.github.io/helm-charts", "l5/velero/values.yaml"),
    ("chaos-mesh", "chaos-mesh", "chaos-mesh", "2.8.3", "https://charts.chaos-mesh.org", "l5/chaos-mesh/values.yaml"),
]
VELERO_CRDS = [("BackupStorageLocation", "backupstoragelocations"), ("Schedule", "schedules"), ("Backup", "backups"),
               ("PodVolumeBackup", "podvolumebackups")]
CHAOS_CRDS = [("PodChaos", "podchaos"), ("NetworkChaos", "networkchaos"), ("Schedule", "schedules"),
              ("Workflow", "workflows")]
TALOS_SA_CRD = crd("talos.dev", "ServiceAccount", "serviceaccounts", ("v1alpha1",))


def l5_charts(charts_dir):
    """Chart fixtures for the L5 charts at the pinned versions: what each install leaves."""
    write_chart(charts_dir, "seaweedfs", "4.44.0", "4.44", [deployment("seaweedfs-all-in-one")])
    write_chart(charts_dir, "velero", "12.1.0", "1.18.1",
                [crd("velero.io", k, p) for k, p in VELERO_CRDS] + [deployment("velero"), daemonset("node-agent")])
    write_chart(charts_dir, "chaos-mesh", "2.8.3", "2.8.3",
                [crd("chaos-mesh.org", k, p, ("v1alpha1",)) for k, p in CHAOS_CRDS]
                + [deployment("chaos-controller-manager", 3), deployment("chaos-dashboard"), daemonset("chaos-daemon")]
                + webhook("chaos-mesh-mutation", "chaos-mesh-controller-manager", "chaos-mesh.org", "v1alpha1",
                          ["podchaos", "networkchaos"]))


class TalosAnswers(Player):
    """Plays Talos' ServiceAccount controller: once a talos.dev ServiceAccount exists, write the
    Secret of the same name (key ``config``: a talosconfig) in its namespace, after ``delay``."""

    def __init__(self, api, namespace, name, delay=1.0):
        super().__init__()
        self.api = api
        self.namespace, self.name, self.delay = namespace, name, delay
        self.answered_at = None

    def _run(self):
        while not self.stop.is_set():
            if self.api.get("talos.dev/v1alpha1", "ServiceAccount", self.name, self.namespace):
                self.stop.wait(self.delay)
                secret = {"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": self.name, "namespace": self.namespace},
                          "data": {"config": base64.b64encode(b"context: cell\n").decode()}}
                req = urllib.request.Request(
                    "%s/api/v1/namespaces/%s/secrets" % (self.api.url, self.namespace), method="POST",
                    data=json.dumps(secret).encode(), headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only (fake API on 127.0.0.1)
                    resp.read()
                self.answered_at = len(self.api.events)
                return
            self.stop.wait(0.1)


@pytest.fixture(scope="module")
def l5_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l5apply")
    api = FakeKubeAPI(ready_delay=0.5, crd_delay=0.5).start()
    try:
        secrets = SecretsDir(tmp, api.kubeconfig())
        keys = {k: "%s-%s" % (k.upper(), base64.b32encode(k.encode()).decode()[:10]) for k in (
            "object_store_access_key_id", "object_store_secret_access_key",
            "object_store_read_access_key_id", "object_store_read_secret_access_key")}
        secrets.platform.update(keys)
        secrets.write("platform.sops.yaml", yaml.safe_dump(secrets.platform))
        charts = tmp / "charts"
        l5_charts(charts)
        env, extra, state, build_root = apply_run_setup(
            tmp, secrets, charts, component_wait_timeout=60, component_poll_interval=1)
        env["ANSIBLE_PIPELINING"] = "1"
        # what L0-L2 left: the Gateway API and GatewayClass, Talos' ServiceAccount CRD (L0's patch)
        preinstall(api, gateway_api_crds() + [gateway_class(), TALOS_SA_CRD])
        with TalosAnswers(api, "etcd-backup", "talos-backup") as talos:
            rc1, out1 = run_playbook("playbooks/site.yml", env, extra, ["-t", "l5", "-v"])
        writes1 = len(api.writes())
        calls1 = helm_calls(state)
        rc2, out2 = run_playbook("playbooks/site.yml", env, extra, ["-t", "l5"])
        yield {"api": api, "secrets": secrets, "keys": keys, "state": state, "build": build_root / "cell",
               "rc1": rc1, "out1": out1, "rc2": rc2, "out2": out2, "writes1": writes1, "calls1": calls1,
               "calls2": helm_calls(state)[len(calls1):], "talos_answered_at": talos.answered_at}
    finally:
        api.stop()


def _seq(api, kind, name, verb=None):
    return [e["seq"] for e in api.writes() if e["kind"] == kind and e["name"] == name
            and (verb is None or e["verb"] == verb)]


def test_first_run_succeeds(l5_run):
    assert l5_run["rc1"] == 0, l5_run["out1"][-8000:]
    assert recap(l5_run["out1"])["failed"] == 0


def test_releases_in_order_with_pinned_charts_and_rendered_values(l5_run):
    upgrades = [c for c in l5_run["calls1"] if c["command"] == "upgrade"]
    assert [(c["argv"][-2], c["namespace"]) for c in upgrades] == [(r[0], r[1]) for r in RELEASES]
    for call, (release, _ns, chart, version, repo, values_rel) in zip(upgrades, RELEASES):
        argv = call["argv"]
        assert argv[-1] == chart and "--version=%s" % version in argv and "--repo=%s" % repo in argv, argv
        assert "--wait" in argv
        assert len(call["values_files"]) == 1, call
        given = yaml.safe_load(list(call["values_files"].values())[0])
        assert given == yaml.safe_load((l5_run["build"] / values_rel).read_text()), release
        assert call["kubeconfig_server"] == l5_run["api"].url


def test_namespaces_with_podsecurity_levels_before_anything_in_them(l5_run):
    api = l5_run["api"]
    levels = {"velero": "privileged", "chaos-mesh": "privileged", "etcd-backup": "restricted",
              "object-store": "baseline"}
    writes = api.writes()
    for ns, level in levels.items():
        labels = api.get("v1", "Namespace", ns)["metadata"]["labels"]
        assert all(labels["pod-security.kubernetes.io/%s" % m] == level for m in ("enforce", "audit", "warn")), ns
        created = min(_seq(api, "Namespace", ns))
        assert created < min(e["seq"] for e in writes if e["namespace"] == ns), ns


def test_object_store_credentials_from_the_encrypted_platform_secrets(l5_run):
    api, keys = l5_run["api"], l5_run["keys"]

    def data(name, ns):
        return {k: base64.b64decode(v).decode() for k, v in api.get("v1", "Secret", name, ns)["data"].items()}

    aws = {"AWS_ACCESS_KEY_ID": keys["object_store_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": keys["object_store_secret_access_key"]}
    assert data("velero-object-store", "velero") == aws
    assert data("etcd-backup-object-store", "etcd-backup") == aws
    assert data("object-store-credentials", "object-store") == {
        "admin_access_key_id": keys["object_store_access_key_id"],
        "admin_secret_access_key": keys["object_store_secret_access_key"],
        "read_access_key_id": keys["object_store_read_access_key_id"],
        "read_secret_access_key": keys["object_store_read_secret_access_key"]}
    helm_first = {}
    for e in api.writes():
        if e["field_manager"] == "helm" and e["namespace"]:
            helm_first.setdefault(e["namespace"], e["seq"])
    assert min(_seq(api, "Secret", "velero-object-store")) < helm_first["velero"]
    assert min(_seq(api, "Secret", "object-store-credentials")) < helm_first["object-store"]
    assert min(_seq(api, "Secret", "etcd-backup-object-store")) < min(_seq(api, "CronJob", "talos-backup"))
    # ... and rendered only SOPS-encrypted, a KSOPS source of the component's Application
    for comp, name in (("velero", "velero-object-store"), ("seaweedfs", "object-store-credentials"),
                       ("etcd-backup", "etcd-backup-object-store")):
        path = l5_run["build"] / "l5" / comp / "secrets" / ("%s.sops.yaml" % name)
        assert sops_utils.recipients_of_file(str(path)) == [l5_run["secrets"].recipient]
        app = yaml.safe_load((l5_run["build"] / "apps" / ("%s.yaml" % comp)).read_text())
        assert any(s.get("path") == "l5/%s/secrets" % comp and "kustomize" in s for s in app["spec"]["sources"]), comp


def test_backup_location_and_schedule_after_velero_is_ready(l5_run):
    api = l5_run["api"]
    established = {e["name"]: e["seq"] for e in api.events if e["verb"] == "established"}
    bsl = api.get("velero.io/v1", "BackupStorageLocation", "default", "velero")
    schedule = api.get("velero.io/v1", "Schedule", "platform-daily", "velero")
    assert bsl["spec"]["config"]["s3Url"] == "http://seaweedfs-all-in-one.object-store.svc.cluster.local:8333"
    assert schedule["spec"]["template"]["ttl"] == "336h0m0s" and schedule["spec"]["schedule"] == "0 2 * * *"
    first = min(_seq(api, "BackupStorageLocation", "default") + _seq(api, "Schedule", "platform-daily"))
    assert first > established["backupstoragelocations.velero.io"] and first > established["schedules.velero.io"]
    # the release's gate waited for the server and the node agent (the manifests come after it)
    out = " ".join(l5_run["out1"].split())
    gate = out[out.index("velero: ready after"):][:600]
    assert "Deployment velero/velero" in gate and "DaemonSet velero/node-agent" in gate, gate
    assert "CustomResourceDefinition backupstoragelocations.velero.io" in gate, gate


def test_etcd_snapshots_wait_for_talos(l5_run):
    api = l5_run["api"]
    sa = api.get("talos.dev/v1alpha1", "ServiceAccount", "talos-backup", "etcd-backup")
    assert sa["spec"]["roles"] == ["os:etcd:backup"]
    cron = api.get("batch/v1", "CronJob", "talos-backup", "etcd-backup")
    env = {e["name"]: e.get("value") for e in
           cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    # apply mode has a recipient: the CronJob runs and encrypts to it
    assert cron["spec"]["suspend"] is False and env["AGE_X25519_PUBLIC_KEY"] == l5_run["secrets"].recipient
    # the component was only ready once Talos had answered with its Secret (the manifests gate)
    assert l5_run["talos_answered_at"] is not None
    out = " ".join(l5_run["out1"].split())
    assert "etcd-backup: ready after" in out and "Secret etcd-backup/talos-backup" in out
    # the collection never writes Talos' Secret itself
    assert [e for e in api.writes() if e["kind"] == "Secret" and e["name"] == "talos-backup"
            and e["field_manager"] == "cellplatform"] == []


def test_experiments_applied_paused_after_the_chaos_mesh_webhook(l5_run):
    api = l5_run["api"]
    library = [o for o in api.list("chaos-mesh.org/v1alpha1", namespace="chaos-mesh")
               if o["kind"] in ("PodChaos", "NetworkChaos")]
    assert len(library) == 11
    assert all(o["metadata"]["annotations"]["experiment.chaos-mesh.org/pause"] == "true" for o in library)
    # nothing refused by Chaos Mesh's webhook (its endpoints were ready before the first experiment)
    rejected = [e for e in api.events if e["kind"] in ("PodChaos", "NetworkChaos") and e["verb"] not in ("get", "list")
                and (e["code"] or 0) >= 400]
    assert rejected == []
    out = " ".join(l5_run["out1"].split())
    assert "webhook Service chaos-mesh/chaos-mesh-controller-manager" in out[out.index("chaos-mesh: ready after"):][:800]
    route = api.get("gateway.networking.k8s.io/v1", "HTTPRoute", "chaos-ui", "chaos-mesh")
    assert route["spec"]["hostnames"] == ["chaos.cell.lan"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "chaos-dashboard", "port": 2333}]


def test_second_run_changes_nothing(l5_run):
    assert l5_run["rc2"] == 0, l5_run["out2"][-6000:]
    assert recap(l5_run["out2"])["changed"] == 0, l5_run["out2"][-6000:]
    assert [c for c in l5_run["calls2"] if c["command"] in ("upgrade", "install")] == []
    assert len(l5_run["api"].writes()) == l5_run["writes1"]


def test_no_secret_in_build_tree_or_output(l5_run):
    texts = {"run 1 output": l5_run["out1"], "run 2 output": l5_run["out2"]}
    for path in l5_run["build"].rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    for path in l5_run["state"].glob("*"):
        texts[str(path)] = path.read_text()
    values = list(l5_run["keys"].values()) + l5_run["secrets"].secret_values
    leaks = ["%s in %s" % (v[:20], where) for v in values for where, text in texts.items() if v in text]
    assert leaks == []
