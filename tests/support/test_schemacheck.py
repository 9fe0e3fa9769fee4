"""Tests of the offline schema checks (tests/support/schemacheck.py, verify_build.py).

Each check is shown to pass on a correct input and to fail, naming the field, on a wrong one.
They need the upstream schema store ($CELLPLATFORM_SCHEMAS or ../shared/schemas); a missing
store fails these tests (it is never a skip).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import schemacheck  # noqa: E402  pylint: disable=wrong-import-position
import verify_build  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope='module')
def store():
    return schemacheck.SchemaStore()


HOSTNAME = {'apiVersion': 'v1alpha1', 'kind': 'HostnameConfig', 'auto': 'off', 'hostname': 'cp-1'}
VIP = {'apiVersion': 'v1alpha1', 'kind': 'Layer2VIPConfig', 'name': '192.168.100.50', 'link': 'net0'}
COMMON = {'machine': {'kubelet': {'nodeIP': {'validSubnets': ['192.168.100.0/24']}}},
          'cluster': {'network': {'cni': {'name': 'none'}, 'podSubnets': ['10.244.0.0/16']},
                      'proxy': {'disabled': True}}}


def test_missing_store_is_an_error_not_a_skip(tmp_path, monkeypatch):
    monkeypatch.setenv('CELLPLATFORM_SCHEMAS', str(tmp_path / 'nope'))
    with pytest.raises(schemacheck.SchemaStoreMissing, match='CELLPLATFORM_SCHEMAS'):
        schemacheck.SchemaStore()


def test_talos_documents_pass(store):
    assert store.talos_version == 'v1.13.9'
    for doc in (HOSTNAME, VIP, COMMON):
        assert store.talos_document(doc) == []


def test_talos_unquoted_off_is_caught(store):
    # what PyYAML (YAML 1.1) makes of a bare `auto: off`
    doc = yaml.safe_load('apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: cp-1\n')
    errors = store.talos_document(doc)
    assert errors and errors[0].startswith('auto:')


def test_talos_legacy_machine_network_is_rejected(store):
    errors = store.talos_document({'machine': {'network': {'hostname': 'cp-1'}}})
    assert any('network' in e for e in errors)


def test_talos_unknown_kind_and_missing_name(store):
    assert 'unknown Talos document kind' in store.talos_document({'apiVersion': 'v1alpha1', 'kind': 'NoSuch'})[0]
    errors = store.talos_document({'apiVersion': 'v1alpha1', 'kind': 'Layer2VIPConfig', 'link': 'net0'})
    assert any("'name' is a required property" in e for e in errors)


def test_crd_with_re2_only_pattern(store):
    # CiliumNetworkPolicy uses `^\\PC*$`, which Python's re cannot compile (schema README)
    cnp = {'apiVersion': 'cilium.io/v2', 'kind': 'CiliumNetworkPolicy', 'metadata': {'name': 'x', 'namespace': 'y'},
           'spec': {'endpointSelector': {'matchLabels': {'app': 'a'}},
                    'ingress': [{'fromEndpoints': [{'matchLabels': {'app': 'b'}}],
                                 'toPorts': [{'ports': [{'port': '80', 'protocol': 'TCP'}],
                                              'rules': {'http': [{'method': 'GET', 'path': '/'}]}}]}]}}
    assert store.manifest(cnp) == []
    cnp['spec']['log'] = {'value': 'printable text'}      # pattern ^\\PC*$ (no control characters)
    assert store.manifest(cnp) == []
    cnp['spec']['log'] = {'value': 'bell\x07'}
    assert any(e.startswith('spec.log.value:') and 'does not match' in e for e in store.manifest(cnp))


def test_crd_closed_objects_and_types(store):
    app = {'apiVersion': 'argoproj.io/v1alpha1', 'kind': 'Application', 'metadata': {'name': 'a'},
           'spec': {'project': 'p', 'destination': {'server': 'https://kubernetes.default.svc'},
                    'source': {'repoURL': 'https://x', 'chart': 'c', 'targetRevision': '1'}}}
    assert store.manifest(app) == []
    app['spec']['typo'] = 1
    assert any("'typo' was unexpected" in e for e in store.manifest(app))


def test_core_kinds_via_kubernetes_validate(store):
    cm = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'x'}, 'data': {'a': 'b'}}
    assert store.manifest(cm) == []
    cm['data']['a'] = 1
    assert any(e.startswith('data.a:') for e in store.manifest(cm))
    ns = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'x'}, 'spce': {}}
    assert any('spce' in e for e in store.manifest(ns))  # strict: unknown fields fail


def test_unknown_kind_fails(store):
    errors = store.manifest({'apiVersion': 'example.com/v1', 'kind': 'Thing', 'metadata': {'name': 'x'}})
    assert errors and 'no schema for example.com/v1 Thing' in errors[0]


def test_values_schema_and_unknown_top_level_keys(store):
    ok, notes = store.values({'ipam': {'mode': 'kubernetes'}, 'k8sServicePort': 7445}, 'cilium', '1.20.0')
    assert ok == [] and notes == []
    errors, _ = store.values({'k8sServicePort': [1], 'lbIPAM': {'requireLBClass': True}}, 'cilium', '1.20.0')
    assert any(e.startswith('k8sServicePort:') for e in errors)
    assert any(e.startswith('lbIPAM: not a value of chart cilium') for e in errors)


def test_values_unstored_version_fails_unstored_chart_is_noted(store):
    errors, _ = store.values({}, 'cilium', '1.19.1')
    assert errors and 'not in the schema store' in errors[0]
    errors, notes = store.values({}, 'gitea', '12.7.0')
    assert errors == [] and 'not in the schema store' in notes[0]


def _tree(tmp_path):
    build = tmp_path / 'cell'
    (build / 'talos' / 'patches').mkdir(parents=True)
    (build / 'talos' / 'nodes').mkdir()
    (build / 'l0' / 'cilium').mkdir(parents=True)
    (build / 'terraform').mkdir()
    (build / 'talos' / 'patches' / 'common.yaml').write_text(yaml.safe_dump_all([COMMON]))
    (build / 'talos' / 'nodes' / 'cp-1.yaml').write_text(yaml.safe_dump_all([HOSTNAME, VIP]))
    (build / 'l0' / 'cilium' / 'values.yaml').write_text('ipam:\n  mode: kubernetes\n')
    (build / 'terraform' / 'cell.auto.tfvars.json').write_text('{"cell_name": "cell"}\n')
    plan = {'format': 1, 'components': [{'name': 'cilium', 'layer': 'l0', 'chart': 'cilium', 'version': '1.20.0',
                                         'values_file': 'l0/cilium/values.yaml'}]}
    (build / 'plan.json').write_text(json.dumps(plan))
    return build


def test_verify_build_cli_passes_and_fails(tmp_path, capsys):
    build = _tree(tmp_path)
    assert verify_build.main([str(build), '--layer', 'l0']) == 0
    (build / 'talos' / 'nodes' / 'cp-1.yaml').write_text('apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\n')
    (build / 'l0' / 'cilium' / 'values.yaml').write_text('bogus: 1\n')
    (build / 'l0' / 'cilium' / 'key.pem').write_text('-----BEGIN EC PRIVATE KEY-----\n')
    (build / 'terraform' / 'cell.auto.tfvars.json').write_text('[1]')
    capsys.readouterr()
    assert verify_build.main([str(build), '--layer', 'l0']) == 1
    out = capsys.readouterr().out
    assert 'FAIL talos/nodes/cp-1.yaml [doc 0 HostnameConfig]: auto:' in out
    assert 'FAIL l0/cilium/values.yaml [cilium 1.20.0]: bogus: not a value' in out
    assert 'FAIL l0/cilium/key.pem: private key material' in out
    assert 'FAIL terraform/cell.auto.tfvars.json: top level must be a JSON object' in out
    assert '4 failure(s)' in out


def test_verify_build_missing_plan_or_files(tmp_path, capsys):
    assert verify_build.main([str(tmp_path)]) == 2
    build = _tree(tmp_path)
    (build / 'l0' / 'cilium' / 'values.yaml').unlink()
    capsys.readouterr()
    assert verify_build.main([str(build), '--layer', 'l0']) == 1
    assert 'missing' in capsys.readouterr().out


def test_values_are_checked_coalesced_with_chart_defaults_like_helm(store):
    # metallb's schema requires controller and speaker at the root; the chart's defaults have them
    assert store.values({'speaker': {'frr': {'enabled': False}}}, 'metallb', '0.16.1') == ([], [])
    # null removes a default (Helm semantics), and then the requirement bites
    errors, _ = store.values({'controller': None}, 'metallb', '0.16.1')
    assert any("'controller' is a required property" in e for e in errors)


def test_coalesce():
    assert schemacheck.coalesce({'a': {'b': 1, 'c': 2}, 'd': 3}, {'a': {'b': 9}, 'd': None, 'e': 4}) == \
        {'a': {'b': 9, 'c': 2}, 'e': 4}


def test_unstored_version_of_a_chart_without_any_schema_is_a_note(store):
    errors, notes = store.values({'x': 1}, 'linkerd-crds', '2026.8.3')
    assert errors == [] and 'no stored version ships a values.schema.json' in notes[0]
