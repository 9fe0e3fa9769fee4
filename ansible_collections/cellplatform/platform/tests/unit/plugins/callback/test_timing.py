# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The timing callback, driven with stand-in play, task, result and clock objects.

The stand-ins carry exactly what the callback reads from Ansible's objects: a play's ``tags``,
``get_name()`` and ``get_tasks()`` (lists of tasks and Blocks), a task's ``_uuid``, ``name`` and
``action``, a result's ``_task``, ``_host`` and ``_result``. The clock is advanced by the test, so
every duration is exact. The last test runs a real ansible-playbook with the callback enabled.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ansible_collections.cellplatform.platform.plugins.callback import timing

_ids = itertools.count()


class Clock(object):
    """Stands in for time.monotonic: returns now, which the test moves."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def tick(self, seconds):
        self.now += seconds


class Display(object):
    """Stands in for ansible.utils.display.Display: collects what the callback prints."""

    verbosity = 0      # read by CallbackBase.__init__

    def __init__(self):
        self.lines = []
        self.to_stderr = set()

    def display(self, msg, stderr=False, **_kwargs):
        self.lines.append(msg)
        self.to_stderr.add(stderr)

    def __getattr__(self, name):       # warning/vvv/...: the callback must not need them
        raise AssertionError('the callback called Display.%s' % name)


class Task(object):
    def __init__(self, name, action='ansible.builtin.debug'):
        self._uuid = 'task-%d' % next(_ids)
        self.name = name
        self.action = action


class Block(object):
    def __init__(self, block, rescue=(), always=()):
        self.block, self.rescue, self.always = list(block), list(rescue), list(always)


class Play(object):
    def __init__(self, name, tags=(), tasks=()):
        self._name, self.tags, self._tasks = name, list(tags), list(tasks)

    def get_name(self):
        return self._name

    def get_tasks(self):     # Play.get_tasks(): one list per block of pre_tasks/tasks/post_tasks
        return [self._tasks]


class Host(object):
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class Result(object):
    def __init__(self, task, host, payload=None):
        self._task, self._host, self._result = task, Host(host), payload or {}


class Run(object):
    """Drives one callback through a playbook run the way the linear strategy does."""

    def __init__(self, slowest=None):
        self.clock, self.display = Clock(), Display()
        self.cb = timing.CallbackModule(display=self.display, clock=self.clock)
        if slowest is not None:
            # what set_options() sets from the slowest_tasks option; set_options itself needs the
            # plugin loader's option definitions and is covered by test_enabled_in_a_real_run
            self.cb._slowest = slowest

    def play(self, play):
        self.cb.v2_playbook_on_play_start(play)

    def task(self, task, seconds, hosts=('localhost',), skipped=(), failed=(), handler=False):
        """Start *task*, let *seconds* pass while every host reports, in parallel."""
        if handler:
            self.cb.v2_playbook_on_handler_task_start(task)
        else:
            self.cb.v2_playbook_on_task_start(task, False)
        for i, host in enumerate(hosts):
            self.clock.tick(seconds if i == len(hosts) - 1 else 0)     # the slowest host finishes last
            if host in failed:
                self.cb.v2_runner_on_failed(Result(task, host))
            else:
                self.cb.v2_runner_on_ok(Result(task, host, {'secret': 'S3cr3t-token', 'host': host}))
        for host in skipped:
            self.cb.v2_runner_on_skipped(Result(task, host))
        if not hosts:
            self.clock.tick(seconds)

    def end(self, seconds=0.0):
        self.clock.tick(seconds)
        self.cb.v2_playbook_on_stats(object())
        return self.display.lines


NODES = ('cp-1', 'cp-2', 'cp-3', 'worker-1', 'worker-2', 'worker-3')


def _site(run):
    """preflight, L0 (6 nodes), L1, a summary play; returns the L0 apply task."""
    run.play(Play('Validate the cell inventory', tasks=[
        Block([Task('Preflight every layer of the cell', 'cellplatform.platform.cell_preflight')])]))
    run.task(Task('Preflight every layer of the cell', 'cellplatform.platform.cell_preflight'), 0.5)
    run.play(Play('L0 infrastructure', tags=['l0']))
    run.task(Task('Validating arguments against arg spec main'), 0.2, hosts=NODES)
    run.task(Task('Render | Write Talos patches'), 1.0)
    apply = Task('Talos | Apply the machine config (insecure in maintenance)', 'cellplatform.platform.talos_apply')
    run.task(apply, 12.0, hosts=NODES)
    run.task(Task('Talos | Bootstrap etcd once'), 3.0, hosts=('cp-1',), skipped=NODES[1:])
    run.task(Task('Cilium | Install or upgrade the pinned chart'), 40.0)
    run.task(Task('Gate | Wait until every node of the cell is Ready'), 30.0)
    run.play(Play('L1 cluster platform', tags=['l1']))
    run.task(Task('metallb | Install the Helm release'), 20.0)
    run.task(Task('metallb | Gate: webhook answers'), 5.0)
    run.task(Task('external-dns | Install the Helm release'), 7.0)
    run.play(Play('Summary', tags=['always']))
    run.task(Task('Say where the rendered cell is'), 0.1)
    return apply


def test_layers_components_and_wall_time():
    run = Run()
    _site(run)
    lines = run.end(0.4)
    body = '\n'.join(lines)
    assert lines[1].startswith('TIMING (wall clock) ***')
    rows = [line.split() for line in lines[2:lines.index('slowest tasks:')]]
    as_text = [(' '.join(r[:-1]), r[-1]) for r in rows]
    assert as_text == [
        ('whole run', '1m59.2s'),
        ('preflight (Validate the cell inventory)', '0.5s'),
        ('L0', '1m26.2s'),
        ('(layer steps)', '0.2s'),
        ('Render', '1.0s'),
        ('Talos', '15.0s'),          # 12 s on six nodes in parallel counts 12 s, not 72 s
        ('Cilium', '40.0s'),
        ('Gate', '30.0s'),
        ('L1', '32.0s'),
        ('metallb', '25.0s'),
        ('external-dns', '7.0s'),
        ('other (Summary)', '0.5s'),  # the last play lasts until the end of the run
    ], body
    # indentation: components under their layer
    assert '  Talos ' in body and '\nL0 ' in body


def test_slowest_tasks_with_host_counts():
    run = Run()
    _site(run)
    lines = run.end()
    slowest = lines[lines.index('slowest tasks:') + 1:]
    assert len(slowest) == 5
    assert [line.split(None, 2)[:2] for line in slowest] == [
        ['40.0s', 'L0'], ['30.0s', 'L0'], ['20.0s', 'L1'], ['12.0s', 'L0'], ['7.0s', 'L1']]
    assert slowest[3].endswith('Talos | Apply the machine config (insecure in maintenance) (6 hosts)')
    assert slowest[0].endswith('Cilium | Install or upgrade the pinned chart (1 host)')


def test_skipped_hosts_do_not_count_and_failed_ones_do():
    run = Run(slowest=10)
    run.play(Play('L0 infrastructure', tags=['l0']))
    run.task(Task('Talos | Bootstrap etcd once'), 3.0, hosts=('cp-1',), skipped=NODES[1:])
    run.task(Task('Talos | Apply the machine config'), 2.0, hosts=NODES, failed=('worker-3',))
    lines = run.end()
    assert lines[-2].endswith('Talos | Bootstrap etcd once (1 host)')
    assert lines[-1].endswith('Talos | Apply the machine config (6 hosts)')


def test_serial_batches_and_handlers_add_up_per_task():
    run = Run()
    play = Play('L0 infrastructure', tags=['l0'])
    upgrade = Task('Talos | Upgrade the node')
    for batch in (('cp-1',), ('cp-2',), ('cp-3',)):      # serial: 1 starts the play once per batch
        run.play(play)
        run.task(upgrade, 10.0, hosts=batch)
    run.task(Task('Talos | Restart kubelet'), 1.5, handler=True)
    lines = run.end()
    assert [line.split() for line in lines if line.startswith(('L0', '  Talos'))] == [['L0', '31.5s'], ['Talos', '31.5s']]
    assert lines[-2].endswith('Talos | Upgrade the node (3 hosts)') and lines[-2].split()[0] == '30.0s'


def test_layer_tags_and_play_kinds():
    assert timing.layer_of(['always', 'l7']) == 'L7'
    assert timing.layer_of(['l8', 'l10', 'talos']) is None
    assert timing.play_label(Play('x', tags=['l2', 'argocd'])) == 'L2'
    nested = Play('Check', tasks=[Block([Block([Task('inner', 'cellplatform.platform.cell_preflight')])])])
    assert timing.play_label(nested) == 'preflight (Check)'
    rescue = Play('Check', tasks=[Block([], rescue=[Task('r', 'cell_preflight')])])
    assert timing.play_label(rescue) == 'preflight (Check)'
    assert timing.play_label(Play('Summary', tasks=[Task('debug')])) == 'other (Summary)'
    assert timing.play_label(Play('  ')) == 'other (unnamed play)'


@pytest.mark.parametrize('name,component', [
    ('Talos | Apply the machine config', 'Talos'),
    ('Install or upgrade the pinned Helm release | metallb', 'metallb'),
    ('Wait until the release is ready | external-dns', 'external-dns'),
    ('Gate | Wait until Talos reports the cluster healthy (seconds at most) 900', 'Gate'),
    ('metallb | Gate: CRDs | Established', 'metallb'),
    ('Render L1 into the build tree', None),
    ('Talos| no space', None),
    (' | empty prefix', None),
    ('', None),
    (None, None),
])
def test_component_of(name, component):
    assert timing.component_of(name) == component


def test_tasks_without_a_component_are_the_layers_own_steps():
    run = Run()
    run.play(Play('L2 core platform', tags=['l2']))
    run.task(Task('Render L2 (Argo CD, Kyverno, Linkerd)'), 2.0)
    run.task(Task(''), 1.0)                                   # unnamed task (its action)
    run.task(Task('argocd | Install the release'), 4.0)
    lines = run.end()
    assert ['(layer', 'steps)', '3.0s'] in [line.split() for line in lines]
    assert lines[-1].endswith('  L2   (unnamed task) (1 host)')


def test_nothing_to_report_prints_nothing():
    run = Run()
    run.play(Play('L0 infrastructure', tags=['l0']))          # e.g. -t nosuchtag: a play, no task
    run.play(Play('L1 cluster platform', tags=['l1']))
    assert run.end(3.0) == []
    assert Run().end() == []                                  # no play at all


def test_prints_names_and_durations_only():
    run = Run()
    _site(run)
    body = '\n'.join(run.end())
    assert 'S3cr3t-token' not in body
    for host in NODES:
        assert host not in body
    assert 'cellplatform.platform.talos_apply' not in body


@pytest.mark.parametrize('stdout_callback,json', [
    ('ansible.posix.json', True), ('json', True), ('ansible.posix.jsonl', True), ('community.general.json', True),
    ('ansible.builtin.default', False), ('default', False), ('community.general.yaml', False), (None, False)])
def test_json_stdout_callbacks_are_recognised(stdout_callback, json):
    assert timing.machine_readable(stdout_callback) is json


def test_summary_goes_to_stderr_under_a_json_stdout_callback(monkeypatch):
    for stdout_callback, stderr in (('ansible.builtin.default', False), ('ansible.posix.json', True)):
        monkeypatch.setattr(timing.C, 'DEFAULT_STDOUT_CALLBACK', stdout_callback)
        run = Run()
        _site(run)
        assert run.end() and run.display.to_stderr == {stderr}


def test_slowest_tasks_option():
    run = Run(slowest=0)
    _site(run)
    lines = run.end()
    assert 'slowest tasks:' not in lines and lines[-1].split()[0] == 'other'
    run = Run(slowest=2)
    _site(run)
    lines = run.end()
    assert len(lines) - lines.index('slowest tasks:') - 1 == 2


@pytest.mark.parametrize('seconds,text', [(0.04, '0.0s'), (35.25, '35.2s'), (59.96, '60.0s'), (125.0, '2m05.0s'),
                                          (3725.0, '1h02m05s')])
def test_format_duration(seconds, text):
    assert timing.format_duration(seconds) == text


def test_enabled_in_a_real_run(tmp_path):
    """ansible-playbook with the callback enabled: the summary comes after the recap."""
    collections = Path(timing.__file__).resolve().parents[5]
    playbook = tmp_path / 'play.yml'
    playbook.write_text(textwrap.dedent('''\
        - name: L3 delivery
          hosts: localhost
          gather_facts: false
          tags: [l3]
          tasks:
            - name: tekton | Wait a moment
              ansible.builtin.command:
                argv: [sleep, '1']
              changed_when: false
            - name: Note the secret
              ansible.builtin.set_fact:
                hidden: "{{ 'S3cr3t-token' }}"
              no_log: true
        '''))
    env = dict(os.environ, ANSIBLE_CALLBACKS_ENABLED='cellplatform.platform.timing', ANSIBLE_COLLECTIONS_PATH=str(collections),
               ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
               CELLPLATFORM_TIMING_SLOWEST_TASKS='1', ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    proc = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                           str(playbook)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    tail = out[out.index('PLAY RECAP'):]
    assert 'TIMING (wall clock)' in tail
    rows = {line.split()[0]: line.split()[-1] for line in tail.splitlines() if line.startswith(('L3', '  tekton'))}
    assert set(rows) == {'L3', 'tekton'} and float(rows['tekton'].rstrip('s')) >= 1.0
    report = tail.rstrip().splitlines()
    assert report[-2] == 'slowest tasks:'              # CELLPLATFORM_TIMING_SLOWEST_TASKS=1
    assert report[-1].endswith('L3   tekton | Wait a moment (1 host)')
    assert 'S3cr3t-token' not in out

    # a JSON stdout callback keeps stdout one JSON document; the summary goes to stderr
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    proc = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                           str(playbook)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)['stats']['localhost']['ok'] == 2
    assert 'TIMING (wall clock)' in proc.stderr and 'tekton | Wait a moment (1 host)' in proc.stderr
