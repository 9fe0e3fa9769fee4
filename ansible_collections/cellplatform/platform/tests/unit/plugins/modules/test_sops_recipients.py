# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of cellplatform.platform.sops_recipients (in-process, the real sops, real age keys):
.sops.yaml from the recipients, the one-time migration of legacy age files, re-keying on any change
of the recipient set (a same-count swap included), and nothing else changing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils import age_keys
from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils
from ansible_collections.cellplatform.platform.plugins.modules import sops_recipients
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import (
    AgeKeys, bundle_yaml, run_module)

pyrage = pytest.importorskip('pyrage')

TALOSCONFIG = 'context: cell\ncontexts:\n  cell:\n    endpoints: [192.168.100.51]\n    key: S0VZLTAwMQ==\n'
PEM = b'-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBogusKeyMaterial\n-----END EC PRIVATE KEY-----\n'


def legacy(path, data, recipients):
    """A secret as the collection wrote it before SOPS: a raw age file."""
    parsed = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    path.write_bytes(pyrage.encrypt(data if isinstance(data, bytes) else data.encode(), parsed))
    os.chmod(str(path), 0o600)


@pytest.fixture
def cell(tmp_path):
    keys = AgeKeys(tmp_path / 'keys')
    secrets = tmp_path / 'secrets'
    secrets.mkdir()
    (secrets / 'README.md').write_text('# Encrypted secrets of this cell\n')
    args = dict(paths=[str(secrets)], config=str(secrets / '.sops.yaml'), age_recipients=keys.recipients,
                age_identity=str(keys.identity))
    return keys, secrets, args


def opens(path, identity):
    try:
        return sops_utils.decrypt_file(str(path), str(identity))
    except sops_utils.SopsError:
        return None


def test_legacy_age_files_are_migrated_once_with_their_content(cell):
    keys, secrets, args = cell
    legacy(secrets / 'talos-secrets.yaml.age', bundle_yaml(), keys.recipients)
    legacy(secrets / 'talosconfig.age', TALOSCONFIG, keys.recipients)
    legacy(secrets / 'linkerd-issuer.key.age', PEM, keys.recipients)
    r = run_module(sops_recipients, args, diff=True)
    assert r['_rc'] == 0, r
    assert r['changed'] and r['config_changed'] and r['rekeyed'] == []
    assert sorted((os.path.basename(m['from']), os.path.basename(m['to'])) for m in r['migrated']) == [
        ('linkerd-issuer.key.age', 'linkerd-issuer.key.sops'), ('talos-secrets.yaml.age', 'talos-secrets.sops.yaml'),
        ('talosconfig.age', 'talosconfig.sops.yaml')]
    assert sorted(p.name for p in secrets.iterdir()) == [
        '.sops.yaml', 'README.md', 'linkerd-issuer.key.sops', 'talos-secrets.sops.yaml', 'talosconfig.sops.yaml']
    assert yaml.safe_load(opens(secrets / 'talos-secrets.sops.yaml', keys.identity)) == yaml.safe_load(bundle_yaml())
    assert yaml.safe_load(opens(secrets / 'talosconfig.sops.yaml', keys.identity)) == yaml.safe_load(TALOSCONFIG)
    assert opens(secrets / 'linkerd-issuer.key.sops', keys.identity) == PEM
    assert (os.stat(str(secrets / 'talos-secrets.sops.yaml')).st_mode & 0o777) == 0o600
    assert 'S0VZLTAwMQ' not in str(r) and 'BogusKeyMaterial' not in str(r)
    # .sops.yaml lists the recipients, so `sops edit` in the directory creates files for them
    rules = yaml.safe_load((secrets / '.sops.yaml').read_text())['creation_rules']
    assert rules == [{'path_regex': r'\.sops(\.ya?ml)?$', 'age': keys.recipients[0]}]
    snapshot = dict((p.name, p.read_bytes()) for p in secrets.iterdir())
    again = run_module(sops_recipients, args)
    assert again['changed'] is False and again['migrated'] == [] and again['rekeyed'] == []
    assert dict((p.name, p.read_bytes()) for p in secrets.iterdir()) == snapshot
    assert (secrets / 'README.md').read_text() == '# Encrypted secrets of this cell\n'


def test_a_same_count_recipient_swap_reencrypts_every_file_and_changes_nothing_else(cell, tmp_path):
    keys, secrets, args = cell
    legacy(secrets / 'platform.yaml.age', 'proxmox_api_token: kubernetes@pve!cell=TOKEN-1\n', keys.recipients)
    legacy(secrets / 'kubeconfig.age', 'apiVersion: v1\nkind: Config\nusers: []\n', keys.recipients)
    assert run_module(sops_recipients, args)['_rc'] == 0
    plain = dict((p.name, opens(p, keys.identity)) for p in secrets.glob('[!.]*.sops*'))
    new = pyrage.x25519.Identity.generate()
    new_identity = tmp_path / 'new.txt'
    new_identity.write_text('%s\n' % new)
    old_only = tmp_path / 'old.txt'
    old_only.write_text('%s\n' % [line for line in keys.identity.read_text().splitlines()
                                  if line.startswith('AGE-SECRET-KEY')][1])
    assert all(opens(secrets / name, old_only) for name in plain)
    swapped = dict(args, age_recipients=[str(new.to_public())])           # one recipient -> one other recipient
    check = run_module(sops_recipients, swapped, check=True)
    assert check['changed'] and len(check['rekeyed']) == 2
    assert all(opens(secrets / name, old_only) for name in plain)          # check mode wrote nothing
    r = run_module(sops_recipients, swapped)
    assert r['_rc'] == 0, r
    assert sorted(os.path.basename(e['path']) for e in r['rekeyed']) == sorted(plain)
    assert all(e['before'] == keys.recipients and e['after'] == [str(new.to_public())] for e in r['rekeyed'])
    for name, content in plain.items():
        assert opens(secrets / name, new_identity) == content, name        # the new key opens every file ...
        assert opens(secrets / name, old_only) is None, name               # ... the removed one none
    assert yaml.safe_load((secrets / '.sops.yaml').read_text())['creation_rules'][0]['age'] == str(new.to_public())
    assert run_module(sops_recipients, dict(swapped, age_identity=str(new_identity)))['changed'] is False


def test_both_files_with_different_content_fail_closed(cell):
    keys, secrets, args = cell
    legacy(secrets / 'platform.yaml.age', 'a: 1\n', keys.recipients)
    (secrets / 'platform.sops.yaml').write_bytes(
        sops_utils.Sops(str(keys.identity)).encrypt('a: 2\n', keys.recipients, str(secrets / 'platform.sops.yaml')))
    r = run_module(sops_recipients, args)
    assert r['_rc'] == 1 and 'both exist and hold different content' in r['msg']
    assert (secrets / 'platform.yaml.age').exists()


def test_both_files_with_the_same_content_keep_the_sops_file(cell):
    keys, secrets, args = cell
    legacy(secrets / 'platform.yaml.age', 'a: 1\n', keys.recipients)
    target = secrets / 'platform.sops.yaml'
    target.write_bytes(sops_utils.Sops(str(keys.identity)).encrypt('a: 1\n', keys.recipients, str(target)))
    before = target.read_bytes()
    r = run_module(sops_recipients, args)
    assert r['_rc'] == 0 and not (secrets / 'platform.yaml.age').exists() and target.read_bytes() == before


def test_a_legacy_file_the_identity_cannot_open_stops_the_run_unchanged(cell):
    keys, secrets, args = cell
    legacy(secrets / 'talos-secrets.yaml.age', bundle_yaml(), keys.other_recipients)
    before = (secrets / 'talos-secrets.yaml.age').read_bytes()
    r = run_module(sops_recipients, args)
    assert r['_rc'] == 1 and 'cannot be migrated' in r['msg'] and str(keys.identity) in r['msg']
    assert (secrets / 'talos-secrets.yaml.age').read_bytes() == before
    assert not (secrets / 'talos-secrets.sops.yaml').exists()


def test_empty_recipients_is_a_clear_error(cell):
    keys, secrets, args = cell
    r = run_module(sops_recipients, dict(args, age_recipients=[]))
    assert r['_rc'] == 1 and 'age_recipients is empty' in r['msg'] and not (secrets / '.sops.yaml').exists()


def test_key_file_for_keeps_only_the_keys_of_recipients(cell, tmp_path):
    keys, secrets, args = cell
    text = age_keys.key_file_for(str(keys.identity), keys.recipients)
    key_lines = [line for line in text.splitlines() if line.startswith('AGE-SECRET-KEY')]
    assert len(key_lines) == 1 and '# public key: %s' % keys.recipients[0] in text
    # that one key opens what is encrypted to the recipients (it is the right one)
    only = tmp_path / 'argocd-keys.txt'
    only.write_text(text)
    path = secrets / 'x.sops.yaml'
    path.write_bytes(sops_utils.Sops(str(keys.identity)).encrypt('a: 1\n', keys.recipients, str(path)))
    assert opens(path, only) is not None
    with pytest.raises(age_keys.AgeKeyError) as err:
        age_keys.key_file_for(str(keys.identity), keys.other_recipients)
    assert 'cellplatform_age_recipients' in str(err.value) and 'AGE-SECRET-KEY' not in str(err.value)
