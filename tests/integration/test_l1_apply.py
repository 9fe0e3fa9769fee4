"""L1 apply path end to end against the test doubles (helm double + in-process fake Kubernetes API).

Runs playbooks/l1.yml in apply mode (--check on the fresh cluster, then twice at -vvv) and
checks what a real cluster would have been asked to do: namespaces (with PodSecurity labels)
before releases, releases in order with the pinned chart versions and the rendered values
files, custom resources only after their CRDs are Established and the MetalLB and cert-manager
webhooks answer, credentials as Secrets built from the encrypted inventory secrets, the cell's
root CA created once (community.crypto, stored age-encrypted) as the CA issuer's Secret, the
shared Gateway at its reserved address only after the ClusterIssuer is Ready and gated on its
certificate and on Cilium programming it, check mode without any write, a second run that
changes nothing, and no secret value in build/ or any output. The cluster starts with what L0
leaves: the Gateway API CRDs and Cilium's GatewayClass.

Run inside scripts/netns-run (loopback only):
    scripts/netns-run python -m pytest tests/integration/test_l1_apply.py -q
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from cryptography import x509

from apply_fixtures import (apply_run_setup, Conditions, gateway_api_crds, gateway_class, helm_calls, l1_charts,
                            preinstall, recap, REPO, run_playbook, SecretsDir)
from fake_kube_api import FakeKubeAPI

# Conditions the controllers of the cell report (cert-manager, Cilium): played by Conditions.
CONDITIONS = [("cert-manager.io/v1", "ClusterIssuer", "cellplatform-ca", None, "Ready"),
              ("cert-manager.io/v1", "Certificate", "platform-tls", "gateway", "Ready"),
              ("gateway.networking.k8s.io/v1", "Gateway", "platform", "gateway", "Programmed")]

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils  # noqa: E402



@pytest.fixture(scope="module")
def l1_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l1apply")
    # Readiness lags writes by 4 s, so the gates have to poll (and a missing gate shows up as a
    # retried or rejected custom resource).
    api = FakeKubeAPI(ready_delay=4, crd_delay=4).start()
    try:
        secrets = SecretsDir(tmp, api.kubeconfig())
        charts = tmp / "charts"
        l1_charts(charts)
        env, extra, state, build_root = apply_run_setup(
            tmp, secrets, charts, component_poll_interval=1, component_wait_timeout=30,
            l1_cluster_platform_tls_wait_timeout=30)
        preinstall(api, gateway_api_crds() + [gateway_class()])
        # check mode on the fresh cluster first: must succeed and change nothing anywhere
        writes_before = len(api.writes())
        rc0, out0 = run_playbook("playbooks/l1.yml", env, extra, ["--check", "--diff"])
        check_writes, check_calls = len(api.writes()) - writes_before, helm_calls(state)
        check_build = sorted(str(p) for p in build_root.rglob("*")) if build_root.exists() else []
        check_secrets = sorted(p.name for p in secrets.dir.iterdir())
        with Conditions(api, CONDITIONS, delay=2) as controllers:
            rc1, out1 = run_playbook("playbooks/l1.yml", env, extra, ["-vvv"])
        writes1 = len(api.writes())
        calls1 = helm_calls(state)
        ca_files = {name: (secrets.dir / name).read_bytes() for name in ("tls-ca.crt.sops", "tls-ca.key.sops")
                    if (secrets.dir / name).exists()}
        rc2, out2 = run_playbook("playbooks/l1.yml", env, extra, ["-vvv"])
        yield {"check_build": check_build, "rc0": rc0, "out0": out0, "check_writes": check_writes, "check_calls": check_calls,
               "check_secrets": check_secrets, "conditions": controllers.set_at, "ca_files": ca_files,
               "api": api, "secrets": secrets, "state": state, "build": build_root / "cell", "tmp": tmp,
               "rc1": rc1, "out1": out1, "rc2": rc2, "out2": out2, "writes1": writes1, "calls1": calls1,
               "calls2": helm_calls(state)[len(calls1):]}
    finally:
        api.stop()


def check_check_mode_on_fresh_cluster_changes_nothing(l1_run):
    assert l1_run["rc0"] == 0, l1_run["out0"][-6000:]
    assert recap(l1_run["out0"])["changed"] > 0          # it reports what the apply would do
    assert l1_run["check_writes"] == 0                   # ... without changing the cluster
    assert [c for c in l1_run["check_calls"] if c["command"] in ("upgrade", "install", "uninstall")] == []
    assert l1_run["check_build"] == []                    # render_files wrote nothing either
    assert "A new root CA of the cell would be generated" in l1_run["out0"]
    assert "tls-ca.crt.sops" not in l1_run["check_secrets"]  # ... and no CA was created


def check_first_run_succeeds(l1_run):
    assert l1_run["rc1"] == 0, l1_run["out1"][-6000:]
    assert recap(l1_run["out1"])["failed"] == 0


def check_releases_in_order_with_pinned_charts_and_rendered_values(l1_run):
    upgrades = [c for c in l1_run["calls1"] if c["command"] == "upgrade"]
    got = [(c["argv"][-2], c["namespace"]) for c in upgrades]
    assert got == [("metallb", "metallb-system"), ("external-dns", "external-dns"),
                   ("cert-manager", "cert-manager"),
                   ("proxmox-cloud-controller-manager", "kube-system"),
                   ("karpenter-provider-proxmox", "kube-system")]
    expected = {
        "metallb": ("0.16.1", "metallb", "https://metallb.github.io/metallb", "l1/metallb/values.yaml"),
        "external-dns": ("1.21.1", "external-dns", "https://kubernetes-sigs.github.io/external-dns/",
                         "l1/external-dns/values.yaml"),
        "cert-manager": ("v1.21.1", "cert-manager", "https://charts.jetstack.io", "l1/cert-manager/values.yaml"),
        "proxmox-cloud-controller-manager": (
            "0.2.18", "oci://ghcr.io/sergelogvinov/charts/proxmox-cloud-controller-manager", None,
            "l1/proxmox-cloud-controller-manager/values.yaml"),
        "karpenter-provider-proxmox": ("0.4.9", "oci://ghcr.io/sergelogvinov/charts/karpenter-provider-proxmox",
                                       None, "l1/karpenter/values.yaml"),
    }
    for call in upgrades:
        release = call["argv"][-2]
        version, chart_ref, repo, values_rel = expected[release]
        argv = call["argv"]
        assert "--version=%s" % version in argv
        assert argv[-1] == chart_ref
        if repo:
            assert "--repo=%s" % repo in argv
        else:
            assert not any(a.startswith("--repo") for a in argv)
        assert "--wait" in argv and "-i" in argv and "--reset-values" in argv
        # helm got exactly the values the render step wrote (the file the Argo CD Application uses)
        assert len(call["values_files"]) == 1, call
        given = yaml.safe_load(list(call["values_files"].values())[0])
        assert given == yaml.safe_load((l1_run["build"] / values_rel).read_text()), release
        assert call["kubeconfig_server"] == l1_run["api"].url


def check_namespaces_with_podsecurity_labels_before_releases(l1_run):
    api = l1_run["api"]
    ns = api.get("v1", "Namespace", "metallb-system")
    assert ns and all(ns["metadata"]["labels"]["pod-security.kubernetes.io/%s" % m] == "privileged"
                      for m in ("enforce", "audit", "warn"))
    ext = api.get("v1", "Namespace", "external-dns")
    assert ext and "pod-security.kubernetes.io/enforce" not in ext["metadata"].get("labels", {})
    for name in ("cert-manager", "gateway"):
        assert api.get("v1", "Namespace", name)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "cellplatform" not in str(api.get("v1", "Namespace", "kube-system")["metadata"].get("labels"))
    writes = api.writes()
    first_ns = min(e["seq"] for e in writes if e["kind"] == "Namespace" and e["name"] == "metallb-system")
    first_helm = min(e["seq"] for e in writes if e["field_manager"] == "helm")
    assert first_ns < first_helm


def check_custom_resources_only_after_crds_established_and_webhook(l1_run):
    api = l1_run["api"]
    events = api.events
    established = {e["name"]: e["seq"] for e in events if e["verb"] == "established"}
    crs = [e for e in api.writes() if e["apiVersion"].split("/")[0] in
           ("metallb.io", "externaldns.k8s.io", "karpenter.sh", "karpenter.proxmox.sinextra.dev", "cert-manager.io")]
    assert {(e["kind"], e["name"]) for e in crs} >= {
        ("IPAddressPool", "cell-pool"), ("IPAddressPool", "cell-gateway"), ("L2Advertisement", "cell-l2"),
        ("DNSEndpoint", "kubernetes-api"), ("NodePool", "dynamic"), ("ProxmoxNodeClass", "talos"),
        ("ProxmoxUnmanagedTemplate", "talos"), ("ClusterIssuer", "cellplatform-ca"), ("Certificate", "platform-tls")}
    plural = {"IPAddressPool": "ipaddresspools.metallb.io", "L2Advertisement": "l2advertisements.metallb.io",
              "DNSEndpoint": "dnsendpoints.externaldns.k8s.io", "NodePool": "nodepools.karpenter.sh",
              "ProxmoxNodeClass": "proxmoxnodeclasses.karpenter.proxmox.sinextra.dev",
              "ProxmoxUnmanagedTemplate": "proxmoxunmanagedtemplates.karpenter.proxmox.sinextra.dev",
              "ClusterIssuer": "clusterissuers.cert-manager.io", "Certificate": "certificates.cert-manager.io"}
    for e in crs:
        assert established[plural[e["kind"]]] < e["seq"], e
    # The MetalLB and cert-manager webhooks rejected nothing: the role waited for their endpoints.
    rejected = [e for e in events if e["kind"] in ("IPAddressPool", "L2Advertisement", "ClusterIssuer", "Certificate")
                and (e["code"] or 0) >= 500]
    assert rejected == []
    # The LoadBalancer pool without the Gateway's address, and that address in a pool of its own.
    pool = api.get("metallb.io/v1beta1", "IPAddressPool", "cell-pool", "metallb-system")
    assert pool["spec"]["addresses"] == ["192.168.100.201-192.168.100.250"] and pool["spec"]["autoAssign"] is True
    reserved = api.get("metallb.io/v1beta1", "IPAddressPool", "cell-gateway", "metallb-system")
    assert reserved["spec"]["addresses"] == ["192.168.100.200/32"] and reserved["spec"]["autoAssign"] is False
    l2 = api.get("metallb.io/v1beta1", "L2Advertisement", "cell-l2", "metallb-system")
    assert l2["spec"]["ipAddressPools"] == ["cell-pool", "cell-gateway"]
    nodepool = api.get("karpenter.sh/v1", "NodePool", "dynamic")
    assert nodepool["spec"]["limits"] == {"cpu": "40", "memory": "81920Mi"}
    dnse = api.get("externaldns.k8s.io/v1alpha1", "DNSEndpoint", "kubernetes-api", "external-dns")
    assert dnse["spec"]["endpoints"][0]["dnsName"] == "api.cell.lan"
    assert dnse["spec"]["endpoints"][0]["targets"] == ["192.168.100.50"]


def check_secrets_created_from_encrypted_inventory(l1_run):
    api, secrets = l1_run["api"], l1_run["secrets"]

    def data(ns, name):
        obj = api.get("v1", "Secret", name, ns)
        assert obj, name
        return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}

    assert data("external-dns", "external-dns-credentials") == {
        "tsig-secret": secrets.platform["external_dns_tsig_secret"]}
    cfg = yaml.safe_load(data("kube-system", "karpenter-provider-proxmox")["config.yaml"])
    assert cfg["clusters"][0]["token_id"] == "kubernetes@pve!cell"
    assert cfg["clusters"][0]["token_secret"] == secrets.proxmox_token_secret
    assert cfg["clusters"][0]["url"] == "https://pve.cell.lan:8006/api2/json"
    assert cfg["clusters"][0]["region"] == "pve"
    ccm = yaml.safe_load(data("kube-system", "proxmox-cloud-controller-manager")["config.yaml"])
    assert ccm["clusters"][0]["token_secret"] == secrets.proxmox_token_secret
    assert ccm["clusters"][0]["insecure"] is False
    values = data("kube-system", "karpenter-template-values")
    assert values == {"machineToken": secrets.talos["trustdinfo"]["token"],
                      "machineCA": secrets.talos["certs"]["os"]["crt"],
                      "clusterID": secrets.talos["cluster"]["id"],
                      "clusterSecret": secrets.talos["cluster"]["secret"]}
    template = data("kube-system", "karpenter-template")["user-data"]
    assert template.strip() == (l1_run["build"] / "l1/karpenter/talos-worker.yaml.gotmpl").read_text().strip()
    assert "{{ .Values.machineToken }}" in template
    # the Secret for external-dns is only referenced by name in the values file ...
    values_file = (l1_run["build"] / "l1/external-dns/values.yaml").read_text()
    assert "external-dns-credentials" in values_file
    # ... and is in the GitOps tree SOPS-encrypted: the same object, for Argo CD's KSOPS
    rendered = l1_run["build"] / "l1/external-dns/secrets/external-dns-credentials.sops.yaml"
    assert secrets.platform["external_dns_tsig_secret"] not in rendered.read_text()
    doc = yaml.safe_load(secrets_read(rendered, secrets))
    assert doc["stringData"] == data("external-dns", "external-dns-credentials")
    assert doc["metadata"] == {k: v for k, v in api.get("v1", "Secret", "external-dns-credentials", "external-dns")[
        "metadata"].items() if k in ("name", "namespace", "labels")}
    app = yaml.safe_load((l1_run["build"] / "apps/external-dns.yaml").read_text())
    assert any(src.get("path") == "l1/external-dns/secrets" and "kustomize" in src for src in app["spec"]["sources"])


def secrets_read(path, secrets):
    """The plaintext of a SOPS file of the build tree, opened with the cell's identity."""
    return sops_utils.decrypt_file(str(path), str(secrets.identity))


def check_root_ca_created_once_as_the_ca_issuers_secret(l1_run):
    api, secrets = l1_run["api"], l1_run["secrets"]
    crt = secrets_read(secrets.dir / "tls-ca.crt.sops", secrets)
    key = secrets_read(secrets.dir / "tls-ca.key.sops", secrets)
    cert = x509.load_pem_x509_certificate(crt)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == "cell platform root CA"
    assert cert.subject == cert.issuer                    # self-signed: the root
    assert 3640 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 3651
    secret = api.get("v1", "Secret", "cellplatform-ca", "cert-manager")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data["tls.crt"].strip() == crt.strip() == data["ca.crt"].strip() and data["tls.key"].strip() == key.strip()
    issuer = api.get("cert-manager.io/v1", "ClusterIssuer", "cellplatform-ca")
    assert issuer["spec"] == {"ca": {"secretName": "cellplatform-ca"}}
    # the Secret existed before cert-manager was installed, the issuer only after its webhook answered
    writes = api.writes()
    secret_seq = min(e["seq"] for e in writes if e["kind"] == "Secret" and e["name"] == "cellplatform-ca")
    release_seq = min(e["seq"] for e in writes if e["field_manager"] == "helm" and e["namespace"] == "cert-manager")
    assert secret_seq < release_seq
    # rerun: the CA is never regenerated, no plaintext CA file stays anywhere in the work dir
    assert {n: (secrets.dir / n).read_bytes() for n in l1_run["ca_files"]} == l1_run["ca_files"]
    assert len(l1_run["ca_files"]) == 2
    assert sorted(p.name for p in (l1_run["tmp"] / "work").rglob("ca.*")) == []
    l1_run["ca_key"] = key


def check_shared_gateway_at_its_reserved_address_after_the_issuer(l1_run):
    api = l1_run["api"]
    gateway = api.get("gateway.networking.k8s.io/v1", "Gateway", "platform", "gateway")
    assert gateway["spec"]["gatewayClassName"] == "cilium"
    assert gateway["spec"]["addresses"] == [{"type": "IPAddress", "value": "192.168.100.200"}]
    assert gateway["spec"]["infrastructure"]["annotations"] == {"metallb.io/loadBalancerIPs": "192.168.100.200"}
    https = next(lis for lis in gateway["spec"]["listeners"] if lis["name"] == "https")
    assert https["hostname"] == "*.cell.lan" and https["tls"]["certificateRefs"][0]["name"] == "platform-tls"
    assert https["allowedRoutes"]["namespaces"]["from"] == "All"
    cert = api.get("cert-manager.io/v1", "Certificate", "platform-tls", "gateway")
    assert cert["spec"]["dnsNames"] == ["*.cell.lan"]
    assert cert["spec"]["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "cellplatform-ca"}
    redirect = api.get("gateway.networking.k8s.io/v1", "HTTPRoute", "https-redirect", "gateway")
    assert redirect["spec"]["rules"][0]["filters"][0]["requestRedirect"] == {"scheme": "https", "statusCode": 301}
    # the Gateway's objects were sent only once the ClusterIssuer was Ready, and the gate waited
    # for the certificate and for Cilium to program the Gateway
    issuer_ready = l1_run["conditions"][CONDITIONS[0]]
    gateway_writes = [e["seq"] for e in api.writes() if e["namespace"] == "gateway" and e["kind"] != "Namespace"]
    assert gateway_writes and min(gateway_writes) > issuer_ready
    waited = " ".join(re.findall(r"gateway: ready after \d+s \(([^)]*)", re.sub(r"\s+", " ", l1_run["out1"])))
    assert "Certificate gateway/platform-tls: Ready=True" in waited, waited
    assert "Gateway gateway/platform: Programmed=True" in waited, waited


def check_gates_held_every_dependent_step(l1_run):
    """No dependent step had to be retried: the gates (CRDs Established, rollouts complete,
    webhook endpoints ready) waited instead, so custom resources were never sent too early."""
    retried = re.findall(r"FAILED - RETRYING: \[localhost\]: (?:\S+ : )?([^(]+)", l1_run["out1"])
    assert retried == [], retried
    waited = dict(re.findall(r"([a-z0-9-]+): ready after (\d+)s", l1_run["out1"]))
    assert {"metallb", "external-dns", "cert-manager", "gateway", "proxmox-cloud-controller-manager",
            "karpenter"} <= set(waited), waited
    # the fake API makes objects ready 4 s after they are written: the gates did poll
    assert max(int(s) for s in waited.values()) >= 2, waited
    assert "metallb: waiting up to 30s for CustomResourceDefinition ipaddresspools.metallb.io" in l1_run["out1"]


def check_second_run_changes_nothing(l1_run):
    assert l1_run["rc2"] == 0, l1_run["out2"][-6000:]
    counts = recap(l1_run["out2"])
    assert counts["changed"] == 0, l1_run["out2"][-6000:]
    assert [c for c in l1_run["calls2"] if c["command"] in ("upgrade", "install")] == []
    assert len(l1_run["api"].writes()) == l1_run["writes1"]


def check_no_secret_in_build_tree_or_verbose_output(l1_run):
    leaks = []
    texts = {"check run output": l1_run["out0"], "run 1 -vvv output": l1_run["out1"],
             "run 2 -vvv output": l1_run["out2"]}
    for path in l1_run["build"].rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    helm_state = l1_run["state"]
    for path in helm_state.glob("*"):
        texts[str(path)] = path.read_text()
    # the root CA's private key (its base64 body) as well
    ca_key = "".join(l1_run["ca_key"].decode().strip().splitlines()[1:-1])
    for value in l1_run["secrets"].secret_values + [ca_key[:40]]:
        for where, text in texts.items():
            if value in text.replace("\n", ""):
                leaks.append("%s in %s" % (value.split("-")[0][:12], where))
    assert leaks == []
    # the plaintext kubeconfig lived only in the private plaintext directory, and not beyond the run
    plaintext = l1_run["tmp"] / "work" / "plaintext"
    assert plaintext.stat().st_mode & 0o777 == 0o700 if plaintext.exists() else True
    assert [str(p) for p in plaintext.rglob("*") if p.is_file()] == []


def check_repository_untouched_by_secrets(l1_run):
    hits = []
    for value in l1_run["secrets"].secret_values:
        for path in (REPO / "build").rglob("*") if (REPO / "build").exists() else []:
            if path.is_file() and value in path.read_text(errors="replace"):
                hits.append(str(path))
    assert hits == []



@pytest.mark.slow
def test_l1_apply_end_to_end(l1_run):
    """One test (one module-scoped pair of playbook runs, also under pytest-xdist) that runs
    every check in order; each check names what failed."""
    check_check_mode_on_fresh_cluster_changes_nothing(l1_run)
    check_first_run_succeeds(l1_run)
    check_releases_in_order_with_pinned_charts_and_rendered_values(l1_run)
    check_namespaces_with_podsecurity_labels_before_releases(l1_run)
    check_custom_resources_only_after_crds_established_and_webhook(l1_run)
    check_secrets_created_from_encrypted_inventory(l1_run)
    check_root_ca_created_once_as_the_ca_issuers_secret(l1_run)
    check_shared_gateway_at_its_reserved_address_after_the_issuer(l1_run)
    check_gates_held_every_dependent_step(l1_run)
    check_second_run_changes_nothing(l1_run)
    check_no_secret_in_build_tree_or_verbose_output(l1_run)
    check_repository_untouched_by_secrets(l1_run)

# --- contract tests of the doubles themselves (fast; no ansible) --------------------------------

def _helm(args, env):
    import subprocess
    import sys
    from apply_fixtures import DOUBLES
    proc = subprocess.run([sys.executable, str(DOUBLES / "helm")] + args, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc.returncode, proc.stdout, proc.stderr


def test_helm_double_contract(tmp_path):
    import os
    from apply_fixtures import write_chart
    write_chart(tmp_path / "charts", "demo", "1.2.3", "v9", [])
    (tmp_path / "v.yaml").write_text("a: {b: 1}\n")
    env = dict(os.environ, HELM_DOUBLE_STATE=str(tmp_path / "s"), HELM_DOUBLE_CHARTS=str(tmp_path / "charts"),
               HELM_NAMESPACE="demo-ns", HELM_DOUBLE_APPLY="0")
    rc, out, _ = _helm(["version"], env)
    assert rc == 0 and re.match(r'version.BuildInfo{Version:"v3\.\d+\.\d+", ', out)
    assert _helm(["list", "--output=yaml", "--filter", "demo", "--deployed"], env)[1] == "[]\n"
    rc, _, err = _helm(["upgrade", "-i", "--bogus", "demo", "demo"], env)
    assert rc == 1 and "unknown flag: --bogus" in err
    rc, _, err = _helm(["--version=9.9.9", "--repo=https://charts.example.invalid", "show", "chart", "demo"], env)
    assert rc == 1 and 'version "9.9.9" not found' in err
    rc, out, _ = _helm(["--version=1.2.3", "--repo=https://charts.example.invalid", "show", "chart", "demo"], env)
    assert rc == 0 and yaml.safe_load(out)["appVersion"] == "v9"
    rc, _, err = _helm(["--version=1.2.3", "--repo=https://charts.example.invalid", "upgrade", "-i", "--reset-values",
                        "--wait", "--timeout", "5m0s", "--values=%s" % (tmp_path / "v.yaml"), "demo", "demo"], env)
    assert rc == 0, err
    listed = yaml.safe_load(_helm(["list", "--output=yaml", "--filter", "demo", "--deployed"], env)[1])
    assert listed[0]["chart"] == "demo-1.2.3" and listed[0]["app_version"] == "v9" and listed[0]["namespace"] == "demo-ns"
    assert yaml.safe_load(_helm(["get", "values", "--output=yaml", "demo"], env)[1]) == {"a": {"b": 1}}
    assert _helm(["get", "values", "--output=yaml", "demo"], dict(env, HELM_NAMESPACE="other"))[0] == 1
    calls = helm_calls(tmp_path / "s")
    upgrade = [c for c in calls if c["command"] == "upgrade" and "--wait" in c["argv"]][0]
    assert upgrade["values_files"] == {str(tmp_path / "v.yaml"): "a: {b: 1}\n"}
    env4 = dict(env, HELM_DOUBLE_VERSION="4.1.0")
    rc, _, err = _helm(["--version=1.2.3", "--repo=x", "upgrade", "-i", "--atomic", "demo", "demo"], env4)
    assert rc == 1 and "unknown flag: --atomic" in err


def test_fake_kube_api_crds_webhooks_and_noop_apply(tmp_path):
    import kubernetes
    from apply_fixtures import crd, webhook
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ApiException, ResourceNotFoundError
    with FakeKubeAPI(auto_ready=False) as api:
        client = DynamicClient(kubernetes.config.new_client_from_config(api.write_kubeconfig(str(tmp_path / "kc"))))
        crds = client.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
        crds.create(body=crd("example.io", "Widget", "widgets", ("v1",)))
        with pytest.raises(ResourceNotFoundError):      # not served before Established
            client.resources.get(api_version="example.io/v1", kind="Widget")
        api.establish("widgets.example.io")
        client.resources.invalidate_cache()
        widgets = client.resources.get(api_version="example.io/v1", kind="Widget")
        body = {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"},
                "spec": {"size": 1}}
        ns_res = client.resources.get(api_version="v1", kind="Namespace")
        ns_res.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hooks"}})
        for obj in webhook("widget-hook", "widget-svc", "example.io", "v1", ["widgets"]):
            res = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            text = json.dumps(obj).replace("{{NAMESPACE}}", "hooks")
            res.create(body=json.loads(text), namespace="hooks" if obj["kind"] != "ValidatingWebhookConfiguration" else None)
        with pytest.raises(ApiException) as exc:        # webhook has no ready endpoint yet
            widgets.server_side_apply(body=body, namespace="default", field_manager="t")
        assert exc.value.status == 500 and "failed calling webhook" in exc.value.body
        api.mark_ready("EndpointSlice", "hooks", "widget-svc-abcde")
        first = widgets.server_side_apply(body=body, namespace="default", field_manager="t").to_dict()
        again = widgets.server_side_apply(body=body, namespace="default", field_manager="t").to_dict()
        assert first["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]
        assert first["metadata"]["generation"] == 1
        body["spec"]["size"] = 2
        changed = widgets.server_side_apply(body=body, namespace="default", field_manager="t").to_dict()
        assert changed["metadata"]["generation"] == 2
        with pytest.raises(ApiException) as exc:        # namespaced object in a missing namespace
            client.resources.get(api_version="v1", kind="Secret").create(
                body={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}},
                namespace="nope")
        assert exc.value.status == 404
        sec = client.resources.get(api_version="v1", kind="Secret").create(
            body={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}},
            namespace="default").to_dict()
        assert sec["data"] == {"k": "dg=="} and "stringData" not in sec
