# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""age encryption for cellplatform secrets (pyrage; same format as the age CLI and SOPS).

Everything that touches secret material on the controller goes through here:

* ``encrypt(plaintext, recipients)`` / ``decrypt(ciphertext, identity_file)``
* ``decrypt_file(path, identity_file)``
* ``write_if_changed(path, plaintext, recipients, identity_file)``: age ciphertext is random,
  so re-encrypting identical content would change the file on every run. This decrypts the
  existing file first and only rewrites it when the plaintext (or the number of recipients)
  differs, which is what makes reruns ``changed=false`` with byte-identical files.
* ``atomic_write(path, data)``: temp file in the same directory, mode 0600, fsync, rename.

Identity files use the age / SOPS key file format: ``AGE-SECRET-KEY-1...`` lines, comments
starting with ``#`` (``# public key: age1...``) and blank lines; several keys are allowed.
Errors are ``AgeError`` with a message that names the file, the value and the fix; they never
contain secret material.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import re
import shutil
import tempfile

try:
    import pyrage
    from pyrage import x25519
    HAS_PYRAGE = True
    PYRAGE_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without pyrage
    pyrage = None
    x25519 = None
    HAS_PYRAGE = False
    PYRAGE_IMPORT_ERROR = exc

DEFAULT_IDENTITY = '~/.config/sops/age/keys.txt'
AGE_MAGIC = b'age-encryption.org/v1\n'
AGE_ARMOR = b'-----BEGIN AGE ENCRYPTED FILE-----'
_RECIPIENT_RE = re.compile(r'^age1[02-9ac-hj-np-z]{58}$')
_X25519_STANZA = b'-> X25519 '


class AgeError(Exception):
    """A failure with a message that names what failed and how to fix it (never secret)."""


def _require_pyrage():
    if not HAS_PYRAGE:
        raise AgeError(
            "the Python library 'pyrage' is required for age encryption but could not be imported "
            "(%s); install it on the controller: pip install 'pyrage>=1.2'" % PYRAGE_IMPORT_ERROR)


def is_age_data(data):
    """True when ``data`` (bytes) starts like an age file (binary or ASCII-armored)."""
    head = data.lstrip()[:len(AGE_ARMOR)]
    return data.startswith(AGE_MAGIC) or head.startswith(AGE_ARMOR)


def parse_recipients(recipients, field='age_recipients'):
    """Turn recipient strings (``age1...`` or ``ssh-ed25519``/``ssh-rsa`` public keys) into pyrage recipients."""
    _require_pyrage()
    if isinstance(recipients, (str, bytes)):
        recipients = [recipients]
    parsed = []
    for index, value in enumerate(recipients or []):
        text = value.decode('ascii', 'replace') if isinstance(value, bytes) else str(value)
        text = text.strip()
        try:
            if text.startswith('ssh-'):
                parsed.append(pyrage.ssh.Recipient.from_str(text))
            elif _RECIPIENT_RE.match(text):
                parsed.append(x25519.Recipient.from_str(text))
            else:
                raise ValueError('not an age1... public key')
        except Exception as exc:  # pyrage raises RecipientError, we raise ValueError
            raise AgeError(
                "%s[%d] = %r is not a valid age recipient (%s); use the public key printed by "
                "'age-keygen -y <identity file>' (age1 followed by 58 characters) or an ssh-ed25519 "
                "public key" % (field, index, text, exc))
    if not parsed:
        raise AgeError(
            "%s is empty: secrets can only be encrypted to at least one recipient; set %s to the "
            "public age key(s) (age1...) of the people and CI runners that may decrypt this cell's "
            "secrets" % (field, field))
    return parsed


def load_identities(identity_file):
    """Read every ``AGE-SECRET-KEY-1`` key from an age/SOPS key file (comments and blanks allowed)."""
    _require_pyrage()
    path = os.path.expanduser(str(identity_file))
    if not os.path.exists(path):
        raise AgeError(
            "age identity file %s does not exist; create it with 'age-keygen -o %s' (or point "
            "age_identity / cellplatform_age_identity at your existing SOPS age key file)" % (path, path))
    try:
        with open(path, 'r') as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError) as exc:
        raise AgeError("cannot read age identity file %s: %s; fix its permissions (it should be "
                       "readable by you, mode 0600)" % (path, exc.strerror or exc))
    identities = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith('#'):
            continue
        if not text.upper().startswith('AGE-SECRET-KEY-1'):
            raise AgeError(
                "age identity file %s line %d is neither a comment nor an AGE-SECRET-KEY-1... key "
                "(plugin and ssh identities are not supported); remove that line" % (path, number))
        try:
            identities.append(x25519.Identity.from_str(text))
        except Exception:
            raise AgeError("age identity file %s line %d holds a malformed AGE-SECRET-KEY-1 key; "
                           "replace it with a key generated by age-keygen" % (path, number))
    if not identities:
        raise AgeError("age identity file %s contains no AGE-SECRET-KEY-1... key; add the key "
                       "(age-keygen -o %s) or point age_identity at the right file" % (path, path))
    return identities


def recipients_of_identity_file(identity_file):
    """The public keys (age1...) matching the identities in ``identity_file``."""
    return [str(identity.to_public()) for identity in load_identities(identity_file)]


def encrypt(plaintext, recipients):
    """Encrypt bytes (or text) to recipients; returns binary age data."""
    parsed = parse_recipients(recipients)
    if not isinstance(plaintext, bytes):
        plaintext = plaintext.encode('utf-8')
    try:
        return pyrage.encrypt(plaintext, parsed)
    except Exception as exc:
        raise AgeError('age encryption failed: %s' % exc)


def decrypt(ciphertext, identity_file, source='<data>'):
    """Decrypt age data with the keys in ``identity_file``; ``source`` names the data in errors."""
    identities = load_identities(identity_file)
    if not is_age_data(ciphertext):
        raise AgeError(
            "%s is not an age-encrypted file (it does not start with 'age-encryption.org/v1'); "
            "it may be plaintext or corrupted: restore it from backup or re-encrypt it with "
            "cellplatform.platform.age_file state=encrypted" % source)
    if ciphertext.lstrip().startswith(AGE_ARMOR):
        ciphertext = _dearmor(ciphertext, source)
    try:
        return pyrage.decrypt(ciphertext, identities)
    except Exception as exc:
        text = str(exc)
        if 'no matching keys' in text.lower():
            raise AgeError(
                "none of the %d key(s) in age identity file %s can decrypt %s: it was encrypted to "
                "other recipients; use the identity file holding one of that file's recipients "
                "(age_identity / cellplatform_age_identity), or have someone who can decrypt it "
                "re-encrypt it to your public key" % (len(identities), os.path.expanduser(str(identity_file)), source))
        raise AgeError("%s is not a valid age file (%s); it is truncated or corrupted: restore it "
                       "from backup" % (source, text))


def _dearmor(data, source):
    import base64
    lines = [line.strip() for line in data.decode('ascii', 'replace').strip().splitlines()]
    if not lines or lines[-1] != '-----END AGE ENCRYPTED FILE-----':
        raise AgeError('%s is an ASCII-armored age file without its END line; it is truncated: '
                       'restore it from backup' % source)
    try:
        return base64.b64decode(''.join(lines[1:-1]))
    except Exception:
        raise AgeError('%s is an ASCII-armored age file with invalid base64; restore it from backup' % source)


def decrypt_file(path, identity_file):
    """Decrypt the age file at ``path``."""
    path = os.path.expanduser(str(path))
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        raise AgeError("cannot read encrypted file %s: %s" % (path, exc.strerror or exc))
    return decrypt(data, identity_file, source=path)


def x25519_stanza_count(ciphertext):
    """Number of X25519 recipient stanzas in an age header (grease stanzas are not counted)."""
    count = 0
    for line in ciphertext.split(b'\n'):
        if line.startswith(b'---'):
            break
        if line.startswith(_X25519_STANZA):
            count += 1
    return count


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
    """Write bytes to ``path`` atomically (temp file in the same directory, fsync, rename), ``mode`` 0600."""
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


def plan_write(path, plaintext, recipients, identity_file):
    """Decide whether ``path`` must be (re)written to hold ``plaintext`` encrypted to ``recipients``.

    Returns ``(needs_write, before)`` where ``before`` is the existing plaintext (bytes) or None
    when the file does not exist. An existing file that cannot be decrypted raises ``AgeError``
    (fail closed: never overwrite a secret we cannot read). The file is also rewritten when its
    number of X25519 recipients differs from ``recipients`` (a recipient was added or removed;
    age headers do not reveal which keys they were encrypted to, so a same-size swap of
    recipients is not detected: to re-key such a file, decrypt it into the private work dir with
    ``age_file state=decrypted``, remove the ``.age`` file and encrypt it again with ``state=encrypted``).
    """
    if not isinstance(plaintext, bytes):
        plaintext = plaintext.encode('utf-8')
    parsed = parse_recipients(recipients)
    path = os.path.expanduser(str(path))
    if not os.path.exists(path):
        return True, None
    with open(path, 'rb') as handle:
        existing = handle.read()
    before = decrypt(existing, identity_file, source=path)
    return before != plaintext or _recipient_count_changed(existing, parsed), before


def _recipient_count_changed(ciphertext, parsed):
    """True when binary age data holds a different number of X25519 stanzas than ``parsed`` wants."""
    x25519_wanted = sum(1 for r in parsed if isinstance(r, x25519.Recipient))
    return bool(ciphertext.startswith(AGE_MAGIC) and x25519_wanted
                and x25519_stanza_count(ciphertext) != x25519_wanted)


def recipients_changed(path, recipients):
    """True when the existing age file ``path`` must be re-encrypted because its number of X25519
    recipients differs from ``recipients`` (the recipient check of ``plan_write``, without decrypting)."""
    parsed = parse_recipients(recipients)
    with open(os.path.expanduser(str(path)), 'rb') as handle:
        return _recipient_count_changed(handle.read(), parsed)


def write_if_changed(path, plaintext, recipients, identity_file, check_mode=False):
    """Encrypt ``plaintext`` to ``path`` unless the file already holds exactly it. Returns changed."""
    needed, _before = plan_write(path, plaintext, recipients, identity_file)
    if needed and not check_mode:
        atomic_write(path, encrypt(plaintext, recipients))
    return needed
