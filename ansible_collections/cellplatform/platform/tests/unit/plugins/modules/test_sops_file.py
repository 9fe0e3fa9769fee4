# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.sops_file (in-process, the real sops binary, real age keys)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils
from ansible_collections.cellplatform.platform.plugins.modules import sops_file
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


def encrypt(keys, path, text, recipients=None):
    runner = sops_utils.Sops(str(keys.identity))
    path.write_bytes(runner.encrypt(text, recipients or keys.recipients, str(path)))


def decrypt(keys, path):
    return sops_utils.decrypt_file(str(path), str(keys.identity))


def test_encrypt_content_creates_a_sops_file_0600(env):
    keys, base, tmp = env
    dest = tmp / 'out' / 'platform.sops.yaml'
    r = run_module(sops_file, dict(base, content=SECRET, dest=str(dest)), diff=True)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and r['created'] is True and r['dest'] == str(dest) and r['reason'] == 'missing'
    data = dest.read_bytes()
    assert b'sops:' in data and b'c2VjcmV0LXRzaWcta2V5LXZhbHVl' not in data and b'tsig_secret:' in data
    assert decrypt(keys, dest) == SECRET.encode()
    assert (os.stat(str(dest)).st_mode & 0o777) == 0o600
    assert no_secret(r) and 'not shown' in r['diff']['after']


@pytest.mark.parametrize('state', ['encrypted', 'decrypted'])
def test_result_carries_the_file_attributes_of_dest(env, state):
    keys, base, tmp = env
    enc = tmp / 'platform.sops.yaml'
    encrypt(keys, enc, SECRET)
    if state == 'encrypted':
        args = dict(base, content=SECRET, dest=str(tmp / 'new.sops.yaml'))
    else:
        args = dict(base, state='decrypted', src=str(enc), dest=str(tmp / 'platform.yaml'))
    r = run_module(sops_file, args)
    assert r['_rc'] == 0, r
    assert r['state'] == 'file' and r['mode'] == '0600' and r['dest'] == args['dest']


def test_encrypt_same_content_is_unchanged_and_untouched(env):
    keys, base, tmp = env
    dest = tmp / 'platform.sops.yaml'
    run_module(sops_file, dict(base, content=SECRET, dest=str(dest)))
    before = dest.read_bytes()
    r = run_module(sops_file, dict(base, content=SECRET, dest=str(dest)))
    assert r['_rc'] == 0 and r['changed'] is False and r['created'] is False
    assert dest.read_bytes() == before


def test_encrypt_new_content_rewrites(env):
    keys, base, tmp = env
    dest = tmp / 'platform.sops.yaml'
    run_module(sops_file, dict(base, content=SECRET, dest=str(dest)))
    r = run_module(sops_file, dict(base, content=SECRET + 'x: y\n', dest=str(dest)))
    assert r['changed'] is True
    assert yaml.safe_load(decrypt(keys, dest)) == dict(yaml.safe_load(SECRET), x='y')


def test_encrypt_from_src(env):
    keys, base, tmp = env
    src = tmp / 'plain.yaml'
    src.write_text(SECRET)
    dest = tmp / 'plain.sops.yaml'
    r = run_module(sops_file, dict(base, src=str(src), dest=str(dest)))
    assert r['_rc'] == 0 and r['changed'] is True
    assert decrypt(keys, dest) == SECRET.encode()


def test_encrypt_refuses_an_already_encrypted_src(env):
    keys, base, tmp = env
    src = tmp / 'already.sops.yaml'
    encrypt(keys, src, SECRET)
    dest = tmp / 'twice.sops.yaml'
    r = run_module(sops_file, dict(base, src=str(src), dest=str(dest)))
    assert r['_rc'] == 1 and 'already a SOPS file' in r['msg'] and 'state=decrypted' in r['msg']
    assert not dest.exists()


def test_encrypt_check_mode_writes_nothing(env):
    keys, base, tmp = env
    dest = tmp / 'platform.sops.yaml'
    r = run_module(sops_file, dict(base, content=SECRET, dest=str(dest)), check=True)
    assert r['_rc'] == 0 and r['changed'] is True and not dest.exists()


def test_encrypt_over_a_file_we_cannot_read_fails_closed(env):
    keys, base, tmp = env
    dest = tmp / 'platform.sops.yaml'
    encrypt(keys, dest, 'other: secret\n', keys.other_recipients)
    before = dest.read_bytes()
    r = run_module(sops_file, dict(base, content=SECRET, dest=str(dest)))
    assert r['_rc'] == 1 and 'no key in the age identity file' in r['msg'] and str(dest) in r['msg']
    assert dest.read_bytes() == before


def test_encrypt_over_a_plaintext_dest_fails_closed(env):
    keys, base, tmp = env
    dest = tmp / 'platform.sops.yaml'
    dest.write_text('plain: text\n')
    r = run_module(sops_file, dict(base, content=SECRET, dest=str(dest)))
    assert r['_rc'] == 1 and 'not a SOPS-encrypted file' in r['msg']
    assert dest.read_text() == 'plain: text\n'


@pytest.mark.parametrize('recipients, words', [
    ([], 'age_recipients is empty'),
    (['age1short'], "age_recipients[0] = 'age1short' is not a valid age recipient"),
])
def test_encrypt_recipient_errors_name_the_field(env, recipients, words):
    keys, base, tmp = env
    dest = tmp / 'platform.sops.yaml'
    r = run_module(sops_file, dict(base, content=SECRET, dest=str(dest), age_recipients=recipients))
    assert r['_rc'] == 1 and words in r['msg']
    assert not dest.exists() and no_secret(r)


@pytest.mark.parametrize('wanted', ['all', 'swap'])
def test_a_changed_recipient_set_rewrites(env, wanted):
    keys, base, tmp = env
    dest = tmp / 'platform.sops.yaml'
    run_module(sops_file, dict(base, content=SECRET, dest=str(dest)))
    recipients = keys.all_recipients if wanted == 'all' else [keys.all_recipients[0]]   # same count, other key
    r = run_module(sops_file, dict(base, content=SECRET, dest=str(dest), age_recipients=recipients))
    assert r['changed'] is True and r['reason'] == 'recipients'
    assert sops_utils.recipients_of_file(str(dest)) == sorted(recipients)
    r = run_module(sops_file, dict(base, content=SECRET, dest=str(dest), age_recipients=recipients))
    assert r['changed'] is False


def test_decrypt_writes_plaintext_0600_then_is_idempotent(env):
    keys, base, tmp = env
    src = tmp / 'platform.sops.yaml'
    encrypt(keys, src, SECRET)
    dest = tmp / 'work' / 'platform.yaml'
    r = run_module(sops_file, dict(base, state='decrypted', src=str(src), dest=str(dest)), diff=True)
    assert r['_rc'] == 0, r
    assert r['changed'] is True and dest.read_text() == SECRET
    assert (os.stat(str(dest)).st_mode & 0o777) == 0o600
    assert no_secret(r)
    r = run_module(sops_file, dict(base, state='decrypted', src=str(src), dest=str(dest)))
    assert r['changed'] is False


def test_decrypt_fixes_a_wrong_mode(env):
    keys, base, tmp = env
    src = tmp / 'platform.sops.yaml'
    encrypt(keys, src, SECRET)
    dest = tmp / 'platform.yaml'
    dest.write_text(SECRET)
    os.chmod(str(dest), 0o644)
    r = run_module(sops_file, dict(base, state='decrypted', src=str(src), dest=str(dest)))
    assert r['changed'] is True and (os.stat(str(dest)).st_mode & 0o777) == 0o600


def test_decrypt_check_mode_writes_nothing(env):
    keys, base, tmp = env
    src = tmp / 'platform.sops.yaml'
    encrypt(keys, src, SECRET)
    dest = tmp / 'platform.yaml'
    r = run_module(sops_file, dict(base, state='decrypted', src=str(src), dest=str(dest)), check=True)
    assert r['_rc'] == 0 and r['changed'] is True and not dest.exists()


def test_decrypt_with_wrong_identity_fails_and_writes_nothing(env):
    keys, base, tmp = env
    src = tmp / 'platform.sops.yaml'
    encrypt(keys, src, SECRET)
    dest = tmp / 'platform.yaml'
    r = run_module(sops_file, dict(base, state='decrypted', src=str(src), dest=str(dest),
                                   age_identity=str(keys.other_identity)))
    assert r['_rc'] == 1 and 'no key in the age identity file' in r['msg'] and str(src) in r['msg']
    assert not dest.exists()


def test_decrypt_with_missing_identity_file_names_it(env):
    keys, base, tmp = env
    src = tmp / 'platform.sops.yaml'
    encrypt(keys, src, SECRET)
    missing = tmp / 'nope' / 'keys.txt'
    r = run_module(sops_file, dict(base, state='decrypted', src=str(src), dest=str(tmp / 'p.yaml'),
                                   age_identity=str(missing)))
    assert r['_rc'] == 1 and str(missing) in r['msg'] and 'age-keygen' in r['msg']


def test_decrypt_without_src_names_the_field(env):
    keys, base, tmp = env
    r = run_module(sops_file, dict(base, state='decrypted', dest=str(tmp / 'p.yaml')))
    assert r['_rc'] == 1 and 'src is required with state=decrypted' in r['msg']


def test_decrypt_with_content_is_rejected(env):
    keys, base, tmp = env
    r = run_module(sops_file, dict(base, state='decrypted', content=SECRET, dest=str(tmp / 'p.yaml')))
    assert r['_rc'] == 1 and 'content is only valid with state=encrypted' in r['msg']
    assert no_secret(r)


def test_src_and_content_are_mutually_exclusive(env):
    keys, base, tmp = env
    r = run_module(sops_file, dict(base, src=str(tmp / 'a'), content=SECRET, dest=str(tmp / 'b.sops.yaml')))
    assert r['_rc'] == 1 and 'mutually exclusive' in r['msg'] and 'src' in r['msg'] and 'content' in r['msg']
    assert no_secret(r)


def test_encrypted_needs_src_or_content(env):
    keys, base, tmp = env
    r = run_module(sops_file, dict(base, dest=str(tmp / 'b.sops.yaml')))
    assert r['_rc'] == 1 and 'src' in r['msg'] and 'content' in r['msg']


def test_missing_src_is_named(env):
    keys, base, tmp = env
    r = run_module(sops_file, dict(base, src=str(tmp / 'missing.yaml'), dest=str(tmp / 'b.sops.yaml')))
    assert r['_rc'] == 1 and 'missing.yaml' in r['msg'] and 'check src' in r['msg']
