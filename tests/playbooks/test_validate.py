# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/validate.yml and the preflight against the negative inventories.

Every case under tests/playbooks/inventories/ runs in-process against
module_utils/cell_model.py (fast); a representative set, the reference inventory and the
layer selection run through the real ansible-playbook; recording stand-ins for talosctl,
terraform, helm and kubectl on PATH prove that no external command ran.
Run inside scripts/netns-run (loopback only), e.g.:
    scripts/netns-run .venv/bin/pytest -q tests/playbooks/test_validate.py
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

import preflight_cases as pc

sys.path.insert(0, pc.REPO)

from ansible_collections.cellplatform.platform.plugins.module_utils import cell_model  # noqa: E402

RECORDERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recorders")
RECORDED_TOOLS = ("talosctl", "terraform", "helm", "kubectl")
# An age X25519 public key with a valid checksum (public keys are not secrets).
AGE_RECIPIENT = "age1jrt4wcqq6sc0gexnntep0xecwky60ugk0euv67me6xm7c7me7udq7r0003"
# Each ansible-playbook run costs seconds, so a representative set runs through it (host vars,
# group structure, per-node overrides, several problems at once, L1 + L2); every case runs in-process.
PLAYBOOK_CASES = (
    "l0_many_problems",
    "l0_node_ip_missing",
    "l0_vm_id_duplicate",
    "l0_host_in_both_groups",
    "l2_many_problems",
    "l3_many_problems",
)
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
        pytest.fail("no JSON from %s (rc %d):\n%s\n%s" % (cmd, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
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


# --------------------------------------------------------------------------------------------
# The case files themselves
# --------------------------------------------------------------------------------------------

def test_enough_negative_inventories():
    layers = [pc.load_case(name)["layer"] for name in pc.case_names()]
    assert layers.count("l0") >= 30
    assert layers.count("l1") + layers.count("l2") >= 15
    assert layers.count("l3") >= 15
    multi = [name for name in pc.case_names() if len(pc.load_case(name)["expect"]) > 1]
    assert len(multi) >= 3, multi


def test_reference_inventory_is_clean_in_process():
    variables, hosts = pc.in_process({"name": "reference"})
    assert cell_model.validate(variables, hosts) == []


@pytest.mark.parametrize("name", pc.case_names())
def test_case_in_process(name):
    case = pc.load_case(name)
    variables, hosts = pc.in_process(case)
    problems = cell_model.validate(variables, hosts, layers=case.get("layers"))
    pc.check_problems(case, problems)
    # reporting is deterministic
    assert cell_model.validate(variables, hosts, layers=case.get("layers")) == problems


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
    variables, hosts = pc.in_process({"name": "reference"}, inventory_dir=pc.REFERENCE)
    assert cell == cell_model.build_cell_model(variables, hosts)
    assert cell["build_dir"] == os.path.join(os.path.realpath(os.path.join(pc.REPO, "build")), "cell")
    assert cell["secrets_dir"] == os.path.join(pc.REFERENCE, "secrets")
    assert [n["name"] for n in cell["nodes"]] == ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"]
    assert not log.exists() or log.read_text() == ""


@pytest.mark.slow
@pytest.mark.parametrize("name", PLAYBOOK_CASES)
def test_case_through_ansible_playbook(name, tmp_path):
    case = pc.load_case(name)
    inventory = pc.materialize(case, str(tmp_path / "inventories" / "case"))
    log, env = recorder_env(tmp_path)
    proc, data = run_playbook("validate.yml", inventory, env_extra=env, tmp=tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:]
    result = first_result(data)
    assert result["failed"] is True
    pc.check_problems(case, result["problems"])
    count = len(case["expect"])
    assert result["msg"].startswith("Preflight found %d problem%s" % (count, "" if count == 1 else "s"))
    for idx, want in enumerate(case["expect"], 1):
        line = [ln for ln in result["msg"].splitlines() if ln.startswith("%d. " % idx)]
        assert line and want in line[0] and " Fix: " in line[0], (want, result["msg"])
    assert "cell" not in result
    assert not log.exists() or log.read_text() == ""


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
    """-e overrides reach the preflight (apply without recipients: l0_apply_without_recipients)."""
    inventory = os.path.join(pc.REFERENCE, "hosts.yml")
    proc, data = run_playbook("validate.yml", inventory, "-e", "cellplatform_mode=apply",
                              "-e", json.dumps({"cellplatform_age_recipients": [AGE_RECIPIENT]}), tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert first_result(data)["cell"]["mode"] == "apply"


# --------------------------------------------------------------------------------------------
# Proof that no external command ran
# --------------------------------------------------------------------------------------------

def test_recorders_record(tmp_path):
    """The stand-ins really record (so an empty log below means something)."""
    log, env = recorder_env(tmp_path)
    full_env = dict(os.environ, **env)
    for tool in RECORDED_TOOLS:
        assert shutil.which(tool, path=env["PATH"]) == os.path.join(RECORDERS, tool)
        proc = subprocess.run([tool, "version"], env=full_env, check=False)
        assert proc.returncode == 1
    assert log.read_text().split("\n")[:-1] == ["%s version" % tool for tool in RECORDED_TOOLS]


@pytest.mark.slow
@pytest.mark.parametrize("tags", [(), ("-t", "talos")])
def test_bad_inventory_stops_site_before_any_command(tmp_path, tags):
    """site.yml (validate.yml until site.yml exists) in apply mode with a bad inventory."""
    playbook = "site.yml" if os.path.exists(os.path.join(pc.REPO, "playbooks", "site.yml")) else "validate.yml"
    case = pc.load_case("l0_many_problems")
    case["vars"]["cellplatform_mode"] = "apply"
    case["vars"]["cellplatform_age_recipients"] = [AGE_RECIPIENT]
    inventory = pc.materialize(case, str(tmp_path / "inventories" / "case"))
    log, env = recorder_env(tmp_path)
    proc, data = run_playbook(playbook, inventory, *tags, env_extra=env, tmp=tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:]
    result = first_result(data)
    pc.check_problems(case, result["problems"])
    ran = [task["task"]["name"] for play in data["plays"] for task in play["tasks"]]
    assert ran == ["Preflight every layer of the cell"], ran
    assert not log.exists() or log.read_text() == "", log.read_text()
    # the inventory's build root ({{ inventory_dir }}/../../build) was never created
    assert not (tmp_path / "build").exists()
    assert sorted(os.listdir(str(tmp_path))) == ["ansible-local", "inventories"]
