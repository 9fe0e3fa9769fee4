# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory -> normalised cell model, and the preflight checks behind it.

Pure and deterministic: no I/O except ``os.path.realpath`` for the two directories, no
external commands, no network. Used by the ``cellplatform.platform.cell_preflight`` action.

Inputs
------
``variables``
    mapping of every ``cellplatform_*`` variable (already templated).
``hosts``
    mapping with keys ``controlplane`` and ``workers`` (and optionally ``cell``), each an
    ordered mapping ``host name -> that host's variables`` (at least ``cellplatform_node_ip``,
    optionally ``cellplatform_node_install_disk`` and ``cellplatform_node_vm_id``). ``cell`` may
    be a list of host names (members of the ``cell`` group) used to find hosts that are in
    neither child group.

``validate(variables, hosts, layers)`` returns a list of problems, each a dict
``{field, value, message, fix}``; ``build_cell_model(variables, hosts)`` returns the
``cellplatform_cell`` structure documented in docs/development.md (call it only when
``validate`` returned no problems).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import json
import os
import re

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    Mapping = dict  # pylint: disable=invalid-name

# The layer list of the whole collection (titles for PLAN.md, tags l0..l7, roles in site.yml).
LAYER_TITLES = (
    ("l0", "L0 infrastructure"),
    ("l1", "L1 cluster platform"),
    ("l2", "L2 core platform"),
    ("l3", "L3 delivery"),
    ("l4", "L4 observability"),
    ("l5", "L5 resilience"),
    ("l6", "L6 security"),
    ("l7", "L7 developer portal"),
)
LAYERS = tuple(layer for layer, _title in LAYER_TITLES)
MODES = ("render", "apply")
# Keys of the cell model that describe the cell itself (network, nodes, versions): the part of
# the model plan.json carries. Everything else (directories, identities, per-layer inputs) is
# either machine-specific or already rendered into the layer's own files.
PLAN_CELL_KEYS = ("name", "network", "api", "lb_pool", "pod_cidr", "service_cidr", "talos", "nodes",
                  "controlplane", "workers", "bootstrap_node", "talos_endpoints", "dns_domain", "storage", "gateway", "tls",
                  "observability", "lb_reserved", "node_firewall")
DEFAULT_WORK_DIR = "~/.cache/cellplatform/%s"
# The per-run directory of decrypted files, inside the work directory (cellplatform_cell.plaintext_dir).
PLAINTEXT_DIR = "plaintext"
# The cell's secrets: SOPS files with age recipients in cellplatform_secrets_dir (docs/secrets.md);
# the cell model carries their paths as cellplatform_cell.secrets.<key>.
SECRET_FILES = {
    "config": ".sops.yaml",
    "platform": "platform.sops.yaml",
    "talos": "talos-secrets.sops.yaml",
    "talosconfig": "talosconfig.sops.yaml",
    "kubeconfig": "kubeconfig.sops.yaml",
}
DEFAULT_AGE_IDENTITY = "~/.config/sops/age/keys.txt"
# Where the Argo CD Applications of every layer live, and the AppProject they belong to.
ARGOCD_NAMESPACE = "argocd"
ARGOCD_PROJECT = "platform"
PROVISIONERS = ("proxmox", "none")
TALOS_PLATFORMS = ("nocloud", "metal")
# Fix messages show examples from the user's own node network; before that network is known,
# from the RFC 5737 documentation range (never the reference cell's data).
EXAMPLE_NETWORK = ipaddress.ip_network("192.0.2.0/24")


def _example_host(network, index=1):
    """The index-th address of ``network`` (or of EXAMPLE_NETWORK), for a fix message."""
    net = network if network is not None and network.num_addresses > index + 1 else EXAMPLE_NETWORK
    return net.network_address + index


# Talos minor -> (oldest, newest) supported Kubernetes minor (platform brief, version matrix).
SUPPORTED_VERSIONS = {
    (1, 13): ((1, 31), (1, 36)),
    (1, 14): ((1, 33), (1, 37)),
}
EXTERNAL_DNS_PROVIDERS = ("rfc2136", "pdns")
EXTERNAL_DNS_POLICIES = ("sync", "upsert-only", "create-only")
TSIG_ALGORITHMS = ("hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512")
POLICY_MODES = ("audit", "enforce")
KARPENTER_MAX_NODES_CAP = 100
LINKERD_ISSUER_MAX_DAYS = 3650
MTU_RANGE = (1280, 9216)
# The cell name tags every Proxmox VM (files/terraform/proxmox/variables.tf refuses longer names).
CELL_NAME_MAX = 32
VM_ID_RANGE = (100, 999999999)

_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_AGE_RE = re.compile(r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$")
_TALOS_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
_K8S_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_SCHEMATIC_RE = re.compile(r"^[0-9a-f]{64}$")
_DISK_RE = re.compile(r"^/dev/[A-Za-z0-9][A-Za-z0-9/_.:-]*$")
_SCP_GIT_RE = re.compile(r"^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):([^\s]+)$")
_OWNER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _as_bool(value, default=False):
    """A validated boolean input (a top-level ``-e name=true`` arrives as a string)."""
    if value is None or value is MISSING:
        return default
    if isinstance(value, str):
        return _BOOL_WORDS.get(value.strip().lower(), default)
    return bool(value)


class _Missing(object):
    """Marker for a variable that is not set at all."""

    def __repr__(self):
        return "<not set>"


MISSING = _Missing()


def _supported_text():
    parts = []
    for talos in sorted(SUPPORTED_VERSIONS):
        low, high = SUPPORTED_VERSIONS[talos]
        parts.append("Talos v%d.%d.x with Kubernetes %d.%d-%d.%d" % (talos + low + high))
    return "; ".join(parts)


def _show(value):
    """Render a value for a message: strings bare, everything else as compact JSON."""
    if value is MISSING:
        return "(not set)"
    if isinstance(value, str):
        return value if value != "" else '""'
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):  # pragma: no cover - defensive
        return repr(value)


def _plain(value):
    """A JSON-safe copy of a value for the ``problems`` list."""
    if value is MISSING:
        return None
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):  # pragma: no cover - defensive
        return str(value)


def _type_name(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    return "a %s" % type(value).__name__


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def is_age_recipient(value):
    """An age X25519 public key: 'age1' + 58 bech32 characters with a valid checksum."""
    if not isinstance(value, str) or not _AGE_RE.match(value):
        return False
    hrp, data = "age", [_BECH32.index(ch) for ch in value[4:]]
    values = [ord(ch) >> 5 for ch in hrp] + [0] + [ord(ch) & 31 for ch in hrp] + data
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for val in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ val
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk == 1


def is_dns_label(value):
    """RFC 1123 label: lowercase letters, digits and '-', 1-63 chars, no leading/trailing '-'."""
    return isinstance(value, str) and bool(_LABEL_RE.match(value))


def is_dns_name(value):
    """A lowercase DNS name of RFC 1123 labels, at most 253 characters, no trailing dot."""
    if not isinstance(value, str) or not value or len(value) > 253:
        return False
    return all(is_dns_label(label) for label in value.split("."))


def parse_ip(value):
    """An ``ipaddress`` address for a string, else None."""
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value) if value == value.strip() else None
    except ValueError:
        return None


def is_host(value):
    """An IP address or a DNS name."""
    return parse_ip(value) is not None or is_dns_name(value)


def _label_like(text, default):
    """``text`` made into an RFC 1123 label for a fix suggestion (``default`` if nothing is left)."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63] or default


def _default_vm_id(base, ip):
    """VM ID of a node without cellplatform_node_vm_id: vm_id_base + last octet of its IPv4 address."""
    return base + int(str(ip).rsplit(".", 1)[1])


def _within(name, parent):
    return name == parent or name.endswith("." + parent)


class _Checker(object):
    def __init__(self, variables):
        self.vars = variables
        self.problems = []

    # -- recording ---------------------------------------------------------------------
    def add(self, field, value, problem, fix):
        message = "%s: %s %s" % (field, _show(value), problem)
        self.problems.append({"field": field, "value": _plain(value), "message": message, "fix": fix})

    # -- lookups -----------------------------------------------------------------------
    def top(self, name):
        return self.vars.get(name, MISSING)

    @staticmethod
    def sub(mapping, key):
        if isinstance(mapping, Mapping):
            return mapping.get(key, MISSING)
        return MISSING

    # -- typed getters (return None and record a problem when wrong) ---------------------
    def want_present(self, field, value, fix):
        if value is MISSING or value is None:
            self.add(field, value, "is required but not set", fix)
            return False
        return True

    def want_dict(self, field, value, fix, required=True):
        if value is MISSING or value is None:
            if required:
                self.add(field, value, "is required but not set", fix)
            return None
        if not isinstance(value, Mapping):
            self.add(field, value, "must be a mapping, not %s" % _type_name(value), fix)
            return None
        return value

    def want_list(self, field, value, fix, required=True, non_empty=False):
        if value is MISSING or value is None:
            if required:
                self.add(field, value, "is required but not set", fix)
            return None
        if not isinstance(value, (list, tuple)):
            self.add(field, value, "must be a list, not %s" % _type_name(value), fix)
            return None
        if non_empty and not value:
            self.add(field, value, "must not be empty", fix)
            return None
        return list(value)

    def want_str(self, field, value, fix, required=True):
        if value is MISSING or value is None:
            if required:
                self.add(field, value, "is required but not set", fix)
            return None
        if not isinstance(value, str):
            self.add(field, value, "must be a string, not %s" % _type_name(value), fix)
            return None
        if not value.strip():
            self.add(field, value, "must not be empty", fix)
            return None
        return value

    def want_choice(self, field, value, choices, required=True):
        fix = "use one of: %s." % ", ".join(choices)
        text = self.want_str(field, value, fix, required=required)
        if text is None:
            return None
        if text not in choices:
            self.add(field, value, "is not one of %s" % ", ".join(choices), fix)
            return None
        return text

    def want_int(self, field, value, low=None, high=None, fix=None, required=True):
        bounds = ""
        if low is not None and high is not None:
            bounds = " between %d and %d" % (low, high)
        elif low is not None:
            bounds = " of at least %d" % low
        if fix is None:
            fix = "set an integer%s (a YAML number, without quotes)." % bounds
        if value is MISSING or value is None:
            if required:
                self.add(field, value, "is required but not set", fix)
            return None
        if "." not in field and isinstance(value, str) and re.match(r"^[0-9]+$", value.strip()):
            # A top-level `-e name=6443` always arrives as a string: accept it, as Ansible's
            # argument_spec does for type=int. Nested values come from YAML (or -e JSON), where
            # a quoted number is a string on purpose and templates would treat it as one.
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(field, value, "must be an integer, not %s" % _type_name(value), fix)
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.add(field, value, "is out of range (allowed%s)" % bounds, fix)
            return None
        return value

    def want_bool(self, field, value, fix=None, required=True):
        if fix is None:
            fix = "set true or false (a YAML boolean, without quotes)."
        if value is MISSING or value is None:
            if required:
                self.add(field, value, "is required but not set", fix)
            return None
        if "." not in field and isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            # `-e name=true` arrives as a string; accept it as Ansible's argument_spec does.
            value = _BOOL_WORDS[value.strip().lower()]
        if not isinstance(value, bool):
            self.add(field, value, "must be a boolean, not %s" % _type_name(value), fix)
            return None
        return value

    def want_ipv4(self, field, value, fix, required=True):
        if value is MISSING or value is None:
            if required:
                self.add(field, value, "is required but not set", fix)
            return None
        if not isinstance(value, str):
            self.add(field, value, "must be an IPv4 address string, not %s" % _type_name(value), fix)
            return None
        addr = parse_ip(value)
        if addr is None or addr.version != 4:
            self.add(field, value, "is not a valid IPv4 address", fix)
            return None
        return addr

    def want_ip(self, field, value, fix):
        if not isinstance(value, str) or parse_ip(value) is None:
            self.add(field, value, "is not a valid IP address", fix)
            return None
        return parse_ip(value)

    def want_network(self, field, value, example, ipv4_only=False):
        fix = "set a network in CIDR notation, e.g. %s." % example
        if value is MISSING or value is None:
            self.add(field, value, "is required but not set", fix)
            return None
        if not isinstance(value, str):
            self.add(field, value, "must be a CIDR string, not %s" % _type_name(value), fix)
            return None
        if "/" not in value:
            self.add(field, value, "has no prefix length", fix)
            return None
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            self.add(field, value, "is not a valid network in CIDR notation", fix)
            return None
        if ipv4_only and net.version != 4:
            self.add(field, value, "is not an IPv4 network", "set an IPv4 network, e.g. %s." % example)
            return None
        if str(net) != value:
            self.add(field, value, "has host bits set (the network is %s)" % net,
                     "write the network address: %s." % net)
            return None
        return net


def _as_ip_range(checker, field, value, network, label, fix_hint):
    """Validate a {start, end} mapping inside ``network``; returns (start, end) or None."""
    fix = "set %s as {start: <IPv4>, end: <IPv4>} inside %s%s." % (field, network if network else "the node network", fix_hint)
    mapping = checker.want_dict(field, value, fix)
    if mapping is None:
        return None
    start = checker.want_ipv4(field + ".start", checker.sub(mapping, "start"), fix)
    end = checker.want_ipv4(field + ".end", checker.sub(mapping, "end"), fix)
    if start is None or end is None:
        return None
    if start > end:
        checker.add(field, "%s-%s" % (start, end), "is not ordered: start %s is after end %s" % (start, end),
                    "swap them: start: %s, end: %s." % (end, start))
        return None
    if network is not None:
        bad = False
        for part, addr in (("start", start), ("end", end)):
            if addr not in network:
                checker.add(field + "." + part, str(addr), "is outside the node network %s" % network,
                            "pick the %s inside %s." % (label, network))
                bad = True
        if bad:
            return None
        if network.prefixlen < 31:
            for special, what in ((network.network_address, "network"), (network.broadcast_address, "broadcast")):
                if start <= special <= end:
                    checker.add(field, "%s-%s" % (start, end),
                                "contains the %s address %s of %s" % (what, special, network),
                                "keep the %s strictly between %s and %s." % (label, network.network_address,
                                                                             network.broadcast_address))
                    bad = True
        if bad:
            return None
    return start, end


def _placement_problem(addr, network, gateway=None, nodes=None, pool=None):
    """Why ``addr`` cannot be a host address of the cell (the first reason), or None.

    ``network`` (when known) must hold it as a host address; it must not be ``gateway``, an
    address of ``nodes`` ({address: host name}) or inside the LoadBalancer ``pool``.
    """
    if addr is None:
        return None
    if network is not None:
        if addr not in network:
            return "is outside the node network %s" % network
        if addr in (network.network_address, network.broadcast_address):
            return "is the %s address of %s" % (
                "network" if addr == network.network_address else "broadcast", network)
    if gateway is not None and addr == gateway:
        return "is the gateway address"
    if nodes and addr in nodes:
        return "is also the address of node %s" % nodes[addr]
    if pool and pool[0] <= addr <= pool[1]:
        return "lies inside the LoadBalancer pool %s-%s" % pool
    return None


def _free_address(network, used, ranges):
    """First usable address of ``network`` that is neither in ``used`` nor in any range."""
    for addr in network.hosts():
        if addr in used:
            continue
        if any(low <= addr <= high for low, high in ranges):
            continue
        return str(addr)
    return None


def _layers(layers):
    if layers is None:
        return set(LAYERS)
    return set(layers) | {"l0"}


def _collect_nodes(checker, hosts):
    """-> list of (name, role, hostvars) in model order, plus group problems."""
    hosts = hosts or {}
    cps = hosts.get("controlplane") or {}
    workers = hosts.get("workers") or {}
    nodes = []
    for name, hvars in cps.items():
        nodes.append((name, "controlplane", hvars or {}))
    for name, hvars in workers.items():
        if name in cps:
            checker.add("inventory host " + name, name, "is in both the controlplane and the workers group",
                        "keep %s in exactly one of the two groups." % name)
            continue
        nodes.append((name, "worker", hvars or {}))
    for name in hosts.get("cell") or []:
        if name not in cps and name not in workers:
            checker.add("inventory host " + name, name, "is in group cell but in neither controlplane nor workers",
                        "move %s under cell.children.controlplane or cell.children.workers." % name)
    if not cps:
        checker.add("groups.controlplane", [], "has no hosts; a cell needs at least one control-plane node",
                    "add 1, 3 or 5 hosts (with cellplatform_node_ip) to the controlplane group.")
    elif len(cps) % 2 == 0:
        checker.add("groups.controlplane", list(cps),
                    "has %d hosts; etcd needs an odd number of control-plane nodes for quorum" % len(cps),
                    "use %d or %d control-plane nodes." % (len(cps) - 1, len(cps) + 1))
    return nodes


def _check_l0(checker, hosts, mode_override):  # noqa: C901 - one linear list of checks
    c = checker
    # -- identity, mode, directories ------------------------------------------------------
    name = c.top("cellplatform_cell_name")
    if c.want_str("cellplatform_cell_name", name, "set a lowercase DNS label, e.g. cell.") is not None:
        if not is_dns_label(name) or len(name) > CELL_NAME_MAX:
            # 32, not 63: the name becomes a Proxmox tag (the Terraform module refuses longer names).
            c.add("cellplatform_cell_name", name, "is not a DNS label of at most %d characters (RFC 1123: lowercase "
                  "a-z, 0-9, '-'; it also becomes the Proxmox tag of every VM)" % CELL_NAME_MAX,
                  "use a lowercase name such as %s." % _label_like(name, "cell")[:CELL_NAME_MAX].strip("-"))
    mode = mode_override if mode_override not in (None, MISSING) else c.top("cellplatform_mode")
    mode = c.want_choice("cellplatform_mode", mode, MODES)
    c.want_str("cellplatform_build_root", c.top("cellplatform_build_root"),
               "set the directory rendered files go to, e.g. \"{{ inventory_dir }}/../../build\".")
    c.want_str("cellplatform_secrets_dir", c.top("cellplatform_secrets_dir"),
               "set the directory of the encrypted secrets, e.g. \"{{ inventory_dir }}/secrets\".")
    c.want_str("cellplatform_work_dir", c.top("cellplatform_work_dir"),
               "set a private directory for per-run plaintext files, e.g. ~/.cache/cellplatform/<cell>, "
               "or remove the variable for that default.", required=False)
    c.want_str("cellplatform_kubeconfig", c.top("cellplatform_kubeconfig"),
               "set the path of an admin kubeconfig of this cell, or remove the variable to let the "
               "collection fetch and store one.", required=False)
    c.want_bool("cellplatform_terraform_allow_destroy", c.top("cellplatform_terraform_allow_destroy"),
                required=False)

    # -- age --------------------------------------------------------------------------------
    recipients = c.top("cellplatform_age_recipients")
    age_fix = "list age public keys (age1... , 62 characters), e.g. the output of age-keygen -y ~/.config/sops/age/keys.txt."
    recipients = c.want_list("cellplatform_age_recipients", recipients, age_fix, required=(mode == "apply"))
    if recipients is not None:
        for idx, rec in enumerate(recipients):
            if not isinstance(rec, str) or not _AGE_RE.match(rec):
                c.add("cellplatform_age_recipients[%d]" % idx, rec,
                      "is not an age public key (age1 followed by 58 bech32 characters)", age_fix)
            elif not is_age_recipient(rec):
                c.add("cellplatform_age_recipients[%d]" % idx, rec,
                      "has a bad bech32 checksum (a typo in the key?)", "copy the key again from age-keygen -y <identity file>.")
        if mode == "apply" and not recipients:
            c.add("cellplatform_age_recipients", recipients,
                  "is empty, but cellplatform_mode is apply and secrets must be encrypted to someone", age_fix)
    c.want_str("cellplatform_age_identity", c.top("cellplatform_age_identity"),
               "set the age identity file, e.g. ~/.config/sops/age/keys.txt.", required=(mode == "apply"))

    # -- node network -----------------------------------------------------------------------
    net_fix = "set cellplatform_network: {cidr, gateway, nameservers, ntp_servers, search_domains, mtu, link_selector}."
    network_map = c.want_dict("cellplatform_network", c.top("cellplatform_network"), net_fix)
    network = gateway = None
    if network_map is not None:
        network = c.want_network("cellplatform_network.cidr", c.sub(network_map, "cidr"), EXAMPLE_NETWORK, ipv4_only=True)
        if network is not None and network.prefixlen > 29:
            c.add("cellplatform_network.cidr", str(network), "is too small for a cell (/%d)" % network.prefixlen,
                  "use a /29 or larger network, e.g. a /24.")
            network = None
        gw_value = c.sub(network_map, "gateway")
        gateway = c.want_ipv4("cellplatform_network.gateway", gw_value,
                              "set the default gateway of the node network, e.g. %s." % _example_host(network))
        problem = _placement_problem(gateway, network) if network is not None else None
        if problem:
            c.add("cellplatform_network.gateway", gw_value, problem,
                  ("pick the router address inside %s." % network) if gateway not in network else
                  "use the router's host address inside %s, e.g. %s." % (network, next(network.hosts())))
            gateway = None
        ns = c.want_list("cellplatform_network.nameservers", c.sub(network_map, "nameservers"),
                         "list DNS server IP addresses, e.g. [%s]." % _example_host(network), non_empty=True)
        for idx, item in enumerate(ns or []):
            c.want_ip("cellplatform_network.nameservers[%d]" % idx, item,
                      "use an IP address (Talos needs resolvers by address).")
        ntp = c.want_list("cellplatform_network.ntp_servers", c.sub(network_map, "ntp_servers"),
                          "list NTP servers (IP addresses or host names), e.g. [%s]." % _example_host(network), non_empty=True)
        for idx, item in enumerate(ntp or []):
            if not is_host(item):
                c.add("cellplatform_network.ntp_servers[%d]" % idx, item, "is neither an IP address nor a valid host name",
                      "use an IP address or a lowercase DNS name such as time.cloudflare.com.")
        search = c.want_list("cellplatform_network.search_domains", c.sub(network_map, "search_domains"),
                             "list DNS search domains, e.g. [cell.lan] (or []).", required=False)
        for idx, item in enumerate(search or []):
            if not is_dns_name(item):
                c.add("cellplatform_network.search_domains[%d]" % idx, item, "is not a valid DNS name",
                      "use a lowercase domain such as cell.lan.")
        c.want_int("cellplatform_network.mtu", c.sub(network_map, "mtu"), MTU_RANGE[0], MTU_RANGE[1])
        c.want_str("cellplatform_network.link_selector", c.sub(network_map, "link_selector"),
                   "set a CEL expression selecting the node NIC, e.g. link.driver == \"virtio_net\".")

    # -- nodes ----------------------------------------------------------------------------
    nodes = _collect_nodes(c, hosts)
    node_ips = []  # (name, ip)
    seen_ip = {}
    for hostname, _role, hvars in nodes:
        if not is_dns_label(hostname):
            c.add("inventory host " + hostname, hostname,
                  "is not a valid host name (RFC 1123 label: lowercase a-z, 0-9, '-', at most 63 characters, no dots)",
                  "rename the host, e.g. %s." % _label_like(hostname, "node-1"))
        field = "%s.cellplatform_node_ip" % hostname
        ip_value = hvars.get("cellplatform_node_ip", MISSING)
        fix = "give host %s a free address inside %s." % (hostname, network if network else "the node network")
        addr = c.want_ipv4(field, ip_value, fix)
        problem = _placement_problem(addr, network, gateway, seen_ip)
        if problem:
            c.add(field, ip_value, problem, fix)
        elif addr is not None:
            seen_ip[addr] = hostname
            node_ips.append((hostname, addr))
        disk = hvars.get("cellplatform_node_install_disk", MISSING)
        if disk is not MISSING and disk is not None:
            if not isinstance(disk, str) or not _DISK_RE.match(disk):
                c.add("%s.cellplatform_node_install_disk" % hostname, disk, "is not a device path",
                      "use an absolute device path such as /dev/sda or /dev/nvme0n1, or remove the override.")

    # -- API VIP ----------------------------------------------------------------------------
    pool = _as_ip_range(c, "cellplatform_lb_pool", c.top("cellplatform_lb_pool"), network, "LoadBalancer pool", "")
    vip_value = c.top("cellplatform_api_vip")
    vip = c.want_ipv4("cellplatform_api_vip", vip_value, "set a free address of the node network, e.g. %s." % _example_host(network, 50))
    problem = _placement_problem(vip, network, gateway, seen_ip, pool) if network is not None else None
    if problem:
        # Suggest an unused address outside the pool and (when it parses) the dynamic-worker range.
        ranges = [pool] if pool else []
        karp_range = c.sub(c.top("cellplatform_karpenter"), "address_range")
        karp_ips = tuple(parse_ip(c.sub(karp_range, key)) for key in ("start", "end"))
        if all(ip is not None and ip.version == 4 for ip in karp_ips):
            ranges.append(karp_ips)
        used = set(seen_ip) | {vip}
        if gateway is not None:
            used.add(gateway)
        suggestion = _free_address(network, used, ranges)
        c.add("cellplatform_api_vip", vip_value, problem, "pick a free address in %s outside the LoadBalancer pool%s." % (
            network, (", e.g. %s" % suggestion) if suggestion else ""))
    c.want_int("cellplatform_api_port", c.top("cellplatform_api_port"), 1, 65535)
    dns_name = c.top("cellplatform_api_dns_name")
    if c.want_str("cellplatform_api_dns_name", dns_name, "set the API's DNS name, e.g. api.cell.lan.") is not None:
        if not is_dns_name(dns_name):
            c.add("cellplatform_api_dns_name", dns_name, "is not a valid DNS name", "use a lowercase name such as api.cell.lan.")

    # -- LoadBalancer pool contents -----------------------------------------------------------
    if pool:
        for hostname, ip in node_ips:
            if pool[0] <= ip <= pool[1]:
                c.add("cellplatform_lb_pool", "%s-%s" % pool, "holds %s, the address of node %s" % (ip, hostname),
                      "move the pool or the node so that no node address is inside %s-%s." % pool)
        if gateway is not None and pool[0] <= gateway <= pool[1]:
            c.add("cellplatform_lb_pool", "%s-%s" % pool, "holds %s, the gateway address" % gateway,
                  "move the pool so that it excludes the gateway.")

    # -- pod / service CIDRs --------------------------------------------------------------------
    pod = c.want_network("cellplatform_pod_cidr", c.top("cellplatform_pod_cidr"), "10.244.0.0/16")
    svc = c.want_network("cellplatform_service_cidr", c.top("cellplatform_service_cidr"), "10.96.0.0/16")
    if svc is not None and svc.max_prefixlen - svc.prefixlen > 20:
        c.add("cellplatform_service_cidr", str(svc), "is larger than Kubernetes allows (at most 2^20 addresses, /%d for IPv%d)" % (
            svc.max_prefixlen - 20, svc.version), "use a /%d or smaller range, e.g. 10.96.0.0/16." % (svc.max_prefixlen - 20))
        svc = None
    if pod is not None and svc is not None and pod.version == svc.version and pod.overlaps(svc):
        c.add("cellplatform_service_cidr", str(svc), "overlaps cellplatform_pod_cidr %s" % pod,
              "use disjoint ranges, e.g. pod 10.244.0.0/16 and service 10.96.0.0/16.")
    for fname, net in (("cellplatform_pod_cidr", pod), ("cellplatform_service_cidr", svc)):
        if net is not None and network is not None and net.version == network.version and net.overlaps(network):
            c.add(fname, str(net), "overlaps the node network %s" % network,
                  "pick a private range disjoint from %s, e.g. %s." % (
                      network, "10.244.0.0/16" if fname == "cellplatform_pod_cidr" else "10.96.0.0/16"))
    cdd = c.top("cellplatform_cluster_dns_domain")
    if c.want_str("cellplatform_cluster_dns_domain", cdd, "set the cluster DNS domain, e.g. cluster.local.") is not None:
        if not is_dns_name(cdd):
            c.add("cellplatform_cluster_dns_domain", cdd, "is not a valid DNS name", "use a lowercase name such as cluster.local.")

    # -- Talos / Kubernetes ---------------------------------------------------------------------
    _check_versions(c)
    schematic = c.top("cellplatform_talos_schematic_id")
    sch_fix = "set the 64-character hex ID the Image Factory (factory.talos.dev) returned for your schematic."
    if c.want_str("cellplatform_talos_schematic_id", schematic, sch_fix) is not None and not _SCHEMATIC_RE.match(schematic):
        c.add("cellplatform_talos_schematic_id", schematic, "is not a 64-character lowercase hex schematic ID", sch_fix)
    platform = c.want_choice("cellplatform_talos_platform", c.top("cellplatform_talos_platform"), TALOS_PLATFORMS)
    disk = c.top("cellplatform_talos_install_disk")
    disk_fix = "use an absolute device path such as /dev/sda or /dev/nvme0n1."
    if c.want_str("cellplatform_talos_install_disk", disk, disk_fix) is not None and not _DISK_RE.match(disk):
        c.add("cellplatform_talos_install_disk", disk, "is not a device path", disk_fix)

    # -- machines ------------------------------------------------------------------------------
    provisioner = c.want_choice("cellplatform_provisioner", c.top("cellplatform_provisioner"), PROVISIONERS)
    if provisioner == "proxmox":
        if platform is not None and platform != "nocloud":
            c.add("cellplatform_talos_platform", platform,
                  "does not work with cellplatform_provisioner proxmox (static addresses come through cloud-init)",
                  "use nocloud with proxmox, or set cellplatform_provisioner: none for machines you boot yourself.")
        _check_proxmox(c, nodes, node_ips)
    for role in ("controlplane", "worker"):
        base = "cellplatform_node_sizes"
        sizes = c.want_dict(base, c.top(base), "set cellplatform_node_sizes: {controlplane: {cores, memory_mib, disk_gib}, worker: {...}}.",
                            required=(provisioner == "proxmox"))
        if sizes is None:
            break
        entry = c.want_dict("%s.%s" % (base, role), c.sub(sizes, role), "set {cores, memory_mib, disk_gib} for %s." % role)
        if entry is None:
            continue
        c.want_int("%s.%s.cores" % (base, role), c.sub(entry, "cores"), 1, 512)
        c.want_int("%s.%s.memory_mib" % (base, role), c.sub(entry, "memory_mib"), 2048 if role == "controlplane" else 1024, 4194304)
        c.want_int("%s.%s.disk_gib" % (base, role), c.sub(entry, "disk_gib"), 10, 65536)
    return network, gateway, vip, pool, node_ips


def _check_versions(c):
    talos = c.top("cellplatform_talos_version")
    k8s = c.top("cellplatform_kubernetes_version")
    supported = _supported_text()
    talos_fix = "use a Talos release such as v1.13.9 (supported: %s)." % supported
    k8s_fix = "use a full Kubernetes version such as 1.36.3 (supported: %s)." % supported
    tv = kv = None
    if c.want_present("cellplatform_talos_version", talos, talos_fix):
        if not isinstance(talos, str):
            c.add("cellplatform_talos_version", talos, "must be a version string, not %s" % _type_name(talos),
                  "quote it and write it in full, e.g. \"v1.13.9\".")
        else:
            match = _TALOS_VERSION_RE.match(talos)
            if not match:
                c.add("cellplatform_talos_version", talos, "is not a Talos version of the form vMAJOR.MINOR.PATCH",
                      ("write it with a leading v, e.g. v%s." % talos) if _K8S_VERSION_RE.match(talos) else talos_fix)
            else:
                tv = tuple(int(x) for x in match.groups())
                if tv[:2] not in SUPPORTED_VERSIONS:
                    c.add("cellplatform_talos_version", talos, "is not a supported Talos release", talos_fix)
                    tv = None
    if c.want_present("cellplatform_kubernetes_version", k8s, k8s_fix):
        if not isinstance(k8s, str):
            c.add("cellplatform_kubernetes_version", k8s, "must be a version string, not %s" % _type_name(k8s),
                  "quote it and write it in full, e.g. \"1.36.3\".")
        else:
            match = _K8S_VERSION_RE.match(k8s)
            if not match:
                fix = k8s_fix
                if k8s.startswith("v") and _K8S_VERSION_RE.match(k8s[1:]):
                    fix = "drop the leading v: %s." % k8s[1:]
                c.add("cellplatform_kubernetes_version", k8s, "is not a Kubernetes version of the form MAJOR.MINOR.PATCH", fix)
            else:
                kv = tuple(int(x) for x in match.groups())
    if tv is not None and kv is not None:
        low, high = SUPPORTED_VERSIONS[tv[:2]]
        if not low <= kv[:2] <= high:
            c.add("cellplatform_kubernetes_version", k8s,
                  "is not supported by Talos %s (it supports Kubernetes %d.%d-%d.%d)" % ((talos,) + low + high),
                  "use Kubernetes %d.%d-%d.%d with Talos v%d.%d.x, or change cellplatform_talos_version (supported: %s)." % (
                      low + high + tv[:2] + (supported,)))


def _check_proxmox(c, nodes, node_ips):
    fix = "set cellplatform_proxmox: {endpoint, insecure, node_name, datastore, image_datastore, bridge, vm_id_base}."
    pve = c.want_dict("cellplatform_proxmox", c.top("cellplatform_proxmox"), fix)
    if pve is None:
        return
    endpoint = c.sub(pve, "endpoint")
    ep_fix = "use the Proxmox API URL, e.g. https://pve.example.lan:8006/."
    if c.want_str("cellplatform_proxmox.endpoint", endpoint, ep_fix) is not None:
        if not _url_ok(endpoint, ("https",)):
            c.add("cellplatform_proxmox.endpoint", endpoint, "is not an https:// URL with a host", ep_fix)
    c.want_bool("cellplatform_proxmox.insecure", c.sub(pve, "insecure"))
    for key, example in (("node_name", "pve1"), ("datastore", "local-lvm"), ("image_datastore", "local"), ("bridge", "vmbr0")):
        c.want_str("cellplatform_proxmox.%s" % key, c.sub(pve, key), "set the Proxmox %s, e.g. %s." % (key.replace("_", " "), example))
    base = c.want_int("cellplatform_proxmox.vm_id_base", c.sub(pve, "vm_id_base"), VM_ID_RANGE[0], VM_ID_RANGE[1] - 255)
    ips = dict(node_ips)
    seen = {}
    for hostname, _role, hvars in nodes:
        override = hvars.get("cellplatform_node_vm_id", MISSING)
        field = "%s.cellplatform_node_vm_id" % hostname
        if override is not MISSING and override is not None:
            vm_id = c.want_int(field, override, VM_ID_RANGE[0], VM_ID_RANGE[1])
        elif base is not None and hostname in ips:
            vm_id = _default_vm_id(base, ips[hostname])
            field = "cellplatform_proxmox.vm_id_base"
        else:
            vm_id = None
        if vm_id is None:
            continue
        if vm_id in seen:
            c.add("%s.cellplatform_node_vm_id" % hostname, vm_id, "is also the VM ID of node %s" % seen[vm_id],
                  "set a unique cellplatform_node_vm_id on %s." % hostname)
        else:
            seen[vm_id] = hostname


def _url_ok(value, schemes):
    try:
        from urllib.parse import urlsplit
    except ImportError:  # pragma: no cover
        from urlparse import urlsplit  # type: ignore
    if not isinstance(value, str) or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    del port
    return parts.scheme in schemes and bool(parts.hostname) and is_host(parts.hostname.lower())


def _check_karpenter(c, network, gateway, vip, pool, node_ips, required):
    field = "cellplatform_karpenter"
    value = c.top(field)
    karp = c.want_dict(field, value, "set cellplatform_karpenter: {enabled, min_nodes, max_nodes, ..., address_range}.",
                       required=required)
    if karp is None:
        return
    enabled = c.want_bool(field + ".enabled", c.sub(karp, "enabled"))
    if enabled is False:
        return
    if required and c.top("cellplatform_provisioner") == "none":
        # Karpenter's provider creates and deletes worker VMs through the Proxmox API.
        c.add(field + ".enabled", c.sub(karp, "enabled"),
              "needs Proxmox: Karpenter (karpenter-provider-proxmox) creates worker VMs through the Proxmox API, "
              "and cellplatform_provisioner is none (machines you boot yourself, bare metal)",
              "set cellplatform_karpenter: {enabled: false} and add workers as inventory hosts, or run the cell on "
              "Proxmox (cellplatform_provisioner: proxmox).")
    low = c.want_int(field + ".min_nodes", c.sub(karp, "min_nodes"), 0, KARPENTER_MAX_NODES_CAP)
    high = c.want_int(field + ".max_nodes", c.sub(karp, "max_nodes"), 0, KARPENTER_MAX_NODES_CAP,
                      fix="set an integer between 0 and %d (a YAML number, without quotes)." % KARPENTER_MAX_NODES_CAP)
    if low is not None and high is not None and high < low:
        c.add(field + ".max_nodes", high, "is smaller than min_nodes %d" % low,
              "set max_nodes to at least %d, or lower min_nodes." % low)
        high = None
    c.want_int(field + ".node_cores", c.sub(karp, "node_cores"), 1, 512)
    c.want_int(field + ".node_memory_mib", c.sub(karp, "node_memory_mib"), 1024, 4194304)
    c.want_int(field + ".node_disk_gib", c.sub(karp, "node_disk_gib"), 10, 65536)
    c.want_str(field + ".proxmox_region", c.sub(karp, "proxmox_region"), "set the Proxmox cluster region name, e.g. pve.")
    c.want_str(field + ".template_name", c.sub(karp, "template_name"), "set the Proxmox VM template name, e.g. talos-nocloud.")
    rng = _as_ip_range(c, field + ".address_range", c.sub(karp, "address_range"), network,
                       "dynamic-worker range", ", disjoint from nodes, VIP, gateway and the LoadBalancer pool")
    if not rng:
        return
    shown = "%s-%s" % rng
    size = int(rng[1]) - int(rng[0]) + 1
    if high is not None and size < high:
        c.add(field + ".address_range", shown, "holds %d addresses, fewer than max_nodes %d" % (size, high),
              "widen the range to at least %d addresses or lower max_nodes." % high)
    elif high is not None:
        block = karpenter_ipam_block(rng[0], rng[1])
        if block.num_addresses < high:
            c.add(field + ".address_range", shown,
                  "has %s as its largest CIDR-aligned block (the subnet Karpenter's simple IPAM allocates from), "
                  "which holds %d addresses, fewer than max_nodes %d" % (block, block.num_addresses, high),
                  "widen or align the range so that it contains an aligned block of at least %d addresses "
                  "(e.g. a whole /%d), or lower max_nodes." % (high, 32 - (high - 1).bit_length()))
    fix = "move the dynamic-worker range to free addresses (disjoint from nodes, VIP, gateway and the LoadBalancer pool)."
    for hostname, ip in node_ips:
        if rng[0] <= ip <= rng[1]:
            c.add(field + ".address_range", shown, "holds %s, the address of node %s" % (ip, hostname), fix)
    if vip is not None and rng[0] <= vip <= rng[1]:
        c.add(field + ".address_range", shown, "holds %s, the API VIP" % vip, fix)
    if gateway is not None and rng[0] <= gateway <= rng[1]:
        c.add(field + ".address_range", shown, "holds %s, the gateway address" % gateway, fix)
    if pool and rng[0] <= pool[1] and pool[0] <= rng[1]:
        c.add(field + ".address_range", shown, "overlaps the LoadBalancer pool %s-%s" % pool, fix)


def karpenter_ipam_block(start, end):
    """The largest CIDR-aligned block inside [start, end] (the earliest one of that size).

    Karpenter's simple IPAM takes a subnet (``ipconfig0: ip=<subnet>,gw=<gateway>`` in the
    Proxmox template), not a range, so the dynamic-worker range maps to this block.
    """
    first, last = int(start), int(end)
    best = ipaddress.ip_network("%s/32" % ipaddress.ip_address(first))
    for prefix in range(31, 15, -1):
        size = 2 ** (32 - prefix)
        base = -(-first // size) * size
        if base + size - 1 <= last:
            best = ipaddress.ip_network("%s/%d" % (ipaddress.ip_address(base), prefix))
    return best


def _check_l1(c):
    c.want_bool("cellplatform_metallb_bgp", c.top("cellplatform_metallb_bgp"), required=False)
    # cellplatform_dns_domain itself is an L0 input (_check_dns_domain); here it only scopes the filters.
    domain = c.top("cellplatform_dns_domain")
    domain = domain if is_dns_name(domain) else None
    field = "cellplatform_external_dns"
    edns = c.want_dict(field, c.top(field), "set cellplatform_external_dns: {provider, policy, txt_owner_id, domain_filters, rfc2136|pdns}.")
    if edns is None:
        return
    provider = c.want_choice(field + ".provider", c.sub(edns, "provider"), EXTERNAL_DNS_PROVIDERS)
    policy = c.want_choice(field + ".policy", c.sub(edns, "policy"), EXTERNAL_DNS_POLICIES)
    owner = c.sub(edns, "txt_owner_id")
    owner_fix = "set a short identifier of this cell, e.g. the cell name."
    if c.want_str(field + ".txt_owner_id", owner, owner_fix) is not None and not _OWNER_ID_RE.match(owner):
        c.add(field + ".txt_owner_id", owner, "may only contain letters, digits, '.', '_' and '-'", owner_fix)
    filters = c.want_list(field + ".domain_filters", c.sub(edns, "domain_filters"),
                          "list the domains external-dns may manage, e.g. [%s]." % (domain or "cell.lan"), non_empty=True)
    good_filters = []
    for idx, item in enumerate(filters or []):
        ffield = "%s.domain_filters[%d]" % (field, idx)
        if not is_dns_name(item):
            c.add(ffield, item, "is not a valid DNS name", "use a lowercase domain such as %s." % (domain or "cell.lan"))
        elif domain is not None and not _within(item, domain):
            c.add(ffield, item, "is not within cellplatform_dns_domain %s" % domain,
                  "use %s or a subdomain of it." % domain)
        else:
            good_filters.append(item)
    if provider == "rfc2136":
        sub = field + ".rfc2136"
        rfc = c.want_dict(sub, c.sub(edns, "rfc2136"), "set %s: {host, port, zone, tsig_keyname, tsig_algorithm, axfr}." % sub)
        if rfc is not None:
            host = c.sub(rfc, "host")
            host_fix = "set the DNS server's IP address or host name, e.g. %s." % _example_host(None)
            if c.want_str(sub + ".host", host, host_fix) is not None and not is_host(host):
                c.add(sub + ".host", host, "is neither an IP address nor a valid host name", host_fix)
            c.want_int(sub + ".port", c.sub(rfc, "port"), 1, 65535)
            zone = c.sub(rfc, "zone")
            zone_fix = "set the zone the TSIG key may update, e.g. %s." % (domain or "cell.lan")
            if c.want_str(sub + ".zone", zone, zone_fix) is not None:
                if not is_dns_name(zone):
                    c.add(sub + ".zone", zone, "is not a valid DNS name", zone_fix)
                else:
                    for item in good_filters:
                        if not _within(item, zone):
                            c.add(sub + ".zone", zone, "is not equal to or a parent of domain filter %s" % item,
                                  "set the zone to %s or a parent of it, or change the domain filter." % item)
            c.want_str(sub + ".tsig_keyname", c.sub(rfc, "tsig_keyname"), "set the TSIG key name, e.g. externaldns-key.")
            c.want_choice(sub + ".tsig_algorithm", c.sub(rfc, "tsig_algorithm"), TSIG_ALGORITHMS)
            axfr = c.want_bool(sub + ".axfr", c.sub(rfc, "axfr"))
            if policy == "sync" and axfr is False:
                c.add(sub + ".axfr", axfr, "is false, but policy sync needs zone transfers to find records to delete",
                      "set axfr: true (and allow AXFR for the TSIG key), or use policy upsert-only.")
    elif provider == "pdns":
        sub = field + ".pdns"
        pdns = c.want_dict(sub, c.sub(edns, "pdns"), "set %s: {server, server_id}." % sub)
        if pdns is not None:
            server = c.sub(pdns, "server")
            srv_fix = "set the PowerDNS API URL, e.g. http://%s:8081." % _example_host(None)
            if c.want_str(sub + ".server", server, srv_fix) is not None and not _url_ok(server, ("http", "https")):
                c.add(sub + ".server", server, "is not an http(s):// URL with a host", srv_fix)
            c.want_str(sub + ".server_id", c.sub(pdns, "server_id"), "set the PowerDNS server ID, usually localhost.")


def _check_gitops(c):
    """Every layer renders an Argo CD Application per component, so every layer needs this."""
    field = "cellplatform_gitops"
    git = c.want_dict(field, c.top(field), "set cellplatform_gitops: {repo_url, revision, path}.")
    if git is not None:
        url = c.sub(git, "repo_url")
        url_fix = "use https://host/org/repo.git, ssh://git@host/org/repo.git or git@host:org/repo.git."
        if c.want_str(field + ".repo_url", url, url_fix) is not None:
            if url.startswith("http://"):
                c.add(field + ".repo_url", url, "uses plain http", "use https:// (credentials and manifests must not travel in clear text).")
            elif not _git_url_ok(url):
                c.add(field + ".repo_url", url, "is not a Git URL Argo CD can clone", url_fix)
        c.want_str(field + ".revision", c.sub(git, "revision"), "set a branch, tag or commit, e.g. main.")
        for key, default in (("project", ARGOCD_PROJECT), ("namespace", ARGOCD_NAMESPACE)):
            value = c.sub(git, key)
            fix = "use a lowercase DNS label such as %s, or remove it for that default." % default
            if c.want_str(field + "." + key, value, fix, required=False) is not None and not is_dns_label(value):
                c.add(field + "." + key, value, "is not a valid DNS label", fix)
        path = c.sub(git, "path")
        path_fix = "use a path relative to the repository root without '..', e.g. apps."
        if c.want_str(field + ".path", path, path_fix) is not None:
            if path.startswith("/") or "\\" in path:
                c.add(field + ".path", path, "is not a relative path", path_fix)
            elif ".." in path.split("/"):
                c.add(field + ".path", path, "leaves the repository ('..')", path_fix)


def _check_l2(c):
    domain = c.top("cellplatform_argocd_domain")
    dom_fix = "set the host name Argo CD is served under, e.g. argocd.cell.lan."
    if c.want_str("cellplatform_argocd_domain", domain, dom_fix) is not None and not is_dns_name(domain):
        c.add("cellplatform_argocd_domain", domain, "is not a valid DNS name", dom_fix)
    c.want_choice("cellplatform_policy_mode", c.top("cellplatform_policy_mode"), POLICY_MODES)
    field = "cellplatform_linkerd"
    lk = c.want_dict(field, c.top(field), "set cellplatform_linkerd: {trust_anchor_lifetime_days, issuer_lifetime_days, issuer_renew_before_days}.")
    if lk is None:
        return
    anchor = c.want_int(field + ".trust_anchor_lifetime_days", c.sub(lk, "trust_anchor_lifetime_days"), 1, 36500)
    issuer = c.want_int(field + ".issuer_lifetime_days", c.sub(lk, "issuer_lifetime_days"), 1, LINKERD_ISSUER_MAX_DAYS)
    renew = c.want_int(field + ".issuer_renew_before_days", c.sub(lk, "issuer_renew_before_days"), 1, LINKERD_ISSUER_MAX_DAYS)
    if anchor is not None and issuer is not None and not anchor > issuer:
        c.add(field + ".issuer_lifetime_days", issuer, "is not shorter than trust_anchor_lifetime_days %d" % anchor,
              "keep the issuer lifetime below the trust anchor's, e.g. 365 with a 3650-day anchor.")
    if issuer is not None and renew is not None and not issuer > renew:
        c.add(field + ".issuer_renew_before_days", renew, "is not shorter than issuer_lifetime_days %d" % issuer,
              "renew some days before expiry, e.g. 30 with a 365-day issuer.")


# --- day 2 (upgrade.yml, remove-node.yml, ...) -------------------------------------------------------
UPGRADE_BATCH_RANGE = (1, 100)


def _check_day2(c):
    """Inputs of the day-2 playbooks (all optional)."""
    c.want_int("cellplatform_upgrade_batch_size", c.top("cellplatform_upgrade_batch_size"),
               UPGRADE_BATCH_RANGE[0], UPGRADE_BATCH_RANGE[1],
               fix="set how many workers upgrade.yml upgrades at once, e.g. 1 (the default) or 2, or remove it.",
               required=False)


def _day2_inputs(v):
    batch = v.get("cellplatform_upgrade_batch_size")
    return {"upgrade": {"batch_size": int(batch) if batch not in (None, "") else 1}}


# =============================================================================================
# Node firewall (optional; L6 defence in depth, rendered by L0 into every node's documents): the
# Talos ingress firewall in block mode (talos#13926: only block mode keeps the conntrack
# "established" rule) with one NetworkRuleConfig per service the nodes themselves offer. Sources:
# ``admin`` (the admin networks), ``nodes`` (the node network), ``controlplanes`` (their /32s),
# ``pods`` (the pod network: pods reaching host-network services; Talos already lets pod and
# service addresses talk to each other). LoadBalancer traffic is Cilium's, before nftables
# (talos#12955). Conditions: ``observability`` (L4 scrapes them), ``talos_api_access`` (L5's
# etcd snapshots call the control planes' Talos API from a pod).
# (name, protocol, ports, sources, roles, condition, why)
NODE_FIREWALL_RULES = (
    ("apid", "tcp", ["50000"], ("admin", "nodes"), ("controlplane", "worker"), None,
     "Talos API: talosctl and the playbooks (admin networks); control planes proxy to the other nodes"),
    ("apid-pods", "tcp", ["50000"], ("pods",), ("controlplane",), "talos_api_access",
     "Talos API from the etcd snapshot CronJob (Service talos.default, os:etcd:backup)"),
    ("trustd", "tcp", ["50001"], ("nodes",), ("controlplane",), None,
     "trustd: joining nodes fetch their certificates"),
    ("kubernetes-api", "tcp", ["6443"], ("admin", "nodes", "pods"), ("controlplane",), None,
     "Kubernetes API: operators, kubelets, and pods through the kubernetes Service"),
    ("etcd", "tcp", ["2379-2380"], ("controlplanes",), ("controlplane",), None,
     "etcd client and peer traffic between the control planes only"),
    ("kubelet", "tcp", ["10250"], ("nodes", "pods"), ("controlplane", "worker"), None,
     "kubelet API: the API server (logs, exec) and the metrics scrapers"),
    ("cilium-vxlan", "udp", ["8472"], ("nodes",), ("controlplane", "worker"), None,
     "Cilium's VXLAN tunnel between the nodes (pod traffic)"),
    ("cilium-health", "tcp", ["4240"], ("nodes", "pods"), ("controlplane", "worker"), None,
     "Cilium's node-to-node health checks"),
    ("hubble-peer", "tcp", ["4244"], ("nodes", "pods"), ("controlplane", "worker"), None,
     "Hubble: the relay reads every agent's flows"),
    ("metallb-memberlist-tcp", "tcp", ["7946"], ("nodes",), ("controlplane", "worker"), None,
     "MetalLB speakers' memberlist (host network)"),
    ("metallb-memberlist-udp", "udp", ["7946"], ("nodes",), ("controlplane", "worker"), None,
     "MetalLB speakers' memberlist (host network)"),
    ("host-metrics", "tcp", ["9100", "9120", "9962-9965"], ("pods",), ("controlplane", "worker"), "observability",
     "Prometheus scrapes node-exporter, the MetalLB speaker and the Cilium agent, operator, Envoy and Hubble"),
    ("control-plane-metrics", "tcp", ["2381", "10257", "10259"], ("pods",), ("controlplane",), "observability",
     "Prometheus scrapes etcd, the controller manager and the scheduler"),
)
NODE_FIREWALL_ROLES = ("controlplane", "worker")


def _node_firewall_example(network):
    """An example node firewall for fix messages, in the cell's own node network (or EXAMPLE_NETWORK)."""
    net = network if network is not None else EXAMPLE_NETWORK
    return ("{enabled: true, admin_networks: [%s], rules: [{name: bgp, protocol: tcp, ports: [179], "
            "sources: [%s/32], roles: [worker]}]}" % (net, _example_host(network)))


def _entry_name(c, where, entry, what, example):
    """The ``name`` of a list entry (a team, a rule); a name that is not a DNS label is reported."""
    fix = "name the %s with a DNS label, e.g. %s." % (what, example)
    name = c.want_str(where + ".name", c.sub(entry, "name"), fix)
    if name is not None and not is_dns_label(name):
        c.add(where + ".name", name, "is not a DNS label (lowercase a-z, 0-9, '-')", fix)
    return name


def _firewall_ports(c, field, ports):
    """[(low, high)] of a rule's ports, problems reported."""
    fix = "list ports (1-65535) or ranges \"<low>-<high>\", e.g. [179, \"30000-30100\"]."
    out = []
    for idx, port in enumerate(ports):
        where = "%s[%d]" % (field, idx)
        text = str(port).strip() if isinstance(port, (int, str)) and not isinstance(port, bool) else None
        match = re.match(r"^([0-9]+)(?:-([0-9]+))?$", text or "")
        if not match:
            c.add(where, port, "is not a port or a range", fix)
            continue
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if not 1 <= low <= high <= 65535:
            c.add(where, port, "is outside 1-65535 or a range whose start is after its end", fix)
            continue
        for other in out:
            if low <= other[1] and other[0] <= high:
                c.add(where, port, "overlaps another port of the rule (Talos refuses overlapping ranges)",
                      "list each port once.")
                break
        else:
            out.append((low, high))
    return out


def _check_node_firewall(c, network):
    field = "cellplatform_node_firewall"
    example_net = network if network is not None else EXAMPLE_NETWORK
    example_source = "%s/32" % _example_host(network)
    fw = c.want_dict(field, c.top(field), "set %s: %s, or remove it." % (field, _node_firewall_example(network)),
                     required=False)
    if fw is None:
        return
    # Unknown keys are reported by the schema check (inventory_check).
    c.want_bool(field + ".enabled", c.sub(fw, "enabled"), required=False)
    admins = c.want_list(field + ".admin_networks", c.sub(fw, "admin_networks"),
                         "list the operators' networks, e.g. [%s]." % example_net,
                         required=False, non_empty=True)
    for idx, net in enumerate(admins or []):
        c.want_network("%s.admin_networks[%d]" % (field, idx), net, example_net, ipv4_only=True)
    rules = c.want_list(field + ".rules", c.sub(fw, "rules"), "list rules as in %s." % _node_firewall_example(network),
                        required=False)
    taken = {rule[0]: "a generated rule" for rule in NODE_FIREWALL_RULES}
    for idx, rule in enumerate(rules or []):
        where = "%s.rules[%d]" % (field, idx)
        rule = c.want_dict(where, rule, "write a rule as {name, protocol, ports, sources, roles}.")
        if rule is None:
            continue
        name = _entry_name(c, where, rule, "rule", "bgp")
        if name in taken:
            c.add(where + ".name", name, "is already the name of %s" % taken[name],
                  "give the rule a name of its own, e.g. site-%s." % name)
        elif name is not None:
            taken[name] = "rule %s" % where
        c.want_choice(where + ".protocol", c.sub(rule, "protocol"), ("tcp", "udp"))
        ports = c.want_list(where + ".ports", c.sub(rule, "ports"), "list the ports, e.g. [179].", non_empty=True)
        _firewall_ports(c, where + ".ports", ports or [])
        sources = c.want_list(where + ".sources", c.sub(rule, "sources"),
                              "list the source networks, e.g. [%s]." % example_source, non_empty=True)
        for jdx, net in enumerate(sources or []):
            c.want_network("%s.sources[%d]" % (where, jdx), net, example_source, ipv4_only=True)
        roles = c.want_list(where + ".roles", c.sub(rule, "roles"), "list controlplane and/or worker, or remove it.",
                            required=False, non_empty=True)
        for jdx, role in enumerate(roles or []):
            if role not in NODE_FIREWALL_ROLES:
                c.add("%s.roles[%d]" % (where, jdx), role, "is not a node role",
                      "use controlplane and/or worker.")


def node_firewall_model(v):
    """cellplatform_cell.node_firewall: None (off) or {admin_networks, rules: [{name, protocol, ports, sources, roles}]}."""
    fw = v.get("cellplatform_node_firewall")
    if not isinstance(fw, Mapping) or not _as_bool(fw.get("enabled")):
        return None
    admins = [str(n) for n in fw.get("admin_networks") or []] or [str(v["cellplatform_network"]["cidr"])]
    return {
        "admin_networks": admins,
        "rules": [{"name": str(r["name"]), "protocol": str(r["protocol"]),
                   "ports": [str(p).strip() for p in r.get("ports") or []],
                   "sources": [str(n) for n in r.get("sources") or []],
                   "roles": [str(x) for x in r.get("roles") or NODE_FIREWALL_ROLES]}
                  for r in fw.get("rules") or [] if isinstance(r, Mapping)],
    }


def node_firewall_rules(cell, role):
    """The node firewall of a node of ``role`` as [{name, protocol, ports, sources, why}] (empty when off)."""
    fw = cell.get("node_firewall")
    if not fw:
        return []
    classes = {
        "admin": fw["admin_networks"],
        "nodes": [cell["network"]["cidr"]],
        "controlplanes": ["%s/32" % n["ip"] for n in cell["nodes"] if n["role"] == "controlplane"],
        "pods": [cell["pod_cidr"]],
    }
    conditions = {
        None: True,
        "observability": bool(cell.get("observability")),
        "talos_api_access": bool((cell.get("resilience") or {}).get("talos_api_access")),
    }
    out = []
    for name, protocol, ports, sources, roles, condition, why in NODE_FIREWALL_RULES:
        if role in roles and conditions[condition]:
            nets = []
            for cls in sources:
                nets.extend(n for n in classes[cls] if n not in nets)
            out.append({"name": name, "protocol": protocol, "ports": list(ports), "sources": nets, "why": why})
    for rule in fw["rules"]:
        if role in rule["roles"]:
            out.append({"name": rule["name"], "protocol": rule["protocol"], "ports": list(rule["ports"]),
                        "sources": list(rule["sources"]), "why": "the inventory's rule"})
    return out


def _git_url_ok(url):
    """https://host/path, ssh://[user@]host[:port]/path or scp-like user@host:path."""
    if url.startswith(("https://", "ssh://")):
        if not _url_ok(url, ("https", "ssh")):
            return False
        path = url.split("://", 1)[1].split("/", 1)
        return len(path) == 2 and bool(path[1].strip("/"))
    match = _SCP_GIT_RE.match(url)
    return bool(match) and is_host(match.group(1).lower())


# --- Rules a later step asserts, said first by the preflight ------------------------------------
# The Terraform root module (roles/l0_infrastructure/files/terraform/proxmox/variables.tf) and the
# L1 render refuse these inputs; the preflight says so before anything runs. The cell name limit
# is in _check_l0 (CELL_NAME_MAX).
_PROXMOX_ENDPOINT_RE = re.compile(r"^https://[^/?#@\s]+(:[0-9]+)?/?$")
_PROXMOX_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TERRAFORM_PREFIX_RANGE = (8, 30)
CONTROLPLANE_MIN_CORES = 2


def _check_terraform_inputs(c):
    """What the Proxmox root module's variable validations refuse (provisioner proxmox only)."""
    pve = c.top("cellplatform_proxmox")
    endpoint = c.sub(pve, "endpoint")
    if _url_ok(endpoint, ("https",)) and not _PROXMOX_ENDPOINT_RE.match(endpoint):
        c.add("cellplatform_proxmox.endpoint", endpoint, "has a path, query or user part; Terraform takes the API "
              "base URL only", "use scheme, host and port only, e.g. https://pve.example.lan:8006/.")
    for key in ("node_name", "datastore", "image_datastore", "bridge"):
        value = c.sub(pve, key)
        if isinstance(value, str) and value.strip() and not _PROXMOX_ID_RE.match(value):
            c.add("cellplatform_proxmox.%s" % key, value, "is not a Proxmox identifier (letters, digits, '.', '_', "
                  "'-', starting with a letter or digit)", "use the name exactly as Proxmox shows it, e.g. %s." % (
                      {"node_name": "pve1", "datastore": "local-lvm", "image_datastore": "local",
                       "bridge": "vmbr0"}[key]))
    cores = c.sub(c.sub(c.top("cellplatform_node_sizes"), "controlplane"), "cores")
    if isinstance(cores, int) and not isinstance(cores, bool) and 1 <= cores < CONTROLPLANE_MIN_CORES:
        c.add("cellplatform_node_sizes.controlplane.cores", cores,
              "is below the Talos minimum of %d cores for a control plane" % CONTROLPLANE_MIN_CORES,
              "give control planes at least %d cores (the Talos Proxmox guide recommends 2 cores, 4 GiB)."
              % CONTROLPLANE_MIN_CORES)
    network = c.top("cellplatform_network")
    cidr = c.sub(network, "cidr")
    net = None
    try:
        net = ipaddress.ip_network(cidr) if isinstance(cidr, str) else None
    except ValueError:
        pass
    if net is not None and net.version == 4 and net.prefixlen < TERRAFORM_PREFIX_RANGE[0]:
        c.add("cellplatform_network.cidr", cidr, "is larger than a /%d, the largest network Terraform hands to the "
              "VMs" % TERRAFORM_PREFIX_RANGE[0], "use a /%d to /29 node network, e.g. a /24." % TERRAFORM_PREFIX_RANGE[0])


# --- Warnings: inputs that work but probably do not do what was meant ------------------------------
# The example names an inventory declares (cellplatform_reference_names; the reference inventory
# declares its own): right there, wrong at any other site.
def _reference_names(variables):
    names = variables.get("cellplatform_reference_names") if isinstance(variables, Mapping) else None
    if not isinstance(names, Mapping) or not isinstance(names.get("domain"), str) \
            or not isinstance(names.get("dns_server"), str):
        return None
    return names


def _hosts_in(value):
    """Host names and addresses a string names: itself, or the host of a URL or of user@host:path."""
    if not isinstance(value, str):
        return []
    text = value.strip()
    if "://" in text:
        try:
            from urllib.parse import urlsplit
        except ImportError:  # pragma: no cover
            from urlparse import urlsplit  # type: ignore
        try:
            host = urlsplit(text).hostname
        except ValueError:
            return []
        return [host] if host else []
    match = _SCP_GIT_RE.match(text)
    if match:
        return [match.group(1).lower()]
    return [text.lower()]


def _leaves(value, field):
    """(field, value) for every string in an input (nested mappings and lists walked)."""
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            yield from _leaves(value[key], "%s.%s" % (field, key))
    elif isinstance(value, (list, tuple)):
        for idx, item in enumerate(value):
            yield from _leaves(item, "%s[%d]" % (field, idx))
    elif isinstance(value, str):
        yield field, value


def reference_values(variables):
    """Every input still holding the declared example domain or DNS server: [(field, value)]."""
    names = _reference_names(variables)
    if names is None:
        return []
    found = []
    for name in sorted(variables or {}):
        if name == "cellplatform_reference_names":
            continue
        for field, value in _leaves(variables[name], name):
            if field == "cellplatform_network.gateway":
                continue  # the router of the node network: part of the address plan, not a service
            for host in _hosts_in(value):
                if _within(host, names["domain"]) or host == names["dns_server"]:
                    found.append((field, value))
                    break
    return found


def advise(variables, layers=None, mode=None):
    """Warnings (strings) about inputs that pass validation but are probably not what was meant."""
    v = variables or {}
    selected = _layers(layers)
    warnings = []
    api_name, domain = v.get("cellplatform_api_dns_name"), v.get("cellplatform_dns_domain")
    filters = [f for f in ((v.get("cellplatform_external_dns") or {}).get("domain_filters") or [])
               if isinstance(f, str)] if isinstance(v.get("cellplatform_external_dns"), Mapping) else []
    if "l1" in selected and is_dns_name(api_name) and is_dns_name(domain):
        outside = not _within(api_name, domain) or (filters and not any(_within(api_name, f) for f in filters))
        if outside:
            warnings.append(
                "cellplatform_api_dns_name: %s is outside cellplatform_dns_domain %s%s, so external-dns will not manage "
                "it: create its A record (-> %s) yourself, or use a name under %s." % (
                    api_name, domain, (" / the external-dns domain filters %s" % ", ".join(filters)) if filters else "",
                    v.get("cellplatform_api_vip"), filters[0] if filters else domain))
    mode = mode if mode is not None else v.get("cellplatform_mode")
    names = _reference_names(v)
    if names is not None and (v.get("cellplatform_cell_name") != names.get("cell_name") or mode == "apply"):
        found = reference_values(v)
        if found:
            warnings.append(
                "this inventory still holds the reference cell's example names (domain %s, DNS server %s), which "
                "cannot be right at another site: %s. Replace them with your site's names, or ignore this if "
                "they really are yours (then delete cellplatform_reference_names)."
                % (names["domain"], names["dns_server"], "; ".join("%s=%s" % item for item in found)))
    return warnings


def validate(variables, hosts, layers=None, mode=None):
    """Every problem of the inventory at once: a list of {field, value, message, fix}.

    ``layers``: iterable of l0 .. l7 (default: all). L0 is always checked: every layer needs
    the cell model. ``mode``: overrides ``cellplatform_mode`` (validated the same way).
    """
    selected = _layers(layers)
    checker = _Checker(variables or {})
    network, gateway, vip, pool, node_ips = _check_l0(checker, hosts, mode)
    _check_storage_and_gateway(checker, hosts, network, gateway, vip, pool, node_ips)
    karpenter_needed = "l1" in selected
    if karpenter_needed or checker.top("cellplatform_karpenter") is not MISSING:
        _check_karpenter(checker, network, gateway, vip, pool, node_ips, required=karpenter_needed)
    if "l1" in selected:
        _check_l1(checker)
        _check_tls(checker)
    _check_gitops(checker)
    if "l2" in selected:
        _check_l2(checker)
        _check_ui_names(checker)
    if checker.top("cellplatform_provisioner") == "proxmox":
        _check_terraform_inputs(checker)
    if "l3" in selected:
        _check_l3(checker)
    _check_observability(checker, hosts, network, gateway, vip, pool, node_ips, l4="l4" in selected)
    _check_day2(checker)
    _check_node_firewall(checker, network)
    if "l6" in selected:
        _check_security(checker)
    if "l7" in selected:
        _check_l7(checker, l3_checked="l3" in selected)
    _check_resilience(checker, l5="l5" in selected)
    return checker.problems


def format_problems(problems, where="in the inventory"):
    """The numbered list used as the failure message."""
    lines = ["Preflight found %d problem%s %s (nothing was changed):" % (
        len(problems), "" if len(problems) == 1 else "s", where)]
    for idx, prob in enumerate(problems, 1):
        lines.append("%d. %s. Fix: %s" % (idx, prob["message"], prob["fix"]))
    return "\n".join(lines)


def build_cell_model(variables, hosts, mode=None):
    """The normalised ``cellplatform_cell`` structure (inventory must be valid)."""
    v = variables
    network = ipaddress.ip_network(v["cellplatform_network"]["cidr"])
    net = v["cellplatform_network"]
    name = v["cellplatform_cell_name"]
    vip = str(ipaddress.ip_address(v["cellplatform_api_vip"]))
    port = int(v["cellplatform_api_port"])
    dns_name = v.get("cellplatform_api_dns_name")
    start = ipaddress.ip_address(v["cellplatform_lb_pool"]["start"])
    end = ipaddress.ip_address(v["cellplatform_lb_pool"]["end"])
    talos_version = v["cellplatform_talos_version"]
    major, minor = _TALOS_VERSION_RE.match(talos_version).groups()[:2]
    platform = v["cellplatform_talos_platform"]
    schematic = v["cellplatform_talos_schematic_id"]
    default_disk = v["cellplatform_talos_install_disk"]
    proxmox = v.get("cellplatform_proxmox") if isinstance(v.get("cellplatform_proxmox"), Mapping) else {}
    vm_id_base = proxmox.get("vm_id_base")

    nodes = []
    groups = (("controlplane", "controlplane"), ("workers", "worker"))
    for group, role in groups:
        for host, hvars in (hosts.get(group) or {}).items():
            if role == "worker" and host in (hosts.get("controlplane") or {}):
                continue
            hvars = hvars or {}
            ip = ipaddress.ip_address(hvars["cellplatform_node_ip"])
            vm_id = hvars.get("cellplatform_node_vm_id")
            if vm_id is None and isinstance(vm_id_base, int) and not isinstance(vm_id_base, bool):
                vm_id = _default_vm_id(vm_id_base, ip)
            nodes.append({
                "name": host,
                "ip": str(ip),
                "address": "%s/%d" % (ip, network.prefixlen),
                "role": role,
                "install_disk": hvars.get("cellplatform_node_install_disk") or default_disk,
                "vm_id": vm_id,
            })
    controlplane = [n["name"] for n in nodes if n["role"] == "controlplane"]
    cell = {
        "name": name,
        "mode": mode if mode else v["cellplatform_mode"],
        "build_dir": os.path.join(os.path.realpath(v["cellplatform_build_root"]), name),
        "secrets_dir": os.path.realpath(v["cellplatform_secrets_dir"]),
        "secrets": dict((key, os.path.join(os.path.realpath(v["cellplatform_secrets_dir"]), fname))
                        for key, fname in sorted(SECRET_FILES.items())),
        "network": {
            "cidr": str(network),
            "prefixlen": network.prefixlen,
            "gateway": str(ipaddress.ip_address(net["gateway"])),
            "nameservers": [str(x) for x in net.get("nameservers") or []],
            "ntp_servers": [str(x) for x in net.get("ntp_servers") or []],
            "search_domains": [str(x) for x in net.get("search_domains") or []],
            "mtu": int(net["mtu"]),
            "link_selector": str(net["link_selector"]),
        },
        "api": {
            "vip": vip,
            "port": port,
            "endpoint": "https://%s:%d" % (vip, port),
            "dns_name": dns_name,
            "cert_sans": [vip] + ([dns_name] if dns_name else []),
        },
        "lb_pool": {
            "start": str(start),
            "end": str(end),
            "range": "%s-%s" % (start, end),
            "size": int(end) - int(start) + 1,
        },
        "pod_cidr": str(v["cellplatform_pod_cidr"]),
        "service_cidr": str(v["cellplatform_service_cidr"]),
        "cluster_dns_domain": str(v.get("cellplatform_cluster_dns_domain") or "cluster.local"),
        "talos": {
            "version": talos_version,
            "contract": "v%s.%s" % (major, minor),
            "kubernetes_version": str(v["cellplatform_kubernetes_version"]),
            "platform": platform,
            "schematic_id": schematic,
            "installer_image": "factory.talos.dev/%s-installer/%s:%s" % (platform, schematic, talos_version),
            "schematic_extensions": [str(x) for x in (v.get("cellplatform_talos_schematic") or {}).get("extensions") or []],
            "install_disk": default_disk,
        },
        "nodes": nodes,
        "controlplane": controlplane,
        "workers": [n["name"] for n in nodes if n["role"] == "worker"],
        "bootstrap_node": controlplane[0] if controlplane else None,
        "talos_endpoints": [n["ip"] for n in nodes if n["role"] == "controlplane"],
    }
    cell.update(_run_model(v, name))
    cell.update(_layer_inputs(v))
    cell.update(_day2_inputs(v))
    cell["node_firewall"] = node_firewall_model(v)
    if cell["node_firewall"]:
        # What each node role opens, decided once (L0's node documents and PLAN.md read it).
        cell["node_firewall"]["roles"] = {role: node_firewall_rules(cell, role) for role in NODE_FIREWALL_ROLES}
    return cell


# --- Names and addresses the cell shows to its site, or uses from it (PLAN.md) ---------------------

def external_names(cell):
    """Every externally visible name and address of a cell model: [{what, value, used_by}], in a fixed order.

    What the site's DNS, firewall and address plan must know: the API endpoint and name, the
    LoadBalancer pool, the nodes, the services the nodes use (gateway, DNS, NTP), the Proxmox API,
    Karpenter's addresses, the external-dns server, the GitOps repository, the shared Gateway every
    web UI is reached through (the UIs themselves are PLAN.md's Web UIs section) and the ACME server.
    """
    rows = []

    def add(what, value, used_by):
        if value not in (None, "", []):
            rows.append({"what": what, "value": str(value), "used_by": used_by})

    cell = cell or {}
    api = cell.get("api") or {}
    net = cell.get("network") or {}
    add("Kubernetes API", api.get("endpoint"), "kubectl and every client; Talos Layer2 VIP on the control planes")
    add("Kubernetes API DNS name", api.get("dns_name"), "certificate SAN; external-dns publishes it -> %s" % api.get("vip"))
    add("nodes", ", ".join("%s %s" % (n.get("name"), n.get("ip")) for n in cell.get("nodes") or []),
        "Talos API (port 50000) from the controller")
    add("LoadBalancer pool", (cell.get("lb_pool") or {}).get("range"), "MetalLB: Services of type LoadBalancer")
    karpenter = cell.get("karpenter") or {}
    if karpenter.get("enabled"):
        add("dynamic worker addresses", (karpenter.get("ipam") or {}).get("range"), "Karpenter's Proxmox workers")
    add("gateway", net.get("gateway"), "every node")
    add("DNS resolvers", ", ".join(net.get("nameservers") or []), "every node")
    add("NTP servers", ", ".join(net.get("ntp_servers") or []), "every node")
    add("DNS search domains", ", ".join(net.get("search_domains") or []), "every node")
    add("Talos installer image", (cell.get("talos") or {}).get("installer_image"), "every node (install, upgrade)")
    proxmox = cell.get("proxmox") or {}
    if cell.get("provisioner") == "proxmox" or karpenter.get("enabled"):
        add("Proxmox API", proxmox.get("endpoint"), "Terraform, Karpenter and the Proxmox CCM from the controller/cluster")
    add("DNS domain", cell.get("dns_domain"), "external-dns and the UI host names")
    edns = cell.get("external_dns") or {}
    if edns.get("provider") == "rfc2136":
        rfc = edns.get("rfc2136") or {}
        add("DNS server (RFC2136)", "%s:%s, zone %s" % (rfc.get("host"), rfc.get("port"), rfc.get("zone")),
            "external-dns (TSIG key %s)" % rfc.get("tsig_keyname"))
    elif edns.get("provider") == "pdns":
        add("PowerDNS API", (edns.get("pdns") or {}).get("server"), "external-dns")
    add("GitOps repository", (cell.get("gitops") or {}).get("repo_url"), "Argo CD")
    gateway = cell.get("gateway") or {}
    if gateway.get("address"):
        add("shared Gateway", "%s (%s)" % (gateway["address"], gateway.get("hostname") or "HTTPS"),
            "every web UI (the Web UIs section lists them); external-dns publishes their names -> %s"
            % gateway["address"])
    acme = (cell.get("tls") or {}).get("acme") or {}
    add("ACME server", acme.get("server"), "cert-manager (the shared Gateway's certificate, DNS-01 through %s)"
        % (acme.get("nameserver") or "the RFC2136 server"))
    return rows


def _plain_copy(value):
    """A deep copy of validated inventory data as plain dicts/lists/scalars."""
    if isinstance(value, Mapping):
        return dict((str(k), _plain_copy(item)) for k, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain_copy(item) for item in value]
    return value


def _run_model(v, name):
    """Where this controller keeps the cell's plaintext, identities and cluster access."""
    work_dir = os.path.realpath(os.path.expanduser(v.get("cellplatform_work_dir") or DEFAULT_WORK_DIR % name))
    # Every file a run decrypts lives here (0700), and nothing in it outlives the run.
    plaintext_dir = os.path.join(work_dir, PLAINTEXT_DIR)
    user_kubeconfig = v.get("cellplatform_kubeconfig")
    return {
        "work_dir": work_dir,
        "plaintext_dir": plaintext_dir,
        # A kubeconfig the user names is used as it is and never written; otherwise the
        # collection fetches one (L0) and keeps it encrypted, decrypted into the plaintext
        # directory for the steps that need it.
        "kubeconfig": {
            "path": os.path.realpath(os.path.expanduser(user_kubeconfig)) if user_kubeconfig
            else os.path.join(plaintext_dir, "kubeconfig"),
            "managed": not user_kubeconfig,
        },
        "age": {
            "recipients": [str(r) for r in v.get("cellplatform_age_recipients") or []],
            "identity": os.path.realpath(os.path.expanduser(v.get("cellplatform_age_identity") or DEFAULT_AGE_IDENTITY)),
        },
        "provisioner": v.get("cellplatform_provisioner"),
        "terraform_allow_destroy": _as_bool(v.get("cellplatform_terraform_allow_destroy")),
    }


def _layer_inputs(v):
    """The inputs of L0 machines and of the layers above, normalised for the roles."""
    proxmox = v.get("cellplatform_proxmox")
    gitops = _plain_copy(v.get("cellplatform_gitops") or {})
    gitops.setdefault("project", ARGOCD_PROJECT)
    gitops.setdefault("namespace", ARGOCD_NAMESPACE)
    karpenter = _plain_copy(v.get("cellplatform_karpenter") or {"enabled": False})
    karpenter["enabled"] = _as_bool(karpenter.get("enabled"))
    rng = karpenter.get("address_range")
    if karpenter["enabled"] and isinstance(rng, Mapping) and parse_ip(rng.get("start")) and parse_ip(rng.get("end")):
        first, last = parse_ip(rng["start"]), parse_ip(rng["end"])
        block = karpenter_ipam_block(first, last)
        gateway = str((v.get("cellplatform_network") or {}).get("gateway", ""))
        karpenter["ipam"] = {
            "range": "%s-%s" % (first, last),
            "subnet": str(block),
            "addresses": block.num_addresses,
            "gateway": gateway,
            "ipconfig0": "ip=%s,gw=%s" % (block, gateway),
        }
    return {
        "proxmox": _plain_copy(proxmox) if isinstance(proxmox, Mapping) else None,
        "node_sizes": _plain_copy(v.get("cellplatform_node_sizes")) if v.get("cellplatform_node_sizes") else None,
        "dns_domain": v.get("cellplatform_dns_domain"),
        "external_dns": _plain_copy(v.get("cellplatform_external_dns")) if v.get("cellplatform_external_dns") else None,
        "metallb": {"bgp": _as_bool(v.get("cellplatform_metallb_bgp"))},
        "karpenter": karpenter,
        "gitops": gitops,
        "argocd_domain": v.get("cellplatform_argocd_domain"),
        "policy_mode": str(v.get("cellplatform_policy_mode") or "audit").lower(),
        "linkerd": _plain_copy(v.get("cellplatform_linkerd")) if v.get("cellplatform_linkerd") else None,
        # storage, shared Gateway and TLS (storage/TLS/Gateway work)
        "storage": storage_model(v),
        "gateway": gateway_model(v),
        "tls": tls_model(v),
        # L3 delivery (L3 work)
        "gitea": gitea_model(v),
        "harbor": harbor_model(v),
        "image_policy": str(v.get("cellplatform_image_policy") or "audit").lower(),
        # observability (L4) and the LoadBalancer addresses reserved for fixed Services
        "observability": observability_model(v),
        # L7 developer portal (L7 work)
        "backstage": backstage_model(v),
        "lb_reserved": lb_reserved_model(v),
        # security (L6): RBAC groups and teams
        "security": security_model(v),
        # resilience (L5; L0 reads whether the Talos API access patch is needed)
        "resilience": resilience_model(v),
    }


# =============================================================================================
# Storage, the shared Gateway and TLS: their checks (called from validate()) and model sections.

STORAGE_PROVIDERS = ("longhorn", "local-path")
STORAGE_VOLUME_TYPES = ("partition", "directory")
# provider -> (its StorageClass, the Talos user volume it keeps data in: /var/mnt/<volume>).
# Longhorn's chart hard-codes the class name "longhorn"; local-path's chart is given "local-path".
STORAGE_PROVIDER_NAMES = {"longhorn": ("longhorn", "longhorn"), "local-path": ("local-path", "local-path-provisioner")}
LONGHORN_EXTENSIONS = ("siderolabs/iscsi-tools", "siderolabs/util-linux-tools")
LONGHORN_MAX_REPLICAS = 20
SIZE_GIB_MAX = 65536
TLS_ISSUERS = ("internal-ca", "acme")
# The one ClusterIssuer every certificate of the cell uses, by issuer kind.
CLUSTER_ISSUERS = {"internal-ca": "cellplatform-ca", "acme": "cellplatform-acme"}
# external-dns' TSIG algorithm names -> cert-manager's RFC2136 tsigAlgorithm (it accepts no others).
CERT_MANAGER_TSIG = {"hmac-md5": "HMACMD5", "hmac-sha1": "HMACSHA1", "hmac-sha256": "HMACSHA256",
                     "hmac-sha512": "HMACSHA512"}
CA_LIFETIME_DAYS = (365, 36500)
# The shared Gateway: Cilium's GatewayClass (created by the Cilium chart) and its two listeners.
GATEWAY_DEFAULTS = {"name": "platform", "namespace": "gateway"}
GATEWAY_CLASS = "cilium"
GATEWAY_HTTPS_LISTENER = "https"
GATEWAY_HTTP_LISTENER = "http"

_EXTENSION_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9-]+\.)+[a-z0-9-]+$")
# Strings go-yaml writes without quotes in block context (the Image Factory hashes that text) ...
_GO_PLAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./=,+-]*$")
# ... unless YAML would read them as another type (go-yaml then quotes them).
_GO_NON_STRING_RE = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)?\.?[0-9_]+(?:[eE][-+]?[0-9]+)?|0[xXoObB][0-9a-fA-F_]+|[yYnN]|yes|Yes|YES|no|No|NO"
    r"|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|null|Null|NULL|~|\.inf|\.nan)$")


def schematic_id(extensions, extra_kernel_args=()):
    """The Image Factory ID of a schematic with exactly these extensions and kernel arguments.

    The factory's ID is the sha256 of the schematic as go-yaml marshals it (4-space indent, fields
    in struct order: extraKernelArgs before systemExtensions; siderolabs/image-factory
    pkg/schematic). Returns None when a value is not a plain go-yaml scalar (it would be quoted,
    and the ID is then not reproduced here).
    """
    args, exts = list(extra_kernel_args or ()), list(extensions or ())
    for value in args + exts:
        if not isinstance(value, str) or not _GO_PLAIN_RE.match(value) or _GO_NON_STRING_RE.match(value):
            return None
    lines = ["customization:"]
    if args:
        lines += ["    extraKernelArgs:"] + ["        - %s" % arg for arg in args]
    if exts:
        lines += ["    systemExtensions:", "        officialExtensions:"] + ["            - %s" % ext for ext in exts]
    text = "\n".join(lines) + "\n" if len(lines) > 1 else "customization: {}\n"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_storage_and_gateway(c, hosts, network, gateway, vip, pool, node_ips):
    """L0: the cell's DNS domain, the schematic's extensions, storage and the shared Gateway's address.

    (TLS is checked with L1 by _check_tls, the UI names with L2 by _check_ui_names.)
    """
    _check_dns_domain(c)
    extensions = _check_schematic(c)
    _check_storage(c, hosts, extensions)
    _check_gateway(c, network, gateway, vip, pool, node_ips)


def _check_dns_domain(c):
    domain = c.top("cellplatform_dns_domain")
    dom_fix = "set the cell's DNS domain, e.g. cell.lan (every platform UI is https://<name>.<domain>)."
    if c.want_str("cellplatform_dns_domain", domain, dom_fix) is not None and not is_dns_name(domain):
        c.add("cellplatform_dns_domain", domain, "is not a valid DNS name", "use a lowercase domain such as cell.lan.")


def _check_schematic(c):
    """The declared schematic: extension names, and its ID against cellplatform_talos_schematic_id.

    Returns the list of extensions when it is usable, else None.
    """
    field = "cellplatform_talos_schematic"
    fix = ("set %s: {extensions: [siderolabs/qemu-guest-agent, ...]}: the customization the schematic of "
           "cellplatform_talos_schematic_id was made from." % field)
    sch = c.want_dict(field, c.top(field), fix)
    if sch is None:
        return None
    ok = True
    exts = c.want_list(field + ".extensions", c.sub(sch, "extensions"),
                       "list the schematic's official extensions, e.g. [siderolabs/qemu-guest-agent] (or []).")
    for idx, ext in enumerate(exts or []):
        if not isinstance(ext, str) or not _EXTENSION_RE.match(ext):
            c.add("%s.extensions[%d]" % (field, idx), ext, "is not an official extension name",
                  "write it as the Image Factory does, e.g. siderolabs/iscsi-tools.")
            ok = False
        elif ext in exts[:idx]:
            c.add("%s.extensions[%d]" % (field, idx), ext, "is listed twice", "list each extension once.")
            ok = False
    args = c.want_list(field + ".extra_kernel_args", c.sub(sch, "extra_kernel_args"),
                       "list kernel arguments as strings, e.g. [net.ifnames=0], or remove the key.", required=False)
    for idx, arg in enumerate(args or []):
        if not isinstance(arg, str) or not arg.strip() or any(ch.isspace() for ch in arg):
            c.add("%s.extra_kernel_args[%d]" % (field, idx), arg, "is not one kernel argument",
                  "write one argument per list item, without spaces, e.g. net.ifnames=0.")
            ok = False
    if exts is None or not ok:
        return None
    declared = c.top("cellplatform_talos_schematic_id")
    computed = schematic_id(exts, args or ())
    if isinstance(declared, str) and _SCHEMATIC_RE.match(declared) and computed is not None and computed != declared:
        c.add("cellplatform_talos_schematic_id", declared,
              "is not the Image Factory ID of cellplatform_talos_schematic (extensions %s%s)"
              % (", ".join(exts) or "none", "; kernel arguments %s" % " ".join(args) if args else ""),
              "set cellplatform_talos_schematic_id: %s (the ID the Image Factory gives exactly that schematic), or "
              "list the extensions and kernel arguments your schematic really has, in its order." % computed)
    return exts


def _workers(hosts):
    hosts = hosts or {}
    cps = hosts.get("controlplane") or {}
    return [name for name in (hosts.get("workers") or {}) if name not in cps]


def _check_storage(c, hosts, extensions):
    field = "cellplatform_storage"
    st = c.want_dict(field, c.top(field), "set %s: {provider: longhorn|local-path, volume: {type: partition, "
                                          "disk_selector: '!system_disk', min_size_gib: 50}, longhorn: {replicas, "
                                          "reserved_percent}}." % field)
    sizes = c.top("cellplatform_node_sizes")
    data_disk_value = c.sub(c.sub(sizes, "worker"), "data_disk_gib")
    data_disk = c.want_int("cellplatform_node_sizes.worker.data_disk_gib", data_disk_value, 0, SIZE_GIB_MAX,
                           required=False)
    if st is None:
        return
    provider = c.want_choice(field + ".provider", c.sub(st, "provider"), STORAGE_PROVIDERS)
    workers = _workers(hosts)
    if provider is not None and not workers:
        c.add(field + ".provider", provider, "needs at least one static worker to keep data on (control planes run "
              "no workloads and Karpenter's workers come and go)", "add a host to the workers group.")
    vfield = field + ".volume"
    vol = c.want_dict(vfield, c.sub(st, "volume"), "set %s: {type: partition, disk_selector: '!system_disk', "
                                                   "min_size_gib: 50} or {type: directory}." % vfield)
    vtype = min_gib = None
    if vol is not None:
        vtype = c.want_choice(vfield + ".type", c.sub(vol, "type"), STORAGE_VOLUME_TYPES)
        if vtype == "partition":
            c.want_str(vfield + ".disk_selector", c.sub(vol, "disk_selector"),
                       "set a CEL expression that picks the data disk, e.g. !system_disk (every disk but the one "
                       "Talos is installed on) or disk.transport == \"nvme\".")
            min_gib = c.want_int(vfield + ".min_size_gib", c.sub(vol, "min_size_gib"), 1, SIZE_GIB_MAX)
            max_gib = c.want_int(vfield + ".max_size_gib", c.sub(vol, "max_size_gib"), 1, SIZE_GIB_MAX, required=False)
            if min_gib is not None and max_gib is not None and max_gib < min_gib:
                c.add(vfield + ".max_size_gib", max_gib, "is smaller than min_size_gib %d" % min_gib,
                      "set max_size_gib to at least %d, or remove it to use the rest of the disk." % min_gib)
        elif vtype == "directory":
            for key in ("disk_selector", "min_size_gib", "max_size_gib"):
                if c.sub(vol, key) not in (MISSING, None):
                    c.add("%s.%s" % (vfield, key), c.sub(vol, key),
                          "only applies to volume type partition (a directory lives on the EPHEMERAL volume and has "
                          "no size of its own)", "remove it, or use type: partition.")
    if vtype == "partition" and min_gib is not None and c.top("cellplatform_provisioner") == "proxmox":
        if not data_disk and data_disk_value in (MISSING, None, 0):
            c.add("cellplatform_node_sizes.worker.data_disk_gib", data_disk_value,
                  "is not set, but the storage volume is a partition and Terraform must give every static worker VM "
                  "the disk it lives on", "set data_disk_gib to at least %d (the volume's min_size_gib), or use "
                  "%s.type: directory." % (min_gib, vfield))
        elif data_disk is not None and data_disk < min_gib:
            c.add("cellplatform_node_sizes.worker.data_disk_gib", data_disk,
                  "is smaller than %s.min_size_gib %d" % (vfield, min_gib),
                  "set data_disk_gib to at least %d, or lower min_size_gib." % min_gib)
    if provider != "longhorn":
        return
    lfield = field + ".longhorn"
    lh = c.want_dict(lfield, c.sub(st, "longhorn"), "set %s: {replicas: 3, reserved_percent: 10}." % lfield)
    if lh is not None:
        replicas = c.want_int(lfield + ".replicas", c.sub(lh, "replicas"), 1, LONGHORN_MAX_REPLICAS)
        if replicas is not None and workers and replicas > len(workers):
            c.add(lfield + ".replicas", replicas,
                  "is more than the %d static worker(s) (Longhorn keeps every replica of a volume on another node)"
                  % len(workers), "set replicas to at most %d, or add workers." % len(workers))
        c.want_int(lfield + ".reserved_percent", c.sub(lh, "reserved_percent"), 0, 90)
    if extensions is not None:
        missing = [ext for ext in LONGHORN_EXTENSIONS if ext not in extensions]
        if missing:
            c.add("cellplatform_talos_schematic.extensions", extensions,
                  "lacks %s, which Longhorn needs on every node (iscsid and the util-linux tools)" % ", ".join(missing),
                  "build an Image Factory schematic that also has %s, set cellplatform_talos_schematic_id to its ID "
                  "and list the extensions here (docs/l0-infrastructure.md, Storage), or use provider local-path."
                  % ", ".join(missing))


def _check_gateway(c, network, gateway, vip, pool, node_ips):
    field = "cellplatform_gateway"
    example = (" e.g. %s" % pool[0]) if pool else ""
    fix = "pick a free address inside the LoadBalancer pool%s%s." % (
        (" %s-%s" % pool) if pool else "", ("," + example) if example else "")
    gw = c.want_dict(field, c.top(field), "set %s: {address: <a free address of the LoadBalancer pool>}." % field)
    if gw is None:
        return
    for key, default in sorted(GATEWAY_DEFAULTS.items()):
        value = c.sub(gw, key)
        key_fix = "use a lowercase DNS label such as %s, or remove it for that default." % default
        if c.want_str("%s.%s" % (field, key), value, key_fix, required=False) is not None and not is_dns_label(value):
            c.add("%s.%s" % (field, key), value, "is not a valid DNS label", key_fix)
    value = c.sub(gw, "address")
    addr = c.want_ipv4(field + ".address", value, fix)
    if addr is None:
        return
    problem = "is the API VIP" if vip is not None and addr == vip else _placement_problem(
        addr, network, gateway, dict((ip, name) for name, ip in node_ips))
    if problem is None and pool and not pool[0] <= addr <= pool[1]:
        problem = "is outside the LoadBalancer pool %s-%s (MetalLB assigns only pool addresses)" % pool
    if problem:
        c.add(field + ".address", value, problem, fix)


def _check_tls(c):
    field = "cellplatform_tls"
    tls = c.want_dict(field, c.top(field), "set %s: {issuer: internal-ca, ca: {lifetime_days: 3650}} or {issuer: "
                                           "acme, acme: {server, email}}." % field)
    if tls is None:
        return
    issuer = c.want_choice(field + ".issuer", c.sub(tls, "issuer"), TLS_ISSUERS)
    if issuer == "internal-ca":
        ca = c.want_dict(field + ".ca", c.sub(tls, "ca"), "set %s.ca: {lifetime_days: 3650}." % field)
        if ca is not None:
            c.want_int(field + ".ca.lifetime_days", c.sub(ca, "lifetime_days"), CA_LIFETIME_DAYS[0], CA_LIFETIME_DAYS[1])
        return
    if issuer != "acme":
        return
    acme = c.want_dict(field + ".acme", c.sub(tls, "acme"), "set %s.acme: {server: <ACME directory URL>, email}." % field)
    if acme is not None:
        server = c.sub(acme, "server")
        srv_fix = "use the ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory."
        if c.want_str(field + ".acme.server", server, srv_fix) is not None and not _url_ok(server, ("https",)):
            c.add(field + ".acme.server", server, "is not an https:// URL with a host", srv_fix)
        email = c.sub(acme, "email")
        mail_fix = "set the e-mail address of the ACME account, e.g. platform@example.org."
        if c.want_str(field + ".acme.email", email, mail_fix) is not None and not _EMAIL_RE.match(email):
            c.add(field + ".acme.email", email, "is not an e-mail address", mail_fix)
    edns = c.top("cellplatform_external_dns")
    provider = c.sub(edns, "provider")
    if provider in EXTERNAL_DNS_PROVIDERS and provider != "rfc2136":
        c.add(field + ".issuer", issuer, "needs DNS-01 over RFC2136 with external-dns' DNS server and TSIG key, but "
              "cellplatform_external_dns.provider is %s" % provider,
              "use external-dns provider rfc2136, or issuer internal-ca.")
        return
    algorithm = c.sub(c.sub(edns, "rfc2136"), "tsig_algorithm")
    if algorithm in TSIG_ALGORITHMS and algorithm not in CERT_MANAGER_TSIG:
        c.add("cellplatform_external_dns.rfc2136.tsig_algorithm", algorithm,
              "cannot be used by cert-manager's RFC2136 solver (cellplatform_tls.issuer is acme; it knows %s)"
              % ", ".join(sorted(CERT_MANAGER_TSIG)),
              "use hmac-sha256 (a new key: tsig-keygen -a hmac-sha256 externaldns), or issuer internal-ca.")


def _check_ui_names(c):
    """Names served by the shared Gateway must be one label under the DNS domain (its wildcard)."""
    domain, argocd = c.top("cellplatform_dns_domain"), c.top("cellplatform_argocd_domain")
    if not is_dns_name(domain) or not is_dns_name(argocd):
        return
    host = argocd[:-len(domain) - 1] if argocd.endswith("." + domain) else None
    if host is None or not is_dns_label(host):
        c.add("cellplatform_argocd_domain", argocd,
              "is not one name directly under cellplatform_dns_domain %s (the shared Gateway serves *.%s with one "
              "wildcard certificate)" % (domain, domain), "use argocd.%s (or another <name>.%s)." % (domain, domain))


def _int_or_none(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.match(r"^[0-9]+$", value.strip()):
        return int(value.strip())
    return None


def storage_model(v):
    """cellplatform_cell.storage: {provider, class_name, volume: {name, type, path, ...}, longhorn}."""
    st = v.get("cellplatform_storage")
    if not isinstance(st, Mapping) or st.get("provider") not in STORAGE_PROVIDER_NAMES:
        return None
    provider = str(st["provider"])
    class_name, volume_name = STORAGE_PROVIDER_NAMES[provider]
    vol = st.get("volume") if isinstance(st.get("volume"), Mapping) else {}
    volume = {"name": volume_name, "type": str(vol.get("type") or "partition"), "path": "/var/mnt/%s" % volume_name}
    if volume["type"] == "partition":
        volume.update(disk_selector=str(vol.get("disk_selector") or ""),
                      min_size_gib=_int_or_none(vol.get("min_size_gib")),
                      max_size_gib=_int_or_none(vol.get("max_size_gib")))
    longhorn = None
    if provider == "longhorn":
        lh = st.get("longhorn") if isinstance(st.get("longhorn"), Mapping) else {}
        longhorn = {"replicas": _int_or_none(lh.get("replicas")),
                    "reserved_percent": _int_or_none(lh.get("reserved_percent"))}
    return {"provider": provider, "class_name": class_name, "volume": volume, "longhorn": longhorn}


def _pool_without(pool, address):
    """The LoadBalancer pool as 'a-b' ranges without ``address`` (MetalLB's auto-assigned part)."""
    start, end = parse_ip(pool.get("start")), parse_ip(pool.get("end"))
    if start is None or end is None or address is None or not start <= address <= end:
        return ["%s-%s" % (start, end)] if start is not None and end is not None else []
    ranges = []
    if start < address:
        ranges.append("%s-%s" % (start, address - 1))
    if address < end:
        ranges.append("%s-%s" % (address + 1, end))
    return ranges


def gateway_model(v):
    """cellplatform_cell.gateway: {name, namespace, address, https_listener, ...} of the shared Gateway."""
    gw = v.get("cellplatform_gateway")
    if not isinstance(gw, Mapping):
        return None
    address = parse_ip(gw.get("address"))
    pool = v.get("cellplatform_lb_pool") if isinstance(v.get("cellplatform_lb_pool"), Mapping) else {}
    domain = v.get("cellplatform_dns_domain")
    return {
        "name": str(gw.get("name") or GATEWAY_DEFAULTS["name"]),
        "namespace": str(gw.get("namespace") or GATEWAY_DEFAULTS["namespace"]),
        "address": str(address) if address is not None else None,
        "class_name": GATEWAY_CLASS,
        "https_listener": GATEWAY_HTTPS_LISTENER,
        "http_listener": GATEWAY_HTTP_LISTENER,
        "hostname": "*.%s" % domain if is_dns_name(domain) else None,
        # MetalLB hands these out automatically; the Gateway's address is reserved for it.
        "auto_assign_ranges": _pool_without(pool, address),
    }


def tls_model(v):
    """cellplatform_cell.tls: {issuer, cluster_issuer, acme | ca}."""
    tls = v.get("cellplatform_tls")
    if not isinstance(tls, Mapping) or tls.get("issuer") not in TLS_ISSUERS:
        return None
    issuer = str(tls["issuer"])
    out = {"issuer": issuer, "cluster_issuer": CLUSTER_ISSUERS[issuer], "acme": None, "ca": None}
    if issuer == "internal-ca":
        ca = tls.get("ca") if isinstance(tls.get("ca"), Mapping) else {}
        out["ca"] = {"lifetime_days": _int_or_none(ca.get("lifetime_days"))}
        return out
    acme = tls.get("acme") if isinstance(tls.get("acme"), Mapping) else {}
    edns = v.get("cellplatform_external_dns") if isinstance(v.get("cellplatform_external_dns"), Mapping) else {}
    rfc = edns.get("rfc2136") if isinstance(edns.get("rfc2136"), Mapping) else {}
    host = str(rfc.get("host") or "")
    ip = parse_ip(host)
    port = _int_or_none(rfc.get("port")) or 53
    out["acme"] = {
        "server": str(acme.get("server") or ""),
        "email": str(acme.get("email") or ""),
        # the same DNS server, zone and TSIG key as external-dns (cert-manager's host:port form)
        "nameserver": ("[%s]:%d" if ip is not None and ip.version == 6 else "%s:%d") % (host, port),
        # the server as an address block for network rules (None when it is a host name)
        "nameserver_cidr": "%s/%d" % (ip, ip.max_prefixlen) if ip is not None else None,
        "zone": str(rfc.get("zone") or ""),
        "tsig_keyname": str(rfc.get("tsig_keyname") or ""),
        "tsig_algorithm": CERT_MANAGER_TSIG.get(rfc.get("tsig_algorithm")),
    }
    return out


# =============================================================================================
# L3 delivery (Gitea, Harbor, the image-verification policy): its checks (called from validate()
# for layer l3) and its model sections (gitea, harbor, image_policy).

IMAGE_POLICY_MODES = ("audit", "enforce")
# The host Gitea's UI is published as (https://<host>.<dns domain>); a hosted GitOps repository
# must live there. The l3_delivery role publishes the UI under the same host.
GITEA_HOST = "gitea"
GITEA_DEFAULTS = {"hosted_gitops": False, "storage_gib": 20}
HARBOR_DEFAULTS = {"ci_project": "ci"}
HARBOR_STORAGE_DEFAULTS = {"registry_gib": 50, "trivy_gib": 5, "jobservice_gib": 1, "redis_gib": 1}
DATABASE_DEFAULTS = {"instances": 2, "storage_gib": 10}
DATABASE_MAX_INSTANCES = 9
# Harbor registry types that can back a proxy-cache project (Harbor 2.15 src/pkg/reg/model).
HARBOR_PROXY_TYPES = ("docker-hub", "docker-registry", "github-ghcr", "quay", "google-gcr", "harbor")
# Gitea's user/organisation names (models/user IsUsableUsername): alphanumerics with single '-', '_' or
# '.' between them, at most 40 characters, not one of the names Gitea reserves for its own routes.
_GITEA_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|[-._](?=[A-Za-z0-9])){0,39}$")
GITEA_RESERVED_NAMES = (".", "..", ".well-known", "admin", "api", "assets", "attachments", "avatar", "avatars",
                        "captcha", "commits", "debug", "error", "explore", "favicon.ico", "ghost", "gitea-actions",
                        "issues", "login", "manifest.json", "metrics", "milestones", "new", "notifications", "org",
                        "pulls", "raw", "repo", "repo-avatars", "robots.txt", "search", "serviceworker.js",
                        "ssh_info", "swagger.v1.json", "user", "v2")
# Gitea repository names (models/repo IsUsableRepoName): letters, digits, '-', '_', '.'; not '.', '..', '-'
# and not ending in .git or .wiki.
_GITEA_REPO_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
# Harbor project names (src/common/utils ValidateProjectName): lowercase, digits and ._- inside, 1-255.
_HARBOR_PROJECT_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def gitea_name_problem(name):
    """Why ``name`` cannot be a Gitea user or organisation name, or None."""
    if not isinstance(name, str) or not _GITEA_NAME_RE.match(name):
        return ("is not a valid Gitea name (letters and digits, single '-', '_' or '.' between them, at most "
                "40 characters)")
    if name.lower() in GITEA_RESERVED_NAMES:
        return "is a name Gitea reserves for its own pages"
    return None


def hosted_gitops_repo(url, dns_domain):
    """(org, repo) of a GitOps repository URL in this cell's Gitea (https://gitea.<domain>/<org>/<repo>.git),
    or None when the URL points elsewhere."""
    if not isinstance(url, str) or not is_dns_name(dns_domain):
        return None
    match = re.match(r"^https://%s\.%s/([^/]+)/([^/]+?)(?:\.git)?/?$" % (GITEA_HOST, re.escape(dns_domain)), url)
    return (match.group(1), match.group(2)) if match else None


# Unknown keys inside these settings are reported by the preflight's schema check
# (plugin_utils/inventory_check.py, generated from cell_schema.py), not here.
def _check_database(c, field, value):
    db = c.want_dict(field, value, "set %s: {instances: 2, storage_gib: 10}, or remove it for that default."
                     % field, required=False)
    if db is None:
        return
    c.want_int(field + ".instances", c.sub(db, "instances"), 1, DATABASE_MAX_INSTANCES, required=False)
    c.want_int(field + ".storage_gib", c.sub(db, "storage_gib"), 1, SIZE_GIB_MAX, required=False)


def _check_l3(c):
    _check_gitea(c)
    _check_harbor(c)
    c.want_choice("cellplatform_image_policy", c.top("cellplatform_image_policy"), IMAGE_POLICY_MODES)


def _check_gitea(c):
    field = "cellplatform_gitea"
    gitea = c.want_dict(field, c.top(field), "set %s: {admin_user: gitea-admin, admin_email: <address>} (and "
                                             "hosted_gitops: true to host the GitOps repository there)." % field)
    if gitea is None:
        return
    user = c.sub(gitea, "admin_user")
    user_fix = "use a name such as gitea-admin (letters, digits, single '-', '_' or '.' between them)."
    if c.want_str(field + ".admin_user", user, user_fix) is not None and gitea_name_problem(user):
        c.add(field + ".admin_user", user, gitea_name_problem(user), user_fix)
    email = c.sub(gitea, "admin_email")
    mail_fix = "set the admin's e-mail address, e.g. platform@example.org (Gitea requires one)."
    if c.want_str(field + ".admin_email", email, mail_fix) is not None and not _EMAIL_RE.match(email):
        c.add(field + ".admin_email", email, "is not an e-mail address", mail_fix)
    c.want_int(field + ".storage_gib", c.sub(gitea, "storage_gib"), 1, SIZE_GIB_MAX, required=False)
    _check_database(c, field + ".database", c.sub(gitea, "database"))
    hosted = c.want_bool(field + ".hosted_gitops", c.sub(gitea, "hosted_gitops"), required=False)
    if not hosted:
        return
    domain = c.top("cellplatform_dns_domain")
    url = c.sub(c.top("cellplatform_gitops"), "repo_url")
    if not is_dns_name(domain) or not isinstance(url, str) or url.startswith("http://") or not _git_url_ok(url):
        return   # no URL or domain to compare yet: reported by the L0 checks
    wanted = "https://%s.%s/<org>/<repo>.git" % (GITEA_HOST, domain)
    where = hosted_gitops_repo(url, domain)
    if where is None:
        c.add("cellplatform_gitops.repo_url", url, "is not a repository of this cell's Gitea (%s), but "
              "cellplatform_gitea.hosted_gitops is true" % wanted,
              "point repo_url at %s, or set hosted_gitops: false to keep an external repository." % wanted)
        return
    org, repo = where
    if gitea_name_problem(org):
        c.add("cellplatform_gitops.repo_url", url, "names the organisation %s, which %s" % (org, gitea_name_problem(org)),
              "use an organisation name such as platform in %s." % wanted)
    if not _GITEA_REPO_RE.match(repo) or repo in (".", "..", "-") or repo.endswith((".git", ".wiki")):
        c.add("cellplatform_gitops.repo_url", url, "names the repository %s, which Gitea does not accept" % repo,
              "use a repository name of letters, digits, '-', '_' and '.', e.g. %s." % _label_like(repo, "cell"))


def _check_harbor(c):
    field = "cellplatform_harbor"
    harbor = c.want_dict(field, c.top(field), "set %s: {ci_project: ci, proxy_caches: [{name: dockerhub, type: "
                                              "docker-hub, url: https://hub.docker.com}]}." % field)
    if harbor is None:
        return
    project_fix = "use a lowercase name of letters and digits with single '.', '_' or '-' between them, e.g. ci."
    ci_project = c.sub(harbor, "ci_project")
    if c.want_str(field + ".ci_project", ci_project, project_fix, required=False) is not None \
            and not _HARBOR_PROJECT_RE.match(ci_project):
        c.add(field + ".ci_project", ci_project, "is not a valid Harbor project name", project_fix)
    storage = c.want_dict(field + ".storage", c.sub(harbor, "storage"), "set %s.storage: {registry_gib: 50, "
                          "trivy_gib: 5}, or remove it for the defaults." % field, required=False)
    if storage is not None:
        for key in sorted(HARBOR_STORAGE_DEFAULTS):
            c.want_int("%s.storage.%s" % (field, key), c.sub(storage, key), 1, SIZE_GIB_MAX, required=False)
    _check_database(c, field + ".database", c.sub(harbor, "database"))
    caches = c.want_list(field + ".proxy_caches", c.sub(harbor, "proxy_caches"),
                         "list the upstream registries, e.g. [{name: dockerhub, type: docker-hub, url: "
                         "https://hub.docker.com}], or [] for none.", required=False)
    seen = {ci_project if isinstance(ci_project, str) else HARBOR_DEFAULTS["ci_project"]: "ci_project"}
    for idx, cache in enumerate(caches or []):
        where = "%s.proxy_caches[%d]" % (field, idx)
        cache = c.want_dict(where, cache, "write each proxy cache as {name, type, url}.")
        if cache is None:
            continue
        name = c.sub(cache, "name")
        if c.want_str(where + ".name", name, project_fix) is not None:
            if not _HARBOR_PROJECT_RE.match(name):
                c.add(where + ".name", name, "is not a valid Harbor project name", project_fix)
            elif name in seen:
                c.add(where + ".name", name, "is already used by %s" % seen[name],
                      "give every proxy cache its own project name, different from ci_project.")
            else:
                seen[name] = "proxy_caches[%d]" % idx
        c.want_choice(where + ".type", c.sub(cache, "type"), HARBOR_PROXY_TYPES)
        url = c.sub(cache, "url")
        url_fix = "use the registry's https:// URL, e.g. https://ghcr.io."
        if c.want_str(where + ".url", url, url_fix) is not None and not _url_ok(url, ("https",)):
            c.add(where + ".url", url, "is not an https:// URL with a host", url_fix)


def _sized(value, defaults):
    value = value if isinstance(value, Mapping) else {}
    return dict((key, _int_or_none(value.get(key)) or default) for key, default in sorted(defaults.items()))


def gitea_model(v):
    """cellplatform_cell.gitea: {hosted_gitops, gitops_repo: {org, name} | None, admin_user, admin_email,
    storage_gib, database: {instances, storage_gib}}."""
    gitea = v.get("cellplatform_gitea")
    if not isinstance(gitea, Mapping):
        return None
    hosted = _as_bool(gitea.get("hosted_gitops"), GITEA_DEFAULTS["hosted_gitops"])
    where = hosted_gitops_repo((v.get("cellplatform_gitops") or {}).get("repo_url"), v.get("cellplatform_dns_domain"))
    return {
        "host": GITEA_HOST,
        "hosted_gitops": hosted,
        "gitops_repo": {"org": where[0], "name": where[1]} if hosted and where else None,
        "admin_user": str(gitea.get("admin_user") or ""),
        "admin_email": str(gitea.get("admin_email") or ""),
        "storage_gib": _int_or_none(gitea.get("storage_gib")) or GITEA_DEFAULTS["storage_gib"],
        "database": _sized(gitea.get("database"), DATABASE_DEFAULTS),
    }


def harbor_model(v):
    """cellplatform_cell.harbor: {ci_project, proxy_caches: [{name, type, url}], storage: {...}, database: {...}}."""
    harbor = v.get("cellplatform_harbor")
    if not isinstance(harbor, Mapping):
        return None
    caches = [{"name": str(item.get("name")), "type": str(item.get("type")), "url": str(item.get("url")).rstrip("/")}
              for item in harbor.get("proxy_caches") or [] if isinstance(item, Mapping)]
    return {
        "ci_project": str(harbor.get("ci_project") or HARBOR_DEFAULTS["ci_project"]),
        "proxy_caches": caches,
        "storage": _sized(harbor.get("storage"), HARBOR_STORAGE_DEFAULTS),
        "database": _sized(harbor.get("database"), DATABASE_DEFAULTS),
    }


# =============================================================================================
# Security (L6): the RBAC baseline's groups and the teams with their namespaces.

SECURITY_EXAMPLE = ("{admin_groups: [platform-admins], operator_groups: [platform-operators], teams: [{name: shop, "
                    "groups: [shop-developers], namespaces: [shop]}]}")
# Namespaces a team can never own: Kubernetes' own and the platform's that the cell model names.
_RESERVED_NAMESPACE_PREFIXES = ("kube-",)


def _groups(c, field, value, required):
    fix = "list group names as the API server's authenticator reports them, e.g. [platform-admins]."
    groups = c.want_list(field, value, fix, required=required, non_empty=required)
    if groups is None:
        return []
    out = []
    for idx, group in enumerate(groups):
        if c.want_str("%s[%d]" % (field, idx), group, fix) is None:
            continue
        if group in out:
            c.add("%s[%d]" % (field, idx), group, "is listed twice", "list each group once.")
        out.append(group)
    return out


def _platform_namespaces(c):
    gitops = c.top("cellplatform_gitops")
    gateway = c.top("cellplatform_gateway")
    names = {"default", ARGOCD_NAMESPACE, GATEWAY_DEFAULTS["namespace"]}
    for value in (c.sub(gitops, "namespace"), c.sub(gateway, "namespace")):
        if isinstance(value, str):
            names.add(value)
    if isinstance(c.top("cellplatform_observability"), Mapping):
        names.update((OBSERVABILITY_NAMESPACE, MONITORING_NAMESPACE))
    return names


def _check_security(c):
    field = "cellplatform_security"
    sec = c.want_dict(field, c.top(field), "set %s: %s." % (field, SECURITY_EXAMPLE))
    if sec is None:
        return
    # Unknown keys (here and in a team) are reported by the schema check (inventory_check).
    _groups(c, field + ".admin_groups", c.sub(sec, "admin_groups"), required=True)
    _groups(c, field + ".operator_groups", c.sub(sec, "operator_groups"), required=False)
    teams = c.want_list(field + ".teams", c.sub(sec, "teams"), "list teams as %s." % SECURITY_EXAMPLE, required=False)
    reserved = _platform_namespaces(c)
    names, owners = [], {}
    for idx, team in enumerate(teams or []):
        where = "%s.teams[%d]" % (field, idx)
        team = c.want_dict(where, team, "write a team as {name, groups, namespaces}.")
        if team is None:
            continue
        name = _entry_name(c, where, team, "team", "shop")
        if name in names:
            c.add(where + ".name", name, "names a second team", "give every team its own name.")
        elif name is not None:
            names.append(name)
        _groups(c, where + ".groups", c.sub(team, "groups"), required=True)
        ns_fix = "list the team's namespaces as DNS labels, e.g. [%s]." % (name or "shop")
        namespaces = c.want_list(where + ".namespaces", c.sub(team, "namespaces"), ns_fix, non_empty=True)
        for jdx, ns in enumerate(namespaces or []):
            sub = "%s.namespaces[%d]" % (where, jdx)
            if c.want_str(sub, ns, ns_fix) is None:
                continue
            if not is_dns_label(ns):
                c.add(sub, ns, "is not a DNS label (lowercase a-z, 0-9, '-')", ns_fix)
            elif ns in reserved or ns.startswith(_RESERVED_NAMESPACE_PREFIXES):
                c.add(sub, ns, "is a namespace of the platform or of Kubernetes",
                      "give the team a namespace of its own, e.g. %s-apps." % (name or "shop"))
            elif ns in owners:
                c.add(sub, ns, "is already a namespace of team %s" % owners[ns],
                      "give each namespace to exactly one team.")
            else:
                owners[ns] = name


def security_model(v):
    """cellplatform_cell.security: {admin_groups, operator_groups, teams: [{name, groups, namespaces}]} or None."""
    sec = v.get("cellplatform_security")
    if not isinstance(sec, Mapping):
        return None
    return {
        "admin_groups": [str(g) for g in sec.get("admin_groups") or []],
        "operator_groups": [str(g) for g in sec.get("operator_groups") or []],
        "teams": [{"name": str(t["name"]), "groups": [str(g) for g in t.get("groups") or []],
                   "namespaces": [str(n) for n in t.get("namespaces") or []]}
                  for t in sec.get("teams") or [] if isinstance(t, Mapping)],
    }


# =============================================================================================
# Observability (L4): the Talos log receiver's address (L0 renders the Talos logging patch from
# it), retention and volume sizes, whether those volumes fit the cell's storage, and the
# LoadBalancer addresses reserved for fixed Services (the Gateway and the log receiver).

# Where L4 runs and what other layers point at (Linkerd's trace exporter, the monitoring peer).
OBSERVABILITY_NAMESPACE = "observability"
MONITORING_NAMESPACE = "monitoring"
OTEL_COLLECTOR_SERVICE = "opentelemetry-collector"
LOG_RECEIVER_PORT = 5170
# component -> (retention in days allowed (low, high) or None, what the volume holds)
OBSERVABILITY_VOLUMES = (
    ("prometheus", (1, 3650), "Prometheus TSDB"),
    ("alertmanager", None, "Alertmanager silences and notification log"),
    ("loki", (1, 3650), "Loki chunks and index"),
    ("tempo", (1, 365), "Tempo trace blocks"),
    ("grafana", None, "Grafana's SQLite database"),
)
OBSERVABILITY_EXAMPLE = ("{log_receiver: {address: <a free address of the LoadBalancer pool>}, prometheus: "
                         "{retention_days: 15, volume_gib: 50}, alertmanager: {volume_gib: 2}, loki: {retention_days: "
                         "14, volume_gib: 50}, tempo: {retention_days: 7, volume_gib: 20}, grafana: {volume_gib: 5}}")


def _check_observability(c, hosts, network, gateway, vip, pool, node_ips, l4):
    """L0: the log receiver's address (when set); L4: the whole setting and whether it fits the storage."""
    field = "cellplatform_observability"
    obs = c.want_dict(field, c.top(field), "set %s: %s." % (field, OBSERVABILITY_EXAMPLE), required=l4)
    if obs is None:
        return
    _check_log_receiver(c, obs, network, gateway, vip, pool, node_ips)
    if not l4:
        return
    sizes = {}
    for name, retention, _what in OBSERVABILITY_VOLUMES:
        sub = "%s.%s" % (field, name)
        fix = "set %s: {%svolume_gib: <GiB>}." % (sub, "retention_days: <days>, " if retention else "")
        item = c.want_dict(sub, c.sub(obs, name), fix)
        if item is None:
            continue
        if retention:
            c.want_int(sub + ".retention_days", c.sub(item, "retention_days"), retention[0], retention[1])
        size = c.want_int(sub + ".volume_gib", c.sub(item, "volume_gib"), 1, SIZE_GIB_MAX)
        if size is not None:
            sizes[name] = size
    if len(sizes) == len(OBSERVABILITY_VOLUMES):
        _check_observability_fits_storage(c, hosts, sizes)


def _check_log_receiver(c, obs, network, gateway, vip, pool, node_ips):
    field = "cellplatform_observability.log_receiver"
    gateway_address = parse_ip(c.sub(c.top("cellplatform_gateway"), "address"))
    suggestion = None
    if pool:
        suggestion = pool[1] if pool[1] != gateway_address or pool[0] == pool[1] else pool[1] - 1
    example = (" e.g. %s" % suggestion) if suggestion else ""
    fix = "pick a free address inside the LoadBalancer pool%s other than the Gateway's%s." % (
        (" %s-%s" % pool) if pool else "", ("," + example) if example else "")
    rec = c.want_dict(field, c.sub(obs, "log_receiver"), "set %s: {address: <a free address of the LoadBalancer "
                                                         "pool>, port: %d}." % (field, LOG_RECEIVER_PORT))
    if rec is None:
        return
    c.want_int(field + ".port", c.sub(rec, "port"), 1, 65535, required=False)
    value = c.sub(rec, "address")
    addr = c.want_ipv4(field + ".address", value, fix)
    if addr is None:
        return
    if vip is not None and addr == vip:
        problem = "is the API VIP"
    elif gateway_address is not None and addr == gateway_address:
        problem = "is the shared Gateway's address (cellplatform_gateway.address)"
    else:
        problem = _placement_problem(addr, network, gateway, dict((ip, name) for name, ip in node_ips))
    if problem is None and pool and not pool[0] <= addr <= pool[1]:
        problem = "is outside the LoadBalancer pool %s-%s (MetalLB assigns only pool addresses)" % pool
    if problem:
        c.add(field + ".address", value, problem, fix)


def storage_capacity(v, hosts=None):
    """What the cell's storage offers the observability volumes, or None when it cannot be known.

    {provider, replicas, per_node_gib, nodes, total_gib, basis}: ``per_node_gib`` is what one static
    worker's user volume holds for volumes (Longhorn: minus its reserved share), ``total_gib`` what all
    of them hold together. A partition counts with its guaranteed size: max_size_gib when set, else
    the data disk Terraform gives each worker (proxmox), else min_size_gib. A directory on EPHEMERAL
    has no size of its own: None.
    """
    st = v.get("cellplatform_storage")
    if not isinstance(st, Mapping) or st.get("provider") not in STORAGE_PROVIDER_NAMES:
        return None
    vol = st.get("volume") if isinstance(st.get("volume"), Mapping) else {}
    if vol.get("type") != "partition":
        return None
    workers = len(_workers(hosts)) if hosts is not None else None
    low, high = _int_or_none(vol.get("min_size_gib")), _int_or_none(vol.get("max_size_gib"))
    disk = None
    if v.get("cellplatform_provisioner") == "proxmox":
        sizes = v.get("cellplatform_node_sizes") if isinstance(v.get("cellplatform_node_sizes"), Mapping) else {}
        worker = sizes.get("worker") if isinstance(sizes.get("worker"), Mapping) else {}
        disk = _int_or_none(worker.get("data_disk_gib"))
    if high:
        size, basis = high, "its max_size_gib %d GiB" % high
    elif disk:
        size, basis = disk, "the %d GiB data disk of each worker VM" % disk
    elif low:
        size, basis = low, "its min_size_gib %d GiB" % low
    else:
        return None
    replicas, reserved = 1, 0
    if st["provider"] == "longhorn":
        lh = st.get("longhorn") if isinstance(st.get("longhorn"), Mapping) else {}
        replicas = _int_or_none(lh.get("replicas")) or 1
        reserved = _int_or_none(lh.get("reserved_percent")) or 0
    per_node = size * (100 - reserved) // 100
    return {"provider": st["provider"], "replicas": replicas, "per_node_gib": per_node, "nodes": workers,
            "total_gib": per_node * workers if workers is not None else None,
            "basis": "a partition of %s%s" % (basis, ", %d%% of it reserved by Longhorn" % reserved if reserved else "")}


def _check_observability_fits_storage(c, hosts, sizes):
    # A storage setting that is itself wrong is reported as such; its capacity would be a guess.
    if any(p["field"].startswith(("cellplatform_storage", "cellplatform_node_sizes")) for p in c.problems):
        return
    cap = storage_capacity(c.vars, hosts)
    if cap is None or not cap["nodes"]:
        return   # a directory volume has no size of its own; no workers is already a storage problem
    field = "cellplatform_observability"
    for name, _retention, _what in OBSERVABILITY_VOLUMES:
        if sizes[name] > cap["per_node_gib"]:
            c.add("%s.%s.volume_gib" % (field, name), sizes[name],
                  "does not fit on one static worker: a volume lives whole on a node (each of its %d replica(s) on "
                  "another), and a worker's user volume holds %d GiB for volumes (%s)"
                  % (cap["replicas"], cap["per_node_gib"], cap["basis"]),
                  "lower volume_gib to at most %d, or give the storage user volume more space "
                  "(cellplatform_storage.volume, cellplatform_node_sizes.worker.data_disk_gib)." % cap["per_node_gib"])
    need = sum(sizes.values()) * cap["replicas"]
    if need > cap["total_gib"]:
        c.add(field, ", ".join("%s %d GiB" % (name, sizes[name]) for name, _r, _w in OBSERVABILITY_VOLUMES),
              "needs %d GiB of storage (%d GiB x %d replica(s)), more than the %d GiB the %d static worker(s) offer "
              "(%d GiB each: %s)" % (need, sum(sizes.values()), cap["replicas"], cap["total_gib"], cap["nodes"],
                                     cap["per_node_gib"], cap["basis"]),
              "lower the volume sizes (or the Longhorn replicas), give the storage user volume more space, or add "
              "static workers.")


def observability_model(v):
    """cellplatform_cell.observability: namespaces, the log receiver, the in-cluster OTLP endpoint, sizes."""
    obs = v.get("cellplatform_observability")
    if not isinstance(obs, Mapping):
        return None
    domain = str(v.get("cellplatform_cluster_dns_domain") or "cluster.local")
    rec = obs.get("log_receiver") if isinstance(obs.get("log_receiver"), Mapping) else {}
    address = parse_ip(rec.get("address"))
    port = _int_or_none(rec.get("port")) or LOG_RECEIVER_PORT
    collector = "%s.%s.svc.%s" % (OTEL_COLLECTOR_SERVICE, OBSERVABILITY_NAMESPACE, domain)
    out = {
        "namespace": OBSERVABILITY_NAMESPACE,
        "monitoring_namespace": MONITORING_NAMESPACE,
        "log_receiver": {"address": str(address), "port": port, "endpoint": "tcp://%s:%d/" % (address, port)}
        if address is not None else None,
        "otlp": {"service": OTEL_COLLECTOR_SERVICE, "grpc": "%s:4317" % collector, "http": "http://%s:4318" % collector},
    }
    for name, retention, _what in OBSERVABILITY_VOLUMES:
        item = obs.get(name) if isinstance(obs.get(name), Mapping) else {}
        out[name] = {"volume_gib": _int_or_none(item.get("volume_gib"))}
        if retention:
            out[name]["retention_days"] = _int_or_none(item.get("retention_days"))
    return out


def lb_reserved_model(v):
    """cellplatform_cell.lb_reserved: LoadBalancer addresses fixed Services ask MetalLB for, and the rest.

    {addresses: [{address, owner}], auto_assign_ranges: ['a-b', ...]}: MetalLB hands out only the
    auto-assign ranges by itself; each reserved address sits in a pool of its own (autoAssign off) that
    only its owner's Service names.
    """
    pool = v.get("cellplatform_lb_pool") if isinstance(v.get("cellplatform_lb_pool"), Mapping) else {}
    start, end = parse_ip(pool.get("start")), parse_ip(pool.get("end"))
    reserved = []
    gw = v.get("cellplatform_gateway") if isinstance(v.get("cellplatform_gateway"), Mapping) else {}
    obs = v.get("cellplatform_observability") if isinstance(v.get("cellplatform_observability"), Mapping) else {}
    rec = obs.get("log_receiver") if isinstance(obs.get("log_receiver"), Mapping) else {}
    for owner, value in (("gateway", gw.get("address")), ("log-receiver", rec.get("address"))):
        addr = parse_ip(value)
        if addr is not None and start is not None and end is not None and start <= addr <= end \
                and addr not in [r[0] for r in reserved]:
            reserved.append((addr, owner))
    ranges = []
    if start is not None and end is not None and start <= end:
        low = start
        for addr in sorted(r[0] for r in reserved):
            if low < addr:
                ranges.append("%s-%s" % (low, addr - 1))
            low = addr + 1
        if low <= end:
            ranges.append("%s-%s" % (low, end))
    return {"addresses": [{"address": str(a), "owner": o} for a, o in reserved], "auto_assign_ranges": ranges}


# =============================================================================================
# L7 developer portal (Backstage): its checks (called from validate() for layer l7) and its model
# section (backstage).

# The image the Backstage chart runs by default: a demo app without the platform's plugins.
BACKSTAGE_DEMO_IMAGE = "ghcr.io/backstage/backstage"
# OCI distribution spec: repository path components and tags; a registry is host[:port].
_IMAGE_REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_IMAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_IMAGE_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def _registry_ok(value):
    host, _sep, port = value.partition(":")
    return is_host(host.lower()) and (not _sep or (port.isdigit() and 0 < int(port) < 65536))


def _check_l7(c, l3_checked=False):
    field = "cellplatform_backstage"
    example = ("set %s: {image: {registry: harbor.<dns domain>, repository: ci/backstage, tag: 1.0.0}} with the "
               "Backstage app image you built (docs/l7-developer-portal.md, \"Building the app image\")." % field)
    backstage = c.want_dict(field, c.top(field), example)
    if backstage is not None:
        _check_backstage_image(c, field + ".image", c.sub(backstage, "image"), example)
        _check_database(c, field + ".database", c.sub(backstage, "database"))
    # Backstage signs in through the cell's Gitea and reads its catalog from the GitOps repository there.
    gitea = c.top("cellplatform_gitea")
    if not isinstance(gitea, Mapping):
        if not l3_checked:
            c.add("cellplatform_gitea", gitea, "is required by L7 (Backstage signs in through the cell's Gitea)",
                  "set cellplatform_gitea (docs/l3-delivery.md) and run L3 before L7.")
        return
    hosted = c.sub(gitea, "hosted_gitops")
    if hosted is not MISSING and not isinstance(hosted, bool):
        return   # reported by the L3 checks
    if not _as_bool(hosted, GITEA_DEFAULTS["hosted_gitops"]):
        c.add("cellplatform_gitea.hosted_gitops", hosted if hosted is not MISSING else False,
              "is false, but Backstage reads the catalog L7 renders from the GitOps repository in the cell's Gitea",
              "host the GitOps repository in Gitea: hosted_gitops: true with cellplatform_gitops.repo_url "
              "https://%s.<dns domain>/<org>/<repo>.git." % GITEA_HOST)


def _check_backstage_image(c, field, value, example):
    image = c.want_dict(field, value, example)
    if image is None:
        return
    registry = c.sub(image, "registry")
    reg_fix = "set the registry host of your Backstage image, e.g. harbor.cell.lan (host[:port], no scheme)."
    if c.want_str(field + ".registry", registry, reg_fix) is not None and not _registry_ok(registry):
        c.add(field + ".registry", registry, "is not a registry host[:port]", reg_fix)
        registry = None
    repository = c.sub(image, "repository")
    repo_fix = "set the repository path of your Backstage image, e.g. ci/backstage (lowercase, '/' between parts)."
    if c.want_str(field + ".repository", repository, repo_fix) is not None:
        if not _IMAGE_REPOSITORY_RE.match(repository):
            c.add(field + ".repository", repository, "is not an image repository path", repo_fix)
        elif isinstance(registry, str) and "%s/%s" % (registry.lower(), repository) == BACKSTAGE_DEMO_IMAGE:
            c.add(field + ".repository", repository, "with registry %s is the Backstage chart's demo image (it has "
                  "neither the OIDC sign-in nor the Gitea scaffolder modules the platform configures)" % registry,
                  "build your own Backstage app image (docs/l7-developer-portal.md, \"Building the app image\") and "
                  "name it here.")
    tag = c.sub(image, "tag")
    tag_fix = "set an exact tag of your image, e.g. 1.0.0 (a YAML string; never latest)."
    if c.want_str(field + ".tag", tag, tag_fix) is not None:
        if not _IMAGE_TAG_RE.match(tag):
            c.add(field + ".tag", tag, "is not an image tag", tag_fix)
        elif tag == "latest":
            c.add(field + ".tag", tag, "is not pinned (latest moves)", tag_fix)
    digest = c.sub(image, "digest")
    digest_fix = "write the digest as sha256:<64 lowercase hex digits>, or leave it out."
    if c.want_str(field + ".digest", digest, digest_fix, required=False) is not None \
            and not _IMAGE_DIGEST_RE.match(digest):
        c.add(field + ".digest", digest, "is not a sha256 digest", digest_fix)


def backstage_model(v):
    """cellplatform_cell.backstage: {image: {registry, repository, tag, digest, reference}, database: {instances,
    storage_gib}}, or None when not set."""
    backstage = v.get("cellplatform_backstage")
    if not isinstance(backstage, Mapping):
        return None
    image = backstage.get("image") if isinstance(backstage.get("image"), Mapping) else {}
    registry, repository = str(image.get("registry") or ""), str(image.get("repository") or "")
    tag, digest = str(image.get("tag") or ""), str(image.get("digest") or "")
    return {
        "image": {"registry": registry, "repository": repository, "tag": tag, "digest": digest,
                  "reference": "%s/%s:%s%s" % (registry, repository, tag, "@" + digest if digest else "")},
        "database": _sized(backstage.get("database"), DATABASE_DEFAULTS),
    }


# Resilience (L5): the object store backups go to (an external S3 endpoint or SeaweedFS in the
# cell), the Velero schedule and retention, the etcd snapshot schedule. L0 reads ``enabled``:
# the Talos API access the etcd snapshot CronJob needs is configured only when L5 is on.

# Namespaces of L5 (the etcd snapshot namespace is the only one allowed to use the Talos API).
RESILIENCE_NAMESPACES = {"velero": "velero", "etcd_backup": "etcd-backup", "object_store": "object-store",
                         "chaos": "chaos-mesh"}
# The Talos API role the snapshot CronJob's Talos ServiceAccount gets (brief 15.5).
ETCD_BACKUP_TALOS_ROLE = "os:etcd:backup"
OBJECT_STORE_PROVIDERS = ("seaweedfs", "external")
# SeaweedFS (all-in-one: master, volume, filer and S3 in one pod on a PVC of the cell's storage).
SEAWEEDFS_RELEASE = "seaweedfs"
SEAWEEDFS_S3_PORT = 8333
SEAWEEDFS_REGION = "us-east-1"   # SeaweedFS ignores the region; the AWS SDKs need one
# Keys of the platform secrets (platform.sops.yaml) holding the object store's credentials.
OBJECT_STORE_SECRET_KEYS = ("object_store_access_key_id", "object_store_secret_access_key")
# ... and of the read-only identity SeaweedFS serves besides the admin one (generated otherwise).
OBJECT_STORE_READ_SECRET_KEYS = ("object_store_read_access_key_id", "object_store_read_secret_access_key")
RETENTION_DAYS_RANGE = (1, 3650)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CRON_FIELD_RE = re.compile(r"^[0-9A-Za-z*/,-]+$")
RESILIENCE_EXAMPLE = ("{enabled: true, object_store: {provider: seaweedfs, bucket: cell-backups, seaweedfs: "
                      "{volume_gib: 100}}, backups: {schedule: '0 2 * * *', retention_days: 14}, etcd_snapshots: "
                      "{schedule: '0 */6 * * *'}}")


def is_cron(value):
    """A five-field cron expression (minute hour day-of-month month day-of-week)."""
    if not isinstance(value, str):
        return False
    fields = value.split()
    return len(fields) == 5 and all(_CRON_FIELD_RE.match(f) for f in fields)


def _check_resilience(c, l5):
    """L0: whether L5 is enabled (the Talos API access patch); L5: the whole setting."""
    field = "cellplatform_resilience"
    res = c.want_dict(field, c.top(field), "set %s: %s." % (field, RESILIENCE_EXAMPLE), required=l5)
    if res is None:
        return
    # false is a valid choice: L5 then renders and applies nothing, and L0 grants no Talos API access.
    enabled = c.want_bool(field + ".enabled", c.sub(res, "enabled"),
                          "set true to back up the cell (Velero, etcd snapshots) and install Chaos Mesh, false to "
                          "leave L5 out.")
    if not enabled or not l5:
        return
    _check_object_store(c, field + ".object_store", c.sub(res, "object_store"))
    sub = field + ".backups"
    backups = c.want_dict(sub, c.sub(res, "backups"), "set %s: {schedule: '0 2 * * *', retention_days: 14}." % sub)
    if backups is not None:
        _want_cron(c, sub + ".schedule", c.sub(backups, "schedule"), "0 2 * * *")
        c.want_int(sub + ".retention_days", c.sub(backups, "retention_days"), *RETENTION_DAYS_RANGE)
    sub = field + ".etcd_snapshots"
    etcd = c.want_dict(sub, c.sub(res, "etcd_snapshots"), "set %s: {schedule: '0 */6 * * *'}." % sub)
    if etcd is not None:
        _want_cron(c, sub + ".schedule", c.sub(etcd, "schedule"), "0 */6 * * *")


def _want_cron(c, field, value, example):
    fix = "set a five-field cron expression (minute hour day-of-month month day-of-week), e.g. '%s'." % example
    if c.want_str(field, value, fix) is not None and not is_cron(value):
        c.add(field, value, "is not a five-field cron expression", fix)


def _check_object_store(c, field, value):
    store = c.want_dict(field, value, "set %s: {provider: seaweedfs|external, bucket, seaweedfs: {volume_gib} | "
                                      "external: {endpoint, region, path_style}}." % field)
    if store is None:
        return
    provider = c.want_choice(field + ".provider", c.sub(store, "provider"), OBJECT_STORE_PROVIDERS)
    bucket = c.sub(store, "bucket")
    bucket_fix = "use 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit, e.g. " \
                 "cell-backups."
    if c.want_str(field + ".bucket", bucket, bucket_fix) is not None and (
            not _BUCKET_RE.match(bucket) or ".." in bucket or parse_ip(bucket) is not None):
        c.add(field + ".bucket", bucket, "is not a valid S3 bucket name", bucket_fix)
    other = {"seaweedfs": "external", "external": "seaweedfs"}.get(provider)
    if other and c.sub(store, other) not in (MISSING, None):
        c.add(field + "." + other, _plain(c.sub(store, other)), "is set, but provider is %s" % provider,
              "remove %s.%s, or set provider: %s." % (field, other, other))
    if provider == "seaweedfs":
        sub = field + ".seaweedfs"
        sw = c.want_dict(sub, c.sub(store, "seaweedfs"), "set %s: {volume_gib: <GiB of its volume>}." % sub)
        if sw is not None:
            c.want_int(sub + ".volume_gib", c.sub(sw, "volume_gib"), 1, SIZE_GIB_MAX)
    elif provider == "external":
        sub = field + ".external"
        ext = c.want_dict(sub, c.sub(store, "external"), "set %s: {endpoint: https://s3.example.org, region: "
                                                         "us-east-1, path_style: true}." % sub)
        if ext is None:
            return
        endpoint = c.sub(ext, "endpoint")
        ep_fix = "set the S3 API URL, e.g. https://s3.example.org or https://%s:9000." % _example_host(None)
        if c.want_str(sub + ".endpoint", endpoint, ep_fix) is not None:
            if endpoint.startswith("http://"):
                c.add(sub + ".endpoint", endpoint, "uses plain http",
                      "use https:// (backups and credentials must not travel in clear text); give ca_bundle for a "
                      "private CA.")
            elif not _url_ok(endpoint, ("https",)):
                c.add(sub + ".endpoint", endpoint, "is not an https:// URL with a host", ep_fix)
        c.want_str(sub + ".region", c.sub(ext, "region"), "set the region the bucket is in (any name, e.g. "
                                                          "us-east-1, for stores that ignore it).")
        c.want_bool(sub + ".path_style", c.sub(ext, "path_style"),
                    "set true for path-style URLs (https://host/bucket, most self-hosted stores), false for "
                    "virtual-hosted style (https://bucket.host).")
        ca = c.sub(ext, "ca_bundle")
        ca_fix = "paste the PEM certificate(s) of the CA that signed the endpoint's certificate, or remove ca_bundle."
        if c.want_str(sub + ".ca_bundle", ca, ca_fix, required=False) is not None and \
                "-----BEGIN CERTIFICATE-----" not in ca:
            c.add(sub + ".ca_bundle", "(%d characters)" % len(ca), "holds no PEM certificate", ca_fix)
        if isinstance(ca, str) and "PRIVATE KEY" in ca:
            c.add(sub + ".ca_bundle", "(%d characters)" % len(ca), "holds a private key",
                  "remove the key: only the CA certificate belongs here.")


def resilience_model(v):
    """cellplatform_cell.resilience: {enabled, namespaces, talos_api_access, object_store, backups, etcd_snapshots}."""
    res = v.get("cellplatform_resilience")
    enabled = isinstance(res, Mapping) and _as_bool(res.get("enabled"))
    out = {
        "enabled": enabled,
        "namespaces": dict(RESILIENCE_NAMESPACES),
        # L0's control-plane patch (machine.features.kubernetesTalosAPIAccess): only with L5.
        "talos_api_access": {"roles": [ETCD_BACKUP_TALOS_ROLE],
                             "namespaces": [RESILIENCE_NAMESPACES["etcd_backup"]]} if enabled else None,
    }
    if not enabled:
        return out
    store = res.get("object_store") if isinstance(res.get("object_store"), Mapping) else {}
    provider = str(store.get("provider") or "")
    domain = str(v.get("cellplatform_cluster_dns_domain") or "cluster.local")
    obj = {"provider": provider, "bucket": str(store.get("bucket") or ""), "in_cell": provider == "seaweedfs",
           "secret_keys": {"access_key_id": OBJECT_STORE_SECRET_KEYS[0],
                           "secret_access_key": OBJECT_STORE_SECRET_KEYS[1]}}
    if provider == "seaweedfs":
        sw = store.get("seaweedfs") if isinstance(store.get("seaweedfs"), Mapping) else {}
        namespace = RESILIENCE_NAMESPACES["object_store"]
        obj.update(endpoint="http://%s-all-in-one.%s.svc.%s:%d" % (SEAWEEDFS_RELEASE, namespace, domain, SEAWEEDFS_S3_PORT),
                   region=SEAWEEDFS_REGION, path_style=True, ca_bundle=None,
                   volume_gib=_int_or_none(sw.get("volume_gib")))
        obj["secret_keys"].update(read_access_key_id=OBJECT_STORE_READ_SECRET_KEYS[0],
                                  read_secret_access_key=OBJECT_STORE_READ_SECRET_KEYS[1])
    else:
        ext = store.get("external") if isinstance(store.get("external"), Mapping) else {}
        obj.update(endpoint=str(ext.get("endpoint") or "").rstrip("/"), region=str(ext.get("region") or ""),
                   path_style=_as_bool(ext.get("path_style")), ca_bundle=ext.get("ca_bundle") or None,
                   volume_gib=None)
    backups = res.get("backups") if isinstance(res.get("backups"), Mapping) else {}
    days = _int_or_none(backups.get("retention_days"))
    etcd = res.get("etcd_snapshots") if isinstance(res.get("etcd_snapshots"), Mapping) else {}
    out.update(object_store=obj,
               backups={"schedule": str(backups.get("schedule") or ""), "retention_days": days,
                        "ttl": "%dh0m0s" % (days * 24) if days else None},
               etcd_snapshots={"schedule": str(etcd.get("schedule") or ""),
                               "prefix": "%s/etcd" % v.get("cellplatform_cell_name")})
    return out
