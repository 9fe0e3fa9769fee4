"""L3 apply path end to end against the test doubles: the helm double, the in-process fake
Kubernetes API, and the Gitea and Harbor API doubles (tests/doubles/delivery_api.py: HTTPS on
127.0.0.1 with a CA the test creates, which stands in for the cell's internal CA).

Runs playbooks/l3.yml in apply mode: --check on a fresh cluster (Gitea and Harbor not running),
then twice at -vvv, then once more with the robot account's secret lost. Checks what a real cell
would have been asked to do: namespaces (PodSecurity labels) before releases, the four pinned
releases in order with the rendered values files, the databases Ready before the releases that
use them, custom resources only after their CRDs are Established, the admin Secrets from the
SOPS platform secrets (and rendered SOPS-encrypted for Argo CD), Harbor's internal secrets and
the webhook secret generated once and kept in a SOPS file, the Chains signing key created once
(SOPS files; Secret signing-secrets, public key for Kyverno); then through the APIs: the proxy-cache registries and projects, the private CI project,
the robot account (its secret stored encrypted and turned into the push and pull Secrets), the
Gitea organisations, the hosted GitOps repository with the rendered tree pushed over git's smart
HTTP, the organisation webhook to the EventListener (with the same secret the EventListener
checks) and the clone token. Check mode writes nothing anywhere; the second run changes nothing
(no release, no object, no API write, no push, credential files byte-identical); a robot whose
secret is lost stops the run with the way out; no secret appears in build/, the helm records or
the output. The cluster starts with what L0-L2 leave: Gateway API, prometheus-operator and
cert-manager CRDs, the Kyverno namespace and the ImageValidatingPolicy CRD.

    scripts/netns-run .venv/bin/pytest -q -p no:cacheprovider tests/integration/test_l3_apply.py
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apply_fixtures import (apply_run_setup, Conditions, crd, deployment, gateway_api_crds, helm_calls, Player,
                            preinstall, prometheus_operator_crds, recap, run_playbook, SecretsDir, statefulset, webhook,
                            write_chart)
from delivery_api import GiteaDouble, HarborDouble
from fake_kube_api import FakeKubeAPI
from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils

# The extended suite (`make test-extended`, docs/proven.md): four playbook runs of L3 against the Gitea/Harbor doubles and real git: about 5 minutes of CPU.
pytestmark = pytest.mark.extended

# What the controllers of the cell report once the objects exist (CloudNativePG, cert-manager,
# the Tekton operator, Triggers): played by Conditions.
CONDITIONS = [("postgresql.cnpg.io/v1", "Cluster", "gitea-db", "gitea", "Ready"),
              ("postgresql.cnpg.io/v1", "Cluster", "harbor-db", "harbor", "Ready"),
              ("cert-manager.io/v1", "Certificate", "harbor-token", "harbor", "Ready"),
              ("triggers.tekton.dev/v1beta1", "EventListener", "gitea", "ci", "Ready")]
PROXY_CACHES = {"dockerhub": ("docker-hub", "https://hub.docker.com"), "ghcr": ("github-ghcr", "https://ghcr.io"),
                "quay": ("quay", "https://quay.io"), "k8s": ("docker-registry", "https://registry.k8s.io")}
TEKTON_DEPLOYMENTS = ["tekton-pipelines-controller", "tekton-pipelines-webhook", "tekton-triggers-controller",
                      "tekton-triggers-webhook", "tekton-triggers-core-interceptors", "tekton-chains-controller",
                      "tekton-dashboard"]
TEKTON_CRDS = [("tekton.dev", "Task", "tasks"), ("tekton.dev", "Pipeline", "pipelines"),
               ("tekton.dev", "PipelineRun", "pipelineruns"), ("tekton.dev", "TaskRun", "taskruns")]
TRIGGERS_CRDS = [("triggers.tekton.dev", "EventListener", "eventlisteners"),
                 ("triggers.tekton.dev", "TriggerBinding", "triggerbindings"),
                 ("triggers.tekton.dev", "TriggerTemplate", "triggertemplates")]


def l3_charts(charts_dir):
    """Chart fixtures for the L3 charts at the versions the role pins (what each install leaves)."""
    write_chart(charts_dir, "cloudnative-pg", "0.29.0", "1.30.0", [
        crd("postgresql.cnpg.io", kind, plural) for kind, plural in (
            ("Cluster", "clusters"), ("Backup", "backups"), ("ScheduledBackup", "scheduledbackups"),
            ("Pooler", "poolers"), ("Database", "databases"))
    ] + [deployment("cloudnative-pg")]
        + webhook("cnpg-validating-webhook-configuration", "cnpg-webhook-service", "postgresql.cnpg.io", "v1",
                  ["clusters", "backups"]))
    write_chart(charts_dir, "gitea", "12.7.0", "1.27.0", [
        deployment("gitea"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gitea-http", "namespace": "{{NAMESPACE}}"},
         "spec": {"ports": [{"port": 3000}], "selector": {"app": "gitea"}}},
    ])
    write_chart(charts_dir, "harbor", "1.19.1", "2.15.1", [
        deployment(name) for name in ("harbor-core", "harbor-portal", "harbor-registry", "harbor-jobservice", "harbor-nginx",
                                      "harbor-exporter")
    ] + [statefulset("harbor-redis"), statefulset("harbor-trivy")])
    write_chart(charts_dir, "tekton-operator", "0.81.1", "v0.81.1", [
        crd("operator.tekton.dev", kind, kind.lower() + "s", ("v1alpha1",), "Cluster") for kind in (
            "TektonConfig", "TektonPipeline", "TektonTrigger", "TektonChain", "TektonDashboard", "TektonInstallerSet")
    ] + [deployment("tekton-operator"), deployment("tekton-operator-webhook")]
        + webhook("webhook.operator.tekton.dev", "tekton-operator-webhook", "operator.tekton.dev", "v1alpha1",
                  ["tektonconfigs"]))


def cert_manager_crds():
    """What L1's cert-manager left (the kinds L3 uses)."""
    return [crd("cert-manager.io", "Certificate", "certificates"), crd("cert-manager.io", "Issuer", "issuers")]


def kyverno_leftovers():
    """What L2 left: Kyverno's namespace and the CRD of the ImageValidatingPolicy (served as v1)."""
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kyverno"}},
            crd("policies.kyverno.io", "ImageValidatingPolicy", "imagevalidatingpolicies", ("v1",), "Cluster")]


class TektonOperator(Player):
    """Plays the Tekton operator and the Triggers controller: once the TektonConfig exists it
    installs Pipelines, Triggers, Chains and the Dashboard into tekton-pipelines (CRDs, Deployments,
    the empty signing-secrets Secret) and then reports the TektonConfig Ready; the readiness of the
    EventListener is the Conditions player's."""

    def __init__(self, api):
        super().__init__()
        self.api = api
        self.ready_at = None

    def _run(self):
        while not self.stop.is_set():
            if self.api.get("operator.tekton.dev/v1alpha1", "TektonConfig", "config"):
                time.sleep(1)
                objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tekton-pipelines"}}]
                objects += [crd(group, kind, plural, ("v1",) if group == "tekton.dev" else ("v1beta1",))
                            for group, kind, plural in TEKTON_CRDS + TRIGGERS_CRDS]
                for name in TEKTON_DEPLOYMENTS:
                    dep = deployment(name)
                    dep["metadata"]["namespace"] = "tekton-pipelines"
                    objects.append(dep)
                objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                "metadata": {"name": "signing-secrets", "namespace": "tekton-pipelines"}})
                preinstall(self.api, objects)
                time.sleep(1)
                self.ready_at = len(self.api.events)
                self.api.set_condition("operator.tekton.dev/v1alpha1", "TektonConfig", "config", None, "Ready")
                return
            self.stop.wait(0.2)


class ServiceStart(Player):
    """Lets a Gitea or Harbor double answer only once its chart's Deployment exists (plus a delay),
    as the real service behind the Gateway does; until then it answers 502."""

    def __init__(self, api, double, namespace, deployment_name, delay=2.0):
        super().__init__()
        self.api, self.double, self.namespace, self.name, self.delay = api, double, namespace, deployment_name, delay

    def _run(self):
        while not self.stop.is_set():
            if self.api.get("apps/v1", "Deployment", self.name, self.namespace):
                self.stop.wait(self.delay)
                self.double.starting = False
                return
            self.stop.wait(0.2)


def make_tls(tmp):
    """A CA (the cell's internal CA in this test) and a server certificate for 127.0.0.1 it signed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cell platform root CA (test)")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    tls = tmp / "tls"
    tls.mkdir()
    (tls / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tls / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tls / "server.key").chmod(0o600)
    return tls, ca.public_bytes(serialization.Encoding.PEM)


class L3SecretsDir(SecretsDir):
    """The SOPS secrets of an L3 run: platform.sops.yaml with the admin passwords, and the root CA
    certificate L1 keeps as the SOPS binary file tls-ca.crt.sops."""

    def __init__(self, root, kubeconfig, ca_pem):
        super().__init__(root, kubeconfig)
        self.platform["gitea_admin_password"] = "GITEAADMIN-%s" % base64.b32encode(os.urandom(10)).decode()
        self.platform["harbor_admin_password"] = "HARBORADMIN-%s" % base64.b32encode(os.urandom(10)).decode()
        self.write("platform.sops.yaml", yaml.safe_dump(self.platform))
        self.write("tls-ca.crt.sops", ca_pem.decode())

    @property
    def secret_values(self):
        return super().secret_values + [self.platform["gitea_admin_password"], self.platform["harbor_admin_password"]]

    def is_sops_for_the_cell(self, name):
        """Whether ``name`` is a SOPS file encrypted to exactly the cell's recipient."""
        return sops_utils.recipients_of_file(str(self.dir / name)) == [self.recipient]


@pytest.fixture(scope="module")
def l3_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l3apply")
    tls, ca_pem = make_tls(tmp)
    api = FakeKubeAPI(ready_delay=1, crd_delay=1).start()
    secrets = L3SecretsDir(tmp, api.kubeconfig(), ca_pem)
    gitea = GiteaDouble(tls / "server.crt", tls / "server.key", "gitea-admin", secrets.platform["gitea_admin_password"],
                        tmp / "git").start()
    harbor = HarborDouble(tls / "server.crt", tls / "server.key", secrets.platform["harbor_admin_password"]).start()
    gitea.starting = harbor.starting = True
    try:
        charts = tmp / "charts"
        l3_charts(charts)
        env, extra, state, build_root = apply_run_setup(
            tmp, secrets, charts, component_poll_interval=1, component_wait_timeout=30,
            l3_delivery_gitea_url=gitea.url, l3_delivery_harbor_url=harbor.url,
            l3_delivery_api_retry_delay=1, l3_delivery_api_wait_timeout=30)
        preinstall(api, gateway_api_crds() + prometheus_operator_crds() + cert_manager_crds() + kyverno_leftovers())
        writes_before = len(api.writes())
        rc0, out0 = run_playbook("playbooks/l3.yml", env, extra, ["--check", "--diff"])
        check = {"writes": len(api.writes()) - writes_before, "calls": helm_calls(state),
                 "build": sorted(str(p) for p in build_root.rglob("*")) if build_root.exists() else [],
                 "secrets": sorted(p.name for p in secrets.dir.iterdir()),
                 "double_writes": gitea.writes() + harbor.writes()}
        with Conditions(api, CONDITIONS, delay=1) as controllers, TektonOperator(api) as operator, \
                ServiceStart(api, gitea, "gitea", "gitea"), ServiceStart(api, harbor, "harbor", "harbor-core"):
            start = time.monotonic()
            rc1, out1 = run_playbook("playbooks/l3.yml", env, extra, ["-vvv"])
            took1 = time.monotonic() - start
        writes1, calls1 = len(api.writes()), helm_calls(state)
        api_writes1 = {"gitea": len(gitea.writes()), "harbor": len(harbor.writes())}
        kept = {p.name: p.read_bytes() for p in secrets.dir.iterdir() if p.name.startswith(("delivery-", "image-signing"))}
        rc2, out2 = run_playbook("playbooks/l3.yml", env, extra, ["-vvv"])
        run2 = {"calls": helm_calls(state)[len(calls1):],
                "api_writes": gitea.writes()[api_writes1["gitea"]:] + harbor.writes()[api_writes1["harbor"]:],
                "kept": {p.name: p.read_bytes() for p in secrets.dir.iterdir() if p.name.startswith(("delivery-", "image-signing"))}}
        yield {"rc0": rc0, "out0": out0, "check": check, "rc1": rc1, "out1": out1, "took1": took1, "rc2": rc2,
               "out2": out2, "run2": run2, "writes1": writes1, "calls1": calls1, "kept": kept,
               "conditions": controllers.set_at, "tekton_ready": operator.ready_at, "api": api, "secrets": secrets,
               "state": state, "build": build_root / "cell", "tmp": tmp, "gitea": gitea, "harbor": harbor,
               "env": env, "extra": extra}
    finally:
        gitea.stop()
        harbor.stop()
        api.stop()


def _secret(api, namespace, name):
    obj = api.get("v1", "Secret", name, namespace)
    assert obj, "%s/%s" % (namespace, name)
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


def check_check_mode_on_a_fresh_cluster_changes_nothing(run):
    assert run["rc0"] == 0, run["out0"][-6000:]
    assert recap(run["out0"])["changed"] > 0
    check = run["check"]
    assert check["writes"] == 0
    assert [c for c in check["calls"] if c["command"] in ("upgrade", "install")] == []
    assert check["build"] == []
    assert check["double_writes"] == []
    # nothing generated or stored either
    assert not [n for n in check["secrets"] if n.startswith(("delivery-", "image-signing"))], check["secrets"]
    out = re.sub(r"\s+", " ", run["out0"])
    assert "Harbor does not answer at %s yet" % run["harbor"].url in out
    assert "Gitea does not answer at %s yet" % run["gitea"].url in out
    assert "A new image-signing key pair would be generated" in out


def check_first_run_succeeds(run):
    assert run["rc1"] == 0, run["out1"][-8000:]
    assert recap(run["out1"])["failed"] == 0
    # wall time of the first run, for the record (it depends on the machine's load, so it is not asserted)
    print("l3 apply, first run: %.0f s" % run["took1"])


def check_releases_in_order_with_pinned_charts_and_rendered_values(run):
    upgrades = [c for c in run["calls1"] if c["command"] == "upgrade"]
    assert [(c["argv"][-2], c["namespace"]) for c in upgrades] == [
        ("cloudnative-pg", "cnpg-system"), ("gitea", "gitea"), ("harbor", "harbor"), ("tekton-operator", "tekton-operator")]
    expected = {"cloudnative-pg": ("0.29.0", "cloudnative-pg", "https://cloudnative-pg.github.io/charts"),
                "gitea": ("12.7.0", "gitea", "https://dl.gitea.com/charts/"),
                "harbor": ("1.19.1", "harbor", "https://helm.goharbor.io"),
                "tekton-operator": ("0.81.1", "oci://ghcr.io/tektoncd/operator/charts/tekton-operator", None)}
    for call in upgrades:
        release = call["argv"][-2]
        version, ref, repo = expected[release]
        assert "--version=%s" % version in call["argv"] and call["argv"][-1] == ref
        assert ("--repo=%s" % repo in call["argv"]) if repo else not any(a.startswith("--repo") for a in call["argv"])
        given = yaml.safe_load(list(call["values_files"].values())[0])
        assert given == yaml.safe_load((run["build"] / "l3" / release / "values.yaml").read_text()), release


def check_namespaces_databases_and_crds_before_their_users(run):
    api = run["api"]
    for name, level in (("cnpg-system", "restricted"), ("gitea", "baseline"), ("harbor", "baseline"),
                        ("tekton-operator", "restricted"), ("ci", "baseline")):
        labels = api.get("v1", "Namespace", name)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == level, name
    assert "cellplatform" not in json.dumps(api.get("v1", "Namespace", "kyverno")["metadata"].get("labels", {}))
    writes, events = api.writes(), api.events
    established = {e["name"]: e["seq"] for e in events if e["verb"] == "established"}
    helm_first = {ns: min(e["seq"] for e in writes if e["field_manager"] == "helm" and e["namespace"] == ns)
                  for ns in ("gitea", "harbor")}
    # each database was Ready (and Harbor's token certificate issued) before its application's release
    for want, ns in ((CONDITIONS[0], "gitea"), (CONDITIONS[1], "harbor"), (CONDITIONS[2], "harbor")):
        assert run["conditions"][want] < helm_first[ns], want
    crs = {"Cluster": "clusters.postgresql.cnpg.io", "TektonConfig": "tektonconfigs.operator.tekton.dev",
           "Task": "tasks.tekton.dev", "Pipeline": "pipelines.tekton.dev", "EventListener": "eventlisteners.triggers.tekton.dev",
           "TriggerTemplate": "triggertemplates.triggers.tekton.dev", "ImageValidatingPolicy":
           "imagevalidatingpolicies.policies.kyverno.io", "PodMonitor": "podmonitors.monitoring.coreos.com",
           "ServiceMonitor": "servicemonitors.monitoring.coreos.com"}
    for event in writes:
        if event["kind"] in crs and event["field_manager"] == "cellplatform":
            assert established[crs[event["kind"]]] < event["seq"], event
    # the monitors of our own manifests (the databases, what the Tekton operator installs, the EventListener)
    monitors = [("PodMonitor", "gitea-db", "gitea"), ("PodMonitor", "harbor-db", "harbor"),
                ("ServiceMonitor", "tekton-components", "tekton-operator"), ("ServiceMonitor", "el-gitea", "ci")]
    assert all(api.get("monitoring.coreos.com/v1", kind, name, ns) for kind, name, ns in monitors)
    assert api.get("monitoring.coreos.com/v1", "PodMonitor", "gitea-db", "gitea")["spec"]["selector"] == {
        "matchLabels": {"cnpg.io/cluster": "gitea-db"}}
    # no admission webhook refused anything: the gates waited for the endpoints
    assert [e for e in events if (e["code"] or 0) >= 500] == []
    # the CI pipeline's objects only after the operator reported Tekton Ready
    ci_first = min(e["seq"] for e in writes if e["namespace"] == "ci" and e["kind"] == "Task")
    assert run["tekton_ready"] < ci_first
    task = api.get("tekton.dev/v1", "Task", "build-image", "ci")
    assert [s["name"] for s in task["spec"]["steps"]] == ["clone", "build-and-push"]
    assert "--registry-certificate=harbor.cell.lan=/etc/cellplatform-ca/ca.crt" in task["spec"]["steps"][1]["args"]
    tt = api.get("triggers.tekton.dev/v1beta1", "TriggerTemplate", "build-image", "ci")
    pvc = tt["spec"]["resourcetemplates"][0]["spec"]["workspaces"][0]["volumeClaimTemplate"]["spec"]
    assert pvc["storageClassName"] == "longhorn"
    policy = api.get("policies.kyverno.io/v1", "ImageValidatingPolicy", "verify-ci-images")
    assert policy["spec"]["validationActions"] == ["Audit"]
    assert policy["spec"]["matchImageReferences"] == [{"glob": "harbor.cell.lan/ci/*"}]


def check_secrets_from_the_encrypted_inventory_and_generated_once(run):
    api, secrets = run["api"], run["secrets"]
    assert _secret(api, "gitea", "gitea-admin") == {
        "username": "gitea-admin", "email": "platform@cell.lan", "password": secrets.platform["gitea_admin_password"]}
    assert _secret(api, "harbor", "harbor-admin") == {"HARBOR_ADMIN_PASSWORD": secrets.platform["harbor_admin_password"]}
    # ... and the same objects are in the GitOps tree SOPS-encrypted, for Argo CD's KSOPS
    for component, ns, name in (("gitea", "gitea", "gitea-admin"), ("harbor", "harbor", "harbor-admin")):
        rendered = run["build"] / "l3" / component / "secrets" / ("%s.sops.yaml" % name)
        assert sops_utils.recipients_of_file(str(rendered)) == [secrets.recipient]
        doc = yaml.safe_load(sops_utils.decrypt_file(str(rendered), str(secrets.identity)))
        assert doc["stringData"] == _secret(api, ns, name), name
        app = yaml.safe_load((run["build"] / "apps" / ("%s.yaml" % component)).read_text())
        assert any(src.get("path") == "l3/%s/secrets" % component and "kustomize" in src for src in app["spec"]["sources"])
    # what L3 generates is kept as SOPS files encrypted to the cell's recipients, and no age file
    for name in ("delivery-credentials.sops.yaml", "image-signing.key.sops", "image-signing.pub.sops"):
        assert secrets.is_sops_for_the_cell(name), name
    assert not [p.name for p in secrets.dir.iterdir() if p.name.endswith(".age")]
    stored = yaml.safe_load(secrets.read("delivery-credentials.sops.yaml"))
    internal = _secret(api, "harbor", "harbor-generated")
    assert internal == {"secretKey": stored["harbor_secret_key"], "secret": stored["harbor_core_secret"],
                        "CSRF_KEY": stored["harbor_xsrf_key"], "JOBSERVICE_SECRET": stored["harbor_jobservice_secret"],
                        "REGISTRY_HTTP_SECRET": stored["harbor_registry_http_secret"],
                        "REGISTRY_PASSWD": stored["harbor_registry_password"],
                        "REGISTRY_HTPASSWD": stored["harbor_registry_htpasswd"]}
    assert len(internal["secretKey"]) == 16 and len(internal["CSRF_KEY"]) == 32
    user, _, hashed = internal["REGISTRY_HTPASSWD"].partition(":")
    assert user == "harbor_registry_user" and hashed.startswith("$2")
    import warnings
    with warnings.catch_warnings():   # crypt(3) (libxcrypt) checks the bcrypt line; deprecated, present in 3.12
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # noqa: PLC0415
    assert crypt.crypt(internal["REGISTRY_PASSWD"], hashed) == hashed
    # the values file only names the Secrets
    values = (run["build"] / "l3/harbor/values.yaml").read_text()
    assert "harbor-generated" in values and stored["harbor_core_secret"] not in values
    assert _secret(api, "ci", "gitea-webhook") == {"secret": stored["ci_webhook_secret"]}
    # Gitea's /metrics (published through the Gateway with the UI) answers only its generated token,
    # which the ServiceMonitor sends; the values name the Secret, never the token
    assert _secret(api, "gitea", "gitea-metrics") == {"token": stored["gitea_metrics_token"]}
    assert len(stored["gitea_metrics_token"]) == 40
    gitea_values = yaml.safe_load((run["build"] / "l3/gitea/values.yaml").read_text())
    assert {"name": "GITEA__METRICS__TOKEN", "valueFrom": {"secretKeyRef": {"name": "gitea-metrics", "key": "token"}}} \
        in gitea_values["gitea"]["additionalConfigFromEnvs"]
    monitor = api.get("monitoring.coreos.com/v1", "ServiceMonitor", "gitea", "gitea")
    assert monitor["spec"]["endpoints"][0]["authorization"] == {
        "type": "Bearer", "credentials": {"name": "gitea-metrics", "key": "token"}}
    helm_first = min(e["seq"] for e in api.writes() if e["field_manager"] == "helm" and e["namespace"] == "gitea")
    assert min(e["seq"] for e in api.writes() if e["kind"] == "Secret" and e["name"] == "gitea-metrics") < helm_first


def check_signing_key_created_once_for_chains_and_kyverno(run):
    api, secrets = run["api"], run["secrets"]
    key_pem = secrets.read("image-signing.key.sops")
    pub_pem = secrets.read("image-signing.pub.sops")
    key = serialization.load_pem_private_key(key_pem, None)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")          # PKCS#8, what Chains reads
    assert isinstance(key.curve, ec.SECP256R1)
    assert key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) \
        .strip() == pub_pem.strip()
    signing = _secret(api, "tekton-pipelines", "signing-secrets")
    assert signing["x509.pem"].strip() == key_pem.decode().strip()
    cm = api.get("v1", "ConfigMap", "cellplatform-image-signing", "kyverno")
    assert cm["data"]["cosign.pub"].strip() == pub_pem.decode().strip()
    ca = api.get("v1", "ConfigMap", "cellplatform-ca", "ci")
    assert "BEGIN CERTIFICATE" in ca["data"]["ca.crt"]
    # the plaintext key lived only in the cell's plaintext directory, which the pipeline empties (and
    # cleans of what a killed run left), never in the layer's work directory
    assert str(run["tmp"] / "work" / "plaintext" / "l3-signing.key") in run["out1"]
    assert not list((run["tmp"] / "work" / "l3").glob("*signing*"))
    assert list((run["tmp"] / "work" / "plaintext").iterdir()) == []


def check_harbor_configured_through_its_api(run):
    harbor, api, secrets = run["harbor"], run["api"], run["secrets"]
    regs = {r["name"]: r for r in harbor.state["registries"].values()}
    assert {n: (r["type"], r["url"]) for n, r in regs.items()} == PROXY_CACHES
    projects = harbor.state["projects"]
    for name in PROXY_CACHES:
        assert projects[name]["registry_id"] == regs[name]["id"] and projects[name]["metadata"]["public"] == "true"
    assert projects["ci"]["registry_id"] == 0 and projects["ci"]["metadata"] == {"public": "false", "auto_scan": "true"}
    robot = harbor.state["robots"]["robot$ci+tekton"]
    assert robot["duration"] == -1 and robot["permissions"][0]["namespace"] == "ci"
    assert {"resource": "repository", "action": "push"} in robot["permissions"][0]["access"]
    stored = yaml.safe_load(secrets.read("delivery-credentials.sops.yaml"))
    assert stored["harbor_robot_secret"] == robot["secret"]
    for ns, name in (("ci", "harbor-ci-push"), ("kyverno", "harbor-ci-pull")):
        config = json.loads(_secret(api, ns, name)[".dockerconfigjson"])
        auth = config["auths"]["harbor.cell.lan"]
        assert (auth["username"], auth["password"]) == ("robot$ci+tekton", robot["secret"])
        assert base64.b64decode(auth["auth"]).decode() == "robot$ci+tekton:%s" % robot["secret"]
        assert api.get("v1", "Secret", name, ns)["type"] == "kubernetes.io/dockerconfigjson"


def check_gitea_configured_and_the_tree_pushed(run):
    gitea, api, secrets = run["gitea"], run["api"], run["secrets"]
    assert {k: v["visibility"] for k, v in gitea.state["orgs"].items()} == {"apps": "private", "platform": "private"}
    repo = gitea.state["repos"]["platform/cell"]
    assert repo["private"] is True and repo["default_branch"] == "main"
    hooks = gitea.state["hooks"]["apps"]
    assert len(hooks) == 1
    stored = yaml.safe_load(secrets.read("delivery-credentials.sops.yaml"))
    assert hooks[0]["url"] == "http://el-gitea.ci.svc.cluster.local:8080"
    assert (hooks[0]["events"], hooks[0]["active"], hooks[0]["content_type"]) == (["push"], True, "json")
    assert hooks[0]["secret"] == stored["ci_webhook_secret"] == _secret(api, "ci", "gitea-webhook")["secret"]
    token = gitea.state["tokens"]["cellplatform-ci"]
    assert token["scopes"] == ["read:repository"] and stored["gitea_ci_token"] == token["sha1"]
    assert _secret(api, "ci", "gitea-clone") == {"username": "gitea-admin", "password": token["sha1"]}
    # the branch holds exactly the rendered tree (git computes the tree hash of build/cell independently)
    scratch = run["tmp"] / "check.git"
    subprocess.run(["git", "init", "-q", "--bare", str(scratch)], check=True)
    base = ["git", "--git-dir=%s" % scratch, "--work-tree=%s" % run["build"]]
    subprocess.run(base + ["add", "--all"], check=True)
    tree = subprocess.run(base + ["write-tree"], check=True, capture_output=True, text=True).stdout.strip()
    assert gitea.branch_tree("platform", "cell", "main") == tree
    assert len(gitea.commits("platform", "cell", "main")) == 1
    # the plaintext git credentials never stay in the work directory
    assert not list((run["tmp"] / "work" / "l3").glob("*git-credentials*"))
    assert list((run["tmp"] / "work" / "plaintext").iterdir()) == []


def check_second_run_changes_nothing(run):
    assert run["rc2"] == 0, run["out2"][-6000:]
    assert recap(run["out2"])["changed"] == 0, run["out2"][-6000:]
    assert [c for c in run["run2"]["calls"] if c["command"] in ("upgrade", "install")] == []
    assert len(run["api"].writes()) == run["writes1"]
    assert run["run2"]["api_writes"] == []
    assert run["run2"]["kept"] == run["kept"] and len(run["kept"]) == 3
    assert len(run["gitea"].commits("platform", "cell", "main")) == 1


def check_no_secret_in_build_tree_helm_records_or_output(run):
    secrets = run["secrets"]
    stored = yaml.safe_load(secrets.read("delivery-credentials.sops.yaml"))
    key_body = "".join(secrets.read("image-signing.key.sops").decode().strip().splitlines()[1:-1])
    values = secrets.secret_values + [v for k, v in stored.items() if k != "harbor_registry_htpasswd"] + [key_body[:40]]
    texts = {"check output": run["out0"], "run 1 -vvv": run["out1"], "run 2 -vvv": run["out2"]}
    for path in list(run["build"].rglob("*")) + list(run["state"].glob("*")):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    leaks = ["%s in %s" % (value[:10], where) for value in values for where, text in texts.items()
             if value in text.replace("\n", "")]
    assert leaks == []


def check_a_lost_robot_secret_stops_the_run(run):
    secrets = run["secrets"]
    path = secrets.dir / "delivery-credentials.sops.yaml"
    original = path.read_bytes()
    stored = yaml.safe_load(secrets.read("delivery-credentials.sops.yaml"))
    del stored["harbor_robot_secret"]
    secrets.write("delivery-credentials.sops.yaml", yaml.safe_dump(stored))
    try:
        rc, out = run_playbook("playbooks/l3.yml", run["env"], run["extra"], ["-t", "harbor"])
    finally:
        path.write_bytes(original)
    assert rc != 0
    text = re.sub(r"\s+", " ", out)
    assert "Harbor has the robot account robot$ci+tekton, but its secret is not in" in text
    assert "delete the robot account in Harbor" in text
    assert len(run["harbor"].state["robots"]) == 1     # nothing was replaced


@pytest.mark.slow
def test_l3_apply_end_to_end(l3_run):
    """One module-scoped set of playbook runs; each check names what failed."""
    check_check_mode_on_a_fresh_cluster_changes_nothing(l3_run)
    check_first_run_succeeds(l3_run)
    check_releases_in_order_with_pinned_charts_and_rendered_values(l3_run)
    check_namespaces_databases_and_crds_before_their_users(l3_run)
    check_secrets_from_the_encrypted_inventory_and_generated_once(l3_run)
    check_signing_key_created_once_for_chains_and_kyverno(l3_run)
    check_harbor_configured_through_its_api(l3_run)
    check_gitea_configured_and_the_tree_pushed(l3_run)
    check_second_run_changes_nothing(l3_run)
    check_no_secret_in_build_tree_helm_records_or_output(l3_run)
    check_a_lost_robot_secret_stops_the_run(l3_run)


# --- contract tests of the Gitea and Harbor doubles themselves (fast; no ansible) ----------------

def _call(double, method, path, body=None, auth=True, headers=None):
    import ssl
    import urllib.error
    import urllib.request
    context = ssl.create_default_context(cafile=str(double._test_ca))
    req = urllib.request.Request(double.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers=dict(headers or {}, **({"Content-Type": "application/json"} if body else {})))
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(
            ("%s:%s" % (double.username, double.password)).encode()).decode())
    try:
        with urllib.request.urlopen(req, context=context, timeout=10) as resp:   # 127.0.0.1 only
            data = resp.read()
            return resp.status, dict(resp.headers), json.loads(data) if data else None
    except urllib.error.HTTPError as err:
        data = err.read()
        return err.code, dict(err.headers), json.loads(data) if data.startswith((b"{", b"[")) else data.decode()


@pytest.fixture
def doubles(tmp_path):
    tls, ca_pem = make_tls(tmp_path)
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    gitea = GiteaDouble(tls / "server.crt", tls / "server.key", "ops", "pw-gitea", tmp_path / "git").start()
    harbor = HarborDouble(tls / "server.crt", tls / "server.key", "pw-harbor", unreachable=["registry.offline.test"]).start()
    for double in (gitea, harbor):
        double._test_ca = tmp_path / "ca.crt"
    try:
        yield gitea, harbor, tmp_path
    finally:
        gitea.stop()
        harbor.stop()


def test_gitea_double_contract(doubles):
    gitea, _harbor, tmp = doubles
    status, headers, _ = _call(gitea, "GET", "/api/v1/version", auth=False)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="Gitea"'
    gitea.starting = True
    assert _call(gitea, "GET", "/api/v1/version")[0] == 502
    gitea.starting = False
    assert _call(gitea, "GET", "/api/v1/orgs/apps")[0] == 404
    assert _call(gitea, "POST", "/api/v1/orgs", {"username": "apps", "visibility": "private"})[0] == 201
    assert _call(gitea, "POST", "/api/v1/orgs", {"username": "apps"})[0] == 422          # exists
    assert _call(gitea, "POST", "/api/v1/orgs", {"username": "admin"})[0] == 422         # reserved
    assert _call(gitea, "POST", "/api/v1/orgs/nope/repos", {"name": "x"})[0] == 404
    assert _call(gitea, "POST", "/api/v1/orgs/apps/repos", {"name": "svc", "private": True})[0] == 201
    assert _call(gitea, "POST", "/api/v1/orgs/apps/repos", {"name": "svc"})[0] == 409
    hook = {"type": "gitea", "active": True, "events": ["push"],
            "config": {"url": "http://el.ci.svc:8080", "content_type": "json", "secret": "s3cret"}}
    status, _, created = _call(gitea, "POST", "/api/v1/orgs/apps/hooks", hook)
    assert status == 201 and "secret" not in created["config"]
    assert "s3cret" not in json.dumps(_call(gitea, "GET", "/api/v1/orgs/apps/hooks")[2])
    status, _, token = _call(gitea, "POST", "/api/v1/users/ops/tokens", {"name": "ci", "scopes": ["read:repository"]})
    assert status == 201 and len(token["sha1"]) == 40
    assert _call(gitea, "GET", "/api/v1/users/ops/tokens")[2][0]["sha1"] == ""
    assert _call(gitea, "POST", "/api/v1/users/ops/tokens", {"name": "ci"})[0] == 400
    # git over the smart HTTP protocol: the credential challenge, then a push and a clone
    work = tmp / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README").write_text("hello\n")
    os_env = dict(__import__("os").environ, GIT_SSL_CAINFO=str(gitea._test_ca), GIT_TERMINAL_PROMPT="0")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["add", "README"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "first"], check=True)
    url = gitea.url + "/apps/svc.git"
    denied = subprocess.run(git + ["-c", "credential.helper=", "push", "-q", url, "main"], capture_output=True, text=True,
                            env=os_env)
    # no credentials: the 401 challenge makes git ask for them, and it may not prompt here
    assert denied.returncode != 0 and "terminal prompts disabled" in denied.stderr, denied.stderr
    creds = tmp / "creds"
    creds.write_text("https://ops:pw-gitea@%s\n" % gitea.url.split("//", 1)[1])
    helper = ["-c", "credential.helper=", "-c", "credential.helper=store --file=%s" % creds]
    subprocess.run(git + helper + ["push", "-q", url, "main"], check=True, env=os_env)
    assert gitea.branch_tree("apps", "svc", "main") == subprocess.run(
        git + ["rev-parse", "HEAD^{tree}"], capture_output=True, text=True, check=True).stdout.strip()
    clone = subprocess.run(["git"] + helper + ["clone", "-q", url, str(tmp / "clone")], capture_output=True, text=True,
                           env=os_env)
    assert clone.returncode == 0, clone.stderr
    assert (tmp / "clone" / "README").read_text() == "hello\n"


def test_harbor_double_contract(doubles):
    _gitea, harbor, _tmp = doubles
    assert _call(harbor, "GET", "/api/v2.0/registries", auth=False)[0] == 401
    status, headers, body = _call(harbor, "POST", "/api/v2.0/registries",
                                  {"name": "ghcr", "type": "github-ghcr", "url": "https://ghcr.io"})
    assert status == 201 and body is None and headers["Location"] == "/api/v2.0/registries/1"
    assert _call(harbor, "POST", "/api/v2.0/registries", {"name": "ghcr", "type": "github-ghcr",
                                                           "url": "https://ghcr.io"})[0] == 409
    status, _, body = _call(harbor, "POST", "/api/v2.0/registries", {"name": "off", "type": "docker-registry",
                                                                       "url": "https://registry.offline.test"})
    assert status == 400 and body["errors"][0]["message"] == "the registry is unhealthy"
    assert _call(harbor, "POST", "/api/v2.0/registries", {"name": "x", "type": "dockerhub", "url": "https://x"})[0] == 400
    assert _call(harbor, "HEAD", "/api/v2.0/projects?project_name=ghcr")[0] == 404
    assert _call(harbor, "POST", "/api/v2.0/projects", {"project_name": "ghcr", "registry_id": 1,
                                                         "metadata": {"public": "true"}})[0] == 201
    assert _call(harbor, "POST", "/api/v2.0/projects", {"project_name": "ghcr"})[0] == 409
    assert _call(harbor, "POST", "/api/v2.0/projects", {"project_name": "Bad"})[0] == 400
    assert _call(harbor, "POST", "/api/v2.0/projects", {"project_name": "p", "registry_id": 9})[0] == 500
    assert _call(harbor, "HEAD", "/api/v2.0/projects?project_name=ghcr")[0] == 200
    assert [p["name"] for p in _call(harbor, "GET", "/api/v2.0/projects?page_size=100")[2]] == ["library", "ghcr"]
    project = _call(harbor, "GET", "/api/v2.0/projects/ghcr", headers={"X-Is-Resource-Name": "true"})[2]
    assert _call(harbor, "GET", "/api/v2.0/robots?q=Level%3Dproject")[0] == 400
    robot = {"name": "tekton", "level": "project", "duration": -1,
             "permissions": [{"kind": "project", "namespace": "ghcr", "access": [{"resource": "repository", "action": "push"}]}]}
    status, _, created = _call(harbor, "POST", "/api/v2.0/robots", robot)
    assert status == 201 and created["name"] == "robot$ghcr+tekton" and created["secret"]
    assert _call(harbor, "POST", "/api/v2.0/robots", robot)[0] == 409
    listed = _call(harbor, "GET", "/api/v2.0/robots?q=Level%%3Dproject%%2CProjectID%%3D%d" % project["project_id"])[2]
    assert [r["name"] for r in listed] == ["robot$ghcr+tekton"] and "secret" not in listed[0]
