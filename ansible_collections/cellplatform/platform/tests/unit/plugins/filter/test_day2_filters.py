# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""talos_upgrade_plan and etcd_removal_check: the day-2 decisions, pure, on the reference cell."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.filter.talos import etcd_removal_check, talos_upgrade_plan
from ansible_collections.cellplatform.platform.plugins.module_utils import cell_model as cm
from ansible_collections.cellplatform.platform.tests.unit.plugins.module_utils.test_cell_model import reference_hosts
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS, SCHEMATIC

NAMES = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"]


def cell(talos="v1.13.10", k8s="1.36.3"):
    v = copy.deepcopy(REFERENCE_VARS)
    v.update(cellplatform_talos_version=talos, cellplatform_kubernetes_version=k8s)
    return cm.build_cell_model(v, reference_hosts())


def found(model, talos="v1.13.9", k8s="1.36.3", schematic=SCHEMATIC, **per_node):
    """talos_info(detail=versions)-shaped answers; per_node: {name: {field: value}}."""
    nodes = {}
    for n in model["nodes"]:
        info = dict(state="configured", stage="running", ready=True, talos_version=talos, schematic=schematic,
                    kubernetes_version=k8s, machine_type=None, etcd_member_id=None)
        info.update(per_node.get(n["name"].replace("-", "_"), {}))
        nodes[n["ip"]] = info
    return {"nodes": nodes, "changed": False}


def test_a_patch_upgrade_plans_every_node_in_order_and_keeps_kubernetes():
    model = cell()
    plan = talos_upgrade_plan(model, found(model))
    assert plan["problems"] == []
    assert plan["upgrade"] == NAMES and plan["current"] == []
    assert plan["target"] == {"talos_version": "v1.13.10", "schematic": SCHEMATIC,
                              "image": "factory.talos.dev/nocloud-installer/%s:v1.13.10" % SCHEMATIC,
                              "kubernetes_version": "1.36.3"}
    assert plan["kubernetes"] == {"from": "1.36.3", "to": "1.36.3", "change": False}


def test_nodes_at_the_target_are_skipped_and_a_finished_cell_plans_nothing():
    model = cell()
    half = found(model, cp_1={"talos_version": "v1.13.10"}, cp_2={"talos_version": "v1.13.10"})
    plan = talos_upgrade_plan(model, half)
    assert plan["upgrade"] == NAMES[2:] and plan["current"] == ["cp-1", "cp-2"] and plan["problems"] == []
    done = talos_upgrade_plan(model, found(model, talos="v1.13.10"))
    assert done["upgrade"] == [] and done["current"] == NAMES and not done["kubernetes"]["change"]


def test_another_schematic_is_an_upgrade_even_at_the_same_version():
    model = cell(talos="v1.13.9")
    plan = talos_upgrade_plan(model, found(model, worker_2={"schematic": "0" * 64}))
    assert plan["upgrade"] == ["worker-2"]


def test_every_reason_to_refuse_at_once():
    model = cell(talos="v1.14.0", k8s="1.33.1")
    answers = found(model, k8s="1.32.4",
                    cp_2={"talos_version": "v1.12.5"},
                    cp_3={"talos_version": "v1.14.1"},
                    worker_1={"state": "maintenance", "talos_version": None},
                    worker_2={"state": "unreachable", "talos_version": None, "error": "connection refused on port 50000"},
                    worker_3={"kubernetes_version": None})
    problems = talos_upgrade_plan(model, answers)["problems"]
    text = " | ".join(problems)
    assert "cp-2 (192.168.100.52) runs Talos v1.12.5 and v1.14.0 is more than one minor version ahead" in text
    assert "cp-3 (192.168.100.53) runs Talos v1.14.1, newer than v1.14.0" in text and "never downgrades" in text
    assert "worker-1 (192.168.100.61) is in maintenance mode" in text
    assert "worker-2 (192.168.100.62): its Talos API does not answer (connection refused on port 50000)" in text
    assert "worker-3 (192.168.100.63): its kubelet version is unknown" in text
    assert "the cell runs Kubernetes 1.32.4, which Talos v1.14.0 does not support (1.33-1.37)" in text
    assert len(problems) == 6, problems


def test_kubernetes_steps_one_minor_forward_only():
    model = cell(talos="v1.13.10", k8s="1.36.3")
    assert "skips a minor version" in " ".join(talos_upgrade_plan(model, found(model, k8s="1.34.2"))["problems"])
    back = talos_upgrade_plan(cell(talos="v1.13.10", k8s="1.35.5"), found(model, k8s="1.36.3"))["problems"]
    assert any("older than the 1.36.3 the cell runs" in p for p in back), back
    step = talos_upgrade_plan(model, found(model, k8s="1.35.9"))
    assert step["problems"] == [] and step["kubernetes"] == {"from": "1.35.9", "to": "1.36.3", "change": True}


def test_an_unfinished_kubernetes_upgrade_blocks_a_talos_upgrade():
    model = cell(talos="v1.13.10", k8s="1.36.4")
    mixed = found(model, k8s="1.36.3", worker_3={"kubernetes_version": "1.36.4"})
    assert any("an upgrade-k8s did not finish" in p for p in talos_upgrade_plan(model, mixed)["problems"])
    # once Talos is done everywhere the same mix is just the Kubernetes step left
    mixed_done = found(model, talos="v1.13.10", k8s="1.36.3", worker_3={"kubernetes_version": "1.36.4"})
    plan = talos_upgrade_plan(model, mixed_done)
    assert plan["problems"] == [] and plan["kubernetes"]["change"]


def test_the_plan_needs_the_cell_model():
    with pytest.raises(AnsibleFilterError):
        talos_upgrade_plan({"nodes": "x"}, {})


def members(*spec):
    """('cp-1', True) -> a member running or not."""
    return [dict(id="%016x" % (i + 1), hostname=name, peer_urls=[], learner=False, running=running)
            for i, (name, running) in enumerate(spec)]


def test_removing_a_healthy_member_of_three_leaves_an_even_count():
    three = members(("cp-1", True), ("cp-2", True), ("cp-3", True))
    check = etcd_removal_check(three, "cp-3")
    assert check["members_after"] == 2 and not check["dead"]
    assert len(check["problems"]) == 1 and "leaves 2 etcd members, an even number" in check["problems"][0]
    assert etcd_removal_check(three, "cp-3", allow_even=True)["problems"] == []


def test_five_to_four_to_three():
    five = members(("cp-1", True), ("cp-2", True), ("cp-3", True), ("cp-4", True), ("cp-5", True))
    assert etcd_removal_check(five, "cp-5")["problems"] != []
    assert etcd_removal_check(five, "cp-5", allow_even=True)["problems"] == []
    assert etcd_removal_check(five[:4], "cp-4")["problems"] == []


def test_removing_a_live_member_while_another_is_dead_breaks_quorum():
    three = members(("cp-1", True), ("cp-2", False), ("cp-3", True))
    check = etcd_removal_check(three, "cp-3", allow_even=True)
    assert check["running_after"] == 1
    assert any("would leave 1 of 2 members running, below the quorum of 2" in p for p in check["problems"])


def test_removing_the_dead_member_is_fine_and_says_so():
    three = members(("cp-1", True), ("cp-2", True), ("cp-3", False))
    check = etcd_removal_check(three, "cp-3", allow_even=True)
    assert check["dead"] and check["problems"] == [] and check["member"]["id"] == "%016x" % 3


def test_no_quorum_now_and_the_last_member_are_refused():
    assert any("no quorum now (1 of 3 members running)" in p for p in etcd_removal_check(
        members(("cp-1", True), ("cp-2", False), ("cp-3", False)), "cp-2", allow_even=True)["problems"])
    assert any("the last etcd member" in p for p in etcd_removal_check(members(("cp-1", True)), "cp-1")["problems"])


def test_a_name_etcd_does_not_list_needs_nothing():
    check = etcd_removal_check(members(("cp-1", True), ("cp-2", True), ("cp-3", True)), "worker-1")
    assert check["member"] is None and check["problems"] == []
    doubled = members(("cp-1", True), ("cp-3", False), ("cp-3", True))
    assert "members named cp-3" in etcd_removal_check(doubled, "cp-3")["problems"][0]
    with pytest.raises(AnsibleFilterError):
        etcd_removal_check("nope", "cp-1")
