# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cellplatform.platform.terraform_apply against real terraform, and the Proxmox root module.

* The module runs in-process (AnsibleModule with the legacy profile) against the real
  terraform binary, on a copy of a provider-free fixture (terraform_data + local backend) in a
  temporary directory. One test drives it through ansible-playbook (FQCN, --check, --diff).
* The Proxmox root module shipped in the collection is checked offline: terraform fmt, a
  python-hcl2 parse, its variables against the cell.auto.tfvars.json contract, the pitfall
  settings, and its validation blocks (real terraform on a provider-free copy of variables.tf).

Run inside scripts/netns-run (loopback only). terraform must be on PATH: a missing binary is a
failure, not a skip.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible_collections" / "cellplatform" / "platform"
FIXTURES = Path(__file__).resolve().parent / "terraform_fixtures"
PROXMOX_MODULE = COLLECTION / "roles" / "l0_infrastructure" / "files" / "terraform" / "proxmox"
TERRAFORMRC = REPO / "scripts" / "terraformrc"

# pyproject.toml puts the repository root on sys.path (pythonpath = ["."]).
from ansible_collections.cellplatform.platform.plugins.module_utils import terraform as tfu  # noqa: E402
from ansible_collections.cellplatform.platform.plugins.modules import terraform_apply  # noqa: E402

pytestmark = pytest.mark.slow  # runs terraform / ansible-playbook

TERRAFORM = shutil.which("terraform")
SECRET = "fixture-secret-value"
NODES = {"cp-1": {"vm_id": 151, "ip": "192.168.100.51"},
         "cp-2": {"vm_id": 152, "ip": "192.168.100.52"}}

# The input contract of the Proxmox root module (issue 2 section 7; rendered by the L0 role at
# build/<cell>/terraform/cell.auto.tfvars.json), for the reference cell. The example file ships
# with the module so the L0 role's tests can compare their rendered file against it.
CONTRACT = json.loads((PROXMOX_MODULE / "cell.tfvars.example.json").read_text())


def test_contract_example_is_the_reference_cell():
    assert sorted(CONTRACT) == ["cell_name", "network", "nodes", "proxmox", "qemu_guest_agent",
                                "schematic_id", "talos_version"]
    assert sorted(CONTRACT["proxmox"]) == ["bridge", "datastore", "endpoint", "image_datastore",
                                           "insecure", "node_name"]
    assert sorted(CONTRACT["network"]) == ["gateway", "nameservers", "prefix_length", "search_domain"]
    assert CONTRACT["nodes"]["cp-1"] == {"vm_id": 151, "ip": "192.168.100.51", "role": "controlplane",
                                         "cores": 2, "memory_mib": 4096, "disk_gib": 40, "data_disk_gib": 0}
    # the workers' second disk holds the storage user volume (cellplatform_node_sizes.worker.data_disk_gib)
    assert CONTRACT["nodes"]["worker-1"]["data_disk_gib"] == 100
    assert sorted(CONTRACT["nodes"]) == ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"]


@pytest.fixture(autouse=True)
def terraform_env(monkeypatch):
    if TERRAFORM is None:
        pytest.fail("terraform is not on PATH: install terraform >= 1.5 (the project's tests run "
                    "the terraform module against the real binary)")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(TERRAFORMRC))
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    monkeypatch.delenv("TF_WORKSPACE", raising=False)
    monkeypatch.delenv("TF_DATA_DIR", raising=False)


@pytest.fixture
def project(tmp_path):
    dest = tmp_path / "cell"
    shutil.copytree(FIXTURES / "cell", dest)
    return dest


def run_module(monkeypatch, capsys, check=False, diff=False, **args):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit) as exc:
        terraform_apply.main()
    result = json.loads(capsys.readouterr().out)
    result["rc_exit"] = exc.value.code
    return result


def state_digest(project):
    state = project / "terraform.tfstate"
    return hashlib.sha256(state.read_bytes()).hexdigest() if state.exists() else None


def state_resources(project):
    state = project / "terraform.tfstate"
    if not state.exists():
        return []
    data = json.loads(state.read_text())
    return sorted("%s%s" % (r["type"] + "." + r["name"], "[%s]" % json.dumps(i.get("index_key"))
                            if "index_key" in i else "")
                  for r in data.get("resources", []) for i in r["instances"])


def apply(monkeypatch, capsys, project, nodes=None, **kw):
    return run_module(monkeypatch, capsys, project_path=str(project),
                      variables={"nodes": NODES if nodes is None else nodes}, **kw)


# ------------------------------------------------------------------------------------------
# terraform_apply against real terraform
# ------------------------------------------------------------------------------------------

def test_first_apply_creates_and_rerun_changes_nothing(monkeypatch, capsys, project):
    first = apply(monkeypatch, capsys, project)
    assert first["rc_exit"] == 0, first
    assert first["changed"] is True and first["applied"] is True
    assert first["summary"]["add"] == 2 and first["summary"]["destroy"] == 0
    assert first["resources"]["add"] == ['terraform_data.node["cp-1"]', 'terraform_data.node["cp-2"]']
    assert first["outputs"]["vm_ids"] == {"cp-1": 151, "cp-2": 152}
    assert first["outputs"]["node_ips"] == {"cp-1": "192.168.100.51", "cp-2": "192.168.100.52"}
    assert first["outputs"]["token"] == "(sensitive value)"
    assert SECRET not in json.dumps(first)
    assert state_resources(project) == ['terraform_data.node["cp-1"]', 'terraform_data.node["cp-2"]']
    # variables never reach the command line
    assert not any("192.168.100.51" in c for c in first["commands"])

    digest = state_digest(project)
    second = apply(monkeypatch, capsys, project)
    assert second["rc_exit"] == 0, second
    assert second["changed"] is False and second["applied"] is False
    assert second["has_changes"] is False and not any(second["summary"].values())
    assert not any(" apply " in c for c in second["commands"])
    assert second["outputs"]["vm_ids"] == {"cp-1": 151, "cp-2": 152}
    assert state_digest(project) == digest


def test_check_mode_plans_only_and_diff_masks_secrets(monkeypatch, capsys, project):
    result = apply(monkeypatch, capsys, project, check=True, diff=True)
    assert result["rc_exit"] == 0, result
    assert result["changed"] is True and result["applied"] is False
    assert result["summary"]["add"] == 2
    assert state_resources(project) == []
    headers = [d["after_header"] for d in result["diff"]]
    assert headers == ['terraform_data.node["cp-1"] (add)', 'terraform_data.node["cp-2"] (add)']
    assert "input.token = (sensitive value)" in result["diff"][0]["after"]
    assert 'input.ip = "192.168.100.51"' in result["diff"][0]["after"]
    assert "id = (known after apply)" in result["diff"][0]["after"]
    assert SECRET not in json.dumps(result)
    # the private plan directory (plan + variables file) is gone
    plan_arg = next(a for c in result["commands"] for a in c.split() if a.startswith("-out="))
    assert not Path(plan_arg[len("-out="):]).parent.exists()

    # after a real apply, check mode reports no change and still touches nothing
    apply(monkeypatch, capsys, project)
    digest = state_digest(project)
    again = apply(monkeypatch, capsys, project, check=True, diff=True)
    assert again["changed"] is False and again["diff"] == []
    assert state_digest(project) == digest


def test_work_dir_holds_the_plan_and_variables_files_only_while_the_module_runs(monkeypatch, capsys, project, tmp_path):
    """work_dir: the private directory of the plan file and the variables file (secrets) is created
    under it (0700) and removed when the module returns."""
    plaintext = tmp_path / "work" / "plaintext"
    result = apply(monkeypatch, capsys, project, check=True, work_dir=str(plaintext))
    assert result["rc_exit"] == 0, result
    plan_arg = next(a for c in result["commands"] for a in c.split() if a.startswith("-out="))
    assert Path(plan_arg[len("-out="):]).parent.parent == plaintext
    assert plaintext.stat().st_mode & 0o777 == 0o700 and list(plaintext.iterdir()) == []


def test_in_place_update_is_applied_without_allow_destroy(monkeypatch, capsys, project):
    apply(monkeypatch, capsys, project)
    result = run_module(monkeypatch, capsys, project_path=str(project), diff=True,
                        variables={"nodes": NODES, "label": "v2"})
    assert result["rc_exit"] == 0, result
    assert result["applied"] is True
    assert result["summary"]["change"] == 2 and result["destructive"] == []
    # terraform_data copies input to output without the sensitive mark: the literal of the
    # sensitive variable is masked anyway.
    assert result["diff"][0]["before"] == (
        'input.label = "v1"\noutput.ip = "192.168.100.51"\noutput.label = "v1"\n'
        'output.token = (sensitive value)\n')
    assert result["diff"][0]["after"] == 'input.label = "v2"\noutput = (known after apply)\n'
    assert SECRET not in json.dumps(result)


def test_replace_is_refused_with_address_then_allowed(monkeypatch, capsys, project):
    apply(monkeypatch, capsys, project)
    digest = state_digest(project)
    nodes = copy.deepcopy(NODES)
    nodes["cp-1"]["vm_id"] = 161

    refused = apply(monkeypatch, capsys, project, nodes=nodes)
    assert refused["rc_exit"] == 1 and refused["failed"] is True
    assert refused["error_kind"] == "destroy_refused"
    assert 'terraform_data.node["cp-1"] (replace: forced by a change of triggers_replace)' in refused["msg"]
    assert "allow_destroy: true" in refused["msg"] and "Nothing was applied" in refused["msg"]
    assert refused["summary"]["replace"] == 1 and refused["applied"] is False
    assert state_digest(project) == digest
    # the outputs still describe the untouched state
    assert refused["outputs"]["vm_ids"]["cp-1"] == 151

    # check mode tells the same truth
    checked = apply(monkeypatch, capsys, project, nodes=nodes, check=True)
    assert checked["rc_exit"] == 1 and checked["error_kind"] == "destroy_refused"

    allowed = apply(monkeypatch, capsys, project, nodes=nodes, allow_destroy=True)
    assert allowed["rc_exit"] == 0, allowed
    assert allowed["applied"] is True and allowed["summary"]["replace"] == 1
    assert allowed["destructive"][0]["address"] == 'terraform_data.node["cp-1"]'
    assert allowed["outputs"]["vm_ids"] == {"cp-1": 161, "cp-2": 152}
    assert state_digest(project) != digest


def test_removing_a_node_is_refused_then_allowed_by_pattern(monkeypatch, capsys, project):
    apply(monkeypatch, capsys, project)
    digest = state_digest(project)
    nodes = {"cp-1": NODES["cp-1"]}

    refused = apply(monkeypatch, capsys, project, nodes=nodes)
    assert refused["rc_exit"] == 1
    assert 'terraform_data.node["cp-2"] (delete: its key is no longer in for_each)' in refused["msg"]
    assert refused["resources"]["destroy"] == ['terraform_data.node["cp-2"]']
    assert state_digest(project) == digest
    assert len(state_resources(project)) == 2

    other = apply(monkeypatch, capsys, project, nodes=nodes,
                  allow_destroy_patterns=['terraform_data.node["cp-1"]'])
    assert other["rc_exit"] == 1 and state_digest(project) == digest

    allowed = apply(monkeypatch, capsys, project, nodes=nodes,
                    allow_destroy_patterns=['terraform_data.node["cp-*"]'])
    assert allowed["rc_exit"] == 0, allowed
    assert state_resources(project) == ['terraform_data.node["cp-1"]']
    assert allowed["outputs"]["vm_ids"] == {"cp-1": 151}


def test_planned_state_reports_without_applying(monkeypatch, capsys, project):
    result = apply(monkeypatch, capsys, project, state="planned")
    assert result["rc_exit"] == 0
    assert result["changed"] is False and result["has_changes"] is True
    assert state_resources(project) == []


def test_var_files_relative_to_project_and_variables_win(monkeypatch, capsys, project):
    (project / "extra.tfvars.json").write_text(json.dumps({"nodes": NODES, "label": "from-file"}))
    result = run_module(monkeypatch, capsys, project_path=str(project),
                        var_files=["extra.tfvars.json"], variables={"label": "from-variables"})
    assert result["rc_exit"] == 0, result
    state = json.loads((project / "terraform.tfstate").read_text())
    labels = {i["attributes"]["input"]["value"]["label"] for r in state["resources"] for i in r["instances"]}
    assert labels == {"from-variables"}


def test_missing_var_file_names_the_field(monkeypatch, capsys, project):
    result = run_module(monkeypatch, capsys, project_path=str(project), var_files=["nope.tfvars.json"])
    assert result["rc_exit"] == 1
    assert "var_files entry nope.tfvars.json does not exist" in result["msg"]
    assert str(project) in result["msg"]


def test_missing_required_variable_is_explained(monkeypatch, capsys, project):
    result = run_module(monkeypatch, capsys, project_path=str(project))
    assert result["rc_exit"] == 1
    assert result["error_kind"] == "missing_variable"
    assert "terraform variable 'nodes'" in result["msg"] and "var_files" in result["msg"]


def test_invalid_variable_type_is_explained(monkeypatch, capsys, project):
    result = run_module(monkeypatch, capsys, project_path=str(project),
                        variables={"nodes": {"cp-1": {"vm_id": "one", "ip": "x"}}})
    assert result["rc_exit"] == 1 and result["error_kind"] == "invalid_variable", result
    assert "nodes:" in result["msg"]


def test_project_path_without_terraform_files(monkeypatch, capsys, tmp_path):
    result = run_module(monkeypatch, capsys, project_path=str(tmp_path))
    assert result["rc_exit"] == 1
    assert "holds no *.tf or *.tf.json file" in result["msg"]


def test_state_lock_held_elsewhere_is_explained(monkeypatch, capsys, project):
    apply(monkeypatch, capsys, project)
    with open(project / "terraform.tfstate", "r+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The lock is per process; terraform runs in a child, so it conflicts.
        result = apply(monkeypatch, capsys, project, nodes={"cp-1": NODES["cp-1"]}, allow_destroy=True)
    assert result["rc_exit"] == 1
    assert result["error_kind"] == "state_locked", result
    assert "is locked by another run" in result["msg"] and "lock_timeout" in result["msg"]
    assert len(state_resources(project)) == 2


def test_workspace_has_its_own_state(monkeypatch, capsys, project):
    apply(monkeypatch, capsys, project)
    blue = apply(monkeypatch, capsys, project, workspace="blue")
    assert blue["rc_exit"] == 0, blue
    assert blue["workspace"] == "blue" and blue["summary"]["add"] == 2
    assert (project / "terraform.tfstate.d" / "blue" / "terraform.tfstate").exists()


def test_provider_install_failure_names_provider_and_fix(monkeypatch, capsys, tmp_path):
    project = tmp_path / "needs-provider"
    project.mkdir()
    (project / "versions.tf").write_text(
        'terraform {\n  required_providers {\n    proxmox = {\n      source  = "bpg/proxmox"\n'
        '      version = "0.111.1"\n    }\n  }\n}\n')
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    # plugin_dir keeps terraform off the network entirely: it only looks in the mirror.
    result = run_module(monkeypatch, capsys, project_path=str(project), plugin_dir=[str(mirror)])
    assert result["rc_exit"] == 1
    assert result["error_kind"] == "provider_install", result
    assert result["msg"].startswith("terraform could not install provider bpg/proxmox")
    assert "plugin_dir" in result["msg"] and str(mirror) in result["msg"]
    assert "-plugin-dir=%s" % mirror in result["commands"][0]


def test_missing_plugin_dir_is_explained(monkeypatch, capsys, project, tmp_path):
    result = run_module(monkeypatch, capsys, project_path=str(project),
                        plugin_dir=[str(tmp_path / "absent")])
    assert result["rc_exit"] == 1 and "plugin_dir" in result["msg"] and "providers mirror" in result["msg"]


def test_timeout_interrupts_terraform(monkeypatch, capsys, project, tmp_path):
    # A stand-in binary that answers `version -json` and then hangs on init, like a provider
    # stuck on an unreachable API.
    fake = tmp_path / "terraform-hangs"
    fake.write_text(textwrap.dedent("""\
        #!/bin/sh
        if [ "$1" = version ]; then echo '{"terraform_version": "1.11.4"}'; exit 0; fi
        echo "Initializing the backend..." >&2
        exec sleep 30
        """))
    fake.chmod(0o755)
    result = run_module(monkeypatch, capsys, project_path=str(project), binary_path=str(fake), timeout=1)
    assert result["rc_exit"] == 1
    assert result["error_kind"] == "timeout"
    assert "did not finish within 1s" in result["msg"] and "raise timeout" in result["msg"]


def test_old_terraform_is_refused(monkeypatch, capsys, project, tmp_path):
    fake = tmp_path / "terraform-old"
    fake.write_text("#!/bin/sh\necho '{\"terraform_version\": \"1.3.9\"}'\n")
    fake.chmod(0o755)
    result = run_module(monkeypatch, capsys, project_path=str(project), binary_path=str(fake))
    assert result["rc_exit"] == 1 and "is terraform 1.3.9" in result["msg"] and ">= 1.5.0" in result["msg"]


def test_secret_environment_values_are_redacted(monkeypatch, project):
    monkeypatch.setenv("PROXMOX_VE_API_TOKEN", "root@pam!cell=0f1e2d3c-secret")
    runner = tfu.Terraform(str(project))
    assert runner.redact("token root@pam!cell=0f1e2d3c-secret leaked") == "token ******** leaked"
    assert runner.env["TF_INPUT"] == "0" and runner.env["TF_IN_AUTOMATION"] == "1"


def test_through_ansible_playbook_check_diff_apply_rerun(project, tmp_path):
    """One ansible-playbook run: FQCN resolution, check mode + diff output, apply, rerun."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent("""\
        - hosts: localhost
          gather_facts: false
          module_defaults:
            cellplatform.platform.terraform_apply:
              project_path: "{{ project }}"
              variables:
                nodes: "{{ nodes }}"
          tasks:
            - name: Plan in check mode with diff
              cellplatform.platform.terraform_apply:
              check_mode: true
              diff: true
              register: planned
            - name: Apply
              cellplatform.platform.terraform_apply:
              register: applied
            - name: Rerun
              cellplatform.platform.terraform_apply:
              register: rerun
            - name: Results
              ansible.builtin.assert:
                that:
                  - planned is changed and not planned.applied
                  - applied is changed and applied.applied
                  - applied.outputs.vm_ids['cp-1'] == 151
                  - applied.outputs.token == '(sensitive value)'
                  - rerun is not changed and not rerun.applied
        """))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_RETRY_FILES_ENABLED="0")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % sys.executable,
           "-e", json.dumps({"project": str(project), "nodes": NODES}), str(playbook)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert 'terraform_data.node["cp-1"] (add)' in out
    assert "+input.token = (sensitive value)" in out and SECRET not in out
    assert "ok=4" in out and "changed=2" in out
    assert state_resources(project) == ['terraform_data.node["cp-1"]', 'terraform_data.node["cp-2"]']


# ------------------------------------------------------------------------------------------
# The Proxmox root module in the collection
# ------------------------------------------------------------------------------------------

def unq(value):
    """python-hcl2 8 keeps HCL string quotes: '"local"' -> 'local'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def hcl(name):
    import hcl2
    with open(PROXMOX_MODULE / name) as handle:
        return hcl2.load(handle)


def blocks(doc, kind):
    """{label: body} of the labelled blocks of one kind (variable, output, provider ...)."""
    out = {}
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            out[unq(label)] = body
    return out


def resource(doc, rtype, name):
    for entry in doc.get("resource", []):
        if unq(next(iter(entry))) == rtype:
            bodies = entry[next(iter(entry))]
            if unq(next(iter(bodies))) == name:
                return bodies[next(iter(bodies))]
    raise AssertionError("resource %s.%s not found" % (rtype, name))


def parse_type(text):
    """Parse a terraform type constraint: string|bool|number|list(T)|map(T)|object({k = T, ...})."""
    text = text.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1].strip()
    pos = 0

    def skip():
        nonlocal pos
        while pos < len(text) and text[pos] in " \n\t,":
            pos += 1

    def parse():
        nonlocal pos
        skip()
        m = re.match(r"[a-z_]+", text[pos:])
        assert m, "bad type at %r" % text[pos:]
        word = m.group(0)
        pos += len(word)
        if word in ("string", "bool", "number"):
            return word
        assert text[pos] == "(", text[pos:]
        pos += 1
        if word == "object":
            assert text[pos] == "{"
            pos += 1
            fields = {}
            while True:
                skip()
                if text[pos] == "}":
                    pos += 1
                    break
                m = re.match(r"(\w+)\s*=", text[pos:])
                pos += len(m.group(0))
                fields[m.group(1)] = parse()
            skip()
            assert text[pos] == ")"
            pos += 1
            return ("object", fields)
        inner = parse()
        skip()
        assert text[pos] == ")"
        pos += 1
        return (word, inner)

    result = parse()
    skip()
    assert pos == len(text), "trailing %r" % text[pos:]
    return result


def conforms(value, ttype, where):
    """Assert a JSON value matches a terraform type exactly (object keys equal, no extras)."""
    if ttype == "string":
        assert isinstance(value, str), where
    elif ttype == "bool":
        assert isinstance(value, bool), where
    elif ttype == "number":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
    elif ttype[0] == "list":
        assert isinstance(value, list) and value, where
        for i, item in enumerate(value):
            conforms(item, ttype[1], "%s[%d]" % (where, i))
    elif ttype[0] == "map":
        assert isinstance(value, dict) and value, where
        for key, item in value.items():
            conforms(item, ttype[1], "%s[%s]" % (where, key))
    elif ttype[0] == "object":
        assert isinstance(value, dict), where
        assert sorted(value) == sorted(ttype[1]), "%s keys %s != declared %s" % (
            where, sorted(value), sorted(ttype[1]))
        for key, sub in ttype[1].items():
            conforms(value[key], sub, "%s.%s" % (where, key))
    else:
        raise AssertionError("unhandled type %r at %s" % (ttype, where))


def test_proxmox_module_is_terraform_fmt_clean():
    proc = subprocess.run([TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(PROXMOX_MODULE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in PROXMOX_MODULE.glob("*.tf")) == [
        "main.tf", "outputs.tf", "variables.tf", "versions.tf"]


def test_proxmox_module_pins_provider_and_keeps_credentials_out():
    versions = hcl("versions.tf")
    tf = versions["terraform"][0]
    providers = tf["required_providers"][0]
    assert set(k for k in providers if not k.startswith("__")) == {"proxmox"}  # no talos provider
    assert unq(providers["proxmox"]["source"]) == "bpg/proxmox"
    assert re.fullmatch(r"(~> )?0\.111\.1", unq(providers["proxmox"]["version"]))
    assert unq(tf["required_version"]) == ">= 1.5.0"
    provider = blocks(versions, "provider")["proxmox"]
    assert sorted(k for k in provider if not k.startswith("__")) == ["endpoint", "insecure"]
    text = "".join((PROXMOX_MODULE / f).read_text() for f in ("versions.tf", "variables.tf", "main.tf"))
    assert "api_token" not in text.replace("PROXMOX_VE_API_TOKEN", "")
    assert "password" not in text.lower()
    assert "PROXMOX_VE_API_TOKEN" in (PROXMOX_MODULE / "README.md").read_text()


def test_proxmox_variables_match_the_tfvars_contract():
    declared = blocks(hcl("variables.tf"), "variable")
    assert sorted(declared) == sorted(CONTRACT)
    for name, body in declared.items():
        assert "default" not in body, "%s must come from the rendered tfvars, not a default" % name
        assert unq(body.get("description", "")), "%s has no description" % name
        assert not body.get("sensitive"), "%s: the tfvars hold no secrets" % name
        conforms(CONTRACT[name], parse_type(body["type"]), name)


def test_proxmox_module_references_only_declared_variables_and_uses_all():
    declared = set(blocks(hcl("variables.tf"), "variable"))
    used = set()
    for name in ("main.tf", "outputs.tf", "versions.tf"):
        used |= set(re.findall(r"\bvar\.(\w+)", (PROXMOX_MODULE / name).read_text()))
    assert used <= declared, used - declared
    assert declared <= used, declared - used


def test_proxmox_module_settings_follow_the_brief():
    main = hcl("main.tf")
    image = resource(main, "proxmox_download_file", "talos")
    assert unq(image["decompression_algorithm"]) == "gz"
    assert unq(image["content_type"]) == "iso"
    assert image["overwrite"] is False
    local = main["locals"][0]
    assert unq(local["talos_image_url"]) == (
        "https://factory.talos.dev/image/${var.schematic_id}/${var.talos_version}/nocloud-amd64.raw.gz")
    assert unq(local["talos_image_file"]).endswith(".img")

    vm = resource(main, "proxmox_virtual_environment_vm", "node")
    assert vm["for_each"] == "${var.nodes}"
    assert unq(vm["scsi_hardware"]) == "virtio-scsi-pci"
    assert unq(vm["machine"]) == "q35" and unq(vm["bios"]) == "ovmf"
    assert vm["vm_id"] == "${each.value.vm_id}" and vm["name"] == "${each.key}"
    assert vm["agent"][0]["enabled"] == "${var.qemu_guest_agent}"
    assert unq(vm["cpu"][0]["type"]) == "host" and vm["cpu"][0]["cores"] == "${each.value.cores}"
    assert vm["memory"][0]["floating"] == 0
    assert vm["memory"][0]["dedicated"] == "${each.value.memory_mib}"
    efi = vm["efi_disk"][0]
    assert unq(efi["type"]) == "4m" and efi["pre_enrolled_keys"] is False
    (disk,) = vm["disk"]
    assert disk["file_id"] == "${proxmox_download_file.talos.id}"
    assert disk["size"] == "${each.value.disk_gib}" and unq(disk["interface"]) == "scsi0"
    assert disk["iothread"] is False
    (nic,) = vm["network_device"]
    assert unq(nic["model"]) == "virtio" and nic["bridge"] == "${var.proxmox.bridge}"
    init = vm["initialization"][0]
    ipv4 = init["ip_config"][0]["ipv4"][0]
    assert unq(ipv4["address"]) == "${each.value.ip}/${var.network.prefix_length}"
    assert ipv4["gateway"] == "${var.network.gateway}"
    assert init["dns"][0]["servers"] == "${var.network.nameservers}"
    assert init["dns"][0]["domain"] == "${var.network.search_domain}"
    assert "serial_device" in vm
    assert "talos" in vm["tags"] and "sort(" in vm["tags"]
    assert "prevent_destroy" not in vm["lifecycle"][0]
    outputs = blocks(hcl("outputs.tf"), "output")
    assert {"vm_ids", "node_ips"} <= set(outputs)


def test_readme_documents_the_exact_contract():
    readme = (PROXMOX_MODULE / "README.md").read_text()
    m = re.search(r"```json\n(.*?)```", readme, re.S)
    documented = json.loads(m.group(1))
    assert sorted(documented) == sorted(CONTRACT)
    for key in ("proxmox", "network"):
        assert sorted(documented[key]) == sorted(CONTRACT[key])
    assert sorted(next(iter(documented["nodes"].values()))) == sorted(CONTRACT["nodes"]["cp-1"])


# The validation blocks, run by real terraform on a provider-free copy of variables.tf.
BAD_VALUES = [
    (("cell_name",), "Cell_1", "cell_name must be a lower-case DNS label"),
    (("talos_version",), "1.13.9", "talos_version must look like v1.13.9"),
    (("schematic_id",), "abc", "schematic_id must be the 64-character hex ID"),
    (("proxmox", "endpoint"), "http://pve:8006/api2/json", "proxmox.endpoint must be the API base URL"),
    (("proxmox", "bridge"), "", "must be non-empty Proxmox identifiers"),
    (("network", "prefix_length"), 33, "network.prefix_length must be an integer between 8 and 30"),
    (("network", "gateway"), "192.168.100", "network.gateway must be an IPv4 address"),
    (("network", "nameservers"), [], "network.nameservers must be a non-empty list"),
    (("nodes",), {}, "nodes must hold at least one node"),
    (("nodes",), {"CP_1": CONTRACT["nodes"]["cp-1"]}, "Every key of nodes must be a lower-case DNS label"),
    (("nodes", "cp-1", "vm_id"), 99, "vm_id must be an integer between 100 and 999999999"),
    (("nodes", "cp-2", "vm_id"), 151, "vm_id must be unique"),
    (("nodes", "cp-1", "ip"), "192.168.100.51/24", "ip must be an IPv4 address without prefix"),
    (("nodes", "cp-2", "ip"), "192.168.100.51", "ip must be unique"),
    (("nodes", "cp-1", "role"), "master", "role must be controlplane or worker"),
    (("nodes", "cp-1", "memory_mib"), 1024, "below the Talos minimum"),
    (("nodes", "cp-1", "disk_gib"), 5, "disk_gib must be a whole number of at least 10"),
    (("nodes", "worker-1", "data_disk_gib"), -1, "data_disk_gib must be a whole number of GiB, 0 for no data disk"),
]


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory):
    work = tmp_path_factory.mktemp("proxmox-variables")
    shutil.copy(PROXMOX_MODULE / "variables.tf", work / "variables.tf")
    env = dict(os.environ, TF_CLI_CONFIG_FILE=str(TERRAFORMRC), CHECKPOINT_DISABLE="1")
    subprocess.run([TERRAFORM, "init", "-input=false", "-no-color"], cwd=work, env=env,
                   check=True, capture_output=True, timeout=60)
    return work, env


def plan_with(variables_only, values):
    work, env = variables_only
    (work / "cell.auto.tfvars.json").write_text(json.dumps(values))
    return subprocess.run([TERRAFORM, "plan", "-input=false", "-no-color", "-lock=false"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=60)


def test_reference_contract_passes_validation(variables_only):
    proc = plan_with(variables_only, CONTRACT)
    assert proc.returncode == 0, proc.stderr


def test_one_bad_value_per_validation_block_is_rejected(variables_only):
    """Each bad value trips its own rule (one terraform plan for all rules would hide overlaps)."""
    declared = (PROXMOX_MODULE / "variables.tf").read_text()
    assert declared.count("validation {") == len(BAD_VALUES)
    for path, bad, message in BAD_VALUES:
        values = copy.deepcopy(CONTRACT)
        target = values
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bad
        proc = plan_with(variables_only, values)
        assert proc.returncode == 1, (path, bad)
        kind, explained = tfu.explain_error("plan", 1, proc.stdout, proc.stderr, "proxmox")
        assert kind == "invalid_variable", (path, proc.stderr)
        assert message in explained, (path, bad, explained)
        assert explained.count(": ") >= 1 and path[0] in explained


# The same input seen by the preflight (inventory) and by the Proxmox module (tfvars, mapped as the
# README's contract table says): both refuse it or both accept it, at each rule's boundary. The
# preflight says it first, before anything runs (tests/playbooks/inventories/l0_*).
AGREEMENT = [
    ("cell name of 33 characters", {"cellplatform_cell_name": "production-cell-frankfurt-rack-07"},
     (("cell_name",), "production-cell-frankfurt-rack-07"), False),
    ("cell name of 32 characters", {"cellplatform_cell_name": "production-cell-frankfurt-rack-7"},
     (("cell_name",), "production-cell-frankfurt-rack-7"), True),
    ("endpoint with the API path", {"cellplatform_proxmox": {"endpoint": "https://pve.cell.lan:8006/api2/json"}},
     (("proxmox", "endpoint"), "https://pve.cell.lan:8006/api2/json"), False),
    ("endpoint without the slash", {"cellplatform_proxmox": {"endpoint": "https://pve.cell.lan:8006"}},
     (("proxmox", "endpoint"), "https://pve.cell.lan:8006"), True),
    ("bridge with a space", {"cellplatform_proxmox": {"bridge": "vmbr 0"}}, (("proxmox", "bridge"), "vmbr 0"), False),
    ("datastore with a dot", {"cellplatform_proxmox": {"datastore": "ceph.fast"}},
     (("proxmox", "datastore"), "ceph.fast"), True),
    ("one control-plane core", {"cellplatform_node_sizes": {"controlplane": {"cores": 1}}},
     (("nodes", "cp-1", "cores"), 1), False),
    ("an IPv6 resolver", {"cellplatform_network": {"nameservers": ["192.168.100.1", "fd00::53"]}},
     (("network", "nameservers"), ["192.168.100.1", "fd00::53"]), True),
    ("a /7 node network", {"cellplatform_network": {"cidr": "192.0.0.0/7"}}, (("network", "prefix_length"), 7), False),
    ("a /8 node network", {"cellplatform_network": {"cidr": "192.0.0.0/8"}}, (("network", "prefix_length"), 8), True),
    ("a control plane of 2048 MiB", {"cellplatform_node_sizes": {"controlplane": {"memory_mib": 2048}}},
     (("nodes", "cp-1", "memory_mib"), 2048), True),
]


@pytest.mark.parametrize("what, overlay, mutation, accepted", AGREEMENT, ids=[a[0] for a in AGREEMENT])
def test_the_preflight_refuses_first_what_terraform_refuses(variables_only, what, overlay, mutation, accepted):
    sys.path.insert(0, str(REPO / "tests" / "playbooks"))
    import preflight_cases as pc  # pylint: disable=import-outside-toplevel
    from ansible_collections.cellplatform.platform.plugins.plugin_utils import inventory_check  # noqa: E402

    variables, hosts, host_names = pc.in_process({"name": what, "vars": overlay})
    problems, _ = inventory_check.check_inventory(variables, hosts, host_names=host_names)
    values = copy.deepcopy(CONTRACT)
    target = values
    for key in mutation[0][:-1]:
        target = target[key]
    target[mutation[0][-1]] = mutation[1]
    proc = plan_with(variables_only, values)
    assert (proc.returncode == 0) is accepted, (what, proc.stderr[-2000:])
    assert (problems == []) is accepted, (what, [p["message"] for p in problems])
