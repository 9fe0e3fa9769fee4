# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.age_file (in-process, real age keys)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.cellplatform.platform.plugins.module_utils import age_crypto
from ansible_collections.cellplatform.platform.plugins.modules import age_file
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import AgeKeys, run_module

SECRET = 'tsig_secret: c2VjcmV0LXRzaWcta2V5LXZhbHVl\ngit_token: ghp_notarealtokenbutlongenough01\n'


@pytest.fixture
def env(tmp_path):
    keys = AgeKeys(tmp_path / 'keys')
    base = dict(age_recipients=keys.recipients, age_identity=str(keys.identity))
    return keys, base, tmp_path


def no_secret(result):
    text = json.dumps(result)
    return 'c2VjcmV0LXRzaWcta2V5LXZhbHVl' not in text and 'ghp_notarealtokenbutlongenough01' not in text


def test_encrypt_content_creates_an_age_file_0600(env):
    keys, base, tmp = env
    dest = tmp / 'out' / 'platform.yaml.age'
    r = run_module(age_file, dict(base, content=SECRET, dest=str(dest)), diff=True)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['created'] is True and r['dest'] == str(dest)
    data = dest.read_bytes()
    assert data.startswith(b'age-encryption.org/v1\n') and SECRET.encode() not in data
    assert age_crypto.decrypt_file(str(dest), str(keys.identity)) == SECRET.encode()
    assert (os.stat(str(dest)).st_mode & 0o777) == 0o600
    assert no_secret(r) and 'not shown' in r['diff']['after']


@pytest.mark.parametrize('state', ['encrypted', 'decrypted'])
def test_result_carries_the_file_attributes_of_dest(env, state):
    keys, base, tmp = env
    enc = tmp / 'platform.yaml.age'
    enc.write_bytes(age_crypto.encrypt(SECRET.encode(), keys.recipients))
    if state == 'encrypted':
        args = dict(base, content=SECRET, dest=str(tmp / 'new.yaml.age'))
    else:
        args = dict(base, state='decrypted', src=str(enc), dest=str(tmp / 'platform.yaml'))
    r = run_module(age_file, args)
    assert r['_rc'] == 0, r
    assert r['state'] == 'file' and r['mode'] == '0600' and r['dest'] == args['dest']


def test_encrypt_same_content_is_unchanged_and_untouched(env):
    keys, base, tmp = env
    dest = tmp / 'platform.yaml.age'
    run_module(age_file, dict(base, content=SECRET, dest=str(dest)))
    before = dest.read_bytes()
    r = run_module(age_file, dict(base, content=SECRET, dest=str(dest)))
    assert r['_rc'] == 0 and r['changed'] is False and r['created'] is False
    assert dest.read_bytes() == before


def test_encrypt_new_content_rewrites(env):
    keys, base, tmp = env
    dest = tmp / 'platform.yaml.age'
    run_module(age_file, dict(base, content=SECRET, dest=str(dest)))
    r = run_module(age_file, dict(base, content=SECRET + 'x: y\n', dest=str(dest)))
    assert r['changed'] is True
    assert age_crypto.decrypt_file(str(dest), str(keys.identity)).endswith(b'x: y\n')


def test_encrypt_from_src(env):
    keys, base, tmp = env
    src = tmp / 'plain.yaml'
    src.write_text(SECRET)
    dest = tmp / 'plain.yaml.age'
    r = run_module(age_file, dict(base, src=str(src), dest=str(dest)))
    assert r['_rc'] == 0 and r['changed'] is True
    assert age_crypto.decrypt_file(str(dest), str(keys.identity)) == SECRET.encode()


def test_encrypt_refuses_an_already_encrypted_src(env):
    keys, base, tmp = env
    src = tmp / 'already.age'
    src.write_bytes(age_crypto.encrypt(SECRET.encode(), keys.recipients))
    dest = tmp / 'twice.age'
    r = run_module(age_file, dict(base, src=str(src), dest=str(dest)))
    assert r['_rc'] == 1 and 'already age-encrypted' in r['msg'] and 'state=decrypted' in r['msg']
    assert not dest.exists()


def test_encrypt_check_mode_writes_nothing(env):
    keys, base, tmp = env
    dest = tmp / 'platform.yaml.age'
    r = run_module(age_file, dict(base, content=SECRET, dest=str(dest)), check=True)
    assert r['_rc'] == 0 and r['changed'] is True and not dest.exists()


def test_encrypt_over_a_file_we_cannot_read_fails_closed(env):
    keys, base, tmp = env
    dest = tmp / 'platform.yaml.age'
    dest.write_bytes(age_crypto.encrypt(b'other: secret\n', keys.other_recipients))
    before = dest.read_bytes()
    r = run_module(age_file, dict(base, content=SECRET, dest=str(dest)))
    assert r['_rc'] == 1 and 'none of the' in r['msg'] and str(dest) in r['msg']
    assert dest.read_bytes() == before


def test_encrypt_over_a_plaintext_dest_fails_closed(env):
    keys, base, tmp = env
    dest = tmp / 'platform.yaml.age'
    dest.write_text('plain: text\n')
    r = run_module(age_file, dict(base, content=SECRET, dest=str(dest)))
    assert r['_rc'] == 1 and 'not an age-encrypted file' in r['msg']
    assert dest.read_text() == 'plain: text\n'


@pytest.mark.parametrize('recipients, words', [
    ([], 'age_recipients is empty'),
    (['age1short'], "age_recipients[0] = 'age1short' is not a valid age recipient"),
])
def test_encrypt_recipient_errors_name_the_field(env, recipients, words):
    keys, base, tmp = env
    dest = tmp / 'platform.yaml.age'
    r = run_module(age_file, dict(base, content=SECRET, dest=str(dest), age_recipients=recipients))
    assert r['_rc'] == 1 and words in r['msg']
    assert not dest.exists() and no_secret(r)


def test_added_recipient_rewrites(env):
    keys, base, tmp = env
    dest = tmp / 'platform.yaml.age'
    run_module(age_file, dict(base, content=SECRET, dest=str(dest)))
    r = run_module(age_file, dict(base, content=SECRET, dest=str(dest), age_recipients=keys.all_recipients))
    assert r['changed'] is True
    assert age_crypto.x25519_stanza_count(dest.read_bytes()) == 2


def test_decrypt_writes_plaintext_0600_then_is_idempotent(env):
    keys, base, tmp = env
    src = tmp / 'platform.yaml.age'
    src.write_bytes(age_crypto.encrypt(SECRET.encode(), keys.recipients))
    dest = tmp / 'work' / 'platform.yaml'
    r = run_module(age_file, dict(base, state='decrypted', src=str(src), dest=str(dest)), diff=True)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and dest.read_text() == SECRET
    assert (os.stat(str(dest)).st_mode & 0o777) == 0o600
    assert no_secret(r)
    r = run_module(age_file, dict(base, state='decrypted', src=str(src), dest=str(dest)))
    assert r['changed'] is False


def test_decrypt_fixes_a_wrong_mode(env):
    keys, base, tmp = env
    src = tmp / 'platform.yaml.age'
    src.write_bytes(age_crypto.encrypt(SECRET.encode(), keys.recipients))
    dest = tmp / 'platform.yaml'
    dest.write_text(SECRET)
    os.chmod(str(dest), 0o644)
    r = run_module(age_file, dict(base, state='decrypted', src=str(src), dest=str(dest)))
    assert r['changed'] is True and (os.stat(str(dest)).st_mode & 0o777) == 0o600


def test_decrypt_check_mode_writes_nothing(env):
    keys, base, tmp = env
    src = tmp / 'platform.yaml.age'
    src.write_bytes(age_crypto.encrypt(SECRET.encode(), keys.recipients))
    dest = tmp / 'platform.yaml'
    r = run_module(age_file, dict(base, state='decrypted', src=str(src), dest=str(dest)), check=True)
    assert r['_rc'] == 0 and r['changed'] is True and not dest.exists()


def test_decrypt_with_wrong_identity_fails_and_writes_nothing(env):
    keys, base, tmp = env
    src = tmp / 'platform.yaml.age'
    src.write_bytes(age_crypto.encrypt(SECRET.encode(), keys.recipients))
    dest = tmp / 'platform.yaml'
    r = run_module(age_file, dict(base, state='decrypted', src=str(src), dest=str(dest),
                                  age_identity=str(keys.other_identity)))
    assert r['_rc'] == 1 and 'none of the 1 key(s)' in r['msg'] and str(src) in r['msg']
    assert not dest.exists()


def test_decrypt_with_missing_identity_file_names_it(env):
    keys, base, tmp = env
    src = tmp / 'platform.yaml.age'
    src.write_bytes(age_crypto.encrypt(SECRET.encode(), keys.recipients))
    missing = tmp / 'nope' / 'keys.txt'
    r = run_module(age_file, dict(base, state='decrypted', src=str(src), dest=str(tmp / 'p.yaml'),
                                  age_identity=str(missing)))
    assert r['_rc'] == 1 and str(missing) in r['msg'] and 'age-keygen' in r['msg']


def test_decrypt_without_src_names_the_field(env):
    keys, base, tmp = env
    r = run_module(age_file, dict(base, state='decrypted', dest=str(tmp / 'p.yaml')))
    assert r['_rc'] == 1 and 'src is required with state=decrypted' in r['msg']


def test_decrypt_with_content_is_rejected(env):
    keys, base, tmp = env
    r = run_module(age_file, dict(base, state='decrypted', content=SECRET, dest=str(tmp / 'p.yaml')))
    assert r['_rc'] == 1 and 'content is only valid with state=encrypted' in r['msg']
    assert no_secret(r)


def test_src_and_content_are_mutually_exclusive(env):
    keys, base, tmp = env
    r = run_module(age_file, dict(base, src=str(tmp / 'a'), content=SECRET, dest=str(tmp / 'b.age')))
    assert r['_rc'] == 1 and 'mutually exclusive' in r['msg'] and 'src' in r['msg'] and 'content' in r['msg']
    assert no_secret(r)


def test_encrypted_needs_src_or_content(env):
    keys, base, tmp = env
    r = run_module(age_file, dict(base, dest=str(tmp / 'b.age')))
    assert r['_rc'] == 1 and 'src' in r['msg'] and 'content' in r['msg']


def test_missing_src_is_named(env):
    keys, base, tmp = env
    r = run_module(age_file, dict(base, src=str(tmp / 'missing.yaml'), dest=str(tmp / 'b.age')))
    assert r['_rc'] == 1 and 'missing.yaml' in r['msg'] and 'check src' in r['msg']
