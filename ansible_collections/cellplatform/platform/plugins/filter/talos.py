# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Talos filters: per-node machine-config documents (talos_node_files), the rolling-upgrade plan and its
refusals (talos_upgrade_plan), and the etcd quorum decision before a control plane is removed
(etcd_removal_check). All pure: they decide from the cell model and what the modules found."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.module_utils.cell_model import SUPPORTED_VERSIONS

LINK_ALIAS = "net0"


def node_documents(cell, node):
    """The v1.13-contract documents that make ``node`` itself (brief 2.2, 2.7).

    HostnameConfig always carries ``auto: "off"`` next to the hostname (talos#12891); the NIC is
    found through a LinkAliasConfig selector, addressed by a LinkConfig; the API VIP
    (Layer2VIPConfig) exists only on control planes. No legacy ``machine.network``. With a Talos log
    receiver (``cell.observability.log_receiver``) the node sends its service logs there as
    json_lines over TCP, tagged with its own name (Talos' messages carry no host name). One v1alpha1
    document holds both node-specific machine settings: a patch may touch a document only once. With
    the node firewall on, its documents for the node's role come last.
    """
    network = cell["network"]
    talos = cell["talos"]
    docs = []
    machine = {}
    if node["install_disk"] != talos["install_disk"]:
        machine["install"] = {"disk": node["install_disk"]}
    receiver = (cell.get("observability") or {}).get("log_receiver")
    if receiver:
        machine["logging"] = {"destinations": [{"endpoint": receiver["endpoint"], "format": "json_lines",
                                                "extraTags": {"node": node["name"], "cluster": cell["name"]}}]}
    if machine:
        docs.append({"machine": machine})
    docs.append({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": node["name"]})
    docs.append({"apiVersion": "v1alpha1", "kind": "LinkAliasConfig", "name": LINK_ALIAS,
                 "selector": {"match": network["link_selector"]}})
    docs.append({"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": LINK_ALIAS, "up": True,
                 "mtu": network["mtu"], "addresses": [{"address": node["address"]}],
                 "routes": [{"gateway": network["gateway"]}]})
    if node["role"] == "controlplane":
        docs.append({"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": cell["api"]["vip"],
                     "link": LINK_ALIAS})
    docs.extend(firewall_documents(cell, node["role"]))
    return docs


def firewall_documents(cell, role):
    """The node firewall of a node of ``role`` (``cell.node_firewall``; none when it is off): the ingress
    default action ``block`` and one NetworkRuleConfig per rule (single ports as numbers, ranges as text)."""
    firewall = cell.get("node_firewall") or {}
    rules = (firewall.get("roles") or {}).get(role) or []
    if not rules:
        return []
    docs = [{"apiVersion": "v1alpha1", "kind": "NetworkDefaultActionConfig", "ingress": "block"}]
    for rule in rules:
        ports = [int(p) if p.isdigit() else p for p in rule["ports"]]
        docs.append({"apiVersion": "v1alpha1", "kind": "NetworkRuleConfig", "name": rule["name"],
                     "portSelector": {"ports": ports, "protocol": rule["protocol"]},
                     "ingress": [{"subnet": net} for net in rule["sources"]]})
    return docs


def talos_node_files(cell, directory="talos/nodes"):
    """render_files entries ``<directory>/<node>.yaml`` for every node of the cell model."""
    if not isinstance(cell, Mapping) or not isinstance(cell.get("nodes"), list):
        raise AnsibleFilterError("talos_node_files: expected the cell model (cellplatform_cell), got %r" % (cell,))
    try:
        return [{"path": "%s/%s.yaml" % (directory, node["name"]), "documents": node_documents(cell, node)}
                for node in cell["nodes"]]
    except KeyError as exc:
        raise AnsibleFilterError("talos_node_files: the cell model lacks %s; pass cellplatform_cell" % exc)


_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


def _version(text):
    m = _VERSION_RE.match(str(text or "").strip())
    return tuple(int(x) for x in m.groups()) if m else None


def _show(version, prefix=""):
    return "%s%d.%d.%d" % ((prefix,) + tuple(version))


def _supported_kubernetes(talos):
    """(oldest, newest) Kubernetes minor the Talos minor supports, or None."""
    return SUPPORTED_VERSIONS.get(tuple(talos[:2]))


def talos_upgrade_plan(cell, found):
    """The rolling-upgrade plan of the cell and every reason to refuse it (see talos_upgrade_plan.yml).

    ``found`` is what ``talos_info`` with ``detail: versions`` returned (its ``nodes``: per IP state, Talos version,
    schematic, kubelet version)."""
    if not isinstance(cell, Mapping) or not isinstance(cell.get("nodes"), list):
        raise AnsibleFilterError("talos_upgrade_plan: expected the cell model (cellplatform_cell), got %r" % (cell,))
    by_ip = (found or {}).get("nodes") if isinstance(found, Mapping) and "nodes" in found else (found or {})
    talos = cell["talos"]
    target = _version(talos["version"])
    want_k8s = _version(talos["kubernetes_version"])
    problems = []
    nodes = []
    k8s_running = []
    for node in cell["nodes"]:
        info = by_ip.get(node["ip"]) or {}
        entry = {"name": node["name"], "ip": node["ip"], "role": node["role"], "state": info.get("state"),
                 "talos_version": info.get("talos_version"), "schematic": info.get("schematic"),
                 "kubernetes_version": info.get("kubernetes_version"), "upgrade": False}
        nodes.append(entry)
        where = "%s (%s)" % (node["name"], node["ip"])
        if info.get("state") == "unreachable":
            problems.append("%s: its Talos API does not answer (%s); bring it back (or remove it with remove-node.yml) "
                            "before upgrading" % (where, info.get("error") or "no answer"))
            continue
        if info.get("state") == "maintenance":
            problems.append("%s is in maintenance mode, not part of the cluster yet; join it with site.yml first, then "
                            "upgrade" % where)
            continue
        have = _version(info.get("talos_version"))
        if info.get("state") != "configured" or have is None:
            problems.append("%s: its Talos version is unknown (%s); it must answer `talosctl version` before an upgrade"
                            % (where, info.get("talos_version") or info.get("state") or "not asked"))
            continue
        if have > target:
            newer = _show(have, "v")
            problems.append("%s runs Talos %s, newer than %s (cellplatform_talos_version): upgrade.yml never downgrades; "
                            "set cellplatform_talos_version to %s or newer" % (where, newer, talos["version"], newer))
        elif have[0] != target[0] or target[1] - have[1] > 1:
            problems.append("%s runs Talos %s and %s is more than one minor version ahead: upgrade through the latest "
                            "patch of each minor (set cellplatform_talos_version to the latest v%d.%d.x, run upgrade.yml, "
                            "then the next)" % (where, _show(have, "v"), talos["version"], have[0], have[1] + 1))
        entry["upgrade"] = have != target or (info.get("schematic") or None) != talos["schematic_id"]
        k8s = _version(info.get("kubernetes_version"))
        if k8s is None:
            problems.append("%s: its kubelet version is unknown (no KubeletSpec); Kubernetes must run before an upgrade"
                            % where)
        else:
            k8s_running.append(k8s)
    support = _supported_kubernetes(target)
    kubernetes = {"from": None, "to": talos["kubernetes_version"], "change": False}
    if support is None:
        problems.append("Talos %s is not a release this collection knows the Kubernetes support of" % talos["version"])
    if k8s_running and support is not None:
        low, high = min(k8s_running), max(k8s_running)
        kubernetes["from"] = _show(low)
        kubernetes["change"] = low != want_k8s or high != want_k8s
        if low != high and any(n["upgrade"] for n in nodes):
            problems.append("the kubelets run different Kubernetes versions (%s to %s): an upgrade-k8s did not finish; "
                            "finish it first, without a Talos change (set cellplatform_talos_version to the version the "
                            "nodes run, run upgrade.yml), then upgrade Talos" % (_show(low), _show(high)))
        for version in sorted(set([low, high])):
            if not support[0] <= version[:2] <= support[1]:
                problems.append("the cell runs Kubernetes %s, which Talos %s does not support (%d.%d-%d.%d): the nodes "
                                "would run it during the upgrade; upgrade Kubernetes first with the current Talos "
                                "(set cellplatform_kubernetes_version, run upgrade.yml with the current "
                                "cellplatform_talos_version), then Talos"
                                % (_show(version), talos["version"], support[0][0], support[0][1], support[1][0],
                                   support[1][1]))
        if not support[0] <= want_k8s[:2] <= support[1]:
            problems.append("Kubernetes %s (cellplatform_kubernetes_version) is not supported by Talos %s (%d.%d-%d.%d)"
                            % (talos["kubernetes_version"], talos["version"], support[0][0], support[0][1],
                               support[1][0], support[1][1]))
        if want_k8s < high:
            problems.append("Kubernetes %s (cellplatform_kubernetes_version) is older than the %s the cell runs: "
                            "upgrade.yml never downgrades Kubernetes" % (talos["kubernetes_version"], _show(high)))
        elif want_k8s[0] != low[0] or want_k8s[1] - low[1] > 1:
            problems.append("Kubernetes %s -> %s skips a minor version: talosctl upgrade-k8s moves one minor at a time; "
                            "set cellplatform_kubernetes_version to the latest %d.%d.x first"
                            % (_show(low), talos["kubernetes_version"], low[0], low[1] + 1))
    return {"target": {"talos_version": talos["version"], "schematic": talos["schematic_id"],
                       "image": talos["installer_image"], "kubernetes_version": talos["kubernetes_version"]},
            "nodes": nodes,
            "upgrade": [n["name"] for n in nodes if n["upgrade"]],
            "current": [n["name"] for n in nodes if n["state"] == "configured" and not n["upgrade"]],
            "kubernetes": kubernetes,
            "problems": problems}


def etcd_removal_check(members, name, allow_even=False):
    """Whether removing the etcd member *name* keeps etcd safe (see etcd_removal_check.yml)."""
    if not isinstance(members, list):
        raise AnsibleFilterError("etcd_removal_check: expected the members list of talos_etcd, got %r" % (members,))
    mine = [m for m in members if m.get("hostname") == name]
    listed = len(members)
    running = sum(1 for m in members if m.get("running"))
    result = {"member": mine[0] if mine else None, "members": listed, "running": running,
              "dead": bool(mine) and not mine[0].get("running"), "members_after": listed - len(mine),
              "running_after": running - sum(1 for m in mine if m.get("running")), "problems": []}
    problems = result["problems"]
    if len(mine) > 1:
        problems.append("etcd lists %d members named %s (%s): remove the stale one by ID with `talosctl etcd remove-member`"
                        " first" % (len(mine), name, ", ".join(m.get("id") or "?" for m in mine)))
        return result
    if not mine:
        return result
    after, running_after = result["members_after"], result["running_after"]
    if after == 0:
        problems.append("%s is the last etcd member: removing it destroys the cluster's data; there is nothing to remove "
                        "it for (use etcd-restore.yml to rebuild)" % name)
        return result
    if running < listed // 2 + 1:
        problems.append("etcd has no quorum now (%d of %d members running): a membership change cannot commit; bring "
                        "members back or recover with etcd-restore.yml" % (running, listed))
    elif running_after < after // 2 + 1:
        quorum = after // 2 + 1
        problems.append("removing %s would leave %d of %d members running, below the quorum of %d: etcd would stop "
                        "accepting writes; bring the stopped members back first" % (name, running_after, after, quorum))
    if after % 2 == 0 and not allow_even:
        problems.append("removing %s leaves %d etcd members, an even number: it tolerates no more failures than %d and "
                        "is easier to split; add a control plane first, or pass -e allow_even_controlplanes=true when "
                        "this is a deliberate step (5 -> 4 -> 3)" % (name, after, after - 1))
    return result


class FilterModule:
    def filters(self):
        return {"talos_node_files": talos_node_files, "talos_upgrade_plan": talos_upgrade_plan,
                "etcd_removal_check": etcd_removal_check}
