"""The optional node firewall (cellplatform_node_firewall), rendered by L0 for the reference cell:

* every node file carries the Talos ingress firewall of its role (default action block, one
  NetworkRuleConfig per service), valid against the upstream Talos config schema;
* control planes alone open the control-plane services (etcd to the control planes only), workers
  keep the site's own rule;
* completeness against the component records: every port a component declares towards the nodes
  (``peer: nodes``, e.g. Prometheus' scrapes, the etcd snapshot CronJob's Talos API) and the API
  server (``peer: apiserver``) is open to the pod network on a node of the right role, so turning
  the firewall on breaks no declared flow (needs from L6's render, ``l6/network-policies/needs.json``).

    scripts/netns-run .venv/bin/pytest -q tests/integration/test_node_firewall_render.py
"""

from __future__ import annotations

import ipaddress
import json
import sys

import pytest
import yaml

from apply_fixtures import REPO, run_playbook

sys.path.insert(0, str(REPO / "tests" / "support"))

import schemacheck  # noqa: E402

FIREWALL = {"enabled": True, "admin_networks": ["10.20.0.0/16"],
            "rules": [{"name": "bgp", "protocol": "tcp", "ports": [179], "sources": ["192.168.100.1/32"],
                       "roles": ["worker"]}]}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fw")
    rc, out = run_playbook("playbooks/site.yml", {"ANSIBLE_PIPELINING": "1"},
                           {"cellplatform_mode": "render", "cellplatform_build_root": str(tmp / "build"),
                            "cellplatform_node_firewall": FIREWALL}, ["-t", "l0,l6"])
    assert rc == 0, out[-6000:]
    build = tmp / "build" / "cell"
    nodes = {p.stem: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in (build / "talos/nodes").glob("*.yaml")}
    needs = json.loads((build / "l6/network-policies/needs.json").read_text())
    return {"nodes": nodes, "needs": needs, "plan": (build / "PLAN.md").read_text()}


def _rules(docs):
    return {d["name"]: d for d in docs if d.get("kind") == "NetworkRuleConfig"}


def _ports(rule):
    out = set()
    for port in rule["portSelector"]["ports"]:
        low, _, high = str(port).partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def _open_to(rules, port, protocol, address):
    addr = ipaddress.ip_address(address)
    return [name for name, rule in rules.items() if rule["portSelector"]["protocol"] == protocol
            and port in _ports(rule) and any(addr in ipaddress.ip_network(e["subnet"]) for e in rule["ingress"])]


def test_every_node_blocks_by_default_with_the_rules_of_its_role(rendered):
    nodes = rendered["nodes"]
    assert sorted(nodes) == ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"]
    for name, docs in nodes.items():
        assert [d for d in docs if d.get("kind") == "NetworkDefaultActionConfig"] == [
            {"apiVersion": "v1alpha1", "kind": "NetworkDefaultActionConfig", "ingress": "block"}], name
        rules = _rules(docs)
        if name.startswith("cp-"):
            assert {"etcd", "trustd", "kubernetes-api"} <= set(rules) and "bgp" not in rules
            # etcd answers the control planes only: not another node, not a pod, not an operator
            assert _open_to(rules, 2379, "tcp", "192.168.100.52") == ["etcd"]
            for stranger in ("192.168.100.61", "10.244.1.5", "10.20.0.9"):
                assert _open_to(rules, 2379, "tcp", stranger) == [], stranger
        else:
            assert not {"etcd", "trustd", "kubernetes-api"} & set(rules) and "bgp" in rules
        # the Talos API for the operators' network, nothing for the rest of the world
        assert _open_to(rules, 50000, "tcp", "10.20.0.9") == ["apid"]
        assert _open_to(rules, 50000, "tcp", "203.0.113.10") == []


def test_documents_are_valid_talos_config(rendered, schema_root):
    store = schemacheck.SchemaStore(schema_root)
    for name, docs in rendered["nodes"].items():
        for doc in docs:
            if doc.get("kind", "").startswith("Network"):
                assert store.talos_document(doc) == [], (name, doc)


def test_every_declared_flow_to_the_nodes_stays_open(rendered):
    """A component's egress to the nodes or to the API server must survive the firewall."""
    cp, worker = _rules(rendered["nodes"]["cp-1"]), _rules(rendered["nodes"]["worker-1"])
    pod = "10.244.3.7"
    checked = 0
    for need in rendered["needs"]:
        for rule in need["rules"]:
            if rule["direction"] != "egress" or rule["peer"] not in ("nodes", "apiserver"):
                continue
            ports = rule["ports"] or ([6443] if rule["peer"] == "apiserver" else [])
            assert ports, "%s declares every port of the nodes; the firewall cannot follow that" % need["name"]
            for port in ports:
                protocol = rule["protocol"].lower()
                open_somewhere = _open_to(cp, port, protocol, pod) or _open_to(worker, port, protocol, pod)
                assert open_somewhere, "%s: %s/%s to the nodes (%s) is blocked by the node firewall" % (
                    need["name"], port, protocol, rule["why"])
                checked += 1
    assert checked > 20


def test_plan_shows_what_each_role_opens_and_to_whom(rendered):
    plan = rendered["plan"]
    section = plan[plan.index("### Node firewall"):].split("\n## ")[0]
    assert "default action **block**" in section
    assert ("| etcd | controlplane | 2379-2380/tcp | 192.168.100.51/32, 192.168.100.52/32, 192.168.100.53/32 |"
            in section)
    assert "| apid | controlplane, worker | 50000/tcp | 10.20.0.0/16, 192.168.100.0/24 |" in section
    assert "| bgp | worker | 179/tcp | 192.168.100.1/32 | the inventory's rule |" in section
