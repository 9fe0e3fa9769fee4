# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The optional node firewall (cellplatform_node_firewall): its checks, its model and the Talos documents
every node gets (NetworkDefaultActionConfig block + one NetworkRuleConfig per service of its role)."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.cellplatform.platform.plugins.filter.talos import firewall_documents, talos_node_files
from ansible_collections.cellplatform.platform.plugins.module_utils import cell_model as cm
from ansible_collections.cellplatform.platform.tests.unit.plugins.module_utils.test_cell_model import reference_hosts
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS

BGP = {"name": "bgp", "protocol": "tcp", "ports": [179], "sources": ["192.168.100.1/32"], "roles": ["worker"]}


def cell_with(firewall, **changes):
    variables = copy.deepcopy(REFERENCE_VARS)
    variables["cellplatform_node_firewall"] = firewall
    variables.update(changes)
    hosts = reference_hosts()
    assert cm.validate(variables, hosts) == []
    return cm.build_cell_model(variables, hosts)


def rules(docs):
    return {d["name"]: d for d in docs if d.get("kind") == "NetworkRuleConfig"}


def sources(rule):
    return [entry["subnet"] for entry in rule["ingress"]]


def test_off_unless_enabled():
    assert cm.build_cell_model(copy.deepcopy(REFERENCE_VARS), reference_hosts())["node_firewall"] is None
    assert cell_with({"enabled": False, "admin_networks": ["10.0.0.0/8"]})["node_firewall"] is None
    files = talos_node_files(cell_with({"enabled": False}))
    assert not [d for f in files for d in f["documents"] if "Network" in str(d.get("kind"))]


def test_control_planes_block_by_default_and_open_each_service_to_its_sources_only():
    cell = cell_with({"enabled": True, "admin_networks": ["10.20.0.0/16"], "rules": [BGP]})
    docs = firewall_documents(cell, "controlplane")
    assert docs[0] == {"apiVersion": "v1alpha1", "kind": "NetworkDefaultActionConfig", "ingress": "block"}
    cp = rules(docs)
    assert cp["apid"]["portSelector"] == {"ports": [50000], "protocol": "tcp"}
    assert sources(cp["apid"]) == ["10.20.0.0/16", "192.168.100.0/24"]
    assert sources(cp["kubernetes-api"]) == ["10.20.0.0/16", "192.168.100.0/24", "10.244.0.0/16"]
    # etcd: the control planes' own addresses, nobody else; a range stays text
    assert cp["etcd"]["portSelector"] == {"ports": ["2379-2380"], "protocol": "tcp"}
    assert sources(cp["etcd"]) == ["192.168.100.51/32", "192.168.100.52/32", "192.168.100.53/32"]
    assert sources(cp["trustd"]) == ["192.168.100.0/24"]
    assert cp["cilium-vxlan"]["portSelector"] == {"ports": [8472], "protocol": "udp"}
    # the reference cell has L4 (scrapes) and L5's etcd snapshots (Talos API from a pod)
    assert sources(cp["control-plane-metrics"]) == ["10.244.0.0/16"]
    assert sources(cp["apid-pods"]) == ["10.244.0.0/16"]
    assert "bgp" not in cp
    names = [d["name"] for d in docs[1:]]
    assert len(names) == len(set(names))


def test_workers_offer_no_control_plane_service_and_get_the_sites_rule():
    cell = cell_with({"enabled": True, "rules": [BGP]})
    worker = rules(firewall_documents(cell, "worker"))
    assert not {"etcd", "trustd", "kubernetes-api", "control-plane-metrics", "apid-pods"} & set(worker)
    # admin networks default to the node network
    assert sources(worker["apid"]) == ["192.168.100.0/24"]
    assert worker["bgp"] == {"apiVersion": "v1alpha1", "kind": "NetworkRuleConfig", "name": "bgp",
                             "portSelector": {"ports": [179], "protocol": "tcp"},
                             "ingress": [{"subnet": "192.168.100.1/32"}]}
    files = {f["path"]: f["documents"] for f in talos_node_files(cell)}
    assert rules(files["talos/nodes/worker-2.yaml"]) == worker
    assert rules(files["talos/nodes/cp-2.yaml"]) == rules(firewall_documents(cell, "controlplane"))


def test_without_l4_and_l5_nothing_is_opened_for_scrapers_or_snapshots():
    cell = cell_with({"enabled": True})
    assert {"host-metrics", "control-plane-metrics", "apid-pods"} <= set(rules(firewall_documents(cell, "controlplane")))
    cell = dict(cell, observability=None, resilience=dict(cell["resilience"] or {}, talos_api_access=None))
    names = [r["name"] for r in cm.node_firewall_rules(cell, "controlplane")]
    assert not {"host-metrics", "control-plane-metrics", "apid-pods"} & set(names) and "etcd" in names


@pytest.mark.parametrize("firewall, problems", [
    ({"enabled": "yes"}, [("cellplatform_node_firewall.enabled", "must be")]),
    ({"enabled": True, "admin_networks": []}, [("cellplatform_node_firewall.admin_networks", "must not be empty")]),
    ({"enabled": True, "admin_networks": ["10.0.0.1/8", "fd00::/8"]},
     [("cellplatform_node_firewall.admin_networks[0]", "has host bits set"),
      ("cellplatform_node_firewall.admin_networks[1]", "is not an IPv4 network")]),
    ({"enabled": True, "rules": [dict(BGP, name="etcd"), dict(BGP, name="Site_Rule"), dict(BGP, name="bgp"),
                                 dict(BGP, name="bgp")]},
     [("cellplatform_node_firewall.rules[0].name", "is already the name of a generated rule"),
      ("cellplatform_node_firewall.rules[1].name", "is not a DNS label"),
      ("cellplatform_node_firewall.rules[3].name", "is already the name of rule cellplatform_node_firewall.rules[2]")]),
    ({"enabled": True, "rules": [dict(BGP, protocol="sctp", ports=[0, "80-70", "x", 179, "1000-2000", 1500],
                                      sources=["192.168.100.1"], roles=["master"])]},
     [("cellplatform_node_firewall.rules[0].protocol", "is not one of"),
      ("cellplatform_node_firewall.rules[0].ports[0]", "is outside 1-65535"),
      ("cellplatform_node_firewall.rules[0].ports[1]", "is outside 1-65535"),
      ("cellplatform_node_firewall.rules[0].ports[2]", "is not a port or a range"),
      ("cellplatform_node_firewall.rules[0].ports[5]", "overlaps another port"),
      ("cellplatform_node_firewall.rules[0].sources[0]", "has no prefix length"),
      ("cellplatform_node_firewall.rules[0].roles[0]", "is not a node role")]),
    ({"enabled": True, "rules": [{"name": "x"}]},
     [("cellplatform_node_firewall.rules[0].protocol", "is required"),
      ("cellplatform_node_firewall.rules[0].ports", "is required"),
      ("cellplatform_node_firewall.rules[0].sources", "is required")]),
])
def test_every_problem_is_named_at_once(firewall, problems):
    variables = copy.deepcopy(REFERENCE_VARS)
    variables["cellplatform_node_firewall"] = firewall
    found = [(p["field"], p["message"]) for p in cm.validate(variables, reference_hosts())]
    assert len(found) == len(problems), found
    for (field, text), (got_field, got_text) in zip(problems, found):
        assert got_field == field and text in got_text, found


def test_fixes_show_examples_in_the_cells_own_network():
    variables = copy.deepcopy(REFERENCE_VARS)
    variables["cellplatform_network"] = dict(variables["cellplatform_network"], cidr="10.40.0.0/24", gateway="10.40.0.1")
    variables["cellplatform_node_firewall"] = {"enabled": True, "admin_networks": [], "rules": [dict(BGP, sources=[])]}
    fixes = {p["field"]: p["fix"] for p in cm.validate(variables, reference_hosts())}
    assert fixes["cellplatform_node_firewall.admin_networks"] == "list the operators' networks, e.g. [10.40.0.0/24]."
    assert fixes["cellplatform_node_firewall.rules[0].sources"] == "list the source networks, e.g. [10.40.0.1/32]."
