# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-node Talos machine-config documents (filter talos_node_files)."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

LINK_ALIAS = "net0"


def node_documents(cell, node):
    """The v1.13-contract documents that make ``node`` itself (brief 2.2, 2.7).

    HostnameConfig always carries ``auto: "off"`` next to the hostname (talos#12891); the NIC is
    found through a LinkAliasConfig selector, addressed by a LinkConfig; the API VIP
    (Layer2VIPConfig) exists only on control planes. No legacy ``machine.network``. With a Talos log
    receiver (``cell.observability.log_receiver``) the node sends its service logs there as
    json_lines over TCP, tagged with its own name (Talos' messages carry no host name). One v1alpha1
    document holds both node-specific machine settings: a patch may touch a document only once.
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


class FilterModule:
    def filters(self):
        return {"talos_node_files": talos_node_files}
