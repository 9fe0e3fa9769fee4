# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Component records: the one shape every layer describes its components in.

A layer role lists its components as records (data, see ``RECORD_FIELDS``); everything the
collection does with a component follows from its record:

* render: ``render_files_for`` -> values, extra manifests, namespace and the Argo CD Application,
  ``plan_entries`` -> the layer's plan.json entries, ``secret_documents`` + ``secrets_files`` ->
  the component's Secrets (SOPS-encrypted by the render action) with their KSOPS generator;
* apply: the internal ``cellplatform.platform.component`` role runs the records returned by
  ``select_for_run`` (namespace -> prerequisite CRDs -> Secrets -> Helm release -> gate ->
  manifests -> gate).

Pure and deterministic; no Ansible objects in or out (callers pass plain data).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from ansible_collections.cellplatform.platform.plugins.plugin_utils.secret_values import (
    MISSING, SecretValueError, as_string, pick)

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "default")
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
GATE_KINDS = ("crds", "deployments", "daemonsets", "statefulsets", "webhooks", "jobs", "conditions", "exists")
PART_OF = "cellplatform"
SECRET_FIELDS = ("name", "namespace", "type", "labels", "string_data", "optional", "keys", "file")
# A Secret's values come from the platform secrets, or from a SOPS file the platform generated in the
# secrets directory (``file``: its name, e.g. backstage-gitea.sops.yaml).
_SECRET_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.sops\.yaml$")
# The KSOPS exec KRM function (viaduct-ai/kustomize-sops v4) that decrypts a component's Secrets
# in Argo CD's repo-server; its generator file sits next to the encrypted Secrets.
KSOPS_GENERATOR = "ksops.yaml"
KUSTOMIZATION = "kustomization.yaml"
_NONE = type(None)
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# field -> (type(s), default, description). The record documentation in docs/development.md
# and the component role's README follow this table.
RECORD_FIELDS = {
    "name": (str, None, "DNS label; names the Helm release (by default), files and Argo CD Application"),
    "layer": (str, None, "l0 .. l7"),
    "enabled": (bool, True, "false leaves the component out of render, plan and apply"),
    "tags": (list, None, "Ansible tags that select it (default: its name with '-' as '_')"),
    "namespace": (str, None, "namespace the release and manifests go to"),
    "namespace_create": (bool, None, "render and apply a Namespace (default: the first component of the layer "
                                     "using a non-system namespace)"),
    "namespace_labels": (dict, {}, "extra labels of the Namespace"),
    "pod_security": ((str, _NONE), None, "PodSecurity level of the namespace: privileged, baseline, "
                                         "restricted, or null for the cluster default"),
    "chart": ((dict, _NONE), None, "{repo, name, version, release}: the pinned Helm chart"),
    "values": (dict, {}, "Helm values (rendered to <layer>/<name>/values.yaml)"),
    "manifests": (list, [], "extra manifests applied after the release's gate (<layer>/<name>/manifests.yaml)"),
    "remote_manifests": (list, [], "[{url, checksum}]: pinned upstream manifests (e.g. CRD bundles) applied "
                                   "server-side before the release"),
    "requires_crds": (list, [], "CRDs that must be Established before the release is installed"),
    "secrets": (list, [], "[{name, namespace, type, labels, string_data, optional, keys: {key: <platform secret "
                          "key>}, file}]: Secrets built from the platform secrets (or from the generated SOPS file "
                          "<secrets_dir>/<file>), created at apply time and rendered SOPS-encrypted for Argo CD (KSOPS)"),
    "prepare": ((dict, _NONE), None, "{role, tasks_from}: a layer task file run after the namespace and "
                                     "before the release (certificates, composite Secrets)"),
    "gate": (dict, {}, "what says the release is ready: crds, deployments, daemonsets, statefulsets, "
                       "webhooks (Service names), jobs, conditions, exists, nodes_ready"),
    "manifests_gate": (dict, {}, "the same, for what the extra manifests create"),
    "timeout": ((int, _NONE), None,
                "seconds this component may take to become ready (default: the pipeline's component_wait_timeout)"),
    "depends_on": (list, [], "components that must be ready first (an earlier component of this layer, "
                             "or a component of a lower layer)"),
    "sync_wave": (int, 0, "Argo CD sync wave of its Application"),
    "argocd": (dict, {}, "Application extras: ignore_differences, sync_options, sources (where Argo CD finds "
                         "what remote_manifests applies: [{repoURL, targetRevision, path}])"),
    "plan": (dict, {}, "extra plan.json keys of the component (notes, address_range)"),
    "ui": (list, [], "[{host, service, port, path, title}]: web UIs published through the shared Gateway at "
                     "https://<host>.<dns domain> (host defaults to the component name); rendered as HTTPRoutes "
                     "to <layer>/<name>/routes.yaml and applied after the manifests"),
    "network": (dict, {}, "{ingress: [rule], egress: [rule]}, rule {peer, ports, protocol}: the traffic the "
                          "component needs, from which its network policy is generated"),
    "monitors": (list, [], "prometheus-operator kinds its chart or manifests create (ServiceMonitor, PodMonitor, "
                           "PrometheusRule, Probe, ScrapeConfig): their CRDs must be Established before the release "
                           "(added to requires_crds), and a scraped component needs an ingress rule from monitoring"),
}

# Peers a network rule may name: the Kubernetes API server, the shared Gateway's proxies, the
# metrics scraper, any pod of the cluster, the nodes' host network, outside the cluster, one
# namespace (namespace:<name>) or an address block (cidr:<cidr>).
NETWORK_PEERS = ("apiserver", "gateway", "monitoring", "cluster", "nodes", "world")
NETWORK_PEER_PREFIXES = ("namespace:", "cidr:")
ARGOCD_EXTRAS = ("ignore_differences", "sync_options", "sources")
# prometheus-operator kinds a component may create -> their CRDs (installed by L0's
# prometheus-operator-crds before any chart that renders one); the first two are scrape targets.
MONITORING_GROUP = "monitoring.coreos.com"
MONITOR_KINDS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors", "PrometheusRule": "prometheusrules",
                 "Probe": "probes", "ScrapeConfig": "scrapeconfigs"}
SCRAPE_KINDS = ("ServiceMonitor", "PodMonitor")
GATEWAY_API = "gateway.networking.k8s.io"


class ComponentError(ValueError):
    """A record that cannot be used; the message names the component, the field and the fix."""


def _tag(name):
    return name.replace("-", "_")


def _coerce(value, kinds):
    """Scalars that arrive as text from templating (``"-6"``, ``"True"``) as their type."""
    if not isinstance(value, str):
        return value
    if int in (kinds if isinstance(kinds, tuple) else (kinds,)) and re.match(r"^-?[0-9]+$", value.strip()):
        return int(value)
    if kinds is bool and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def _check_type(name, field, value, kinds):
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if bool in kinds and not isinstance(value, bool):
        ok = False
    elif int in kinds and isinstance(value, bool):
        ok = False
    else:
        check = tuple(Mapping if k is dict else k for k in kinds)
        ok = isinstance(value, check)
    if not ok:
        want = " or ".join("null" if k is _NONE else k.__name__ for k in kinds)
        raise ComponentError("component %s: field %s must be %s, not %r" % (name, field, want, value))


def _field(name, field, value):
    """A record's field, typed (text from templating coerced) or its default."""
    kinds, default, _doc = RECORD_FIELDS[field]
    if value is None:
        value = type(default)(default) if isinstance(default, (dict, list)) else default
    value = _coerce(value, kinds)
    if value is not None:
        _check_type(name, field, value, kinds)
    return value


def _check_pod_security(name, level):
    if level is not None and level not in POD_SECURITY_LEVELS:
        raise ComponentError("component %s: pod_security %r is not one of %s (or null)"
                             % (name, level, ", ".join(POD_SECURITY_LEVELS)))


def normalise(record, layer=None):
    """Validate one record and return it with every field present (defaults filled in)."""
    if not isinstance(record, Mapping):
        raise ComponentError("a component record must be a mapping, not %r" % (record,))
    name = record.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ComponentError("component record %r: name must be a DNS label (lowercase a-z, 0-9, '-')" % (name,))
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    if unknown:
        raise ComponentError("component %s: unknown field(s) %s; known fields: %s"
                             % (name, ", ".join(unknown), ", ".join(RECORD_FIELDS)))
    out = {field: _field(name, field, record.get(field)) for field in RECORD_FIELDS}
    if layer is not None:
        if out["layer"] is None:
            out["layer"] = layer
        elif out["layer"] != layer:
            raise ComponentError("component %s says layer %s but is listed by layer %s" % (name, out["layer"], layer))
    if not out["layer"]:
        raise ComponentError("component %s: layer is required (l0 .. l7)" % name)
    if not out["namespace"]:
        raise ComponentError("component %s: namespace is required" % name)
    _check_pod_security(name, out["pod_security"])
    if out["tags"] is None:
        out["tags"] = [_tag(name)]
    chart = out["chart"]
    if chart is not None:
        missing = [k for k in ("repo", "name", "version") if not chart.get(k)]
        if missing:
            raise ComponentError("component %s: chart needs %s (a pinned chart: repo, name, version)"
                                 % (name, ", ".join(missing)))
        version = str(chart["version"])
        if version in ("latest", "*") or version.startswith(("^", "~", ">", "<")):
            raise ComponentError("component %s: chart version %r is not pinned; write an exact version"
                                 % (name, version))
        out["chart"] = {"repo": str(chart["repo"]), "name": str(chart["name"]), "version": version,
                        "release": str(chart.get("release") or name)}
    elif out["values"]:
        raise ComponentError("component %s: values without a chart; put the objects in manifests instead" % name)
    if chart is None and not out["manifests"] and not out["remote_manifests"]:
        raise ComponentError("component %s has neither a chart nor manifests" % name)
    for key in ("gate", "manifests_gate"):
        unknown = sorted(set(out[key]) - set(GATE_KINDS) - {"nodes_ready"})
        if unknown:
            raise ComponentError("component %s: %s has unknown check(s) %s; known: %s, nodes_ready"
                                 % (name, key, ", ".join(unknown), ", ".join(GATE_KINDS)))
    for idx, item in enumerate(out["remote_manifests"]):
        if not isinstance(item, Mapping) or not item.get("url") or not str(item.get("checksum", "")).startswith("sha256:"):
            raise ComponentError("component %s: remote_manifests[%d] needs url and checksum 'sha256:<hex>'" % (name, idx))
    out["secrets"] = [_secret_entry(name, idx, secret) for idx, secret in enumerate(out["secrets"])]
    names = [secret["name"] for secret in out["secrets"]]
    if len(set(names)) != len(names):
        raise ComponentError("component %s: secrets lists a Secret name twice (%s)" % (name, ", ".join(names)))
    if out["prepare"] is not None and not out["prepare"].get("tasks_from"):
        raise ComponentError("component %s: prepare needs tasks_from (and role)" % name)
    out["ui"] = [_ui_entry(name, idx, item) for idx, item in enumerate(out["ui"])]
    hosts = [ui["host"] for ui in out["ui"]]
    if len(set(hosts)) != len(hosts):
        raise ComponentError("component %s: ui lists host %s twice; give each UI its own host"
                             % (name, next(h for h in hosts if hosts.count(h) > 1)))
    _check_network(name, out["network"])
    _check_argocd(name, out["argocd"])
    _apply_monitors(name, out)
    return out


def _apply_monitors(name, out):
    """Validate ``monitors`` and require the CRDs of those kinds before the release.

    Charts only render a ServiceMonitor when the API server already serves monitoring.coreos.com/v1
    (``.Capabilities.APIVersions.Has``), so the CRDs must exist first; a scrape target whose metrics port
    the monitoring peer may not reach would be a silent gap once network policies are generated.
    """
    kinds = []
    for kind in out["monitors"]:
        if kind not in MONITOR_KINDS:
            raise ComponentError("component %s: monitors lists %r; known kinds: %s"
                                 % (name, kind, ", ".join(MONITOR_KINDS)))
        if kind not in kinds:
            kinds.append(kind)
    out["monitors"] = kinds
    crds = list(out["requires_crds"])
    for kind in kinds:
        crd = "%s.%s" % (MONITOR_KINDS[kind], MONITORING_GROUP)
        if crd not in crds:
            crds.append(crd)
    out["requires_crds"] = crds
    scraped = [kind for kind in kinds if kind in SCRAPE_KINDS]
    ingress = (out["network"].get("ingress") or []) if isinstance(out["network"], Mapping) else []
    if scraped and not any(isinstance(rule, Mapping) and rule.get("peer") == "monitoring" for rule in ingress):
        raise ComponentError("component %s: monitors lists %s, but network.ingress has no rule from peer monitoring "
                             "(add {peer: monitoring, ports: [<metrics port>], why: metrics})"
                             % (name, " and ".join(scraped)))


def _secret_entry(name, idx, secret):
    where = "component %s: secrets[%d]" % (name, idx)
    if not isinstance(secret, Mapping) or not secret.get("name") or not isinstance(secret.get("keys"), Mapping):
        raise ComponentError("%s needs name and keys {key: <platform secret key>}" % where)
    unknown = sorted(set(secret) - set(SECRET_FIELDS))
    if unknown:
        raise ComponentError("%s has unknown key(s) %s; a Secret is {%s}"
                             % (where, ", ".join(unknown), ", ".join(SECRET_FIELDS)))
    if not _NAME_RE.match(str(secret["name"])):
        raise ComponentError("%s: name %r must be a DNS label" % (where, secret["name"]))
    for field in ("labels", "string_data"):
        value = secret.get(field) or {}
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise ComponentError("%s: %s must map names to strings" % (where, field))
    if not secret["keys"] and not secret.get("string_data"):
        raise ComponentError("%s: keys is empty; list the platform secrets the Secret holds" % where)
    optional = _coerce(secret.get("optional", False), bool)
    if not isinstance(optional, bool):
        raise ComponentError("%s: optional must be true or false" % where)
    source = secret.get("file") or None
    if source is not None and not _SECRET_FILE_RE.match(str(source)):
        raise ComponentError("%s: file %r must be the name of a SOPS YAML file in the secrets directory "
                             "(<name>.sops.yaml, no directories)" % (where, source))
    return {"name": str(secret["name"]), "namespace": secret.get("namespace"), "type": secret.get("type") or "Opaque",
            "file": source and str(source), "labels": dict(secret.get("labels") or {}),
            "string_data": dict(secret.get("string_data") or {}), "optional": optional,
            "keys": dict((str(k), str(v)) for k, v in secret["keys"].items())}


def _check_argocd(name, extras):
    unknown = sorted(set(extras) - set(ARGOCD_EXTRAS))
    if unknown:
        raise ComponentError("component %s: argocd has unknown key(s) %s; known: %s"
                             % (name, ", ".join(unknown), ", ".join(ARGOCD_EXTRAS)))
    sources = extras.get("sources") or []
    if not isinstance(sources, list) or not all(isinstance(src, Mapping) and src.get("repoURL") for src in sources):
        raise ComponentError("component %s: argocd.sources must be a list of Application sources, each with a "
                             "repoURL (and targetRevision, path)" % name)


def _ui_entry(name, idx, item):
    if not isinstance(item, Mapping) or not item.get("service") or not item.get("port"):
        raise ComponentError("component %s: ui[%d] needs service and port (and optionally host, path, title)"
                             % (name, idx))
    host = str(item.get("host") or name)
    if not _NAME_RE.match(host):
        raise ComponentError("component %s: ui[%d].host %r must be a DNS label (the name before the cell's "
                             "DNS domain)" % (name, idx, host))
    port = _coerce(item["port"], int)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ComponentError("component %s: ui[%d].port %r is not a port number" % (name, idx, item["port"]))
    return {"host": host, "service": str(item["service"]), "port": port, "path": str(item.get("path") or "/"),
            "title": str(item.get("title") or name)}


def _check_network(name, network):
    unknown = sorted(set(network) - {"ingress", "egress"})
    if unknown:
        raise ComponentError("component %s: network has unknown key(s) %s; use ingress and egress"
                             % (name, ", ".join(unknown)))
    for direction in ("ingress", "egress"):
        rules = network.get(direction) or []
        if not isinstance(rules, list):
            raise ComponentError("component %s: network.%s must be a list of rules" % (name, direction))
        for idx, rule in enumerate(rules):
            where = "component %s: network.%s[%d]" % (name, direction, idx)
            if not isinstance(rule, Mapping) or not isinstance(rule.get("peer"), str):
                raise ComponentError("%s needs a peer (%s, namespace:<name> or cidr:<cidr>)"
                                     % (where, ", ".join(NETWORK_PEERS)))
            peer = rule["peer"]
            if peer not in NETWORK_PEERS and not peer.startswith(NETWORK_PEER_PREFIXES):
                raise ComponentError("%s: peer %r is not one of %s, namespace:<name> or cidr:<cidr>"
                                     % (where, peer, ", ".join(NETWORK_PEERS)))
            if rule.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                raise ComponentError("%s: protocol %r is not TCP, UDP or SCTP" % (where, rule.get("protocol")))
            ports = rule.get("ports") or []
            if not isinstance(ports, list) or not all(
                    (isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536) or isinstance(p, str)
                    for p in ports):
                raise ComponentError("%s: ports must be a list of port numbers or port names" % where)
            extra = sorted(set(rule) - {"peer", "ports", "protocol", "why"})
            if extra:
                raise ComponentError("%s has unknown key(s) %s; a rule is {peer, ports, protocol, why}"
                                     % (where, ", ".join(extra)))


def records_for(records, layer):
    """The enabled records of ``layer``, normalised, names unique, dependencies in order."""
    out = []
    seen = {}
    hosts = {}
    for record in records or []:
        rec = normalise(record, layer)
        if not rec["enabled"]:
            continue
        if rec["name"] in seen:
            raise ComponentError("component %s is listed twice in layer %s" % (rec["name"], layer))
        for ui in rec["ui"]:
            if ui["host"] in hosts:
                raise ComponentError("components %s and %s both publish a UI as host %s; give one another host"
                                     % (hosts[ui["host"]], rec["name"], ui["host"]))
            hosts[ui["host"]] = rec["name"]
        for dep in rec["depends_on"]:
            if dep == rec["name"]:
                raise ComponentError("component %s depends on itself" % dep)
        seen[rec["name"]] = rec
        out.append(rec)
    names = [r["name"] for r in out]
    for rec in out:
        for dep in rec["depends_on"]:
            if dep in names and names.index(dep) > names.index(rec["name"]):
                raise ComponentError("component %s depends on %s, which comes later in layer %s; list %s first"
                                     % (rec["name"], dep, layer, dep))
    _assign_namespaces(out)
    return out


def _assign_namespaces(records):
    """By default the first component of a layer that uses a namespace creates it."""
    claimed = set()
    for rec in records:
        ns = rec["namespace"]
        if rec["namespace_create"] is None:
            rec["namespace_create"] = ns not in SYSTEM_NAMESPACES and ns not in claimed
        elif rec["namespace_create"] and ns in SYSTEM_NAMESPACES:
            raise ComponentError("component %s: namespace %s belongs to Kubernetes; set namespace_create: false"
                                 % (rec["name"], ns))
        if rec["namespace_create"]:
            claimed.add(ns)


# What a layer's Namespaces are made of: reading only these fields leaves the rest of a lazily
# templated record (values, manifests, secrets) unevaluated.
NAMESPACE_FIELDS = ("name", "enabled", "namespace", "namespace_create", "namespace_labels", "pod_security")


def namespace_creators(layers):
    """{namespace: {layer, component, document}}: which layer creates each namespace, and how.

    ``layers``: [{layer, records}] in run order (records as the layer roles list them). The first
    layer whose records create a namespace (``namespace_create``, by default the layer's first
    component using it) is its creator; ``document`` is exactly the Namespace that layer renders
    to <layer>/<component>/namespace.yaml and applies, so another layer may create it early
    (server-side apply, same field manager) without a second owner of different content.
    """
    out = {}
    for entry in layers or []:
        layer = str(entry["layer"])
        recs = []
        for record in entry.get("records") or []:
            if not isinstance(record, Mapping):
                raise ComponentError("a component record must be a mapping, not %r" % (record,))
            name = record.get("name")
            rec = {field: _field(name, field, record.get(field)) for field in NAMESPACE_FIELDS}
            if not rec["namespace"]:
                raise ComponentError("component %s (layer %s): namespace is required" % (name, layer))
            _check_pod_security(name, rec["pod_security"])
            if rec["enabled"]:
                recs.append(rec)
        _assign_namespaces(recs)
        for rec in recs:
            if rec["namespace_create"] and rec["namespace"] not in out:
                out[rec["namespace"]] = {"layer": layer, "component": rec["name"], "document": namespace_document(rec)}
    return out


def paths(rec):
    base = "%s/%s" % (rec["layer"], rec["name"])
    return {
        "namespace": base + "/namespace.yaml" if rec["namespace_create"] else None,
        "values": base + "/values.yaml" if rec["chart"] else None,
        "manifests": base + "/manifests.yaml" if rec["manifests"] else None,
        "secrets": base + "/secrets" if rec["secrets"] else None,
        "routes": base + "/routes.yaml" if rec["ui"] else None,
    }


def _shared_gateway(rec, cell):
    """(gateway model, DNS domain) of the cell, or a ComponentError when a UI cannot be routed."""
    gateway = (cell or {}).get("gateway") or {}
    domain = (cell or {}).get("dns_domain")
    if not gateway.get("name") or not gateway.get("namespace") or not gateway.get("https_listener") or not domain:
        raise ComponentError("component %s publishes a UI (ui), but the cell model has no shared Gateway or DNS "
                             "domain (cellplatform_gateway, cellplatform_dns_domain)" % rec["name"])
    return gateway, domain


def ui_urls(rec, cell):
    """The component's UIs as plan entries: [{url, title, service, port}]."""
    if not rec["ui"]:
        return []
    _gateway, domain = _shared_gateway(rec, cell)
    return [{"url": "https://%s.%s%s" % (ui["host"], domain, "" if ui["path"] == "/" else ui["path"]),
             "title": ui["title"], "service": ui["service"], "port": ui["port"]} for ui in rec["ui"]]


def route_documents(rec, cell):
    """One HTTPRoute per UI: https://<host>.<dns domain><path> -> the UI's Service, through the shared
    Gateway's HTTPS listener (its wildcard certificate covers every <host>.<dns domain>)."""
    if not rec["ui"]:
        return []
    gateway, domain = _shared_gateway(rec, cell)
    docs = []
    for ui in rec["ui"]:
        docs.append({
            "apiVersion": "%s/v1" % GATEWAY_API,
            "kind": "HTTPRoute",
            "metadata": {
                "name": "%s-ui" % ui["host"],
                "namespace": rec["namespace"],
                "labels": {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": PART_OF,
                           "cellplatform.io/component": rec["name"]},
            },
            "spec": {
                "parentRefs": [{"group": GATEWAY_API, "kind": "Gateway", "name": gateway["name"],
                                "namespace": gateway["namespace"], "sectionName": gateway["https_listener"]}],
                "hostnames": ["%s.%s" % (ui["host"], domain)],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": ui["path"]}}],
                    "backendRefs": [{"name": ui["service"], "port": ui["port"]}],
                }],
            },
        })
    return docs


def namespace_document(rec):
    labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/name": rec["namespace"]}
    labels.update(dict(rec["namespace_labels"]))
    if rec["pod_security"]:
        for mode in ("enforce", "audit", "warn"):
            labels["pod-security.kubernetes.io/%s" % mode] = rec["pod_security"]
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": rec["namespace"], "labels": labels}}


def _manifest_files(rec):
    p = paths(rec)
    return [x for x in (p["namespace"], p["manifests"], p["routes"]) if x]


def application_path(rec, gitops):
    return "%s/%s.yaml" % (gitops.get("path") or "apps", rec["name"])


def plan_entry(rec, gitops, cell=None):
    """The component's plan.json entry: what is deployed, from where, and where its files are."""
    p = paths(rec)
    entry = {
        "name": rec["name"],
        "layer": rec["layer"],
        "namespace": rec["namespace"],
        "manifests": _manifest_files(rec),
        "application": application_path(rec, gitops),
        "sync_wave": rec["sync_wave"],
        "privileged": rec["pod_security"] == "privileged",
    }
    if rec["chart"]:
        entry.update(chart=rec["chart"]["name"], repo=rec["chart"]["repo"], version=rec["chart"]["version"],
                     release=rec["chart"]["release"], values_file=p["values"])
    if rec["depends_on"]:
        entry["depends_on"] = list(rec["depends_on"])
    if rec["remote_manifests"]:
        entry["remote_manifests"] = [item["url"] for item in rec["remote_manifests"]]
    if rec["ui"]:
        entry["ui"] = ui_urls(rec, cell)
    if rec["monitors"]:
        entry["monitors"] = list(rec["monitors"])
    entry.update(dict(rec["plan"]))
    return entry


PSA_PRIVILEGED = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/audit": "privileged",
    "pod-security.kubernetes.io/warn": "privileged",
}


def secret_files(rec):
    """The generated SOPS files (names in the secrets directory) the component's Secrets read."""
    return sorted(set(secret["file"] for secret in rec["secrets"] if secret["file"]))


def secret_documents(rec, platform, source, files=None):
    """The Secret objects of a component, values from the decrypted platform secrets ``platform``.

    ``files``: {file name: (decrypted mapping, path)} of the generated SOPS files its Secrets name
    (``secret_files``). The same objects the apply creates (filter component_secrets) and the render
    writes encrypted. A Secret marked ``optional`` leaves out keys the platform secrets do not have and
    is dropped when none of them is there (e.g. repository credentials of a public repository).
    """
    docs = []
    for secret in rec["secrets"]:
        refs = list(secret["keys"].items())
        mapping, where = platform, source
        if secret["file"]:
            if secret["file"] not in (files or {}):
                raise ComponentError("component %s, Secret %s: the SOPS file %s was not read"
                                     % (rec["name"], secret["name"], secret["file"]))
            mapping, where = files[secret["file"]]
        try:
            values = pick(mapping, [ref for _key, ref in refs], where, optional=secret["optional"])
            data = dict(secret["string_data"])
            found = 0
            for (key, ref), value in zip(refs, values):
                if value is MISSING:
                    continue
                data[key] = as_string(value, ref, where)
                found += 1
        except SecretValueError as exc:
            raise ComponentError("component %s, Secret %s: %s" % (rec["name"], secret["name"], exc))
        if refs and not found:
            continue
        labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": PART_OF}
        labels.update(secret["labels"])
        docs.append({
            "apiVersion": "v1", "kind": "Secret", "type": secret["type"],
            "metadata": {"name": secret["name"], "namespace": secret["namespace"] or rec["namespace"],
                         "labels": labels},
            "stringData": data,
        })
    return docs


def secret_file(rec, name):
    """Path of the encrypted manifest of the component's Secret ``name``."""
    return "%s/%s.sops.yaml" % (paths(rec)["secrets"], name)


def secrets_files(rec, documents):
    """render_files entries of the KSOPS generator and its kustomization for ``documents``."""
    base = paths(rec)["secrets"]
    generator = {
        "apiVersion": "viaduct.ai/v1",
        "kind": "ksops",
        "metadata": {
            "name": "%s-secrets" % rec["name"],
            "annotations": {"config.kubernetes.io/function": "exec:\n  path: ksops\n"},
        },
        "files": ["./%s" % posixpath.basename(secret_file(rec, doc["metadata"]["name"])) for doc in documents],
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "generators": ["./%s" % KSOPS_GENERATOR],
    }
    return [{"path": "%s/%s" % (base, KUSTOMIZATION), "data": kustomization},
            {"path": "%s/%s" % (base, KSOPS_GENERATOR), "data": generator}]


def application(rec, gitops, destination_server="https://kubernetes.default.svc", with_secrets=False):
    """The Argo CD Application that deploys the component exactly as the collection does.

    Same chart, version, release name and values file as the Ansible apply, so Argo CD adopts
    the release instead of fighting it; values and extra manifests come from the GitOps
    repository, which holds the rendered build tree at its root. ``with_secrets``: the
    component's SOPS-encrypted Secrets are in the tree, added as a kustomize source (KSOPS).
    """
    repo_url, revision = gitops.get("repo_url"), gitops.get("revision")
    if not repo_url or not revision:
        raise ComponentError("component %s: the GitOps repository (cellplatform_gitops.repo_url/revision) is "
                             "needed for its Argo CD Application" % rec["name"])
    p = paths(rec)
    sources = []
    if rec["chart"]:
        chart = rec["chart"]
        repo = chart["repo"]
        sources.append({
            # Argo CD addresses Helm OCI registries without the oci:// scheme (enableOCI repo).
            "repoURL": repo[len("oci://"):] if repo.startswith("oci://") else repo,
            "chart": chart["name"],
            "targetRevision": chart["version"],
            "helm": {"releaseName": chart["release"], "valueFiles": ["$values/%s" % p["values"]]},
        })
        sources.append({"repoURL": repo_url, "targetRevision": revision, "ref": "values"})
    for manifest in _manifest_files(rec):
        sources.append({
            "repoURL": repo_url,
            "targetRevision": revision,
            "path": posixpath.dirname(manifest) or ".",
            "directory": {"include": posixpath.basename(manifest)},
        })
    if with_secrets:
        # A kustomization whose KSOPS generator decrypts the Secrets in the repo-server.
        sources.append({"repoURL": repo_url, "targetRevision": revision, "path": p["secrets"], "kustomize": {}})
    # What remote_manifests applies, as Argo CD finds it (e.g. the upstream repository at the tag).
    sources.extend(dict(src) for src in rec["argocd"].get("sources") or [])
    if not sources:
        raise ComponentError("component %s: its Argo CD Application would have no source; give remote_manifests "
                             "an argocd.sources entry (where Argo CD finds the same manifests)" % rec["name"])
    sync_options = ["CreateNamespace=true", "ServerSideApply=true"]
    if _manifest_files(rec) or rec["monitors"]:
        # Custom resources of a chart's own CRDs (or of the prometheus-operator CRDs an earlier
        # Application installs): skip the dry run until the CRDs exist.
        sync_options.append("SkipDryRunOnMissingResource=true")
    sync_options.extend(o for o in rec["argocd"].get("sync_options") or [] if o not in sync_options)
    sync_policy = {
        "automated": {"prune": True, "selfHeal": True},
        "syncOptions": sync_options,
        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
    }
    if rec["pod_security"] == "privileged":
        # Talos enforces PodSecurity baseline; these namespaces run host-level agents.
        sync_policy["managedNamespaceMetadata"] = {"labels": dict(PSA_PRIVILEGED)}
    spec = {
        "project": gitops.get("project") or "platform",
        "sources": sources,
        "destination": {"server": destination_server, "namespace": rec["namespace"]},
        "syncPolicy": sync_policy,
    }
    if rec["argocd"].get("ignore_differences"):
        spec["ignoreDifferences"] = rec["argocd"]["ignore_differences"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": rec["name"],
            "namespace": gitops.get("namespace") or "argocd",
            "annotations": {"argocd.argoproj.io/sync-wave": str(rec["sync_wave"])},
            "labels": {
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/managed-by": PART_OF,
                "cellplatform.io/layer": rec["layer"],
            },
        },
        "spec": spec,
    }


def render_files_for(records, gitops, cell=None, with_secrets=()):
    """render_files ``files`` entries of normalised records (values, manifests, namespace, UI routes, app).

    ``cell``: the cell model (the shared Gateway and DNS domain of UI routes); ``with_secrets``:
    names of the components whose encrypted Secrets are in the tree.
    """
    files = []
    for rec in records:
        p = paths(rec)
        if p["namespace"]:
            files.append({"path": p["namespace"], "documents": [namespace_document(rec)]})
        if p["values"]:
            files.append({"path": p["values"], "data": rec["values"]})
        if p["manifests"]:
            files.append({"path": p["manifests"], "documents": list(rec["manifests"])})
        if p["routes"]:
            files.append({"path": p["routes"], "documents": route_documents(rec, cell)})
        files.append({"path": application_path(rec, gitops),
                      "data": application(rec, gitops, with_secrets=rec["name"] in with_secrets)})
    return files


def plan_entries(records, gitops, cell=None, with_secrets=()):
    entries = []
    for rec in records:
        entry = plan_entry(rec, gitops, cell)
        if rec["secrets"]:
            entry["secrets"] = [secret["name"] for secret in rec["secrets"]]
            if rec["name"] in with_secrets:
                entry["secrets_path"] = paths(rec)["secrets"]
        entries.append(entry)
    return entries


def selected(rec, run_tags, skip_tags):
    """Whether ``--tags``/``--skip-tags`` select this component (layer tag or a component tag)."""
    mine = {rec["layer"]} | set(rec["tags"])
    skip = set(skip_tags or [])
    if mine & skip or "all" in skip:
        return False
    run = set(run_tags or ["all"])
    return "all" in run or bool(mine & run)


def select_for_run(records, run_tags, skip_tags):
    return [rec for rec in records if selected(rec, run_tags, skip_tags)]
