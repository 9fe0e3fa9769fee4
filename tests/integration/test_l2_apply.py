"""L2 apply path end to end against the test doubles (helm double + in-process fake Kubernetes API).

Runs playbooks/l2.yml in apply mode (-vvv) twice with real community.crypto certificate
generation and checks what a real cluster would have been asked to do:

* releases in order (argocd, kyverno, kyverno-policies, linkerd-crds, linkerd-cni,
  linkerd-control-plane) with the pinned chart versions, repositories and rendered values files;
* namespaces (linkerd-cni privileged) before their releases;
* the AppProject and root app-of-apps only after the Argo CD CRDs are Established; the platform
  policies only after the Kyverno CRDs are Established and its webhook answers; the Linkerd
  control plane only after linkerd-crds' CRDs are Established and the identity ConfigMap and
  issuer Secret exist;
* the repository Secret and the issuer Secret built from the encrypted secrets;
* Argo CD's UI as an HTTPRoute on the shared Gateway (https://argocd.cell.lan), sent after the
  release is ready; the chart's own route stays off (the cluster has what L0 left: the Gateway
  API CRDs);
* a second run that changes nothing; no secret in build/, the helm double's records or -vvv output.

Run inside scripts/netns-run (loopback only):
    scripts/netns-run python -m pytest tests/integration/test_l2_apply.py -q
"""

from __future__ import annotations

import base64
import secrets as pysecrets
from pathlib import Path

import pytest
import yaml

from apply_fixtures import (apply_run_setup, crd, daemonset, deployment, gateway_api_crds, helm_calls, preinstall,
                            recap, run_playbook, SecretsDir, statefulset, webhook, write_chart)
from fake_kube_api import FakeKubeAPI
from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils


ARGO_CRDS = [("Application", "applications"), ("AppProject", "appprojects"), ("ApplicationSet", "applicationsets")]
KYVERNO_CRDS = [("policies.kyverno.io", "ValidatingPolicy", "validatingpolicies", ("v1", "v1beta1"), "Cluster"),
                ("policies.kyverno.io", "PolicyException", "policyexceptions", ("v1", "v1beta1"), "Namespaced"),
                ("kyverno.io", "ClusterPolicy", "clusterpolicies", ("v1",), "Cluster")]
LINKERD_CRDS = [("linkerd.io", "ServiceProfile", "serviceprofiles", ("v1alpha2",)),
                ("policy.linkerd.io", "Server", "servers", ("v1beta3",)),
                ("policy.linkerd.io", "ServerAuthorization", "serverauthorizations", ("v1beta1",)),
                ("policy.linkerd.io", "AuthorizationPolicy", "authorizationpolicies", ("v1alpha1",)),
                ("policy.linkerd.io", "MeshTLSAuthentication", "meshtlsauthentications", ("v1alpha1",)),
                ("policy.linkerd.io", "NetworkAuthentication", "networkauthentications", ("v1alpha1",)),
                ("policy.linkerd.io", "HTTPRoute", "httproutes", ("v1beta3",)),
                ("workload.linkerd.io", "ExternalWorkload", "externalworkloads", ("v1beta1",))]
RELEASES = [  # release, namespace, chart, version, repo, values file
    ("argocd", "argocd", "argo-cd", "10.1.1", "https://argoproj.github.io/argo-helm", "l2/argocd/values.yaml"),
    ("kyverno", "kyverno", "kyverno", "3.9.0", "https://kyverno.github.io/kyverno/", "l2/kyverno/values.yaml"),
    ("kyverno-policies", "kyverno", "kyverno-policies", "3.9.0", "https://kyverno.github.io/kyverno/",
     "l2/kyverno-policies/values.yaml"),
    ("linkerd-crds", "linkerd", "linkerd-crds", "2026.8.3", "https://helm.linkerd.io/edge",
     "l2/linkerd-crds/values.yaml"),
    ("linkerd-cni", "linkerd-cni", "linkerd2-cni", "2026.8.3", "https://helm.linkerd.io/edge",
     "l2/linkerd-cni/values.yaml"),
    ("linkerd-control-plane", "linkerd", "linkerd-control-plane", "2026.8.3", "https://helm.linkerd.io/edge",
     "l2/linkerd-control-plane/values.yaml"),
]


def l2_charts(charts_dir):
    """Chart fixtures: the objects each L2 chart leaves in the cluster that the gates look at."""
    write_chart(charts_dir, "argo-cd", "10.1.1", "v3.4.4",
                [crd("argoproj.io", k, p, ("v1alpha1",)) for k, p in ARGO_CRDS]
                + [deployment("argocd-server"), deployment("argocd-repo-server"),
                   deployment("argocd-applicationset-controller"), statefulset("argocd-application-controller")])
    write_chart(charts_dir, "kyverno", "3.9.0", "v1.19.0",
                [crd(g, k, p, v, s) for g, k, p, v, s in KYVERNO_CRDS]
                + [deployment("kyverno-admission-controller", 3)]
                + [deployment("kyverno-%s-controller" % c, 2) for c in ("background", "cleanup", "reports")]
                + webhook("kyverno-policy-validating-webhook-cfg", "kyverno-svc", "policies.kyverno.io", "v1",
                          ["validatingpolicies"]))
    write_chart(charts_dir, "kyverno-policies", "3.9.0", "v1.19.0", [])
    write_chart(charts_dir, "linkerd-crds", "2026.8.3", "edge-26.8.3",
                [crd(g, k, p, v) for g, k, p, v in LINKERD_CRDS])
    write_chart(charts_dir, "linkerd2-cni", "2026.8.3", "edge-26.8.3", [daemonset("linkerd-cni")])
    cp = [deployment(n, 3) for n in ("linkerd-identity", "linkerd-destination", "linkerd-proxy-injector")]
    cp += [o for o in webhook("linkerd-proxy-injector-webhook-config", "linkerd-proxy-injector", "", "v1", ["pods"])
           if o["kind"] != "ValidatingWebhookConfiguration"]
    write_chart(charts_dir, "linkerd-control-plane", "2026.8.3", "edge-26.8.3", cp)


@pytest.fixture(scope="module")
def l2_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l2apply")
    api = FakeKubeAPI(ready_delay=0.3, crd_delay=0.3).start()
    try:
        secrets = SecretsDir(tmp, api.kubeconfig())
        repo_password = "REPOPASSWORD-%s" % pysecrets.token_hex(12)
        secrets.platform.update({"gitops_repo_username": "argocd", "gitops_repo_password": repo_password})
        secrets.write("platform.sops.yaml", yaml.safe_dump(secrets.platform))
        charts = tmp / "charts"
        l2_charts(charts)
        env, extra, state, build_root = apply_run_setup(
            tmp, secrets, charts, component_wait_timeout=60, component_poll_interval=1)
        env["ANSIBLE_PIPELINING"] = "1"
        preinstall(api, gateway_api_crds())
        rc1, out1 = run_playbook("playbooks/l2.yml", env, extra, ["-vvv"])
        writes1 = len(api.writes())
        calls1 = helm_calls(state)
        rc2, out2 = run_playbook("playbooks/l2.yml", env, extra, ["-vvv"])
        yield {"api": api, "secrets": secrets, "state": state, "build": build_root / "cell", "tmp": tmp,
               "rc1": rc1, "out1": out1, "rc2": rc2, "out2": out2, "writes1": writes1, "calls1": calls1,
               "calls2": helm_calls(state)[len(calls1):], "repo_password": repo_password}
    finally:
        api.stop()


def _seq(api, kind, name, verb=None):
    return [e["seq"] for e in api.writes() if e["kind"] == kind and e["name"] == name
            and (verb is None or e["verb"] == verb)]


def test_first_run_succeeds(l2_run):
    assert l2_run["rc1"] == 0, l2_run["out1"][-8000:]
    assert recap(l2_run["out1"])["failed"] == 0


def test_releases_in_order_with_pinned_charts_and_rendered_values(l2_run):
    upgrades = [c for c in l2_run["calls1"] if c["command"] == "upgrade"]
    assert [(c["argv"][-2], c["namespace"]) for c in upgrades] == [(r[0], r[1]) for r in RELEASES]
    for call, (release, _ns, chart, version, repo, values_rel) in zip(upgrades, RELEASES):
        argv = call["argv"]
        assert argv[-1] == chart and "--version=%s" % version in argv and "--repo=%s" % repo in argv
        assert "--wait" in argv
        # helm got exactly the values the render step wrote (the file the Argo CD Application uses)
        assert len(call["values_files"]) == 1, call
        given = yaml.safe_load(list(call["values_files"].values())[0])
        assert given == yaml.safe_load((l2_run["build"] / values_rel).read_text()), release
        assert call["kubeconfig_server"] == l2_run["api"].url


def test_namespaces_before_releases_and_cni_privileged(l2_run):
    api = l2_run["api"]
    cni = api.get("v1", "Namespace", "linkerd-cni")
    assert all(cni["metadata"]["labels"]["pod-security.kubernetes.io/%s" % m] == "privileged"
               for m in ("enforce", "audit", "warn"))
    assert api.get("v1", "Namespace", "linkerd")["metadata"]["labels"]["linkerd.io/is-control-plane"] == "true"
    helm_first = {}
    for e in api.writes():
        if e["field_manager"] == "helm" and e["namespace"]:
            helm_first.setdefault(e["namespace"], e["seq"])
    for ns in ("argocd", "kyverno", "linkerd", "linkerd-cni"):
        assert min(_seq(api, "Namespace", ns)) < helm_first[ns], ns


def test_argocd_project_and_root_app_after_crds_established(l2_run):
    api = l2_run["api"]
    established = {e["name"]: e["seq"] for e in api.events if e["verb"] == "established"}
    project = api.get("argoproj.io/v1alpha1", "AppProject", "platform", "argocd")
    root = api.get("argoproj.io/v1alpha1", "Application", "root", "argocd")
    assert project and root
    assert min(_seq(api, "AppProject", "platform")) > established["appprojects.argoproj.io"]
    assert min(_seq(api, "Application", "root")) > established["applications.argoproj.io"]
    assert root["spec"]["source"] == {"repoURL": "https://gitea.cell.lan/platform/cell.git",
                                      "targetRevision": "main", "path": "apps", "directory": {"recurse": True}}
    assert "https://gitea.cell.lan/platform/cell.git" in project["spec"]["sourceRepos"]


def test_argocd_ui_is_routed_through_the_shared_gateway(l2_run):
    api = l2_run["api"]
    route = api.get("gateway.networking.k8s.io/v1", "HTTPRoute", "argocd-ui", "argocd")
    assert route["spec"]["hostnames"] == ["argocd.cell.lan"]
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "platform",
                                            "namespace": "gateway", "sectionName": "https"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "argocd-server", "port": 80}]
    rendered = [d for d in yaml.safe_load_all((l2_run["build"] / "l2/argocd/routes.yaml").read_text()) if d]
    assert rendered[0]["spec"] == route["spec"]
    # last of the component: after its release, gate, manifests (the root app) and their gate;
    # argocd-server serves plain HTTP behind the Gateway, the chart's own route stays off
    assert min(_seq(api, "HTTPRoute", "argocd-ui")) > max(_seq(api, "Application", "root"))
    values = yaml.safe_load((l2_run["build"] / "l2/argocd/values.yaml").read_text())
    assert values["configs"]["params"]["server.insecure"] is True and values["server"]["httproute"] == {"enabled": False}


def test_admin_password_never_read(l2_run):
    touched = [e for e in l2_run["api"].events if e.get("name") == "argocd-initial-admin-secret"]
    assert touched == []


def test_repository_secret_from_encrypted_platform_secrets(l2_run):
    obj = l2_run["api"].get("v1", "Secret", "repo-gitops", "argocd")
    assert obj["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    data = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
    assert data == {"type": "git", "url": "https://gitea.cell.lan/platform/cell.git", "project": "platform",
                    "username": "argocd", "password": l2_run["repo_password"]}


def test_repository_secret_is_in_the_gitops_tree_sops_encrypted(l2_run):
    build, secrets = l2_run["build"], l2_run["secrets"]
    path = build / "l2" / "argocd" / "secrets" / "repo-gitops.sops.yaml"
    assert sops_utils.recipients_of_file(str(path)) == [secrets.recipient]
    assert l2_run["repo_password"] not in path.read_text() and "name: repo-gitops" in path.read_text()
    rendered = yaml.safe_load(sops_utils.decrypt_file(str(path), str(secrets.identity)))
    applied = l2_run["api"].get("v1", "Secret", "repo-gitops", "argocd")
    assert rendered["metadata"]["labels"] == applied["metadata"]["labels"]
    assert rendered["stringData"] == {k: base64.b64decode(v).decode() for k, v in applied["data"].items()}
    app = yaml.safe_load((build / "apps" / "argocd.yaml").read_text())
    assert {"repoURL": "https://gitea.cell.lan/platform/cell.git", "targetRevision": "main",
            "path": "l2/argocd/secrets", "kustomize": {}} in app["spec"]["sources"]


def test_argocd_decrypts_with_ksops_and_the_cells_age_key(l2_run):
    api, secrets = l2_run["api"], l2_run["secrets"]
    key = api.get("v1", "Secret", "sops-age", "argocd")
    keys_txt = base64.b64decode(key["data"]["keys.txt"]).decode()
    identity_keys = [line for line in secrets.identity.read_text().splitlines() if line.startswith("AGE-SECRET-KEY")]
    assert [line for line in keys_txt.splitlines() if line.startswith("AGE-SECRET-KEY")] == identity_keys
    # the key Argo CD gets opens the rendered Secrets (it is the cell's recipient key)
    key_file = l2_run["tmp"] / "argocd-keys.txt"
    key_file.write_text(keys_txt)
    path = l2_run["build"] / "l2" / "argocd" / "secrets" / "repo-gitops.sops.yaml"
    assert b"password" in sops_utils.decrypt_file(str(path), str(key_file))
    # delivered before the release, so the repo-server can mount it when it starts
    release = [e["seq"] for e in api.writes() if e["field_manager"] == "helm" and e["namespace"] == "argocd"]
    assert min(_seq(api, "Secret", "sops-age")) < min(release)
    values = yaml.safe_load((l2_run["build"] / "l2" / "argocd" / "values.yaml").read_text())
    assert values["configs"]["cm"]["kustomize.buildOptions"] == "--enable-alpha-plugins --enable-exec"
    repo = values["repoServer"]
    assert repo["initContainers"][0]["image"] == "viaductoss/ksops:v4.5.1"
    assert repo["initContainers"][0]["command"] == ["/usr/local/bin/ksops", "install", "--with-kustomize",
                                                    "/custom-tools"]
    assert {"name": "SOPS_AGE_KEY_FILE", "value": "/.config/sops/age/keys.txt"} in repo["env"]
    assert {"name": "sops-age", "secret": {"secretName": "sops-age"}} in repo["volumes"]
    assert {"name": "sops-age", "mountPath": "/.config/sops/age", "readOnly": True} in repo["volumeMounts"]
    assert {"name": "custom-tools", "mountPath": "/usr/local/bin/ksops", "subPath": "ksops"} in repo["volumeMounts"]


def test_policies_after_kyverno_crds_and_webhook(l2_run):
    api = l2_run["api"]
    established = {e["name"]: e["seq"] for e in api.events if e["verb"] == "established"}
    names = ("disallow-latest-tag", "require-requests-limits", "require-app-name-label")
    for name in names:
        assert api.get("policies.kyverno.io/v1", "ValidatingPolicy", name), name
        assert min(_seq(api, "ValidatingPolicy", name)) > established["validatingpolicies.policies.kyverno.io"]
    rejected = [e for e in api.events if e["kind"] == "ValidatingPolicy" and (e["code"] or 0) >= 500]
    assert rejected == []
    # kyverno-policies is installed after the Kyverno gate, before the platform policies
    kp = [c for c in l2_run["calls1"] if c["command"] == "upgrade"]
    assert [c["argv"][-2] for c in kp].index("kyverno-policies") == 2


def test_linkerd_identity_from_encrypted_certificates_before_control_plane(l2_run):
    api, secrets = l2_run["api"], l2_run["secrets"]
    plain = {n: secrets.read("linkerd-%s.sops" % n).decode() for n in ("trust-anchor.crt", "issuer.crt", "issuer.key")}
    cm = api.get("v1", "ConfigMap", "linkerd-identity-trust-roots", "linkerd")
    assert cm["data"]["ca-bundle.crt"].strip() == plain["trust-anchor.crt"].strip()
    sec = api.get("v1", "Secret", "linkerd-identity-issuer", "linkerd")
    assert sec["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v).decode().strip() for k, v in sec["data"].items()}
    assert data == {"tls.crt": plain["issuer.crt"].strip(), "tls.key": plain["issuer.key"].strip(),
                    "ca.crt": plain["trust-anchor.crt"].strip()}
    established = {e["name"]: e["seq"] for e in api.events if e["verb"] == "established"}
    first_cp = min(_seq(api, "Deployment", "linkerd-identity"))
    for g, _k, p, _v in LINKERD_CRDS:
        assert established["%s.%s" % (p, g)] < first_cp
    assert min(_seq(api, "ConfigMap", "linkerd-identity-trust-roots")) < first_cp
    assert min(_seq(api, "Secret", "linkerd-identity-issuer")) < first_cp
    assert min(_seq(api, "DaemonSet", "linkerd-cni")) < first_cp


def test_second_run_changes_nothing(l2_run):
    assert l2_run["rc2"] == 0, l2_run["out2"][-8000:]
    assert recap(l2_run["out2"])["changed"] == 0, l2_run["out2"][-8000:]
    assert [c for c in l2_run["calls2"] if c["command"] in ("upgrade", "install")] == []
    assert len(l2_run["api"].writes()) == l2_run["writes1"]


def test_no_secret_in_build_tree_helm_records_or_verbose_output(l2_run):
    secrets = l2_run["secrets"]
    values = [l2_run["repo_password"], "fake-kube-api-token"]
    for name in ("trust-anchor.key", "issuer.key"):
        pem = secrets.read("linkerd-%s.sops" % name)
        values.append("".join(pem.decode().strip().splitlines()[1:-1])[:48])
    values += [line for line in secrets.identity.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-1")]
    texts = {"run 1 -vvv": l2_run["out1"].replace("\n", ""), "run 2 -vvv": l2_run["out2"].replace("\n", "")}
    for path in list(l2_run["build"].rglob("*")) + list(Path(l2_run["state"]).glob("*")):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace").replace("\n", "")
    leaks = ["%s... in %s" % (v[:8], where) for v in values for where, text in texts.items() if v in text]
    assert leaks == []
    for where, text in texts.items():
        assert "PRIVATE KEY-----" not in text, where
    # The private keys were decrypted (into the plaintext directory) to sign and to create the
    # issuer Secret, then removed: only the SOPS files outlive the run.
    plaintext = l2_run["tmp"] / "work" / "plaintext"
    assert [str(p) for p in plaintext.rglob("*") if p.is_file()] == []


def test_the_rendered_tree_with_its_encrypted_secrets_verifies(l2_run):
    """tests/support/verify_build.py over the L2 tree an apply run left: the SOPS-encrypted Secret has no
    plaintext value and is schema-checked without its metadata, the KSOPS directory is complete."""
    import verify_build  # tests/support (on sys.path through conftest.py)
    import schemacheck
    try:
        store = schemacheck.SchemaStore()
    except schemacheck.SchemaStoreUnavailable:
        store = None
    report = verify_build.verify(l2_run["build"], layer="l2", store=store)
    assert report.failures == []
    assert any("kustomize files" in k for k in list(report.checked) + list(report.unchecked))
