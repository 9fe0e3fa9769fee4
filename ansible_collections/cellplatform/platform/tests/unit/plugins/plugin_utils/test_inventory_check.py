# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/inventory_check.py: unknown names generated from the schema, then the cell model's rules."""

from __future__ import annotations

import copy

from ansible_collections.cellplatform.platform.plugins.plugin_utils import inventory_check as ic
from ansible_collections.cellplatform.platform.plugins.plugin_utils.cell_schema import INVENTORY_SCHEMA
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS
from ansible_collections.cellplatform.platform.tests.unit.plugins.module_utils.test_cell_model import reference_hosts


def messages(problems):
    return [p["message"] for p in problems]


def test_reference_has_no_unknown_name():
    assert ic.unknown_names(REFERENCE_VARS) == []
    assert ic.check_inventory(copy.deepcopy(REFERENCE_VARS), reference_hosts()) == ([], [])


def test_top_level_typo_names_the_closest_input():
    variables = dict(REFERENCE_VARS, cellplatform_api_vipp="192.168.100.50", cellplatform_zzz=1)
    problems = ic.unknown_names(variables)
    assert messages(problems) == [
        "cellplatform_api_vipp: 192.168.100.50 is set under an unknown cellplatform_* name (did you mean cellplatform_api_vip?)",
        "cellplatform_zzz: 1 is set under an unknown cellplatform_* name",
    ]
    assert problems[0]["fix"].startswith("rename cellplatform_api_vipp to cellplatform_api_vip")
    assert problems[1]["fix"] == "remove cellplatform_zzz or correct its name (docs/variables.md lists them all)."
    assert problems[0]["field"] == "cellplatform_api_vipp" and problems[0]["value"] == "192.168.100.50"


def test_nested_keys_at_every_depth():
    variables = copy.deepcopy(REFERENCE_VARS)
    variables["cellplatform_node_sizes"]["worker"]["memory"] = 8192
    variables["cellplatform_external_dns"]["rfc2136"]["tsig_secret"] = "never here"
    problems = ic.unknown_names(variables)
    assert [p["field"] for p in problems] == ["cellplatform_external_dns.rfc2136.tsig_secret",
                                              "cellplatform_node_sizes.worker.memory"]
    assert "(did you mean memory_mib?)" in problems[1]["message"]
    assert "valid: cores, data_disk_gib, disk_gib, memory_mib" in problems[1]["fix"]


def test_storage_gateway_and_tls_inputs_are_covered_as_they_are_declared():
    """The storage, shared Gateway and TLS inputs came with their schema entries: no change to the check."""
    variables = copy.deepcopy(REFERENCE_VARS)
    variables["cellplatform_gateway"]["adress"] = variables["cellplatform_gateway"].pop("address")
    variables["cellplatform_storage"]["volume"]["min_gib"] = 50
    variables["cellplatform_tls"]["ca"]["lifetime"] = 3650
    problems = ic.unknown_names(variables)
    assert messages(problems) == [
        "cellplatform_gateway.adress: %s is set under an unknown key of cellplatform_gateway (did you mean address?)"
        % REFERENCE_VARS["cellplatform_gateway"]["address"],
        "cellplatform_storage.volume.min_gib: 50 is set under an unknown key of cellplatform_storage.volume "
        "(did you mean min_size_gib?)",
        "cellplatform_tls.ca.lifetime: 3650 is set under an unknown key of cellplatform_tls.ca "
        "(did you mean lifetime_days?)"]


def test_the_check_is_generated_from_the_schema():
    """A new input (another engineer's) is covered without touching the check: top level, its keys, lists of mappings."""
    schema = copy.deepcopy(INVENTORY_SCHEMA)
    assert "cellplatform_object_store" not in schema
    schema["cellplatform_object_store"] = {"layer": "l1", "type": "dict", "options": {
        "provider": {"type": "str"},
        "pools": {"type": "list", "elements": "dict", "options": {"name": {"type": "str"}, "replicas": {"type": "int"}}},
    }}
    variables = dict(REFERENCE_VARS, cellplatform_object_store={"provider": "minio",
                                                                "pools": [{"name": "fast", "replica": 3}]})
    assert [p["field"] for p in ic.unknown_names(variables)] == ["cellplatform_object_store"]
    problems = ic.unknown_names(variables, schema=schema)
    assert messages(problems) == ["cellplatform_object_store.pools[0].replica: 3 is set under an unknown key of "
                                  "cellplatform_object_store.pools[0] (did you mean replicas?)"]


def test_free_form_values_and_non_inputs_are_not_checked():
    variables = dict(REFERENCE_VARS, cellplatform_cell={"name": "cell"}, cellplatform_validate_layers=["l0"])
    variables["cellplatform_proxmox"] = "not a mapping"  # a type problem, reported by the cell model
    assert ic.unknown_names(variables) == []


def test_host_variables():
    host_names = {"cp-2": {"cellplatform_node_install_disc": "/dev/vdb", "cellplatform_node_ip": "192.168.100.52"},
                  "worker-1": {"cellplatform_cell": {}}}
    problems = ic.unknown_names(REFERENCE_VARS, host_names)
    assert messages(problems) == [
        "cp-2.cellplatform_node_install_disc: /dev/vdb is set under an unknown host variable name "
        "(did you mean cellplatform_node_install_disk?)"]
    assert "valid: cellplatform_node_install_disk, cellplatform_node_ip, cellplatform_node_vm_id" in problems[0]["fix"]


def test_unknown_names_come_first_then_the_rules_then_warnings():
    variables = dict(copy.deepcopy(REFERENCE_VARS), cellplatform_api_dns_nam="api.cell.lan")
    del variables["cellplatform_api_dns_name"]
    problems, warnings = ic.check_inventory(variables, reference_hosts())
    assert [p["field"] for p in problems] == ["cellplatform_api_dns_nam", "cellplatform_api_dns_name"]
    assert warnings == []
    variables = dict(copy.deepcopy(REFERENCE_VARS), cellplatform_api_dns_name="api.example.org")
    problems, warnings = ic.check_inventory(variables, reference_hosts())
    assert problems == [] and len(warnings) == 1 and "external-dns will not manage it" in warnings[0]
    # without L1 there is no external-dns: no warning
    assert ic.check_inventory(variables, reference_hosts(), layers=["l0"]) == ([], [])
