# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side writer of the rendered cell (see the render_files module documentation)."""

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
from ansible_collections.cellplatform.platform.plugins.plugin_utils.component import (
    ComponentError,
    plan_entries,
    records_for,
    render_files_for,
)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.render import (
    PLAN_JSON,
    PLAN_MD,
    RenderError,
    dump_json,
    merge_plan,
    render_plan_md,
    serialise,
    to_plain,
)

_DIFF_LIMIT = 200 * 1024


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
        if records:
            if layer is None or cell is None:
                raise AnsibleActionFail("render_files: 'components' needs 'layer' and 'cell'")
            gitops = to_plain(cell.get("gitops") or {})
            try:
                normalised = records_for(to_plain(records), layer)
                files += render_files_for(normalised, gitops, to_plain(cell))
                entries = plan_entries(normalised, gitops, to_plain(cell))
            except ComponentError as exc:
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

        for directory in prune:
            rel = _check_relpath(directory)
            base = os.path.join(root, rel)
            if not os.path.isdir(base):
                continue
            for dirpath, _dirs, names in os.walk(base):
                for name in sorted(names):
                    full = os.path.join(dirpath, name)
                    relpath = os.path.relpath(full, root).replace(os.sep, "/")
                    if relpath in wanted:
                        continue
                    statuses[relpath] = "removed"
                    if self._task.diff:
                        diffs.append(self._diff(relpath, _read(full), None))
                    if not self._task.check_mode:
                        os.unlink(full)

        changed_paths = sorted(p for p, s in statuses.items() if s != "unchanged")
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
