"""L5 render mode: what is rendered, that it is schema-valid, and that it follows the inventory.

Three renders of the reference inventory:

* as it is (SeaweedFS in the cell; no age recipients, as the reference cell keeps them out of git):
  every file of every L5 component, pinned charts and images, the values that matter on Talos
  (Chaos Mesh's containerd socket, Velero's node agent and AWS plugin, SeaweedFS on the cell's
  StorageClass), the BackupStorageLocation and Schedule from the inventory, the etcd snapshot
  CronJob SUSPENDED (no recipient to encrypt to), every experiment PAUSED and none scheduled; the
  whole layer against the upstream schemas, and the schema check failing on a broken CR;
* an external S3 store with a private CA and an age recipient (site.yml -t l0,l5): no SeaweedFS,
  the CA in the BackupStorageLocation and beside the CronJob, talos-backup's inverted path-style
  switch, the Talos API access patch on the control planes (and not on the workers);
* L5 disabled (site.yml -t l0,l5): no L5 file or plan entry, and no Talos API access.

    scripts/netns-run .venv/bin/pytest -q tests/integration/test_l5_render.py
"""

from __future__ import annotations

import base64
import copy
import json
import sys

import pytest
import yaml

from apply_fixtures import REPO, run_playbook

sys.path.insert(0, str(REPO / "tests" / "support"))
import schemacheck  # noqa: E402
import verify_build  # noqa: E402

RECIPIENT = "age1jrt4wcqq6sc0gexnntep0xecwky60ugk0euv67me6xm7c7me7udq7r0003"
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUL5test\n-----END CERTIFICATE-----\n"
REFERENCE = yaml.safe_load((REPO / "inventories/production/group_vars/all/cell.yml").read_text())
EXTERNAL = copy.deepcopy(REFERENCE["cellplatform_resilience"])
EXTERNAL["object_store"] = {"provider": "external", "bucket": "cell.backups",
                            "external": {"endpoint": "https://s3.example.test:9443", "region": "eu-west-3",
                                         "path_style": True, "ca_bundle": CA}}
EXTERNAL["backups"] = {"schedule": "30 1 * * *", "retention_days": 30}
L5_COMPONENTS = ["seaweedfs", "velero", "etcd-backup", "chaos-mesh", "chaos-experiments"]


def _render(tmp, playbook, extra, args=()):
    extra = dict({"cellplatform_mode": "render", "cellplatform_build_root": str(tmp / "build")}, **extra)
    rc, out = run_playbook(playbook, {"ANSIBLE_PIPELINING": "1"}, extra, list(args))
    assert rc == 0, out[-5000:]
    return tmp / "build" / "cell"


@pytest.fixture(scope="module")
def default_build(tmp_path_factory):
    return _render(tmp_path_factory.mktemp("l5default"), "playbooks/l5.yml", {})


@pytest.fixture(scope="module")
def external_build(tmp_path_factory):
    return _render(tmp_path_factory.mktemp("l5external"), "playbooks/site.yml",
                   {"cellplatform_resilience": EXTERNAL, "cellplatform_age_recipients": [RECIPIENT]}, ["-t", "l0,l5"])


@pytest.fixture(scope="module")
def disabled_build(tmp_path_factory):
    return _render(tmp_path_factory.mktemp("l5disabled"), "playbooks/site.yml",
                   {"cellplatform_resilience": {"enabled": False}}, ["-t", "l0,l5"])


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _plan(build):
    return {c["name"]: c for c in json.loads((build / "plan.json").read_text())["components"]}


def _kind(build, rel, kind):
    return [d for d in _docs(build / rel) if d["kind"] == kind]


def _env(cronjob):
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- the reference cell ------------------------------------------------------------------------

def test_every_l5_component_is_rendered_pinned_and_in_the_plan(default_build):
    plan = _plan(default_build)
    l5 = [name for name, comp in plan.items() if comp["layer"] == "l5"]
    assert sorted(l5) == sorted(L5_COMPONENTS)
    versions = {name: plan[name].get("version") for name in ("seaweedfs", "velero", "chaos-mesh", "etcd-backup")}
    assert versions == {"seaweedfs": "4.44.0", "velero": "12.1.0", "chaos-mesh": "2.8.3", "etcd-backup": "v0.1.0-beta.3"}
    for name in L5_COMPONENTS:
        app = yaml.safe_load((default_build / plan[name]["application"]).read_text())
        assert app["spec"]["destination"]["namespace"] == plan[name]["namespace"]
    assert {plan[n]["namespace"] for n in L5_COMPONENTS} == {"object-store", "velero", "etcd-backup", "chaos-mesh"}
    for ns, level in (("velero", "privileged"), ("chaos-mesh", "privileged"), ("etcd-backup", "restricted"),
                      ("object-store", "baseline")):
        (doc,) = [d for n in L5_COMPONENTS if plan[n]["namespace"] == ns
                  for m in plan[n]["manifests"] if m.endswith("namespace.yaml") for d in _docs(default_build / m)]
        assert doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == level, ns
    # Secrets come from the platform secrets only, named in the plan (rendered encrypted when they are at hand)
    assert plan["velero"]["secrets"] == ["velero-object-store"]
    assert plan["etcd-backup"]["secrets"] == ["etcd-backup-object-store"]
    assert plan["seaweedfs"]["secrets"] == ["object-store-credentials"]


def test_the_whole_layer_is_schema_valid(default_build, schema_root):
    report = verify_build.verify(default_build, layer="l5", store=schemacheck.SchemaStore(schema_root))
    assert report.failures == []
    # BackupStorageLocation, Schedule, 11 experiments, the CronJob, RBAC, namespaces, routes: checked
    assert report.checked["manifests"] >= 20 and report.checked["values files"] == 3
    assert report.gaps == {"talos.dev/v1alpha1 ServiceAccount"}


def test_the_schema_check_fails_on_a_broken_backup_location_and_experiment(default_build, schema_root, tmp_path):
    import shutil
    build = tmp_path / "cell"
    shutil.copytree(default_build, build)
    velero = build / "l5/velero/manifests.yaml"
    docs = _docs(velero)
    del docs[0]["spec"]["provider"]
    velero.write_text(yaml.safe_dump_all(docs))
    chaos = build / "l5/chaos-experiments/manifests.yaml"
    docs = _docs(chaos)
    docs[0]["spec"]["action"] = "pod-explode"
    chaos.write_text(yaml.safe_dump_all(docs))
    failures = verify_build.verify(build, layer="l5", store=schemacheck.SchemaStore(schema_root)).failures
    assert any("BackupStorageLocation/default" in f and "provider" in f for f in failures), failures
    assert any("PodChaos/pod-kill-argocd-application-controller" in f and "pod-explode" in f for f in failures), failures


def test_seaweedfs_runs_all_in_one_on_the_cell_storage(default_build):
    values = yaml.safe_load((default_build / "l5/seaweedfs/values.yaml").read_text())
    assert [values[k]["enabled"] for k in ("master", "volume", "filer")] == [False, False, False]
    aio = values["allInOne"]
    assert aio["enabled"] and aio["s3"]["enabled"] and aio["s3"]["enableAuth"]
    assert aio["data"] == {"type": "persistentVolumeClaim", "size": "40Gi", "storageClass": "longhorn",
                           "accessModes": ["ReadWriteOnce"]}
    assert aio["s3"]["createBuckets"] == [{"name": "cell-backups", "anonymousRead": False}]
    # no generated keys: both identities from the Secret built from the platform secrets
    for identity in ("admin", "read"):
        assert values["s3"]["credentials"][identity]["existingSecret"] == "object-store-credentials"


def test_velero_node_agent_plugin_location_and_schedule(default_build):
    values = yaml.safe_load((default_build / "l5/velero/values.yaml").read_text())
    assert values["deployNodeAgent"] is True and values["configuration"]["defaultVolumesToFsBackup"] is True
    assert values["initContainers"][0]["image"] == "velero/velero-plugin-for-aws:v1.13.1"
    assert values["credentials"] == {"useSecret": False, "extraSecretRef": "velero-object-store"}
    assert values["backupsEnabled"] is False and values["snapshotsEnabled"] is False
    (bsl,) = _kind(default_build, "l5/velero/manifests.yaml", "BackupStorageLocation")
    assert bsl["spec"]["objectStorage"] == {"bucket": "cell-backups", "prefix": "velero"}
    assert bsl["spec"]["config"] == {"region": "us-east-1", "s3ForcePathStyle": "true",
                                     "s3Url": "http://seaweedfs-all-in-one.object-store.svc.cluster.local:8333"}
    (schedule,) = _kind(default_build, "l5/velero/manifests.yaml", "Schedule")
    assert schedule["spec"]["schedule"] == "0 2 * * *"
    assert schedule["spec"]["template"]["ttl"] == "336h0m0s"   # 14 days
    assert schedule["spec"]["template"]["defaultVolumesToFsBackup"] is True


def test_etcd_snapshots_suspended_without_a_recipient(default_build):
    (sa,) = _kind(default_build, "l5/etcd-backup/manifests.yaml", "ServiceAccount")
    assert sa["apiVersion"] == "talos.dev/v1alpha1" and sa["spec"]["roles"] == ["os:etcd:backup"]
    # the Secret is Talos's answer to the ServiceAccount: never rendered (a stub breaks Talos's controller)
    assert _kind(default_build, "l5/etcd-backup/manifests.yaml", "Secret") == []
    (cron,) = _kind(default_build, "l5/etcd-backup/manifests.yaml", "CronJob")
    assert cron["spec"]["suspend"] is True and cron["spec"]["schedule"] == "0 */6 * * *"
    env = _env(cron)
    assert env["AGE_X25519_PUBLIC_KEY"] == "" and "DISABLE_ENCRYPTION" not in env
    assert env["USE_PATH_STYLE"] == "false"      # path style on: talos-backup beta.3 reads it inverted
    assert env["S3_PREFIX"] == "cell/etcd" and env["BUCKET"] == "cell-backups"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "etcd-backup-object-store",
                                                             "key": "AWS_SECRET_ACCESS_KEY"}}
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "talos-secrets", "secret": {"secretName": "talos-backup"}} in pod["volumes"]


def test_chaos_mesh_on_talos_with_its_dashboard_behind_the_gateway(default_build):
    values = yaml.safe_load((default_build / "l5/chaos-mesh/values.yaml").read_text())
    assert values["chaosDaemon"]["runtime"] == "containerd"
    assert values["chaosDaemon"]["socketPath"] == "/run/containerd/containerd.sock"
    assert values["dashboard"]["securityMode"] is True and values["dashboard"]["ingress"]["enabled"] is False
    assert values["dashboard"]["service"]["type"] == "ClusterIP"
    assert values["dashboard"]["persistentVolume"]["storageClassName"] == "longhorn"
    (route,) = _docs(default_build / "l5/chaos-mesh/routes.yaml")
    assert route["spec"]["hostnames"] == ["chaos.cell.lan"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "chaos-dashboard", "port": 2333}]


def test_every_experiment_is_paused_and_none_is_scheduled(default_build):
    library = yaml.safe_load((REPO / "ansible_collections/cellplatform/platform/roles/l5_resilience/defaults/main.yml")
                             .read_text())["l5_resilience_chaos_experiments"]
    docs = _docs(default_build / "l5/chaos-experiments/manifests.yaml")
    assert [d["metadata"]["name"] for d in docs] == [e["name"] for e in library]
    assert {d["kind"] for d in docs} == {"PodChaos", "NetworkChaos"}     # no Schedule, no Workflow
    for doc in docs:
        assert doc["metadata"]["annotations"]["experiment.chaos-mesh.org/pause"] == "true", doc["metadata"]["name"]
        assert doc["metadata"]["annotations"]["cellplatform.io/proves"]
    kinds = {d["metadata"]["name"]: d for d in docs}
    assert kinds["network-delay-argocd"]["spec"]["selector"]["namespaces"] == ["argocd"]
    cut = kinds["worker-kubelet-cut-off"]["spec"]
    assert cut["selector"]["nodes"] == ["worker-1"]
    assert cut["externalTargets"] == ["192.168.100.50", "192.168.100.51", "192.168.100.52", "192.168.100.53"]
    assert "__" not in json.dumps(docs)


# --- an external store ----------------------------------------------------------------------------

def test_external_store_replaces_seaweedfs(external_build):
    plan = _plan(external_build)
    assert "seaweedfs" not in plan and not (external_build / "l5/seaweedfs").exists()
    (bsl,) = _kind(external_build, "l5/velero/manifests.yaml", "BackupStorageLocation")
    assert bsl["spec"]["config"] == {"region": "eu-west-3", "s3ForcePathStyle": "true",
                                     "s3Url": "https://s3.example.test:9443"}
    assert base64.b64decode(bsl["spec"]["objectStorage"]["caCert"]).decode() == CA
    assert bsl["spec"]["objectStorage"]["bucket"] == "cell.backups"
    (schedule,) = _kind(external_build, "l5/velero/manifests.yaml", "Schedule")
    assert (schedule["spec"]["schedule"], schedule["spec"]["template"]["ttl"]) == ("30 1 * * *", "720h0m0s")


def test_external_store_cronjob_encrypts_and_trusts_the_ca(external_build):
    (cron,) = _kind(external_build, "l5/etcd-backup/manifests.yaml", "CronJob")
    assert cron["spec"]["suspend"] is False
    env = _env(cron)
    assert env["AGE_X25519_PUBLIC_KEY"] == RECIPIENT
    assert env["CUSTOM_S3_ENDPOINT"] == "https://s3.example.test:9443" and env["AWS_REGION"] == "eu-west-3"
    assert env["AWS_CA_BUNDLE"] == "/etc/object-store-ca/ca.crt"
    (cm,) = _kind(external_build, "l5/etcd-backup/manifests.yaml", "ConfigMap")
    assert cm["data"] == {"ca.crt": CA}


def test_talos_api_access_on_the_control_planes_with_l5(external_build):
    (patch,) = _docs(external_build / "talos/patches/controlplane.yaml")[:1]
    assert patch["machine"]["features"]["kubernetesTalosAPIAccess"] == {
        "enabled": True, "allowedRoles": ["os:etcd:backup"], "allowedKubernetesNamespaces": ["etcd-backup"]}
    assert "192.168.100.50" in patch["machine"]["certSANs"]
    assert "kubernetesTalosAPIAccess" not in (external_build / "talos/patches/worker.yaml").read_text()


def test_talos_patch_schema_valid_with_l5(external_build, schema_root):
    report = verify_build.verify(external_build, layer="l0", store=schemacheck.SchemaStore(schema_root))
    assert report.failures == []


# --- L5 disabled ----------------------------------------------------------------------------------

def test_disabled_renders_nothing_and_grants_no_talos_api(disabled_build):
    assert not [c for c in _plan(disabled_build).values() if c["layer"] == "l5"]
    assert not (disabled_build / "l5").exists()
    assert "kubernetesTalosAPIAccess" not in (disabled_build / "talos/patches/controlplane.yaml").read_text()
    (patch,) = _docs(disabled_build / "talos/patches/controlplane.yaml")[:1]
    assert patch["machine"] == {"certSANs": ["192.168.100.50", "api.cell.lan"]}
