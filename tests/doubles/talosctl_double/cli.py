"""Command line of the talosctl test double: stands in for talosctl v1.13.9.

Honours the CLI contract the collection relies on (platform brief section 1): command and
flag names, bare cobra-style errors (``unknown flag: --x``, ``unknown shorthand flag: 'n' in
-n``, ``unknown command "x" for "talosctl"`` + blank line + usage, exit 1), node flags only on
commands that talk to nodes (and ``config *``), per-node gRPC errors wrapped as
``1 error occurred:\\n\\t* IP: rpc error: code = X desc = Y``, JSON object streams for
``get -o json``, the ``apply-config --dry-run`` summary on stderr, maintenance vs configured
nodes (mTLS to a maintenance node fails with x509, --insecure to a configured node fails the
handshake), bootstrap/etcd state and ``health`` node-list matching.

Verified against the v1.13.9 sources (cmd/talosctl/cmd/talos/{get,service,etcd}.go,
pkg/machinery/client/reply.go, internal/app/machined/pkg/controllers/v1alpha1/service.go,
internal/app/machined/pkg/system/{service_runner.go,services/etcd.go},
internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go EtcdMemberList):

* machine API calls (version, bootstrap, apply-config, etcd members, service, kubeconfig, health)
  go through apid per node: a node's error arrives as ``<prefix>: 1 error occurred:`` + ``\t* IP:
  rpc error: ...``; ``get`` (COSI) prints transport errors bare (``rpc error: code = Unavailable
  desc = connection error: ...``) and per-resource errors as ``1 error occurred:`` + ``\t* rpc error:
  ...`` without the node;
* a node whose API is down: the dial to ``IP:50000`` is refused at once or times out (``i/o timeout``);
* the ``Services`` resource of a service exists only while the service runs, so ``get services
  etcd`` on a control plane whose etcd waits for bootstrap fails with ``NotFound: resource
  Services.v1alpha1.talos.dev(runtime/etcd@undefined) doesn't exist``; ``service etcd`` shows
  ``STATE Preparing`` / ``HEALTH ?`` then; ``EtcdMembers`` ``local`` exists once the node is a member;
* ``etcd members`` asks the node's local etcd client (127.0.0.1:2379): before the node runs etcd it
  is refused at once or blocks until a deadline and ends with ``DeadlineExceeded``
  (``pre_bootstrap_etcd`` in state.py); on workers it is ``Unimplemented``.

The simulated machines live in ``$TALOSCTL_DOUBLE_STATE`` (see state.py). Environment:
``TALOSCTL_DOUBLE_STRICT=1`` turns silent real-world misuse (``--insecure`` with several
nodes) into loud failures; ``TALOSCTL_DOUBLE_LATENCY`` adds seconds to every node call;
``TALOSCTL_DOUBLE_VERSION`` overrides the client version (default v1.13.9).
"""

from __future__ import annotations

import base64
import datetime
import difflib
import hashlib
import os
import re
import sys
import time

import yaml

from talosctl_double import state as st
from talosctl_double.flags import Flag, UsageError, parse_flags as parse_typed_flags

VERSION = "v1.13.9"
SHA = "4a7f6f3b"

# flag spec: long name -> (shorthand or None, takes_value, default)
GLOBAL_FLAGS = {
    "talosconfig": (None, True, None),
    "nodes": ("n", True, None),
    "endpoints": ("e", True, None),
    "context": (None, True, None),
    "cluster": (None, True, None),
    "help": ("h", False, False),
}

COMMANDS = {
    ("version",): {"client": (None, False, False), "short": (None, False, False), "insecure": ("i", False, False),
                   "json": (None, False, False)},
    ("get",): {"output": ("o", True, "table"), "namespace": (None, True, ""), "insecure": ("i", False, False),
               "watch": ("w", False, False)},
    ("apply-config",): {"file": ("f", True, ""), "insecure": ("i", False, False), "mode": ("m", True, "auto"),
                        "dry-run": (None, False, False), "config-patch": ("p", True, None),
                        "cert-fingerprint": (None, True, None), "timeout": (None, True, "1m0s")},
    ("bootstrap",): {"recover-from": (None, True, ""), "recover-skip-hash-check": (None, False, False)},
    ("etcd", "members"): {},
    ("kubeconfig",): {"force": ("f", False, False), "merge": ("m", False, True),
                      "force-context-name": (None, True, "")},
    ("health",): {"wait-timeout": (None, True, "20m0s"), "server": (None, False, True),
                  "control-plane-nodes": (None, True, ""), "worker-nodes": (None, True, ""),
                  "init-node": (None, True, ""), "k8s-endpoint": (None, True, ""), "run-e2e": (None, False, False)},
    ("service",): {},
}
# commands dispatched to gen.py (owned by another engineer)
GEN_COMMANDS = [("gen", "secrets"), ("gen", "config"), ("machineconfig", "patch"), ("validate",),
                ("config", "endpoint"), ("config", "node"), ("config", "info")]
OFFLINE_HEADS = {"gen", "machineconfig", "validate"}
APPLY_MODES = ("auto", "no-reboot", "reboot", "staged", "try")
PREFIX = {
    "version": "error getting version",
    "get": None,  # COSI calls: errors are printed without a prefix (see module docstring)
    "apply-config": "error applying new configuration",
    "bootstrap": "error executing bootstrap",
    "etcd members": "error getting members",
    "kubeconfig": "error copying",
    "service": "error listing services",
    "health": "error checking health",
}

# commands whose node errors are not wrapped per node (COSI resource calls, one node at a time)
ONE2ONE = {"get"}

RESOURCES = {
    "machinestatus": ("MachineStatuses.runtime.talos.dev", "runtime", "machinestatuses", "MachineStatus"),
    "members": ("Members.cluster.talos.dev", "cluster", "member", "Member"),
    "etcdmember": ("EtcdMembers.etcd.talos.dev", "etcd", "etcdmembers", "EtcdMember"),
    "services": ("Services.v1alpha1.talos.dev", "runtime", "service", "Service"),  # alias svc
    "machinetype": ("MachineTypes.config.talos.dev", "config", "machinetypes", "MachineType"),
    "extensions": ("ExtensionStatuses.runtime.talos.dev", "runtime", "extensions", "ExtensionStatus"),
    "kubeletspecs": ("KubeletSpecs.kubernetes.talos.dev", "k8s", "kubeletspec", "KubeletSpec"),
}
# resources the maintenance API serves over --insecure
MAINTENANCE_RESOURCES = {"machinestatus", "machinetype"}


class Fail(Exception):
    """Exit 1 with this text on stderr."""


class Ctx(object):
    """What a command handler (also gen.py's) gets: state dir, streams, record(), strict."""

    def __init__(self, state_dir, stdout, stderr, strict):
        self.state_dir = state_dir
        self.stdout = stdout
        self.stderr = stderr
        self.strict = strict
        self.details = []

    def record(self, data):
        self.details.append(data)


def usage(cmd):
    return "Usage:\n  talosctl %s [flags]\n\nUse \"talosctl %s --help\" for more information about a command.\n" % (
        " ".join(cmd), " ".join(cmd))


def split_command(argv):
    """Find the command words (skipping global flags and their values); returns (words, rest)."""
    words = []
    rest = []
    i = 0
    known = sorted(list(COMMANDS) + GEN_COMMANDS, key=len, reverse=True)
    taking = True
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            rest.append(a)
            name = a.lstrip("-").split("=", 1)[0]
            if "=" not in a and (name in ("talosconfig", "nodes", "endpoints", "context", "cluster", "n", "e")) \
                    and i + 1 < len(argv):
                rest.append(argv[i + 1])
                i += 1
            i += 1
            continue
        if taking:
            cand = tuple(words + [a])
            if any(k[:len(cand)] == cand for k in known):
                words.append(a)
                i += 1
                if cand in known and not any(len(k) > len(cand) and k[:len(cand)] == cand for k in known):
                    taking = False
                continue
            taking = False
        rest.append(a)
        i += 1
    return tuple(words), rest


def parse_flags(args, spec):
    """Node-command specs are ``{name: (short, takes_value, default)}``: a flag that takes a value
    comes back as the list of its values (repeatable), or its default when not given; a bool
    flag as True/False. Returns (flags, positionals)."""
    typed = [Flag(name, short, "array" if takes else "bool", None if takes else default)
             for name, (short, takes, default) in spec.items()]
    opts, pos, seen = parse_typed_flags(args, typed)
    out = {}
    for name, (_short, takes, default) in spec.items():
        out[name] = (opts[name] if name in seen else default) if takes else opts[name]
    return out, pos


def csv(values):
    out = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def last(values):
    return values[-1] if isinstance(values, list) else values


def go_duration(text):
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)(ms|h|m|s)", text or ""):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def wrap(prefix, errors, with_node=True):
    """Render errors the way talosctl does: hashicorp multierror ("%d errors occurred:\n\t%s\n\n")
    printed with Println (one more newline); machine API errors carry the node (client.NodeError),
    COSI errors of ``get`` do not and have no prefix."""
    head = "%d error%s occurred:" % (len(errors), "" if len(errors) == 1 else "s")
    lines = ["%s: %s" % (prefix, head) if prefix else head]
    for ip, code, desc in errors:
        lines.append("\t* %srpc error: code = %s desc = %s" % ("%s: " % ip if with_node else "", code, desc))
    return "\n".join(lines) + "\n\n\n"


def dial_error(ip, how, port=50000):
    """(code, desc) of a failed gRPC dial to *ip*:*port*: ``refused`` at once, ``timeout`` after the dial timeout."""
    why = "i/o timeout" if how == "timeout" else "connect: connection refused"
    return ("Unavailable", 'connection error: desc = "transport: Error while dialing: dial tcp %s:%s: %s"'
            % (ip, port, why))


# `etcd members` on a control plane whose etcd does not run (its local client dials 127.0.0.1:2379)
ETCD_LOCAL_REFUSED = dial_error("127.0.0.1", "refused", 2379)
ETCD_LOCAL_DEADLINE = ("DeadlineExceeded", "context deadline exceeded")


X509 = ('connection error: desc = "transport: authentication handshake failed: tls: failed to verify '
        'certificate: x509: certificate signed by unknown authority"')
CERT_REQUIRED = ('connection error: desc = "transport: authentication handshake failed: remote error: '
                 'tls: certificate required"')


# --- talosconfig ---------------------------------------------------------------------------
def load_talosconfig(path, context=None):
    if not path:
        path = os.environ.get("TALOSCONFIG")
        if not path:
            home = os.path.expanduser("~/.talos/config")
            path = home if os.path.exists(home) else None
    if not path:
        return None
    if not os.path.exists(path):
        raise Fail("open %s: no such file or directory" % path)
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    name = context or data.get("context")
    ctxs = data.get("contexts") or {}
    if name not in ctxs:
        raise Fail('context "%s" is not defined in \'contexts\' key in config' % name)
    return ctxs[name] or {}


# --- machine config ------------------------------------------------------------------------
def read_machine_config(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        raise Fail("open %s: no such file or directory" % path)
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise Fail("failed to parse config: %s" % str(e).splitlines()[0])
    v1 = None
    for d in docs:
        if isinstance(d, dict) and d.get("version") == "v1alpha1" and "kind" not in d:
            v1 = d
    return text, docs, v1


def canonical(docs):
    return yaml.safe_dump_all(docs, sort_keys=True, default_flow_style=False)


# Fields of the v1alpha1 document Talos applies without a reboot (Runtime.CanApplyImmediate, v1.13.9):
# .debug, .cluster and these machine keys (features: these sub-keys). Documents other than v1alpha1
# are applied immediately as well.
IMMEDIATE_MACHINE_KEYS = ("ca", "acceptedCAs", "time", "certSANs", "install", "network", "sysfs", "sysctls",
                          "logging", "controlPlane", "kubelet", "kernel", "registries", "pods", "seccompProfiles",
                          "nodeAnnotations", "nodeLabels", "nodeTaints")
IMMEDIATE_FEATURE_KEYS = ("kubernetesTalosAPIAccess", "kubePrism", "hostDNS", "imageCache", "nodeAddressSortAlgorithm")


def _v1alpha1(docs):
    for d in docs:
        if isinstance(d, dict) and d.get("version") == "v1alpha1" and "kind" not in d:
            return d
    return None


def immediate_diff(old_docs, new_docs):
    """What of the v1alpha1 document cannot be applied without a reboot (None: everything can)."""
    import copy
    old, new = _v1alpha1(old_docs), _v1alpha1(new_docs)
    if old is None or new is None:
        return None
    def keep_old(dst, src, keys):
        """The fields Talos applies at once are taken from the old config: what differs then needs a reboot."""
        if isinstance(dst, dict) and isinstance(src, dict):
            for key in keys:
                if key in src:
                    dst[key] = copy.deepcopy(src[key])
                else:
                    dst.pop(key, None)
    new = copy.deepcopy(new)
    keep_old(new, old, ("debug", "cluster"))
    keep_old(new.get("machine"), old.get("machine"), IMMEDIATE_MACHINE_KEYS)
    keep_old((new.get("machine") or {}).get("features"), (old.get("machine") or {}).get("features"),
             IMMEDIATE_FEATURE_KEYS)
    if canonical([old]) == canonical([new]):
        return None
    return "".join(difflib.unified_diff(canonical([old]).splitlines(True), canonical([new]).splitlines(True),
                                        "a", "b"))


def needs_reboot(old_docs, new_docs):
    return immediate_diff(old_docs, new_docs) is not None


# --- the simulated node side -----------------------------------------------------------------
class Session(object):
    def __init__(self, ctx, command, globals_):
        self.ctx = ctx
        self.command = command
        self.key = " ".join(command)
        self.globals = globals_
        if not ctx.state_dir:
            raise Fail("talosctl double: TALOSCTL_DOUBLE_STATE is not set (the directory holding the simulated cell)")

    def targets(self, insecure):
        nodes = csv(self.globals.get("nodes"))
        endpoints = csv(self.globals.get("endpoints"))
        tc = None
        if not insecure:
            tc = load_talosconfig(last(self.globals.get("talosconfig")), last(self.globals.get("context")))
            if tc is not None:
                endpoints = endpoints or list(tc.get("endpoints") or [])
                nodes = nodes or list(tc.get("nodes") or [])
            if not endpoints:
                raise Fail("failed to determine endpoints")
            nodes = nodes or endpoints[:1]
        else:
            if not nodes:
                nodes = endpoints[:1]
            if not nodes:
                raise Fail("failed to determine endpoints")
        return nodes, endpoints, tc

    def injected(self, cell, ip):
        for f in cell.cluster["fail_next"]:
            if f["command"] == self.key and f["count"] > 0 and (f.get("node") in (None, ip)):
                f["count"] -= 1
                return f["code"], f["desc"]
        return None

    def tick(self, cell, node):
        """A call reached *node*: a rebooting node counts down, installing -> running, a control plane
        that waits to join etcd counts down and joins."""
        if node["stage"] == "installing":
            if node["install_calls_left"] > 0:
                node["install_calls_left"] -= 1
            if node["install_calls_left"] <= 0:
                node["stage"] = "running"
                node["reboots"] += 1
        if node["stage"] == "running" and node["machine_type"] == "controlplane" and not node["etcd_member_id"] \
                and not node.get("etcd_left") and not node.get("etcd_data"):
            if node.get("join_calls_left") is None:
                if running_etcd_cluster(cell) is not None:
                    start_joining(cell, node)
            elif node["join_calls_left"] > 0:
                node["join_calls_left"] -= 1
            else:
                join_etcd(cell, node)

    def down(self, cell, ip):
        """(code, desc) when the Talos API of *ip* does not answer (down or rebooting), else None."""
        n = cell.nodes.get(ip)
        if n is None:
            return dial_error(ip, "refused")
        if n.get("unreachable") == "timeout":
            self.delay = max(self.delay, float(cell.cluster.get("dial_timeout_seconds") or 0))
            return dial_error(ip, "timeout")
        if n.get("unreachable"):
            return dial_error(ip, "refused")
        if n.get("reboot_calls_left", 0) > 0:
            n["reboot_calls_left"] -= 1
            return dial_error(ip, "refused")
        if float(n.get("down_until") or 0) > time.time():
            # rebooting into a new Talos (upgrade, reset --reboot): the API is not up yet
            return dial_error(ip, "refused")
        return None

    def connect(self, cell, ips, endpoints, tc, insecure):
        """Check transport for each target; returns (ok_nodes, errors[(ip, code, desc)]).

        Raises Fail for endpoint-level failures (printed unwrapped, like talosctl)."""
        prefix = PREFIX.get(self.key, "error")
        lead = "%s: " % prefix if prefix else ""
        if not insecure:
            ep = endpoints[0]
            epn = cell.nodes.get(ep)
            failed = self.down(cell, ep)
            if failed:
                raise Fail("%srpc error: code = %s desc = %s" % ((lead,) + failed))
            self.tick(cell, epn)
            if epn["stage"] == "maintenance" or not tc or (tc.get("ca") or "").strip() != (epn.get("ca") or ""):
                raise Fail("%srpc error: code = Unavailable desc = %s" % (lead, X509))
        ok, errors = [], []
        for ip in ips:
            n = cell.nodes.get(ip)
            failed = self.down(cell, ip) if (insecure or ip not in endpoints[:1]) else None
            if failed:
                errors.append((ip,) + failed)
                continue
            if insecure:
                self.tick(cell, n)
                if n["stage"] != "maintenance":
                    errors.append((ip, "Unavailable", CERT_REQUIRED))
                    continue
            elif ip not in endpoints[:1]:
                self.tick(cell, n)
                if n["stage"] == "maintenance" or (tc.get("ca") or "").strip() != (n.get("ca") or ""):
                    errors.append((ip, "Unavailable", X509))
                    continue
            inj = self.injected(cell, ip)
            if inj:
                errors.append((ip,) + tuple(inj))
                continue
            ok.append(n)
        if errors and self.key in ONE2ONE:
            # COSI calls dial each node on their own: a transport failure is the error of the call
            raise Fail("rpc error: code = %s desc = %s" % errors[0][1:])
        return ok, errors


def start_joining(cell, node):
    """After bootstrap a running control plane waits `join_calls` calls (etcd Preparing), then joins."""
    node["join_calls_left"] = int(cell.cluster.get("join_calls") or 0)
    if node["join_calls_left"] <= 0:
        join_etcd(cell, node)


def running_etcd_cluster(cell):
    """Number (str) of the newest etcd cluster that has a running member, or None."""
    running = sorted((int(k) for k, info in (cell.cluster.get("etcd") or {}).items()
                      if any(etcd_running(m) and m.get("etcd_member_id") in info.get("members", {})
                             for m in cell.nodes.values())), reverse=True)
    return str(running[0]) if running else None


def join_etcd(cell, node):
    """The node joins the etcd cluster that runs, as Talos' etcd service does (services/etcd.go addMember): a
    member with the node's hostname is removed first (a replaced machine), then the node is added with a new
    member ID. Both membership changes need a quorum; a member with the node's address under another name makes
    etcd refuse the new one ("Peer URLs already exists"). Until it can join, the node waits (etcd Preparing)."""
    number = running_etcd_cluster(cell)
    if number is None:
        node["join_calls_left"] = 0   # nothing to join yet: try again on the next call
        return
    info = cell.cluster["etcd"][number]
    from talosctl_double import day2
    same_name = [mid for mid, m in info["members"].items() if m["name"] == node["name"]]
    if same_name and not day2.quorum_ok(cell, number):
        node["join_calls_left"] = 0
        node["join_blocked"] = "error removing self from the member list: etcdserver: unhealthy cluster"
        return
    for mid in same_name:
        info["members"].pop(mid)
        st.record_event(cell, node["ip"], "etcd-remove-member", member=mid, cluster=int(number), by=node["ip"])
    clash = [mid for mid, m in info["members"].items() if m["ip"] == node["ip"]]
    if clash:
        node["join_calls_left"] = 0
        node["join_blocked"] = "error adding member: etcdserver: Peer URLs already exists (member %s)" % clash[0]
        return
    node.pop("join_blocked", None)
    cell.cluster["member_serial"] = int(cell.cluster.get("member_serial") or 0) + 1
    new_id = st.member_id(node["ip"], cell.cluster["member_serial"])
    node["etcd_member_id"] = new_id
    node["etcd_data"] = True
    node["etcd_cluster"] = int(number)
    node["join_calls_left"] = None
    info["members"][new_id] = {"name": node["name"], "ip": node["ip"]}
    st.record_event(cell, node["ip"], "etcd-join", member=new_id, cluster=int(number))


def latency():
    try:
        lat = float(os.environ.get("TALOSCTL_DOUBLE_LATENCY") or 0)
    except ValueError:
        lat = 0
    if lat > 0:
        time.sleep(lat)


def hang(ctx, key):
    seconds = st.cluster(ctx.state_dir).get("hang", {}).get(key) if ctx.state_dir and os.path.exists(
        os.path.join(ctx.state_dir, "cluster.json")) else None
    if seconds:
        time.sleep(float(seconds))


def crash(cell, key, answered):
    """Nodes scheduled to die after answering *key* (state.crash_after) go down now."""
    ips = set(n["ip"] for n in answered)
    for entry in list(cell.cluster.get("crash_after") or []):
        if entry["command"] == key and entry["node"] in ips:
            cell.nodes[entry["node"]]["unreachable"] = "refused"
            cell.cluster["crash_after"].remove(entry)


def node_command(ctx, command, flags, pos, handler, insecure=False):
    """Common frame: latency/hang outside the lock, connect, run handler per node, wrap errors.

    A handler (or connect) that must block - a dial that times out, an etcd call that waits for its
    deadline - sets ``sess.delay``: the process sleeps after releasing the lock, before it prints,
    so other talosctl processes go on and a caller's timeout really stops it mid-wait."""
    sess = Session(ctx, command, flags)
    sess.delay = 0.0
    latency()
    hang(ctx, sess.key)
    failure = None
    with st.locked(ctx.state_dir):
        cell = st.Cell(ctx.state_dir)
        try:
            nodes, endpoints, tc = sess.targets(insecure)
            ok, errors = sess.connect(cell, nodes, endpoints, tc, insecure)
            rc = handler(sess, cell, ok, errors, tc, nodes)
            crash(cell, sess.key, ok)
        except Fail as e:
            failure = e
        finally:
            cell.save()
    if sess.delay > 0:
        time.sleep(sess.delay)
    if failure is not None:
        raise failure
    if errors:
        ctx.stderr.write(wrap(PREFIX.get(sess.key, "error"), errors, with_node=sess.key not in ONE2ONE))
        return 1
    return rc


# --- commands ------------------------------------------------------------------------------
def cmd_version(ctx, flags, pos):
    client = "Client:\n" + ("Talos %s\n" % client_version() if flags["short"] else
                            "\tTag:         %s\n\tSHA:         %s\n\tBuilt:       \n\tGo version:  go1.25.4\n"
                            "\tOS/Arch:     linux/amd64\n" % (client_version(), SHA))
    if flags["client"]:
        ctx.stdout.write(client)
        return 0

    def handler(sess, cell, ok, errors, tc, nodes):
        out = [client, "Server:\n"]
        for n in ok:
            # the server part is always the long form (version.PrintLongVersionFromExisting), --short or not
            out.append("\tNODE:        %s\n\tTag:         %s\n\tSHA:         %s\n\tBuilt:       \n"
                       "\tGo version:  go1.25.4\n\tOS/Arch:     linux/amd64\n\tEnabled:     RBAC\n"
                       % (n["ip"], node_version(cell, n), SHA))
        ctx.stdout.write("".join(out))
        if errors and ok:
            # some nodes answered: talosctl warns and exits 0 (brief 1.0)
            for ip, code, desc in errors:
                ctx.stderr.write("WARNING: %s: rpc error: code = %s desc = %s\n" % (ip, code, desc))
            del errors[:]
        return 0
    return node_command(ctx, ("version",), flags, pos, handler, insecure=flags["insecure"])


def node_version(cell, n):
    """The Talos version node *n* runs (what its installer image carried; the boot image in maintenance)."""
    if n["stage"] == "maintenance" or not n.get("version"):
        return cell.cluster.get("boot_version") or VERSION
    return n["version"]


def client_version():
    return os.environ.get("TALOSCTL_DOUBLE_VERSION") or VERSION


def resource_objects(cell, n, rtype):
    full, ns, _, _ = RESOURCES[rtype]
    ts = "2026-11-26T10:00:00Z"

    def obj(rid, spec, nsp=ns, phase="running"):
        return {"node": n["ip"], "metadata": {"namespace": nsp, "type": full, "id": rid, "version": 1,
                                              "owner": "", "phase": phase, "created": ts, "updated": ts},
                "spec": spec}
    if rtype == "machinestatus":
        ready = n["stage"] == "running"
        unmet = [] if ready else [{"name": "config", "reason": "waiting for config"}] \
            if n["stage"] == "maintenance" else [{"name": "install", "reason": "installing"}]
        return [obj("machine", {"stage": n["stage"], "status": {"ready": ready, "unmetConditions": unmet}})]
    if rtype == "machinetype":
        return [obj("machine-type", n["machine_type"] or "unknown")]
    if rtype == "etcdmember":
        if n.get("etcd_member_id"):
            return [obj("local", {"memberID": n["etcd_member_id"]})]
        return []
    if rtype == "members":
        out = []
        for m in cell.nodes.values():
            if m["stage"] != "running":
                continue
            cp = {"apiServerPort": 6443} if m["machine_type"] == "controlplane" else None
            out.append(obj(m["name"], {"nodeId": hashlib.sha256(m["ip"].encode()).hexdigest()[:43],
                                       "addresses": [m["ip"]], "hostname": m["name"],
                                       "machineType": m["machine_type"], "operatingSystem": "Talos (%s)" % node_version(cell, m),
                                       "controlPlane": cp}))
        return out
    if rtype == "extensions":
        # the Image Factory schematic shows up as the pseudo-extension "schematic" (version = schematic ID)
        if not n.get("schematic") or n["stage"] == "maintenance":
            return []
        return [obj("0", {"image": "", "metadata": {"name": "schematic", "version": n["schematic"],
                                                   "author": "Image Factory",
                                                   "description": "Image Factory schematic of this image"}})]
    if rtype == "kubeletspecs":
        image = node_kubelet_image(n)
        return [obj("kubelet", {"image": image, "args": [], "expectedNodename": n["name"], "config": {}})] \
            if image else []
    if rtype == "services":
        # v1alpha1.ServiceController keeps a Services resource only while the service is Running
        return [obj(sid, {"running": True, "healthy": health == "OK", "unknown": health == "?"})
                for sid, state, health, _events in service_states(n) if state == "Running"]
    return []


def node_v1alpha1(n):
    """The v1alpha1 document of the node's applied config (or None)."""
    if not n.get("config"):
        return None
    return _v1alpha1([d for d in yaml.safe_load_all(n["config"]) if d is not None])


def node_kubelet_image(n):
    v1 = node_v1alpha1(n)
    return (((v1 or {}).get("machine") or {}).get("kubelet") or {}).get("image") if v1 else None


def resolve_resource(name):
    low = name.lower()
    for key, (full, _, alias, kind) in RESOURCES.items():
        if low in (key, alias, kind.lower(), full.lower(), full.split(".")[0].lower()) or \
                (key == "services" and low == "svc"):
            return key
    return None


def emit(ctx, objs, output):
    import json
    if output == "json":
        for o in objs:   # Go's encoding/json: map keys sorted, 4-space indent, one object per resource
            ctx.stdout.write(json.dumps(o, indent=4, sort_keys=True) + "\n")
    elif output == "yaml":
        for o in objs:
            ctx.stdout.write("---\n" + yaml.safe_dump(o, sort_keys=False))
    elif output == "table":
        ctx.stdout.write("NODE   NAMESPACE   TYPE   ID   VERSION\n")
        for o in objs:
            m = o["metadata"]
            ctx.stdout.write("%s   %s   %s   %s   %s\n" % (o["node"], m["namespace"], m["type"].split(".")[0],
                                                           m["id"], m["version"]))
    else:
        raise UsageError('unknown output format: "%s"' % output)


def cmd_get(ctx, flags, pos):
    if not pos:
        raise UsageError("requires at least 1 arg(s), only received 0")
    rtype = resolve_resource(pos[0])
    output = last(flags["output"])
    if rtype is None:
        raise Fail('rpc error: code = NotFound desc = resource "%s" is not registered' % pos[0])

    def handler(sess, cell, ok, errors, tc, nodes):
        objs = []
        for n in ok:
            if flags["insecure"] and rtype not in MAINTENANCE_RESOURCES:
                errors.append((n["ip"], "PermissionDenied", "not authorized"))
                continue
            for o in resource_objects(cell, n, rtype):
                if len(pos) > 1 and o["metadata"]["id"] != pos[1]:
                    continue
                objs.append(o)
        if len(pos) > 1 and not objs and not errors:
            full, ns = RESOURCES[rtype][0], last(flags["namespace"]) or RESOURCES[rtype][1]
            errors.extend((n["ip"], "NotFound", "resource %s(%s/%s@undefined) doesn't exist" % (full, ns, pos[1]))
                          for n in ok)
        emit(ctx, objs, output)
        return 0
    return node_command(ctx, ("get",), flags, pos, handler, insecure=flags["insecure"])


def cmd_apply(ctx, flags, pos):
    mode = last(flags["mode"])
    if mode not in APPLY_MODES:
        raise UsageError('invalid argument "%s" for "-m, --mode" flag: valid values are %s'
                         % (mode, ", ".join(APPLY_MODES)))
    path = last(flags["file"])
    if not path:
        raise Fail("no filename supplied for configuration")
    if flags["config-patch"]:
        raise Fail("talosctl double: apply-config --config-patch is not modelled; patch the file first")
    text, docs, v1 = read_machine_config(path)
    insecure = flags["insecure"]
    nodes_req = csv(flags.get("nodes"))
    if insecure and len(nodes_req) > 1:
        if ctx.strict:
            raise Fail("talosctl double (strict): apply-config --insecure with several nodes %s applies only to "
                       "the first node (siderolabs/talos#11773); call it once per node" % nodes_req)
        flags = dict(flags, nodes=[nodes_req[0]])
    ctx.record({"apply_file_sha256": hashlib.sha256(text.encode()).hexdigest(), "mode": mode,
                "dry_run": flags["dry-run"], "insecure": insecure})

    def handler(sess, cell, ok, errors, tc, nodes):
        for n in ok:
            ip = n["ip"]
            if v1 is None:
                errors.append((ip, "InvalidArgument", "the applied machine configuration doesn't contain v1alpha1 "
                                                      "config, did you mean to apply a patch?"))
                continue
            mtype = (v1.get("machine") or {}).get("type")
            if mtype not in ("controlplane", "worker"):
                errors.append((ip, "InvalidArgument", 'config validation failed: unknown machine type "%s"' % mtype))
                continue
            if n["stage"] == "installing":
                errors.append((ip, "FailedPrecondition", "configuration was already applied and node is rebooting, "
                                                         "cannot apply more configuration changes until next reboot"))
                continue
            if n["machine_type"] and n["machine_type"] != mtype:
                errors.append((ip, "InvalidArgument", "machine type can't be changed"))
                continue
            old_docs = list(yaml.safe_load_all(n["config"])) if n["config"] else []
            old_docs = [d for d in old_docs if d is not None]
            reboot = n["stage"] == "maintenance" or needs_reboot(old_docs, docs)
            if mode in ("no-reboot", "try") and reboot and n["stage"] != "maintenance":
                errors.append((ip, "InvalidArgument", "this config change can't be applied in immediate mode "
                                                      "(a reboot is needed): %s"
                               % " ".join((immediate_diff(old_docs, docs) or "").split())[:200]))
                continue
            if flags["dry-run"]:
                if n["stage"] == "maintenance":
                    diff = "".join(difflib.unified_diff([], canonical(docs).splitlines(True), "a", "b"))
                else:
                    diff = "".join(difflib.unified_diff(canonical(old_docs).splitlines(True),
                                                        canonical(docs).splitlines(True), "a", "b"))
                ctx.stderr.write("Dry run summary:\nApplied configuration %s a reboot (skipped in dry-run).\n"
                                 "Config diff:\n\n%s\n" % ("with" if reboot else "without",
                                                          diff.rstrip("\n") if diff else "No changes."))
                continue
            n["apply_count"] += 1
            n["config"] = text
            n["machine_type"] = mtype
            machine = v1.get("machine") or {}
            n["ca"] = ((machine.get("ca") or {}).get("crt") or "").strip()
            cl = v1.get("cluster") or {}
            n["cluster"] = {"endpoint": (cl.get("controlPlane") or {}).get("endpoint"),
                            "name": cl.get("clusterName"), "ca": (cl.get("ca") or {}).get("crt")}
            if n["stage"] == "maintenance":
                # installs to disk and reboots: refuses `reboot_calls` calls, then answers over mTLS
                n["version"], n["schematic"] = st.install_image_version(
                    (machine.get("install") or {}).get("image"), cell.cluster.get("boot_version") or VERSION)
                n.update(etcd_member_id=None, etcd_data=False, etcd_cluster=None, etcd_left=False,
                         join_calls_left=None)
                n["stage"] = "installing"
                n["install_calls_left"] = int(cell.cluster.get("install_calls") or 0)
                n["reboot_calls_left"] = int(cell.cluster.get("reboot_calls") or 0)
                if n["install_calls_left"] == 0 and n["reboot_calls_left"] == 0:
                    sess.tick(cell, n)
                ctx.stdout.write("Applied configuration without a reboot\n")
            elif mode == "staged":
                ctx.stdout.write("Staged configuration to be applied after a reboot\n")
            elif reboot or mode == "reboot":
                n["reboots"] += 1
                ctx.stdout.write("Applied configuration with a reboot\n")
            else:
                ctx.stdout.write("Applied configuration without a reboot\n")
        return 0
    return node_command(ctx, ("apply-config",), flags, pos, handler, insecure=insecure)


def member_id(ip, seq=0):
    return st.member_id(ip, seq)


def read_snapshot(path):
    """(info, error) of a snapshot file the double wrote (see day2.write_snapshot); etcdutl's status check."""
    from talosctl_double import day2
    return day2.read_snapshot(path)


def cmd_bootstrap(ctx, flags, pos):
    if len(csv(flags.get("nodes"))) > 1:
        raise Fail('command "bootstrap" is not supported with multiple nodes')
    recover = last(flags["recover-from"])
    snapshot = None
    if recover:
        # talosctl checks the snapshot with etcdutl before it uploads it (EtcdRecover), then bootstraps
        snapshot, problem = read_snapshot(recover)
        if problem:
            raise Fail(problem)
        ctx.stdout.write('recovering from snapshot "%s": hash %08x, revision %d, total keys %d, total size %d\n'
                         % (recover, snapshot["hash"], snapshot["revision"], snapshot["keys"], snapshot["size"]))
        ctx.record({"recover_from_revision": snapshot["revision"]})

    def handler(sess, cell, ok, errors, tc, nodes):
        if len(nodes) > 1:
            raise Fail('command "bootstrap" is not supported with multiple nodes')
        for n in ok:
            if recover and (n["stage"] != "running" or n["machine_type"] != "controlplane"):
                raise Fail("error uploading snapshot: rpc error: code = FailedPrecondition desc = etcd service is not "
                           "ready for recovery yet")
            if n["etcd_data"]:
                errors.append((n["ip"], "AlreadyExists", "etcd data directory is not empty"))
            elif n["stage"] != "running" or n["machine_type"] != "controlplane":
                errors.append((n["ip"], "FailedPrecondition", "bootstrap is not available yet"))
            else:
                # an empty data directory: etcd starts a NEW cluster here (a second one if another runs)
                cell.cluster["etcd_clusters"] = int(cell.cluster.get("etcd_clusters") or 0) + 1
                number = cell.cluster["etcd_clusters"]
                cell.cluster["member_serial"] = int(cell.cluster.get("member_serial") or 0) + 1
                mid = member_id(n["ip"], cell.cluster["member_serial"])
                n.update(etcd_data=True, etcd_member_id=mid, etcd_cluster=number, join_calls_left=None,
                         etcd_left=False)
                cell.cluster["etcd"][str(number)] = {
                    "members": {mid: {"name": n["name"], "ip": n["ip"]}},
                    "revision": snapshot["revision"] if snapshot else 1}
                cell.cluster["bootstrapped"] = True
                cell.cluster["bootstrap_node"] = n["ip"]
                st.record_event(cell, n["ip"], "bootstrap", cluster=number,
                                recovered_revision=snapshot["revision"] if snapshot else None)
                for m in cell.nodes.values():
                    if m is not n and m["machine_type"] == "controlplane" and m["stage"] == "running" \
                            and not m["etcd_member_id"] and not m.get("etcd_data") and not m.get("etcd_left") \
                            and m.get("join_calls_left") is None:
                        start_joining(cell, m)
        return 0
    return node_command(ctx, ("bootstrap",), flags, pos, handler)


def tabulate(rows, padding=3):
    """Go text/tabwriter (minwidth 0, padding 3) over tab-separated *rows*: every cell but the last of a
    line is padded to its column's width + padding."""
    cells = [r.split("\t") for r in rows]
    widths = {}
    for line in cells:
        for i, c in enumerate(line[:-1]):
            widths[i] = max(widths.get(i, 0), len(c))
    return "".join("".join(c.ljust(widths[i] + padding) for i, c in enumerate(line[:-1])) + line[-1] + "\n"
                   for line in cells)


def etcd_running(n, now=None):
    """Whether the node's etcd runs: a control plane that is a member, up (not rebooting) and settled."""
    now = time.time() if now is None else now
    return (n["machine_type"] == "controlplane" and bool(n.get("etcd_member_id")) and not n.get("etcd_left")
            and not n.get("unreachable") and float(n.get("down_until") or 0) <= now
            and float(n.get("etcd_ready_at") or 0) <= now)


def etcd_members_of(cell, n):
    """[(member ID, name, ip)] etcd lists for the cluster node *n* is a member of."""
    info = (cell.cluster.get("etcd") or {}).get(str(n.get("etcd_cluster"))) or {}
    return sorted(((mid, m["name"], m["ip"]) for mid, m in (info.get("members") or {}).items()), key=lambda x: x[2])


def cmd_etcd_members(ctx, flags, pos):
    """EtcdMemberList(QueryLocal): answered by the node's local etcd client (127.0.0.1:2379)."""
    def handler(sess, cell, ok, errors, tc, nodes):
        rows = []
        for n in ok:
            if n["machine_type"] != "controlplane":
                errors.append((n["ip"], "Unimplemented", "member list is only available on control plane nodes"))
            elif not etcd_running(n):
                if cell.cluster.get("pre_bootstrap_etcd") == "hang":
                    # clientv3 waits for a connection until the request's deadline
                    sess.delay = max(sess.delay, float(cell.cluster.get("etcd_deadline_seconds") or 0))
                    errors.append((n["ip"],) + ETCD_LOCAL_DEADLINE)
                else:
                    errors.append((n["ip"],) + ETCD_LOCAL_REFUSED)
            else:
                for mid, name, ip in etcd_members_of(cell, n):
                    rows.append("%s\t%s\t%s\thttps://%s:2380\thttps://%s:2379\tfalse"
                                % (n["ip"], mid, name, ip, ip))
        if rows:
            ctx.stdout.write(tabulate(["NODE\tID\tHOSTNAME\tPEER URLS\tCLIENT URLS\tLEARNER"] + rows))
        return 0
    return node_command(ctx, ("etcd", "members"), flags, pos, handler)


# services a node runs (Talos 1.13 core services; etcd on control planes) and whether they health-check
SERVICES = {"apid": True, "containerd": True, "cri": True, "kubelet": True, "machined": False, "trustd": True,
            "udevd": False}


def service_states(n):
    """[(id, state, health, events newest last)] of node *n* as the service runner reports them."""
    out = []
    for sid in sorted(list(SERVICES) + (["etcd"] if n["machine_type"] == "controlplane" else [])):
        events = ["[Starting]: Starting service", '[Waiting]: Waiting for service "cri" to be "up"',
                  "[Preparing]: Running pre state"]
        if sid == "etcd" and not etcd_running(n):
            if n.get("etcd_left"):
                out.append((sid, "Finished", "?", events + ["[Finished]: Service finished successfully"]))
            else:
                out.append((sid, "Preparing", "?", events))
            continue
        events += ["[Preparing]: Creating service runner", "[Running]: Started task %s (PID 2045) for container %s"
                   % (sid, sid)]
        healthy = SERVICES.get(sid, True)
        if healthy:
            events.append("[Running]: Health check successful")
        out.append((sid, "Running", "OK" if healthy else "?", events))
    return out


def cmd_service(ctx, flags, pos):
    """service [<id>]: the list (NODE SERVICE STATE HEALTH LAST CHANGE LAST EVENT) or one service's details."""
    if len(pos) > 1 and pos[1] != "status":
        raise Fail("talosctl double: service %s is not modelled" % pos[1])

    def handler(sess, cell, ok, errors, tc, nodes):
        lines = []
        for n in ok:
            states = service_states(n)
            if pos:
                match = [x for x in states if x[0] == pos[0]]
                if not match:
                    raise Fail('service "%s" is not registered on any nodes' % pos[0])
                sid, state, health, events = match[0]
                lines += ["NODE\t%s" % n["ip"], "ID\t%s" % sid, "STATE\t%s" % state, "HEALTH\t%s" % health]
                for i, ev in enumerate(reversed(events)):
                    lines.append("%s\t%s (%ds ago)" % ("EVENTS" if i == 0 else "", ev, 5 + 10 * i))
            else:
                if not lines:
                    lines.append("NODE\tSERVICE\tSTATE\tHEALTH\tLAST CHANGE\tLAST EVENT")
                for sid, state, health, events in states:
                    lines.append("%s\t%s\t%s\t%s\t5s ago\t%s" % (n["ip"], sid, state, health,
                                                                 events[-1].split("]: ", 1)[1]))
        if lines:
            ctx.stdout.write(tabulate(lines))
        return 0
    return node_command(ctx, ("service",), flags, pos, handler)


def _cert_pair(cn, serial):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial + 1).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256()))
    crt = cert.public_bytes(serialization.Encoding.PEM)
    kb = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())
    return base64.b64encode(crt).decode(), base64.b64encode(kb).decode()


def cmd_kubeconfig(ctx, flags, pos):
    if len(pos) > 1:
        raise UsageError("accepts at most 1 arg(s), received %d" % len(pos))

    def handler(sess, cell, ok, errors, tc, nodes):
        if len(nodes) > 1:
            raise Fail("error copying: this command supports only a single node")
        for n in ok:
            if n["machine_type"] != "controlplane":
                errors.append((n["ip"], "Unimplemented", "kubeconfig is only available on control plane nodes"))
                continue
            cell.cluster["kubeconfig_serial"] += 1
            crt, key = _cert_pair("admin", cell.cluster["kubeconfig_serial"])
            name = (n["cluster"] or {}).get("name") or "cluster"
            ctxname = last(flags["force-context-name"]) or "admin@%s" % name
            new = {"apiVersion": "v1", "kind": "Config",
                   "clusters": [{"name": name, "cluster": {"server": (n["cluster"] or {}).get("endpoint"),
                                                           "certificate-authority-data": (n["cluster"] or {})
                                                           .get("ca")}}],
                   "users": [{"name": ctxname, "user": {"client-certificate-data": crt, "client-key-data": key}}],
                   "contexts": [{"name": ctxname, "context": {"cluster": name, "namespace": "default",
                                                              "user": ctxname}}],
                   "current-context": ctxname, "preferences": {}}
            target = pos[0] if pos else os.path.expanduser("~/.kube/config")
            if os.path.isdir(target):
                target = os.path.join(target, "kubeconfig")
            if os.path.exists(target) and flags["merge"]:
                with open(target, encoding="utf-8") as f:
                    cur = yaml.safe_load(f) or {}
                for section in ("clusters", "users", "contexts"):
                    entries = cur.get(section) or []
                    for e in new[section]:
                        names = [x.get("name") for x in entries]
                        if e["name"] in names:
                            if flags["force"]:
                                entries[names.index(e["name"])] = e
                                continue
                            i = 1
                            while "%s-%d" % (e["name"], i) in names:
                                i += 1
                            e = dict(e, name="%s-%d" % (e["name"], i))
                        entries.append(e)
                    cur[section] = entries
                cur["current-context"] = new["current-context"]
                new = cur
            fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                yaml.safe_dump(new, f, sort_keys=False)
        return 0
    return node_command(ctx, ("kubeconfig",), flags, pos, handler)


def cmd_health(ctx, flags, pos):
    wait = go_duration(last(flags["wait-timeout"]))
    cps = csv(flags["control-plane-nodes"] and [last(flags["control-plane-nodes"])])
    workers = csv(flags["worker-nodes"] and [last(flags["worker-nodes"])])
    if flags["server"] and len(csv(flags.get("nodes"))) > 1:
        raise Fail("health check in server mode requires exactly one node; use --server=false for client mode")
    result = {}

    def handler(sess, cell, ok, errors, tc, nodes):
        if not ok:
            return 1
        problems = []
        running = [m for m in cell.nodes.values() if m["stage"] == "running" and m["machine_type"]]
        if not cell.cluster["bootstrapped"] or running_etcd_cluster(cell) is None:
            problems.append("etcd is not healthy: etcd is not running")
        else:
            # health waits: control planes still joining etcd join meanwhile
            for m in running:
                if m["machine_type"] == "controlplane" and not m["etcd_member_id"] and not m.get("etcd_left") \
                        and not m.get("etcd_data"):
                    join_etcd(cell, m)
            if len(set(m.get("etcd_cluster") for m in cell.etcd_members())) > 1:
                problems.append("etcd members are not consistent across nodes: more than one etcd cluster")
            info = cell.cluster["etcd"][running_etcd_cluster(cell)]
            by_ip = dict((m["ip"], m) for m in cell.nodes.values())
            stopped = sorted("%s (%s)" % (mid, m["name"]) for mid, m in info["members"].items()
                             if not (by_ip.get(m["ip"]) and by_ip[m["ip"]].get("etcd_member_id") == mid
                                     and etcd_running(by_ip[m["ip"]])))
            if stopped:
                problems.append("etcd is not healthy: members %s are not running" % ", ".join(stopped))
        if cps or workers:
            known = set(cps) | set(workers)
            actual = set(m["ip"] for m in running) | set(cell.cluster.get("extra_k8s_nodes") or [])
            unexpected = sorted(actual - known)
            missing = sorted(known - actual)
            if unexpected:
                problems.append("unexpected nodes with IPs %s" % unexpected)
            if missing:
                problems.append("expected nodes with IPs %s not found" % missing)
            wrong = [m["ip"] for m in running if (m["ip"] in cps and m["machine_type"] != "controlplane")
                     or (m["ip"] in workers and m["machine_type"] != "worker")]
            if wrong:
                problems.append("nodes with IPs %s have a different machine type" % sorted(wrong))
        not_ready = sorted(m["ip"] for m in cell.nodes.values() if m["stage"] != "running" and m["machine_type"])
        if not_ready:
            problems.append("nodes %s are not ready" % not_ready)
        down = st.down_now(cell)
        if down:
            problems.append("apid is not ready on nodes %s: connection refused" % down)
        if cell.cluster.get("health_blocker"):
            problems.append(cell.cluster["health_blocker"])
        result["problems"] = problems
        ctx.stdout.write("discovered nodes: %s\n" % sorted(m["ip"] for m in running))
        return 0
    rc = node_command(ctx, ("health",), flags, pos, handler)
    if rc != 0:
        return rc
    checks = ["etcd to be healthy", "etcd members to be consistent across nodes", "apid to be ready",
              "all nodes memory sizes", "kubelet to be healthy", "all nodes to finish boot sequence",
              "all k8s nodes to report", "all control plane static pods to be running",
              "all k8s nodes to report ready", "kube-proxy to report ready", "coredns to report ready"]
    if result.get("problems"):
        time.sleep(min(wait, 5.0))
        ctx.stdout.write("waiting for %s: %s\n" % (checks[0], result["problems"][0]))
        ctx.stderr.write("healthcheck error: rpc error: code = DeadlineExceeded desc = context deadline exceeded: "
                         "%s\n" % "; ".join(result["problems"]))
        return 1
    for c in checks:
        ctx.stdout.write("waiting for %s: ...\nwaiting for %s: OK\n" % (c, c))
    return 0


HANDLERS = {
    ("version",): cmd_version,
    ("get",): cmd_get,
    ("apply-config",): cmd_apply,
    ("bootstrap",): cmd_bootstrap,
    ("etcd", "members"): cmd_etcd_members,
    ("kubeconfig",): cmd_kubeconfig,
    ("health",): cmd_health,
    ("service",): cmd_service,
}


def dispatch(argv, ctx):
    words, rest = split_command(argv)
    if not words:
        if any(a in ("-h", "--help") for a in rest) or not rest:
            ctx.stdout.write("A CLI for out-of-band management of Kubernetes nodes created by Talos\n\n"
                             "Usage:\n  talosctl [command]\n")
            return 0
        unknown = [a for a in argv if not a.startswith("-")]
        raise UsageError('unknown command "%s" for "talosctl"' % (unknown[0] if unknown else argv[0]))
    ctx.command = words
    if words in HANDLERS or (words[0] not in OFFLINE_HEADS and words[0] != "config"):
        if words not in HANDLERS:
            raise UsageError('unknown command "%s" for "talosctl"' % " ".join(words))
        spec = dict(GLOBAL_FLAGS)
        spec.update(COMMANDS[words])
        flags, pos = parse_flags(rest, spec)
        if flags.get("help"):
            ctx.stdout.write(usage(words))
            return 0
        return HANDLERS[words](ctx, flags, pos)
    # offline and talosconfig commands live in gen.py
    if words[0] in OFFLINE_HEADS:
        for a in rest:
            if a in ("-n", "-e") or a.startswith("-n=") or a.startswith("-e="):
                raise UsageError("unknown shorthand flag: '%s' in %s" % (a[1], a))
            if a.startswith("--") and a[2:].split("=", 1)[0] in ("talosconfig", "nodes", "endpoints", "context"):
                raise UsageError("unknown flag: %s" % a.split("=", 1)[0])
    try:
        from talosctl_double import gen
        commands = getattr(gen, "COMMANDS", {})
    except ImportError:
        commands = {}
    if words not in commands:
        raise UsageError('unknown command "%s" for "talosctl"' % " ".join(words))
    return commands[words](rest, ctx)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    state_dir = st.state_dir_from_env()
    ctx = Ctx(state_dir, sys.stdout, sys.stderr, os.environ.get("TALOSCTL_DOUBLE_STRICT") == "1")
    ctx.command = ()
    started = time.time()
    rc = 1
    try:
        rc = dispatch(argv, ctx)
    except UsageError as e:
        ctx.stderr.write("%s\n\n%s" % (e, usage(ctx.command or ("[command]",))))
        rc = 1
    except Fail as e:
        ctx.stderr.write("%s\n" % e)
        rc = 1
    finally:
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)
            rec = {"argv": argv, "command": " ".join(ctx.command), "time": started,
                   "duration": round(time.time() - started, 4), "rc": rc, "pid": os.getpid()}
            if ctx.details:
                rec["details"] = ctx.details
            st.append_call(state_dir, rec)
    return rc


# the day-2 commands (upgrade, upgrade-k8s, reset, etcd leave/remove-member/status/snapshot) live in day2.py
from talosctl_double import day2 as _day2  # noqa: E402  pylint: disable=wrong-import-position

_day2.register()
