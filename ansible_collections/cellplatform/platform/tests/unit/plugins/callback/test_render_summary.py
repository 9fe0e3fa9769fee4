# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The render_summary callback, driven with stand-in task and result objects (what it reads of them:
a task's ``action`` and ``check_mode``, a result's ``_task`` and ``_result``); the last test runs a
real ansible-playbook render with the callback enabled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.cellplatform.platform.plugins.callback import render_summary

REPO = Path(__file__).resolve().parents[7]


class Display(object):
    verbosity = 0

    def __init__(self):
        self.lines = []

    def display(self, msg, stderr=False, **_kwargs):
        self.lines.append(msg)


class Task(object):
    def __init__(self, action='cellplatform.platform.render_files', check_mode=None):
        self.action = action
        self.check_mode = check_mode


class Result(object):
    def __init__(self, task, result):
        self._task = task
        self._result = result


def callback(max_files=40):
    cb = render_summary.CallbackModule(display=Display())
    cb._max_files = max_files
    return cb


def render(cb, files, root='/srv/build/cell', secrets=None, action='cellplatform.platform.render_files'):
    result = {'root': root, 'files': files}
    if secrets is not None:
        result['secrets'] = secrets
    cb.v2_runner_on_ok(Result(Task(action), result))


def test_changes_against_the_last_render_are_counted_once_per_file():
    cb = callback()
    render(cb, {'plan.json': 'created', 'PLAN.md': 'created', 'l0/cilium/values.yaml': 'unchanged',
                'talos/nodes/cp-4.yaml': 'removed', 'terraform/cell.auto.tfvars.json': 'updated'})
    render(cb, {'plan.json': 'updated', 'PLAN.md': 'updated', 'l1/metallb/values.yaml': 'mode',
                'l1/external-dns/values.yaml': 'unchanged'},
           secrets={'skipped': 'there are no platform secrets (/x/platform.sops.yaml)'})
    render(cb, {'x.yaml': 'whatever'}, action='ansible.builtin.copy')      # not a render task: ignored
    assert cb.summary() == [
        'RENDER /srv/build/cell',
        'plan: /srv/build/cell/PLAN.md (machine-readable: /srv/build/cell/plan.json)',
        'against the last render: 2 added, 2 changed, 1 removed',
        '  added    PLAN.md',
        '  changed  l1/metallb/values.yaml',
        '  added    plan.json',
        '  removed  talos/nodes/cp-4.yaml',
        '  changed  terraform/cell.auto.tfvars.json',
        'GitOps Secrets not rendered: there are no platform secrets (/x/platform.sops.yaml) (they are created at '
        'apply time; render with the identity to commit them SOPS-encrypted)',
    ]


@pytest.mark.parametrize('old, new, merged', [
    (None, 'unchanged', 'unchanged'), ('unchanged', 'updated', 'updated'), ('created', 'updated', 'created'),
    ('updated', 'unchanged', 'updated'), ('removed', 'created', 'updated'), ('updated', 'removed', 'updated'),
])
def test_merge_status(old, new, merged):
    assert render_summary.merge_status(old, new) == merged


def test_nothing_changed_and_the_file_cap():
    cb = callback(max_files=1)
    render(cb, {'a': 'unchanged', 'b': 'unchanged'})
    assert cb.summary()[2] == 'against the last render: nothing changed (2 files)'
    cb = callback(max_files=1)
    render(cb, {'a': 'created', 'b': 'created', 'c': 'updated'})
    assert cb.summary()[-2:] == ['  added    a', '  ... and 2 more']
    assert callback().summary() == []                   # no render task ran: nothing printed


@pytest.mark.slow
def test_make_render_prints_the_plan_and_the_changes(tmp_path):
    """A real render of the reference cell with the repository's ansible.cfg (the callback enabled)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / 'ansible.cfg'), ANSIBLE_COLLECTIONS_PATH=str(REPO),
               ANSIBLE_NOCOLOR='1', HOME=str(tmp_path))
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i',
           str(REPO / 'inventories/production/hosts.yml'), str(REPO / 'playbooks/site.yml'),
           '-e', 'cellplatform_mode=render', '-e', 'cellplatform_build_root=%s' % (tmp_path / 'build')]
    first = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stdout[-3000:]
    build = tmp_path / 'build' / 'cell'
    assert 'RENDER %s' % build in first.stdout
    assert 'plan: %s/PLAN.md (machine-readable: %s/plan.json)' % (build, build) in first.stdout
    assert 'against the last render: ' in first.stdout and '  added    PLAN.md' in first.stdout
    second = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and 'against the last render: nothing changed' in second.stdout
    (build / 'talos' / 'nodes' / 'cp-9.yaml').write_text('stale\n')
    (build / 'plan.json').write_text((build / 'plan.json').read_text().replace('"format": 1', '"format": 0'))
    third = subprocess.run(cmd + ['--check'], cwd=str(REPO), env=env, capture_output=True, text=True, check=False)
    assert third.returncode == 0
    assert 'against the last render: 0 added, 1 changed, 1 removed (check mode: nothing written)' in third.stdout
    assert '  changed  plan.json' in third.stdout and '  removed  talos/nodes/cp-9.yaml' in third.stdout
