#!/usr/bin/env python3
"""TEST DOUBLE for the Helm 3/4 CLI, as driven by kubernetes.core.helm (6.x).

This is not Helm. It implements the slice of the Helm CLI contract that the
``kubernetes.core.helm`` module and ``module_utils/helm.py`` use, records every invocation,
and keeps release state on disk so that a second identical ``upgrade`` is detectably a no-op
for the module's idempotency check (``default_check``: user values, ``<chart>-<version>`` and
``app_version`` equal -> no upgrade).  Tests put ``tests/doubles`` first on ``PATH`` (the
executable ``tests/doubles/helm`` runs this file); the collection never refers to it.

Commands (flags may appear anywhere, as with cobra/pflag; unknown flags are rejected with
Helm's own ``Error: unknown flag: --x`` and exit 1):

  helm version [--short] [--template T]
      ``version.BuildInfo{Version:"v3.19.0", GitCommit:..., GitTreeState:"clean", GoVersion:...}``
      (the version comes from ``$HELM_DOUBLE_VERSION``, default 3.19.0; ``4.x`` emulates Helm 4,
      e.g. ``--rollback-on-failure`` instead of ``--atomic`` and no ``list --all``).
  helm plugin list                      -> the header only (no helm-diff: the module then uses
                                           its default check); ``$HELM_DOUBLE_PLUGINS`` may list
                                           ``name=version`` pairs.
  helm list --output=yaml|json [--filter RE] [--deployed|--all|--failed|--pending] [-n NS|-A]
  helm get values --output=yaml|json [-a|--all] RELEASE [-n NS]     ("null" when none)
  helm get manifest|notes|hooks RELEASE
  helm status RELEASE [-o yaml|json]
  helm show chart CHART [--repo URL] [--version V]     (Chart.yaml of the fixture chart)
  helm upgrade -i|--install [--reset-values] [--reuse-values=B] [--wait] [--timeout D]
               [--values=F|-f F]... [--atomic|--rollback-on-failure] [--create-namespace]
               [--repo URL] [--version V] [...] RELEASE CHART
  helm install RELEASE CHART [...]      (fails when the release exists, like Helm)
  helm uninstall RELEASE [--keep-history] [--wait]
  helm repo add NAME URL / helm repo update / helm dependency update|build CHART

Environment:

  HELM_DOUBLE_STATE   (required, except for ``version``) directory for ``releases.json`` and ``calls.jsonl``.
                      Each call appends one JSON line: ``argv``, ``command`` (e.g.
                      ``"upgrade"``), ``namespace``, ``values_files`` {path: content} and
                      ``kubeconfig_server``.
  HELM_DOUBLE_CHARTS  directory of chart fixtures: ``<name>-<version>.yaml`` files, each a
                      mapping ``{chart: <Chart.yaml mapping>, manifest: [<k8s objects>]}``.
                      A chart/version without a fixture fails the way Helm fails for a
                      missing chart version. ``{{RELEASE}}``/``{{NAMESPACE}}`` in string
                      values of ``manifest`` objects are replaced at install time.
  HELM_DOUBLE_APPLY   ``1`` (default when the kubeconfig points at 127.0.0.1/localhost):
                      on install/upgrade, create the fixture's ``manifest`` objects in the
                      Kubernetes API of the kubeconfig (``$KUBECONFIG``, as kubernetes.core
                      passes it) with server-side apply, CustomResourceDefinitions first,
                      like Helm's ``crds/`` handling. Only loopback API servers are ever
                      contacted; any other server is an error.
  HELM_NAMESPACE      namespace when no ``-n/--namespace`` is given (kubernetes.core sets it).
  HELM_DOUBLE_FAIL    ``<command>`` or ``<command>:<release>``: fail that call (exit 1) to
                      test error handling.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

import yaml

DEFAULT_VERSION = "3.19.0"

# Flags taking a value, and boolean flags, accepted by each command (plus GLOBAL_*).
GLOBAL_VALUE = {"--namespace", "-n", "--kube-context", "--kubeconfig", "--kube-apiserver",
                "--kube-token", "--kube-ca-file", "--registry-config", "--repository-cache",
                "--repository-config", "--burst-limit", "--qps", "--kube-as-user",
                "--kube-as-group", "--kube-tls-server-name"}
GLOBAL_BOOL = {"--debug", "--kube-insecure-skip-tls-verify", "--help", "-h"}
CHART_VALUE = {"--version", "--repo", "--username", "--password", "--ca-file", "--cert-file",
               "--key-file", "--keyring"}
CHART_BOOL = {"--insecure-skip-tls-verify", "--plain-http", "--devel", "--verify",
              "--pass-credentials"}
DEPLOY_VALUE = CHART_VALUE | {"--values", "-f", "--set", "--set-string", "--set-json",
                              "--set-file", "--set-literal", "--timeout", "--history-max",
                              "--post-renderer", "--post-renderer-args", "--description",
                              "--output", "-o", "--server-side", "--wait-strategy"}
DEPLOY_BOOL = CHART_BOOL | {"--install", "-i", "--reset-values", "--reuse-values",
                            "--reset-then-reuse-values", "--wait", "--wait-for-jobs",
                            "--atomic", "--rollback-on-failure", "--cleanup-on-fail",
                            "--force", "--force-replace", "--force-conflicts",
                            "--create-namespace", "--no-hooks", "--skip-crds",
                            "--dependency-update", "--take-ownership",
                            "--skip-schema-validation", "--dry-run", "--replace",
                            "--render-subchart-notes", "--disable-openapi-validation",
                            "--enable-dns", "--hide-notes", "--generate-name", "-g"}
COMMANDS = {
    "version": ({"--template"}, {"--short", "--client", "-c"}),
    "plugin list": (set(), set()),
    "list": ({"--output", "-o", "--filter", "-f", "--max", "-m", "--offset", "--selector", "-l",
              "--time-format"},
             {"--deployed", "--all", "-a", "--failed", "--pending", "--superseded",
              "--uninstalled", "--uninstalling", "--all-namespaces", "-A", "--short", "-q",
              "--date", "-d", "--reverse", "-r", "--no-headers"}),
    "get values": ({"--output", "-o", "--revision"}, {"--all", "-a"}),
    "get manifest": ({"--revision"}, set()),
    "get notes": ({"--revision"}, set()),
    "get hooks": ({"--revision"}, set()),
    "status": ({"--output", "-o", "--revision"}, {"--show-desc", "--show-resources"}),
    "show chart": (CHART_VALUE, CHART_BOOL),
    "show values": (CHART_VALUE, CHART_BOOL),
    "upgrade": (DEPLOY_VALUE, DEPLOY_BOOL),
    "install": (DEPLOY_VALUE, DEPLOY_BOOL),
    "uninstall": ({"--timeout", "--cascade", "--description"},
                  {"--keep-history", "--no-hooks", "--wait", "--dry-run", "--ignore-not-found"}),
    "repo add": ({"--username", "--password", "--ca-file", "--cert-file", "--key-file"},
                 {"--force-update", "--insecure-skip-tls-verify", "--pass-credentials",
                  "--allow-deprecated-repos", "--no-update"}),
    "repo update": (set(), {"--fail-on-repo-update-fail"}),
    "repo list": ({"--output", "-o"}, set()),
    "dependency update": ({"--keyring"}, {"--skip-refresh", "--verify"}),
    "dependency build": ({"--keyring"}, {"--skip-refresh", "--verify"}),
}
SUBCOMMAND_GROUPS = {"plugin", "get", "show", "repo", "dependency", "dep"}


class HelmError(Exception):
    pass


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")


def _state_dir():
    state = os.environ.get("HELM_DOUBLE_STATE")
    if not state:
        raise HelmError("HELM_DOUBLE_STATE is not set (this is the helm TEST DOUBLE; tests set it)")
    os.makedirs(state, exist_ok=True)
    return state


def _version():
    return os.environ.get("HELM_DOUBLE_VERSION", DEFAULT_VERSION).lstrip("v")


def _is_v4():
    return int(_version().split(".")[0]) >= 4


def parse(argv):
    """-> (command, positionals, flags{canonical name: [values]}); HelmError like Helm's."""
    tokens = list(argv)
    cmd = _guess_command(tokens)
    value_flags, bool_flags = COMMANDS[cmd]
    value_flags, bool_flags = value_flags | GLOBAL_VALUE, bool_flags | GLOBAL_BOOL
    words_left = len(cmd.split())
    flags, positionals = {}, []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "--":
            positionals.extend(tokens[i:])
            break
        if not tok.startswith("-") or tok == "-":
            if words_left:
                words_left -= 1
            else:
                positionals.append(tok)
            continue
        name, eq, val = tok.partition("=")
        if not tok.startswith("--") and len(tok) > 2 and not eq:
            name, val, eq = tok[:2], tok[2:], "="          # -nNAMESPACE
        elif not tok.startswith("--") and eq and len(name) > 2:
            raise HelmError("Error: unknown shorthand flag: '%s' in %s" % (name[1:2], tok))
        if name in value_flags:
            if not eq:
                if i >= len(tokens):
                    raise HelmError("Error: flag needs an argument: %s" % name)
                val = tokens[i]
                i += 1
            flags.setdefault(_canonical(name, cmd), []).append(val)
        elif name in bool_flags:
            if eq and val.lower() not in ("true", "false", "1", "0", "t", "f"):
                raise HelmError('Error: invalid argument "%s" for "%s" flag: '
                                'strconv.ParseBool: parsing "%s": invalid syntax' % (val, name, val))
            flags.setdefault(_canonical(name, cmd), []).append(val.lower() if eq else "true")
        elif name.startswith("--"):
            raise HelmError("Error: unknown flag: %s" % name)
        else:
            raise HelmError("Error: unknown shorthand flag: '%s' in %s" % (name[1:2], tok))
    return cmd, positionals, flags


def _guess_command(tokens):
    """Command name from the first non-flag words (values of value flags are skipped)."""
    all_value_flags = set(GLOBAL_VALUE)
    for value_flags, _bool_flags in COMMANDS.values():
        all_value_flags |= value_flags
    words = []
    skip = False
    for tok in tokens:
        if skip:
            skip = False
            continue
        if tok.startswith("-") and tok != "-":
            if "=" not in tok and tok in all_value_flags:
                skip = True
            continue
        words.append(tok)
        if len(words) == 2:
            break
    if not words:
        raise HelmError("Error: no command given (helm double)")
    first = "dependency" if words[0] == "dep" else words[0]
    if first in SUBCOMMAND_GROUPS or first == "dependency":
        if len(words) < 2:
            raise HelmError('Error: "helm %s" requires a subcommand' % first)
        cmd = "%s %s" % (first, words[1])
        if cmd not in COMMANDS:
            raise HelmError('Error: unknown command "%s" for "helm %s"' % (words[1], first))
        return cmd
    if first not in COMMANDS:
        raise HelmError('Error: unknown command "%s" for "helm"' % first)
    return first


_ALIASES = {"-n": "--namespace", "-f": "--values", "-o": "--output", "-i": "--install",
            "-a": "--all", "-A": "--all-namespaces", "-q": "--short", "-m": "--max",
            "-l": "--selector", "-d": "--date", "-r": "--reverse", "-c": "--client",
            "-g": "--generate-name", "-h": "--help"}


def _canonical(name, cmd=None):
    if cmd == "list" and name == "-f":
        return "--filter"
    return _ALIASES.get(name, name)


def _flag(flags, name, default=None):
    values = flags.get(name)
    return values[-1] if values else default


def _bool(flags, name):
    return _flag(flags, name, "false") in ("true", "1", "t")


# --- state -------------------------------------------------------------------------------------

def _load_releases():
    path = os.path.join(_state_dir(), "releases.json")
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def _save_releases(releases):
    path = os.path.join(_state_dir(), "releases.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(releases, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _key(namespace, name):
    return "%s/%s" % (namespace, name)


def _namespace(flags):
    return _flag(flags, "--namespace") or os.environ.get("HELM_NAMESPACE") or "default"


def _record(argv, command, flags, extra=None):
    entry = {"argv": list(argv), "command": command, "namespace": _namespace(flags),
             "kubeconfig_server": _kube_server()}
    files = {}
    for path in flags.get("--values", []):
        try:
            with open(path) as fh:
                files[path] = fh.read()
        except OSError as exc:
            files[path] = "<unreadable: %s>" % exc
    entry["values_files"] = files
    if extra:
        entry.update(extra)
    with open(os.path.join(_state_dir(), "calls.jsonl"), "a") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


# --- charts ------------------------------------------------------------------------------------

def _chart_name(ref):
    ref = ref.rstrip("/")
    if ref.startswith("oci://") or "/" in ref:
        return ref.rsplit("/", 1)[-1].split(":")[0]
    return ref


def _load_chart(ref, flags):
    name = _chart_name(ref)
    version = _flag(flags, "--version")
    charts = os.environ.get("HELM_DOUBLE_CHARTS")
    where = _flag(flags, "--repo") or ref
    if not charts:
        raise HelmError('Error: chart "%s" not found in %s (HELM_DOUBLE_CHARTS is not set)' % (name, where))
    candidates = []
    if version:
        candidates.append(os.path.join(charts, "%s-%s.yaml" % (name, version)))
    else:
        candidates.extend(sorted(p for p in (os.path.join(charts, f) for f in os.listdir(charts))
                                 if fnmatch.fnmatch(os.path.basename(p), "%s-*.yaml" % name)))
    for path in candidates:
        if os.path.exists(path):
            with open(path) as fh:
                data = yaml.safe_load(fh) or {}
            chart = data.get("chart") or {}
            if chart.get("name") != name:
                continue
            return chart, data.get("manifest") or []
    if version:
        raise HelmError('Error: chart "%s" version "%s" not found in %s repository' % (name, version, where))
    raise HelmError('Error: chart "%s" not found in %s repository' % (name, where))


def _merge(base, override):
    out = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _user_values(flags, previous=None):
    values = dict(previous or {})
    for path in flags.get("--values", []):
        try:
            with open(path) as fh:
                data = yaml.safe_load(fh)
        except OSError:
            raise HelmError("Error: open %s: no such file or directory" % path)
        except yaml.YAMLError as exc:
            raise HelmError("Error: failed to parse %s: %s" % (path, exc))
        if data is None:
            continue
        if not isinstance(data, dict):
            raise HelmError("Error: failed to parse %s: error unmarshaling JSON: json: cannot unmarshal "
                            "into Go value of type map[string]interface {}" % path)
        values = _merge(values, data)
    for opt in ("--set", "--set-string", "--set-json", "--set-file", "--set-literal"):
        if flags.get(opt):
            raise HelmError("Error: %s is not supported by the helm double; use a values file" % opt)
    return values


# --- Kubernetes API (loopback only) -------------------------------------------------------------

def _kube_server():
    path = _flag_env_kubeconfig()
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as fh:
            cfg = yaml.safe_load(fh) or {}
        current = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg.get("contexts", []) if c.get("name") == current), None)
        cluster_name = ctx["cluster"] if ctx else cfg["clusters"][0]["name"]
        cluster = next(c["cluster"] for c in cfg.get("clusters", []) if c.get("name") == cluster_name)
        return cluster.get("server")
    except (KeyError, StopIteration, TypeError, IndexError, yaml.YAMLError):
        return None


_KUBECONFIG_FLAG = None


def _flag_env_kubeconfig():
    return _KUBECONFIG_FLAG or os.environ.get("KUBECONFIG")


def _loopback(server):
    host = urllib.parse.urlsplit(server).hostname
    return host in ("127.0.0.1", "localhost", "::1")


class Kube(object):
    """Minimal client for the fake API server: discovery + server-side apply."""

    def __init__(self, server):
        if not _loopback(server):
            raise HelmError("helm double: refusing to contact non-loopback API server %s" % server)
        self.server = server.rstrip("/")
        self._resources = {}

    def request(self, method, path, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise HelmError("Error: %s %s: %s %s" % (method, path, exc.code, exc.read().decode(errors="replace")))
        except urllib.error.URLError as exc:
            raise HelmError("Error: Kubernetes cluster unreachable: %s" % exc.reason)

    def resource(self, api_version, kind):
        prefix = "/api/v1" if api_version == "v1" else "/apis/" + api_version
        if prefix not in self._resources:
            self._resources[prefix] = self.request("GET", prefix).get("resources", [])
        for res in self._resources[prefix]:
            if res.get("kind") == kind and "/" not in res["name"]:
                return prefix, res
        self._resources.pop(prefix, None)   # CRD may have just been created: rediscover next time
        raise HelmError('Error: unable to build kubernetes objects: resource mapping not found for '
                        'kind "%s" in version "%s"' % (kind, api_version))

    def apply(self, obj, namespace):
        prefix, res = self.resource(obj["apiVersion"], obj["kind"])
        name = obj["metadata"]["name"]
        if res.get("namespaced"):
            ns = obj["metadata"].setdefault("namespace", namespace)
            path = "%s/namespaces/%s/%s/%s" % (prefix, ns, res["name"], name)
        else:
            path = "%s/%s/%s" % (prefix, res["name"], name)
        return self.request("PATCH", path + "?fieldManager=helm&force=true", obj,
                            content_type="application/apply-patch+yaml")


def _substitute(value, release, namespace):
    if isinstance(value, dict):
        return {k: _substitute(v, release, namespace) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, release, namespace) for v in value]
    if isinstance(value, str):
        return value.replace("{{RELEASE}}", release).replace("{{NAMESPACE}}", namespace)
    return value


def _apply_manifest(manifest, release, namespace, skip_crds):
    server = _kube_server()
    enabled = os.environ.get("HELM_DOUBLE_APPLY")
    if enabled is None:
        enabled = "1" if server and _loopback(server) else "0"
    if enabled != "1" or not manifest:
        return []
    if not server:
        raise HelmError("Error: Kubernetes cluster unreachable: no kubeconfig")
    kube = Kube(server)
    objs = [_substitute(o, release, namespace) for o in manifest]
    crds = [o for o in objs if o.get("kind") == "CustomResourceDefinition"]
    others = [o for o in objs if o.get("kind") != "CustomResourceDefinition"]
    applied = []
    for obj in ([] if skip_crds else crds) + others:
        obj.setdefault("metadata", {}).setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
        obj["metadata"].setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace})
        kube.apply(obj, namespace)
        applied.append("%s/%s" % (obj["kind"], obj["metadata"]["name"]))
    return applied


# --- commands ----------------------------------------------------------------------------------

def _dump(data, fmt):
    if fmt == "json":
        return json.dumps(data) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(data, default_flow_style=False, sort_keys=True)
    raise HelmError('Error: invalid format type "%s"' % fmt)


def _list_entry(rel):
    return {"name": rel["name"], "namespace": rel["namespace"], "revision": str(rel["revision"]),
            "updated": rel["updated"], "status": rel["status"],
            "chart": "%s-%s" % (rel["chart"], rel["version"]), "app_version": rel.get("app_version", "")}


def cmd_version(flags):
    ver = _version()
    if _bool(flags, "--short"):
        return "v%s+gdouble\n" % ver
    tmpl = _flag(flags, "--template")
    if tmpl:
        return tmpl.replace("{{ .Version }}", "v" + ver).replace("{{.Version}}", "v" + ver) + "\n"
    return ('version.BuildInfo{Version:"v%s", GitCommit:"0000000000000000000000000000000000000000", '
            'GitTreeState:"clean", GoVersion:"go1.24.0"}\n' % ver)


def cmd_plugin_list(flags):
    out = "NAME\tVERSION\tDESCRIPTION\n"
    for pair in filter(None, os.environ.get("HELM_DOUBLE_PLUGINS", "").split(",")):
        name, _, version = pair.partition("=")
        out += "%s\t%s\t(helm double plugin)\n" % (name, version)
    return out


def cmd_list(flags):
    releases = _load_releases().values()
    if not _bool(flags, "--all-namespaces"):
        ns = _namespace(flags)
        releases = [r for r in releases if r["namespace"] == ns]
    pattern = _flag(flags, "--filter")
    if pattern:
        rx = re.compile(pattern)
        releases = [r for r in releases if rx.search(r["name"])]
    wanted = set()
    for status in ("deployed", "failed", "pending", "superseded", "uninstalled", "uninstalling"):
        if _bool(flags, "--" + status):
            wanted.add(status)
    if _bool(flags, "--all"):
        wanted = None
    elif not wanted:
        wanted = {"deployed", "failed"}
    if wanted is not None:
        releases = [r for r in releases if r["status"] in wanted or
                    (r["status"].startswith("pending") and "pending" in wanted)]
    entries = [_list_entry(r) for r in sorted(releases, key=lambda r: r["name"])]
    fmt = _flag(flags, "--output", "table")
    if fmt == "table":
        lines = ["NAME\tNAMESPACE\tREVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION"]
        lines += ["\t".join([e["name"], e["namespace"], e["revision"], e["updated"], e["status"],
                             e["chart"], e["app_version"]]) for e in entries]
        return "\n".join(lines) + "\n"
    if fmt == "yaml" and not entries:
        return "[]\n"
    return _dump(entries, fmt)


def _release(flags, positionals, what):
    if len(positionals) != 1:
        raise HelmError('Error: "helm %s" requires 1 argument' % what)
    rel = _load_releases().get(_key(_namespace(flags), positionals[0]))
    if rel is None or rel["status"] == "uninstalled":
        raise HelmError("Error: release: not found")
    return rel


def cmd_get_values(flags, positionals):
    rel = _release(flags, positionals, "get values")
    values = rel["values"]
    if _bool(flags, "--all"):
        values = _merge(rel.get("chart_defaults") or {}, values)
    fmt = _flag(flags, "--output", "yaml")
    if fmt == "table":
        return "USER-SUPPLIED VALUES:\n" + (yaml.safe_dump(values) if values else "null\n")
    if not values:
        return "null\n"
    return _dump(values, fmt)


def cmd_get_manifest(flags, positionals):
    rel = _release(flags, positionals, "get manifest")
    docs = rel.get("manifest") or []
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=True) for d in docs)


def cmd_status(flags, positionals):
    rel = _release(flags, positionals, "status")
    fmt = _flag(flags, "--output", "table")
    info = {"name": rel["name"], "namespace": rel["namespace"], "version": rel["revision"],
            "info": {"status": rel["status"], "last_deployed": rel["updated"]},
            "chart": {"metadata": {"name": rel["chart"], "version": rel["version"],
                                   "appVersion": rel.get("app_version", "")}},
            "config": rel["values"]}
    if fmt == "table":
        return ("NAME: %s\nLAST DEPLOYED: %s\nNAMESPACE: %s\nSTATUS: %s\nREVISION: %d\n"
                % (rel["name"], rel["updated"], rel["namespace"], rel["status"], rel["revision"]))
    return _dump(info, fmt)


def cmd_show_chart(flags, positionals):
    if len(positionals) != 1:
        raise HelmError('Error: "helm show chart" requires 1 argument')
    chart, _ = _load_chart(positionals[0], flags)
    return yaml.safe_dump(chart, sort_keys=False)


def cmd_deploy(command, flags, positionals):
    if len(positionals) != 2:
        raise HelmError('Error: "helm %s" requires 2 arguments\n\nUsage:  helm %s [RELEASE] [CHART] [flags]'
                        % (command, command))
    name, ref = positionals
    if command == "upgrade" and not _bool(flags, "--install"):
        pass
    if _is_v4() and flags.get("--atomic"):
        raise HelmError("Error: unknown flag: --atomic")
    if not _is_v4() and (flags.get("--rollback-on-failure") or flags.get("--force-replace")
                         or flags.get("--server-side") or flags.get("--force-conflicts")):
        bad = next(f for f in ("--rollback-on-failure", "--force-replace", "--server-side", "--force-conflicts")
                   if flags.get(f))
        raise HelmError("Error: unknown flag: %s" % bad)
    ns = _namespace(flags)
    releases = _load_releases()
    key = _key(ns, name)
    existing = releases.get(key)
    if existing and existing["status"] == "uninstalled":
        existing = None
    if command == "install" and existing and not _bool(flags, "--replace"):
        raise HelmError("Error: INSTALLATION FAILED: cannot re-use a name that is still in use")
    if command == "upgrade" and not existing and not _bool(flags, "--install"):
        raise HelmError('Error: UPGRADE FAILED: "%s" has no deployed releases' % name)
    chart, manifest = _load_chart(ref, flags)
    previous = None
    if existing and (_bool(flags, "--reuse-values") and not _bool(flags, "--reset-values")):
        previous = existing["values"]
    values = _user_values(flags, previous)
    fail = os.environ.get("HELM_DOUBLE_FAIL", "")
    if fail in (command, "%s:%s" % (command, name)):
        raise HelmError("Error: UPGRADE FAILED: forced failure (HELM_DOUBLE_FAIL=%s)" % fail)
    applied = _apply_manifest(manifest, name, ns, _bool(flags, "--skip-crds"))
    revision = (existing["revision"] + 1) if existing else 1
    releases[key] = {
        "name": name, "namespace": ns, "chart": chart["name"], "version": str(chart["version"]),
        "app_version": str(chart.get("appVersion", "")), "values": values, "revision": revision,
        "status": "deployed", "updated": _now(), "chart_ref": ref, "repo": _flag(flags, "--repo"),
        "wait": _bool(flags, "--wait"), "timeout": _flag(flags, "--timeout"),
        "manifest": [_substitute(o, name, ns) for o in manifest], "applied": applied,
    }
    _save_releases(releases)
    if existing:
        return 'Release "%s" has been upgraded. Happy Helming!\nNAME: %s\nNAMESPACE: %s\nSTATUS: deployed\nREVISION: %d\n' % (
            name, name, ns, revision)
    return 'Release "%s" does not exist. Installing it now.\nNAME: %s\nNAMESPACE: %s\nSTATUS: deployed\nREVISION: 1\n' % (
        name, name, ns)


def cmd_uninstall(flags, positionals):
    if len(positionals) < 1:
        raise HelmError('Error: "helm uninstall" requires at least 1 argument')
    releases = _load_releases()
    out = ""
    for name in positionals:
        key = _key(_namespace(flags), name)
        if key not in releases or releases[key]["status"] == "uninstalled":
            if _bool(flags, "--ignore-not-found"):
                continue
            raise HelmError("Error: uninstall: Release not loaded: %s: release: not found" % name)
        if _bool(flags, "--keep-history"):
            releases[key]["status"] = "uninstalled"
        else:
            del releases[key]
        out += 'release "%s" uninstalled\n' % name
    _save_releases(releases)
    return out


def run(argv):
    global _KUBECONFIG_FLAG
    command, positionals, flags = parse(argv)
    _KUBECONFIG_FLAG = _flag(flags, "--kubeconfig")
    if command == "version":
        # Like Helm, `version` needs no state (the apply preflight asks it before any release);
        # it is recorded when the test gave the double a state directory.
        if os.environ.get("HELM_DOUBLE_STATE"):
            _record(argv, command, flags)
        return cmd_version(flags)
    _record(argv, command, flags)
    if command == "plugin list":
        return cmd_plugin_list(flags)
    if command == "list":
        return cmd_list(flags)
    if command == "get values":
        return cmd_get_values(flags, positionals)
    if command == "get manifest":
        return cmd_get_manifest(flags, positionals)
    if command in ("get notes", "get hooks"):
        _release(flags, positionals, command)
        return ""
    if command == "status":
        return cmd_status(flags, positionals)
    if command == "show chart":
        return cmd_show_chart(flags, positionals)
    if command == "show values":
        _load_chart(positionals[0], flags)
        return "{}\n"
    if command in ("upgrade", "install"):
        return cmd_deploy(command, flags, positionals)
    if command == "uninstall":
        return cmd_uninstall(flags, positionals)
    if command == "repo add":
        if len(positionals) != 2:
            raise HelmError('Error: "helm repo add" requires 2 arguments')
        return '"%s" has been added to your repositories\n' % positionals[0]
    if command == "repo update":
        return "Hang tight while we grab the latest from your chart repositories...\nUpdate Complete. Happy Helming!\n"
    if command == "repo list":
        return "Error: no repositories to show\n"
    if command.startswith("dependency"):
        return "Saving 0 charts\nDeleting outdated charts\n"
    raise HelmError('Error: unknown command "%s" for "helm"' % command)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        out = run(argv)
    except HelmError as exc:
        sys.stderr.write(str(exc).rstrip("\n") + "\n")
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
