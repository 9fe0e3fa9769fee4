"""TEST DOUBLES: the HTTP APIs of Gitea (v1, with git's smart-HTTP protocol) and Harbor (v2.0).

Not Gitea, not Harbor. Two small in-process HTTPS servers, bound to 127.0.0.1 only, that answer
the requests the l3_delivery role sends after the component pipeline, with the paths, status codes
and bodies of the real services (read from go-gitea/gitea ``routers/api/v1`` and
``services/webhook``, and from goharbor/harbor v2.15 ``api/v2.0/swagger.yaml`` and
``src/server/v2.0/handler``), so that a role which reads before it writes, treats "already
exists" as present and fails closed on a lost secret is told apart from one that does not:

Gitea (``GiteaDouble``), every request with HTTP basic auth of the admin account (401 otherwise,
with ``WWW-Authenticate: Basic realm="Gitea"``, the challenge git needs before it sends
credentials):

* ``GET /api/v1/version``; while ``starting`` is set the server answers 502 (the shared Gateway
  in front of a pod that is not ready);
* ``GET /api/v1/orgs/{org}`` 200/404; ``POST /api/v1/orgs`` 201, 422 when the name is taken or
  reserved;
* ``GET /api/v1/repos/{owner}/{repo}`` 200/404; ``POST /api/v1/orgs/{org}/repos`` 201 (a bare
  repository on disk), 409 when it exists, 404 without the organisation;
* ``GET|POST /api/v1/orgs/{org}/hooks``, ``PATCH /api/v1/orgs/{org}/hooks/{id}``: the secret of
  a hook is stored but never returned (``config`` holds ``url`` and ``content_type`` only);
* ``GET|POST /api/v1/users/{user}/tokens``: a token's ``sha1`` is returned only by the POST that
  creates it (400 "access token name has been used already" for a name in use);
* git over HTTPS at ``/{owner}/{repo}.git/...``: the real ``git http-backend`` (CGI) serves
  ``info/refs``, ``git-upload-pack`` and ``git-receive-pack`` on the bare repositories.

Harbor (``HarborDouble``), basic auth of ``admin`` (401 with Harbor's error body otherwise):

* ``GET /api/v2.0/health``: 502 while ``starting``, then ``{"status": "healthy"}``;
* ``GET /api/v2.0/registries``; ``POST`` 201 with a ``Location`` header and no body, 400 for an
  unknown type or a bad URL, 400 "the registry is unhealthy" for an upstream listed in
  ``unreachable`` (Harbor pings an endpoint before it stores it), 409 for a name in use;
  ``PUT /api/v2.0/registries/{id}``;
* ``GET /api/v2.0/projects?page_size=`` (one page; ``X-Total-Count``), ``HEAD
  /api/v2.0/projects?project_name=`` 200/404; ``POST /api/v2.0/projects`` 201, 409 for a
  name in use, 400 for a bad name, metadata.public other than "true"/"false" or a registry type
  that cannot back a proxy cache, 500 for an unknown registry_id (Harbor loses the NotFound);
  ``GET /api/v2.0/projects/{name}`` with ``X-Is-Resource-Name: true`` 200/404;
* ``GET /api/v2.0/robots?q=Level=project,ProjectID=<id>`` (400 without ProjectID);
  ``POST /api/v2.0/robots`` 201 with ``robot$<project>+<name>`` and the secret (the only time it
  is shown), 409 for a name in use, 400 for a bad name or duration, 404 for an unknown project.

Every request is recorded in ``double.requests`` as (method, path, status, user); bodies are not
recorded (they carry secrets). ``double.state`` is the stored data, for assertions. Nothing here
opens an outbound connection.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from loopback_server import LoopbackServer

# Gitea: names it reserves (models/user) and its name rule (IsValidUsername).
GITEA_RESERVED = {"admin", "api", "assets", "explore", "org", "repo", "user", "login", "new", "v2"}
_GITEA_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|[-._](?=[A-Za-z0-9]))*$")
# Harbor: registry types with an adapter, those that can back a proxy cache, project and robot names.
HARBOR_TYPES = {"harbor", "docker-hub", "docker-registry", "huawei-SWR", "google-gcr", "aws-ecr", "azure-acr",
                "ali-acr", "jfrog-artifactory", "quay", "gitlab", "dtr", "tencent-tcr", "github-ghcr", "volcengine-cr"}
HARBOR_PROXY_TYPES = {"docker-hub", "harbor", "azure-acr", "aws-ecr", "google-gcr", "quay", "docker-registry",
                      "github-ghcr", "jfrog-artifactory"}
_HARBOR_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


class _Reply(Exception):
    def __init__(self, status, body=None, headers=None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class _Double(LoopbackServer):
    """An HTTPS server on 127.0.0.1 with basic auth; subclasses route the requests."""

    realm = "double"
    scheme = "https"

    def __init__(self, cert, key, username, password):
        self.cert, self.key = str(cert), str(key)
        self.username, self.password = username, password
        self.requests = []
        self.starting = False
        self.lock = threading.RLock()
        self.server = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True   # header and body go out without a delayed-ACK stall

            def log_message(self, fmt, *args):
                pass

            def _serve(self):
                split = urlsplit(self.path)
                raw = self._read_body()
                user = double._user(self.headers.get("Authorization"))
                try:
                    if double.starting:
                        raise _Reply(502, "<html><body><h1>502 Bad Gateway</h1></body></html>",
                                     {"Content-Type": "text/html"})
                    result = double.route(self, self.command, split.path, parse_qs(split.query), raw, user)
                except _Reply as reply:
                    result = reply
                double.requests.append((self.command, split.path, result.status, user))
                body = result.body
                if isinstance(body, (dict, list)):
                    data, ctype = json.dumps(body).encode(), "application/json"
                elif isinstance(body, str):
                    data, ctype = body.encode(), "text/plain; charset=utf-8"
                else:
                    data, ctype = body or b"", "application/octet-stream"
                self.send_response(result.status)
                headers = {"Content-Type": ctype}
                headers.update(result.headers)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":   # git's large pushes
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self._serve(Handler, type(self).__name__, context)
        return self

    # --- helpers --------------------------------------------------------------------------------
    def _user(self, header):
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if (user, password) == (self.username, self.password) else "!" + user

    def writes(self):
        """Successful requests that change something: not GET/HEAD, and not git's fetch (a POST to
        git-upload-pack reads)."""
        return [r for r in self.requests if r[0] not in ("GET", "HEAD") and r[2] < 400
                and not r[1].endswith("/git-upload-pack")]

    @staticmethod
    def json_body(raw):
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise _Reply(400, {"message": "invalid JSON body"})


class GiteaDouble(_Double):
    """Gitea 1.27's API v1 and git smart HTTP; see the module docstring."""

    def __init__(self, cert, key, username, password, git_root):
        super().__init__(cert, key, username, password)
        self.git_root = str(git_root)
        self.state = {"orgs": {}, "repos": {}, "hooks": {}, "tokens": {}}
        self._ids = 0

    def _next(self):
        self._ids += 1
        return self._ids

    def _auth(self, user):
        if user != self.username:
            raise _Reply(401, {"message": "invalid username, password or token"},
                         {"WWW-Authenticate": 'Basic realm="Gitea"'})

    def _org(self, name):
        org = self.state["orgs"].get(name.lower())
        if org is None:
            raise _Reply(404, {"message": "GetOrgByName", "errors": ["org does not exist [name: %s]" % name]})
        return org

    def route(self, handler, method, path, query, raw, user):
        self._auth(user)
        if re.match(r"^/[^/]+/[^/]+\.git/", path):
            return self._git(handler, method, path, raw, user)
        with self.lock:
            return self._api(method, path, raw)

    def _api(self, method, path, raw):
        if path == "/api/v1/version" and method == "GET":
            return _Reply(200, {"version": "1.27.0"})
        if path == "/api/v1/orgs" and method == "POST":
            body = self.json_body(raw)
            name = str(body.get("username") or "")
            if not _GITEA_NAME.match(name) or name.lower() in GITEA_RESERVED:
                raise _Reply(422, {"message": "name is reserved or invalid [name: %s]" % name})
            if name.lower() in self.state["orgs"] or name == self.username:
                raise _Reply(422, {"message": "user already exists [name: %s]" % name})
            org = {"id": self._next(), "name": name, "username": name, "full_name": body.get("full_name", ""),
                   "visibility": body.get("visibility") or "public", "description": body.get("description", "")}
            self.state["orgs"][name.lower()] = org
            return _Reply(201, org)
        match = re.match(r"^/api/v1/orgs/([^/]+)$", path)
        if match and method == "GET":
            return _Reply(200, self._org(unquote(match.group(1))))
        match = re.match(r"^/api/v1/orgs/([^/]+)/repos$", path)
        if match and method == "POST":
            org = self._org(unquote(match.group(1)))
            body = self.json_body(raw)
            name = str(body.get("name") or "")
            if not re.match(r"^[A-Za-z0-9._-]+$", name) or name in (".", "..") or name.endswith((".git", ".wiki")):
                raise _Reply(422, {"message": "name is invalid [%s]" % name})
            key = ("%s/%s" % (org["name"], name)).lower()
            if key in self.state["repos"]:
                raise _Reply(409, {"message": "The repository with the same name already exists."})
            branch = body.get("default_branch") or "main"
            bare = os.path.join(self.git_root, org["name"], name + ".git")
            subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=%s" % branch, bare], check=True)
            subprocess.run(["git", "-C", bare, "config", "http.receivepack", "true"], check=True)
            repo = {"id": self._next(), "name": name, "full_name": "%s/%s" % (org["name"], name),
                    "owner": {"username": org["name"]}, "private": bool(body.get("private")), "empty": True,
                    "default_branch": branch, "clone_url": "%s/%s/%s.git" % (self.url, org["name"], name)}
            self.state["repos"][key] = repo
            return _Reply(201, repo)
        match = re.match(r"^/api/v1/repos/([^/]+)/([^/]+)$", path)
        if match and method == "GET":
            repo = self.state["repos"].get(("%s/%s" % (unquote(match.group(1)), unquote(match.group(2)))).lower())
            if repo is None:
                raise _Reply(404, {"message": "The target couldn't be found.", "errors": []})
            return _Reply(200, repo)
        match = re.match(r"^/api/v1/orgs/([^/]+)/hooks(?:/(\d+))?$", path)
        if match:
            org = self._org(unquote(match.group(1)))
            hooks = self.state["hooks"].setdefault(org["name"].lower(), [])
            if method == "GET" and not match.group(2):
                return _Reply(200, [self._public_hook(h) for h in hooks])
            if method == "POST" and not match.group(2):
                body = self.json_body(raw)
                config = body.get("config") or {}
                if body.get("type") not in ("gitea", "gogs", "slack", "discord", "dingtalk", "telegram", "msteams",
                                            "feishu", "matrix", "wechatwork", "packagist"):
                    raise _Reply(422, {"message": "Invalid hook type"})
                if not config.get("url") or config.get("content_type") not in ("json", "form"):
                    raise _Reply(422, {"message": "Missing config option: url or content_type"})
                hook = {"id": self._next(), "type": body["type"], "active": bool(body.get("active")),
                        "events": list(body.get("events") or ["push"]), "url": config["url"],
                        "content_type": config["content_type"], "secret": config.get("secret", "")}
                hooks.append(hook)
                return _Reply(201, self._public_hook(hook))
            if method == "PATCH" and match.group(2):
                hook = next((h for h in hooks if h["id"] == int(match.group(2))), None)
                if hook is None:
                    raise _Reply(404, {"message": "The target couldn't be found."})
                body = self.json_body(raw)
                for key in ("active", "events"):
                    if key in body:
                        hook[key] = body[key]
                return _Reply(200, self._public_hook(hook))
        match = re.match(r"^/api/v1/users/([^/]+)/tokens$", path)
        if match:
            if unquote(match.group(1)) != self.username:
                raise _Reply(403, {"message": "only the user themselves may manage their tokens"})
            tokens = self.state["tokens"]
            if method == "GET":
                return _Reply(200, [{"id": t["id"], "name": t["name"], "sha1": "", "token_last_eight": t["sha1"][-8:],
                                     "scopes": t["scopes"]} for t in tokens.values()])
            if method == "POST":
                body = self.json_body(raw)
                name = str(body.get("name") or "")
                if name in tokens:
                    raise _Reply(400, {"message": "access token name has been used already"})
                token = {"id": self._next(), "name": name, "sha1": secrets.token_hex(20),
                         "scopes": list(body.get("scopes") or [])}
                tokens[name] = token
                return _Reply(201, dict(token, token_last_eight=token["sha1"][-8:]))
        raise _Reply(404, {"message": "not found (%s %s is not part of the Gitea API double)" % (method, path)})

    @staticmethod
    def _public_hook(hook):
        return {"id": hook["id"], "type": hook["type"], "active": hook["active"], "events": list(hook["events"]),
                "config": {"url": hook["url"], "content_type": hook["content_type"]}}

    def _git(self, handler, method, path, raw, user):
        """git's smart HTTP through the real git http-backend (CGI), as Gitea serves it."""
        owner, rest = path[1:].split("/", 1)
        repo = rest.split(".git/", 1)[0]
        if ("%s/%s" % (owner, repo)).lower() not in self.state["repos"]:
            raise _Reply(404, "Repository not found")
        env = {"GIT_PROJECT_ROOT": self.git_root, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
               "REQUEST_METHOD": method, "QUERY_STRING": urlsplit(handler.path).query, "REMOTE_USER": user,
               "CONTENT_TYPE": handler.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(raw)),
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if handler.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = handler.headers["Content-Encoding"]
        if handler.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = handler.headers["Git-Protocol"]
        proc = subprocess.run(["git", "http-backend"], input=raw, env=env, capture_output=True, check=False)
        head, _, body = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        if proc.returncode != 0 and not head:
            raise _Reply(500, proc.stderr.decode(errors="replace"))
        return _Reply(status, body, headers)

    # --- for assertions ---------------------------------------------------------------------------
    def branch_tree(self, owner, repo, branch):
        """The tree hash of a branch of a hosted repository ('' when the branch does not exist)."""
        bare = os.path.join(self.git_root, owner, repo + ".git")
        proc = subprocess.run(["git", "-C", bare, "rev-parse", "--verify", "--quiet", "refs/heads/%s^{tree}" % branch],
                              capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    def commits(self, owner, repo, branch):
        bare = os.path.join(self.git_root, owner, repo + ".git")
        proc = subprocess.run(["git", "-C", bare, "rev-list", "refs/heads/%s" % branch],
                              capture_output=True, text=True, check=False)
        return proc.stdout.split()


class HarborDouble(_Double):
    """Harbor 2.15's API v2.0 (registries, projects, robots, health); see the module docstring."""

    def __init__(self, cert, key, password, unreachable=()):
        super().__init__(cert, key, "admin", password)
        self.unreachable = set(unreachable)
        self.state = {"registries": {}, "projects": {}, "robots": {}}
        self._ids = {"registry": 0, "project": 1, "robot": 0}   # project 1 is Harbor's "library"
        self.state["projects"]["library"] = {"project_id": 1, "name": "library", "registry_id": 0,
                                             "metadata": {"public": "true"}}

    @staticmethod
    def _error(status, code, message):
        return _Reply(status, {"errors": [{"code": code, "message": message}]})

    def route(self, handler, method, path, query, raw, user):
        if path == "/api/v2.0/health" and method == "GET":
            return _Reply(200, {"status": "healthy", "components": [{"name": n, "status": "healthy"} for n in (
                "core", "database", "jobservice", "portal", "redis", "registry", "registryctl", "trivy")]})
        if user != self.username:
            raise self._error(401, "UNAUTHORIZED", "unauthorized")
        with self.lock:
            return self._api(handler, method, path, query, raw)

    def _api(self, handler, method, path, query, raw):
        regs, projects, robots = self.state["registries"], self.state["projects"], self.state["robots"]
        if path == "/api/v2.0/registries":
            if method == "GET":
                return _Reply(200, [dict(r, credential={"type": "basic", "access_key": "", "access_secret": "*****"})
                                    for r in sorted(regs.values(), key=lambda r: r["id"])])
            if method == "POST":
                body = self.json_body(raw)
                name, url, kind = str(body.get("name") or ""), str(body.get("url") or ""), body.get("type")
                if not name or len(name) > 64:
                    raise self._error(400, "BAD_REQUEST", "name cannot be empty" if not name else "the max length of name is 64")
                if kind not in HARBOR_TYPES:
                    raise self._error(400, "BAD_REQUEST", "adapter factory for %s not found" % kind)
                split = urlsplit(url)
                if split.scheme not in ("http", "https") or not split.hostname:
                    raise self._error(400, "BAD_REQUEST", "invalid URL %s" % url)
                if split.hostname in self.unreachable:
                    raise self._error(400, "BAD_REQUEST", "the registry is unhealthy")
                if any(r["name"] == name for r in regs.values()):
                    raise self._error(409, "CONFLICT", "registry %s already exists" % name)
                self._ids["registry"] += 1
                rid = self._ids["registry"]
                regs[rid] = {"id": rid, "name": name, "type": kind, "url": url.rstrip("/"),
                             "insecure": bool(body.get("insecure")), "status": "healthy",
                             "description": body.get("description", "")}
                return _Reply(201, b"", {"Location": "/api/v2.0/registries/%d" % rid})
        match = re.match(r"^/api/v2.0/registries/(\d+)$", path)
        if match and method == "PUT":
            reg = regs.get(int(match.group(1)))
            if reg is None:
                raise self._error(404, "NOT_FOUND", "registry %s not found" % match.group(1))
            body = self.json_body(raw)
            if "url" in body:
                if urlsplit(body["url"]).hostname in self.unreachable:
                    raise self._error(400, "BAD_REQUEST", "the registry is unhealthy")
                reg["url"] = body["url"].rstrip("/")
            return _Reply(200, b"")
        if path == "/api/v2.0/projects":
            if method == "GET":
                size = int((query.get("page_size") or ["10"])[0])
                listed = sorted(projects.values(), key=lambda p: p["project_id"])
                return _Reply(200, listed[:size], {"X-Total-Count": str(len(listed))})
            if method == "HEAD":
                name = (query.get("project_name") or [""])[0]
                if not name:
                    raise self._error(400, "BAD_REQUEST", "project_name is required")
                return _Reply(200 if name in projects else 404, b"")
            if method == "POST":
                body = self.json_body(raw)
                name = str(body.get("project_name") or "")
                meta = dict(body.get("metadata") or {})
                if not _HARBOR_NAME.match(name) or len(name) > 255:
                    raise self._error(400, "BAD_REQUEST", "the project name %s is invalid" % name)
                if meta.get("public", "false") not in ("true", "false"):
                    raise self._error(400, "BAD_REQUEST", "metadata.public should only be 'true' or 'false', but got: '%s'"
                                      % meta.get("public"))
                registry_id = body.get("registry_id")
                if registry_id is not None:
                    if int(registry_id) <= 0:
                        raise self._error(400, "BAD_REQUEST", "%s is invalid value of registry_id" % registry_id)
                    reg = regs.get(int(registry_id))
                    if reg is None:
                        raise self._error(500, "UNKNOWN", "failed to get the registry %s: registry %s not found"
                                          % (registry_id, registry_id))
                    if reg["type"] not in HARBOR_PROXY_TYPES:
                        raise self._error(400, "BAD_REQUEST", "unsupported registry type %s" % reg["type"])
                if name in projects:
                    raise self._error(409, "CONFLICT", "The project named %s already exists" % name)
                self._ids["project"] += 1
                pid = self._ids["project"]
                projects[name] = {"project_id": pid, "name": name, "registry_id": int(registry_id or 0), "metadata": meta}
                return _Reply(201, b"", {"Location": "/api/v2.0/projects/%d" % pid})
        match = re.match(r"^/api/v2.0/projects/([^/]+)$", path)
        if match and method == "GET":
            key = unquote(match.group(1))
            if handler.headers.get("X-Is-Resource-Name", "").lower() == "true":
                project = projects.get(key)
            else:
                project = next((p for p in projects.values() if str(p["project_id"]) == key), None)
            if project is None:
                raise self._error(404, "NOT_FOUND", "project %s not found" % key)
            return _Reply(200, project)
        if path == "/api/v2.0/robots":
            if method == "GET":
                terms = dict(t.split("=", 1) for t in (query.get("q") or [""])[0].split(",") if "=" in t)
                if terms.get("Level") == "project" and "ProjectID" not in terms:
                    raise self._error(400, "BAD_REQUEST", "must with project ID when to query project robots")
                pid = int(terms.get("ProjectID", 0))
                return _Reply(200, [self._public_robot(r) for r in robots.values() if r["project_id"] == pid])
            if method == "POST":
                body = self.json_body(raw)
                name = str(body.get("name") or "")
                if not re.match(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$", name):
                    raise self._error(400, "BAD_REQUEST", "robot name is not in lower case or contains illegal characters")
                duration = body.get("duration")
                if not isinstance(duration, int) or not (duration == -1 or duration > 0):
                    raise self._error(400, "BAD_REQUEST", "bad request error duration input: %s" % duration)
                perms = body.get("permissions") or []
                if body.get("level") != "project" or len(perms) != 1:
                    raise self._error(400, "BAD_REQUEST", "bad request permission")
                project = projects.get(perms[0].get("namespace"))
                if project is None:
                    raise self._error(404, "NOT_FOUND", "project %s not found" % perms[0].get("namespace"))
                full = "robot$%s+%s" % (project["name"], name)
                if full in robots:
                    raise self._error(409, "CONFLICT", "robot account %d:%s+%s already exists"
                                      % (project["project_id"], project["name"], name))
                self._ids["robot"] += 1
                robot = {"id": self._ids["robot"], "name": full, "project_id": project["project_id"],
                         "secret": secrets.token_urlsafe(24), "duration": duration, "level": "project",
                         "permissions": perms, "description": body.get("description", "")}
                robots[full] = robot
                return _Reply(201, {"id": robot["id"], "name": full, "secret": robot["secret"], "expires_at": -1,
                                    "creation_time": "2026-12-06T00:00:00.000Z"},
                              {"Location": "/api/v2.0/robots/%d" % robot["id"]})
        raise self._error(404, "NOT_FOUND", "%s %s is not part of the Harbor API double" % (method, path))

    @staticmethod
    def _public_robot(robot):
        return {k: v for k, v in robot.items() if k not in ("secret", "project_id")}
