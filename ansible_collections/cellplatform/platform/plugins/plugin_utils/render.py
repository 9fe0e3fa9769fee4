# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deterministic serialisation of the rendered cell: YAML/JSON files, plan.json and PLAN.md.

Everything here is pure: the same input always gives the same bytes, so a rerun of the render
step leaves the build tree byte-identical and reports changed=0.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping

import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils.cell_model import (
    LAYER_TITLES as _LAYER_TITLES,
    PLAN_CELL_KEYS,
    external_names,
)
from ansible_collections.cellplatform.platform.plugins.module_utils.sops import KUBERNETES_SECRET_REGEX

PLAN_JSON = "plan.json"
PLAN_MD = "PLAN.md"
# The build tree's sops creation rules (public keys only): the machine configs are encrypted whole,
# every other *.sops.yaml (a component's Secret manifests) only in data/stringData.
SOPS_CONFIG = ".sops.yaml"
MACHINECONFIGS_PATH_REGEX = r"^talos/machineconfigs/[^/]+\.sops\.yaml$"
SECRET_MANIFESTS_PATH_REGEX = r"\.sops\.yaml$"
PLAN_FORMAT_VERSION = 1
LAYER_TITLES = dict(_LAYER_TITLES)

# Private key material must never reach the build tree (it is committed to GitOps repos).
_PRIVATE_KEY_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----")
_AGE_IDENTITY_RE = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]{50,}")


def gitops_sops_rules(recipients):
    """The creation rules of the build tree's .sops.yaml (module_utils/sops.py creation_rules format)."""
    return [
        {"path_regex": MACHINECONFIGS_PATH_REGEX, "recipients": list(recipients)},
        {"path_regex": SECRET_MANIFESTS_PATH_REGEX, "recipients": list(recipients),
         "encrypted_regex": KUBERNETES_SECRET_REGEX},
    ]


class RenderError(Exception):
    """A render input that cannot be written; the message names the file and the fix."""


def to_plain(value):
    """Convert Ansible's tagged/lazy containers and scalars into plain Python types."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, Mapping):
        return {str(to_plain(k)): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    raise RenderError("cannot serialise a value of type %s (%r)" % (type(value).__name__, value))


class _BlockDumper(yaml.SafeDumper):
    """Safe dumper: block style, multi-line strings as literals, no aliases.

    PyYAML's resolver quotes strings that YAML 1.1 would read as another type (``"off"``,
    ``"yes"``, ``"1.20"``), so Talos (YAML 1.2) and Kubernetes read back exactly the string.
    """

    def ignore_aliases(self, data):
        return True

    def increase_indent(self, flow=False, indentless=False):
        # Indent sequences inside mappings, as kubectl and Talos write them.
        return super().increase_indent(flow, False)


def _str_representer(dumper, data):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(data):
    """One YAML document, keys in the order given (callers build them in a stable order)."""
    return yaml.dump(
        to_plain(data), Dumper=_BlockDumper, sort_keys=False, default_flow_style=False,
        allow_unicode=True, width=4096, explicit_start=False,
    )


def dump_yaml_documents(documents):
    """A multi-document YAML stream, each document introduced by ``---``."""
    parts = []
    for doc in documents:
        if doc is None:
            continue
        parts.append("---\n" + dump_yaml(doc))
    return "".join(parts)


def dump_json(data):
    return json.dumps(to_plain(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def serialise(entry):
    """Return the bytes for one ``files`` entry of render_files (never a plaintext Secret or private key)."""
    path = entry["path"]
    fmt = entry.get("format") or _format_from_path(path, entry)
    if entry.get("content") is not None:
        text = to_plain(entry["content"])
        if not text.endswith("\n"):
            text += "\n"
    elif entry.get("documents") is not None:
        if fmt != "yaml":
            raise RenderError("%s: 'documents' can only be written as YAML (format: yaml)" % path)
        check_no_plaintext_secret(path, entry["documents"])
        text = dump_yaml_documents(entry["documents"])
    else:
        data = entry.get("data")
        check_no_plaintext_secret(path, [data])
        if fmt == "json":
            text = dump_json(data)
        elif fmt == "yaml":
            text = dump_yaml(data)
        else:
            raise RenderError("%s: 'data' needs format yaml or json, got %r" % (path, fmt))
    check_no_secrets(path, text)
    return text.encode("utf-8")


def _format_from_path(path, entry):
    if entry.get("content") is not None:
        return "text"
    if path.endswith(".json"):
        return "json"
    if path.endswith((".yaml", ".yml")):
        return "yaml"
    return "yaml" if entry.get("documents") is not None else "json"


def check_no_plaintext_secret(path, documents):
    """Refuse Kubernetes Secrets with values: they reach the tree only SOPS-encrypted."""
    for doc in documents or []:
        if isinstance(doc, Mapping) and doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
            name = (doc.get("metadata") or {}).get("name")
            raise RenderError(
                "%s: refusing to write the Secret %s with plaintext values into the build tree. Fix: list it in the "
                "component's secrets field (values from the platform secrets), which renders it SOPS-encrypted for "
                "Argo CD (KSOPS) and creates it at apply time." % (path, name))


def check_no_secrets(path, text):
    if _PRIVATE_KEY_RE.search(text) or _AGE_IDENTITY_RE.search(text):
        raise RenderError(
            "%s: refusing to write private key material into the build tree. Fix: keep keys in "
            "the encrypted secrets directory and pass them to apply tasks with no_log." % path)


# --------------------------------------------------------------------------------------------
# plan.json


def merge_plan(existing, layer=None, components=None, cell=None):
    """Return the new plan: components of ``layer`` replaced, other layers' entries kept."""
    plan = dict(existing or {})
    plan["format"] = PLAN_FORMAT_VERSION
    if cell is not None:
        # plan.json is committed to the GitOps repository: only the cell's own description,
        # never this machine's directories, identities or run mode.
        plan["cell"] = {k: v for k, v in to_plain(cell).items() if k in PLAN_CELL_KEYS}
        # every name and address the site must know about (DNS, firewall, address plan)
        plan["external"] = external_names(to_plain(cell))
    merged = {}
    for comp in plan.get("components", []) or []:
        if layer is not None and comp.get("layer") == layer:
            continue
        merged[comp["name"]] = comp
    for comp in components or []:
        comp = to_plain(comp)
        if layer is not None:
            comp.setdefault("layer", layer)
            if comp["layer"] != layer:
                raise RenderError(
                    "plan: component %s says layer %s but is rendered by layer %s"
                    % (comp.get("name"), comp["layer"], layer))
        if "name" not in comp:
            raise RenderError("plan: every component needs a name, got %r" % (comp,))
        merged[comp["name"]] = comp
    plan["components"] = sorted(
        merged.values(), key=lambda c: (c.get("layer", ""), c.get("sync_wave", 0), c["name"]))
    layers = sorted({c.get("layer", "") for c in plan["components"]} | set(plan.get("layers_rendered", [])))
    if layer is not None and layer not in layers:
        layers = sorted(set(layers) | {layer})
    plan["layers_rendered"] = layers
    return plan


# --------------------------------------------------------------------------------------------
# PLAN.md


def _ip(value):
    return ipaddress.ip_address(str(value))


def _last_octets(start, end):
    """'.200-.250' style short form for ranges inside one /24."""
    a, b = str(start), str(end)
    return ".%s-.%s" % (a.rsplit(".", 1)[-1], b.rsplit(".", 1)[-1])


def network_rows(plan):
    """Address map of the node network: (first ip, label, detail) sorted by address."""
    cell = plan.get("cell") or {}
    rows = []
    net = cell.get("network") or {}
    if net.get("gateway"):
        rows.append((_ip(net["gateway"]), str(net["gateway"]), "gateway"))
    api = cell.get("api") or {}
    if api.get("vip"):
        rows.append((_ip(api["vip"]), str(api["vip"]),
                     "API VIP (Talos Layer2VIP) -> %s" % api.get("endpoint", "")))
    for node in cell.get("nodes") or []:
        rows.append((_ip(node["ip"]), str(node["ip"]), "%s (%s)" % (node["name"], node["role"])))
    pool = cell.get("lb_pool") or {}
    if pool.get("start"):
        rows.append((_ip(pool["start"]), "%s-%s" % (pool["start"], pool["end"]),
                     "LoadBalancer pool, %s addresses (MetalLB)" % pool.get("size", "?")))
    gateway = cell.get("gateway") or {}
    if gateway.get("address"):
        rows.append((_ip(gateway["address"]), str(gateway["address"]),
                     "Gateway %s/%s (HTTPS %s), reserved in the pool" % (
                         gateway.get("namespace"), gateway.get("name"), gateway.get("hostname"))))
    for comp in plan.get("components") or []:
        rng = comp.get("address_range")
        if rng and rng.get("start"):
            rows.append((_ip(rng["start"]), "%s-%s" % (rng["start"], rng["end"]),
                         rng.get("label") or "%s addresses" % comp["name"]))
    # by address; a range before the single addresses it starts with (the pool before the Gateway)
    rows.sort(key=lambda r: (r[0], "-" not in r[1], r[1]))
    return rows


def _node_firewall_lines(firewall):
    """PLAN.md's node firewall: what each node role answers, and to whom (or that it is off)."""
    lines = ["### Node firewall", ""]
    if not firewall:
        return lines + ["Off: every node port answers every source (set `cellplatform_node_firewall.enabled`; "
                        "docs/l6-security.md).", ""]
    lines += ["Talos ingress firewall, default action **block**: only these ports answer, and only these sources.", "",
              "| rule | roles | ports | sources | why |", "|---|---|---|---|---|"]
    rows = {}
    for role, rules in sorted((firewall.get("roles") or {}).items()):
        for rule in rules:
            key = (rule["name"], rule["protocol"], tuple(rule["ports"]), tuple(rule["sources"]), rule["why"])
            rows.setdefault(key, []).append(role)
    for (name, protocol, ports, sources, why), roles in rows.items():
        lines.append("| %s | %s | %s/%s | %s | %s |" % (
            name, ", ".join(roles), ", ".join(ports), protocol, ", ".join(sources), why))
    return lines + [""]


def render_plan_md(plan):
    cell = plan.get("cell") or {}
    lines = ["# Cell plan: %s" % cell.get("name", "(cell not rendered yet)"), ""]
    lines.append("Generated by `cellplatform.platform.render_files` from `plan.json`; do not edit.")
    lines.append("")
    if cell:
        net = cell.get("network") or {}
        talos = cell.get("talos") or {}
        lines += [
            "## Cluster", "",
            "| item | value |", "|---|---|",
            "| API endpoint | %s |" % (cell.get("api") or {}).get("endpoint", ""),
            "| Talos | %s (config contract %s), platform %s |" % (
                talos.get("version", ""), talos.get("contract", ""), talos.get("platform", "")),
            "| Kubernetes | %s |" % talos.get("kubernetes_version", ""),
            "| installer | `%s` |" % talos.get("installer_image", ""),
            "| node network | %s, gateway %s, DNS %s |" % (
                net.get("cidr", ""), net.get("gateway", ""), ", ".join(net.get("nameservers", []))),
            "| pod / service CIDR | %s / %s |" % (cell.get("pod_cidr", ""), cell.get("service_cidr", "")),
            "| bootstrap node | %s |" % cell.get("bootstrap_node", ""),
        ]
        if talos.get("schematic_extensions") is not None:
            lines.append("| schematic extensions | %s |" % (", ".join(talos["schematic_extensions"]) or "none"))
        if cell.get("storage"):
            lines.append("| storage | %s |" % _storage_text(cell["storage"]))
        lines += [
            "",
            "## Network", "",
            "```",
        ]
        rows = [" %-31s %s " % (addr, label) for _ip_value, addr, label in network_rows(plan)]
        title = " %s " % net.get("cidr", "node network")
        inner = max([len(r) for r in rows] + [len(title) + 4, 70])
        lines.append("+" + title.center(inner, "-") + "+")
        lines.extend("|" + r.ljust(inner) + "|" for r in rows)
        lines.append("+" + "-" * inner + "+")
        lines.append("  pods %s    services %s    (Cilium eBPF, no kube-proxy)" % (
            cell.get("pod_cidr", ""), cell.get("service_cidr", "")))
        lines += ["```", "", "## Nodes", "", "| node | role | address | install disk |", "|---|---|---|---|"]
        for node in cell.get("nodes") or []:
            lines.append("| %s | %s | %s | %s |" % (
                node["name"], node["role"], node.get("address", node["ip"]), node.get("install_disk", "")))
        lines.append("")
        lines += _node_firewall_lines(cell.get("node_firewall"))
    if plan.get("external"):
        lines += ["## Names and addresses outside the cell", "",
                  "Everything the site's DNS, firewall and address plan must know about.", "",
                  "| what | name or address | used by |", "|---|---|---|"]
        lines.extend("| %s | %s | %s |" % (row["what"], row["value"], row["used_by"]) for row in plan["external"])
        lines.append("")
    comps = plan.get("components") or []
    lines += _web_ui_lines(cell, comps)
    if comps:
        lines += ["## Components", ""]
        for layer in sorted({c.get("layer", "") for c in comps}):
            lines += ["### %s" % LAYER_TITLES.get(layer, layer), "",
                      "| component | chart | version | namespace | sync wave | values |",
                      "|---|---|---|---|---|---|"]
            for c in [c for c in comps if c.get("layer") == layer]:
                lines.append("| %s | %s | %s | %s | %s | %s |" % (
                    c["name"], _source_text(c),
                    c.get("version", ""), c.get("namespace", ""), c.get("sync_wave", ""),
                    "`%s`" % c["values_file"] if c.get("values_file") else "-"))
            lines.append("")
            noted = [c for c in comps if c.get("layer") == layer and (c.get("notes") or c.get("secrets"))]
            for c in noted:
                notes = c.get("notes") or []
                notes = list(notes) if isinstance(notes, list) else [notes]
                if c.get("secrets"):
                    notes.append("Secrets %s: %s" % (", ".join(c["secrets"]), (
                        "SOPS-encrypted in `%s/` (Argo CD decrypts them with KSOPS)" % c["secrets_path"])
                        if c.get("secrets_path") else "created at apply time (not rendered here: no platform secrets)"))
                lines.extend("- **%s**: %s" % (c["name"], note) for note in notes)
            if noted:
                lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _source_text(comp):
    """Where a component comes from: its chart, or the pinned upstream manifests it applies."""
    if comp.get("chart"):
        return "%s (%s)" % (comp.get("chart", ""), comp.get("repo", ""))
    remote = comp.get("remote_manifests") or []
    if remote:
        hosts = sorted({url.split("/")[2] for url in remote if "://" in url})
        return "%d upstream manifest%s (%s)" % (len(remote), "" if len(remote) == 1 else "s", ", ".join(hosts))
    return "-"


def _storage_text(storage):
    volume = storage.get("volume") or {}
    where = "partition on `%s`, at least %s GiB%s" % (
        volume.get("disk_selector"), volume.get("min_size_gib"),
        ", at most %s GiB" % volume["max_size_gib"] if volume.get("max_size_gib") else "") \
        if volume.get("type") == "partition" else "directory on EPHEMERAL"
    replicas = (storage.get("longhorn") or {}).get("replicas")
    return "%s, default StorageClass `%s`%s; Talos user volume `%s` (%s) on every static worker" % (
        storage.get("provider"), storage.get("class_name"),
        ", %s replicas" % replicas if replicas else "", volume.get("path"), where)


def _web_ui_lines(cell, comps):
    """The shared Gateway and every UI published through it (names and the Gateway address)."""
    gateway = cell.get("gateway") or {}
    uis = [(ui, comp) for comp in comps for ui in comp.get("ui") or []]
    if not gateway.get("address") and not uis:
        return []
    lines = ["## Web UIs (shared Gateway)", ""]
    if gateway.get("address"):
        issuer = (cell.get("tls") or {}).get("cluster_issuer")
        lines += [
            "Gateway `%s/%s` (class `%s`) at **%s**: HTTPS on `%s`%s, HTTP redirected to HTTPS. external-dns "
            "publishes every name below as an A record to %s." % (
                gateway.get("namespace"), gateway.get("name"), gateway.get("class_name"), gateway["address"],
                gateway.get("hostname"),
                " with a wildcard certificate from ClusterIssuer `%s`" % issuer if issuer else "",
                gateway["address"]),
            "",
        ]
    if uis:
        lines += ["| URL | UI | component | service |", "|---|---|---|---|"]
        for ui, comp in sorted(uis, key=lambda pair: pair[0]["url"]):
            lines.append("| %s | %s | %s (%s) | %s:%s |" % (ui["url"], ui.get("title", ""), comp["name"],
                                                            comp.get("layer", ""), ui.get("service", ""),
                                                            ui.get("port", "")))
        lines.append("")
    return lines
