#!/usr/bin/env python3
"""Fill the offline schema store (.cache/schemas/) from pinned upstream files: `make schemas`.

    .venv/bin/python scripts/fetch-schemas.py                  # download into .cache/schemas/
    .venv/bin/python scripts/fetch-schemas.py --dest DIR       # somewhere else
    .venv/bin/python scripts/fetch-schemas.py --base-url file:///srv/mirror   # a local mirror

Every upstream file is listed in ``tests/support/schemas.lock.json`` with its repository,
commit, path in the repository, sha256 and place in the store. The script downloads each one
from ``<base-url>/<repository>/<commit>/<path>`` (default base URL
``https://raw.githubusercontent.com``; a ``file://`` base URL reads a mirror laid out the same
way), checks its sha256 and then **generates** the derived files itself:

* ``crds/<group>/<kind-lowercase>_<version>.json``: one JSON Schema (draft-07) per served
  version of every CustomResourceDefinition in the files of kind ``crds`` (see ``TRANSFORMATION``
  below for exactly what is changed on the way from ``openAPIV3Schema``);
* ``INDEX.json``: ``kubernetes_crds[apiVersion][kind]`` -> CRD schema file,
  ``talos.documents[apiVersion][kind]`` -> ``$defs`` entry of the Talos machine-config schema,
  ``helm_charts[chart][version][file]`` -> stored chart file;
* ``README.md`` (where it all came from) and ``.lock-sha256`` (the lock it was built from, so
  the tests can tell a stale store from a current one).

The store is built in a temporary sibling directory and moved into place only when every file
is downloaded, verified and generated: a failure (no network, a checksum mismatch) leaves the
previous store, or none, exactly as it was. To bump a pin, edit the entry's ``commit`` (and
``path``) in the lock and run the script: it refuses the file and prints the sha256 it got,
which goes into the lock once you have reviewed the new file.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

import yaml

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / 'tests' / 'support' / 'schemas.lock.json'
DEST = REPO / '.cache' / 'schemas'
BASE_URL = 'https://raw.githubusercontent.com'
STAMP = '.lock-sha256'
KINDS = ('crds', 'talos-schema', 'chart')
DRAFT7 = 'http://json-schema.org/draft-07/schema#'
JUNCTORS = ('allOf', 'anyOf', 'oneOf', 'not')

TRANSFORMATION = """\
For every CustomResourceDefinition (apiextensions.k8s.io/v1) in the files of kind `crds` and
every `spec.versions[]` entry with `served: true`, `schema.openAPIV3Schema` is copied and
changed only as follows, so that a draft-07 validator enforces what the API server enforces:

1. The root gets `$schema` (draft-07) and a `$comment` naming the CRD, version, repository,
   release, commit and file.
2. Closed objects: every object schema with `properties`, without `additionalProperties` and
   without `x-kubernetes-preserve-unknown-fields: true` gets `additionalProperties: false`
   (structural schemas prune unknown fields; strict field validation rejects them). Not for
   the root `metadata` (ObjectMeta), the `metadata` of an `x-kubernetes-embedded-resource`
   object, a root that lacks any of the `apiVersion`/`kind`/`metadata` properties, or a
   schema under `allOf`/`anyOf`/`oneOf`/`not` (those only add value checks to fields
   declared outside them).
3. `nullable: true`: `null` is added to `type`; a node with `enum` or a junctor is wrapped in
   `anyOf: [{type: null}, <node>]` instead. `nullable` stays as an annotation.
4. `x-kubernetes-int-or-string: true` without `anyOf`: `anyOf: [{type: integer}, {type: string}]`
   is added.
5. Boolean `exclusiveMinimum`/`exclusiveMaximum` (OpenAPI 3.0) become the numeric draft-06+
   form (the value of `minimum`/`maximum`, which is removed).
6. Everything else is kept as it is (`x-kubernetes-*`, `format`, `default`, `description`).
7. YAML is read as Kubernetes' Go YAML reads it: the YAML 1.1 `=` scalar is the string "=".
"""


class FetchError(Exception):
    """The store cannot be built; the message says what failed and what to do."""


# --- the lock ---------------------------------------------------------------------------------
def load_lock(path):
    """The lock's entries, after checking that each one is complete and safe to write."""
    try:
        lock = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FetchError('cannot read the lock %s: %s' % (path, exc)) from exc
    problems, seen = [], set()
    if lock.get('format') != 1:
        problems.append('format: %r is not 1' % lock.get('format'))
    for i, entry in enumerate(lock.get('files') or []):
        where = 'files[%d] (%s)' % (i, entry.get('store', '?'))
        for key in ('store', 'kind', 'repository', 'commit', 'path', 'sha256', 'version'):
            if not isinstance(entry.get(key), str) or not entry.get(key):
                problems.append('%s: %s is missing' % (where, key))
        store = PurePosixPath(entry.get('store') or '.')
        if store.is_absolute() or '..' in store.parts or store.parts[:1] == ('crds',) or str(store) in (
                'INDEX.json', 'README.md', STAMP):
            problems.append('%s: store must be a relative path outside crds/ and not a generated file' % where)
        if str(store) in seen:
            problems.append('%s: store is listed twice' % where)
        seen.add(str(store))
        if entry.get('kind') not in KINDS:
            problems.append('%s: kind %r is not one of %s' % (where, entry.get('kind'), ', '.join(KINDS)))
        if len(entry.get('commit') or '') != 40:
            problems.append('%s: commit must be a full 40-character commit id' % where)
        if ('member' in entry) != ('archive_sha256' in entry):
            problems.append('%s: an archive member needs both member and archive_sha256' % where)
    if not lock.get('files'):
        problems.append('files: empty')
    if problems:
        raise FetchError('lock %s is not valid:\n  %s' % (path, '\n  '.join(problems)))
    return lock['files']


# --- downloading --------------------------------------------------------------------------------
def source_url(base_url, entry):
    return '%s/%s/%s/%s' % (base_url.rstrip('/'), entry['repository'], entry['commit'],
                            urllib.parse.quote(entry['path']))


def download(url, timeout):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https/file only)
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, 'reason', None) or exc
        raise FetchError('cannot download %s: %s' % (url, reason)) from exc


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def fetch_files(entries, base_url, timeout, log):
    """{store: bytes} of every lock entry, each verified; raises FetchError on any problem."""
    archives, files, mismatches = {}, {}, []
    for entry in entries:
        url = source_url(base_url, entry)
        if 'member' in entry:
            if url not in archives:
                data = download(url, timeout)
                if sha256(data) != entry['archive_sha256']:
                    mismatches.append('%s: sha256 %s, the lock pins %s' % (url, sha256(data), entry['archive_sha256']))
                    archives[url] = None
                else:
                    archives[url] = data
            if archives[url] is None:
                continue
            data = archive_member(archives[url], entry['member'], url)
            what = '%s!%s' % (url, entry['member'])
        else:
            data = download(url, timeout)
            what = url
        if sha256(data) != entry['sha256']:
            mismatches.append('%s: sha256 %s, the lock pins %s' % (what, sha256(data), entry['sha256']))
            continue
        files[entry['store']] = data
        log('  %s' % entry['store'])
    if mismatches:
        raise FetchError('%d file(s) do not match tests/support/schemas.lock.json:\n  %s\n'
                         'A changed upstream file is refused; after reviewing it, put the new sha256 '
                         'into the lock.' % (len(mismatches), '\n  '.join(mismatches)))
    return files


def archive_member(data, member, url):
    """One regular file out of a .tgz, read in memory (nothing is extracted to disk)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode='r:*') as archive:
            info = archive.getmember(member)
            if not info.isfile():
                raise FetchError('%s: %s is not a regular file' % (url, member))
            return archive.extractfile(info).read()
    except (tarfile.TarError, KeyError) as exc:
        raise FetchError('%s: cannot read %s from the archive: %s' % (url, member, exc)) from exc


# --- CRD -> JSON Schema ---------------------------------------------------------------------------
class GoYamlLoader(getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):  # pylint: disable=too-many-ancestors
    """Safe loader that reads the YAML 1.1 ``=`` scalar as a string, as Go's YAML does."""


GoYamlLoader.add_constructor('tag:yaml.org,2002:value', lambda loader, node: loader.construct_scalar(node))


class Counts(object):
    """How often each transformation was applied (printed, and checked by the tests)."""

    FIELDS = ('closed', 'left_open_under_junctors', 'metadata_left_open', 'nullable', 'int_or_string',
              'exclusive_bounds')

    def __init__(self):
        for field in self.FIELDS:
            setattr(self, field, 0)

    def summary(self):
        return ', '.join('%s %d' % (f.replace('_', ' '), getattr(self, f)) for f in self.FIELDS)


def _closable(node):
    return ('properties' in node and 'additionalProperties' not in node
            and node.get('x-kubernetes-preserve-unknown-fields') is not True)


def convert(node, counts, left_open=None, root=False):
    """The draft-07 form of one openAPIV3Schema node (see TRANSFORMATION); returns the node.

    *left_open*: None when the node may be closed, else the Counts field that says why not.
    """
    if not isinstance(node, dict):
        return node
    props = node.get('properties')
    if isinstance(props, dict):
        embedded = node.get('x-kubernetes-embedded-resource') is True
        for name in props:
            metadata = name == 'metadata' and (root or embedded)
            props[name] = convert(props[name], counts, left_open='metadata_left_open' if metadata else None)
    for key in ('items', 'additionalProperties'):
        if isinstance(node.get(key), dict):
            node[key] = convert(node[key], counts)
        elif isinstance(node.get(key), list):
            node[key] = [convert(sub, counts) for sub in node[key]]
    for key in JUNCTORS:
        if isinstance(node.get(key), list):
            node[key] = [convert(sub, counts, left_open='left_open_under_junctors') for sub in node[key]]
        elif isinstance(node.get(key), dict):
            node[key] = convert(node[key], counts, left_open='left_open_under_junctors')

    for bound, limit in (('exclusiveMinimum', 'minimum'), ('exclusiveMaximum', 'maximum')):
        if isinstance(node.get(bound), bool):
            counts.exclusive_bounds += 1
            if node[bound] and limit in node:
                node[bound] = node.pop(limit)
            else:
                del node[bound]
    if node.get('x-kubernetes-int-or-string') is True and 'anyOf' not in node:
        node['anyOf'] = [{'type': 'integer'}, {'type': 'string'}]
        counts.int_or_string += 1
    if _closable(node):
        if root and not {'apiVersion', 'kind', 'metadata'} <= set(node['properties']):
            pass
        elif left_open is None:
            node['additionalProperties'] = False
            counts.closed += 1
        else:
            setattr(counts, left_open, getattr(counts, left_open) + 1)
    if node.get('nullable') is True:
        counts.nullable += 1
        if 'enum' in node or any(key in node for key in JUNCTORS):
            return {'anyOf': [{'type': 'null'}, node]}
        kind = node.get('type')
        if isinstance(kind, str) and kind != 'null':
            node['type'] = [kind, 'null']
        elif isinstance(kind, list) and 'null' not in kind:
            node['type'] = kind + ['null']
    return node


def _check_json_types(node, where):
    """YAML values JSON cannot hold (timestamps, binary) are errors, never silently changed."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise FetchError('%s: key %r is not a string' % (where, key))
            _check_json_types(value, '%s.%s' % (where, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_json_types(value, '%s[%d]' % (where, i))
    elif not (node is None or isinstance(node, (str, bool, int, float))):
        raise FetchError('%s: %s value %r has no JSON form' % (where, type(node).__name__, node))


def crd_schemas(entry, data, counts):
    """[(store path, apiVersion, kind, schema)] for every served version of every CRD in *data*."""
    out = []
    for doc in yaml.load_all(data, Loader=GoYamlLoader):
        if not isinstance(doc, dict) or doc.get('kind') != 'CustomResourceDefinition':
            continue
        if doc.get('apiVersion') != 'apiextensions.k8s.io/v1':
            raise FetchError('%s: %s is %s, only apiextensions.k8s.io/v1 is supported'
                             % (entry['store'], doc['metadata']['name'], doc.get('apiVersion')))
        spec = doc['spec']
        group, kind = spec['group'], spec['names']['kind']
        for version in spec['versions']:
            if not version.get('served'):
                continue
            where = '%s %s %s' % (entry['store'], doc['metadata']['name'], version['name'])
            source = copy.deepcopy(version['schema']['openAPIV3Schema'])
            _check_json_types(source, where)
            schema = {
                '$schema': DRAFT7,
                '$comment': 'Generated from CRD %s version %s (%s %s commit %s, file %s). openAPIV3Schema '
                            'rendered as JSON Schema draft-07; see README.md for the exact transformations.'
                            % (doc['metadata']['name'], version['name'], entry['repository'], entry['version'],
                               entry['commit'], entry['path']),
            }
            schema.update(convert(source, counts, root=True))
            out.append(('crds/%s/%s_%s.json' % (group, kind.lower(), version['name']),
                        '%s/%s' % (group, version['name']), kind, schema))
    if not out:
        raise FetchError('%s: no served CustomResourceDefinition version in a file of kind crds' % entry['store'])
    return out


# --- INDEX.json -------------------------------------------------------------------------------------
def talos_index(entry, data):
    """INDEX.json ``talos``: every document kind of the Talos schema's root ``oneOf``."""
    schema = json.loads(data)
    parts = PurePosixPath(entry['store']).parts
    documents = {}
    for ref in schema['oneOf']:
        name = ref['$ref'].rsplit('/', 1)[-1]
        props = schema['$defs'][name].get('properties', {})
        pointer = '%s#/$defs/%s' % (entry['store'], name)
        if 'kind' in props:
            documents.setdefault(props['apiVersion']['enum'][0], {})[props['kind']['enum'][0]] = pointer
        else:
            version = props['version']['enum'][0]
            label = '(legacy machine config: version: %s, no kind)' % version
            documents.setdefault(version, {})[label] = pointer
    return {'version': parts[1], 'schema': entry['store'], 'draft': schema['$schema'].split('/draft/')[1].split('/')[0],
            'documents': {api: dict(sorted(kinds.items())) for api, kinds in sorted(documents.items())}}


def build_index(entries, files, crds):
    charts, talos = {}, None
    for entry in entries:
        if entry['kind'] == 'chart':
            parts = PurePosixPath(entry['store']).parts
            if len(parts) != 4 or parts[0] != 'helm':
                raise FetchError('%s: a chart file must be stored as helm/<chart>/<version>/<file>' % entry['store'])
            charts.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = entry['store']
        elif entry['kind'] == 'talos-schema':
            if talos is not None:
                raise FetchError('%s: only one Talos schema can be indexed' % entry['store'])
            talos = talos_index(entry, files[entry['store']])
    kube = {}
    for path, api, kind, _schema in crds:
        if kind in kube.setdefault(api, {}):
            raise FetchError('%s %s is defined twice (%s, %s)' % (api, kind, kube[api][kind], path))
        kube[api][kind] = path
    return {
        'about': 'apiVersion -> kind -> JSON Schema file (paths relative to this folder). Generated by '
                 'cellplatform scripts/fetch-schemas.py from tests/support/schemas.lock.json; see README.md.',
        'kubernetes_crds': {api: dict(sorted(kinds.items())) for api, kinds in sorted(kube.items())},
        'talos': talos,
        'helm_charts': {chart: {version: dict(sorted(f.items())) for version, f in sorted(versions.items())}
                        for chart, versions in sorted(charts.items())},
    }


def readme(entries, base_url, counts, generated):
    lines = ['# Upstream schema store (generated, do not edit)', '',
             'Built by `scripts/fetch-schemas.py` (`make schemas`) of cellplatform from',
             '`tests/support/schemas.lock.json`: %d upstream files, each downloaded from `%s` and' % (
                 len(entries), base_url),
             'checked against its pinned sha256, and %d CRD schemas generated from them (%s).' % (
                 generated, counts.summary()), '',
             '## How the CRD schemas are generated', '', TRANSFORMATION,
             '## Files', '', '| store | repository | commit | path | release | license |', '|---|---|---|---|---|---|']
    for e in entries:
        path = e['path'] + ('!' + e['member'] if 'member' in e else '')
        lines.append('| `%s` | %s | `%s` | `%s` | %s | %s |' % (
            e['store'], e['repository'], e['commit'], path, e['version'], e.get('license', '')))
    return '\n'.join(lines) + '\n'


def dump_json(data):
    return (json.dumps(data, indent=1, ensure_ascii=False) + '\n').encode()


def build_store(entries, files, base_url, lock_bytes, staging):
    """Write the verified files and everything generated from them into *staging*."""
    counts, crds = Counts(), []
    for entry in entries:
        target = staging / entry['store']
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[entry['store']])
        if entry['kind'] == 'crds':
            crds.extend(crd_schemas(entry, files[entry['store']], counts))
    for path, _api, _kind, schema in crds:
        target = staging / path
        if target.exists():
            raise FetchError('%s is generated twice' % path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(dump_json(schema))
    (staging / 'INDEX.json').write_bytes(dump_json(build_index(entries, files, crds)))
    (staging / 'README.md').write_text(readme(entries, base_url, counts, len(crds)))
    (staging / STAMP).write_text(sha256(lock_bytes) + '\n')
    return counts, len(crds)


def replace_dir(staging, dest):
    """Move *staging* to *dest*; an existing *dest* is replaced only after the move can happen."""
    old = None
    if dest.exists():
        old = dest.with_name('.%s.old-%d' % (dest.name, os.getpid()))
        dest.rename(old)
    try:
        staging.rename(dest)
    except OSError:
        if old is not None:
            old.rename(dest)
        raise
    if old is not None:
        shutil.rmtree(old)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--lock', type=Path, default=LOCK, help='the lock file (default: %(default)s)')
    parser.add_argument('--dest', type=Path, default=DEST, help='the store to (re)build (default: %(default)s)')
    parser.add_argument('--base-url', default=BASE_URL,
                        help='where <repository>/<commit>/<path> is read from: https://... or file:///... '
                             '(default: %(default)s)')
    parser.add_argument('--timeout', type=float, default=60, help='seconds per download (default: %(default)s)')
    parser.add_argument('-q', '--quiet', action='store_true', help='no line per file')
    args = parser.parse_args(argv)

    def log(line):
        if not args.quiet:
            print(line)

    dest = args.dest.resolve()
    staging = dest.with_name('.%s.partial-%d' % (dest.name, os.getpid()))
    scheme = urllib.parse.urlsplit(args.base_url).scheme
    try:
        if scheme not in ('https', 'file'):
            raise FetchError('--base-url %s: only https:// and file:// are supported' % args.base_url)
        entries = load_lock(args.lock)
        lock_bytes = args.lock.read_bytes()
        log('fetch-schemas: %d files from %s' % (len(entries), args.base_url))
        files = fetch_files(entries, args.base_url, args.timeout, log)
        staging.mkdir(parents=True)
        counts, generated = build_store(entries, files, args.base_url, lock_bytes, staging)
        replace_dir(staging, dest)
    except FetchError as exc:
        print('fetch-schemas: error: %s' % exc, file=sys.stderr)
        if scheme == 'https':
            print('fetch-schemas: `make schemas` needs HTTPS access to %s. Without it, point '
                  'CELLPLATFORM_SCHEMAS at a copy of the schema store, or pass --base-url file:///<mirror> '
                  '(laid out as <repository>/<commit>/<path>).' % urllib.parse.urlsplit(args.base_url).netloc,
                  file=sys.stderr)
        print('fetch-schemas: nothing was written; %s is unchanged' % dest, file=sys.stderr)
        return 1
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    print('fetch-schemas: %s: %d upstream files verified (sha256), %d CRD schemas generated (%s), INDEX.json'
          % (dest, len(entries), generated, counts.summary()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
