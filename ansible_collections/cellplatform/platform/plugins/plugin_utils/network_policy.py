# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network policies of the cell, generated from the component records' ``network`` needs.

Every component record of every layer declares the traffic it needs (``network: {ingress: [rule],
egress: [rule]}``, rule ``{peer, ports, protocol, why}``, validated by ``component._check_network``).
The security layer (L6) turns them into policies, per platform namespace:

* ``default-deny`` (NetworkPolicy): every pod of the namespace, ingress and egress;
* ``allow-dns`` (NetworkPolicy): egress to CoreDNS (kube-system, ``k8s-app: kube-dns``), 53/UDP+TCP;
* ``allow-same-namespace`` (NetworkPolicy): the pods of one namespace talk to each other (a chart's
  own wiring: Argo CD's server -> repo server -> Redis, Loki's components, ...); the namespace is
  the trust boundary;
* ``<component>`` (CiliumNetworkPolicy): exactly the component's declared rules. Peers plain
  NetworkPolicy cannot name on Talos are Cilium entities: the API server (``kube-apiserver``: its
  webhooks calls and the watches of controllers), the nodes' host network (``host``,
  ``remote-node``), the shared Gateway's Envoy (``ingress``), any endpoint of the cluster
  (``cluster``), outside the cluster (``world``).

``evaluate`` answers "is this flow allowed" from the generated documents alone, the way Cilium
combines them (any selecting policy isolates, allows are unions); the completeness tests and the
matrix use it, so what is checked is what is applied. Pure; no Ansible objects in or out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from ansible_collections.cellplatform.platform.plugins.plugin_utils.component import (
    ComponentError, NETWORK_PEERS, PART_OF, _check_network, _coerce)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.render import to_plain

# Namespaces that get no policy, and why (docs/l6-security.md, the matrix): Kubernetes' own.
EXEMPT_NAMESPACES = {
    "kube-system": "Talos' control plane pods, CoreDNS and the CNI itself run here, and no record describes them; "
                   "isolating it could cut the cluster's DNS and the CNI's own traffic",
    "kube-public": "Kubernetes' public ConfigMaps; no pods",
    "kube-node-lease": "node heartbeats (Lease objects); no pods",
    "default": "the kubernetes Service only; no platform pods",
}

DNS_SELECTOR = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
POLICY_NAMES = ("default-deny", "allow-dns", "allow-same-namespace")
NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"
# Cilium entities of each peer (reserved identities; docs.cilium.io "Entities Based").
PEER_ENTITIES = {
    "apiserver": ["kube-apiserver"],
    "nodes": ["host", "remote-node"],
    "gateway": ["ingress"],
    "cluster": ["cluster"],
    "world": ["world"],
}
# What each entity covers (for evaluate): the entity ``cluster`` is every endpoint of the
# cluster including the nodes, the API server and the ingress proxy; ``all`` everything.
_ENTITY_COVERS = {
    "cluster": {"pod", "host", "remote-node", "kube-apiserver", "ingress"},
    "all": {"pod", "host", "remote-node", "kube-apiserver", "ingress", "world"},
}
MONITORING_NONE = "no monitoring in this cell (cellplatform_observability unset): nothing scrapes"


class NetworkPolicyError(ValueError):
    """Records that cannot be turned into policies; the message names the component and the fix."""


def _rules(name, network):
    """Validated, normalised rules: [{direction, peer, ports, protocol, why}] (ports as int or name)."""
    try:
        _check_network(name, network)
    except ComponentError as exc:
        raise NetworkPolicyError(str(exc))
    out = []
    for direction in ("ingress", "egress"):
        for rule in network.get(direction) or []:
            ports = [_coerce(p, int) for p in rule.get("ports") or []]
            out.append({"direction": direction, "peer": rule["peer"], "ports": ports,
                        "protocol": rule.get("protocol") or "TCP", "why": str(rule.get("why") or "")})
    return out


def component_needs(layers):
    """The network needs of every enabled component of every layer.

    ``layers``: [{layer, records}] (records as the layer roles list them; only ``name``, ``enabled``,
    ``namespace``, ``network`` and ``pod_security`` are read, so values, manifests and secrets of the
    records are never evaluated). Returns [{name, layer, namespace, pod_security, rules}] in layer
    order; a record without a name or namespace, or with an invalid network field, is an error.
    """
    needs = []
    seen = {}
    for entry in layers or []:
        layer = str(entry["layer"])
        for record in entry.get("records") or []:
            name = record.get("name")
            if not isinstance(name, str) or not name:
                raise NetworkPolicyError("layer %s lists a component record without a name" % layer)
            enabled = record.get("enabled")
            if enabled is not None and _coerce(enabled, bool) is not True:
                continue
            namespace = record.get("namespace")
            if not isinstance(namespace, str) or not namespace:
                raise NetworkPolicyError("component %s (layer %s) has no namespace" % (name, layer))
            if name in seen:
                raise NetworkPolicyError("component %s is listed by layer %s and layer %s" % (name, seen[name], layer))
            seen[name] = layer
            network = to_plain(record.get("network") or {})
            if not isinstance(network, Mapping):
                raise NetworkPolicyError("component %s: network must be {ingress: [rule], egress: [rule]}" % name)
            needs.append({"name": name, "layer": layer, "namespace": namespace,
                          "pod_security": record.get("pod_security"), "rules": _rules(name, network)})
    return needs


def _settings(cell):
    cell = cell or {}
    obs = cell.get("observability") or None
    return {
        "api_port": int((cell.get("api") or {}).get("port") or 6443),
        "monitoring_namespace": obs.get("monitoring_namespace") if obs else None,
    }


def _ports(rule, settings):
    ports = list(rule["ports"])
    if not ports and rule["peer"] == "apiserver" and rule["direction"] == "egress":
        # Pods reach the API server through the kubernetes Service; Cilium sees the backends:
        # the control planes' API port.
        ports = [settings["api_port"]]
    return ports


def _cilium_rule(rule, settings):
    """One CiliumNetworkPolicy rule for a need, or None when its peer does not exist in this cell."""
    peer = rule["peer"]
    side = "from" if rule["direction"] == "ingress" else "to"
    out = {}
    if peer in PEER_ENTITIES:
        out[side + "Entities"] = list(PEER_ENTITIES[peer])
    elif peer == "monitoring":
        if not settings["monitoring_namespace"]:
            return None
        out[side + "Endpoints"] = [{"matchLabels": {NAMESPACE_LABEL: settings["monitoring_namespace"]}}]
    elif peer.startswith("namespace:"):
        out[side + "Endpoints"] = [{"matchLabels": {NAMESPACE_LABEL: peer.split(":", 1)[1]}}]
    elif peer.startswith("cidr:"):
        out[side + "CIDRSet"] = [{"cidr": str(ipaddress.ip_network(peer.split(":", 1)[1], strict=False))}]
    else:  # pragma: no cover - _check_network admits nothing else
        raise NetworkPolicyError("unknown peer %r" % peer)
    ports = _ports(rule, settings)
    if ports:
        out["toPorts"] = [{"ports": [{"port": str(p), "protocol": rule["protocol"]} for p in ports]}]
    return out


def _labels(extra=None):
    labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": PART_OF}
    labels.update(extra or {})
    return labels


def _baseline(namespace):
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DNS_SELECTOR["namespace"]}},
           "podSelector": {"matchLabels": dict(DNS_SELECTOR["labels"])}}

    def meta(name):
        return {"name": name, "namespace": namespace, "labels": _labels({"cellplatform.io/policy": "baseline"})}

    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("default-deny"),
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("allow-dns"),
         "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                  "egress": [{"to": [dns], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("allow-same-namespace"),
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                  "ingress": [{"from": [{"podSelector": {}}]}], "egress": [{"to": [{"podSelector": {}}]}]}},
    ]


def platform_namespaces(needs, extra=()):
    """Every namespace a component (or ``extra``: team namespaces) uses that gets policies, in first-use order."""
    out = []
    for ns in [n["namespace"] for n in needs] + list(extra):
        if ns not in EXEMPT_NAMESPACES and ns not in out:
            out.append(ns)
    return out


def policy_documents(needs, cell, extra_namespaces=()):
    """{namespace: [documents]} for every platform namespace (baseline + one CNP per component with rules)."""
    settings = _settings(cell)
    out = {}
    for ns in platform_namespaces(needs, extra_namespaces):
        docs = _baseline(ns)
        for need in [n for n in needs if n["namespace"] == ns]:
            ingress, egress = [], []
            for rule in need["rules"]:
                cilium = _cilium_rule(rule, settings)
                if cilium is not None:
                    (ingress if rule["direction"] == "ingress" else egress).append(cilium)
            if not ingress and not egress:
                continue
            spec = {"description": "%s (%s): the traffic its component record declares (network)"
                                   % (need["name"], need["layer"]),
                    "endpointSelector": {}}
            if ingress:
                spec["ingress"] = ingress
            if egress:
                spec["egress"] = egress
            docs.append({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                         "metadata": {"name": need["name"], "namespace": ns,
                                      "labels": _labels({"cellplatform.io/component": need["name"],
                                                         "cellplatform.io/layer": need["layer"]})},
                         "spec": spec})
        out[ns] = docs
    return out


# --- Evaluation: is a flow allowed by the documents? ------------------------------------------

def endpoint(kind, namespace=None, address=None):
    """A peer of a flow: kind pod (namespace), host, remote-node, kube-apiserver, ingress, world (address)."""
    return {"kind": kind, "namespace": namespace, "address": address}


def _entity_match(entities, ep):
    for entity in entities:
        covers = _ENTITY_COVERS.get(entity, {entity})
        if ep["kind"] in covers:
            return True
    return False


def _ports_match(to_ports, port, protocol):
    if not to_ports:
        return True
    for block in to_ports:
        for item in block.get("ports") or []:
            if str(item.get("port")) == str(port) and item.get("protocol", "TCP") in (protocol, "ANY"):
                return True
    return False


def _cilium_peer_match(rule, side, ep):
    if _entity_match(rule.get(side + "Entities") or [], ep):
        return True
    for sel in rule.get(side + "Endpoints") or []:
        labels = sel.get("matchLabels") or {}
        if ep["kind"] == "pod" and labels.get(NAMESPACE_LABEL) == ep["namespace"] and set(labels) == {NAMESPACE_LABEL}:
            return True
    for block in rule.get(side + "CIDRSet") or []:
        if ep["kind"] == "world" and ep["address"] and \
                ipaddress.ip_address(ep["address"]) in ipaddress.ip_network(block["cidr"]):
            return True
    return False


def _np_peer_match(peers, ns, ep):
    for peer in peers:
        if set(peer) == {"podSelector"} and peer["podSelector"] == {}:
            if ep["kind"] == "pod" and ep["namespace"] == ns:
                return True
        elif "namespaceSelector" in peer:
            want = (peer["namespaceSelector"].get("matchLabels") or {}).get("kubernetes.io/metadata.name")
            pod_labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
            if ep["kind"] == "pod" and ep["namespace"] == want and \
                    all((ep.get("labels") or {}).get(k) == v for k, v in pod_labels.items()):
                return True
    return False


def _np_ports_match(ports, port, protocol):
    if not ports:
        return True
    return any(str(p.get("port")) == str(port) and p.get("protocol", "TCP") == protocol for p in ports)


def evaluate(documents, namespace, direction, ep, port, protocol="TCP"):
    """Whether the policies ``documents`` of ``namespace`` allow a flow of a pod there.

    ``direction`` ingress: from ``ep`` to the pod on ``port``; egress: from the pod to ``ep``'s
    ``port``. -> (allowed, [names of the policies that allow it]). A namespace no policy isolates
    allows everything (returns (True, [])).
    """
    side_np, side_cnp = ("from", "from") if direction == "ingress" else ("to", "to")
    isolated = False
    by = []
    for doc in documents:
        if doc["metadata"]["namespace"] != namespace:
            continue
        spec = doc["spec"]
        if doc["kind"] == "NetworkPolicy":
            types = spec.get("policyTypes") or ["Ingress"]
            if direction.capitalize() not in types:
                continue
            isolated = True
            for rule in spec.get(direction) or []:
                if _np_peer_match(rule.get(side_np) or [{}], namespace, ep) and \
                        _np_ports_match(rule.get("ports"), port, protocol):
                    by.append(doc["metadata"]["name"])
        elif doc["kind"] == "CiliumNetworkPolicy":
            rules = spec.get(direction)
            if rules is None:
                continue
            isolated = True
            for rule in rules:
                if _cilium_peer_match(rule, side_cnp, ep) and _ports_match(rule.get("toPorts"), port, protocol):
                    by.append(doc["metadata"]["name"])
    if not isolated:
        return True, []
    return bool(by), sorted(set(by))


def need_endpoint(rule, cell, probe_address="203.0.113.10"):
    """A representative peer endpoint for a rule's peer (what a real flow of that need looks like)."""
    peer = rule["peer"]
    if peer == "apiserver":
        return endpoint("kube-apiserver")
    if peer == "nodes":
        return endpoint("remote-node")
    if peer == "gateway":
        return endpoint("ingress")
    if peer == "cluster":
        return endpoint("pod", namespace="cluster-probe")
    if peer == "world":
        return endpoint("world", address=probe_address)
    if peer == "monitoring":
        ns = _settings(cell)["monitoring_namespace"]
        return endpoint("pod", namespace=ns) if ns else None
    if peer.startswith("namespace:"):
        return endpoint("pod", namespace=peer.split(":", 1)[1])
    network = ipaddress.ip_network(peer.split(":", 1)[1], strict=False)
    return endpoint("world", address=str(network.network_address))


# --- The matrix (docs/network-policy-matrix.md) ------------------------------------------------

def _peer_text(rule, cell):
    peer = rule["peer"]
    if peer == "monitoring":
        ns = _settings(cell)["monitoring_namespace"]
        return "monitoring (pods of `%s`)" % ns if ns else "monitoring (%s)" % MONITORING_NONE
    if peer in PEER_ENTITIES:
        return "%s (Cilium entity %s)" % (peer, ", ".join("`%s`" % e for e in PEER_ENTITIES[peer]))
    return "`%s`" % peer


def matrix_markdown(needs, cell, documents, extra_namespaces=()):
    """The network-policy matrix: every namespace, its policies and every allowed flow with its reason."""
    settings = _settings(cell)
    lines = [
        "# Network-policy matrix",
        "",
        "Generated from the component records of every layer by the security layer (L6) for the",
        "reference cell (`inventories/production`); do not edit: run `scripts/gen-network-policy-matrix.py`.",
        "`tests/integration/test_l6_network_policies.py` fails when this file is not current, and checks",
        "that the generated policies allow every row below and nothing else.",
        "",
        "Every platform namespace gets `default-deny` (ingress and egress), `allow-dns` (egress to",
        "CoreDNS, 53/UDP and TCP) and `allow-same-namespace`; each row is one allowance of a component's",
        "CiliumNetworkPolicy (named after the component). Host-network pods (the Cilium agent, the MetalLB",
        "speaker, node-exporter) are not subject to pod network policies.",
        "",
        "## Namespaces",
        "",
        "| namespace | components | policies |",
        "|---|---|---|",
    ]
    for ns, docs in documents.items():
        comps = [n["name"] for n in needs if n["namespace"] == ns]
        policies = ", ".join("`%s`" % d["metadata"]["name"] for d in docs)
        lines.append("| `%s` | %s | %s |" % (ns, ", ".join(comps) or "(team namespace)", policies))
    lines += ["", "## Not isolated", "", "| namespace | components | why |", "|---|---|---|"]
    for ns, why in EXEMPT_NAMESPACES.items():
        comps = [n["name"] for n in needs if n["namespace"] == ns]
        lines.append("| `%s` | %s | %s |" % (ns, ", ".join(comps) or "-", why))
    lines += ["", "## Allowed flows", "",
              "| namespace | component | layer | direction | peer | ports | why |", "|---|---|---|---|---|---|---|"]
    for need in needs:
        for rule in need["rules"]:
            ports = ", ".join("%s/%s" % (p, rule["protocol"]) for p in _ports(rule, settings)) or "any"
            where = need["namespace"] + (" (not isolated)" if need["namespace"] in EXEMPT_NAMESPACES else "")
            lines.append("| `%s` | %s | %s | %s | %s | %s | %s |" % (
                where, need["name"], need["layer"], rule["direction"], _peer_text(rule, cell), ports,
                rule["why"].replace("|", "/") or "-"))
    lines.append("")
    return "\n".join(lines)


__all__ = ["component_needs", "policy_documents", "platform_namespaces", "evaluate", "endpoint", "need_endpoint",
           "matrix_markdown", "EXEMPT_NAMESPACES", "NETWORK_PEERS", "NetworkPolicyError"]
