# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters secret_values, age_keys_for and component_secrets: values by key, errors that never show a value."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.filter import component, secrets
from ansible_collections.cellplatform.platform.tests.unit.plugins.modules.module_harness import AgeKeys

BUNDLE = {"trustdinfo": {"token": "TOKEN-1"}, "cluster": {"id": "ID-2", "secret": "SECRET-3"}}
SOURCE = "/inv/secrets/talos-secrets.sops.yaml"


def test_secret_values_follow_dotted_keys_in_order():
    assert secrets.secret_values(BUNDLE, ["cluster.secret", "trustdinfo.token"], SOURCE) == ["SECRET-3", "TOKEN-1"]
    assert secrets.secret_values(BUNDLE, "cluster.id", SOURCE) == ["ID-2"]


def test_secret_values_errors_name_key_file_and_keys_there():
    with pytest.raises(AnsibleFilterError) as err:
        secrets.secret_values(BUNDLE, ["cluster.nope"], SOURCE)
    text = str(err.value)
    assert "cluster.nope is not in %s (top-level keys there: cluster, trustdinfo)" % SOURCE in text
    assert "SECRET-3" not in text and "TOKEN-1" not in text
    with pytest.raises(AnsibleFilterError, match="must hold a YAML mapping"):
        secrets.secret_values(["a"], ["a"], SOURCE)


def test_age_keys_for(tmp_path):
    keys = AgeKeys(tmp_path)
    text = secrets.age_keys_for(str(keys.identity), keys.recipients)
    assert text.count("AGE-SECRET-KEY-1") == 1 and keys.recipients[0] in text
    with pytest.raises(AnsibleFilterError) as err:
        secrets.age_keys_for(str(keys.identity), keys.other_recipients)
    assert "no key in the age identity file" in str(err.value) and "AGE-SECRET-KEY" not in str(err.value)
    with pytest.raises(AnsibleFilterError, match="does not exist"):
        secrets.age_keys_for(str(tmp_path / "none.txt"), keys.recipients)


def test_component_secrets_of_a_run_record():
    (rec,) = component.component_run([{"name": "echo", "namespace": "echo", "manifests": [{"kind": "ConfigMap"}],
                                       "secrets": [{"name": "t", "keys": {"token": "trustdinfo.token"}}]}], "l3")
    docs = component.component_secrets(rec, BUNDLE, SOURCE)
    assert docs[0]["stringData"] == {"token": "TOKEN-1"} and docs[0]["metadata"]["namespace"] == "echo"
    with pytest.raises(AnsibleFilterError) as err:
        component.component_secrets(dict(rec, secrets=[dict(rec["secrets"][0], keys={"x": "missing"})]), BUNDLE,
                                    SOURCE)
    assert "component_secrets: component echo, Secret t: missing is not in" in str(err.value)
