"""L7 apply path end to end against the test doubles: the helm double, the in-process fake
Kubernetes API and the Gitea API double (tests/doubles/delivery_api.py: HTTPS on 127.0.0.1 with a
CA the test creates, which stands in for the cell's internal CA).

Runs `site.yml -t l7` in apply mode twice, then once with the credentials file lost. The cluster
starts with what L0-L3 leave (Gateway API, CloudNativePG and Argo CD CRDs, Argo CD's namespace) and
Gitea runs. Checks what a real cell would have been asked to do: the Gitea OAuth2 application and
the integration token created through Gitea's API and kept in a SOPS file of the secrets directory
(generated once), the Secrets built from that file by the component pipeline (and rendered
SOPS-encrypted for Argo CD), the backstage-db Cluster after its CRD and Ready before the pinned
Backstage release with the rendered values, the CA ConfigMap, the ApplicationSet of the services,
the HTTPRoute; the second run changes nothing (no release, no object, no API write, the file
byte-identical, the OAuth2 application not recreated); a lost client secret stops the run with the
way out; no credential appears in build/, the helm records or the output.

    scripts/netns-run .venv/bin/pytest -q -p no:cacheprovider tests/integration/test_l7_apply.py
"""

from __future__ import annotations

import base64
import re
import time

import pytest
import yaml

from apply_fixtures import (apply_run_setup, Conditions, crd, deployment, gateway_api_crds, helm_calls, preinstall,
                            recap, run_playbook, write_chart)
from delivery_api import GiteaDouble
from fake_kube_api import FakeKubeAPI
from test_l3_apply import _call, L3SecretsDir, make_tls
from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils

# The extended suite (`make test-extended`, docs/proven.md): three site.yml -t l7 runs against the doubles and the Gitea double: minutes of CPU.
pytestmark = pytest.mark.extended

CONDITIONS = [("postgresql.cnpg.io/v1", "Cluster", "backstage-db", "backstage", "Ready")]
REDIRECT = "https://backstage.cell.lan/api/auth/oidc/handler/frame"
CREDENTIALS = "backstage-gitea.sops.yaml"


def l7_charts(charts_dir):
    """The Backstage chart at the pinned version (what its install leaves)."""
    write_chart(charts_dir, "backstage", "2.8.2", "1.0.0", [
        deployment("backstage"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backstage", "namespace": "{{NAMESPACE}}"},
         "spec": {"ports": [{"port": 7007}], "selector": {"app": "backstage"}}},
    ])


def lower_layers():
    """What L0-L3 left: Gateway API, CloudNativePG's and Argo CD's CRDs, Argo CD's namespace."""
    return gateway_api_crds() + [
        crd("postgresql.cnpg.io", "Cluster", "clusters"),
        crd("argoproj.io", "ApplicationSet", "applicationsets", ("v1alpha1",)),
        crd("argoproj.io", "AppProject", "appprojects", ("v1alpha1",)),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}},
    ]


@pytest.fixture(scope="module")
def l7_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l7apply")
    tls, ca_pem = make_tls(tmp)
    api = FakeKubeAPI(ready_delay=1, crd_delay=1).start()
    secrets = L3SecretsDir(tmp, api.kubeconfig(), ca_pem)
    gitea = GiteaDouble(tls / "server.crt", tls / "server.key", "gitea-admin", secrets.platform["gitea_admin_password"],
                        tmp / "git").start()
    try:
        charts = tmp / "charts"
        l7_charts(charts)
        env, extra, state, build_root = apply_run_setup(
            tmp, secrets, charts, component_poll_interval=1, component_wait_timeout=30,
            l7_developer_portal_gitea_url=gitea.url, l7_developer_portal_api_retry_delay=1,
            l7_developer_portal_api_wait_timeout=30)
        preinstall(api, lower_layers())
        with Conditions(api, CONDITIONS, delay=1) as controllers:
            start = time.monotonic()
            rc1, out1 = run_playbook("playbooks/site.yml", env, extra, ["-t", "l7"])
            took1 = time.monotonic() - start
        writes1, calls1, api_writes1 = len(api.writes()), helm_calls(state), len(gitea.writes())
        kept = (secrets.dir / CREDENTIALS).read_bytes() if (secrets.dir / CREDENTIALS).exists() else b""
        start = time.monotonic()
        rc2, out2 = run_playbook("playbooks/site.yml", env, extra, ["-t", "l7"])
        took2 = time.monotonic() - start
        run2 = {"writes": api.writes()[writes1:], "calls": helm_calls(state)[len(calls1):],
                "api_writes": gitea.writes()[api_writes1:], "kept": (secrets.dir / CREDENTIALS).read_bytes()}
        # the credentials file lost (e.g. not committed): Gitea still has the application
        (secrets.dir / CREDENTIALS).rename(tmp / "credentials.saved")
        rc3, out3 = run_playbook("playbooks/site.yml", env, extra, ["-t", "l7"])
        lost = {"exists": (secrets.dir / CREDENTIALS).exists(), "api_writes": gitea.writes()[api_writes1:]}
        (tmp / "credentials.saved").rename(secrets.dir / CREDENTIALS)
        yield {"rc1": rc1, "out1": out1, "took1": took1, "rc2": rc2, "out2": out2, "took2": took2, "run2": run2,
               "rc3": rc3, "out3": out3, "lost": lost, "writes1": writes1, "calls1": calls1, "kept": kept,
               "conditions": controllers.set_at, "api": api, "secrets": secrets, "state": state,
               "build": build_root / "cell", "tmp": tmp, "gitea": gitea}
    finally:
        gitea.stop()
        api.stop()


def _secret(api, namespace, name):
    obj = api.get("v1", "Secret", name, namespace)
    assert obj, "%s/%s" % (namespace, name)
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


def check_first_run_succeeds(run):
    assert run["rc1"] == 0, run["out1"][-8000:]
    assert recap(run["out1"])["failed"] == 0 and recap(run["out1"])["changed"] > 0
    # wall times, for the record (they depend on the machine's load, so they are not asserted)
    print("l7 apply: first run %.0f s, rerun %.0f s" % (run["took1"], run["took2"]))


def check_oauth_application_and_token_created_through_gitea(run):
    gitea, secrets = run["gitea"], run["secrets"]
    (app,) = gitea.state["oauth2"].values()
    assert app["name"] == "backstage" and app["redirect_uris"] == [REDIRECT] and app["confidential_client"] is True
    token = gitea.state["tokens"]["cellplatform-backstage"]
    assert token["scopes"] == ["write:repository", "write:organization", "read:user"]
    assert secrets.is_sops_for_the_cell(CREDENTIALS)
    stored = yaml.safe_load(secrets.read(CREDENTIALS))
    assert stored["oauth_client_id"] == app["client_id"] and stored["oauth_client_secret"] == app["client_secret"]
    assert stored["integration_token"] == token["sha1"]
    assert len(stored["session_secret"]) == 48 and stored["session_secret"].isalnum()


def check_secrets_come_from_the_credentials_file(run):
    api, secrets, build = run["api"], run["secrets"], run["build"]
    stored = yaml.safe_load(secrets.read(CREDENTIALS))
    expected = {"GITEA_OAUTH_CLIENT_ID": stored["oauth_client_id"], "GITEA_OAUTH_CLIENT_SECRET": stored["oauth_client_secret"],
                "GITEA_TOKEN": stored["integration_token"], "AUTH_SESSION_SECRET": stored["session_secret"]}
    assert _secret(api, "backstage", "backstage-gitea") == expected
    assert _secret(api, "argocd", "services-gitea-token") == {"token": stored["integration_token"]}
    creds = api.get("v1", "Secret", "services-repo-creds", "argocd")
    assert creds["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repo-creds"
    assert _secret(api, "argocd", "services-repo-creds") == {
        "type": "git", "url": "https://gitea.cell.lan/apps", "username": "gitea-admin",
        "password": stored["integration_token"]}
    # the same objects in the GitOps tree, SOPS-encrypted for Argo CD's KSOPS
    rendered = build / "l7/backstage/secrets/backstage-gitea.sops.yaml"
    assert sops_utils.recipients_of_file(str(rendered)) == [secrets.recipient]
    doc = yaml.safe_load(sops_utils.decrypt_file(str(rendered), str(secrets.identity)))
    assert doc["stringData"] == expected


def check_database_before_release_with_pinned_chart_and_rendered_values(run):
    api = run["api"]
    labels = api.get("v1", "Namespace", "backstage")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    writes, events = api.writes(), api.events
    established = {e["name"]: e["seq"] for e in events if e["verb"] == "established"}
    cluster_write = min(e["seq"] for e in writes if e["kind"] == "Cluster")
    assert established["clusters.postgresql.cnpg.io"] < cluster_write
    helm_first = min(e["seq"] for e in writes if e["field_manager"] == "helm" and e["namespace"] == "backstage")
    assert run["conditions"][CONDITIONS[0]] < helm_first
    cluster = api.get("postgresql.cnpg.io/v1", "Cluster", "backstage-db", "backstage")
    assert cluster["spec"]["storage"]["storageClass"] == "longhorn" and cluster["spec"]["instances"] == 2
    (upgrade,) = [c for c in run["calls1"] if c["command"] == "upgrade"]
    assert upgrade["argv"][-2] == "backstage" and upgrade["namespace"] == "backstage"
    assert "--version=2.8.2" in upgrade["argv"] and "--repo=https://backstage.github.io/charts" in upgrade["argv"]
    given = yaml.safe_load(list(upgrade["values_files"].values())[0])
    assert given == yaml.safe_load((run["build"] / "l7/backstage/values.yaml").read_text())
    assert given["backstage"]["image"]["repository"] == "ci/backstage"
    ca = api.get("v1", "ConfigMap", "cellplatform-ca", "backstage")
    assert "BEGIN CERTIFICATE" in ca["data"]["ca.crt"]
    route = api.get("gateway.networking.k8s.io/v1", "HTTPRoute", "backstage-ui", "backstage")
    assert route["spec"]["hostnames"] == ["backstage.cell.lan"]
    appset = api.get("argoproj.io/v1alpha1", "ApplicationSet", "services", "argocd")
    assert appset["spec"]["generators"][0]["scmProvider"]["gitea"]["owner"] == "apps"
    assert appset["spec"]["template"]["metadata"]["name"] == "service-{{ .repository }}"


def check_second_run_changes_nothing(run):
    assert run["rc2"] == 0, run["out2"][-6000:]
    assert recap(run["out2"])["changed"] == 0, run["out2"][-6000:]
    run2 = run["run2"]
    assert [c for c in run2["calls"] if c["command"] in ("upgrade", "install")] == []
    assert run2["api_writes"] == []
    assert run2["kept"] == run["kept"] != b""
    assert len(run["gitea"].state["oauth2"]) == 1
    assert len([r for r in run["gitea"].requests if r[0] == "POST" and r[1].endswith("/applications/oauth2")]) == 1


def check_no_credential_in_build_tree_helm_records_or_output(run):
    stored = yaml.safe_load(run["secrets"].read(CREDENTIALS))
    values = [stored[k] for k in ("oauth_client_secret", "integration_token", "session_secret")] + \
        [run["secrets"].platform["gitea_admin_password"]]
    texts = [run["out1"], run["out2"], run["out3"]]
    texts += [p.read_text(errors="replace") for p in run["build"].rglob("*") if p.is_file()]
    texts += [p.read_text(errors="replace") for p in run["state"].rglob("*") if p.is_file()]
    for value in values:
        assert not any(value in text for text in texts)


def check_a_lost_client_secret_stops_the_run(run):
    assert run["rc3"] != 0
    out = re.sub(r"\s+", " ", run["out3"])
    assert "Gitea has the OAuth2 application backstage of gitea-admin, but its client id and secret are not in" in out
    assert "Restore that file from backup" in out
    # nothing was recreated and no file was written in its place
    assert run["lost"]["api_writes"] == [] and not run["lost"]["exists"]


def test_l7_apply_end_to_end(l7_run):
    """One module-scoped set of playbook runs; each check names what failed."""
    check_first_run_succeeds(l7_run)
    check_oauth_application_and_token_created_through_gitea(l7_run)
    check_secrets_come_from_the_credentials_file(l7_run)
    check_database_before_release_with_pinned_chart_and_rendered_values(l7_run)
    check_second_run_changes_nothing(l7_run)
    check_no_credential_in_build_tree_helm_records_or_output(l7_run)
    check_a_lost_client_secret_stops_the_run(l7_run)


# --- contract of the Gitea double's OAuth2 applications (fast; no ansible) --------------------------

def test_gitea_double_oauth2_contract(tmp_path):
    tls, ca_pem = make_tls(tmp_path)
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    gitea = GiteaDouble(tls / "server.crt", tls / "server.key", "ops", "pw-gitea", tmp_path / "git").start()
    gitea._test_ca = tmp_path / "ca.crt"
    try:
        assert _call(gitea, "GET", "/api/v1/user/applications/oauth2", auth=False)[0] == 401
        assert _call(gitea, "GET", "/api/v1/user/applications/oauth2")[2] == []
        assert _call(gitea, "POST", "/api/v1/user/applications/oauth2", {"name": "x"})[0] == 422   # redirect_uris
        status, _, app = _call(gitea, "POST", "/api/v1/user/applications/oauth2",
                               {"name": "backstage", "redirect_uris": ["https://b/cb"], "confidential_client": True})
        assert status == 201 and app["client_secret"] and app["client_id"]
        (listed,) = _call(gitea, "GET", "/api/v1/user/applications/oauth2")[2]
        assert listed["client_secret"] == "" and listed["client_id"] == app["client_id"]
        # Gitea does not refuse a second application of the same name: finding it by name is the caller's job
        assert _call(gitea, "POST", "/api/v1/user/applications/oauth2",
                     {"name": "backstage", "redirect_uris": ["https://b/cb"]})[0] == 201
        status, _, updated = _call(gitea, "PATCH", "/api/v1/user/applications/oauth2/%d" % app["id"],
                                   {"name": "backstage", "redirect_uris": ["https://c/cb"], "confidential_client": True})
        assert status == 200 and updated["client_secret"] not in ("", app["client_secret"])
        assert updated["client_id"] == app["client_id"] and updated["redirect_uris"] == ["https://c/cb"]
        assert _call(gitea, "PATCH", "/api/v1/user/applications/oauth2/999", {"name": "n", "redirect_uris": []})[0] == 404
    finally:
        gitea.stop()
