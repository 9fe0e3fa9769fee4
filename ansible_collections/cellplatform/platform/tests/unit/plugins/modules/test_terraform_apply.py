# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.terraform_apply and its runner's pure plan analysis.

Everything here runs in-process on synthetic terraform JSON (the shapes of
`terraform show -json` format 1.2 and `terraform output -json`); no terraform binary is used.
The module is driven through AnsibleModule with a fake runner that records what it was asked.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.cellplatform.platform.plugins.module_utils import terraform as tfu
from ansible_collections.cellplatform.platform.plugins.modules import terraform_apply


# ------------------------------------------------------------------------------------------
# synthetic plans
# ------------------------------------------------------------------------------------------

def rc(address, actions, before=None, after=None, mode="managed", **extra):
    change = dict(actions=actions, before=before, after=after,
                  after_unknown=extra.pop("after_unknown", {}),
                  before_sensitive=extra.pop("before_sensitive", False),
                  after_sensitive=extra.pop("after_sensitive", False))
    if "replace_paths" in extra:
        change["replace_paths"] = extra.pop("replace_paths")
    if "importing" in extra:
        change["importing"] = extra.pop("importing")
    rtype, name = address.split("[")[0].split(".")[-2:]
    out = dict(address=address, mode=mode, type=rtype, name=name, change=change)
    out.update(extra)
    return out


def plan_of(*changes, **kw):
    plan = {"format_version": "1.2", "terraform_version": "1.11.4",
            "resource_changes": list(changes), "output_changes": kw.get("outputs", {})}
    if "applyable" in kw:
        plan["applyable"] = kw["applyable"]
    return plan


VM = 'proxmox_virtual_environment_vm.node["%s"]'

MIXED = plan_of(
    rc(VM % "cp-1", ["create"], after={"name": "cp-1", "vm_id": 151}, after_unknown={"id": True}),
    rc(VM % "cp-2", ["update"], before={"name": "cp-2", "tags": ["a"]}, after={"name": "cp-2", "tags": ["a", "b"]}),
    rc(VM % "cp-3", ["delete", "create"], before={"vm_id": 153}, after={"vm_id": 163},
       replace_paths=[["vm_id"]], action_reason="replace_because_cannot_update"),
    rc(VM % "worker-1", ["create", "delete"], before={"vm_id": 161}, after={"vm_id": 161},
       action_reason="replace_because_tainted"),
    rc(VM % "worker-2", ["delete"], before={"vm_id": 162}, action_reason="delete_because_each_key"),
    rc(VM % "worker-3", ["no-op"], before={"vm_id": 163}, after={"vm_id": 163}),
    rc("data.proxmox_virtual_environment_nodes.all", ["read"], mode="data"),
    rc("terraform_data.old", ["forget"], before={"input": 1}),
    rc("terraform_data.imported", ["no-op"], before={"input": 1}, after={"input": 1},
       importing={"id": "abc"}),
    rc("terraform_data.renamed", ["no-op"], before={"input": 1}, after={"input": 1},
       previous_address="terraform_data.legacy"),
    outputs={"vm_ids": {"actions": ["update"]}, "unchanged": {"actions": ["no-op"]}},
    applyable=True,
)


# ------------------------------------------------------------------------------------------
# classification
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("actions, expected", [
    (["create"], "add"),
    (["update"], "change"),
    (["delete"], "destroy"),
    (["delete", "create"], "replace"),
    (["create", "delete"], "replace"),
    (["no-op"], None),
    (["read"], None),
    (["forget"], "forget"),
    ([], None),
    (["delete", "forget"], "destroy"),      # unknown future combination with delete: destructive
    (["create", "frobnicate"], "change"),   # unknown, not deleting: a change
])
def test_classify_actions(actions, expected):
    assert tfu.classify_actions(actions) == expected


def test_summarize_counts_and_addresses():
    s = tfu.summarize_plan(MIXED)
    assert s["summary"] == {"add": 1, "change": 1, "destroy": 1, "replace": 2, "forget": 1,
                            "import": 1, "move": 1, "output_changes": 1}
    assert s["resources"]["add"] == [VM % "cp-1"]
    assert s["resources"]["change"] == [VM % "cp-2"]
    assert s["resources"]["replace"] == [VM % "cp-3", VM % "worker-1"]
    assert s["resources"]["destroy"] == [VM % "worker-2"]
    assert s["resources"]["forget"] == ["terraform_data.old"]
    assert s["resources"]["import"] == ["terraform_data.imported"]
    assert s["resources"]["move"] == ["terraform_data.legacy -> terraform_data.renamed"]
    assert s["output_changes"] == ["vm_ids"]
    assert s["has_changes"] is True


def test_destructive_entries_name_address_action_and_cause():
    d = tfu.summarize_plan(MIXED)["destructive"]
    assert [(e["address"], e["action"]) for e in d] == [
        (VM % "cp-3", "replace"), (VM % "worker-1", "replace"), (VM % "worker-2", "delete")]
    assert d[0]["replace_paths"] == ["vm_id"]
    assert d[0]["actions"] == ["delete", "create"]
    assert d[1]["actions"] == ["create", "delete"]
    assert tfu.describe_destructive(d[0]) == VM % "cp-3" + " (replace: forced by a change of vm_id)"
    assert tfu.describe_destructive(d[1]) == VM % "worker-1" + " (replace: the object is tainted)"
    assert tfu.describe_destructive(d[2]) == VM % "worker-2" + " (delete: its key is no longer in for_each)"


def test_deposed_object_delete_is_destructive_and_labelled():
    plan = plan_of(rc(VM % "cp-1", ["delete"], before={"vm_id": 1}, deposed="00000001"))
    s = tfu.summarize_plan(plan)
    assert s["resources"]["destroy"] == [VM % "cp-1" + " (deposed object 00000001)"]
    assert s["destructive"][0]["action"] == "delete"


def test_no_changes_and_data_reads_only():
    plan = plan_of(rc(VM % "cp-1", ["no-op"], before={"a": 1}, after={"a": 1}),
                   rc("data.x.y", ["read"], mode="data"), applyable=False)
    s = tfu.summarize_plan(plan)
    assert s["has_changes"] is False
    assert not any(s["summary"].values())
    assert s["destructive"] == []


def test_output_only_change_counts_as_change_without_applyable_field():
    plan = plan_of(outputs={"x": {"actions": ["create"]}})
    s = tfu.summarize_plan(plan)
    assert s["has_changes"] is True and s["summary"]["output_changes"] == 1


@pytest.mark.parametrize("bad", [None, [], {"resource_changes": []}, "plan"])
def test_summarize_rejects_non_plans(bad):
    with pytest.raises(ValueError, match="not a terraform JSON plan"):
        tfu.summarize_plan(bad)


# ------------------------------------------------------------------------------------------
# diff and masking
# ------------------------------------------------------------------------------------------

def test_diff_update_shows_only_changed_attributes():
    plan = plan_of(rc(VM % "cp-2", ["update"],
                      before={"name": "cp-2", "memory": [{"dedicated": 4096}], "tags": ["a"]},
                      after={"name": "cp-2", "memory": [{"dedicated": 8192}], "tags": ["a"]}))
    (d,) = tfu.plan_diff(plan)
    assert d["before_header"] == VM % "cp-2" + " (change)"
    assert d["before"] == "memory[0].dedicated = 4096\n"
    assert d["after"] == "memory[0].dedicated = 8192\n"


def test_diff_masks_sensitive_values_on_both_sides():
    plan = plan_of(rc("terraform_data.node", ["update"],
                      before={"input": {"ip": "10.0.0.1", "token": "old-secret"}},
                      after={"input": {"ip": "10.0.0.2", "token": "new-secret"}},
                      before_sensitive={"input": {"token": True}},
                      after_sensitive={"input": {"token": True}}))
    (d,) = tfu.plan_diff(plan)
    text = json.dumps(d)
    assert "old-secret" not in text and "new-secret" not in text
    assert "input.token = (sensitive value)" in d["before"]
    assert "input.token = (sensitive value)" in d["after"]
    assert 'input.ip = "10.0.0.2"' in d["after"]


def test_diff_masks_a_whole_sensitive_attribute_and_marks_unknowns():
    plan = plan_of(rc("terraform_data.node", ["create"],
                      after={"input": {"a": 1, "b": [1, 2]}, "triggers_replace": 5},
                      after_unknown={"id": True, "output": True},
                      after_sensitive={"input": True}))
    (d,) = tfu.plan_diff(plan)
    assert d["before"] == ""
    assert d["after"].splitlines() == [
        "id = (known after apply)", "input = (sensitive value)", "output = (known after apply)",
        "triggers_replace = 5"]


def test_diff_replace_names_forcing_attribute_and_delete_shows_before():
    plan = plan_of(
        rc("terraform_data.a", ["delete", "create"], before={"triggers_replace": 1, "id": "x"},
           after={"triggers_replace": 2}, after_unknown={"id": True},
           replace_paths=[["triggers_replace"]]),
        rc("terraform_data.b", ["delete"], before={"input": "gone", "id": "y"}),
        rc("terraform_data.c", ["no-op"], before={"input": 1}, after={"input": 1}),
    )
    diffs = tfu.plan_diff(plan)
    assert [d["before_header"] for d in diffs] == [
        "terraform_data.a (replace, forced by triggers_replace)", "terraform_data.b (destroy)"]
    assert diffs[0]["before"] == 'id = "x"\ntriggers_replace = 1\n'
    assert diffs[0]["after"] == "id = (known after apply)\ntriggers_replace = 2\n"
    assert diffs[1]["before"] == 'id = "y"\ninput = "gone"\n' and diffs[1]["after"] == ""


def test_mask_outputs():
    raw = {"vm_ids": {"sensitive": False, "type": ["map", "number"], "value": {"cp-1": 151}},
           "token": {"sensitive": True, "type": "string", "value": "s3cr3t"}}
    assert tfu.mask_outputs(raw) == {"vm_ids": {"cp-1": 151}, "token": "(sensitive value)"}
    assert tfu.mask_outputs({}) == {}


@pytest.mark.parametrize("address, patterns, expected", [
    ("proxmox_download_file.talos", ["proxmox_download_file.talos"], True),
    ("proxmox_download_file.talos", ["proxmox_download_file.*"], True),
    ('terraform_data.node["cp-1"]', ['terraform_data.node["cp-*"]'], True),
    ('terraform_data.node["cp-1"]', ['terraform_data.node[cp-1]'], False),
    ("proxmox_virtual_environment_vm.node", ["proxmox_download_file.*"], False),
    ("a.b", [], False),
])
def test_address_matches(address, patterns, expected):
    assert tfu.address_matches(address, patterns) is expected


# ------------------------------------------------------------------------------------------
# error mapping (texts as terraform 1.11 prints them with -no-color)
# ------------------------------------------------------------------------------------------

PROVIDER_OFFLINE = """
Error: Failed to query available provider packages

Could not retrieve the list of available versions for provider bpg/proxmox:
could not connect to registry.terraform.io: failed to request discovery
document: Get "https://registry.terraform.io/.well-known/terraform.json":
dial tcp: lookup registry.terraform.io: connect: network is unreachable

To see which modules are currently depending on bpg/proxmox and what versions
are specified, run the following command:
    terraform providers
"""

PROVIDER_NOT_IN_MIRROR = """
Error: Failed to query available provider packages

Could not retrieve the list of available versions for provider bpg/proxmox:
provider registry.terraform.io/bpg/proxmox was not found in any of the search
locations

  - /srv/mirror
"""

LOCKED = """
Error: Error acquiring the state lock

Error message: ConditionalCheckFailedException
Lock Info:
  ID:        6a1f3c9e-0b7a-4d3e-9c41-1f2e3d4c5b6a
  Path:      cell/terraform.tfstate
  Operation: OperationTypeApply
"""

INVALID = """
Error: Invalid value for variable

  on cell.auto.tfvars.json line 4:
   4:  "nodes": {"cp-1": {"vm_id": 1}}
    \u251c\u2500\u2500\u2500\u2500
    \u2502 var.nodes is map of object with 1 element

nodes[*].vm_id must be an integer between 100 and 999999999 (Proxmox VM id range).

This was checked by the validation rule at variables.tf:108,3-13.
"""


@pytest.mark.parametrize("stderr, kind, needles", [
    (PROVIDER_OFFLINE, "provider_install",
     ["terraform could not install provider bpg/proxmox", "plugin_dir", "network access",
      "could not connect to registry.terraform.io"]),
    (PROVIDER_NOT_IN_MIRROR, "provider_install",
     ["provider bpg/proxmox", "not found in any of the search locations", "plugin_dir"]),
    (LOCKED, "state_locked",
     ["lock ID 6a1f3c9e-0b7a-4d3e-9c41-1f2e3d4c5b6a", "lock_timeout",
      "terraform force-unlock 6a1f3c9e-0b7a-4d3e-9c41-1f2e3d4c5b6a"]),
    ('\nError: No value for required variable\n\n  on variables.tf line 1:\n   1: variable "nodes" {\n\n'
     'The root module input variable "nodes" is not set, and has no default value.\n',
     "missing_variable", ["variable 'nodes'", "var_files", "auto.tfvars.json"]),
    (INVALID, "invalid_variable",
     ["nodes: nodes[*].vm_id must be an integer between 100", "fix the value"]),
    ("\nError: Saved plan is stale\n\nThe given plan file can no longer be applied.\n",
     "stale_plan", ["nothing was applied", "rerun"]),
    ("\nError: Backend configuration changed\n\nA change in the backend configuration...\n",
     "backend_changed", ["init_reconfigure: true"]),
    ("\nError: Inconsistent dependency lock file\n\nThe following dependency selections...\n",
     "init_required", ["init: true"]),
    ("\nError: Unsupported Argument\n\n  on main.tf line 3:\n   3: foo = 1\n\n"
     'An argument named "foo" is not expected here.\n'
     "\nError: Missing newline\n\nsomething else\n",
     "error", ['terraform plan failed in /p: Unsupported Argument: An argument named "foo" is not expected here.',
               "1 more error(s): Missing newline"]),
    ("segfault", "error", ["terraform plan exited with rc=1", "segfault"]),
])
def test_explain_error(stderr, kind, needles):
    got_kind, message = tfu.explain_error("plan", 1, "", stderr, "/p")
    assert got_kind == kind
    for needle in needles:
        assert needle in message, (needle, message)
    assert "main.tf line" not in message and "validation rule at" not in message


# ------------------------------------------------------------------------------------------
# the module, with a fake runner
# ------------------------------------------------------------------------------------------

class FakeRunner(object):
    """Stands in for module_utils.terraform.Terraform; records calls."""

    plan = None
    has_changes = True
    outputs = {"vm_ids": {"sensitive": False, "value": {"cp-1": 151}},
               "token": {"sensitive": True, "value": "hunter22"}}
    calls = []
    fail_on = None

    def __init__(self, project_path, **kwargs):
        self.project_path = project_path
        self.kwargs = kwargs
        self.version = "1.11.4"
        self.commands = []
        type(self).calls.append(("new", project_path, kwargs.get("timeout")))

    def _call(self, name, *args):
        type(self).calls.append((name,) + args)
        self.commands.append("/usr/bin/terraform %s" % name)
        if self.fail_on == name:
            raise tfu.TerraformError("terraform %s failed: boom -- fix it" % name, kind="error", rc=1)

    def init(self, **kwargs):
        self._call("init", kwargs.get("plugin_dirs"), tuple(sorted(kwargs.get("backend_config") or {})))

    def workspace(self, name):
        self._call("workspace", name)
        return name

    def plan(self, var_files=None, variables=None):
        self._call("plan", tuple(var_files or ()), json.dumps(variables, sort_keys=True))
        return self.has_changes, "/tmp/fake.tfplan"

    def show_plan(self, planfile):
        self._call("show", planfile)
        return self.plan_json

    def apply(self, planfile):
        self._call("apply", planfile)

    def output(self):
        self._call("output")
        return self.outputs

    def cleanup(self):
        type(self).calls.append(("cleanup",))


def run(monkeypatch, capsys, args, plan, has_changes=True, fail_on=None, check=False, diff=False):
    FakeRunner.calls = []
    runner = type("Runner", (FakeRunner,), dict(plan_json=plan, has_changes=has_changes, fail_on=fail_on))
    monkeypatch.setattr(terraform_apply, "Terraform", runner)
    full = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": full})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit) as exc:
        terraform_apply.main()
    out = json.loads(capsys.readouterr().out)
    out["_rc"] = exc.value.code
    out["_calls"] = [c[0] for c in FakeRunner.calls]
    return out


CREATE = plan_of(rc(VM % "cp-1", ["create"], after={"vm_id": 151}), applyable=True)
REPLACE = plan_of(rc(VM % "cp-1", ["delete", "create"], before={"vm_id": 151}, after={"vm_id": 152},
                     replace_paths=[["vm_id"]]),
                  rc(VM % "cp-2", ["delete"], before={"vm_id": 152},
                     action_reason="delete_because_each_key"),
                  applyable=True)
NOOP = plan_of(rc(VM % "cp-1", ["no-op"], before={"vm_id": 151}, after={"vm_id": 151}), applyable=False)
NOOP["prior_state"] = {"format_version": "1.0", "values": {"outputs": {
    "vm_ids": {"sensitive": False, "type": ["map", "number"], "value": {"cp-9": 999}},
    "token": {"sensitive": True, "type": "string", "value": "prior-secret"}}}}


def test_module_applies_a_plan_with_changes(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p", "variables": {"a": 1}, "timeout": 9}, CREATE)
    assert r["_rc"] == 0 and r["changed"] is True and r["applied"] is True
    assert r["_calls"] == ["new", "init", "workspace", "plan", "show", "apply", "output", "cleanup"]
    assert r["summary"]["add"] == 1 and r["resources"]["add"] == [VM % "cp-1"]
    assert r["outputs"] == {"vm_ids": {"cp-1": 151}, "token": "(sensitive value)"}
    assert "hunter22" not in json.dumps(r)
    assert r["terraform_version"] == "1.11.4"
    assert FakeRunner.calls[0] == ("new", "/p", 9)


def test_module_no_changes_does_not_apply(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p"}, NOOP, has_changes=False)
    assert r["_rc"] == 0 and r["changed"] is False and r["applied"] is False
    assert "apply" not in r["_calls"]
    # outputs come from `terraform output -json` (the state), not the plan's prior_state
    assert r["_calls"][-2:] == ["output", "cleanup"]
    assert r["outputs"] == {"vm_ids": {"cp-1": 151}, "token": "(sensitive value)"}
    assert "prior-secret" not in json.dumps(r) and "hunter22" not in json.dumps(r)


def test_module_check_mode_plans_only_and_reports_change(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p"}, CREATE, check=True, diff=True)
    assert r["_rc"] == 0 and r["changed"] is True and r["applied"] is False
    assert "apply" not in r["_calls"]
    assert r["diff"][0]["after_header"] == VM % "cp-1" + " (add)"
    assert r["diff"][0]["after"] == "vm_id = 151\n"


def test_module_refuses_delete_and_replace_naming_each(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p"}, REPLACE)
    assert r["_rc"] == 1 and r["failed"] is True and r["applied"] is False
    assert "apply" not in r["_calls"] and r["_calls"][-1] == "cleanup"
    assert r["error_kind"] == "destroy_refused"
    msg = r["msg"]
    assert VM % "cp-1" + " (replace: forced by a change of vm_id)" in msg
    assert VM % "cp-2" + " (delete: its key is no longer in for_each)" in msg
    assert "allow_destroy: true" in msg and "cellplatform_terraform_allow_destroy=true" in msg
    assert "Nothing was applied" in msg
    assert r["summary"]["replace"] == 1 and r["summary"]["destroy"] == 1


def test_module_refuses_in_check_mode_too(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p"}, REPLACE, check=True)
    assert r["_rc"] == 1 and r["error_kind"] == "destroy_refused"


def test_module_allow_destroy_applies(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p", "allow_destroy": True}, REPLACE)
    assert r["_rc"] == 0 and r["applied"] is True and "apply" in r["_calls"]
    assert [d["address"] for d in r["destructive"]] == [VM % "cp-1", VM % "cp-2"]


def test_module_allow_destroy_patterns_only_cover_matching_addresses(monkeypatch, capsys):
    args = {"project_path": "/p", "allow_destroy_patterns": [VM % "cp-*"]}
    r = run(monkeypatch, capsys, args, REPLACE)
    assert r["_rc"] == 0 and r["applied"] is True
    args = {"project_path": "/p", "allow_destroy_patterns": [VM % "cp-1"]}
    r = run(monkeypatch, capsys, args, REPLACE)
    assert r["_rc"] == 1 and VM % "cp-2" in r["msg"] and VM % "cp-1" + " (replace" not in r["msg"]


def test_module_planned_state_never_applies_or_refuses(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p", "state": "planned"}, REPLACE)
    assert r["_rc"] == 0 and r["changed"] is False and r["has_changes"] is True
    assert "apply" not in r["_calls"] and len(r["destructive"]) == 2


def test_module_init_false_skips_init(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p", "init": False}, CREATE)
    assert "init" not in r["_calls"]


def test_module_runner_error_fails_with_its_message_and_cleans_up(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p"}, CREATE, fail_on="plan")
    assert r["_rc"] == 1 and r["msg"] == "terraform plan failed: boom -- fix it"
    assert r["_calls"][-1] == "cleanup"
    assert r["commands"] == ["/usr/bin/terraform %s" % c for c in ("init", "workspace", "plan")]


def test_module_failed_apply_reports_change_and_how_to_converge(monkeypatch, capsys):
    r = run(monkeypatch, capsys, {"project_path": "/p"}, CREATE, fail_on="apply")
    assert r["_rc"] == 1 and r["changed"] is True and r["applied"] is False
    assert r["msg"].startswith("terraform apply failed: boom -- fix it")
    assert "a rerun converges" in r["msg"]


def test_return_keys_are_not_dict_method_names():
    import yaml
    doc = yaml.safe_load(terraform_apply.RETURN)
    forbidden = set(dir(dict))
    assert not forbidden & set(doc)
    for key in ("summary",):
        assert not forbidden & set(doc[key]["contains"])


def test_sensitive_variable_literals_are_masked_where_terraform_lost_the_mark():
    plan = plan_of(rc("terraform_data.node", ["update"],
                      before={"output": {"token": "hunter22", "ip": "10.0.0.1"}, "input": "x"},
                      after={"input": "y"}, after_unknown={"output": True},
                      before_sensitive={"output": {}}))
    plan["configuration"] = {"root_module": {"variables": {
        "token": {"sensitive": True}, "short": {"sensitive": True}, "label": {}}}}
    plan["variables"] = {"token": {"value": "hunter22"}, "short": {"value": "ab"},
                         "label": {"value": "10.0.0.1"}}
    assert tfu.sensitive_literals(plan) == ["hunter22"]
    (d,) = tfu.plan_diff(plan)
    assert "hunter22" not in json.dumps(d)
    assert 'output.token = (sensitive value)' in d["before"]
    assert 'output.ip = "10.0.0.1"' in d["before"]
    outputs = {"o": {"sensitive": False, "value": {"t": "pre-hunter22-post", "n": 1}}}
    assert tfu.mask_outputs(outputs, ["hunter22"]) == {"o": {"t": "pre-(sensitive value)-post", "n": 1}}
