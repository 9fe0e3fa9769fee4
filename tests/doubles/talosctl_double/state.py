"""State of the simulated Talos cell behind the talosctl test double.

Stands in for the machines a real talosctl talks to: one JSON file per node
(``nodes/<ip>.json``) plus ``cluster.json`` in the directory named by the environment
variable ``TALOSCTL_DOUBLE_STATE``. Every mutation happens under an exclusive ``flock`` on
``<state>/.lock`` so parallel Ansible forks (one talosctl process per node) are safe.
Every invocation is appended to ``<state>/calls.jsonl``.

Tests build and steer a cell with the helpers below (create_cell, set_unreachable,
inject_failure, set_hang, set_cluster, calls, count_calls, etcd_clusters, ...).

What a real cell does and the double models (see cli.py for the texts):

* a node whose Talos API is down: ``unreachable`` = ``refused`` (dial to port 50000 refused at
  once) or ``timeout`` (the dial blocks ``dial_timeout_seconds``, then ``i/o timeout``);
* a node just installed from maintenance mode reboots: for ``reboot_calls`` calls it refuses
  connections like a down node, then it answers over mTLS (stage ``installing`` for
  ``install_calls`` more calls, then ``running``);
* etcd: before bootstrap a configured control plane's etcd service is ``Preparing`` and its
  local etcd client (``talosctl etcd members``) either refuses at once or blocks until
  ``etcd_deadline_seconds`` and fails with ``DeadlineExceeded`` (``pre_bootstrap_etcd``:
  ``refuse`` | ``hang``); after ``bootstrap`` the bootstrapped node runs etcd and every other
  running control plane stays ``Preparing`` for ``join_calls`` calls that reach it, then joins
  the same etcd cluster. Bootstrapping a node with an empty data directory always starts a new
  etcd cluster - also a second one, as real Talos would (``etcd_clusters`` tells).
* etcd membership is kept per etcd cluster (``cluster["etcd"]``: member ID -> name and address), as
  etcd keeps it: a member stays listed while its machine is down or wiped until it leaves
  (``etcd leave``, graceful ``reset``), a healthy peer removes it (``etcd remove-member``), or a
  machine with the same hostname and an empty data directory joins (Talos removes the stale member
  of its name first). Every membership gets a new member ID. A member with the joining machine's
  address under another name makes etcd refuse it (peer URL exists). Membership changes need a
  quorum of the listed members up.
* day-2 (see day2.py): ``upgrade`` reboots the node for ``upgrade_reboot_seconds`` (plus
  ``slow_boot[ip]``) of wall-clock time, during which its Talos API refuses; a control plane's
  etcd answers ``etcd_settle_seconds`` after that. Every reboot is logged in ``events``; the
  most nodes down at the same time and any moment an etcd cluster lost its quorum are recorded
  (``max_down``, ``quorum_losses``), so tests can prove a rolling order.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time

DEFAULT_CLUSTER = {
    # node-touching calls a freshly applied node spends in stage "installing"
    "install_calls": 0,
    # one-shot/N-shot failures: {"command": "bootstrap", "node": ip|None, "code", "desc", "count"}
    "fail_next": [],
    # {"command": "health", "seconds": 5}: sleep before handling the command
    "hang": {},
    # IPs of Kubernetes nodes that are not Talos nodes of this cell (e.g. Karpenter workers)
    "extra_k8s_nodes": [],
    # health: when set, the check never passes and reports this text when --wait-timeout expires
    "health_blocker": None,
    "bootstrapped": False,
    "kubeconfig_serial": 0,
    # `etcd members` on a control plane whose etcd does not run: "refuse" (127.0.0.1:2379 refused at
    # once) or "hang" (blocks etcd_deadline_seconds, then DeadlineExceeded)
    "pre_bootstrap_etcd": "refuse",
    "etcd_deadline_seconds": 30,
    # calls reaching a control plane that joins etcd after bootstrap before it is a member (Preparing)
    "join_calls": 2,
    # seconds the dial to a node with unreachable == "timeout" blocks before "i/o timeout"
    "dial_timeout_seconds": 20,
    # calls a node refuses while it reboots after an install from maintenance mode
    "reboot_calls": 0,
    # etcd clusters started by bootstrap (more than one is a split etcd)
    "etcd_clusters": 0,
    # one-shot crashes: [{"node": ip, "command": "apply-config"}]: the node's API goes down right after it
    # answered that command (a machine that dies in the middle of a run)
    "crash_after": [],
    # the Talos version a node runs after an install whose image tag is not a Talos version
    "boot_version": "v1.13.9",
    # wall-clock seconds a node is down while it reboots into a new Talos (upgrade, reset --reboot)
    "upgrade_reboot_seconds": 0.5,
    # {ip: extra seconds}: a node that comes back slowly
    "slow_boot": {},
    # seconds a control plane's etcd needs after boot before it answers (etcd status, members)
    "etcd_settle_seconds": 0.3,
    # etcd clusters: {"<n>": {"members": {member ID: {"name", "ip"}}, "revision": int}}
    "etcd": {},
    # member IDs are derived from the address and this counter: every membership gets a new ID
    "member_serial": 0,
    # reboots, upgrades, resets, etcd changes with their times: [{"time", "node", "event", ...}]
    "events": [],
    # the most nodes that were down (rebooting) at the same moment
    "max_down": 0,
    # moments an etcd cluster had fewer than a quorum of its members up: [{"time", "cluster", "up", "members"}]
    "quorum_losses": [],
}


def state_dir_from_env():
    return os.environ.get("TALOSCTL_DOUBLE_STATE") or None


def _nodes_dir(state_dir):
    return os.path.join(state_dir, "nodes")


def _write_json(path, data):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(state_dir):
    """Exclusive lock over the whole state directory."""
    os.makedirs(state_dir, exist_ok=True)
    fd = os.open(os.path.join(state_dir, ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def new_node(name, ip):
    return {
        "name": name,
        "ip": ip,
        "stage": "maintenance",  # maintenance | installing | running
        "machine_type": None,  # set from the applied config
        "ca": None,  # machine.ca.crt of the applied config (what mTLS clients must trust)
        "config": None,  # text of the applied config
        "cluster": None,  # cluster.controlPlane.endpoint / clusterName / ca of the applied config
        "install_calls_left": 0,
        "etcd_member_id": None,
        "etcd_data": False,
        "etcd_cluster": None,  # number of the etcd cluster the node is a member of
        "join_calls_left": None,  # not None while the node waits to join etcd (service Preparing)
        "reboot_calls_left": 0,
        "unreachable": None,  # None | "refused" | "timeout"
        "apply_count": 0,
        "reboots": 0,
        "version": None,  # Talos version it runs once installed (from the install / upgrade image)
        "schematic": None,  # Image Factory schematic of that image
        "down_until": 0.0,  # epoch seconds: rebooting (Talos API refuses) until then
        "etcd_ready_at": 0.0,  # epoch seconds: its etcd answers from then on
        "etcd_left": False,  # left or was removed from etcd: it does not rejoin until its EPHEMERAL is wiped
    }


class Cell(object):
    """Loaded state (use inside ``locked``); ``save()`` writes it back."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        path = os.path.join(state_dir, "cluster.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.cluster = json.load(f)
        else:
            self.cluster = dict(DEFAULT_CLUSTER)
        for k, v in DEFAULT_CLUSTER.items():
            self.cluster.setdefault(k, v if not isinstance(v, (list, dict)) else type(v)(v))
        self.nodes = {}
        nd = _nodes_dir(state_dir)
        if os.path.isdir(nd):
            for fn in sorted(os.listdir(nd)):
                if fn.endswith(".json"):
                    with open(os.path.join(nd, fn), encoding="utf-8") as f:
                        node = json.load(f)
                    self.nodes[node["ip"]] = node

    def save(self):
        os.makedirs(_nodes_dir(self.state_dir), exist_ok=True)
        _write_json(os.path.join(self.state_dir, "cluster.json"), self.cluster)
        for ip, node in self.nodes.items():
            _write_json(os.path.join(_nodes_dir(self.state_dir), "%s.json" % ip), node)

    def etcd_members(self):
        return [n for n in self.nodes.values() if n.get("etcd_member_id")]


# --- helpers for tests ------------------------------------------------------------------
def create_cell(state_dir, nodes, install_calls=0):
    """Declare a cell of machines booted into maintenance mode.

    ``nodes``: iterable of (name, ip). Returns the state directory.
    """
    os.makedirs(state_dir, exist_ok=True)
    with locked(state_dir):
        cell = Cell(state_dir)
        cell.cluster["install_calls"] = install_calls
        for name, ip in nodes:
            cell.nodes[ip] = new_node(name, ip)
        cell.save()
    return state_dir


def update(state_dir, fn):
    """Run fn(cell) under the lock and save."""
    with locked(state_dir):
        cell = Cell(state_dir)
        result = fn(cell)
        cell.save()
    return result


def node(state_dir, ip):
    return Cell(state_dir).nodes[ip]


def cluster(state_dir):
    return Cell(state_dir).cluster


UNREACHABLE_MODES = (None, "refused", "timeout")


def set_unreachable(state_dir, ip, how="refused"):
    """Take the Talos API of node *ip* down: ``refused`` (connection refused at once) or ``timeout`` (the dial
    blocks ``dial_timeout_seconds``, then ``i/o timeout``); ``how=None`` brings it back."""
    if how not in UNREACHABLE_MODES:
        raise ValueError("unreachable mode %r: use one of %r" % (how, UNREACHABLE_MODES))

    def _f(cell):
        cell.nodes[ip]["unreachable"] = how
    update(state_dir, _f)


def crash_after(state_dir, ip, command):
    """Node *ip* goes down (``unreachable: refused``) right after it answered the next *command* call."""
    def _f(cell):
        cell.cluster["crash_after"].append(dict(node=ip, command=command))
    update(state_dir, _f)


def inject_failure(state_dir, command, code, desc, count=1, node=None):
    """The next *count* calls of *command* (e.g. ``bootstrap``, ``apply-config``) fail with
    ``rpc error: code = <code> desc = <desc>`` (for *node* only when given)."""
    def _f(cell):
        cell.cluster["fail_next"].append(dict(command=command, code=code, desc=desc, count=count, node=node))
    update(state_dir, _f)


def set_hang(state_dir, command, seconds):
    """Every call of *command* sleeps *seconds* first (to exercise timeouts)."""
    def _f(cell):
        cell.cluster["hang"][command] = seconds
    update(state_dir, _f)


def set_cluster(state_dir, **values):
    def _f(cell):
        cell.cluster.update(values)
    update(state_dir, _f)


def etcd_clusters(state_dir):
    """{etcd cluster number: [IPs of the machines that are its members]} (one key: one etcd cluster)."""
    out = {}
    for n in Cell(state_dir).nodes.values():
        if n.get("etcd_member_id"):
            out.setdefault(n.get("etcd_cluster"), []).append(n["ip"])
    return out


def etcd_member_list(state_dir, number=None):
    """The member list etcd keeps for cluster *number* (default: the newest): [{"id", "name", "ip"}]."""
    clusters = Cell(state_dir).cluster.get("etcd") or {}
    if not clusters:
        return []
    key = str(number) if number is not None else max(clusters, key=int)
    members = (clusters.get(key) or {}).get("members") or {}
    return sorted((dict(m, id=mid) for mid, m in members.items()), key=lambda m: m["ip"])


def etcd_write(state_dir, count=1):
    """Writes to the running etcd cluster(s): the revision moves on (a snapshot taken before shows the old one)."""
    def _f(cell):
        for info in (cell.cluster.get("etcd") or {}).values():
            info["revision"] = int(info.get("revision") or 0) + count
    update(state_dir, _f)


def etcd_revision(state_dir, number=None):
    clusters = Cell(state_dir).cluster.get("etcd") or {}
    if not clusters:
        return None
    key = str(number) if number is not None else max(clusters, key=int)
    return (clusters.get(key) or {}).get("revision")


def set_slow_boot(state_dir, ip, seconds):
    """Node *ip* needs *seconds* more than ``upgrade_reboot_seconds`` to come back from a reboot."""
    def _f(cell):
        cell.cluster["slow_boot"][ip] = seconds
    update(state_dir, _f)


def events(state_dir, event=None):
    """Recorded reboots/upgrades/resets/etcd changes, optionally of one kind (``upgrade``, ``reset`` ...)."""
    return [e for e in Cell(state_dir).cluster.get("events") or [] if event is None or e.get("event") == event]


def record_event(cell, ip, event, **details):
    """Append an event (inside ``update``/``locked``); returns it."""
    entry = dict(details, time=time.time(), node=ip, event=event)
    cell.cluster.setdefault("events", []).append(entry)
    return entry


def down_now(cell, now=None):
    """IPs of the machines that are down right now (unreachable, rebooting)."""
    now = time.time() if now is None else now
    return sorted(n["ip"] for n in cell.nodes.values()
                  if n.get("machine_type") and (n.get("unreachable") or float(n.get("down_until") or 0) > now
                                                or int(n.get("reboot_calls_left") or 0) > 0))


def note_downtime(cell, now=None):
    """Record how many machines are down now (``max_down``) and whether an etcd cluster lost its quorum
    (fewer than a majority of its listed members run etcd: down, rebooting or still settling)."""
    now = time.time() if now is None else now
    down = down_now(cell, now)
    cell.cluster["max_down"] = max(int(cell.cluster.get("max_down") or 0), len(down))
    by_ip = dict((n["ip"], n) for n in cell.nodes.values())
    for number, info in (cell.cluster.get("etcd") or {}).items():
        members = info.get("members") or {}
        if not members:
            continue
        up = [m["ip"] for mid, m in members.items()
              if m["ip"] not in down and (by_ip.get(m["ip"]) or {}).get("etcd_member_id") == mid
              and not (by_ip.get(m["ip"]) or {}).get("etcd_left")
              and float((by_ip.get(m["ip"]) or {}).get("etcd_ready_at") or 0) <= now]
        if len(up) < len(members) // 2 + 1:
            cell.cluster.setdefault("quorum_losses", []).append(
                {"time": now, "cluster": int(number), "up": sorted(up), "members": len(members)})


def member_id(ip, seq=0):
    """The etcd member ID of node *ip* for membership number *seq* (16 hex digits): every membership a new one."""
    import hashlib
    return "%016x" % int(hashlib.sha256(("%s#%d" % (ip, seq)).encode()).hexdigest()[:15], 16)


def install_image_version(image, default):
    """(Talos version, schematic) an install/upgrade image carries: ``.../<schematic>:vX.Y.Z``."""
    import re
    ref = (image or "").split("@", 1)[0]
    repo, _, tag = ref.rpartition(":")
    if "/" in tag or not repo:
        repo, tag = ref, ""
    version = tag if re.match(r"^v\d+\.\d+\.\d+$", tag or "") else default
    parts = repo.split("/")
    schematic = parts[-1] if len(parts) >= 3 and parts[0] == "factory.talos.dev" and \
        re.match(r"^[0-9a-f]{64}$", parts[-1]) else None
    return version, schematic


def calls(state_dir):
    """Every recorded invocation (dicts with argv, command, time, rc, ...)."""
    path = os.path.join(state_dir, "calls.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def count_calls(state_dir, command, flag=None):
    """How many invocations of *command* (``"bootstrap"``, ``"apply-config"``, ``"etcd members"``)
    there were, optionally only those whose argv contains *flag*."""
    return sum(1 for c in calls(state_dir)
               if c.get("command") == command and (flag is None or flag in c.get("argv", [])))


def append_call(state_dir, record):
    path = os.path.join(state_dir, "calls.jsonl")
    line = json.dumps(record, sort_keys=True) + "\n"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode("utf-8"))
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def now():
    return time.time()


def preconfigure(state_dir, configs, bootstrapped=False):
    """Put nodes straight into the state a successful ``apply-config`` leaves (stage running),
    for tests whose subject is not the apply itself. ``configs``: {ip: path of machine config}.
    With ``bootstrapped`` the control planes are etcd members, as after ``bootstrap``."""
    import yaml

    def _f(cell):
        for ip, path in configs.items():
            with open(path, encoding="utf-8") as f:
                text = f.read()
            v1 = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("version") == "v1alpha1"][0]
            n = cell.nodes[ip]
            cl = v1.get("cluster") or {}
            n.update(stage="running", machine_type=v1["machine"]["type"], config=text,
                     ca=((v1["machine"].get("ca") or {}).get("crt") or "").strip(), apply_count=1,
                     cluster={"endpoint": (cl.get("controlPlane") or {}).get("endpoint"),
                              "name": cl.get("clusterName"), "ca": (cl.get("ca") or {}).get("crt")})
            n["version"], n["schematic"] = install_image_version(
                ((v1["machine"].get("install") or {}).get("image")), cell.cluster["boot_version"])
            if bootstrapped and n["machine_type"] == "controlplane":
                n["etcd_member_id"] = member_id(ip)
                n["etcd_data"] = True
                n["etcd_cluster"] = 1
                info = cell.cluster["etcd"].setdefault("1", {"members": {}, "revision": 1})
                info["members"][n["etcd_member_id"]] = {"name": n["name"], "ip": ip}
        if bootstrapped:
            cell.cluster["bootstrapped"] = True
            cell.cluster["etcd_clusters"] = 1
    update(state_dir, _f)
