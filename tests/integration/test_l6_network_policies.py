"""The cell's network policies are complete: every declared need is allowed, and nothing else.

Renders L6 for the reference inventory (playbooks/l6.yml, render mode; L6 reads every layer's
component records) and evaluates the generated NetworkPolicies and CiliumNetworkPolicies
(``network_policy.evaluate``, Cilium's semantics: any selecting policy isolates, allows add up)
against the needs they were generated from (``l6/network-policies/needs.json``):

* every platform namespace is isolated (default-deny, both directions) and reaches CoreDNS;
* every rule of every record is allowed by that component's policy, in its direction, on its ports;
* nothing else: each CiliumNetworkPolicy rule traces back to exactly one declared rule, a
  component's policy admits its declared peers only on the declared ports and no stranger (a pod
  of an unrelated namespace, an outside address) on them, and probes of undeclared flows (the
  world, other namespaces, the API server, nodes, the Gateway) are denied;
* a component's egress to another namespace is accepted there (that namespace's components declare
  the ingress), so neither end drops it;
* every object is valid against the upstream schemas (core kinds, the Cilium CRD);
* docs/network-policy-matrix.md is the matrix of this render (scripts/gen-network-policy-matrix.py).

    scripts/netns-run .venv/bin/pytest -q tests/integration/test_l6_network_policies.py
"""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from apply_fixtures import REPO, run_playbook

sys.path.insert(0, str(REPO / "tests" / "support"))

from ansible_collections.cellplatform.platform.plugins.plugin_utils import network_policy as npol  # noqa: E402
import schemacheck  # noqa: E402

MATRIX = REPO / "docs" / "network-policy-matrix.md"
UNDECLARED_PORT = 31337


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l6net")
    rc, out = run_playbook("playbooks/l6.yml", {"ANSIBLE_PIPELINING": "1"},
                           {"cellplatform_mode": "render", "cellplatform_build_root": str(tmp / "build")})
    assert rc == 0, out[-6000:]
    build = tmp / "build" / "cell"
    docs = [d for d in yaml.safe_load_all((build / "l6/network-policies/manifests.yaml").read_text()) if d]
    needs = json.loads((build / "l6/network-policies/needs.json").read_text())
    cell = {"api": {"port": 6443}, "observability": _observability()}
    return {"build": build, "docs": docs, "needs": needs, "cell": cell}


def _observability():
    """The cell model's monitoring namespace of the reference inventory (None without L4 settings)."""
    ref = yaml.safe_load((REPO / "inventories/production/group_vars/all/cell.yml").read_text())
    return {"monitoring_namespace": "monitoring"} if ref.get("cellplatform_observability") else None


def _namespaces(rendered):
    return npol.platform_namespaces(rendered["needs"])


def test_every_layer_is_covered(rendered):
    layers = {n["layer"] for n in rendered["needs"]}
    roles = {p.name[:2] for p in (REPO / "ansible_collections/cellplatform/platform/roles").glob("l[0-9]_*")}
    assert layers == roles, "layers with records %s, layer roles %s" % (sorted(layers), sorted(roles))


def test_every_platform_namespace_is_isolated_and_reaches_dns(rendered):
    docs = rendered["docs"]
    namespaces = {d["metadata"]["namespace"] for d in docs}
    assert set(_namespaces(rendered)) <= namespaces
    assert not namespaces & set(npol.EXEMPT_NAMESPACES)
    dns = npol.endpoint("pod", namespace="kube-system")
    dns["labels"] = {"k8s-app": "kube-dns"}
    other_pod = npol.endpoint("pod", namespace="kube-system")
    for ns in namespaces:
        deny = [d for d in docs if d["metadata"]["namespace"] == ns and d["metadata"]["name"] == "default-deny"]
        assert deny and deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, ns
        for proto in ("UDP", "TCP"):
            allowed, by = npol.evaluate(docs, ns, "egress", dns, 53, proto)
            assert allowed and "allow-dns" in by, (ns, proto)
        # only CoreDNS in kube-system, only port 53 (unless a component declared more: cluster)
        if not any(r["peer"] == "cluster" and r["direction"] == "egress"
                   for n in rendered["needs"] if n["namespace"] == ns for r in n["rules"]):
            assert not npol.evaluate(docs, ns, "egress", other_pod, 53, "UDP")[0], ns
            assert not npol.evaluate(docs, ns, "egress", dns, 80)[0], ns
        # the namespace's own pods
        assert npol.evaluate(docs, ns, "ingress", npol.endpoint("pod", namespace=ns), UNDECLARED_PORT)[0], ns


def _isolated_rules(rendered):
    """(need, rule, representative peer endpoint) of every rule of a component in an isolated namespace
    whose peer exists in the cell (monitoring without L4 does not)."""
    for need in rendered["needs"]:
        if need["namespace"] in npol.EXEMPT_NAMESPACES:
            continue
        for rule in need["rules"]:
            ep = npol.need_endpoint(rule, rendered["cell"])
            if ep is not None:
                yield need, rule, ep


def test_every_declared_need_is_allowed_by_its_component_policy(rendered):
    docs = rendered["docs"]
    checked = 0
    for need, rule, ep in _isolated_rules(rendered):
        ports = rule["ports"] or ([6443] if rule["peer"] == "apiserver" and rule["direction"] == "egress"
                                  else [UNDECLARED_PORT])
        for port in ports:
            allowed, by = npol.evaluate(docs, need["namespace"], rule["direction"], ep, port, rule["protocol"])
            assert allowed and need["name"] in by, (need["name"], rule, by)
            checked += 1
    assert checked > 20


def test_each_cilium_rule_is_one_declared_rule(rendered):
    """Nothing else: the component policies hold exactly the declared rules whose peer exists."""
    docs, cell = rendered["docs"], rendered["cell"]
    by_name = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "CiliumNetworkPolicy"}
    for need in rendered["needs"]:
        if need["namespace"] in npol.EXEMPT_NAMESPACES:
            assert (need["namespace"], need["name"]) not in by_name
            continue
        want = {"ingress": [], "egress": []}
        for rule in need["rules"]:
            if npol.need_endpoint(rule, cell) is not None:
                want[rule["direction"]].append(rule)
        doc = by_name.pop((need["namespace"], need["name"]), None)
        if not want["ingress"] and not want["egress"]:
            assert doc is None, need["name"]
            continue
        assert doc["spec"]["endpointSelector"] == {}
        for direction in ("ingress", "egress"):
            assert len(doc["spec"].get(direction) or []) == len(want[direction]), (need["name"], direction)
    assert not by_name, "policies without a component: %s" % sorted(by_name)


def _declared(need, direction, peer_test):
    return any(r["direction"] == direction and peer_test(r["peer"]) for r in need["rules"])


def _covers(portless_peer, peer):
    """Whether a rule without ports to ``portless_peer`` also allows any port of ``peer``."""
    return portless_peer == peer or (portless_peer == "cluster" and peer != "world" and not peer.startswith("cidr:"))


def test_declared_ports_only(rendered):
    """A component's policy allows a declared peer on the declared ports, not on others."""
    docs = rendered["docs"]
    checked = 0
    for need, rule, ep in _isolated_rules(rendered):
        portless = [r["peer"] for r in need["rules"] if r["direction"] == rule["direction"] and not r["ports"]]
        if not rule["ports"] or any(_covers(p, rule["peer"]) for p in portless):
            continue
        _allowed, by = npol.evaluate(docs, need["namespace"], rule["direction"], ep, UNDECLARED_PORT, rule["protocol"])
        assert need["name"] not in by, (need["name"], rule)
        checked += 1
    assert checked > 10


def test_declared_peers_only(rendered):
    """On a declared port, a component's policy admits its declared peers, not a stranger of another kind."""
    docs = rendered["docs"]
    strangers = {"pod": npol.endpoint("pod", namespace="unrelated-probe"),
                 "world": npol.endpoint("world", address="198.51.100.99")}
    for need, rule, _ep in _isolated_rules(rendered):
        peers = {r["peer"] for r in need["rules"]}
        for kind, stranger in strangers.items():
            if kind == "pod" and "cluster" in peers or kind == "world" and (
                    "world" in peers or any(p.startswith("cidr:") for p in peers)):
                continue
            for port in rule["ports"] or [UNDECLARED_PORT]:
                _allowed, by = npol.evaluate(docs, need["namespace"], rule["direction"], stranger, port, rule["protocol"])
                assert need["name"] not in by, (need["name"], rule, kind)


def test_undeclared_flows_are_denied(rendered):
    docs, needs = rendered["docs"], rendered["needs"]
    namespaces = _namespaces(rendered)
    world = npol.endpoint("world", address="198.51.100.7")
    for ns in namespaces:
        mine = [n for n in needs if n["namespace"] == ns]
        any_rule = lambda d, test: any(_declared(n, d, test) for n in mine)  # noqa: E731
        # from outside the cluster: never (no component is reached from the world directly)
        assert not npol.evaluate(docs, ns, "ingress", world, UNDECLARED_PORT)[0], ns
        if not any_rule("egress", lambda p: p in ("world",) or p.startswith("cidr:")):
            assert not npol.evaluate(docs, ns, "egress", world, 443)[0], ns
        if not any_rule("egress", lambda p: p in ("apiserver", "cluster")):
            assert not npol.evaluate(docs, ns, "egress", npol.endpoint("kube-apiserver"), 6443)[0], ns
        if not any_rule("ingress", lambda p: p in ("apiserver", "cluster")):
            assert not npol.evaluate(docs, ns, "ingress", npol.endpoint("kube-apiserver"), 443)[0], ns
        if not any_rule("ingress", lambda p: p in ("nodes", "cluster")):
            assert not npol.evaluate(docs, ns, "ingress", npol.endpoint("remote-node"), 10250)[0], ns
        if not any_rule("ingress", lambda p: p in ("gateway", "cluster")):
            assert not npol.evaluate(docs, ns, "ingress", npol.endpoint("ingress"), 443)[0], ns
        for other in namespaces:
            if other == ns:
                continue
            if not any_rule("ingress", lambda p, o=other: p in ("cluster", "namespace:" + o)):
                assert not npol.evaluate(docs, ns, "ingress", npol.endpoint("pod", namespace=other),
                                         UNDECLARED_PORT)[0], (ns, other)
            if not any_rule("egress", lambda p, o=other: p in ("cluster", "namespace:" + o)):
                assert not npol.evaluate(docs, ns, "egress", npol.endpoint("pod", namespace=other),
                                         UNDECLARED_PORT)[0], (ns, other)


def test_egress_to_another_namespace_is_accepted_there(rendered):
    docs, needs = rendered["docs"], rendered["needs"]
    namespaces = set(_namespaces(rendered))
    for need in needs:
        for rule in need["rules"]:
            target = rule["peer"].split(":", 1)[1] if rule["peer"].startswith("namespace:") else None
            if rule["peer"] == "monitoring" or rule["direction"] != "egress" or target is None:
                continue
            assert target in namespaces or target in npol.EXEMPT_NAMESPACES, (need["name"], rule)
            source = npol.endpoint("pod", namespace=need["namespace"])
            for port in rule["ports"]:
                assert npol.evaluate(docs, target, "ingress", source, port, rule["protocol"])[0], (need["name"], rule)


def test_policies_are_schema_valid(rendered, schema_root):
    store = schemacheck.SchemaStore(schema_root)
    kinds = set()
    for doc in rendered["docs"]:
        assert store.manifest(doc) == [], doc["metadata"]
        kinds.add(doc["kind"])
    assert kinds == {"NetworkPolicy", "CiliumNetworkPolicy"}


def test_the_matrix_in_docs_is_current(rendered):
    fresh = (rendered["build"] / "l6/network-policies/matrix.md").read_text()
    assert MATRIX.read_text() == fresh, (
        "docs/network-policy-matrix.md is not the matrix of the current records; "
        "run: scripts/netns-run .venv/bin/python scripts/gen-network-policy-matrix.py")
