# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of module_utils/age_crypto.py (real age encryption through pyrage)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import stat

import pytest

pyrage = pytest.importorskip('pyrage')
from pyrage import x25519  # noqa: E402

from ansible_collections.cellplatform.platform.plugins.module_utils import age_crypto  # noqa: E402
from ansible_collections.cellplatform.platform.plugins.module_utils.age_crypto import AgeError  # noqa: E402


@pytest.fixture
def keys(tmp_path):
    first, second, other = x25519.Identity.generate(), x25519.Identity.generate(), x25519.Identity.generate()
    identity = tmp_path / 'keys.txt'
    identity.write_text('# created: 2026-11-26T10:00:00Z\n# public key: %s\n%s\n\n   \n'
                        '# public key: %s\n  %s  \n' % (first.to_public(), first, second.to_public(), second))
    other_file = tmp_path / 'other.txt'
    other_file.write_text('%s\n' % other)
    return dict(identity=str(identity), other=str(other_file), first=str(first.to_public()),
                second=str(second.to_public()), stranger=str(other.to_public()))


def test_round_trip_with_the_second_key_of_a_commented_identity_file(keys):
    data = age_crypto.encrypt(b'cluster: secret\n', [keys['second']])
    assert data.startswith(b'age-encryption.org/v1\n')
    assert b'cluster: secret' not in data
    assert age_crypto.decrypt(data, keys['identity']) == b'cluster: secret\n'


def test_text_is_encoded_as_utf8(keys):
    data = age_crypto.encrypt(u'pässwörd', [keys['first']])
    assert age_crypto.decrypt(data, keys['identity']) == u'pässwörd'.encode('utf-8')


def test_recipients_of_identity_file(keys):
    assert age_crypto.recipients_of_identity_file(keys['identity']) == [keys['first'], keys['second']]


def test_missing_identity_file_names_path_and_fix(tmp_path, keys):
    data = age_crypto.encrypt(b'x', [keys['first']])
    missing = str(tmp_path / 'nope' / 'keys.txt')
    with pytest.raises(AgeError) as exc:
        age_crypto.decrypt(data, missing)
    assert missing in str(exc.value) and 'does not exist' in str(exc.value) and 'age-keygen' in str(exc.value)


def test_identity_file_without_keys(tmp_path):
    path = tmp_path / 'empty.txt'
    path.write_text('# public key: age1xyz\n\n')
    with pytest.raises(AgeError, match='contains no AGE-SECRET-KEY-1'):
        age_crypto.load_identities(str(path))


def test_identity_file_with_a_foreign_line_names_the_line(tmp_path):
    path = tmp_path / 'bad.txt'
    path.write_text('# comment\nssh-ed25519 AAAA...\n')
    with pytest.raises(AgeError) as exc:
        age_crypto.load_identities(str(path))
    assert 'line 2' in str(exc.value) and str(path) in str(exc.value)


def test_malformed_key_is_reported_without_echoing_it(tmp_path):
    path = tmp_path / 'bad.txt'
    path.write_text('AGE-SECRET-KEY-1NOTAREALKEYATALL\n')
    with pytest.raises(AgeError) as exc:
        age_crypto.load_identities(str(path))
    assert 'line 1' in str(exc.value) and 'NOTAREALKEY' not in str(exc.value)


def test_no_matching_key_names_file_and_identity(tmp_path, keys):
    path = tmp_path / 'bundle.age'
    path.write_bytes(age_crypto.encrypt(b'x', [keys['stranger']]))
    with pytest.raises(AgeError) as exc:
        age_crypto.decrypt_file(str(path), keys['identity'])
    message = str(exc.value)
    assert str(path) in message and keys['identity'] in message and 'other recipients' in message


def test_plaintext_is_not_an_age_file(tmp_path, keys):
    path = tmp_path / 'plain.age'
    path.write_bytes(b'cluster:\n  secret: abc\n')
    with pytest.raises(AgeError) as exc:
        age_crypto.decrypt_file(str(path), keys['identity'])
    assert 'is not an age-encrypted file' in str(exc.value) and str(path) in str(exc.value)
    assert 'abc' not in str(exc.value)


def test_truncated_file_is_reported_as_corrupted(tmp_path, keys):
    data = age_crypto.encrypt(b'x' * 1000, [keys['first']])
    path = tmp_path / 'short.age'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(AgeError, match='restore it from backup'):
        age_crypto.decrypt_file(str(path), keys['identity'])


def test_ascii_armored_files_decrypt(keys):
    data = age_crypto.encrypt(b'armored', [keys['first']])
    body = base64.b64encode(data).decode('ascii')
    armored = '-----BEGIN AGE ENCRYPTED FILE-----\n%s\n-----END AGE ENCRYPTED FILE-----\n' % '\n'.join(
        body[i:i + 64] for i in range(0, len(body), 64))
    assert age_crypto.decrypt(armored.encode('ascii'), keys['identity']) == b'armored'


@pytest.mark.parametrize('bad', ['age1short', 'AGE-SECRET-KEY-1ABC', 'ssh-ed25519 AAAAnotbase64'])
def test_invalid_recipient_names_field_index_and_value(bad, keys):
    with pytest.raises(AgeError) as exc:
        age_crypto.parse_recipients([keys['first'], bad])
    assert 'age_recipients[1]' in str(exc.value) and bad in str(exc.value)


def test_empty_recipients_is_a_clear_error():
    with pytest.raises(AgeError, match='age_recipients is empty'):
        age_crypto.encrypt(b'x', [])


def test_ssh_ed25519_recipient_is_accepted():
    pub = ('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN '
           'user@host')
    assert len(age_crypto.parse_recipients([pub])) == 1


def test_atomic_write_is_0600_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / 'new' / 'dir' / 'file.age'
    age_crypto.atomic_write(str(target), b'data')
    assert target.read_bytes() == b'data'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / 'new' / 'dir').stat().st_mode) == 0o700
    assert os.listdir(str(target.parent)) == ['file.age']


def test_write_if_changed_keeps_file_byte_identical(tmp_path, keys):
    path = str(tmp_path / 'f.age')
    assert age_crypto.write_if_changed(path, b'one', [keys['first']], keys['identity']) is True
    before = open(path, 'rb').read()
    mtime = os.stat(path).st_mtime_ns
    assert age_crypto.write_if_changed(path, b'one', [keys['first']], keys['identity']) is False
    assert open(path, 'rb').read() == before and os.stat(path).st_mtime_ns == mtime
    assert age_crypto.write_if_changed(path, b'two', [keys['first']], keys['identity']) is True
    assert age_crypto.decrypt_file(path, keys['identity']) == b'two'


def test_write_if_changed_check_mode_writes_nothing(tmp_path, keys):
    path = str(tmp_path / 'f.age')
    assert age_crypto.write_if_changed(path, b'one', [keys['first']], keys['identity'], check_mode=True) is True
    assert not os.path.exists(path)
    age_crypto.write_if_changed(path, b'one', [keys['first']], keys['identity'])
    before = open(path, 'rb').read()
    assert age_crypto.write_if_changed(path, b'two', [keys['first']], keys['identity'], check_mode=True) is True
    assert open(path, 'rb').read() == before


def test_adding_a_recipient_reencrypts(tmp_path, keys):
    path = str(tmp_path / 'f.age')
    age_crypto.write_if_changed(path, b'one', [keys['first']], keys['identity'])
    assert age_crypto.write_if_changed(path, b'one', [keys['first'], keys['stranger']], keys['identity']) is True
    assert age_crypto.decrypt_file(path, keys['other']) == b'one'
    assert age_crypto.plan_write(path, b'one', [keys['first'], keys['stranger']], keys['identity']) == (False, b'one')


def test_write_if_changed_refuses_to_overwrite_what_it_cannot_read(tmp_path, keys):
    path = tmp_path / 'f.age'
    path.write_bytes(age_crypto.encrypt(b'theirs', [keys['stranger']]))
    before = path.read_bytes()
    with pytest.raises(AgeError, match='can decrypt'):
        age_crypto.write_if_changed(str(path), b'mine', [keys['first']], keys['identity'])
    assert path.read_bytes() == before
