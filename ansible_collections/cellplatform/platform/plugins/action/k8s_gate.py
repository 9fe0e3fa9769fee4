# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side readiness gate over kubernetes.core.k8s_info (see the k8s_gate module docs)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.cellplatform.platform.plugins.plugin_utils import k8s_readiness as readiness

display = Display()

_KINDS = {
    # option: (apiVersion, kind, namespaced)
    "crds": ("apiextensions.k8s.io/v1", "CustomResourceDefinition", False),
    "deployments": ("apps/v1", "Deployment", True),
    "daemonsets": ("apps/v1", "DaemonSet", True),
    "statefulsets": ("apps/v1", "StatefulSet", True),
    "jobs": ("batch/v1", "Job", True),
}
_CHECKERS = {
    "CustomResourceDefinition": readiness.crd,
    "Deployment": readiness.deployment,
    "DaemonSet": readiness.daemonset,
    "StatefulSet": readiness.statefulset,
    "Job": readiness.job,
}


class Check(object):
    """One thing the gate waits for."""

    def __init__(self, api_version, kind, name, namespace=None, want=None, label=None):
        self.api_version, self.kind, self.name, self.namespace = api_version, kind, name, namespace
        self.want = want  # (type, status) for a custom condition
        self.only_exists = False
        self.label = label or ("%s %s" % (kind, "%s/%s" % (namespace, name) if namespace else name))
        self.ready = False
        self.detail = "not checked yet"

    def group(self):
        return (self.api_version, self.kind, self.namespace)


def _split(item, namespace):
    """'name' or 'namespace/name' -> (namespace, name)."""
    item = to_text(item)
    if "/" in item:
        ns, name = item.split("/", 1)
        return ns, name
    return namespace, item


def build_checks(args):
    namespace = args.get("namespace")
    checks = []
    for option, (api_version, kind, namespaced) in _KINDS.items():
        for item in args.get(option) or []:
            ns, name = _split(item, namespace) if namespaced else (None, to_text(item))
            if namespaced and not ns:
                raise AnsibleActionFail("k8s_gate: %s %s needs a namespace (option namespace, or namespace/name)"
                                        % (kind, name))
            checks.append(Check(api_version, kind, name, ns))
    for item in args.get("webhooks") or []:
        ns, name = _split(item, namespace)
        checks.append(Check("discovery.k8s.io/v1", "EndpointSlice", name, ns,
                            label="webhook Service %s/%s" % (ns, name)))
    for cond in args.get("conditions") or []:
        if not isinstance(cond, Mapping) or not all(cond.get(k) for k in ("api_version", "kind", "name", "type")):
            raise AnsibleActionFail("k8s_gate: conditions[] entries need api_version, kind, name and type, got %r"
                                    % (cond,))
        checks.append(Check(cond["api_version"], cond["kind"], cond["name"], cond.get("namespace"),
                            want=(cond["type"], str(cond.get("status", "True")))))
    for obj in args.get("exists") or []:
        if not isinstance(obj, Mapping) or not all(obj.get(k) for k in ("api_version", "kind", "name")):
            raise AnsibleActionFail("k8s_gate: exists[] entries need api_version, kind and name, got %r" % (obj,))
        check = Check(obj["api_version"], obj["kind"], obj["name"], obj.get("namespace"))
        check.only_exists = True
        checks.append(check)
    nodes = args.get("nodes_ready")
    if nodes:
        for name in (nodes if isinstance(nodes, list) else []):
            checks.append(Check("v1", "Node", to_text(name), label="Node %s" % name))
        if not isinstance(nodes, list):
            checks.append(Check("v1", "Node", "*", label="every Node"))
    return checks


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("kubeconfig", "context", "component", "namespace", "crds", "deployments", "daemonsets",
                             "statefulsets", "jobs", "webhooks", "conditions", "exists", "nodes_ready", "timeout", "poll",
                             "progress"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        self._task_vars = task_vars or {}
        args = self._task.args
        what = to_text(args.get("component") or "gate")
        timeout = int(args.get("timeout", 600))
        poll = float(args.get("poll", 5))
        progress = float(args.get("progress", 30))
        checks = build_checks(args)
        result.update(changed=False, checks=[c.label for c in checks], elapsed=0)
        if not checks:
            result["msg"] = "%s: nothing to wait for" % what
            return result
        if self._task.check_mode:
            result.update(skipped=True, msg="%s: check mode installs nothing, so there is nothing to wait for "
                                            "(%d check(s) would run)" % (what, len(checks)))
            return result
        started = time.monotonic()
        last_report = started
        api_error = None
        display.display("%s: waiting up to %ds for %s" % (what, timeout, ", ".join(c.label for c in checks)))
        while True:
            api_error = self._evaluate(args, checks) or None
            pending = [c for c in checks if not c.ready]
            failed = [c for c in pending if c.ready is None]
            elapsed = time.monotonic() - started
            result["elapsed"] = round(elapsed, 1)
            if failed:
                result.update(failed=True, msg="%s: %s. Fix the cause (kubectl describe shows the events) and rerun."
                              % (what, "; ".join("%s %s" % (c.label, c.detail) for c in failed)))
                return result
            if not pending:
                result["msg"] = "%s: ready after %ds (%s)" % (what, int(elapsed), ", ".join(
                    "%s: %s" % (c.label, c.detail) for c in checks))
                return result
            if elapsed >= timeout:
                result.update(failed=True, pending={c.label: c.detail for c in pending}, msg=(
                    "%s: timed out after %ds waiting for %s%s. Check the objects with kubectl (describe, events, "
                    "pod logs), then rerun; raise the timeout only if they are still progressing."
                    % (what, timeout, "; ".join("%s (%s)" % (c.label, c.detail) for c in pending),
                       ("; last API error: %s" % api_error) if api_error else "")))
                return result
            if time.monotonic() - last_report >= progress:
                last_report = time.monotonic()
                display.display("%s: still waiting (%ds of %ds) for %s" % (
                    what, int(elapsed), timeout, "; ".join("%s (%s)" % (c.label, c.detail) for c in pending)))
            time.sleep(min(poll, max(0.0, timeout - elapsed)))

    # ------------------------------------------------------------------------------------
    def _list(self, args, api_version, kind, namespace=None, name=None, labels=None):
        module_args = {"api_version": api_version, "kind": kind}
        for key in ("kubeconfig", "context"):
            if args.get(key):
                module_args[key] = args[key]
        if namespace:
            module_args["namespace"] = namespace
        if name:
            module_args["name"] = name
        if labels:
            module_args["label_selectors"] = labels
        res = self._execute_module(module_name="kubernetes.core.k8s_info", module_args=module_args,
                                   task_vars=self._task_vars)
        if res.get("failed"):
            return None, to_text(res.get("msg") or "k8s_info failed")
        if res.get("api_found") is False:
            return [], None
        return res.get("resources") or [], None

    def _evaluate(self, args, checks):
        """Update every pending check; returns the last API error text (or None)."""
        error = None
        cache = {}
        for check in checks:
            if check.ready:
                continue
            if check.kind == "EndpointSlice":
                items, err = self._list(args, check.api_version, check.kind, check.namespace,
                                        labels=["kubernetes.io/service-name=%s" % check.name])
                if err:
                    error, check.detail = err, "API not answering"
                    continue
                check.ready, check.detail = readiness.endpoints(items)
                continue
            key = check.group()
            if key not in cache:
                cache[key] = self._list(args, check.api_version, check.kind, check.namespace)
            items, err = cache[key]
            if err:
                error, check.detail = err, "API not answering"
                continue
            if check.kind == "Node" and check.name == "*":
                if not items:
                    check.ready, check.detail = False, "no Node registered yet"
                    continue
                states = [readiness.node(n) for n in items]
                ready = sum(1 for ok, _d in states if ok)
                check.ready, check.detail = ready == len(items), "%d/%d Ready" % (ready, len(items))
                continue
            found = [o for o in items if ((o.get("metadata") or {}).get("name")) == check.name]
            if not found:
                check.ready, check.detail = False, "does not exist yet"
                continue
            obj = found[0]
            if check.only_exists:
                check.ready, check.detail = True, "exists"
            elif check.want:
                check.ready, check.detail = readiness.condition(obj, *check.want)
            elif check.kind == "Node":
                check.ready, check.detail = readiness.node(obj)
            else:
                check.ready, check.detail = _CHECKERS[check.kind](obj)
        return error
