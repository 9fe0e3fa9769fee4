# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""action/cell_preflight.py in-process: task_vars in, cell model or every problem out, nothing run."""

from __future__ import annotations

import copy
import os
import subprocess
from unittest import mock

import pytest

from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.cellplatform.platform.plugins.action.cell_preflight import ActionModule
from ansible_collections.cellplatform.platform.plugins.plugin_utils import prerequisites
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS

AGE_KEY = "age1jrt4wcqq6sc0gexnntep0xecwky60ugk0euv67me6xm7c7me7udq7r0003"

# The reference cell, with the values the inventory writes as templates kept as templates.
CELL_VARS = dict(
    REFERENCE_VARS,
    cellplatform_build_root=trust_as_template("{{ inventory_dir }}/../../build"),
    cellplatform_secrets_dir=trust_as_template("{{ inventory_dir }}/secrets"),
    cellplatform_api_dns_name=trust_as_template("api.{{ cellplatform_dns_domain }}"),
)
NODES = {"cp-1": "192.168.100.51", "cp-2": "192.168.100.52", "cp-3": "192.168.100.53",
         "worker-1": "192.168.100.61", "worker-2": "192.168.100.62", "worker-3": "192.168.100.63"}


def task_vars(tmp_path, **overrides):
    inventory_dir = str(tmp_path / "inventories" / "production")
    variables = copy.deepcopy(CELL_VARS)
    variables.update(overrides)
    hostvars = {name: dict(variables, cellplatform_node_ip=ip, inventory_hostname=name) for name, ip in NODES.items()}
    hostvars["localhost"] = dict(variables, inventory_hostname="localhost")
    result = dict(variables)
    result.update({
        "inventory_dir": inventory_dir,
        "inventory_hostname": "localhost",
        "groups": {"all": ["localhost"] + list(NODES), "ungrouped": [], "cell": list(NODES),
                   "controlplane": ["cp-1", "cp-2", "cp-3"], "workers": ["worker-1", "worker-2", "worker-3"]},
        "hostvars": hostvars,
        "unrelated_var": trust_as_template("{{ undefined_thing }}"),  # not a cellplatform_* variable: never templated
    })
    return result


def make_action(tvars, **args):
    task = mock.MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = False
    task.action = "cellplatform.platform.cell_preflight"
    connection = mock.MagicMock()
    connection._shell.tmpdir = "/nonexistent-remote-tmp"
    action = ActionModule(task, connection, mock.MagicMock(), DataLoader(),
                          Templar(loader=DataLoader(), variables=tvars), None)
    # Outside a running play there is no task context to register host variables in;
    # record them instead, so tests can assert what the play would see.
    action.registered = {}
    action.register_host_variables = lambda variables, layer: action.registered.setdefault(layer.name, {}).update(variables)
    return action, connection


@pytest.fixture(autouse=True)
def no_commands(monkeypatch):
    """Any attempt to run a process fails the test."""
    def forbidden(*_args, **_kwargs):
        raise AssertionError("cell_preflight tried to run an external command")
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(os, "execvpe", forbidden)


def run(tmp_path, args=None, **overrides):
    tvars = task_vars(tmp_path, **overrides)
    action, connection = make_action(tvars, **(args or {}))
    with mock.patch.object(ActionModule, "_execute_module", side_effect=AssertionError("module executed")), \
            mock.patch.object(ActionModule, "_low_level_execute_command", side_effect=AssertionError("command run")):
        result = action.run(task_vars=tvars)
    assert not connection.exec_command.called
    assert not connection.put_file.called
    return result


def test_clean_inventory_sets_the_fact(tmp_path):
    pool = {"start": trust_as_template("{{ pool_base }}.200"), "end": "192.168.100.250"}
    tvars = task_vars(tmp_path, cellplatform_lb_pool=pool)
    tvars["pool_base"] = "192.168.100"
    action, _conn = make_action(tvars)
    result = action.run(task_vars=tvars)
    assert result["cell"]["lb_pool"]["range"] == "192.168.100.200-192.168.100.250"
    result = run(tmp_path)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is False
    assert result["problems"] == []
    assert result["layers"] == ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"]
    cell = result["cell"]
    assert cell["build_dir"] == os.path.join(os.path.realpath(str(tmp_path / "build")), "cell")
    assert cell["secrets_dir"] == os.path.realpath(str(tmp_path / "inventories" / "production" / "secrets"))
    assert cell["api"]["dns_name"] == "api.cell.lan"  # templated
    assert [n["name"] for n in cell["nodes"]] == list(NODES)
    assert [n["vm_id"] for n in cell["nodes"]] == [151, 152, 153, 161, 162, 163]
    assert not os.listdir(str(tmp_path))  # realpath only: nothing created


def test_every_problem_at_once(tmp_path):
    result = run(tmp_path, cellplatform_api_vip="192.168.100.61", cellplatform_kubernetes_version="1.30.0",
                 cellplatform_policy_mode="warn")
    assert result["failed"] is True
    assert result["changed"] is False
    assert "cell" not in result
    assert [p["field"] for p in result["problems"]] == [
        "cellplatform_api_vip", "cellplatform_kubernetes_version", "cellplatform_policy_mode"]
    lines = result["msg"].splitlines()
    assert lines[0] == "Preflight found 3 problems in the inventory (nothing was changed):"
    assert lines[1].startswith("1. cellplatform_api_vip: 192.168.100.61 is also the address of node worker-1. Fix: ")
    assert lines[2].startswith("2. cellplatform_kubernetes_version: 1.30.0 is not supported by Talos v1.13.9")
    assert lines[3].startswith("3. cellplatform_policy_mode: warn is not one of audit, enforce. Fix: use one of")


def test_node_overrides_come_from_hostvars(tmp_path):
    tvars = task_vars(tmp_path)
    tvars["hostvars"]["worker-2"]["cellplatform_node_install_disk"] = "/dev/vdb"
    tvars["hostvars"]["worker-3"]["cellplatform_node_vm_id"] = 777
    tvars["hostvars"]["cp-2"]["cellplatform_node_ip"] = "192.168.100.51"
    action, _conn = make_action(tvars)
    result = action.run(task_vars=tvars)
    assert [p["message"] for p in result["problems"]] == [
        "cp-2.cellplatform_node_ip: 192.168.100.51 is also the address of node cp-1"]
    del tvars["hostvars"]["cp-2"]["cellplatform_node_ip"]
    tvars["hostvars"]["cp-2"]["cellplatform_node_ip"] = "192.168.100.52"
    result = action.run(task_vars=tvars)
    nodes = {n["name"]: n for n in result["cell"]["nodes"]}
    assert nodes["worker-2"]["install_disk"] == "/dev/vdb"
    assert nodes["worker-3"]["vm_id"] == 777


def test_untemplatable_variable_is_a_problem(tmp_path):
    result = run(tmp_path, cellplatform_argocd_domain=trust_as_template("argocd.{{ no_such_variable }}"))
    assert result["failed"] is True
    fields = [p["field"] for p in result["problems"]]
    assert fields[0] == "cellplatform_argocd_domain"
    assert "cannot be templated" in result["problems"][0]["message"]
    assert "no_such_variable" in result["problems"][0]["message"]
    assert fields == ["cellplatform_argocd_domain"]  # not reported again as "not set"


def test_implicit_localhost_without_inventory_dir(tmp_path):
    tvars = task_vars(tmp_path)
    del tvars["inventory_dir"]
    action, _conn = make_action(tvars)
    result = action.run(task_vars=tvars)
    assert [p["field"] for p in result["problems"]] == ["cellplatform_build_root", "cellplatform_secrets_dir"]
    assert all("inventory_dir" in p["message"] and "explicit host" in p["fix"] for p in result["problems"])


def test_layers_option(tmp_path):
    result = run(tmp_path, args={"layers": ["l0"]}, cellplatform_policy_mode="warn")
    assert result.get("failed") is not True
    assert result["layers"] == ["l0"]
    result = run(tmp_path, args={"layers": "l0,l2"}, cellplatform_policy_mode="warn")
    assert [p["field"] for p in result["problems"]] == ["cellplatform_policy_mode"]
    result = run(tmp_path, args={"layers": ["l0", "l9"]})
    assert [p["field"] for p in result["problems"]] == ["layers (task option)"]
    assert result["failed"] is True


def controller_checked(calls, problems=(), warnings=()):
    """A stand-in for prerequisites.check that records what it was asked (unit tests run nothing)."""
    def fake(reqs, variables, talosctl_path=None):
        calls.append({"ids": [r["id"] for r in reqs], "mode": variables.get("cellplatform_mode"),
                      "talosctl_path": talosctl_path})
        return list(problems), list(warnings)
    return fake


def test_mode_option(tmp_path):
    calls = []
    with mock.patch.object(prerequisites, "check", side_effect=controller_checked(calls)):
        result = run(tmp_path, args={"mode": "apply"})
        assert [p["field"] for p in result["problems"]] == ["cellplatform_age_recipients"]
        result = run(tmp_path, args={"mode": "apply", "talosctl_path": "/opt/talosctl"},
                     cellplatform_age_recipients=[AGE_KEY])
        assert result["cell"]["mode"] == "apply"
        result = run(tmp_path, args={"mode": "yolo"})
        assert [p["field"] for p in result["problems"]] == ["mode (task option)"]
        run(tmp_path)  # render mode: this controller is not checked
    assert len(calls) == 2
    assert calls[1]["talosctl_path"] == "/opt/talosctl"
    assert calls[1]["ids"] == ["sops", "identity", "work_dir", "secrets_dir", "talosctl", "machine_configs", "terraform",
                               "helm", "pairs:tls_ca", "pairs:linkerd", "secret:external_dns_tsig_secret",
                               "secret:gitea_admin_password", "secret:grafana_admin_password",
                               "secret:grafana_admin_user", "secret:harbor_admin_password",
                               "secret:object_store_access_key_id", "secret:object_store_read_access_key_id",
                               "secret:object_store_read_secret_access_key", "secret:object_store_secret_access_key",
                               "secret:proxmox_api_token"]


def test_controller_problems_are_reported_with_the_inventory_problems(tmp_path):
    missing = {"field": "talosctl", "value": "(not on PATH)", "message": "talosctl: (not on PATH) is missing",
               "fix": "install talosctl."}
    calls = []
    with mock.patch.object(prerequisites, "check", side_effect=controller_checked(calls, [missing])):
        result = run(tmp_path, args={"mode": "apply"}, cellplatform_api_port=0, cellplatform_age_recipients=[AGE_KEY])
    assert result["failed"] is True
    assert [p["field"] for p in result["problems"]] == ["cellplatform_api_port", "talosctl"]
    assert result["msg"].startswith("Preflight found 2 problems in the inventory and on this controller")
    assert "cell" not in result


def test_later_preflights_skip_what_an_earlier_one_checked_and_warned(tmp_path):
    """The preflight runs at the start of every play: what an earlier one on this host found in place
    is not asked again, and its warnings are shown once."""
    calls = []
    tvars = task_vars(tmp_path, cellplatform_mode="apply", cellplatform_age_recipients=[AGE_KEY])
    with mock.patch.object(prerequisites, "check", side_effect=controller_checked(calls, (), ["a warning"])):
        action, _conn = make_action(tvars)
        first = action.run(task_vars=tvars)
        assert first["warnings"][-1] == "a warning" and "example names" in first["warnings"][0]
        done = action.registered["EPHEMERAL_FACT"]["cell_preflight__done"]
        assert done["warned"] is True and "talosctl" in done["checked"]
        tvars["cell_preflight__done"] = done
        tvars["cellplatform_cell"] = first["cell"]  # set by the first preflight: not an input
        action, _conn = make_action(tvars, layers=["l0"])
        second = action.run(task_vars=tvars)
    assert second.get("failed") is not True, second.get("msg")
    assert "warnings" not in second
    assert calls[1]["ids"] == [] and second["prerequisites"] == []


def test_unknown_option_is_rejected(tmp_path):
    with pytest.raises(AnsibleActionFail):
        run(tmp_path, args={"layer": ["l0"]})


def test_cell_is_registered_as_a_host_variable_not_a_fact(tmp_path):
    tvars = task_vars(tmp_path)
    action, _connection = make_action(tvars)
    result = action.run(task_vars=tvars)
    assert "ansible_facts" not in result
    assert action.registered["EPHEMERAL_FACT"]["cellplatform_cell"] == result["cell"]
    assert action.registered["EPHEMERAL_FACT"]["cell_preflight__done"] == {"checked": [], "warned": False}
    assert action.registered["CACHEABLE_FACT"] == {}
