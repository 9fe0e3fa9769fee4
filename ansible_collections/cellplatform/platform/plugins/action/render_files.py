# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side writer of the rendered cell (see the render_files module documentation).

Component Secrets are the one kind of secret that reaches the tree, and only SOPS-encrypted:
``GitOpsSecrets`` decrypts the platform secrets with the cell's identity (module_utils/sops.py),
builds each record's Secrets (plugin_utils/component.py) and writes each one encrypted to the
cell's recipients, rewriting a file only when its decrypted content (or recipient set) changed.
Without the platform secrets, the identity or recipients (a fresh clone in render mode) it renders
none and leaves what an earlier render wrote alone; apply mode needs them.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from collections.abc import Mapping

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.cellplatform.platform.plugins.module_utils.cell_model import LAYERS
from ansible_collections.cellplatform.platform.plugins.module_utils.sops import (
    KUBERNETES_SECRET_REGEX,
    Sops,
    SopsError,
    creation_rules,
)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.component import (
    KUSTOMIZATION,
    ComponentError,
    paths as component_paths,
    plan_entries,
    records_for,
    render_files_for,
    secret_documents,
    secret_file,
    secret_files,
    secrets_files,
)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.render import (
    PLAN_JSON,
    PLAN_MD,
    SOPS_CONFIG,
    RenderError,
    check_no_secrets,
    dump_json,
    dump_yaml,
    gitops_sops_rules,
    merge_plan,
    render_plan_md,
    serialise,
    to_plain,
)

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

_DIFF_LIMIT = 200 * 1024
GITOPS_SOPS_HEADER = ("Written by cellplatform.platform.render_files from cellplatform_age_recipients.\n"
                      "sops finds it from the current directory: run sops edit in this directory.")


def _check_relpath(path):
    if not isinstance(path, str) or not path:
        raise AnsibleActionFail("render_files: every files[] entry needs a non-empty 'path'")
    norm = posixpath.normpath(path)
    if path.startswith("/") or norm.startswith("..") or norm != path.rstrip("/"):
        raise AnsibleActionFail(
            "render_files: files[].path %r must be a normalised path relative to root "
            "(no leading '/', no '..', no '//' or './'). Fix: write e.g. 'l1/metallb/values.yaml'." % path)
    if norm in (PLAN_JSON, PLAN_MD):
        raise AnsibleActionFail(
            "render_files: %s is generated from the 'layer' and 'components' options; do not list it in files." % norm)
    return norm


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_atomic(path, data, mode):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".render-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class GitOpsSecrets:
    """The SOPS-encrypted Secrets of a layer's components (see the module docstring)."""

    def __init__(self, root, cell, records, check_mode):
        self.root = root
        self.cell = cell
        self.records = [rec for rec in records if rec["secrets"]]
        self.check_mode = check_mode
        self.files = []              # render_files entries (kustomization, KSOPS generator)
        self.encrypted = {}          # relative path -> plaintext YAML of one Secret
        self.prune = []              # secrets directories this render owns
        self.with_secrets = set()    # components whose Secrets are (still) in the tree
        self.skipped = None          # why no Secret was rendered
        self.sops = None
        if self.records:
            self._build()

    def _source(self):
        """(sops runner, decrypted platform secrets, path) or raise _Unavailable with the reason."""
        age = self.cell.get("age") or {}
        recipients = age.get("recipients") or []
        platform = (self.cell.get("secrets") or {}).get("platform")
        identity = age.get("identity")
        if not recipients:
            raise _Unavailable("cellplatform_age_recipients is empty")
        if not platform or not os.path.isfile(platform):
            raise _Unavailable("there are no platform secrets (%s)" % platform)
        if not identity or not os.path.isfile(identity):
            raise _Unavailable("the age identity %s does not exist" % identity)
        try:
            sops = Sops(identity)
        except SopsError as exc:
            raise _Unavailable(str(exc))
        return sops, self._decrypt(sops, platform), platform

    @staticmethod
    def _decrypt(sops, path):
        try:
            mapping = yaml.safe_load(sops.decrypt_file(path))
        except SopsError as exc:
            raise AnsibleActionFail("render_files: the component Secrets cannot be rendered: %s" % exc)
        except yaml.YAMLError as exc:
            raise AnsibleActionFail("render_files: %s decrypts, but is not valid YAML (%s); fix it with sops edit %s"
                                    % (path, getattr(exc, "problem", exc), path))
        return mapping if mapping is not None else {}

    def _generated(self, rec):
        """{file: (mapping, path)} of the generated SOPS files the record's Secrets read, or None when one
        does not exist yet (render mode keeps what an earlier render wrote; apply mode fails)."""
        files, missing = {}, []
        for name in secret_files(rec):
            path = os.path.join(self.cell.get("secrets_dir") or "", name)
            if os.path.isfile(path):
                files[name] = (self._decrypt(self.sops, path), path)
            else:
                missing.append(path)
        if not missing:
            return files
        if self.cell.get("mode") == "apply" and not self.check_mode:
            raise AnsibleActionFail(
                "render_files: the Secrets of %s read %s, which does not exist. Its layer creates that file before it "
                "renders (restore it from backup if it was lost)." % (rec["name"], ", ".join(missing)))
        if os.path.isfile(os.path.join(self.root, component_paths(rec)["secrets"], KUSTOMIZATION)):
            self.with_secrets.add(rec["name"])
        return None

    def _build(self):
        try:
            self.sops, mapping, source = self._source()
        except _Unavailable as exc:
            self.skipped = str(exc)
            needed = [rec["name"] for rec in self.records if any(not s["optional"] for s in rec["secrets"])]
            if self.cell.get("mode") == "apply" and needed:
                raise AnsibleActionFail(
                    "render_files: the Secrets of %s cannot be rendered: %s. Apply mode needs them: create the platform "
                    "secrets (sops edit <secrets_dir>/platform.sops.yaml, docs/secrets.md) with the keys these "
                    "components list." % (", ".join(needed), self.skipped))
            # Render mode without the key: keep what an earlier render (with the key) wrote.
            for rec in self.records:
                if os.path.isfile(os.path.join(self.root, component_paths(rec)["secrets"], KUSTOMIZATION)):
                    self.with_secrets.add(rec["name"])
            return
        for rec in self.records:
            files = self._generated(rec)
            if files is None:
                continue
            self.prune.append(component_paths(rec)["secrets"])
            try:
                docs = secret_documents(rec, mapping, source, files)
            except ComponentError as exc:
                raise AnsibleActionFail("render_files: %s" % exc) from exc
            if not docs:
                continue
            self.with_secrets.add(rec["name"])
            self.files.extend(secrets_files(rec, docs))
            for doc in docs:
                self.encrypted[secret_file(rec, doc["metadata"]["name"])] = dump_yaml(doc)

    def write(self, statuses, diffs, diff_mode):
        """Encrypt and write every Secret whose decrypted content or recipients changed."""
        recipients = (self.cell.get("age") or {}).get("recipients")
        for path in sorted(self.encrypted):
            target = os.path.join(self.root, path)
            try:
                reason, _before = self.sops.plan_write(target, self.encrypted[path], recipients,
                                                       KUBERNETES_SECRET_REGEX)
                if reason is None:
                    statuses[path] = "unchanged"
                    continue
                statuses[path] = "created" if reason == "missing" else "updated"
                if not self.check_mode:
                    data = self.sops.encrypt(self.encrypted[path], recipients, target, KUBERNETES_SECRET_REGEX)
                    check_no_secrets(path, data.decode("utf-8"))
                    _write_atomic(target, data, 0o644)
            except (SopsError, RenderError) as exc:
                raise AnsibleActionFail("render_files: %s" % exc) from exc
            if diff_mode:
                diffs.append({"before_header": path if reason != "missing" else "/dev/null", "after_header": path,
                              "before": "" if reason == "missing" else "<SOPS-encrypted Secret: not shown>\n",
                              "after": "<SOPS-encrypted Secret: not shown, %s>\n" % reason})


class _Unavailable(Exception):
    """The component Secrets cannot be rendered on this machine (the reason says why)."""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("root", "files", "layer", "components", "cell", "prune"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        root = args.get("root")
        if not root or not isinstance(root, str):
            raise AnsibleActionFail("render_files: 'root' (the build directory) is required")
        root = os.path.realpath(os.path.expanduser(root))
        files = args.get("files") or []
        layer = args.get("layer")
        cell = args.get("cell")
        prune = args.get("prune") or []
        if not isinstance(files, list):
            raise AnsibleActionFail("render_files: 'files' must be a list of {path, data|documents|content}")
        files = list(files)
        if layer is not None and layer not in LAYERS:
            raise AnsibleActionFail("render_files: layer %r is not one of %s" % (layer, ", ".join(LAYERS)))
        if cell is not None and not isinstance(cell, Mapping):
            raise AnsibleActionFail("render_files: 'cell' must be the cell model (cellplatform_cell)")
        records = args.get("components") or []
        entries = []
        secrets = None
        if records:
            if layer is None or cell is None:
                raise AnsibleActionFail("render_files: 'components' needs 'layer' and 'cell'")
            cell = to_plain(cell)
            gitops = cell.get("gitops") or {}
            try:
                normalised = records_for(to_plain(records), layer)
            except ComponentError as exc:
                raise AnsibleActionFail("render_files: %s" % exc) from exc
            secrets = GitOpsSecrets(root, cell, normalised, self._task.check_mode)
            try:
                files += render_files_for(normalised, gitops, cell, secrets.with_secrets) + secrets.files
                entries = plan_entries(normalised, gitops, cell, secrets.with_secrets)
            except ComponentError as exc:
                raise AnsibleActionFail("render_files: %s" % exc) from exc
            prune = list(prune) + secrets.prune
        recipients = ((cell or {}).get("age") or {}).get("recipients") or []
        if cell is not None and recipients:
            # The GitOps tree's creation rules, so `sops edit` works on its encrypted files.
            try:
                files.append({"path": SOPS_CONFIG, "content": creation_rules(
                    gitops_sops_rules(recipients), header=GITOPS_SOPS_HEADER)})
            except SopsError as exc:
                raise AnsibleActionFail("render_files: %s" % exc) from exc

        wanted = {}
        for entry in files:
            if not isinstance(entry, dict):
                raise AnsibleActionFail("render_files: files[] entries must be mappings, got %r" % (entry,))
            path = _check_relpath(entry.get("path"))
            given = [k for k in ("data", "documents", "content") if entry.get(k) is not None]
            if len(given) != 1:
                raise AnsibleActionFail(
                    "render_files: %s needs exactly one of data, documents or content (got %s)"
                    % (path, ", ".join(given) or "none"))
            if path in wanted:
                raise AnsibleActionFail("render_files: %s is listed twice" % path)
            try:
                body = serialise(entry)
            except RenderError as exc:
                raise AnsibleActionFail("render_files: %s" % exc) from exc
            mode = int(str(entry.get("mode", "0644")), 8)
            wanted[path] = (body, mode)

        if layer is not None:
            existing_raw = _read(os.path.join(root, PLAN_JSON))
            existing = {}
            if existing_raw:
                try:
                    existing = json.loads(existing_raw)
                except ValueError:
                    existing = {}
            try:
                new_plan = merge_plan(existing, layer, entries, cell)
            except RenderError as exc:
                raise AnsibleActionFail("render_files: %s" % exc) from exc
            wanted[PLAN_JSON] = (dump_json(new_plan).encode("utf-8"), 0o644)
            wanted[PLAN_MD] = (render_plan_md(new_plan).encode("utf-8"), 0o644)

        statuses = {}
        diffs = []
        for path in sorted(wanted):
            body, mode = wanted[path]
            target = os.path.join(root, path)
            before = _read(target)
            if before == body:
                mode_now = os.stat(target).st_mode & 0o7777
                if mode_now == mode:
                    statuses[path] = "unchanged"
                    continue
                statuses[path] = "mode"
            else:
                statuses[path] = "created" if before is None else "updated"
                if self._task.diff:
                    diffs.append(self._diff(path, before, body))
            if not self._task.check_mode:
                _write_atomic(target, body, mode)

        if secrets is not None and secrets.encrypted:
            secrets.write(statuses, diffs, self._task.diff)
        kept = set(wanted) | set(secrets.encrypted if secrets is not None else ())

        for directory in prune:
            rel = _check_relpath(directory)
            base = os.path.join(root, rel)
            if not os.path.isdir(base):
                continue
            for dirpath, _dirs, names in os.walk(base):
                for name in sorted(names):
                    full = os.path.join(dirpath, name)
                    relpath = os.path.relpath(full, root).replace(os.sep, "/")
                    if relpath in kept:
                        continue
                    statuses[relpath] = "removed"
                    if self._task.diff:
                        diffs.append(self._diff(relpath, _read(full), None))
                    if not self._task.check_mode:
                        os.unlink(full)

        changed_paths = sorted(p for p, s in statuses.items() if s != "unchanged")
        if secrets is not None and secrets.records:
            result["secrets"] = {"rendered": sorted(secrets.encrypted), "skipped": secrets.skipped,
                                 "components": sorted(secrets.with_secrets)}
        result.update(
            changed=bool(changed_paths),
            root=root,
            files=dict(sorted(statuses.items())),
            changed_files=changed_paths,
            msg="%d of %d files %s" % (
                len(changed_paths), len(statuses),
                "would change" if self._task.check_mode else "changed"),
        )
        if diffs:
            result["diff"] = diffs
        return result

    @staticmethod
    def _diff(path, before, after):
        def text(data):
            if data is None:
                return ""
            if len(data) > _DIFF_LIMIT:
                return "(%d bytes, too large to diff)\n" % len(data)
            return to_text(data, errors="surrogate_or_replace")

        return {
            "before_header": path if before is not None else "/dev/null",
            "after_header": path if after is not None else "/dev/null",
            "before": text(before),
            "after": text(after),
        }
