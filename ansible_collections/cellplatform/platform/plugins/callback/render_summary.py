# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: render_summary
type: aggregate
short_description: Where the rendered plan is and what changed against the last render
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - At the end of a run that rendered a cell (C(cellplatform.platform.render_files) tasks), prints where the
    plan is (C(<build dir>/PLAN.md) and C(plan.json)) and what changed against the tree the last render left
    behind - files added, changed and removed - or, in check mode, what would change.
  - A file several layers write (C(plan.json), C(PLAN.md)) counts once; added wins over changed.
  - Says when the components' GitOps Secrets were not rendered and why (no platform secrets or identity on
    this machine), so an operator knows the GitOps tree lacks them.
  - Prints only paths and counts, never file content. Prints nothing when no render task ran.
  - When the stdout callback writes JSON (its name contains C(json)), the summary goes to stderr.
  - Enable it with C(callbacks_enabled = cellplatform.platform.render_summary) in C(ansible.cfg) (the
    repository's C(ansible.cfg) does).
requirements:
  - enabled in the configuration (C(callbacks_enabled))
options:
  max_files:
    description: How many changed files to list by name; the rest are counted.
    type: int
    default: 40
    env:
      - name: CELLPLATFORM_RENDER_SUMMARY_MAX_FILES
    ini:
      - section: cellplatform_render_summary
        key: max_files
'''

import os

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase

RENDER_ACTIONS = ('cellplatform.platform.render_files', 'render_files')
# A file's status over the whole run: the first status that is not "unchanged", "created" wins.
KINDS = (('created', 'added'), ('updated', 'changed'), ('mode', 'changed'), ('removed', 'removed'))
LABEL = dict(KINDS)


def merge_status(old, new):
    if old is None or old == 'unchanged':
        return new
    if new == 'unchanged' or old == 'created':
        return old
    if old == 'removed' and new in ('created', 'updated'):
        return 'updated'          # removed by one layer, written again by another: it changed
    return old


class CallbackModule(CallbackBase):
    """Render summary (see DOCUMENTATION)."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'cellplatform.platform.render_summary'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display=display)
        self._max_files = 40
        self._roots = {}          # build dir -> {relative path: status}
        self._check_mode = False
        self._skipped = {}        # build dir -> set of reasons GitOps Secrets were not rendered

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super(CallbackModule, self).set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._max_files = max(0, int(self.get_option('max_files')))

    def v2_runner_on_ok(self, result):
        task = getattr(result, '_task', None)
        if task is None or task.action not in RENDER_ACTIONS:
            return
        res = result._result or {}
        root = res.get('root')
        if not root:
            return
        files = self._roots.setdefault(root, {})
        for path, status in (res.get('files') or {}).items():
            files[path] = merge_status(files.get(path), status)
        self._check_mode = (self._check_mode or getattr(task, 'check_mode', None) is True
                            or bool((context.CLIARGS or {}).get('check')))
        skipped = (res.get('secrets') or {}).get('skipped')
        if skipped:
            self._skipped.setdefault(root, set()).add(skipped)

    def summary(self):
        lines = []
        for root in sorted(self._roots):
            files = self._roots[root]
            counts = dict((label, 0) for _status, label in KINDS)
            changed = []
            for path in sorted(files):
                label = LABEL.get(files[path])
                if label:
                    counts[label] += 1
                    changed.append((label, path))
            verb = 'would change' if self._check_mode else 'changed'
            lines.append('RENDER %s' % root)
            plan_md, plan_json = os.path.join(root, 'PLAN.md'), os.path.join(root, 'plan.json')
            lines.append('plan: %s (machine-readable: %s)' % (plan_md, plan_json))
            if not changed:
                lines.append('against the last render: nothing %s (%d files)' % (verb, len(files)))
            else:
                lines.append('against the last render: %d added, %d changed, %d removed%s'
                             % (counts['added'], counts['changed'], counts['removed'],
                                ' (check mode: nothing written)' if self._check_mode else ''))
                for label, path in changed[:self._max_files]:
                    lines.append('  %-8s %s' % (label, path))
                if len(changed) > self._max_files:
                    lines.append('  ... and %d more' % (len(changed) - self._max_files))
            for reason in sorted(self._skipped.get(root, ())):
                lines.append('GitOps Secrets not rendered: %s (they are created at apply time; render with the '
                             'identity to commit them SOPS-encrypted)' % reason)
        return lines

    def v2_playbook_on_stats(self, stats):
        stderr = 'json' in (C.DEFAULT_STDOUT_CALLBACK or '')
        for line in self.summary():
            self._display.display(line, stderr=stderr)
