# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: timing
type: aggregate
short_description: Wall time per layer and per component at the end of a run
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - At the end of every C(ansible-playbook) run, prints how long each platform layer took and,
    within each layer, each component; then the slowest tasks with the number of hosts they ran on.
  - The layer of a play is its layer tag (C(l0) ... C(l7)). A play without one is listed as
    C(preflight) when it runs the C(cellplatform.platform.cell_preflight) action, otherwise as
    C(other), each with the play's name.
  - The component of a task follows the project's naming convention. A task of a component ends in
    C( | <component>), its name (a lowercase DNS label, as every task of the component pipeline does,
    for example C(Install or upgrade the pinned Helm release | metallb)); a step of a layer's own
    starts with C(<Step> | ) (for example C(Talos | Apply the machine config)). Tasks with neither
    are the layer's own steps.
  - All times are wall-clock times, not time summed over hosts. A task lasts from its start until
    the next task (or handler, or play, or the end of the run) starts, so a per-node task that runs
    on six nodes in parallel counts once, for as long as the slowest node took. Layer and
    component times are sums of those task times; a layer's time is the time of its plays. The
    batches of a C(serial) play add up to one entry per task, with every host it ran on (hosts
    that skipped a task are not counted).
  - Prints only play and task names, host counts and durations (never hosts, arguments or
    results). Prints nothing when no task ran (for example a run with a tag that selects nothing).
  - When the stdout callback writes JSON (its name contains C(json), for example
    C(ansible.posix.json)), the summary goes to stderr, so that stdout stays one JSON document.
  - Enable it with C(callbacks_enabled = cellplatform.platform.timing) in C(ansible.cfg) (the
    repository's C(ansible.cfg) does).
requirements:
  - enabled in the configuration (C(callbacks_enabled))
options:
  slowest_tasks:
    description: How many of the slowest tasks to list; C(0) lists none.
    type: int
    default: 5
    env:
      - name: CELLPLATFORM_TIMING_SLOWEST_TASKS
    ini:
      - section: cellplatform_timing
        key: slowest_tasks
'''

import re
import time

from ansible import constants as C
from ansible.plugins.callback import CallbackBase

LAYER_TAG = re.compile(r'^l([0-7])$')
LAYER_LABEL = re.compile(r'^L[0-7]$')
OWN_STEPS = '(layer steps)'
PREFLIGHT_ACTIONS = ('cellplatform.platform.cell_preflight', 'cell_preflight')


_COMPONENT_RE = re.compile(r'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$')


def component_of(task_name):
    """The component of a task name, or None for a layer's own step.

    ``... | metallb`` (the last segment is a component name, a DNS label) -> ``metallb``;
    ``Talos | Apply ...`` (a step prefix) -> ``Talos``.
    """
    parts = [part.strip() for part in (task_name or '').split(' | ')]
    if len(parts) < 2:
        return None
    if _COMPONENT_RE.match(parts[-1]):
        return parts[-1]
    return parts[0] or None


def _runs_preflight(items):
    """Whether any task of a play's task list (Blocks and lists nested) is the cell preflight."""
    for item in items or ():
        if isinstance(item, list):
            found = _runs_preflight(item)
        elif hasattr(item, 'block'):
            found = _runs_preflight(list(item.block or []) + list(item.rescue or []) + list(item.always or []))
        else:
            found = getattr(item, 'action', None) in PREFLIGHT_ACTIONS
        if found:
            return True
    return False


def play_label(play):
    """``L0`` .. ``L7`` from the play's layer tag, else ``preflight (<name>)`` or ``other (<name>)``."""
    layer = layer_of(getattr(play, 'tags', None))
    if layer:
        return layer
    kind = 'preflight' if _runs_preflight(play.get_tasks()) else 'other'
    return '%s (%s)' % (kind, play.get_name().strip() or 'unnamed play')


def layer_of(tags):
    """The layer (``L0`` .. ``L7``) of a play's tags, or None."""
    for tag in tags or ():
        match = LAYER_TAG.match(str(tag))
        if match:
            return 'L%s' % match.group(1)
    return None


def machine_readable(stdout_callback):
    """Whether a stdout callback's output is JSON (ansible.posix.json, ...), which the summary must not break."""
    return 'json' in str(stdout_callback or '').rsplit('.', 1)[-1]


def format_duration(seconds):
    """0.4s, 35.2s, 2m05.0s, 1h02m05s."""
    if seconds < 60:
        return '%.1fs' % seconds
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return '%dm%04.1fs' % (minutes, secs)
    hours, minutes = divmod(int(minutes), 60)
    return '%dh%02dm%02ds' % (hours, minutes, int(secs))


class _TaskRun(object):
    """One task of one play run: its wall time and the hosts it ran on."""

    def __init__(self, name, group):
        self.name = name
        self.group = group
        self.seconds = 0.0
        self.hosts = set()
        self.started = None

    def start(self, now):
        self.started = now

    def stop(self, now):
        if self.started is not None:
            self.seconds += now - self.started
            self.started = None


class _Group(object):
    """A layer (L0..L7), or one preflight / other play, with its components in run order."""

    def __init__(self, label):
        self.label = label
        self.seconds = 0.0
        self.components = {}
        self.tasks = 0

    def add(self, task_run, seconds):
        key = component_of(task_run.name) or OWN_STEPS
        self.components[key] = self.components.get(key, 0.0) + seconds


class CallbackModule(CallbackBase):
    """Layer/component timing summary (see DOCUMENTATION)."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'cellplatform.platform.timing'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, clock=time.monotonic):
        super(CallbackModule, self).__init__(display=display)
        self._clock = clock
        self._slowest = 5
        self._groups = []          # in run order
        self._by_label = {}
        self._task_runs = {}       # task uuid -> _TaskRun (a task of serial batches is one entry)
        self._order = []           # _TaskRun in first-start order
        self._play = None          # (group, started) of the running play
        self._current = None       # the running _TaskRun
        self._first = None

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super(CallbackModule, self).set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._slowest = max(0, int(self.get_option('slowest_tasks')))

    # --- bookkeeping -----------------------------------------------------------------------
    def _group(self, label):
        if label not in self._by_label:
            self._by_label[label] = _Group(label)
            self._groups.append(self._by_label[label])
        return self._by_label[label]

    def _stop_task(self, now):
        if self._current is not None:
            before = self._current.seconds
            self._current.stop(now)
            self._current.group.add(self._current, self._current.seconds - before)
            self._current = None

    def _stop_play(self, now):
        self._stop_task(now)
        if self._play is not None:
            group, started = self._play
            group.seconds += now - started
            self._play = None

    def _start_task(self, task):
        now = self._clock()
        self._stop_task(now)
        if self._play is None:
            return
        group = self._play[0]
        if task._uuid not in self._task_runs:
            self._task_runs[task._uuid] = _TaskRun(task.name or '', group)
            self._order.append(self._task_runs[task._uuid])
            group.tasks += 1
        self._current = self._task_runs[task._uuid]
        self._current.start(now)

    def _record_host(self, result):
        task = getattr(result, '_task', None)
        if self._play is None or task is None:
            return
        run = self._task_runs.get(task._uuid)
        if run is not None:
            run.hosts.add(result._host.get_name())

    # --- events ------------------------------------------------------------------------------
    def v2_playbook_on_play_start(self, play):
        now = self._clock()
        self._stop_play(now)
        if self._first is None:
            self._first = now
        self._play = (self._group(play_label(play)), now)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start_task(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start_task(task)

    def v2_playbook_on_cleanup_task_start(self, task):
        self._start_task(task)

    def v2_runner_on_ok(self, result):
        self._record_host(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record_host(result)

    def v2_runner_on_unreachable(self, result):
        self._record_host(result)

    # v2_runner_on_skipped: a host that skipped a task did not run it (not counted)

    def v2_playbook_on_stats(self, stats):
        now = self._clock()
        self._stop_play(now)
        stderr = machine_readable(C.DEFAULT_STDOUT_CALLBACK)
        for line in self.summary(now):
            self._display.display(line, stderr=stderr)

    # --- the report ----------------------------------------------------------------------------
    def summary(self, now):
        """The report's lines; empty when no task ran."""
        if not self._order:
            return []
        groups = [g for g in self._groups if g.tasks]
        width = max([len('whole run')] + [len(g.label) for g in groups]
                    + [len(c) + 2 for g in groups for c in g.components])
        lines = ['', 'TIMING (wall clock) ' + '*' * 60,
                 '%-*s  %9s' % (width, 'whole run', format_duration(now - self._first))]
        for group in groups:
            lines.append('%-*s  %9s' % (width, group.label, format_duration(group.seconds)))
            if not LAYER_LABEL.match(group.label):
                continue        # a preflight/other play: its own line says it all
            for name, seconds in group.components.items():
                lines.append('  %-*s  %9s' % (width - 2, name, format_duration(seconds)))
        slowest = sorted(self._order, key=lambda run: -run.seconds)[:self._slowest]
        if slowest:
            lines.append('slowest tasks:')
            for run in slowest:
                hosts = len(run.hosts)
                where = run.group.label.split(' ')[0]           # L0 .. L7, preflight or other
                lines.append('  %9s  %-4s %s (%d host%s)' % (
                    format_duration(run.seconds), where, run.name or '(unnamed task)', hosts, '' if hosts == 1 else 's'))
        return lines
