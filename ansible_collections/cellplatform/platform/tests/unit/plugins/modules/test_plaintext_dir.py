# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.plaintext_dir (in-process, a real directory tree)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.cellplatform.platform.plugins.modules import plaintext_dir
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import run_module, warnings_of

SECRET = 'cluster: {secret: c2VjcmV0LXRoYXQtYS1raWxsZWQtcnVuLWxlZnQ=}\n'


def plant(root, files):
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SECRET)


def test_clean_creates_the_private_directory_and_a_missing_work_dir(tmp_path):
    path = tmp_path / 'work' / 'plaintext'
    r = run_module(plaintext_dir, dict(path=str(path)), check=True)
    assert r['changed'] is True and not (tmp_path / 'work').exists()
    r = run_module(plaintext_dir, dict(path=str(path)))
    assert r['_rc'] == 0 and r['changed'] is True and r['removed'] == []
    for directory in (path, path.parent):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    r = run_module(plaintext_dir, dict(path=str(path)))
    assert r['changed'] is False and 'warnings' not in r


def test_clean_removes_what_an_interrupted_run_left_and_says_so(tmp_path):
    path = tmp_path / 'plaintext'
    path.mkdir(mode=0o700)
    plant(path, ['talosconfig', 'nodes/cp-1.yaml', 'talos-config-abc/out/controlplane.yaml'])
    (path / 'nodes' / 'empty-after-a-clean-step').mkdir()
    r = run_module(plaintext_dir, dict(path=str(path)), check=True)
    assert r['changed'] is True and (path / 'talosconfig').exists()
    r = run_module(plaintext_dir, dict(path=str(path), state='clean'))
    assert r['changed'] is True
    assert r['removed'] == ['nodes/cp-1.yaml', 'talos-config-abc/out/controlplane.yaml', 'talosconfig']
    assert any('an interrupted run left 3 decrypted file(s)' in w for w in warnings_of(r))
    assert sorted(os.listdir(str(path))) == [] and path.stat().st_mode & 0o777 == 0o700
    assert 'c2VjcmV0' not in json.dumps(r)


def test_clean_leaves_empty_subdirectories_alone_and_makes_the_directory_private(tmp_path):
    path = tmp_path / 'plaintext'
    (path / 'nodes').mkdir(parents=True)
    path.chmod(0o755)
    r = run_module(plaintext_dir, dict(path=str(path)))
    assert r['changed'] is True and r['removed'] == [] and 'warnings' not in r
    assert path.stat().st_mode & 0o777 == 0o700 and (path / 'nodes').is_dir()
    assert run_module(plaintext_dir, dict(path=str(path)))['changed'] is False


def test_empty_removes_the_runs_own_files_and_keeps_the_directory(tmp_path):
    path = tmp_path / 'plaintext'
    plant(path, ['kubeconfig', 'linkerd/issuer.key'])
    os.symlink('/etc/hostname', str(path / 'link'))
    r = run_module(plaintext_dir, dict(path=str(path), state='empty'))
    assert r['changed'] is True and r['removed'] == ['kubeconfig', 'link', 'linkerd/issuer.key']
    assert 'warnings' not in r
    assert path.is_dir() and os.listdir(str(path)) == [] and os.path.exists('/etc/hostname')
    assert run_module(plaintext_dir, dict(path=str(path), state='empty'))['changed'] is False
    missing = tmp_path / 'never-created'
    assert run_module(plaintext_dir, dict(path=str(missing), state='empty'))['changed'] is False
    assert not missing.exists()


def test_a_file_in_the_way_is_an_error(tmp_path):
    path = tmp_path / 'plaintext'
    path.write_text('not a directory')
    r = run_module(plaintext_dir, dict(path=str(path)))
    assert r['failed'] is True and 'is not a directory' in r['msg']
