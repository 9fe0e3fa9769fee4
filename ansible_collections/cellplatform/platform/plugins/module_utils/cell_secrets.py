# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SOPS files of a cell as one set: names, ``.sops.yaml``, migration from ``.age``, re-keying.

* ``sops_name(legacy_name, plaintext)``: the SOPS file a legacy age file becomes
  (``talos-secrets.yaml.age`` -> ``talos-secrets.sops.yaml``, ``talosconfig.age`` ->
  ``talosconfig.sops.yaml``, ``linkerd-issuer.key.age`` -> ``linkerd-issuer.key.sops``).
* ``sync(sops, paths, recipients, migrate, check_mode)``: every legacy age file under ``paths``
  becomes a SOPS file (once; the age file is removed only after the SOPS file was read back),
  and every SOPS file under ``paths`` whose recipient set differs from ``recipients`` is
  re-encrypted to exactly that set with a new data key. The content of a file never changes
  here: nothing is regenerated.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

from ansible_collections.cellplatform.platform.plugins.module_utils import age_keys
from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import atomic_write
from ansible_collections.cellplatform.platform.plugins.module_utils.sops import (
    SopsError, check_recipients, file_format, recipients_of, same_content)

LEGACY_SUFFIX = '.age'
# The creation rule of an inventory's secrets directory: every SOPS file there, all values encrypted.
SECRETS_PATH_REGEX = r'\.sops(\.ya?ml)?$'


def _is_yaml_mapping(plaintext):
    try:
        docs = [doc for doc in yaml.safe_load_all(plaintext) if doc is not None]
    except yaml.YAMLError:
        return False
    return bool(docs) and all(isinstance(doc, dict) for doc in docs)


def sops_name(legacy_name, plaintext=None):
    """File name of the SOPS successor of a legacy ``*.age`` file (YAML when the content is YAML)."""
    stem = legacy_name[:-len(LEGACY_SUFFIX)] if legacy_name.endswith(LEGACY_SUFFIX) else legacy_name
    for ext in ('.yaml', '.yml'):
        if stem.endswith(ext):
            return stem[:-len(ext)] + '.sops.yaml'
    if plaintext is not None and _is_yaml_mapping(plaintext):
        return stem + '.sops.yaml'
    return stem + '.sops'


def _files(paths):
    """Every regular file under ``paths`` (directories are walked; missing paths are skipped), sorted."""
    out = []
    for base in paths:
        base = os.path.abspath(os.path.expanduser(str(base)))
        if os.path.isfile(base):
            out.append(base)
        elif os.path.isdir(base):
            for root, dirs, names in os.walk(base):
                dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
                out.extend(os.path.join(root, name) for name in names if not name.startswith('.'))
    return sorted(set(out))


def _read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def migrate_file(sops, legacy, recipients, check_mode=False):
    """Turn the legacy age file ``legacy`` into a SOPS file; returns the SOPS file's path."""
    try:
        plaintext = age_keys.decrypt_legacy(legacy, sops.identity)
    except age_keys.AgeKeyError as exc:
        raise SopsError(str(exc), legacy)
    target = os.path.join(os.path.dirname(legacy), sops_name(os.path.basename(legacy), plaintext))
    fmt = file_format(target)
    if os.path.exists(target):
        # Both exist (a run stopped between writing and removing): keep the SOPS file if it holds
        # the same secret, never pick one of two different secrets.
        if not same_content(sops.decrypt_file(target), plaintext, fmt):
            raise SopsError(
                '%s and %s both exist and hold different content; keep the one that is right (decrypt both), '
                'remove the other and rerun' % (legacy, target), legacy)
        if not check_mode:
            os.unlink(legacy)
        return target
    if check_mode:
        return target
    atomic_write(target, sops.encrypt(plaintext, recipients, target), mode=os.stat(legacy).st_mode & 0o777)
    if not same_content(sops.decrypt_file(target), plaintext, fmt):
        os.unlink(target)
        raise SopsError('%s did not read back as the content of %s; the age file was kept and nothing changed'
                        % (target, legacy), legacy)
    os.unlink(legacy)
    return target


def sync(sops, paths, recipients, migrate=True, check_mode=False):
    """Migrate legacy age files and re-key SOPS files under ``paths``.

    Returns ``dict(migrated=[{from, to}], rekeyed=[{path, before, after}], files=[SOPS files])``.
    """
    wanted = sorted(set(check_recipients(recipients)))
    migrated, rekeyed, files = [], [], []
    for path in _files(paths):
        if path.endswith(LEGACY_SUFFIX) and migrate and age_keys.is_legacy_age(_read(path)):
            target = migrate_file(sops, path, wanted, check_mode)
            migrated.append(dict(to=target, **{'from': path}))
            files.append(target)
            continue
        data = _read(path)
        current = recipients_of(data, file_format(path))
        if current is None:
            continue           # not a SOPS file (README.md, a plaintext file someone left: not ours to touch)
        files.append(path)
        if current != wanted:
            sops.rekey(path, wanted, check_mode=check_mode)
            rekeyed.append(dict(path=path, before=current, after=wanted))
    return dict(migrated=migrated, rekeyed=rekeyed, files=sorted(set(files)))
