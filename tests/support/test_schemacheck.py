"""Tests of the offline schema checks (tests/support/schemacheck.py, verify_build.py).

Each check is shown to pass on a correct input and to fail, naming the field, on a wrong one.
The checks need the upstream schema store (the ``schema_root`` fixture of conftest.py:
$CELLPLATFORM_SCHEMAS, else .cache/schemas) and are skipped, and counted, without one. How the
store is found, the skip ledger and verify_build.py without a store are tested here without it.
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


_STORES = {}


@pytest.fixture
def store(schema_root):
    """One SchemaStore per store directory (it caches compiled validators)."""
    if schema_root not in _STORES:
        _STORES[schema_root] = schemacheck.SchemaStore(schema_root)
    return _STORES[schema_root]


HOSTNAME = {'apiVersion': 'v1alpha1', 'kind': 'HostnameConfig', 'auto': 'off', 'hostname': 'cp-1'}
VIP = {'apiVersion': 'v1alpha1', 'kind': 'Layer2VIPConfig', 'name': '192.168.100.50', 'link': 'net0'}
COMMON = {'machine': {'kubelet': {'nodeIP': {'validSubnets': ['192.168.100.0/24']}}},
          'cluster': {'network': {'cni': {'name': 'none'}, 'podSubnets': ['10.244.0.0/16']},
                      'proxy': {'disabled': True}}}


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    """Neither CELLPLATFORM_SCHEMAS nor a cache; a private skip ledger. Returns the ledger path."""
    monkeypatch.delenv('CELLPLATFORM_SCHEMAS', raising=False)
    monkeypatch.setattr(schemacheck, 'CACHE_DIR', tmp_path / 'cache' / 'schemas')
    ledger = tmp_path / 'skips.tsv'
    monkeypatch.setenv('CELLPLATFORM_SCHEMA_SKIPS', str(ledger))
    return ledger


def _fake_store(path, stamp=None):
    path.mkdir(parents=True)
    (path / 'INDEX.json').write_text('{}')
    if stamp is not None:
        (path / '.lock-sha256').write_text(stamp + '\n')
    return path


def _lock_digest():
    import hashlib
    return hashlib.sha256(schemacheck.LOCK_FILE.read_bytes()).hexdigest()


def test_configured_store_that_does_not_exist_is_an_error_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv('CELLPLATFORM_SCHEMAS', str(tmp_path / 'nope'))
    with pytest.raises(schemacheck.SchemaStoreError, match=r'CELLPLATFORM_SCHEMAS=.*nope is not a schema store '
                       r'\(no such directory\)\. Fix: point CELLPLATFORM_SCHEMAS at a directory with INDEX.json'):
        schemacheck.SchemaStore()
    (tmp_path / 'empty').mkdir()
    monkeypatch.setenv('CELLPLATFORM_SCHEMAS', str(tmp_path / 'empty'))
    with pytest.raises(schemacheck.SchemaStoreError, match='it has no INDEX.json'):
        schemacheck.locate_schemas()


def test_resolution_order_configured_then_cache_then_none(tmp_path, monkeypatch, no_cache):
    assert schemacheck.locate_schemas() == (None, 'no schema store (CELLPLATFORM_SCHEMAS is not set and '
                                                  '%s does not exist)' % schemacheck.CACHE_DIR)
    with pytest.raises(schemacheck.SchemaStoreUnavailable, match='make schemas'):
        schemacheck.SchemaStore()
    cache = _fake_store(schemacheck.CACHE_DIR, stamp=_lock_digest())
    assert schemacheck.locate_schemas() == (cache, 'cache')
    configured = _fake_store(tmp_path / 'configured')
    monkeypatch.setenv('CELLPLATFORM_SCHEMAS', str(configured))
    assert schemacheck.locate_schemas() == (configured.resolve(), 'CELLPLATFORM_SCHEMAS')
    assert schemacheck.locate_schemas(str(cache)) == (cache.resolve(), '--schemas')


def test_cache_built_from_another_lock_is_an_error(no_cache):
    _fake_store(schemacheck.CACHE_DIR, stamp='0' * 64)
    with pytest.raises(schemacheck.SchemaStoreError, match=r'not built from the current tests/support/'
                       r'schemas.lock.json \(stale or incomplete\). Fix: run `make schemas` again'):
        schemacheck.locate_schemas()
    (schemacheck.CACHE_DIR / '.lock-sha256').unlink()         # e.g. an interrupted copy
    with pytest.raises(schemacheck.SchemaStoreError, match='stale or incomplete'):
        schemacheck.locate_schemas()


def test_skip_ledger_and_its_one_line_summary(no_cache):
    assert schemacheck.skip_summary(no_cache) == ''
    schemacheck.record_skip(12, 'rendered documents', 'verify_build build/cell layer l0')
    schemacheck.record_skip(0, 'tests', 'nothing skipped is not recorded')
    schemacheck.record_skip(1, 'tests', 'tests/x.py::test_a')
    schemacheck.record_skip(5, 'rendered documents', 'verify_build build/cell layer l1')
    assert len(no_cache.read_text().splitlines()) == 3
    line = schemacheck.skip_summary(no_cache)
    assert '\n' not in line
    assert line.startswith('schema checks SKIPPED (no schema store): 17 rendered documents were not schema-checked '
                           'and 1 schema tests were skipped; for the full check run `make schemas`')
    assert 'CELLPLATFORM_SCHEMAS=<a schema store with INDEX.json>' in line


def test_where_command(no_cache, capsys, monkeypatch, tmp_path):
    assert schemacheck.main(['where']) == 0
    assert capsys.readouterr().out.startswith('schemas: none, no schema store (')
    monkeypatch.setenv('CELLPLATFORM_SCHEMAS', str(tmp_path / 'nope'))
    assert schemacheck.main(['where']) == 2
    assert 'Fix: point CELLPLATFORM_SCHEMAS' in capsys.readouterr().err


def test_talos_documents_pass(store):
    assert store.talos_version == 'v1.13.9'
    for doc in (HOSTNAME, VIP, COMMON):
        assert store.talos_document(doc) == []


def test_talos_unquoted_off_is_caught(store):
    # what PyYAML (YAML 1.1) makes of a bare `auto: off`
    doc = yaml.safe_load('apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: cp-1\n')
    errors = store.talos_document(doc)
    assert errors and errors[0].startswith('auto:')


def test_talos_log_destination_endpoint_is_a_url_string(store):
    """The stored schema types machine.logging.destinations[].endpoint as an empty closed object,
    which no real config can satisfy; Talos reads it as a URL string. The checker's correction
    (TALOS_SCHEMA_CORRECTIONS) accepts exactly that and still refuses what Talos would refuse."""
    stored = json.loads((store.root / 'talos' / 'v1.13.9' / 'config.schema.json').read_text())['$defs']
    assert stored['v1alpha1.Endpoint'] == dict(stored['v1alpha1.Endpoint'], type='object', properties={},
                                               additionalProperties=False)

    def doc(endpoint):
        return {'machine': {'logging': {'destinations': [{'endpoint': endpoint, 'format': 'json_lines',
                                                          'extraTags': {'node': 'cp-1'}}]}}}
    assert store.talos_document(doc('tcp://192.168.100.201:5170/')) == []
    assert store.talos_document(doc('udp://10.0.0.1:514')) == []
    for bad in ({}, 'http://10.0.0.1:80/', 'tcp://10.0.0.1/'):
        assert any('machine.logging.destinations.0.endpoint' in e for e in store.talos_document(doc(bad))), bad
    bad_format = doc('tcp://10.0.0.1:5170/')
    bad_format['machine']['logging']['destinations'][0]['format'] = 'json'
    assert store.talos_document(bad_format)


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


def test_verify_build_cli_passes_and_fails(tmp_path, capsys, schema_root):
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


def test_verify_build_missing_plan_or_files(tmp_path, capsys, schema_root):
    assert verify_build.main([str(tmp_path)]) == 2
    build = _tree(tmp_path)
    (build / 'l0' / 'cilium' / 'values.yaml').unlink()
    capsys.readouterr()
    assert verify_build.main([str(build), '--layer', 'l0']) == 1
    assert 'missing' in capsys.readouterr().out


def test_verify_build_without_a_store_skips_and_counts_but_runs_the_other_checks(tmp_path, capsys, no_cache):
    build = _tree(tmp_path)
    assert verify_build.main([str(build), '--layer', 'l0']) == 0
    out = capsys.readouterr().out
    assert ('verify_build: %s layer l0: schema checks SKIPPED, 4 documents not schema-checked (3 talos documents, '
            '1 values files): no schema store' % build) in out
    assert 'make schemas' in out
    assert no_cache.read_text() == '4\trendered documents\tverify_build %s layer l0\n' % build
    # what needs no schema still fails: key material, a non-object tfvars, a missing file, bad YAML
    (build / 'l0' / 'cilium' / 'key.pem').write_text('-----BEGIN EC PRIVATE KEY-----\n')
    (build / 'terraform' / 'cell.auto.tfvars.json').write_text('[1]')
    (build / 'talos' / 'nodes' / 'cp-1.yaml').write_text('a: [\n')
    (build / 'l0' / 'cilium' / 'values.yaml').unlink()
    assert verify_build.main([str(build), '--layer', 'l0']) == 1
    out = capsys.readouterr().out
    assert 'FAIL l0/cilium/key.pem: private key material' in out
    assert 'FAIL terraform/cell.auto.tfvars.json: top level must be a JSON object' in out
    assert 'FAIL talos/nodes/cp-1.yaml: not valid YAML' in out
    assert 'FAIL l0/cilium/values.yaml: named as values_file of component cilium in plan.json but missing' in out
    assert 'other checks: 4 failure(s)' in out


def test_verify_build_with_a_configured_store_that_is_missing_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('CELLPLATFORM_SCHEMAS', str(tmp_path / 'nope'))
    assert verify_build.main([str(_tree(tmp_path)), '--layer', 'l0']) == 2
    assert 'Fix: point CELLPLATFORM_SCHEMAS at a directory with INDEX.json' in capsys.readouterr().err


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


def _sops_secret(values, regex='^(data|stringData)$'):
    meta = {'age': [{'recipient': 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p', 'enc': 'x'}],
            'mac': 'ENC[AES256_GCM,data:m]', 'version': '3.11.0'}
    if regex:
        meta['encrypted_regex'] = regex
    return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
            'metadata': {'name': 'tsig', 'namespace': 'external-dns'}, 'stringData': values, 'sops': meta}


def test_verify_build_checks_sops_files_and_the_ksops_directory(tmp_path, capsys, schema_root):
    build = _tree(tmp_path)
    secrets = build / 'l0' / 'cilium' / 'secrets'
    secrets.mkdir()
    (secrets / 'tsig.sops.yaml').write_text(yaml.safe_dump(_sops_secret({'tsig-secret': 'ENC[AES256_GCM,data:x]'})))
    (secrets / 'ksops.yaml').write_text(yaml.safe_dump({
        'apiVersion': 'viaduct.ai/v1', 'kind': 'ksops',
        'metadata': {'name': 'cilium-secrets', 'annotations': {'config.kubernetes.io/function': 'exec:\n  path: ksops\n'}},
        'files': ['./tsig.sops.yaml']}))
    (secrets / 'kustomization.yaml').write_text(yaml.safe_dump({
        'apiVersion': 'kustomize.config.k8s.io/v1beta1', 'kind': 'Kustomization', 'generators': ['./ksops.yaml']}))
    machineconfigs = build / 'talos' / 'machineconfigs'
    machineconfigs.mkdir()
    doc = {'machine': {'token': 'ENC[AES256_GCM,data:t]', 'ca': {'key': ''}}}
    doc['sops'] = dict(_sops_secret({}, regex=None)['sops'])
    (machineconfigs / 'cp-1.sops.yaml').write_text(yaml.safe_dump(doc))
    assert verify_build.main([str(build), '--layer', 'l0']) == 0
    # a plaintext value, a generator file that is missing or not a SOPS file, a fully encrypted file with a leak
    (secrets / 'tsig.sops.yaml').write_text(yaml.safe_dump(_sops_secret({'tsig-secret': 'PLAINTEXT'})))
    (secrets / 'ksops.yaml').write_text((secrets / 'ksops.yaml').read_text().replace('./tsig.sops.yaml',
                                                                                     './missing.sops.yaml'))
    doc['machine']['token'] = 'abc.def'
    (machineconfigs / 'cp-1.sops.yaml').write_text(yaml.safe_dump(doc))
    (build / 'talos' / 'machineconfigs' / 'cp-2.yaml.age').write_bytes(b'age-encryption.org/v1\n')
    capsys.readouterr()
    assert verify_build.main([str(build), '--layer', 'l0']) == 1
    out = capsys.readouterr().out
    assert 'l0/cilium/secrets/tsig.sops.yaml [doc 0 Secret/tsig]: plaintext values in a SOPS file: stringData.tsig-secret' in out
    assert 'l0/cilium/secrets/ksops.yaml: SOPS file ./missing.sops.yaml does not exist' in out
    assert 'talos/machineconfigs/cp-1.sops.yaml [doc 0 v1alpha1]: plaintext values in a SOPS file: machine.token' in out
    assert 'talos/machineconfigs/cp-2.yaml.age: a legacy age file' in out
