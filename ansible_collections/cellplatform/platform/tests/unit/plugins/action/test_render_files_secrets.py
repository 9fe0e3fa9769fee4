# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""render_files and the components' Secrets: SOPS-encrypted with a KSOPS generator, deterministic,
re-encrypted on a recipient change, never plaintext in the tree (real sops, real age keys)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import AgeKeys

REPO = pathlib.Path(__file__).resolve().parents[7]
TOKEN = "ECHOTOKEN-4f1c9e2b7a"
REPO_PASSWORD = "REPOPASSWORD-77c1d0"

PLAYBOOK = textwrap.dedent("""\
    - name: Render
      hosts: localhost
      gather_facts: false
      tasks:
        - name: Render the layer
          cellplatform.platform.render_files:
            root: "{{ root }}"
            layer: l3
            cell: "{{ cell }}"
            components: "{{ components }}"
          register: out
    """)


def record(secrets=None, manifests=None):
    rec = {"name": "echo", "namespace": "echo", "layer": "l3",
           "chart": {"repo": "https://charts.example.org/echo", "name": "echo", "version": "1.2.3"},
           "secrets": secrets if secrets is not None else [
               {"name": "echo-token", "keys": {"token": "echo_token"}},
               {"name": "repo", "labels": {"argocd.argoproj.io/secret-type": "repository"},
                "string_data": {"url": "https://git.example.org/cell.git"},
                "keys": {"password": "gitops_repo_password", "sshPrivateKey": "gitops_repo_ssh_key"},
                "optional": True}]}
    if manifests:
        rec["manifests"] = manifests
    return rec


class Cell:
    def __init__(self, tmp_path, platform=None):
        self.tmp = tmp_path
        self.keys = AgeKeys(tmp_path / "keys")
        self.secrets = tmp_path / "secrets"
        self.secrets.mkdir()
        self.build = tmp_path / "build"
        self.platform = self.secrets / "platform.sops.yaml"
        self.recipients = list(self.keys.recipients)
        self.identity = str(self.keys.identity)
        if platform is not None:
            self.write_platform(platform)

    def write_platform(self, values):
        runner = sops_utils.Sops(str(self.keys.identity))
        self.platform.write_bytes(runner.encrypt(yaml.safe_dump(values), self.keys.all_recipients, str(self.platform)))

    def run(self, components, *extra, mode="render"):
        gitops = {"repo_url": "https://git.example.org/cell.git", "revision": "main", "path": "apps"}
        cell = {"name": "cell", "mode": mode, "gitops": gitops,
                "age": {"recipients": self.recipients, "identity": self.identity},
                "secrets": {"platform": str(self.platform)}}
        (self.tmp / "play.yml").write_text(PLAYBOOK)
        (self.tmp / "vars.json").write_text(json.dumps({"root": str(self.build), "cell": cell,
                                                        "components": list(components)}))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
                   ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
        proc = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(self.tmp / "play.yml"),
             "-e", "@" + str(self.tmp / "vars.json"), *extra],
            capture_output=True, text=True, env=env, cwd=self.tmp, check=False)
        data = json.loads(proc.stdout)
        return proc.returncode, data["plays"][0]["tasks"][0]["hosts"]["localhost"], proc.stdout + proc.stderr

    def tree(self):
        return dict((str(p.relative_to(self.build)), p.read_bytes()) for p in self.build.rglob("*") if p.is_file())

    def decrypt(self, rel, identity=None):
        return yaml.safe_load(sops_utils.decrypt_file(str(self.build / rel), identity or str(self.keys.identity)))


@pytest.mark.slow
def test_secrets_are_rendered_encrypted_with_ksops_and_rerun_is_byte_identical(tmp_path):
    cell = Cell(tmp_path, {"echo_token": TOKEN, "gitops_repo_password": REPO_PASSWORD})
    rc, out, text = cell.run([record()], "--diff")
    assert rc == 0, text
    base = "l3/echo/secrets/"
    assert out["secrets"] == {"rendered": [base + "echo-token.sops.yaml", base + "repo.sops.yaml"], "skipped": None,
                              "components": ["echo"]}
    # the Secret, exactly as the apply creates it, encrypted only in stringData
    secret = cell.decrypt(base + "echo-token.sops.yaml")
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "echo-token"
    assert secret["metadata"]["namespace"] == "echo" and secret["stringData"] == {"token": TOKEN}
    raw = (cell.build / base / "echo-token.sops.yaml").read_text()
    assert "name: echo-token" in raw and "ENC[AES256_GCM" in raw
    assert sops_utils.recipients_of_file(str(cell.build / base / "echo-token.sops.yaml")) == cell.recipients
    repo = cell.decrypt(base + "repo.sops.yaml")     # optional: the ssh key is absent, the password is kept
    assert repo["stringData"] == {"url": "https://git.example.org/cell.git", "password": REPO_PASSWORD}
    assert repo["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    # KSOPS generator + kustomization, and the Application's kustomize source
    generator = yaml.safe_load((cell.build / base / "ksops.yaml").read_text())
    assert generator["apiVersion"] == "viaduct.ai/v1" and generator["kind"] == "ksops"
    assert generator["files"] == ["./echo-token.sops.yaml", "./repo.sops.yaml"]
    assert generator["metadata"]["annotations"]["config.kubernetes.io/function"] == "exec:\n  path: ksops\n"
    assert yaml.safe_load((cell.build / base / "kustomization.yaml").read_text())["generators"] == ["./ksops.yaml"]
    app = yaml.safe_load((cell.build / "apps/echo.yaml").read_text())
    assert {"repoURL": "https://git.example.org/cell.git", "targetRevision": "main", "path": "l3/echo/secrets",
            "kustomize": {}} in app["spec"]["sources"]
    rules = yaml.safe_load((cell.build / ".sops.yaml").read_text())["creation_rules"]
    assert rules[-1] == {"path_regex": r"\.sops\.yaml$", "age": cell.recipients[0],
                         "encrypted_regex": "^(data|stringData)$"}
    plan = json.loads((cell.build / "plan.json").read_text())
    assert plan["components"][0]["secrets"] == ["echo-token", "repo"]
    assert plan["components"][0]["secrets_path"] == "l3/echo/secrets"
    assert "SOPS-encrypted in `l3/echo/secrets/`" in (cell.build / "PLAN.md").read_text()
    # no plaintext value anywhere in the tree, the result or the --diff output
    for path, data in cell.tree().items():
        assert TOKEN.encode() not in data and REPO_PASSWORD.encode() not in data, path
    assert TOKEN not in text and REPO_PASSWORD not in text
    # rerun: nothing changes, byte for byte
    before = cell.tree()
    rc, again, text = cell.run([record()])
    assert rc == 0 and again["changed"] is False, again["changed_files"]
    assert cell.tree() == before


@pytest.mark.slow
def test_a_changed_value_or_recipient_set_rewrites_only_what_changed(tmp_path):
    cell = Cell(tmp_path, {"echo_token": TOKEN, "gitops_repo_password": REPO_PASSWORD})
    assert cell.run([record()])[0] == 0
    before = cell.tree()
    cell.write_platform({"echo_token": TOKEN + "-new", "gitops_repo_password": REPO_PASSWORD})
    rc, out, text = cell.run([record()])
    assert rc == 0 and out["changed_files"] == ["l3/echo/secrets/echo-token.sops.yaml"], text
    assert cell.decrypt("l3/echo/secrets/echo-token.sops.yaml")["stringData"]["token"] == TOKEN + "-new"
    assert cell.tree()["l3/echo/secrets/repo.sops.yaml"] == before["l3/echo/secrets/repo.sops.yaml"]
    # the one recipient replaced by another: every encrypted file is re-encrypted to it, .sops.yaml follows
    cell.recipients = [cell.keys.all_recipients[0]]
    rc, out, text = cell.run([record()])
    assert rc == 0, text
    assert out["changed_files"] == [".sops.yaml", "l3/echo/secrets/echo-token.sops.yaml",
                                    "l3/echo/secrets/repo.sops.yaml"]
    for name in ("echo-token", "repo"):
        assert sops_utils.recipients_of_file(str(cell.build / ("l3/echo/secrets/%s.sops.yaml" % name))) == \
            cell.recipients


@pytest.mark.slow
def test_without_the_platform_secrets_render_mode_renders_none_and_keeps_what_is_there(tmp_path):
    cell = Cell(tmp_path)
    rc, out, text = cell.run([record()])
    assert rc == 0, text
    assert out["secrets"]["rendered"] == [] and "no platform secrets" in out["secrets"]["skipped"]
    assert not (cell.build / "l3/echo/secrets").exists()
    app = yaml.safe_load((cell.build / "apps/echo.yaml").read_text())
    assert not any(src.get("path") == "l3/echo/secrets" for src in app["spec"]["sources"])
    assert "created at apply time" in (cell.build / "PLAN.md").read_text()
    # secrets an earlier render (with the key) wrote stay, and so does the Application's source
    cell.write_platform({"echo_token": TOKEN})
    assert cell.run([record()])[0] == 0
    written = cell.tree()
    cell.identity = str(tmp_path / "no-such-identity.txt")
    rc, out, text = cell.run([record()])
    assert rc == 0 and out["changed"] is False and "does not exist" in out["secrets"]["skipped"], text
    assert cell.tree() == written


@pytest.mark.slow
def test_errors_name_the_component_and_key_never_a_value(tmp_path):
    cell = Cell(tmp_path, {"echo_token": TOKEN})
    rc, out, text = cell.run([record(secrets=[{"name": "tsig", "keys": {"tsig-secret": "external_dns_tsig_secret"}}])])
    assert rc != 0 and "external_dns_tsig_secret is not in" in out["msg"] and "echo_token" in out["msg"]
    assert "component echo, Secret tsig" in out["msg"] and TOKEN not in text
    # apply mode needs the platform secrets
    cell.platform.unlink()
    rc, out, text = cell.run([record()], mode="apply")
    assert rc != 0 and "Secrets of echo cannot be rendered" in out["msg"] and "Apply mode needs them" in out["msg"]
    # a plaintext Secret in a component's manifests never reaches the tree
    plain = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak", "namespace": "echo"},
             "stringData": {"password": "hunter2"}}
    rc, out, text = cell.run([record(secrets=[], manifests=[plain])])
    assert rc != 0 and "refusing to write the Secret leak with plaintext values" in out["msg"]
    assert not (cell.build / "l3/echo/manifests.yaml").exists()
