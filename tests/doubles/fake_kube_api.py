"""TEST DOUBLE: a small in-process Kubernetes API server on 127.0.0.1 (plain HTTP).

Not Kubernetes. It implements what kubernetes.core (k8s, k8s_info, helm via the helm double)
and the Python ``kubernetes`` dynamic client need to drive an apply path end to end in tests:

* discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>`` for a
  fixed set of built-in kinds (``BUILTIN``) plus every CustomResourceDefinition created through
  the API (its served versions appear in discovery once the CRD is Established);
* generic CRUD for namespaced and cluster-scoped objects: GET (one / list with
  ``labelSelector`` equality terms and ``fieldSelector`` ``metadata.name``/``metadata.namespace``),
  POST, PUT, PATCH and DELETE. PATCH content types: ``merge-patch+json`` and
  ``strategic-merge-patch+json`` (both approximated as an RFC 7386 merge),
  ``apply-patch+yaml`` (server-side apply, approximated as "create, or deep-merge the applied
  fields into the live object": fields another manager set are kept, removed fields are
  not pruned) and ``json-patch+json`` (add/replace/remove).  ``?dryRun=All`` validates and
  answers without persisting;
* API-server behaviours tests rely on: ``resourceVersion`` only changes when an object
  changes (so a second identical apply is a detectable no-op), ``metadata.generation`` bumps
  on ``spec`` changes, Secret ``stringData`` is folded into base64 ``data``, namespaced
  objects need their Namespace to exist, a custom resource is only accepted once its CRD is
  Established, and validating/mutating webhooks registered by
  ``ValidatingWebhookConfiguration``/``MutatingWebhookConfiguration`` objects reject matching
  requests ("failed calling webhook ... connection refused") until the webhook Service has a
  ready endpoint in an ``EndpointSlice`` (label ``kubernetes.io/service-name``);
* what ``kubectl drain`` / ``kubernetes.core.k8s_drain`` use: the cluster-wide pod list
  (``/api/v1/pods``) with ``fieldSelector=spec.nodeName=<node>``, cordon/uncordon as a patch of
  ``spec.unschedulable``, and the Eviction subresource (``POST .../pods/<name>/eviction``, policy/v1):
  the pod is deleted at once (no graceful termination is modelled) unless a PodDisruptionBudget of
  its namespace selects it and reports ``status.disruptionsAllowed: 0`` - then ``429
  TooManyRequests`` "Cannot evict pod as it would violate the pod's disruption budget.", as the API
  server answers.

Readiness hooks (nothing here runs controllers): ``FakeKubeAPI(auto_ready=True,
ready_delay=s, crd_delay=s)`` marks Deployments/DaemonSets/StatefulSets ready, EndpointSlice
endpoints ready and CRDs Established ``ready_delay``/``crd_delay`` seconds after they are
written; ``auto_ready=False`` leaves it to the test (``mark_ready(kind, namespace, name)``,
``establish(crd_name)``); ``set_condition(...)`` plays a controller that reports a condition;
``set_node_ready(name, ready)`` plays a kubelet (a Node's ``Ready`` condition) and ``add_pod(...)``
a scheduler that put a pod on a node.

Every request is logged in ``api.events`` (seq, time, verb, path, apiVersion, kind, namespace,
name, dry_run, field_manager, code) so tests can assert order ("CRs only after CRDs
Established", "namespace before release").  ``api.objects`` is the store;
``api.get(api_version, kind, name, namespace)`` reads it.

Usage::

    from fake_kube_api import FakeKubeAPI
    with FakeKubeAPI(ready_delay=0.2) as api:
        api.write_kubeconfig("/tmp/x/kubeconfig")      # server http://127.0.0.1:<port>
        ...run ansible-playbook with that kubeconfig...
        assert api.get("v1", "Namespace", "metallb-system")

Only 127.0.0.1 is ever bound; nothing here opens outbound connections.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import yaml
from loopback_server import LoopbackServer

KUBERNETES_VERSION = "v1.36.3"

# (groupVersion, kind, plural, namespaced)
BUILTIN = [
    ("v1", "Namespace", "namespaces", False),
    ("v1", "Secret", "secrets", True),
    ("v1", "ConfigMap", "configmaps", True),
    ("v1", "Service", "services", True),
    ("v1", "ServiceAccount", "serviceaccounts", True),
    ("v1", "Endpoints", "endpoints", True),
    ("v1", "Pod", "pods", True),
    ("v1", "Node", "nodes", False),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    ("apps/v1", "Deployment", "deployments", True),
    ("apps/v1", "DaemonSet", "daemonsets", True),
    ("apps/v1", "StatefulSet", "statefulsets", True),
    ("apps/v1", "ReplicaSet", "replicasets", True),
    ("batch/v1", "Job", "jobs", True),
    ("batch/v1", "CronJob", "cronjobs", True),
    ("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
     "validatingwebhookconfigurations", False),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
     "mutatingwebhookconfigurations", False),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True),
    ("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", False),
    ("coordination.k8s.io/v1", "Lease", "leases", True),
    ("storage.k8s.io/v1", "StorageClass", "storageclasses", False),
]
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details,
                "code": self.code}


def _merge_patch(target, patch):
    """RFC 7386 JSON merge patch (null deletes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = _merge_patch(out.get(key), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _json_patch(target, ops):
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif op["op"] == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise ApiError(422, "Invalid", "json patch op %r is not supported by the fake API" % op["op"])
    return doc


def _selector_matches(labels, selector):
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeKubeAPI(LoopbackServer):
    """In-process Kubernetes API test double; see the module docstring."""

    def __init__(self, auto_ready=True, ready_delay=0.0, crd_delay=0.0, kubernetes_version=KUBERNETES_VERSION):
        self.auto_ready = auto_ready
        self.ready_delay = ready_delay
        self.crd_delay = crd_delay
        self.kubernetes_version = kubernetes_version
        self.lock = threading.RLock()
        self.objects = {}          # (groupVersion, kind, namespace or "", name) -> object
        self.events = []
        self._rv = 100
        self._due = {}             # key -> monotonic time when it becomes ready/established
        self._crd_resources = {}   # groupVersion -> [(kind, plural, namespaced, crd name)]
        self.server = None
        self.thread = None
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._store(("v1", "Namespace", "", name), {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                "status": {"phase": "Active"}})

    # --- lifecycle -------------------------------------------------------------------------
    def start(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True   # header and body go out without a delayed-ACK stall

            def log_message(self, fmt, *args):   # keep test output clean
                pass

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not raw:
                    return None
                return yaml.safe_load(raw.decode())

            def _handle(self, verb):
                try:
                    body = self._body() if verb in ("POST", "PUT", "PATCH") else None
                    code, payload = api.handle(verb, self.path, body, self.headers.get("Content-Type", ""))
                except ApiError as exc:
                    code, payload = exc.code, exc.status()
                except Exception as exc:  # pragma: no cover - surfaced to the client as a 500
                    code, payload = 500, ApiError(500, "InternalError", "fake API bug: %r" % exc).status()
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_PATCH(self):
                self._handle("PATCH")

            def do_DELETE(self):
                self._handle("DELETE")

        self._serve(Handler, "fake-kube-api")
        return self

    def kubeconfig(self):
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "users": [{"name": "fake", "user": {"token": "fake-kube-api-token"}}],
        }

    def write_kubeconfig(self, path):
        with open(path, "w") as fh:
            yaml.safe_dump(self.kubeconfig(), fh)
        return path

    # --- test hooks ------------------------------------------------------------------------
    def get(self, api_version, kind, name, namespace=None):
        with self.lock:
            self._tick()
            obj = self.objects.get((api_version, kind, namespace or "", name))
            return copy.deepcopy(obj) if obj else None

    def list(self, api_version=None, kind=None, namespace=None):
        with self.lock:
            self._tick()
            return [copy.deepcopy(o) for k, o in sorted(self.objects.items())
                    if (api_version is None or k[0] == api_version) and (kind is None or k[1] == kind)
                    and (namespace is None or k[2] == namespace)]

    def mark_ready(self, kind, namespace, name):
        with self.lock:
            for key, obj in self.objects.items():
                if key[1] == kind and key[2] == (namespace or "") and key[3] == name:
                    self._make_ready(key, obj)
                    return True
        return False

    def set_condition(self, api_version, kind, name, namespace, cond_type, status="True"):
        """Stand in for a controller: set ``status.conditions[type]`` of an object (False if absent)."""
        with self.lock:
            obj = self.objects.get((api_version, kind, namespace or "", name))
            if obj is None:
                return False
            conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") != cond_type]
            conds.append({"type": cond_type, "status": status, "reason": "TestDouble"})
            obj.setdefault("status", {})["conditions"] = conds
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            return True

    def set_node_ready(self, name, ready=True):
        """Stand in for a kubelet: set the Node's Ready condition (True/False); False if the Node is absent."""
        return self.set_condition("v1", "Node", name, None, "Ready", "True" if ready else "False")

    def add_pod(self, namespace, name, node, owner_kind="ReplicaSet", labels=None):
        """Stand in for a scheduler: a running pod on *node* owned by a *owner_kind* (None: unmanaged)."""
        owners = [{"apiVersion": "apps/v1", "kind": owner_kind, "name": name.rsplit("-", 1)[0], "uid": str(uuid.uuid4()),
                   "controller": True}] if owner_kind else []
        with self.lock:
            key = ("v1", "Pod", namespace, name)
            self._rv += 1
            self.objects[key] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name},
                             "ownerReferences": owners, "uid": str(uuid.uuid4()), "resourceVersion": str(self._rv),
                             "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": "registry.invalid/%s" % name}]},
                "status": {"phase": "Running"}}

    def establish(self, crd_name):
        with self.lock:
            key = ("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", crd_name)
            if key in self.objects:
                self._establish(key, self.objects[key])
                return True
        return False

    def writes(self, changed_only=True):
        """Successful, persisted write requests (no dry runs), in order; by default only those
        that changed an object (a no-op server-side apply is a request, not a change)."""
        return [e for e in self.events if e["verb"] in ("create", "update", "patch", "apply", "delete")
                and not e["dry_run"] and (e["code"] or 0) < 400
                and (e.get("changed") or not changed_only)]

    # --- discovery -------------------------------------------------------------------------
    def _resources(self):
        """groupVersion -> [(kind, plural, namespaced)] of everything currently served."""
        out = {}
        for gv, kind, plural, namespaced in BUILTIN:
            out.setdefault(gv, []).append((kind, plural, namespaced))
        for gv, items in self._crd_resources.items():
            for kind, plural, namespaced, crd in items:
                crd_obj = self.objects.get(("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", crd))
                if crd_obj and self._is_established(crd_obj):
                    out.setdefault(gv, []).append((kind, plural, namespaced))
        return out

    def _resolve(self, gv, plural):
        for kind, plu, namespaced in self._resources().get(gv, []):
            if plu == plural:
                return kind, namespaced
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _discovery(self, path):
        resources = self._resources()
        if path == "/version":
            major, minor = self.kubernetes_version.lstrip("v").split(".")[:2]
            return {"major": major, "minor": minor, "gitVersion": self.kubernetes_version,
                    "platform": "linux/amd64", "goVersion": "go1.24.0", "compiler": "gc"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            groups = {}
            for gv in sorted(resources):
                if "/" not in gv:
                    continue
                group, version = gv.split("/")
                groups.setdefault(group, []).append({"groupVersion": gv, "version": version})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": v, "preferredVersion": v[0]} for g, v in sorted(groups.items())]}
        gv = path[len("/api/"):] if path.startswith("/api/") else path[len("/apis/"):]
        if gv not in resources:
            if path.startswith("/apis/") and gv.count("/") == 0:
                versions = [{"groupVersion": g, "version": g.split("/")[1]} for g in sorted(resources)
                            if g.startswith(gv + "/")]
                if versions:
                    return {"kind": "APIGroup", "apiVersion": "v1", "name": gv, "versions": versions,
                            "preferredVersion": versions[0]}
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        items = []
        for kind, plural, namespaced in resources[gv]:
            singular = kind.lower()
            items.append({"name": plural, "singularName": singular, "namespaced": namespaced,
                          "kind": kind, "verbs": VERBS})
            if kind in WORKLOADS or kind == "CustomResourceDefinition":
                items.append({"name": plural + "/status", "singularName": "", "namespaced": namespaced,
                              "kind": kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}

    # --- request routing -------------------------------------------------------------------
    _PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                       r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?"
                       r"(?:/(?P<sub>status|eviction))?/?$")

    def handle(self, verb, raw_path, body, content_type):
        parts = urlsplit(raw_path)
        path, query = parts.path.rstrip("/") or "/", parse_qs(parts.query)
        with self.lock:
            self._tick()
            if verb == "GET" and (path in ("/version", "/api", "/apis") or
                                  re.match(r"^/api/v1$|^/apis/[^/]+(/[^/]+)?$", path)):
                return 200, self._discovery(path)
            match = self._PATH.match(path)
            if not match:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            gv = match.group("core") or "%s/%s" % (match.group("group"), match.group("version"))
            plural, name, ns, sub = match.group("plural"), match.group("name"), match.group("ns"), match.group("sub")
            # /api/v1/namespaces/<name> is the Namespace object itself
            if plural == "namespaces" and gv == "v1" and ns is None:
                pass
            kind, namespaced = self._resolve(gv, plural)
            if namespaced is False:
                ns = None
            event = {"seq": len(self.events) + 1, "time": time.time(), "path": path, "apiVersion": gv,
                     "kind": kind, "namespace": ns, "name": name or (body or {}).get("metadata", {}).get("name"),
                     "dry_run": query.get("dryRun", [""])[0] == "All",
                     "field_manager": query.get("fieldManager", [None])[0], "verb": None, "code": None,
                     "changed": False}
            self.events.append(event)
            try:
                code, payload = self._dispatch(verb, gv, kind, namespaced, ns, name, sub, body, content_type,
                                               query, event)
            except ApiError as exc:
                event["code"] = exc.code
                raise
            event["code"] = code
            return code, payload

    def _dispatch(self, verb, gv, kind, namespaced, ns, name, sub, body, content_type, query, event):
        dry = event["dry_run"]
        if verb == "GET":
            event["verb"] = "get" if name else "list"
            if name:
                return 200, self._read((gv, kind, ns or "", name), kind)
            items = [copy.deepcopy(o) for k, o in sorted(self.objects.items())
                     if k[0] == gv and k[1] == kind and (ns is None or k[2] == ns)]
            items = [o for o in items if _selector_matches(o["metadata"].get("labels") or {},
                                                           query.get("labelSelector", [""])[0])]
            for term in filter(None, query.get("fieldSelector", [""])[0].split(",")):
                field, _, value = term.partition("=")
                value = value.lstrip("=")
                if field == "metadata.name":
                    items = [o for o in items if o["metadata"]["name"] == value]
                elif field == "metadata.namespace":
                    items = [o for o in items if o["metadata"].get("namespace") == value]
                elif field == "spec.nodeName":
                    items = [o for o in items if (o.get("spec") or {}).get("nodeName") == value]
            return 200, {"kind": kind + "List", "apiVersion": gv,
                         "metadata": {"resourceVersion": str(self._rv)}, "items": items}
        if verb == "DELETE":
            event["verb"] = "delete"
            key = (gv, kind, ns or "", name)
            obj = self._read(key, kind)
            if not dry:
                event["changed"] = True
                del self.objects[key]
                self._due.pop(key, None)
                if kind == "CustomResourceDefinition":
                    self._unregister_crd(name)
            return 200, obj
        if body is None and verb in ("POST", "PUT", "PATCH"):
            raise ApiError(400, "BadRequest", "the request body is empty")
        if verb == "POST" and sub == "eviction":
            return self._evict(gv, kind, ns, name, dry, event)
        if verb == "POST":
            event["verb"] = "create"
            self._check_body(gv, kind, body)
            name = body["metadata"].get("name")
            key = (gv, kind, ns or "", name)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (self._plural(gv, kind), name),
                               {"name": name, "kind": self._plural(gv, kind)})
            return 201, self._write(key, None, body, namespaced, ns, dry, "CREATE")
        key = (gv, kind, ns or "", name)
        existing = self.objects.get(key)
        if verb == "PUT":
            event["verb"] = "update"
            if existing is None:
                raise self._not_found(gv, kind, name)
            self._check_body(gv, kind, body)
            if sub == "status":
                new = copy.deepcopy(existing)
                new["status"] = body.get("status")
                return 200, self._write(key, existing, new, namespaced, ns, dry, "UPDATE", keep_status=False)
            return 200, self._write(key, existing, body, namespaced, ns, dry, "UPDATE")
        if verb == "PATCH":
            ctype = content_type.split(";")[0].strip()
            if ctype == "application/apply-patch+yaml":
                event["verb"] = "apply"
                self._check_body(gv, kind, body)
                if existing is None:
                    return 201, self._write(key, None, body, namespaced, ns, dry, "CREATE")
                return 200, self._write(key, existing, _merge_apply(existing, body), namespaced, ns, dry, "UPDATE")
            event["verb"] = "patch"
            if existing is None:
                raise self._not_found(gv, kind, name)
            if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                new = _merge_patch(existing, body)
            elif ctype == "application/json-patch+json":
                new = _json_patch(existing, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
            return 200, self._write(key, existing, new, namespaced, ns, dry, "UPDATE",
                                    keep_status=sub != "status")
        raise ApiError(405, "MethodNotAllowed", "method %s not allowed" % verb)

    def _evict(self, gv, kind, ns, name, dry, event):
        """policy/v1 Eviction of a pod: refused (429) by a PodDisruptionBudget that allows no disruption."""
        event["verb"] = "evict"
        if kind != "Pod":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        key = (gv, kind, ns or "", name)
        pod = self._read(key, kind)
        labels = pod["metadata"].get("labels") or {}
        for pkey, pdb in self.objects.items():
            if pkey[1] != "PodDisruptionBudget" or pkey[2] != (ns or ""):
                continue
            match = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if match and all(labels.get(k) == v for k, v in match.items()) and \
                    int((pdb.get("status") or {}).get("disruptionsAllowed", 0)) <= 0:
                raise ApiError(429, "TooManyRequests",
                               "Cannot evict pod as it would violate the pod's disruption budget.",
                               {"causes": [{"reason": "DisruptionBudget", "message": "The disruption budget %s needs %s "
                                            "healthy pods and has %s currently" % (pkey[3], 1, 1)}]})
        if not dry:
            event["changed"] = True
            del self.objects[key]
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # --- storage ---------------------------------------------------------------------------
    def _plural(self, gv, kind):
        for k, plural, _ in self._resources().get(gv, []):
            if k == kind:
                return plural
        return kind.lower() + "s"

    def _not_found(self, gv, kind, name):
        group = gv.split("/")[0] if "/" in gv else ""
        res = self._plural(gv, kind) + ("." + group if group else "")
        return ApiError(404, "NotFound", '%s "%s" not found' % (res, name), {"name": name, "kind": self._plural(gv, kind)})

    def _read(self, key, kind):
        obj = self.objects.get(key)
        if obj is None:
            raise self._not_found(key[0], kind, key[3])
        return copy.deepcopy(obj)

    def _check_body(self, gv, kind, body):
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict) or not body["metadata"].get("name"):
            raise ApiError(422, "Invalid", "%s is invalid: metadata.name: Required value" % kind)
        if body.get("apiVersion") not in (None, gv) or body.get("kind") not in (None, kind):
            raise ApiError(400, "BadRequest", "the API version/kind in the data (%s/%s) does not match the "
                           "request (%s/%s)" % (body.get("apiVersion"), body.get("kind"), gv, kind))

    def _store(self, key, obj):
        self.objects[key] = obj

    def _write(self, key, existing, body, namespaced, ns, dry, operation, keep_status=True):
        gv, kind, _, name = key
        new = copy.deepcopy(body)
        new["apiVersion"], new["kind"] = gv, kind
        meta = new.setdefault("metadata", {})
        if namespaced:
            if meta.get("namespace") not in (None, ns):
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            meta["namespace"] = ns
            if ("v1", "Namespace", "", ns) not in self.objects:
                raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns, {"name": ns, "kind": "namespaces"})
        else:
            meta.pop("namespace", None)
        if kind == "Secret":
            data = dict(new.get("data") or {})
            for k, v in (new.pop("stringData", None) or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            new["data"] = data
        self._admit(gv, kind, ns, new, operation)
        if existing is not None:
            for field in ("uid", "creationTimestamp", "resourceVersion", "generation"):
                if field in existing["metadata"]:
                    meta[field] = existing["metadata"][field]
            if keep_status and "status" in existing:
                new["status"] = existing["status"]
            if new.get("spec") != existing.get("spec"):
                meta["generation"] = existing["metadata"].get("generation", 1) + 1
            if new == existing:
                return copy.deepcopy(existing)     # no-op: resourceVersion unchanged
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            meta["generation"] = 1
        if dry:
            return new
        if self.events:
            self.events[-1]["changed"] = True
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self.objects[key] = new
        if kind == "CustomResourceDefinition":
            self._register_crd(new)
        if kind in WORKLOADS or kind == "EndpointSlice" or kind == "CustomResourceDefinition":
            delay = self.crd_delay if kind == "CustomResourceDefinition" else self.ready_delay
            if self.auto_ready:
                self._due[key] = time.monotonic() + delay
            self._tick()
        return copy.deepcopy(self.objects[key])

    # --- CRDs ------------------------------------------------------------------------------
    def _register_crd(self, crd):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            gv = "%s/%s" % (spec.get("group"), version["name"])
            entries = [e for e in self._crd_resources.get(gv, []) if e[3] != crd["metadata"]["name"]]
            entries.append((names.get("kind"), names.get("plural"), spec.get("scope", "Namespaced") == "Namespaced",
                            crd["metadata"]["name"]))
            self._crd_resources[gv] = entries
        crd.setdefault("status", {}).setdefault("conditions", [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "False", "reason": "Installing",
             "message": "the initial names have been accepted"}])
        crd["status"]["acceptedNames"] = names

    def _unregister_crd(self, name):
        for gv in list(self._crd_resources):
            self._crd_resources[gv] = [e for e in self._crd_resources[gv] if e[3] != name]

    @staticmethod
    def _is_established(crd):
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in (crd.get("status") or {}).get("conditions") or [])

    def _establish(self, key, crd):
        conditions = [c for c in (crd.get("status") or {}).get("conditions") or [] if c.get("type") != "Established"]
        conditions.append({"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                           "message": "the initial names have been accepted"})
        crd.setdefault("status", {})["conditions"] = conditions
        self._rv += 1
        crd["metadata"]["resourceVersion"] = str(self._rv)
        self.events.append({"seq": len(self.events) + 1, "time": time.time(), "verb": "established",
                            "apiVersion": key[0], "kind": key[1], "namespace": None, "name": key[3],
                            "path": None, "dry_run": False, "field_manager": "fake-kube-api", "code": 200})

    # --- readiness -------------------------------------------------------------------------
    def _tick(self):
        now = time.monotonic()
        for key, due in list(self._due.items()):
            if due <= now and key in self.objects:
                del self._due[key]
                if key[1] == "CustomResourceDefinition":
                    self._establish(key, self.objects[key])
                else:
                    self._make_ready(key, self.objects[key])

    def _make_ready(self, key, obj):
        kind = key[1]
        gen = obj["metadata"].get("generation", 1)
        if kind == "EndpointSlice":
            for ep in obj.get("endpoints") or []:
                ep.setdefault("conditions", {})["ready"] = True
        elif kind == "Deployment" or kind == "StatefulSet":
            replicas = (obj.get("spec") or {}).get("replicas", 1)
            obj["status"] = {"observedGeneration": gen, "replicas": replicas, "readyReplicas": replicas,
                             "availableReplicas": replicas, "updatedReplicas": replicas,
                             "currentReplicas": replicas,
                             "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                                            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
            if kind == "StatefulSet":
                obj["status"]["currentRevision"] = obj["status"]["updateRevision"] = "%s-1" % key[3]
        elif kind == "DaemonSet":
            n = 3
            obj["status"] = {"observedGeneration": gen, "desiredNumberScheduled": n, "currentNumberScheduled": n,
                             "numberReady": n, "updatedNumberScheduled": n, "numberAvailable": n,
                             "numberMisscheduled": 0}
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    # --- admission webhooks ----------------------------------------------------------------
    def _admit(self, gv, kind, ns, obj, operation):
        group, _, version = gv.rpartition("/")
        plural = self._plural(gv, kind)
        for wkind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for key, conf in self.objects.items():
                if key[1] != wkind:
                    continue
                for hook in conf.get("webhooks") or []:
                    if not any(_rule_matches(rule, group, version, plural, operation) for rule in hook.get("rules") or []):
                        continue
                    svc = ((hook.get("clientConfig") or {}).get("service")) or {}
                    if not svc or self._service_ready(svc.get("namespace"), svc.get("name")):
                        continue
                    if hook.get("failurePolicy", "Fail") == "Ignore":
                        continue
                    raise ApiError(500, "InternalError",
                                   'Internal error occurred: failed calling webhook "%s": failed to call webhook: '
                                   'Post "https://%s.%s.svc:443/": dial tcp: connect: connection refused'
                                   % (hook.get("name"), svc.get("name"), svc.get("namespace")))

    def _service_ready(self, ns, name):
        for key, obj in self.objects.items():
            if key[1] == "EndpointSlice" and key[2] == ns and \
                    (obj["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name:
                if any((ep.get("conditions") or {}).get("ready") for ep in obj.get("endpoints") or []):
                    return True
        return False


def _rule_matches(rule, group, version, plural, operation):
    def has(values, value):
        return "*" in (values or []) or value in (values or [])
    return (has(rule.get("apiGroups"), group) and has(rule.get("apiVersions"), version)
            and has(rule.get("resources"), plural) and has(rule.get("operations"), operation))


def _merge_apply(live, applied):
    """Server-side apply approximation: deep-merge the applied config into the live object."""
    out = copy.deepcopy(live)
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_apply(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
