# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/validate.yml and the preflight against the negative inventories.

Every case under tests/playbooks/inventories/ runs in-process against the preflight's pure
functions (plugins/plugin_utils/inventory_check.py; for apply-mode cases also
plugin_utils/prerequisites.py in a private controller); a representative set, every
apply-mode case, the reference inventory and the layer selection run through the real
ansible-playbook, validate.yml and site.yml alike. Recording stand-ins for talosctl,
terraform, helm and kubectl on PATH prove that nothing ran but their `version` answers.
Run inside scripts/netns-run (loopback only), e.g.:
    scripts/netns-run .venv/bin/pytest -q tests/playbooks/test_validate.py
"""

import functools
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

import preflight_cases as pc

sys.path.insert(0, pc.REPO)

from ansible_collections.cellplatform.platform.plugins.module_utils import cell_model  # noqa: E402
from ansible_collections.cellplatform.platform.plugins.plugin_utils import inventory_check, prerequisites  # noqa: E402

RECORDERS = pc.RECORDERS
RECORDED_TOOLS = ("talosctl", "terraform", "helm", "kubectl")
# The only commands a preflight may run: the tools' version questions (read-only, no node, no network).
VERSION_QUESTIONS = {"talosctl version --client --short", "terraform version -json", "helm version"}
# The layers site.yml runs, in order (its lN.yml imports).
with open(os.path.join(pc.REPO, "playbooks", "site.yml"), encoding="utf-8") as _site:
    SITE_LAYERS = re.findall(r"import_playbook: (l\d)\.yml", _site.read())
# validate.yml's layers (cellplatform_validate_layers)
VALIDATE_LAYERS = ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"]
# An age X25519 public key with a valid checksum (public keys are not secrets).
AGE_RECIPIENT = "age1jrt4wcqq6sc0gexnntep0xecwky60ugk0euv67me6xm7c7me7udq7r0003"
# Each ansible-playbook run costs seconds, so a representative set runs through it (host vars,
# group structure, per-node overrides, several problems at once, L1 + L2, unknown names, raw
# YAML), plus every apply-mode case (the controller checks only happen through the action).
PLAYBOOK_CASES = tuple(sorted(set((
    "l0_many_problems",
    "l0_node_ip_missing",
    "l0_vm_id_duplicate",
    "l0_host_in_both_groups",
    "l2_many_problems",
    "l0_unknown_variable",
    "l0_unknown_host_variable",
    "l1_unknown_nested_keys",
    "l0_duplicate_host",
    "l1_api_dns_name_outside_domain",
    "l0_copied_reference_values",
    "l3_many_problems",
) + tuple(name for name in pc.case_names() if pc.is_apply_case(pc.load_case(name))))))
if os.environ.get("CELLPLATFORM_PREFLIGHT_ALL_PLAYBOOKS") == "1":  # opt-in: every case through ansible-playbook
    PLAYBOOK_CASES = tuple(pc.case_names())


def _ansible_playbook():
    candidate = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return candidate if os.path.exists(candidate) else shutil.which("ansible-playbook")


def run_playbook(playbook, inventory, *extra, tmp, env_extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(pc.REPO, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": pc.REPO,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": os.path.join(str(tmp), "ansible-local"),
    })
    env.update(env_extra or {})
    cmd = [_ansible_playbook(), "-i", inventory, os.path.join(pc.REPO, "playbooks", playbook)] + list(extra)
    proc = subprocess.run(cmd, cwd=pc.REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    return proc, data


def first_result(data, action="cellplatform.platform.cell_preflight"):
    for play in data["plays"]:
        for task in play["tasks"]:
            if task["task"].get("name") and "localhost" in task["hosts"]:
                result = task["hosts"]["localhost"]
                if result.get("action") == action or "problems" in result:
                    return result
    pytest.fail("no cell_preflight result in %s" % json.dumps(data)[:2000])


def recorder_env(tmp_path):
    log = tmp_path / "recorded-commands.log"
    path = RECORDERS + os.pathsep + os.environ.get("PATH", "")
    return log, {"PATH": path, "CELLPLATFORM_RECORDER_LOG": str(log)}


def recorded(log):
    """The commands the stand-ins recorded (one per line), [] when none ran."""
    log = str(log)
    if not os.path.exists(log):
        return []
    with open(log, encoding="utf-8") as handle:
        return [line for line in handle.read().splitlines() if line]


def preflight_in_process(case, tmp_path, monkeypatch):
    """(case with its paths filled in, setup, problems, warnings): what the action would report."""
    setup = pc.controller_setup(case, str(tmp_path / "controller")) if pc.is_apply_case(case) else None
    case = pc.expected(case, setup)
    variables, hosts, host_names = pc.in_process(case, setup=setup)
    layers = case.get("layers") or VALIDATE_LAYERS
    problems, warnings = inventory_check.check_inventory(variables, hosts, layers=layers, host_names=host_names)
    if setup is not None:
        for key, value in setup["env"].items():
            monkeypatch.setenv(key, value)
        reqs = prerequisites.requirements(variables, layers, None, None, prerequisites.secret_key_names({}))
        local, notes = prerequisites.check(reqs, variables)
        problems.extend(local)
        warnings.extend(notes)
    return case, setup, problems, warnings


# --------------------------------------------------------------------------------------------
# The case files themselves
# --------------------------------------------------------------------------------------------

def test_site_runs_every_layer_in_order():
    """Each layer builds on the ones below it (L7's catalog reads every lower layer's plan)."""
    assert SITE_LAYERS == ["l%d" % n for n in range(8)], SITE_LAYERS


def test_enough_negative_inventories():
    layers = [pc.load_case(name)["layer"] for name in pc.case_names()]
    assert layers.count("l0") >= 30
    assert layers.count("l1") + layers.count("l2") >= 15
    assert layers.count("l3") >= 15
    multi = [name for name in pc.case_names() if len(pc.load_case(name)["expect"]) > 1]
    assert len(multi) >= 3, multi
    assert len([name for name in pc.case_names() if pc.is_apply_case(pc.load_case(name))]) >= 15


def test_reference_inventory_is_clean_in_process():
    variables, hosts, host_names = pc.in_process({"name": "reference"})
    assert host_names == {}
    assert inventory_check.check_inventory(variables, hosts, host_names=host_names) == ([], [])
    assert cell_model.validate(variables, hosts) == []


@pytest.mark.parametrize("name", pc.case_names())
def test_case_in_process(name, tmp_path, monkeypatch):
    case = pc.load_case(name)
    if case.get("hosts_yml"):
        pytest.skip("raw YAML: only ansible-playbook parses it (test_case_through_ansible_playbook)")
    case, setup, problems, warnings = preflight_in_process(case, tmp_path, monkeypatch)
    pc.check_problems(case, problems, warnings if "expect_warnings" in case else None)
    if setup is not None:
        # the controller checks ran nothing but the tools' version questions
        assert set(recorded(setup["log"])) <= VERSION_QUESTIONS, recorded(setup["log"])
    else:
        # reporting is deterministic
        variables, hosts, host_names = pc.in_process(case)
        layers = case.get("layers") or VALIDATE_LAYERS
        assert inventory_check.check_inventory(variables, hosts, layers=layers, host_names=host_names)[0] == problems


# --------------------------------------------------------------------------------------------
# Through ansible-playbook
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_reference_inventory_through_ansible_playbook(tmp_path):
    log, env = recorder_env(tmp_path)
    inventory = os.path.join(pc.REFERENCE, "hosts.yml")
    proc, data = run_playbook("validate.yml", inventory, env_extra=env, tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = first_result(data)
    assert result["changed"] is False
    assert result["problems"] == []
    cell = result["cell"]
    variables, hosts, _host_names = pc.in_process({"name": "reference"}, inventory_dir=pc.REFERENCE)
    assert cell == cell_model.build_cell_model(variables, hosts)
    assert cell["build_dir"] == os.path.join(os.path.realpath(os.path.join(pc.REPO, "build")), "cell")
    assert cell["secrets_dir"] == os.path.join(pc.REFERENCE, "secrets")
    assert [n["name"] for n in cell["nodes"]] == ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"]
    assert not log.exists() or log.read_text() == ""


def run_case(name, playbook, tmp_path, *extra):
    """Run ``playbook`` against case ``name`` (its controller set up when it is an apply case).

    Returns (case with its paths filled in, proc, JSON output or None, recorded commands)."""
    case = pc.load_case(name)
    setup = pc.controller_setup(case, str(tmp_path / "controller")) if pc.is_apply_case(case) else None
    case = pc.expected(case, setup)
    inventory = pc.materialize(case, str(tmp_path / "inventories" / "case"), setup)
    if setup is not None:
        env, log = setup["env"], setup["log"]
    else:
        log, env = recorder_env(tmp_path)
    proc, data = run_playbook(playbook, inventory, *extra, env_extra=env, tmp=tmp_path)
    return case, proc, data, recorded(log)


def assert_case_result(case, proc, data):
    """The run reported exactly the case's problems (or, for a clean case, passed with its warnings)."""
    if case.get("expect_error"):
        assert proc.returncode != 0 and data is None or data["stats"] == {}, proc.stdout[-2000:]
        assert case["expect_error"] in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
        return None
    assert data is not None, "no JSON (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    result = first_result(data)
    if not case["expect"]:
        assert result.get("failed") is not True, result.get("msg")
        pc.check_problems(case, result["problems"], result.get("warnings") or [])
        return result
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert result["failed"] is True
    pc.check_problems(case, result["problems"], result.get("warnings") or [] if "expect_warnings" in case else None)
    count = len(case["expect"])
    assert result["msg"].startswith("Preflight found %d problem%s" % (count, "" if count == 1 else "s"))
    for idx, want in enumerate(case["expect"], 1):
        line = [ln for ln in result["msg"].splitlines() if ln.startswith("%d. " % idx)]
        assert line and want in line[0] and " Fix: " in line[0], (want, result["msg"])
    assert "cell" not in result
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", PLAYBOOK_CASES)
def test_case_through_ansible_playbook(name, tmp_path):
    case, proc, data, commands = run_case(name, "validate.yml", tmp_path)
    assert_case_result(case, proc, data)
    # nothing ran but the tools' version questions, and those only in apply mode
    if pc.is_apply_case(case):
        assert set(commands) <= VERSION_QUESTIONS, commands
    else:
        assert commands == [], commands


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PLAYBOOK_CASES if pc.load_case(n)["expect"] or pc.load_case(n).get("expect_error")])
def test_site_rejects_what_validate_rejects_before_any_command(name, tmp_path):
    """site.yml stops at its first task with exactly validate.yml's problems; before it, no
    Terraform, talosctl or Helm step ran (only the version questions of an apply preflight)."""
    case, proc, data, commands = run_case(name, "site.yml", tmp_path)
    result = assert_case_result(case, proc, data)
    if result is not None:
        ran = [task["task"]["name"] for play in data["plays"] for task in play["tasks"]]
        assert ran == ["Preflight every layer of the cell"], ran
    assert set(commands) <= VERSION_QUESTIONS, commands
    # the inventory's build root ({{ inventory_dir }}/../../build) was never created
    assert not (tmp_path / "build").exists()


@functools.lru_cache(maxsize=None)
def preflight_calls():
    """Every cell_preflight task of the playbooks and roles site.yml runs: (file, layers, prerequisites)."""
    calls = []
    roots = [os.path.join(pc.REPO, "playbooks"),
             os.path.join(pc.REPO, "ansible_collections", "cellplatform", "platform", "roles")]
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for fname in files:
                if not fname.endswith(".yml"):
                    continue
                path = os.path.join(dirpath, fname)
                with open(path, encoding="utf-8") as handle:
                    docs = yaml.safe_load(handle)
                stack = list(docs) if isinstance(docs, list) else []
                while stack:
                    item = stack.pop()
                    if not isinstance(item, dict):
                        continue
                    for key in ("tasks", "block", "rescue", "always", "pre_tasks", "post_tasks"):
                        stack.extend(item.get(key) or [])
                    if "cellplatform.platform.cell_preflight" in item:
                        args = item["cellplatform.platform.cell_preflight"] or {}
                        layers = args.get("layers")
                        layers = tuple(layers) if isinstance(layers, list) else layers
                        needs = args.get("prerequisites", layers)
                        calls.append((os.path.relpath(path, pc.REPO), layers,
                                      tuple(needs) if isinstance(needs, list) else needs))
    return tuple(calls)


def test_site_runs_validate_first_and_every_later_preflight_checks_less():
    """site.yml = validate.yml, then layers whose preflights check subsets of validate.yml's layers
    (so, for every inventory, a later preflight can only report what validate.yml reported)."""
    with open(os.path.join(pc.REPO, "playbooks", "site.yml"), encoding="utf-8") as handle:
        site = yaml.safe_load(handle)
    assert site[0].get("ansible.builtin.import_playbook") == "validate.yml"
    calls = preflight_calls()
    validate = "{{ cellplatform_validate_layers | default(['l0', 'l1', 'l2', 'l3', 'l4', 'l5', 'l6', 'l7']) }}"
    assert ("playbooks/validate.yml", validate, validate) in calls
    later = [(layers, needs) for path, layers, needs in calls if path != "playbooks/validate.yml"]
    assert later and all(isinstance(layers, tuple) and set(layers) <= set(VALIDATE_LAYERS)
                         and isinstance(needs, tuple) and set(needs) <= set(VALIDATE_LAYERS) for layers, needs in later), calls


@pytest.mark.parametrize("name", pc.case_names())
def test_later_preflights_report_no_problem_validate_did_not(name, tmp_path, monkeypatch):
    """For every negative inventory, every preflight site.yml runs after validate.yml (layers [l0],
    [l1], [l2]) reports a subset of validate.yml's problems, so site.yml and validate.yml reject
    the same inventories, and validate.yml rejects each negative inventory."""
    case = pc.load_case(name)
    if case.get("hosts_yml"):
        pytest.skip("raw YAML: ansible-playbook refuses it before any play (test_case_through_ansible_playbook)")
    case, setup, problems, _warnings = preflight_in_process(case, tmp_path, monkeypatch)
    assert bool(problems) == bool(case["expect"])
    variables, hosts, host_names = pc.in_process(case, setup=setup)
    seen = [(p["field"], p["value"]) for p in problems]
    for layers, needs in sorted(set((layers, needs) for _path, layers, needs in preflight_calls()
                                    if isinstance(layers, tuple))):
        later, _ = inventory_check.check_inventory(variables, hosts, layers=list(layers), host_names=host_names)
        if setup is not None:
            # What an earlier layer of the same run stores (L0's kubeconfig and bundle) is not the inventory's:
            # in site.yml it exists by the time a later layer's preflight asks.
            reqs = [r for r in prerequisites.requirements(variables, list(needs), None, None,
                                                           prerequisites.secret_key_names({}))
                    if r["kind"] != "stored"]
            later.extend(prerequisites.check(reqs, variables)[0])
        # the same problem (field and value); its text may name fewer readers (a secret key needed by fewer layers)
        assert [p["message"] for p in later if (p["field"], p["value"]) not in seen] == [], (layers, seen)


@pytest.mark.slow
def test_l0_only_layers_do_not_need_l2_variables(tmp_path):
    case = pc.load_case("l2_missing_when_selected")
    inventory = pc.materialize(case, str(tmp_path / "inventories" / "case"))
    proc, data = run_playbook("validate.yml", inventory, "-e", json.dumps({"cellplatform_validate_layers": ["l0"]}),
                              tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = first_result(data)
    assert result["layers"] == ["l0"]
    assert result["cell"]["name"] == "cell"
    # with every layer selected the same inventory fails: test_case_in_process[l2_missing_when_selected]


@pytest.mark.slow
def test_apply_mode_from_extra_vars(tmp_path):
    """-e overrides reach the preflight: the reference inventory in apply mode on a controller
    that has everything (stand-ins answering the pinned versions, identity, platform secrets)
    passes, after asking each tool its version once; the reference's example names are one
    warning."""
    setup = pc.controller_setup({"name": "apply"}, str(tmp_path / "controller"))
    inventory = os.path.join(pc.REFERENCE, "hosts.yml")
    extra = dict(setup["vars"])
    del extra["cellplatform_mode"]
    proc, data = run_playbook("validate.yml", inventory, "-e", "cellplatform_mode=apply", "-e", json.dumps(extra),
                              env_extra=setup["env"], tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = first_result(data)
    assert result["cell"]["mode"] == "apply"
    assert result["prerequisites"] == ["sops", "identity", "work_dir", "secrets_dir", "talosctl", "machine_configs",
                                       "terraform", "helm", "pairs:tls_ca", "pairs:linkerd",
                                       "secret:external_dns_tsig_secret", "secret:gitea_admin_password",
                                       "secret:grafana_admin_password", "secret:grafana_admin_user",
                                       "secret:harbor_admin_password", "secret:object_store_access_key_id",
                                       "secret:object_store_read_access_key_id",
                                       "secret:object_store_read_secret_access_key",
                                       "secret:object_store_secret_access_key", "secret:proxmox_api_token"]
    assert sorted(recorded(setup["log"])) == sorted(VERSION_QUESTIONS)
    assert len(result["warnings"]) == 1 and "reference cell's example names" in result["warnings"][0]
    assert not os.path.exists(setup["vars"]["cellplatform_work_dir"])  # checked, not created


BARE_METAL = {"cellplatform_provisioner": "none", "cellplatform_talos_platform": "metal",
              "cellplatform_proxmox": pc.DELETE, "cellplatform_node_sizes": pc.DELETE,
              "cellplatform_karpenter": {"enabled": False}}


@pytest.mark.slow
def test_provisioner_none_apply_needs_no_proxmox_terraform_or_token(tmp_path):
    """Machines that already boot Talos: no cellplatform_proxmox block, no terraform on PATH, no
    Proxmox token, Karpenter off: the apply preflight passes and never asks terraform."""
    case = {"name": "bare-metal", "vars": BARE_METAL,
            "controller": {"tools": {"terraform": None}, "secrets": dict(pc.OBJECT_STORE_SECRETS,
                                                                     external_dns_tsig_secret="not-a-real-secret")}}
    setup = pc.controller_setup(case, str(tmp_path / "controller"))
    inventory = pc.materialize(case, str(tmp_path / "inventories" / "case"), setup)
    proc, data = run_playbook("validate.yml", inventory, env_extra=setup["env"], tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = first_result(data)
    assert result["cell"]["proxmox"] is None
    assert "terraform" not in result["prerequisites"] and "secret:proxmox_api_token" not in result["prerequisites"]
    assert sorted(recorded(setup["log"])) == ["helm version", "talosctl version --client --short"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["l1_api_dns_name_outside_domain", "l0_copied_reference_values", "bare_metal"])
def test_accepted_inventories_render_through_site(name, tmp_path):
    """Inventories validate.yml accepts (with warnings, or without the Proxmox block) also pass
    site.yml: render mode renders every layer and runs nothing external."""
    case = {"name": name, "expect": [], "vars": BARE_METAL} if name == "bare_metal" else pc.load_case(name)
    inventory = pc.materialize(case, str(tmp_path / "inventories" / "case"))
    log, env = recorder_env(tmp_path)
    proc, data = run_playbook("site.yml", inventory, env_extra=env, tmp=tmp_path)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-2000:])
    assert all(stats["failures"] == 0 for stats in data["stats"].values()), data["stats"]
    assert recorded(log) == []
    build = tmp_path / "build" / case["vars"].get("cellplatform_cell_name", "cell")
    plan = json.loads((build / "plan.json").read_text())
    assert plan["layers_rendered"] == SITE_LAYERS
    assert (build / "terraform" / "cell.auto.tfvars.json").exists() == (name != "bare_metal")


# --------------------------------------------------------------------------------------------
# Proof that no external command ran
# --------------------------------------------------------------------------------------------

def test_recorders_record(tmp_path):
    """The stand-ins really record (so an empty log below means something), answer the version
    questions like the real CLIs and refuse everything else."""
    log, env = recorder_env(tmp_path)
    full_env = dict(os.environ, **env)
    answers = {}
    for tool, args in (("talosctl", ["version", "--client", "--short"]), ("terraform", ["version", "-json"]),
                       ("helm", ["version"]), ("kubectl", ["version", "--client"])):
        assert shutil.which(tool, path=env["PATH"]) == os.path.join(RECORDERS, tool)
        proc = subprocess.run([tool] + args, env=full_env, check=False, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        answers[tool] = proc.stdout
        proc = subprocess.run([tool, "apply", "-f", "x"], env=full_env, check=False, capture_output=True, text=True)
        assert proc.returncode == 1 and "refuses" in proc.stderr
    assert answers["talosctl"] == "Client:\nTalos v1.13.9\n"
    assert json.loads(answers["terraform"])["terraform_version"] == "1.11.4"
    assert answers["helm"].startswith('version.BuildInfo{Version:"v3.19.0", GitCommit:')
    assert answers["kubectl"].startswith("Client Version: v1.35.2")
    assert recorded(log) == ["talosctl version --client --short", "talosctl apply -f x", "terraform version -json",
                             "terraform apply -f x", "helm version", "helm apply -f x", "kubectl version --client",
                             "kubectl apply -f x"]


@pytest.mark.slow
@pytest.mark.parametrize("tags", [(), ("-t", "talos")])
def test_bad_inventory_stops_site_before_any_command(tmp_path, tags):
    """site.yml in apply mode with a bad inventory, for the whole site and for one component:
    the stand-ins are asked their version and nothing else; nothing is written."""
    case = pc.load_case("l0_many_problems")
    case["vars"]["cellplatform_mode"] = "apply"
    setup = pc.controller_setup(case, str(tmp_path / "controller"))
    inventory = pc.materialize(case, str(tmp_path / "inventories" / "case"), setup)
    proc, data = run_playbook("site.yml", inventory, *tags, env_extra=setup["env"], tmp=tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:]
    result = first_result(data)
    pc.check_problems(case, result["problems"])
    ran = [task["task"]["name"] for play in data["plays"] for task in play["tasks"]]
    assert ran == ["Preflight every layer of the cell"], ran
    commands = recorded(setup["log"])
    expected_questions = {"talosctl version --client --short"} if tags else VERSION_QUESTIONS
    assert set(commands) == expected_questions, commands
    # the inventory's build root ({{ inventory_dir }}/../../build) was never created
    assert not (tmp_path / "build").exists()
    assert sorted(os.listdir(str(tmp_path))) == ["ansible-local", "controller", "inventories"]
