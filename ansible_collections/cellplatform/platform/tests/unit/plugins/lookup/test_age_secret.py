# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the cellplatform.platform.age_secret lookup (in-process, real age keys)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
import yaml

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleLookupError

from ansible_collections.cellplatform.platform.plugins.lookup import age_secret
from ansible_collections.cellplatform.platform.plugins.module_utils import age_crypto
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import AgeKeys

NAME = 'cellplatform.platform.age_secret'
TSIG = 'c2VjcmV0LXRzaWcta2V5LXZhbHVl'
PASSWORD = 'correct-horse-battery-staple-42'
DATA = dict(tsig_secret=TSIG, git=dict(username='cell', password=PASSWORD), empty=None, port=6443)


def lookup():
    """A LookupModule with its option definitions registered the way the plugin loader does it."""
    C.config.initialize_plugin_configuration_definitions('lookup', NAME,
                                                         yaml.safe_load(age_secret.DOCUMENTATION)['options'])
    plugin = age_secret.LookupModule()
    plugin._load_name = NAME
    plugin.ansible_name = NAME
    return plugin


@pytest.fixture
def env(tmp_path):
    keys = AgeKeys(tmp_path / 'keys')
    path = tmp_path / 'platform.yaml.age'
    path.write_bytes(age_crypto.encrypt(yaml.safe_dump(DATA).encode(), keys.recipients))
    return keys, path, tmp_path


def test_values_in_term_order_with_dotted_paths(env):
    keys, path, tmp = env
    out = lookup().run(['git.password', 'tsig_secret', 'port', 'git'], variables={},
                       file=str(path), identity=str(keys.identity))
    assert out == [PASSWORD, TSIG, 6443, dict(username='cell', password=PASSWORD)]


def test_null_value_is_returned_as_none(env):
    keys, path, tmp = env
    assert lookup().run(['empty'], variables={}, file=str(path), identity=str(keys.identity)) == [None]


def test_missing_key_lists_top_level_keys_but_no_values(env):
    keys, path, tmp = env
    with pytest.raises(AnsibleLookupError) as exc:
        lookup().run(['git.token'], variables={}, file=str(path), identity=str(keys.identity))
    msg = str(exc.value)
    assert "key 'git.token' is not in %s" % path in msg
    assert 'empty, git, port, tsig_secret' in msg and 'age_file' in msg
    assert TSIG not in msg and PASSWORD not in msg


def test_default_replaces_missing_keys_only(env):
    keys, path, tmp = env
    out = lookup().run(['nope', 'tsig_secret', 'git.nope.deeper'], variables={}, file=str(path),
                       identity=str(keys.identity), default='fallback')
    assert out == ['fallback', TSIG, 'fallback']


def test_default_none_is_a_real_default(env):
    keys, path, tmp = env
    out = lookup().run(['nope'], variables={}, file=str(path), identity=str(keys.identity), default=None)
    assert out == [None]


def test_wrong_identity_fails_without_plaintext(env):
    keys, path, tmp = env
    with pytest.raises(AnsibleLookupError) as exc:
        lookup().run(['tsig_secret'], variables={}, file=str(path), identity=str(keys.other_identity))
    msg = str(exc.value)
    assert 'none of the 1 key(s)' in msg and str(path) in msg
    assert TSIG not in msg


def test_missing_identity_file_is_named(env):
    keys, path, tmp = env
    missing = tmp / 'nope' / 'keys.txt'
    with pytest.raises(AnsibleLookupError) as exc:
        lookup().run(['tsig_secret'], variables={}, file=str(path), identity=str(missing))
    assert str(missing) in str(exc.value) and 'age-keygen' in str(exc.value)


def test_missing_file_is_named(env):
    keys, path, tmp = env
    with pytest.raises(AnsibleLookupError) as exc:
        lookup().run(['x'], variables={}, file=str(tmp / 'missing.age'), identity=str(keys.identity))
    assert 'missing.age' in str(exc.value)


def test_plaintext_file_is_refused(env):
    keys, path, tmp = env
    plain = tmp / 'platform.yaml'
    plain.write_text(yaml.safe_dump(DATA))
    with pytest.raises(AnsibleLookupError) as exc:
        lookup().run(['tsig_secret'], variables={}, file=str(plain), identity=str(keys.identity))
    assert 'not an age-encrypted file' in str(exc.value) and TSIG not in str(exc.value)


def test_invalid_yaml_reports_line_without_content(env):
    keys, path, tmp = env
    bad = tmp / 'bad.yaml.age'
    bad.write_bytes(age_crypto.encrypt(b'ok: 1\nsecret: [%s\n' % PASSWORD.encode(), keys.recipients))
    with pytest.raises(AnsibleLookupError) as exc:
        lookup().run(['ok'], variables={}, file=str(bad), identity=str(keys.identity))
    msg = str(exc.value)
    assert 'not valid YAML at line' in msg and PASSWORD not in msg


def test_non_mapping_is_refused(env):
    keys, path, tmp = env
    bad = tmp / 'list.yaml.age'
    bad.write_bytes(age_crypto.encrypt(b'- %s\n' % PASSWORD.encode(), keys.recipients))
    with pytest.raises(AnsibleLookupError) as exc:
        lookup().run(['0'], variables={}, file=str(bad), identity=str(keys.identity))
    msg = str(exc.value)
    assert 'must hold a YAML mapping' in msg and 'found list' in msg and PASSWORD not in msg


def test_file_option_is_required(env):
    keys, path, tmp = env
    with pytest.raises(AnsibleError) as exc:
        lookup().run(['tsig_secret'], variables={}, identity=str(keys.identity))
    assert 'file' in str(exc.value)


def test_identity_defaults_to_the_sops_key_file(env, monkeypatch):
    keys, path, tmp = env
    home = tmp / 'home'
    (home / '.config' / 'sops' / 'age').mkdir(parents=True)
    (home / '.config' / 'sops' / 'age' / 'keys.txt').write_text(keys.identity.read_text())
    monkeypatch.setenv('HOME', str(home))
    assert lookup().run(['tsig_secret'], variables={}, file=str(path)) == [TSIG]
