"""Tests of scripts/fetch-schemas.py (`make schemas`) and of its lock, tests/support/schemas.lock.json.

Nothing here uses the network: the script reads a ``file://`` mirror laid out like
raw.githubusercontent.com (``<repository>/<commit>/<path>``), and the one https test points at a
closed port on 127.0.0.1.

* Without any schema store: the lock is complete and names only pinned raw.githubusercontent.com
  URLs, no upstream file is in the repository, the CRD transformation is right on a small CRD
  written here, and a failed download or a checksum mismatch leaves the destination untouched.
* With a schema store (``schema_root``; skipped without one): every lock entry's sha256 matches
  the stored file, and the script, fed the stored upstream files through a mirror, reproduces
  every generated CRD schema byte for byte and INDEX.json's entries (JSON-equal).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'scripts' / 'fetch-schemas.py'
LOCK = REPO / 'tests' / 'support' / 'schemas.lock.json'


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), '-q'] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)


def _listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob('*'))


def make_mirror(entries, content, mirror):
    """Lay out *content* ({store: bytes}) as the download would deliver it; returns the entries
    with each archive's archive_sha256 set to the archive built here (its members keep the
    upstream sha256s: the upstream archive itself is not in any store)."""
    archives = {}
    for entry in entries:
        target = mirror / entry['repository'] / entry['commit'] / entry['path']
        target.parent.mkdir(parents=True, exist_ok=True)
        if 'member' in entry:
            archives.setdefault(target, []).append(entry)
        else:
            target.write_bytes(content[entry['store']])
    entries = [dict(e) for e in entries]
    for target, members in archives.items():
        with tarfile.open(target, 'w:gz') as archive:
            for entry in members:
                data = content[entry['store']]
                info = tarfile.TarInfo(entry['member'])
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        digest = _sha(target.read_bytes())
        for entry in entries:
            if entry.get('member') and mirror / entry['repository'] / entry['commit'] / entry['path'] == target:
                entry['archive_sha256'] = digest
    return entries


def write_lock(path, entries):
    path.write_text(json.dumps({'format': 1, 'url': 'https://raw.githubusercontent.com/{repository}/{commit}/{path}',
                                'files': entries}))
    return path


# --- a small store written here (no upstream content) ---------------------------------------
WIDGET_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.test
spec:
  group: example.test
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            anyOf:
            - properties:
                port: {type: integer}
            properties:
              port: {x-kubernetes-int-or-string: true}
              deadline: {type: integer, minimum: 0, exclusiveMinimum: true, nullable: true}
              mode: {type: string, enum: [a, b], nullable: true}
              op: {type: string, enum: [=, "!="]}
              free:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                properties: {x: {type: string}}
              items:
                type: array
                items:
                  type: object
                  properties: {name: {type: string}}
              template:
                type: object
                x-kubernetes-embedded-resource: true
                properties:
                  apiVersion: {type: string}
                  metadata:
                    type: object
                    properties: {name: {type: string}}
  - name: v0
    served: false
    storage: false
    schema:
      openAPIV3Schema: {type: object}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.test
spec:
  group: example.test
  names: {kind: Gadget, plural: gadgets}
  scope: Cluster
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties: {size: {type: integer}}
"""

TALOS_SCHEMA = {
    '$schema': 'https://json-schema.org/draft/2020-12/schema',
    '$defs': {
        'network.ThingConfigV1Alpha1': {'properties': {'apiVersion': {'enum': ['v1alpha1']},
                                                       'kind': {'enum': ['ThingConfig']}}},
        'v1alpha1.Config': {'properties': {'version': {'enum': ['v1alpha1']}}},
    },
    'oneOf': [{'$ref': '#/$defs/network.ThingConfigV1Alpha1'}, {'$ref': '#/$defs/v1alpha1.Config'}],
}

COMMIT = 'c0ffee' * 6 + 'c0ff'


def small_store():
    content = {
        'example/v1/crds/example.test_widgets.yaml': WIDGET_CRD.encode(),
        'talos/v9.9.9/config.schema.json': json.dumps(TALOS_SCHEMA).encode(),
        'helm/demo/1.0.0/Chart.yaml': b'apiVersion: v2\nname: demo\nversion: 1.0.0\n',
        'helm/demo/1.0.0/values.yaml': b'replicas: 1\n',
        'helm/packed/2.0.0/values.yaml': b'a: 1\n',
    }
    entries = [
        {'store': 'example/v1/crds/example.test_widgets.yaml', 'kind': 'crds', 'repository': 'example/widgets',
         'path': 'config/crds.yaml', 'version': 'v1.0.0'},
        {'store': 'talos/v9.9.9/config.schema.json', 'kind': 'talos-schema', 'repository': 'example/talos',
         'path': 'schemas/config.schema.json', 'version': 'v9.9.9'},
        {'store': 'helm/demo/1.0.0/Chart.yaml', 'kind': 'chart', 'repository': 'example/charts',
         'path': 'charts/demo/Chart.yaml', 'version': 'chart 1.0.0'},
        {'store': 'helm/demo/1.0.0/values.yaml', 'kind': 'chart', 'repository': 'example/charts',
         'path': 'charts/demo/values.yaml', 'version': 'chart 1.0.0'},
        {'store': 'helm/packed/2.0.0/values.yaml', 'kind': 'chart', 'repository': 'example/charts',
         'path': 'packed-2.0.0.tgz', 'member': 'packed/values.yaml', 'archive_sha256': '', 'version': 'chart 2.0.0'},
    ]
    for entry in entries:
        entry.update(commit=COMMIT, sha256=_sha(content[entry['store']]), license='Apache-2.0')
    return entries, content


@pytest.fixture
def small(tmp_path):
    entries, content = small_store()
    entries = make_mirror(entries, content, tmp_path / 'mirror')
    return entries, content, write_lock(tmp_path / 'lock.json', entries), (tmp_path / 'mirror').as_uri()


def test_generates_the_store_from_a_mirror(small, tmp_path):
    entries, content, lock, base = small
    dest = tmp_path / 'cache' / 'schemas'
    proc = _run('--lock', lock, '--base-url', base, '--dest', dest)
    assert proc.returncode == 0, proc.stderr
    assert ('5 upstream files verified (sha256), 2 CRD schemas generated (closed 5, left open under junctors 1, '
            'metadata left open 1, nullable 2, int or string 1, exclusive bounds 1)') in proc.stdout
    for entry in entries:
        assert (dest / entry['store']).read_bytes() == content[entry['store']]
    assert (dest / '.lock-sha256').read_text() == _sha(lock.read_bytes()) + '\n'
    assert _listing(dest / 'crds') == ['example.test', 'example.test/gadget_v1beta1.json', 'example.test/widget_v1.json']
    assert not list(tmp_path.glob('cache/.schemas.*')), 'a staging directory was left behind'

    widget = json.loads((dest / 'crds/example.test/widget_v1.json').read_text())
    assert list(widget)[:2] == ['$schema', '$comment']
    assert widget['$schema'] == 'http://json-schema.org/draft-07/schema#'
    assert widget['$comment'] == ('Generated from CRD widgets.example.test version v1 (example/widgets v1.0.0 commit '
                                  '%s, file config/crds.yaml). openAPIV3Schema rendered as JSON Schema draft-07; '
                                  'see README.md for the exact transformations.' % COMMIT)
    assert widget['additionalProperties'] is False                     # root with apiVersion/kind/metadata
    assert widget['properties']['metadata'] == {'type': 'object'}       # ObjectMeta stays open
    spec = widget['properties']['spec']
    assert spec['additionalProperties'] is False
    assert spec['anyOf'] == [{'properties': {'port': {'type': 'integer'}}}]   # junctor subschema stays open
    props = spec['properties']
    assert props['port'] == {'x-kubernetes-int-or-string': True, 'anyOf': [{'type': 'integer'}, {'type': 'string'}]}
    assert props['deadline'] == {'type': ['integer', 'null'], 'exclusiveMinimum': 0, 'nullable': True}
    assert props['mode'] == {'anyOf': [{'type': 'null'}, {'type': 'string', 'enum': ['a', 'b'], 'nullable': True}]}
    assert props['op']['enum'] == ['=', '!=']                             # the YAML 1.1 "=" scalar, as Go reads it
    assert 'additionalProperties' not in props['free']                    # preserve-unknown-fields
    assert props['items']['items']['additionalProperties'] is False
    template = props['template']
    assert template['additionalProperties'] is False
    assert 'additionalProperties' not in template['properties']['metadata']   # embedded resource metadata
    gadget = json.loads((dest / 'crds/example.test/gadget_v1beta1.json').read_text())
    assert 'additionalProperties' not in gadget                           # root without apiVersion/kind/metadata
    assert gadget['properties']['spec']['additionalProperties'] is False
    assert not (dest / 'crds/example.test/widget_v0.json').exists()     # served: false

    index = json.loads((dest / 'INDEX.json').read_text())
    assert index['kubernetes_crds'] == {'example.test/v1': {'Widget': 'crds/example.test/widget_v1.json'},
                                        'example.test/v1beta1': {'Gadget': 'crds/example.test/gadget_v1beta1.json'}}
    assert index['talos'] == {
        'version': 'v9.9.9', 'schema': 'talos/v9.9.9/config.schema.json', 'draft': '2020-12',
        'documents': {'v1alpha1': {
            '(legacy machine config: version: v1alpha1, no kind)': 'talos/v9.9.9/config.schema.json#/$defs/v1alpha1.Config',
            'ThingConfig': 'talos/v9.9.9/config.schema.json#/$defs/network.ThingConfigV1Alpha1'}}}
    assert index['helm_charts'] == {
        'demo': {'1.0.0': {'Chart.yaml': 'helm/demo/1.0.0/Chart.yaml', 'values.yaml': 'helm/demo/1.0.0/values.yaml'}},
        'packed': {'2.0.0': {'values.yaml': 'helm/packed/2.0.0/values.yaml'}}}
    readme = (dest / 'README.md').read_text()
    assert 'How the CRD schemas are generated' in readme and 'packed-2.0.0.tgz!packed/values.yaml' in readme


def test_a_rebuild_replaces_the_store_atomically(small, tmp_path):
    _entries, _content, lock, base = small
    dest = tmp_path / 'schemas'
    dest.mkdir()
    (dest / 'stale-file').write_text('x')
    assert _run('--lock', lock, '--base-url', base, '--dest', dest).returncode == 0
    assert not (dest / 'stale-file').exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lock.json', 'mirror', 'schemas']


def test_checksum_mismatch_is_refused_and_nothing_is_written(small, tmp_path):
    entries, _content, lock, base = small
    dest = tmp_path / 'schemas'
    dest.mkdir()
    (dest / 'keep').write_text('previous store')
    changed = tmp_path / 'mirror' / 'example/charts' / COMMIT / 'charts/demo/values.yaml'
    changed.write_text('replicas: 2\n')
    packed = tmp_path / 'mirror' / 'example/charts' / COMMIT / 'packed-2.0.0.tgz'
    packed.write_bytes(packed.read_bytes() + b'\0')
    proc = _run('--lock', lock, '--base-url', base, '--dest', dest)
    assert proc.returncode == 1
    assert '2 file(s) do not match tests/support/schemas.lock.json' in proc.stderr
    assert '%s/example/charts/%s/charts/demo/values.yaml: sha256 %s, the lock pins %s' % (
        base, COMMIT, _sha(b'replicas: 2\n'), entries[3]['sha256']) in proc.stderr
    assert 'packed-2.0.0.tgz: sha256 %s, the lock pins' % _sha(packed.read_bytes()) in proc.stderr
    assert 'nothing was written; %s is unchanged' % dest in proc.stderr
    assert _listing(dest) == ['keep']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lock.json', 'mirror', 'schemas']


def test_no_network_fails_clearly_and_leaves_no_cache(small, tmp_path):
    _entries, _content, lock, _base = small
    dest = tmp_path / 'cache' / 'schemas'
    # 127.0.0.1 port 9 (discard): refused at once, and never leaves this machine
    proc = _run('--lock', lock, '--base-url', 'https://127.0.0.1:9', '--dest', dest, '--timeout', 5)
    assert proc.returncode == 1
    assert 'cannot download https://127.0.0.1:9/example/widgets/%s/config/crds.yaml' % COMMIT in proc.stderr
    assert '`make schemas` needs HTTPS access to 127.0.0.1:9' in proc.stderr
    assert 'point CELLPLATFORM_SCHEMAS at a copy of the schema store' in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lock.json', 'mirror']     # no cache, no staging
    proc = _run('--lock', lock, '--base-url', 'http://example.test', '--dest', dest)
    assert proc.returncode == 1 and 'only https:// and file:// are supported' in proc.stderr


def test_an_incomplete_lock_is_refused_with_every_problem(tmp_path):
    entries, _content = small_store()
    entries[0].pop('sha256')
    entries[1]['store'] = '../outside.json'
    entries[2]['kind'] = 'other'
    entries[3]['commit'] = 'main'
    entries[4].pop('archive_sha256')
    proc = _run('--lock', write_lock(tmp_path / 'lock.json', entries), '--base-url', tmp_path.as_uri(),
                '--dest', tmp_path / 'out')
    assert proc.returncode == 1
    for problem in ('files[0] (example/v1/crds/example.test_widgets.yaml): sha256 is missing',
                    'files[1] (../outside.json): store must be a relative path outside crds/',
                    "files[2] (helm/demo/1.0.0/Chart.yaml): kind 'other' is not one of crds, talos-schema, chart",
                    'files[3] (helm/demo/1.0.0/values.yaml): commit must be a full 40-character commit id',
                    'files[4] (helm/packed/2.0.0/values.yaml): an archive member needs both member and archive_sha256'):
        assert problem in proc.stderr
    assert not (tmp_path / 'out').exists()


# --- the real lock ----------------------------------------------------------------------------
def _lock_entries():
    return json.loads(LOCK.read_text())['files']


def test_the_lock_pins_every_file_to_a_commit_and_a_checksum():
    lock = json.loads(LOCK.read_text())
    assert lock['url'] == 'https://raw.githubusercontent.com/{repository}/{commit}/{path}'
    entries = lock['files']
    assert len(entries) == len({e['store'] for e in entries}) == 169
    kinds = {}
    for entry in entries:
        assert len(entry['commit']) == 40 and int(entry['commit'], 16) >= 0, entry
        assert len(entry['sha256']) == 64 and int(entry['sha256'], 16) >= 0, entry
        assert entry['repository'].count('/') == 1 and entry['path'] and entry['license'], entry
        kinds[entry['kind']] = kinds.get(entry['kind'], 0) + 1
    assert kinds == {'crds': 121, 'chart': 47, 'talos-schema': 1}


def test_nothing_from_upstream_is_in_the_repository():
    pinned = {e['sha256'] for e in _lock_entries()}
    tracked = subprocess.run(['git', '-C', str(REPO), 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                             stdout=subprocess.PIPE, check=True).stdout.decode().split('\0')
    copied = [name for name in tracked if name and (REPO / name).is_file()
              and _sha((REPO / name).read_bytes()) in pinned]
    assert len(tracked) > 100 and copied == []


def test_every_lock_entry_matches_the_schema_store(schema_root):
    wrong = [e['store'] for e in _lock_entries()
             if not (schema_root / e['store']).is_file() or _sha((schema_root / e['store']).read_bytes()) != e['sha256']]
    assert wrong == []


def test_the_generator_reproduces_the_schema_store(schema_root, tmp_path):
    """Fed the store's upstream files as the download delivers them, the script generates every
    CRD schema byte for byte and the same INDEX.json entries (JSON-equal: INDEX.json's ``about``
    text and the key order of one stored chart entry differ, the content does not)."""
    entries = _lock_entries()
    content = {e['store']: (schema_root / e['store']).read_bytes() for e in entries}
    entries = make_mirror(entries, content, tmp_path / 'mirror')
    lock = write_lock(tmp_path / 'lock.json', entries)
    dest = tmp_path / 'schemas'
    proc = _run('--lock', lock, '--base-url', (tmp_path / 'mirror').as_uri(), '--dest', dest)
    assert proc.returncode == 0, proc.stderr
    stored = sorted(p.relative_to(schema_root) for p in (schema_root / 'crds').rglob('*.json'))
    generated = sorted(p.relative_to(dest) for p in (dest / 'crds').rglob('*.json'))
    assert generated == stored and len(stored) > 100
    differ = [str(p) for p in stored if (dest / p).read_bytes() != (schema_root / p).read_bytes()]
    assert differ == []
    want = json.loads((schema_root / 'INDEX.json').read_text())
    got = json.loads((dest / 'INDEX.json').read_text())
    for section in ('kubernetes_crds', 'talos', 'helm_charts'):
        assert got[section] == want[section], section
    for entry in entries:
        assert (dest / entry['store']).read_bytes() == content[entry['store']]
    # the generated store is usable by the checks
    assert yaml.safe_load((dest / 'helm/metallb/0.16.1/Chart.yaml').read_text())['version'] == '0.16.1'
