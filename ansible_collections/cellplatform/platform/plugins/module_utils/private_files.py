# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files that hold secrets on the controller: private directories, atomic 0600 writes.

* ``ensure_private_dir(path)``: create a directory (mode 0700) when it is missing.
* ``private_tempdir(prefix, work_dir)``: a 0700 temporary directory for plaintext, always removed.
* ``atomic_write(path, data)``: temp file in the same directory, mode 0600, fsync, rename; a
  reader never sees half a file and a crash never leaves a truncated secret behind.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import shutil
import tempfile


def ensure_private_dir(path, mode=0o700):
    """Create ``path`` (and parents) when missing; a directory created here gets ``mode``."""
    path = os.path.expanduser(str(path))
    if not os.path.isdir(path):
        os.makedirs(path, mode)
        os.chmod(path, mode)
    return path


@contextlib.contextmanager
def private_tempdir(prefix, work_dir=None, create_work_dir=True):
    """A private (0700) temporary directory for plaintext, always removed on exit.

    It is created under ``work_dir`` (made private by ``ensure_private_dir`` when missing), or in
    the system temporary directory when ``work_dir`` is unset, or missing with ``create_work_dir=False``
    (check mode creates nothing).
    """
    parent = None
    if work_dir and (create_work_dir or os.path.isdir(work_dir)):
        parent = ensure_private_dir(work_dir)
    tmpdir = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        os.chmod(tmpdir, 0o700)
        yield tmpdir
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def atomic_write(path, data, mode=0o600):
    """Write bytes to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = os.path.expanduser(str(path))
    directory = os.path.dirname(os.path.abspath(path))
    ensure_private_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
