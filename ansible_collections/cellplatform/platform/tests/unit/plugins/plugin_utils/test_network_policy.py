# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network policies from records: the needs read, the documents generated, the evaluator, the matrix."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.filter.security import network_policies
from ansible_collections.cellplatform.platform.plugins.plugin_utils.component import namespace_document, records_for
from ansible_collections.cellplatform.platform.plugins.plugin_utils import network_policy as npol

CELL = {"api": {"port": 6443}, "observability": {"namespace": "observability", "monitoring_namespace": "monitoring"}}
WEB = {"name": "web", "namespace": "shop", "network": {
    "ingress": [{"peer": "gateway", "ports": [8080], "why": "the UI"},
                {"peer": "monitoring", "ports": ["9090"], "why": "metrics"},
                {"peer": "apiserver", "ports": [9443], "why": "webhook"}],
    "egress": [{"peer": "apiserver", "why": "watches"},
               {"peer": "namespace:db", "ports": [5432], "why": "its database"},
               {"peer": "cidr:192.0.2.0/24", "ports": [53], "protocol": "UDP", "why": "DNS server"}]}}
DB = {"name": "db", "namespace": "db", "network": {"ingress": [{"peer": "namespace:shop", "ports": [5432]}]}}
OFF = {"name": "off", "enabled": False, "namespace": "off", "network": {"ingress": [{"peer": "world"}]}}


def build(*records, cell=None, extra=()):
    needs = npol.component_needs([{"layer": "l3", "records": list(records)}])
    return needs, npol.policy_documents(needs, CELL if cell is None else cell, extra)


def flat(by_ns):
    return [d for docs in by_ns.values() for d in docs]


def test_needs_skip_disabled_records_and_normalise_ports():
    needs = build(WEB, DB, OFF, {"name": "sys", "namespace": "kube-system", "manifests": ["x"]})[0]
    assert [n["name"] for n in needs] == ["web", "db", "sys"]
    metrics = [r for r in needs[0]["rules"] if r["peer"] == "monitoring"][0]
    assert metrics == {"direction": "ingress", "peer": "monitoring", "ports": [9090], "protocol": "TCP", "why": "metrics"}


@pytest.mark.parametrize("record, message", [
    ({"namespace": "x"}, "without a name"),
    ({"name": "a"}, "component a (layer l3) has no namespace"),
    ({"name": "a", "namespace": "x", "network": {"ingress": [{"peer": "everyone"}]}}, "peer 'everyone' is not one of"),
    ({"name": "a", "namespace": "x", "network": {"egress": [{"peer": "world", "ports": [70000]}]}}, "ports must be"),
])
def test_bad_records_name_the_component_and_the_fix(record, message):
    with pytest.raises(npol.NetworkPolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(record)


def test_a_component_listed_by_two_layers_is_an_error():
    with pytest.raises(npol.NetworkPolicyError, match="listed by layer l1 and layer l2"):
        npol.component_needs([{"layer": "l1", "records": [DB]}, {"layer": "l2", "records": [DB]}])


def test_every_namespace_gets_the_baseline_and_system_namespaces_none():
    by_ns = build(WEB, DB, {"name": "sys", "namespace": "kube-system", "network": {"ingress": [{"peer": "world"}]}},
                  extra=["team-a"])[1]
    assert list(by_ns) == ["shop", "db", "team-a"]
    for ns, docs in by_ns.items():
        assert [d["metadata"]["name"] for d in docs][:3] == list(npol.POLICY_NAMES)
    assert [d["metadata"]["name"] for d in by_ns["team-a"]] == list(npol.POLICY_NAMES)


def test_peers_become_cilium_entities_endpoints_and_cidrs():
    by_ns = build(WEB, DB)[1]
    (cnp,) = [d for d in by_ns["shop"] if d["kind"] == "CiliumNetworkPolicy"]
    assert cnp["metadata"]["name"] == "web" and cnp["spec"]["endpointSelector"] == {}
    assert cnp["spec"]["ingress"] == [
        {"fromEntities": ["ingress"], "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]},
        {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "monitoring"}}],
         "toPorts": [{"ports": [{"port": "9090", "protocol": "TCP"}]}]},
        {"fromEntities": ["kube-apiserver"], "toPorts": [{"ports": [{"port": "9443", "protocol": "TCP"}]}]}]
    assert cnp["spec"]["egress"] == [
        # no ports given: the API server's port, where Cilium sees the kubernetes Service's backends
        {"toEntities": ["kube-apiserver"], "toPorts": [{"ports": [{"port": "6443", "protocol": "TCP"}]}]},
        {"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "db"}}],
         "toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}]},
        {"toCIDRSet": [{"cidr": "192.0.2.0/24"}], "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}]}]}]


def test_monitoring_rules_vanish_without_l4():
    by_ns = build(WEB, cell={"api": {"port": 6443}, "observability": None})[1]
    (cnp,) = [d for d in by_ns["shop"] if d["kind"] == "CiliumNetworkPolicy"]
    assert not any("fromEndpoints" in r for r in cnp["spec"]["ingress"])


def test_evaluate_follows_the_documents():
    needs, by_ns = build(WEB, DB)
    docs = flat(by_ns)
    shop_pod, db_pod = npol.endpoint("pod", namespace="shop"), npol.endpoint("pod", namespace="db")
    assert npol.evaluate(docs, "shop", "egress", db_pod, 5432) == (True, ["web"])
    assert npol.evaluate(docs, "db", "ingress", shop_pod, 5432) == (True, ["db"])
    assert npol.evaluate(docs, "db", "ingress", shop_pod, 5433) == (False, [])
    assert npol.evaluate(docs, "shop", "ingress", npol.endpoint("ingress"), 8080) == (True, ["web"])
    assert not npol.evaluate(docs, "shop", "ingress", npol.endpoint("world", address="198.51.100.1"), 8080)[0]
    assert npol.evaluate(docs, "shop", "egress", npol.endpoint("world", address="192.0.2.9"), 53, "UDP")[0]
    assert not npol.evaluate(docs, "shop", "egress", npol.endpoint("world", address="192.0.3.9"), 53, "UDP")[0]
    assert not npol.evaluate(docs, "shop", "egress", npol.endpoint("world", address="192.0.2.9"), 53, "TCP")[0]
    assert npol.evaluate(docs, "db", "ingress", db_pod, 1)[1] == ["allow-same-namespace"]
    # a namespace no policy selects is open
    assert npol.evaluate(docs, "elsewhere", "ingress", shop_pod, 1) == (True, [])
    # the entity cluster covers pods, nodes and the API server, not the world
    open_docs = flat(build({"name": "c", "namespace": "c", "network": {"ingress": [{"peer": "cluster"}]}})[1])
    for kind in ("pod", "remote-node", "kube-apiserver", "ingress"):
        assert npol.evaluate(open_docs, "c", "ingress", npol.endpoint(kind, namespace="x"), 1)[0], kind
    assert not npol.evaluate(open_docs, "c", "ingress", npol.endpoint("world", address="198.51.100.1"), 1)[0]
    for need in needs:
        for rule in need["rules"]:
            assert npol.need_endpoint(rule, CELL) is not None


def test_the_filter_returns_documents_and_matrix_and_reports_errors():
    out = network_policies([{"layer": "l3", "records": [WEB, DB]}], CELL, ["team-a"])
    assert out["namespaces"] == ["shop", "db", "team-a"]
    assert len(out["documents"]) == 3 * 3 + 2
    assert "| `shop` | web | l3 | egress | `namespace:db` | 5432/TCP | its database |" in out["matrix"]
    assert "| `shop` | web | l3 | egress | apiserver (Cilium entity `kube-apiserver`) | 6443/TCP | watches |" in out["matrix"]
    with pytest.raises(AnsibleFilterError, match="network_policies: component a"):
        network_policies([{"layer": "l3", "records": [{"name": "a", "namespace": "x", "network": {"up": []}}]}], CELL)


def test_later_layers_namespaces_are_returned_as_their_own_layers_render_them():
    portal_db = {"name": "portal-db", "namespace": "portal", "pod_security": "baseline",
                 "namespace_labels": {"team": "dx"}, "network": {}}
    portal = {"name": "portal", "namespace": "portal", "network": {"egress": [{"peer": "namespace:db", "ports": [5432]}]}}
    # a namespace an earlier layer creates exists by then; one nobody creates is not made up
    shop_extra = {"name": "shop-extra", "layer": "l7", "namespace": "shop", "network": {}}
    borrowed = {"name": "borrowed", "namespace": "elsewhere", "namespace_create": False, "network": {}}
    layers = [{"layer": "l7", "records": [portal_db, portal, shop_extra, borrowed]},
              {"layer": "l3", "records": [WEB, DB]}, {"layer": "l6", "records": []}]
    out = network_policies(layers, CELL, [], "l6")
    assert out["later_namespaces"] == [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "portal", "labels": {
        "app.kubernetes.io/part-of": "cellplatform", "app.kubernetes.io/name": "portal", "team": "dx",
        "pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/audit": "baseline",
        "pod-security.kubernetes.io/warn": "baseline"}}}]
    # the same document the component pipeline renders and applies for the creating record
    cm = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "portal"}}]
    full = records_for([dict(portal_db, manifests=cm), dict(portal, manifests=cm)], "l7")
    assert out["later_namespaces"][0] == namespace_document(full[0])
    assert network_policies(layers, CELL, [], "l7")["later_namespaces"] == []
    assert network_policies(layers, CELL)["later_namespaces"] == []
    # a disabled creator leaves the namespace to the next record of its layer
    out = network_policies([{"layer": "l7", "records": [dict(portal_db, enabled=False), portal]}], CELL, [], "l6")
    assert out["later_namespaces"] == [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "portal", "labels": {
        "app.kubernetes.io/part-of": "cellplatform", "app.kubernetes.io/name": "portal"}}}]


def test_a_later_layers_bad_namespace_field_is_named():
    portal = {"name": "portal", "namespace": "portal", "pod_security": "open", "network": {}}
    with pytest.raises(AnsibleFilterError, match="component portal: pod_security 'open' is not one of"):
        network_policies([{"layer": "l7", "records": [portal]}], CELL, [], "l6")
