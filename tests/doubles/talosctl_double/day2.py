"""TEST DOUBLE: the day-2 commands of talosctl v1.13.9 (upgrade, upgrade-k8s, reset, etcd leave /
remove-member / status / snapshot), registered into cli.py's command table.

Read from the v1.13.9 sources (cmd/talosctl/cmd/talos/{upgrade,upgrade-k8s,reset,etcd,bootstrap,track,
drain}.go, pkg/cluster/kubernetes/{talos_managed,kubelet,detect,compat}.go, internal/app/lifecycle/
lifecycle.go, internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go (Etcd*),
internal/pkg/etcd/etcd.go, pkg/machinery/compatibility, siderolabs/go-kubernetes v0.2.38
kubernetes/upgrade/path.go). What the double honours, and where it simplifies:

* ``upgrade``: flags ``-i/--image``, ``--wait`` (default true), ``--debug``, ``--timeout`` (30m),
  ``--namespace``, ``-m/--reboot-mode``, ``--progress``, ``--no-reboot``, ``--drain`` (default true),
  ``--drain-timeout``, ``--legacy`` and the deprecated ``--force/--insecure/--preserve/--stage``;
  ``--wait`` with ``--insecure`` is refused. 1.13 uses the LifecycleService: the installer image is
  pulled (an image whose tag is not a Talos version is "not found"), the installer refuses a host
  version outside the target's upgrade range (``compatibility.UpgradeableFrom``), progress goes to
  stderr (``IP: pulled image ...``, ``IP: upgrade completed``), then the node reboots: its Talos API
  refuses for ``upgrade_reboot_seconds`` (+ ``slow_boot[ip]``) of wall-clock time and a control
  plane's etcd answers ``etcd_settle_seconds`` later. ``--wait`` blocks until the node is back, as
  the reboot tracker does (``watching nodes: [IP]`` / ``* IP: post check passed``), or fails with
  ``context deadline exceeded`` after ``--timeout``. The new API does **not** check etcd quorum (only
  the legacy MachineService.Upgrade did): the double lets a second control plane go down and
  records the quorum loss, exactly what a careless caller would cause. ``--drain`` (talosctl drains
  through a kubeconfig it fetches from the node) is not modelled: in strict mode it is refused, so
  callers pass ``--drain=false`` and drain themselves.
* ``upgrade-k8s``: ``--from`` (detected from the control planes' static pod images), ``--to``,
  ``--dry-run`` and the image/manifest flags; the upgrade path must be a supported one (same minor
  or the next, go-kubernetes' list up to 1.36 for talosctl 1.13), every node's Talos must support the
  target (``version of Kubernetes X is too new to be used with Talos Y``); the log lines
  (``automatically detected ...``, ``> update kube-apiserver: A -> B``, ``> skipped in dry-run``,
  ``> "IP": machine configuration patched`` ...) go to stdout; a real run patches the static pod
  and kubelet images of the nodes' machine configs, as talosctl does.
* ``reset``: ``--graceful`` (default true: a control plane leaves etcd first, which needs a quorum of
  its members up), ``--reboot``, ``--wipe-mode``, ``--system-labels-to-wipe``, ``--user-disks-to-wipe``,
  ``--insecure``, ``--wait``, ``--timeout``. Wiping STATE returns the machine to maintenance mode
  (with ``--reboot``) or powers it off (the API stops answering); wiping EPHEMERAL removes its etcd
  data. ``--graceful=false`` leaves the etcd member listed.
* ``etcd leave`` / ``etcd remove-member <ID>`` / ``etcd status`` / ``etcd snapshot <path>``: control
  planes only (``Unimplemented ... is only available on control plane nodes``), single node where
  talosctl requires it; leave/remove need a quorum of the listed members up (real etcd retries
  "unhealthy cluster" for minutes; the double fails at once); a member ID that is not listed is
  ``NotFound: etcdserver: member not found``. ``etcd status`` prints talosctl's table (NODE MEMBER
  DB SIZE IN USE LEADER RAFT INDEX ...); ``etcd snapshot`` writes ``<path>.part`` then renames it, in a
  format of its own (not bbolt: a header, padding and a trailing sha256 so that its size is 512k+32
  like etcd's), and prints ``etcd snapshot saved to ...`` and ``snapshot info: ...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import zlib

import yaml

from talosctl_double import cli
from talosctl_double import state as st
from talosctl_double.cli import Fail, UsageError, csv, last, node_command

SNAPSHOT_MAGIC = b"TALOSCTL-DOUBLE-ETCD-SNAPSHOT\n"

# Talos minor -> (oldest host version it upgrades from, host version it can no longer downgrade from)
# (pkg/machinery/compatibility/talos113; talos114 from the 1.14 release line)
UPGRADEABLE_FROM = {(1, 13): ((1, 11, 0), (1, 15, 0)), (1, 14): ((1, 12, 0), (1, 16, 0))}
# Talos minor -> (min, max) Kubernetes; max is exclusive in talosctl's check (1.36.99 for 1.13)
KUBERNETES_SUPPORT = {(1, 13): ((1, 31, 0), (1, 36, 99)), (1, 14): ((1, 33, 0), (1, 37, 99))}


def _semver(text):
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", str(text or ""))
    return tuple(int(x) for x in m.groups()) if m else None


def _plain(version):
    return "%d.%d.%d" % version


def _client_minor():
    v = _semver(cli.client_version())
    return v[:2] if v else (1, 13)


def _duration(values, default):
    text = last(values) if values else default
    return cli.go_duration(text or default)


# --- upgrade --------------------------------------------------------------------------------------
UPGRADE_FLAGS = {
    "image": ("i", True, "ghcr.io/siderolabs/installer:%s" % cli.VERSION),
    "wait": (None, False, True), "debug": (None, False, False), "timeout": (None, True, "30m0s"),
    "namespace": (None, True, "system"), "reboot-mode": ("m", True, "default"), "progress": (None, True, "auto"),
    "no-reboot": (None, False, False), "drain": (None, False, True), "drain-timeout": (None, True, "5m0s"),
    "legacy": (None, False, False), "force": ("f", False, False), "insecure": (None, False, False),
    "preserve": ("p", False, False), "stage": ("s", False, False),
}


def cmd_upgrade(ctx, flags, pos):
    if pos:
        raise UsageError('unknown command "%s" for "talosctl upgrade"' % pos[0])
    for dep in ("force", "insecure", "preserve", "stage"):
        if flags[dep]:
            ctx.stderr.write("Flag --%s has been deprecated, legacy flag for MachineService.Upgrade fallback, to be "
                             "removed in Talos 1.18\n" % dep)
    wait = flags["wait"] or flags["debug"] or (flags["drain"] and not flags["no-reboot"])
    if wait and flags["insecure"]:
        raise Fail("cannot use --wait and --insecure together")
    if flags["legacy"]:
        raise Fail("talosctl double: upgrade --legacy (MachineService.Upgrade) is not modelled")
    mode = last(flags["reboot-mode"])
    if mode not in ("default", "powercycle", "force"):
        raise UsageError('invalid argument "%s" for "-m, --reboot-mode" flag: possible values are: default, '
                         'powercycle, force' % mode)
    drain = flags["drain"] and not flags["no-reboot"]
    if drain and ctx.strict:
        raise Fail("talosctl double (strict): upgrade --drain makes talosctl cordon and drain the node through a "
                   "kubeconfig it fetches from the cluster, which the double does not model; pass --drain=false and "
                   "drain with the Kubernetes API")
    image = last(flags["image"])
    timeout = _duration(flags["timeout"], "30m0s")
    ctx.record({"upgrade_image": image, "wait": wait, "drain": drain})
    target, schematic = st.install_image_version(image, None)
    result = {}

    def handler(sess, cell, ok, errors, tc, nodes):
        for n in ok:
            ip = n["ip"]
            if target is None:
                raise Fail('error pulling upgrade image: error from node %s: rpc error: code = NotFound desc = failed to '
                           'pull image "%s": not found' % (ip, image))
            if n["stage"] != "running":
                raise Fail("error during upgrade: error from node %s: rpc error: code = FailedPrecondition desc = "
                           "another installation/upgrade is already in progress" % ip)
            host = _semver(cli.node_version(cell, n))
            want = _semver(target)
            low, high = UPGRADEABLE_FROM.get(want[:2], (None, None))
            problem = None
            if low is None:
                problem = "upgrades to version %s are not supported" % _plain(want)
            elif host < low:
                problem = "host version %s is too old to upgrade to Talos %s" % (_plain(host), _plain(want))
            elif host >= high:
                problem = "host version %s is too new to downgrade to Talos %s" % (_plain(host), _plain(want))
            ctx.stderr.write("%s: pulled image %s\n" % (ip, image))
            if problem:
                ctx.stderr.write("%s: %s\n%s: upgrade failed with exit code 1\n" % (ip, problem, ip))
                raise Fail("error during upgrade: node %s: upgrade failed with exit code 1" % ip)
            ctx.stderr.write("%s: upgrade completed\n" % ip)
            before = cli.node_version(cell, n)
            if flags["no-reboot"]:
                n["pending_version"] = target
                st.record_event(cell, ip, "upgrade-staged", version_from=before, version_to=target, image=image)
                continue
            now = time.time()
            seconds = float(cell.cluster.get("upgrade_reboot_seconds") or 0) + \
                float((cell.cluster.get("slow_boot") or {}).get(ip) or 0)
            n.update(version=target, schematic=schematic, down_until=now + seconds, pending_version=None)
            n["reboots"] += 1
            if n["machine_type"] == "controlplane":
                n["etcd_ready_at"] = now + seconds + float(cell.cluster.get("etcd_settle_seconds") or 0)
            st.record_event(cell, ip, "upgrade", version_from=before, version_to=target, image=image,
                            down_until=now + seconds)
            st.note_downtime(cell, now)
            result[ip] = seconds
        return 0

    rc = node_command(ctx, ("upgrade",), flags, pos, handler)
    if rc != 0 or not result or not wait:
        return rc
    ctx.stderr.write("watching nodes: [%s]\n" % " ".join(sorted(result)))
    return track(ctx, result, timeout, "post check passed")


def track(ctx, seconds_by_ip, timeout, done):
    """talosctl's action tracker (--wait): block until every node is back, or fail after --timeout."""
    longest = max(seconds_by_ip.values())
    if longest > timeout:
        time.sleep(timeout)
        for ip in sorted(seconds_by_ip):
            ctx.stderr.write("    * %s: context deadline exceeded\n" % ip)
        return 1
    time.sleep(max(0.0, longest))
    for ip in sorted(seconds_by_ip):
        ctx.stderr.write("    * %s: %s\n" % (ip, done))
    return 0


# --- upgrade-k8s ----------------------------------------------------------------------------------
UPGRADE_K8S_FLAGS = {
    "from": (None, True, ""), "to": (None, True, "1.36.3"), "endpoint": (None, True, ""),
    "with-examples": (None, False, True), "with-docs": (None, False, True), "pre-pull-images": (None, False, True),
    "upgrade-kubelet": (None, False, True), "dry-run": (None, False, False),
    "kubelet-image": (None, True, "ghcr.io/siderolabs/kubelet"),
    "apiserver-image": (None, True, "registry.k8s.io/kube-apiserver"),
    "controller-manager-image": (None, True, "registry.k8s.io/kube-controller-manager"),
    "scheduler-image": (None, True, "registry.k8s.io/kube-scheduler"),
    "proxy-image": (None, True, "registry.k8s.io/kube-proxy"),
    "manifests-force": (None, False, False), "manifests-no-prune": (None, False, False),
    "manifests-inventory-policy": (None, True, "AdoptIfNoInventory"),
    "manifests-reconcile-timeout": (None, True, "5m0s"),
}
STATIC_PODS = (("kube-apiserver", "apiServer", "apiserver-image"),
               ("kube-controller-manager", "controllerManager", "controller-manager-image"),
               ("kube-scheduler", "scheduler", "scheduler-image"))


def _image_version(image):
    tag = (image or "").split("@", 1)[0].rpartition(":")[2]
    return _semver(tag)


def _path_supported(frm, to):
    """go-kubernetes Path.IsSupported: the same minor or the next, up to the newest the client knows."""
    newest = (1, 37) if _client_minor() >= (1, 14) else (1, 36)
    if frm[0] != 1 or to[0] != 1 or frm[1] < 19 or to[1] > newest[1]:
        return False
    return to[1] in (frm[1], frm[1] + 1)


def cmd_upgrade_k8s(ctx, flags, pos):
    if pos:
        raise UsageError('unknown command "%s" for "talosctl upgrade-k8s"' % pos[0])
    if len(csv(flags.get("nodes"))) > 1:
        raise Fail('command "upgrade-k8s" is not supported with multiple nodes')
    policy = last(flags["manifests-inventory-policy"])
    if policy not in ("MustMatch", "AdoptIfNoInventory", "AdoptAll"):
        raise Fail('unknown inventory policy "%s"' % policy)
    dry = flags["dry-run"]
    to_text = last(flags["to"]).lstrip("v")
    to = _semver(to_text)
    if to is None:
        raise Fail("error creating upgrade path error parsing to version: Invalid character(s) found in major number "
                   '"%s"' % to_text)
    out = []

    def log(line):
        out.append(line)

    def handler(sess, cell, ok, errors, tc, nodes):
        cps = sorted(m["ip"] for m in cell.nodes.values() if m["machine_type"] == "controlplane" and m["config"])
        workers = sorted(m["ip"] for m in cell.nodes.values() if m["machine_type"] == "worker" and m["config"])
        frm_text = last(flags["from"]).lstrip("v")
        if not frm_text:
            versions = []
            for ip in cps:
                v1 = cli.node_v1alpha1(cell.nodes[ip]) or {}
                cl = v1.get("cluster") or {}
                for _pod, key, _flag in STATIC_PODS + (("kube-proxy", "proxy", "proxy-image"),):
                    v = _image_version((cl.get(key) or {}).get("image"))
                    if v:
                        versions.append(v)
            if not versions:
                raise Fail("error detecting the lowest Kubernetes version failed to detect lowest Kubernetes version")
            frm_text = _plain(min(versions))
            log("automatically detected the lowest Kubernetes version %s" % frm_text)
        frm = _semver(frm_text)
        if frm is None:
            raise Fail('error creating upgrade path error parsing from version: Invalid character(s) found in major '
                       'number "%s"' % frm_text)
        if not _path_supported(frm, to):
            raise Fail('unsupported upgrade path %d.%d->%d.%d (from "%s" to "%s")'
                       % (frm[0], frm[1], to[0], to[1], frm_text, to_text))
        log("discovered controlplane nodes [%s]" % " ".join('"%s"' % ip for ip in cps))
        if flags["upgrade-kubelet"]:
            log("discovered worker nodes [%s]" % " ".join('"%s"' % ip for ip in workers))
        targets = cps + (workers if flags["upgrade-kubelet"] else [])
        down = [ip for ip in targets if sess.down(cell, ip)]
        if down:
            code, desc = cli.dial_error(down[0], "refused")
            raise Fail("error getting server versions: 1 error occurred:\n\t* %s: rpc error: code = %s desc = %s"
                       % (down[0], code, desc))
        for ip in targets:
            talos = _semver(cli.node_version(cell, cell.nodes[ip]))
            support = KUBERNETES_SUPPORT.get(talos[:2]) if talos[:2] <= _client_minor() else None
            if support is None:
                raise Fail('node "%s": compatibility with version %s is not supported' % (ip, _plain(talos)))
            if to < support[0]:
                raise Fail('node "%s": version of Kubernetes %s is too old to be used with Talos %s'
                           % (ip, to_text, _plain(talos)))
            if to >= support[1]:
                raise Fail('node "%s": version of Kubernetes %s is too new to be used with Talos %s'
                           % (ip, to_text, _plain(talos)))
        for ip in targets:
            log('> "%s": Talos version %s is compatible with Kubernetes version %s'
                % (ip, _plain(_semver(cli.node_version(cell, cell.nodes[ip]))), to_text))
        if flags["pre-pull-images"]:
            for _pod, _key, flag in STATIC_PODS:
                for ip in cps:
                    log(' > "%s": pre-pulling %s:v%s' % (ip, last(flags[flag]), to_text))
        docs = dict((ip, [d for d in yaml.safe_load_all(cell.nodes[ip]["config"]) if d is not None]) for ip in targets)
        changed = set()
        for pod, key, flag in STATIC_PODS:
            log('updating "%s" to version "%s"' % (pod, to_text))
            for ip in cps:
                log(' > "%s": starting update' % ip)
                cluster = cli._v1alpha1(docs[ip]).setdefault("cluster", {})
                section = cluster.setdefault(key, {})
                image = "%s:v%s" % (last(flags[flag]), to_text)
                if section.get("image") == image:
                    continue
                old = _image_version(section.get("image"))
                log(" > update %s: %s -> %s" % (pod, _plain(old) if old else frm_text, to_text))
                if dry:
                    log(" > skipped in dry-run")
                    continue
                section["image"] = image
                changed.add(ip)
                log(' > "%s": machine configuration patched' % ip)
                log(' > "%s": waiting for %s pod update' % (ip, pod))
                log(' < "%s": successfully updated' % ip)
        log('updating kube-proxy to version "%s"' % to_text)
        for ip in cps:
            log(' > "%s": starting update' % ip)
            if dry:
                log(" > skipped in dry-run")
                continue
            proxy = cli._v1alpha1(docs[ip]).setdefault("cluster", {}).setdefault("proxy", {})
            image = "%s:v%s" % (last(flags["proxy-image"]), to_text)
            if proxy.get("image") != image:
                proxy["image"] = image
                changed.add(ip)
        if flags["upgrade-kubelet"]:
            log('updating kubelet to version "%s"' % to_text)
            for ip in targets:
                log(' > "%s": starting update' % ip)
                kubelet = cli._v1alpha1(docs[ip]).setdefault("machine", {}).setdefault("kubelet", {})
                image = "%s:v%s" % (last(flags["kubelet-image"]), to_text)
                if kubelet.get("image") == image:
                    continue
                old = _image_version(kubelet.get("image"))
                log(" > update kubelet: %s -> %s" % (_plain(old) if old else frm_text, to_text))
                if dry:
                    log(" > skipped in dry-run")
                    continue
                kubelet["image"] = image
                changed.add(ip)
                log(' > "%s": machine configuration patched' % ip)
                log(' > "%s": waiting for kubelet restart' % ip)
                log(' > "%s": waiting for node update' % ip)
                log(' < "%s": successfully updated' % ip)
        else:
            log("skipped updating kubelet")
        log("updating manifests")
        log(" > processing manifest v1.ServiceAccount/coredns")
        if dry:
            log(" > apply skipped in dry run")
        for ip in sorted(changed):
            cell.nodes[ip]["config"] = yaml.safe_dump_all(docs[ip], sort_keys=False)
        if changed:
            st.record_event(cell, None, "upgrade-k8s", version_from=frm_text, version_to=to_text, nodes=sorted(changed))
        return 0

    rc = node_command(ctx, ("upgrade-k8s",), flags, pos, handler)
    ctx.stdout.write("".join(line + "\n" for line in out))
    return rc


# --- reset ----------------------------------------------------------------------------------------
RESET_FLAGS = {
    "graceful": (None, False, True), "reboot": (None, False, False), "insecure": (None, False, False),
    "wipe-mode": (None, True, "all"), "user-disks-to-wipe": (None, True, ""), "system-labels-to-wipe": (None, True, ""),
    "wait": (None, False, True), "debug": (None, False, False), "timeout": (None, True, "30m0s"),
}
SYSTEM_LABELS = ("STATE", "EPHEMERAL", "META", "BOOT", "EFI")


def quorum_ok(cell, number, leaving=None):
    """Whether a majority of cluster *number*'s listed members run etcd (so a membership change commits)."""
    info = (cell.cluster.get("etcd") or {}).get(str(number)) or {}
    members = info.get("members") or {}
    by_ip = dict((m["ip"], m) for m in cell.nodes.values())
    up = sum(1 for mid, m in members.items()
             if by_ip.get(m["ip"]) and by_ip[m["ip"]].get("etcd_member_id") == mid and cli.etcd_running(by_ip[m["ip"]]))
    return len(members) > 0 and up >= len(members) // 2 + 1 and not (leaving and len(members) == 1)


def _leave(cell, n):
    """The node leaves its etcd cluster (LeaveCluster): None on success, else the error text."""
    if not n.get("etcd_member_id"):
        return "failed to leave cluster: resource EtcdMembers.etcd.talos.dev(etcd/local@undefined) doesn't exist"
    number = str(n.get("etcd_cluster"))
    info = (cell.cluster.get("etcd") or {}).get(number) or {}
    if not cli.etcd_running(n) or not quorum_ok(cell, number, leaving=True):
        return "failed to leave cluster: etcdserver: unhealthy cluster"
    info["members"].pop(n["etcd_member_id"], None)
    st.record_event(cell, n["ip"], "etcd-leave", member=n["etcd_member_id"], cluster=int(number))
    n.update(etcd_member_id=None, etcd_data=False, etcd_left=True, etcd_cluster=None, join_calls_left=None)
    return None


def cmd_reset(ctx, flags, pos):
    if pos:
        raise UsageError("accepts 0 arg(s), received %d" % len(pos))
    mode = last(flags["wipe-mode"])
    if mode not in ("all", "system-disk", "user-disks"):
        raise UsageError('invalid argument "%s" for "--wipe-mode" flag: possible options are: all, system-disk, '
                         'user-disks' % mode)
    wait = flags["wait"] or flags["debug"]
    if wait and flags["insecure"]:
        raise Fail("cannot use --wait and --insecure together")
    labels = csv(flags["system-labels-to-wipe"] if isinstance(flags["system-labels-to-wipe"], list) else [])
    for label in labels:
        if label not in SYSTEM_LABELS:
            raise Fail('error executing reset: 1 error occurred:\n\t* %s: rpc error: code = InvalidArgument desc = '
                       'failed to find volume with label "%s"' % (",".join(csv(flags.get("nodes"))), label))
    if not labels:
        labels = [] if mode == "user-disks" else ["STATE", "EPHEMERAL", "META"]
    timeout = _duration(flags["timeout"], "30m0s")
    ctx.record({"reset": {"graceful": flags["graceful"], "reboot": flags["reboot"], "labels": labels}})
    done = {}

    def handler(sess, cell, ok, errors, tc, nodes):
        for n in ok:
            ip = n["ip"]
            # a graceful reset leaves etcd only while the node's etcd runs (LeaveEtcd: no data or a stopped
            # service is skipped), so a node that already left or whose etcd is dead is wiped without it
            if flags["graceful"] and n["machine_type"] == "controlplane" and n.get("etcd_member_id") \
                    and cli.etcd_running(n):
                problem = _leave(cell, n)
                if problem:
                    done[ip] = ("error", problem)
                    continue
            if "EPHEMERAL" in labels:
                n.update(etcd_member_id=None, etcd_data=False, etcd_cluster=None, etcd_left=False,
                         join_calls_left=None)
            if "STATE" in labels:
                n.update(stage="maintenance", machine_type=None, config=None, ca=None, cluster=None, version=None,
                         schematic=None, etcd_member_id=None, etcd_data=False, etcd_cluster=None, etcd_left=False,
                         join_calls_left=None)
            now = time.time()
            st.record_event(cell, ip, "reset", graceful=flags["graceful"], reboot=flags["reboot"], labels=labels)
            if flags["reboot"]:
                seconds = float(cell.cluster.get("upgrade_reboot_seconds") or 0) + \
                    float((cell.cluster.get("slow_boot") or {}).get(ip) or 0)
                n["down_until"] = now + seconds
                n["reboots"] += 1
                if n["machine_type"] == "controlplane":
                    n["etcd_ready_at"] = now + seconds + float(cell.cluster.get("etcd_settle_seconds") or 0)
                done[ip] = ("ok", seconds)
            else:
                n["unreachable"] = "refused"   # powered off
                done[ip] = ("ok", 0.0)
            st.note_downtime(cell, now)
        return 0

    rc = node_command(ctx, ("reset",), flags, pos, handler, insecure=flags["insecure"])
    if rc != 0 or not done:
        return rc
    failed = dict((ip, why) for ip, (state, why) in done.items() if state == "error")
    if not wait:
        if failed:
            ip = sorted(failed)[0]
            raise Fail("error executing reset: 1 error occurred:\n\t* %s: rpc error: code = Unknown desc = %s"
                       % (ip, failed[ip]))
        return 0
    ctx.stderr.write("watching nodes: [%s]\n" % " ".join(sorted(done)))
    if failed:
        for ip in sorted(failed):
            ctx.stderr.write("    * %s: sequence error: %s\n" % (ip, failed[ip]))
        return 1
    return track(ctx, dict((ip, seconds) for ip, (_state, seconds) in done.items()), timeout,
                 "post check passed" if flags["reboot"] else "events check condition met")


# --- etcd leave / remove-member / status / snapshot -----------------------------------------------
def _controlplane_only(n, api):
    if n["machine_type"] != "controlplane":
        return (n["ip"], "Unimplemented", "%s is only available on control plane nodes" % api)
    return None


def _local_etcd_error(n, api):
    """(ip, code, desc) when *api* cannot be answered by the node's local etcd (a worker, etcd not running)."""
    bad = _controlplane_only(n, api)
    if bad is None and not cli.etcd_running(n):
        bad = (n["ip"],) + cli.ETCD_LOCAL_REFUSED
    return bad


def _single_node(flags, command):
    if len(csv(flags.get("nodes"))) > 1:
        raise Fail('command "%s" is not supported with multiple nodes' % command)


def cmd_etcd_leave(ctx, flags, pos):
    if pos:
        raise UsageError("accepts 0 arg(s), received %d" % len(pos))
    _single_node(flags, "etcd leave")

    def handler(sess, cell, ok, errors, tc, nodes):
        for n in ok:
            bad = _controlplane_only(n, "etcd leave")
            if bad:
                errors.append(bad)
                continue
            problem = _leave(cell, n)
            if problem:
                errors.append((n["ip"], "Unknown", problem))
        return 0
    return node_command(ctx, ("etcd", "leave"), flags, pos, handler)


def cmd_etcd_remove_member(ctx, flags, pos):
    if len(pos) != 1:
        raise UsageError("accepts 1 arg(s), received %d" % len(pos))
    try:
        wanted = "%016x" % int(pos[0], 16)
    except ValueError:
        raise Fail('error parsing member ID: strconv.ParseUint: parsing "%s": invalid syntax' % pos[0])

    def handler(sess, cell, ok, errors, tc, nodes):
        for n in ok:
            bad = _controlplane_only(n, "etcd remove member")
            if bad:
                errors.append(bad)
                continue
            number = str(n.get("etcd_cluster"))
            info = (cell.cluster.get("etcd") or {}).get(number)
            if not n.get("etcd_member_id") or info is None or not quorum_ok(cell, number):
                errors.append((n["ip"], "Unknown", "failed to remove member: etcdserver: unhealthy cluster"))
                continue
            if wanted not in info["members"]:
                errors.append((n["ip"], "NotFound", "etcdserver: member not found"))
                continue
            gone = info["members"].pop(wanted)
            st.record_event(cell, gone["ip"], "etcd-remove-member", member=wanted, cluster=int(number), by=n["ip"])
            owner = cell.nodes.get(gone["ip"])
            if owner is not None and owner.get("etcd_member_id") == wanted:
                # its etcd learns it was removed and stops; the data directory stays until it is wiped
                owner.update(etcd_member_id=None, etcd_left=True, etcd_cluster=None, join_calls_left=None)
        return 0
    return node_command(ctx, ("etcd", "remove-member"), flags, pos, handler)


def _human_bytes(n):
    for unit, size in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if n >= size:
            return "%.1f %s" % (n / float(size), unit)
    return "%d B" % n


def cmd_etcd_status(ctx, flags, pos):
    if pos:
        raise UsageError("accepts 0 arg(s), received %d" % len(pos))

    def handler(sess, cell, ok, errors, tc, nodes):
        rows = []
        for n in ok:
            bad = _local_etcd_error(n, "etcd status")
            if bad:
                errors.append(bad)
                continue
            number = str(n.get("etcd_cluster"))
            info = cell.cluster["etcd"][number]
            by_ip = dict((m["ip"], m) for m in cell.nodes.values())
            running = sorted((m["ip"], mid) for mid, m in info["members"].items()
                             if by_ip.get(m["ip"]) and by_ip[m["ip"]].get("etcd_member_id") == mid
                             and cli.etcd_running(by_ip[m["ip"]]))
            leader = running[0][1] if quorum_ok(cell, number) and running else "0" * 16
            revision = int(info.get("revision") or 1)
            size = 20 * 10 ** 6 + revision * 4096
            in_use = size // 2
            rows.append("%s\t%s\t%s\t%s (%.2f%%)\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s"
                        % (n["ip"], n["etcd_member_id"], _human_bytes(size), _human_bytes(in_use), 50.0, leader,
                           1000 + revision, 2 + int(number), 1000 + revision, "false", "3.6.5", "3.6.0",
                           "" if leader != "0" * 16 else "etcdserver: no leader"))
        if rows:
            ctx.stdout.write(cli.tabulate(["NODE\tMEMBER\tDB SIZE\tIN USE\tLEADER\tRAFT INDEX\tRAFT TERM\t"
                                           "RAFT APPLIED INDEX\tLEARNER\tPROTOCOL\tSTORAGE\tERRORS"] + rows))
            if errors:
                # some nodes answered: talosctl prints a warning and exits 0 (cli.Warning)
                for ip, code, desc in errors:
                    ctx.stderr.write("WARNING: 1 error occurred:\n\t* %s: rpc error: code = %s desc = %s\n\n"
                                     % (ip, code, desc))
                del errors[:]
        return 0
    return node_command(ctx, ("etcd", "status"), flags, pos, handler)


def write_snapshot(path, info):
    """Write the double's snapshot file: magic, JSON header, zero padding, sha256 (size % 512 == 32)."""
    body = SNAPSHOT_MAGIC + json.dumps(info, sort_keys=True).encode() + b"\n"
    pad = (512 - (len(body) % 512)) % 512
    body += b"\0" * pad
    data = body + hashlib.sha256(body).digest()
    part = path + ".part"
    fd = os.open(part, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.rename(part, path)
    return len(data), zlib.crc32(data) & 0xffffffff


def read_snapshot(path):
    """(info, None) for a snapshot the double wrote, else (None, the error talosctl/etcdutl would print)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, "open %s: %s" % (path, os.strerror(e.errno).lower() if e.errno else e)
    if len(data) % 512 != hashlib.sha256().digest_size or not data.startswith(SNAPSHOT_MAGIC):
        return None, "snapshot file %s: invalid database (not an etcd snapshot)" % path
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        return None, "snapshot file %s: sha256 checksum mismatch (the file is damaged)" % path
    info = json.loads(body[len(SNAPSHOT_MAGIC):].split(b"\n", 1)[0].decode())
    info.update(size=len(data), hash=zlib.crc32(data) & 0xffffffff)
    return info, None


def cmd_etcd_snapshot(ctx, flags, pos):
    if len(pos) != 1:
        raise UsageError("accepts 1 arg(s), received %d" % len(pos))
    _single_node(flags, "etcd snapshot")
    path = pos[0]
    taken = {}

    def handler(sess, cell, ok, errors, tc, nodes):
        for n in ok:
            bad = _local_etcd_error(n, "etcd snapshot")
            if bad:
                errors.append(bad)
                continue
            number = str(n.get("etcd_cluster"))
            info = cell.cluster["etcd"][number]
            taken.update(cluster=int(number), revision=int(info.get("revision") or 1),
                         members=sorted(m["name"] for m in info["members"].values()),
                         keys=100 + int(info.get("revision") or 1), node=n["ip"], taken=time.time())
            st.record_event(cell, n["ip"], "etcd-snapshot", cluster=int(number), revision=taken["revision"])
        return 0
    rc = node_command(ctx, ("etcd", "snapshot"), flags, pos, handler)
    if rc != 0 or not taken:
        return rc
    try:
        size, crc = write_snapshot(path, taken)
    except OSError as e:
        raise Fail("error creating temporary file: open %s.part: %s" % (path, os.strerror(e.errno).lower()))
    ctx.stdout.write('etcd snapshot saved to "%s" (%d bytes)\n' % (path, size))
    ctx.stdout.write("snapshot info: hash %08x, revision %d, total keys %d, total size %d\n"
                     % (crc, taken["revision"], taken["keys"], size))
    return 0


def register():
    """Add the day-2 commands to cli.py's tables."""
    for words, spec, handler, prefix in (
            (("upgrade",), UPGRADE_FLAGS, cmd_upgrade, "error checking Talos version compatibility: error getting "
                                                       "server versions"),
            (("upgrade-k8s",), UPGRADE_K8S_FLAGS, cmd_upgrade_k8s, None),
            (("reset",), RESET_FLAGS, cmd_reset, "error executing reset"),
            (("etcd", "leave"), {}, cmd_etcd_leave, None),
            (("etcd", "remove-member"), {}, cmd_etcd_remove_member, None),
            (("etcd", "status"), {}, cmd_etcd_status, "error getting status"),
            (("etcd", "snapshot"), {}, cmd_etcd_snapshot, "error reading file")):
        cli.COMMANDS[words] = spec
        cli.HANDLERS[words] = handler
        cli.PREFIX[" ".join(words)] = prefix
