"""Offline schema checks for everything cellplatform renders ("kubeconform-like").

Used by ``tests/support/verify_build.py`` (CLI), the molecule scenarios' verify steps and the
project tests. Data comes from the upstream schema store, found like kubeconform finds its
schemas (``locate_schemas``):

1. ``$CELLPLATFORM_SCHEMAS``, when set: a directory with ``INDEX.json``. Set but missing is an
   error naming the variable and the fix (``SchemaStoreError``), never a fallback.
2. else the local cache ``<repo>/.cache/schemas``, filled by ``make schemas``
   (``scripts/fetch-schemas.py``: pinned upstream files, checked against
   ``tests/support/schemas.lock.json``). A cache built from another lock is an error (stale).
3. else there is no store: schema checks are skipped, never silently. Each skipping check
   records what it did not check (``record_skip``) in ``$CELLPLATFORM_SCHEMA_SKIPS`` and
   ``scripts/run-tests.sh`` prints one summary line at the end (``skip_summary``).

What is checked, and against what:

* Talos machine-config documents (patches, per-node patches, full configs): every YAML
  document on its own against ``talos/<version>/config.schema.json`` (draft 2020-12), using
  the ``$defs`` entry for the document's ``kind`` (INDEX.json ``talos.documents``); a
  document without ``kind`` is the v1alpha1 config.
* Kubernetes manifests: custom resources against the per-kind CRD schema from INDEX.json
  ``kubernetes_crds`` (draft-07); built-in kinds with ``kubernetes-validate`` (strict, i.e.
  unknown fields rejected) for the pinned Kubernetes minor. A kind found in neither is a
  failure (nothing is skipped silently), except a kind of an API group listed in
  ``UNSTORED_CRD_GROUPS``: the store holds no upstream schema of that project (its README,
  "Not found / gaps"), so ``unstored()`` names the gap and the caller counts the document as not
  schema-checked (and checks apiVersion, kind and metadata.name only).
* Helm values: against the chart's own ``values.schema.json`` for the exact chart version
  (INDEX.json ``helm_charts``), with the draft the schema declares; additionally every
  top-level key must exist in the chart's default ``values.yaml`` (the Cilium schema, for
  one, does not close the root object, so a misspelt or removed key would otherwise be
  silently ignored by the chart).

``pattern`` is evaluated with RE2 semantics through the ``regex`` package (``regex.V1``),
as the schema store's README describes: Kubernetes uses Go's regexp and Python's ``re``
cannot compile several upstream patterns.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import jsonschema
import regex
import yaml
from jsonschema import validators

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KUBERNETES_VERSION = '1.36'
ENV = 'CELLPLATFORM_SCHEMAS'
SKIPS_ENV = 'CELLPLATFORM_SCHEMA_SKIPS'
CACHE_DIR = REPO_ROOT / '.cache' / 'schemas'
LOCK_FILE = Path(__file__).resolve().parent / 'schemas.lock.json'
CACHE_STAMP = '.lock-sha256'   # written by scripts/fetch-schemas.py
FULL_CHECK = ('for the full check run `make schemas` (pinned upstream schemas, checked by sha256, into '
              '.cache/schemas) or set %s=<a schema store with INDEX.json>' % ENV)


# API groups of components the collection renders whose CRDs are not in the schema store (the
# store cannot be extended from here: it is pinned by tests/support/schemas.lock.json). Their
# objects are reported as not schema-checked, by name of the gap; any other unknown kind fails.
UNSTORED_CRD_GROUPS = {
    'cert-manager.io': 'cert-manager v1.21.1',
    'acme.cert-manager.io': 'cert-manager v1.21.1',
    'longhorn.io': 'Longhorn v1.12.1',
    # L3 delivery
    'postgresql.cnpg.io': 'CloudNativePG 1.30.0',
    'operator.tekton.dev': 'Tekton operator v0.81.1',
    'triggers.tekton.dev': 'Tekton Triggers v0.37.0',
    # Talos itself registers serviceaccounts.talos.dev (machine.features.kubernetesTalosAPIAccess);
    # no upstream file of it exists to pin.
    'talos.dev': 'Talos v1.13.9 (registered by Talos at runtime)',
}


# Corrections of the stored Talos schema where it contradicts Talos itself (the store is pinned
# and verbatim, so the checker corrects, and names what it corrects and why). Each entry replaces
# one ``$defs`` entry while validating; test_schemacheck.py proves the stored entry is wrong.
TALOS_SCHEMA_CORRECTIONS = {
    # machine.logging.destinations[].endpoint: the schema generator saw the Go struct Endpoint
    # {*url.URL} and wrote an object with no properties (nothing can satisfy it), but Talos reads
    # and writes it as a URL string (Endpoint.UnmarshalYAML/MarshalYAML, pkg/machinery/config/types/
    # v1alpha1/v1alpha1_types.go at v1.13.9), e.g. "tcp://192.168.100.201:5170/".
    'v1alpha1.Endpoint': {'type': 'string', 'pattern': '^(tcp|udp)://[^/]+:[0-9]+/?$',
                          'description': 'URL of a log destination (cellplatform correction, see schemacheck.py)'},
}


class SchemaStoreError(RuntimeError):
    """The configured or cached schema store cannot be used (an error, not a skip)."""


class SchemaStoreUnavailable(RuntimeError):
    """No schema store is configured or cached: schema checks are skipped (and say so)."""


# --- YAML ----------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader that reads the YAML 1.1 ``=`` scalar as a string, as Go's YAML does."""


_Loader.add_constructor('tag:yaml.org,2002:value', lambda loader, node: loader.construct_scalar(node))


def load_documents(text):
    """Return the non-empty documents of a (multi-document) YAML text."""
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]


# --- RE2-compatible validators ---------------------------------------------------------------
def _re2_pattern(validator, pattern, instance, schema):
    if not validator.is_type(instance, 'string'):
        return
    try:
        found = regex.search(pattern, instance, flags=regex.V1)
    except regex.error as exc:  # pragma: no cover - all stored patterns compile with V1
        yield jsonschema.ValidationError('schema pattern %r does not compile: %s' % (pattern, exc))
        return
    if not found:
        yield jsonschema.ValidationError('%r does not match %r' % (instance, pattern))


_RE2_VALIDATORS = {}


def re2_validator_class(schema):
    """The validator class for *schema*'s declared draft with an RE2 ``pattern``."""
    base = validators.validator_for(schema, default=jsonschema.Draft7Validator)
    if base not in _RE2_VALIDATORS:
        _RE2_VALIDATORS[base] = validators.extend(base, {'pattern': _re2_pattern})
    return _RE2_VALIDATORS[base]


def _path(error):
    parts = [str(p) for p in error.absolute_path]
    return '.'.join(parts) if parts else '(root)'


def _messages(validator, instance):
    out = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        # oneOf/anyOf: name the closest sub-error, it says what is actually wrong
        best = jsonschema.exceptions.best_match([err]) if err.context else err
        msg = best.message if best is not err else err.message
        out.append('%s: %s' % (_path(best), msg[:400]))
    return out


# --- the store -------------------------------------------------------------------------------
def _shown(path):
    """*path* relative to the repository when it is inside it (messages stay short)."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def locate_schemas(explicit=None):
    """The schema store to use: (Path, where it came from), or (None, why there is none).

    *explicit* (``--schemas``) or ``$CELLPLATFORM_SCHEMAS`` wins; then the ``make schemas``
    cache. Raises SchemaStoreError for a configured store that is missing and for a stale cache.
    """
    configured = explicit or os.environ.get(ENV)
    if configured:
        root = Path(configured).expanduser()
        name = '--schemas' if explicit else ENV
        if not (root / 'INDEX.json').is_file():
            raise SchemaStoreError(
                '%s=%s is not a schema store (%s). Fix: point %s at a directory with INDEX.json '
                '(e.g. a copy of shared/schemas, or .cache/schemas after `make schemas`), or unset it '
                'to use .cache/schemas' % (name, configured, 'no such directory' if not root.is_dir()
                                           else 'it has no INDEX.json', name))
        return root.resolve(), name
    if (CACHE_DIR / 'INDEX.json').is_file():
        stamp = CACHE_DIR / CACHE_STAMP
        built_from = stamp.read_text().strip() if stamp.is_file() else None
        if built_from != hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest():
            raise SchemaStoreError(
                '%s was not built from the current %s (stale or incomplete). Fix: run `make schemas` again, '
                'or set %s to another schema store' % (_shown(CACHE_DIR), _shown(LOCK_FILE), ENV))
        return CACHE_DIR, 'cache'
    return None, 'no schema store (%s is not set and %s does not exist)' % (ENV, _shown(CACHE_DIR))


def schemas_root(explicit=None):
    """The schema store's directory; SchemaStoreUnavailable when there is none."""
    root, why = locate_schemas(explicit)
    if root is None:
        raise SchemaStoreUnavailable('%s; %s' % (why, FULL_CHECK))
    return root


def record_skip(count, what, where):
    """Note that *count* *what* (e.g. 'documents', 'tests') were not schema-checked by *where*.

    Appends one line to ``$CELLPLATFORM_SCHEMA_SKIPS`` when it is set (scripts/run-tests.sh sets
    it and prints ``skip_summary`` of it once at the end); a no-op otherwise.
    """
    ledger = os.environ.get(SKIPS_ENV)
    if ledger and count:
        with open(ledger, 'a') as out:   # one short write per line: safe with parallel writers
            out.write('%d\t%s\t%s\n' % (count, what, where.replace('\t', ' ').replace('\n', ' ')))


def skip_summary(ledger):
    """The one summary line for a skip ledger, or '' when nothing was skipped."""
    totals = {}
    try:
        lines = Path(ledger).read_text().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        count, what, _where = line.split('\t', 2)
        totals[what] = totals.get(what, 0) + int(count)
    if not totals:
        return ''
    phrases = {'tests': '%d schema tests were skipped'}
    counted = ' and '.join(phrases.get(what, '%d ' + what + ' were not schema-checked') % n
                           for what, n in sorted(totals.items()))
    return 'schema checks SKIPPED (no schema store): %s; %s.' % (counted, FULL_CHECK)


class SchemaStore(object):
    """Loads schemas from the store lazily and validates documents against them."""

    def __init__(self, root=None, kubernetes_version=DEFAULT_KUBERNETES_VERSION):
        self.root = schemas_root(root)
        self.index = json.loads((self.root / 'INDEX.json').read_text())
        self.kubernetes_version = kubernetes_version
        self._cache = {}

    def _json(self, rel):
        if rel not in self._cache:
            self._cache[rel] = json.loads((self.root / rel).read_text())
        return self._cache[rel]

    # Talos ----------------------------------------------------------------------------------
    @property
    def talos_version(self):
        return self.index['talos']['version']

    def talos_document(self, doc):
        """Errors (list of str) of one Talos machine-config document."""
        if not isinstance(doc, dict):
            return ['document is a %s, not a mapping' % type(doc).__name__]
        talos = self.index['talos']
        docs = talos['documents']
        kind = doc.get('kind')
        if kind is None:
            if 'apiVersion' in doc:
                return ['document has apiVersion but no kind']
            ref = next(v for k, v in docs['v1alpha1'].items() if k.startswith('(legacy'))
        else:
            api = doc.get('apiVersion')
            if api not in docs:
                return ['%s: unknown apiVersion %r (Talos %s knows %s)' % (kind, api, self.talos_version, sorted(docs))]
            if kind not in docs[api]:
                return ['unknown Talos document kind %r for %s %s' % (kind, api, self.talos_version)]
            ref = docs[api][kind]
        rel, _, pointer = ref.partition('#')
        root = self._json(rel)
        defname = pointer.rsplit('/', 1)[-1]
        key = ('talos-def', rel, defname)
        if key not in self._cache:
            defs = dict(root['$defs'], **{k: v for k, v in TALOS_SCHEMA_CORRECTIONS.items() if k in root['$defs']})
            schema = {'$schema': root['$schema'], '$defs': defs, '$ref': '#/$defs/%s' % defname}
            self._cache[key] = re2_validator_class(schema)(schema)
        return _messages(self._cache[key], doc)

    # Kubernetes -----------------------------------------------------------------------------
    def unstored(self, doc):
        """Why *doc* cannot be schema-checked (a CRD kind of UNSTORED_CRD_GROUPS not in the store), else None."""
        if not isinstance(doc, dict) or not isinstance(doc.get('apiVersion'), str):
            return None
        api, kind = doc['apiVersion'], doc.get('kind')
        group = api.split('/', 1)[0] if '/' in api else ''
        if group not in UNSTORED_CRD_GROUPS or kind in self.index['kubernetes_crds'].get(api, {}):
            return None
        return 'no upstream schema of %s %s in the store (%s CRDs are not stored)' % (api, kind, UNSTORED_CRD_GROUPS[group])

    def manifest(self, doc):
        """Errors of one Kubernetes object (CRD kinds via INDEX.json, core via kubernetes-validate)."""
        if not isinstance(doc, dict) or 'apiVersion' not in doc or 'kind' not in doc:
            return ['not a Kubernetes object (apiVersion and kind required)']
        api, kind = doc['apiVersion'], doc['kind']
        crds = self.index['kubernetes_crds']
        if api in crds and kind in crds[api]:
            rel = crds[api][kind]
            key = ('crd', rel)
            if key not in self._cache:
                schema = self._json(rel)
                self._cache[key] = re2_validator_class(schema)(schema)
            errors = _messages(self._cache[key], doc)
        else:
            errors = self._core(doc)
        meta = doc.get('metadata') or {}
        if not meta.get('name'):
            errors.append('metadata.name: required')
        return errors

    def _core(self, doc):
        import kubernetes_validate.utils as kvu  # heavy import: only when a core kind appears
        api, kind = doc['apiVersion'], doc['kind']
        version = [v for v in kvu.all_versions()
                   if tuple(map(int, kvu.major_minor(v).split('.'))) <=
                   tuple(map(int, self.kubernetes_version.split('.')[:2]))][-1]
        group_version = re.sub(r'^([^./]*)(?:\.[^/]*)?/', r'\1-', api)
        schema_dir = 'kubernetes-json-schema/v%s-local-strict' % version
        key = ('core', schema_dir, kind, group_version)
        if key not in self._cache:
            try:
                schema = kvu.schema_contents('%s/%s-%s.json' % (schema_dir, kind.lower(), group_version), version)
            except FileNotFoundError:
                self._cache[key] = None
            else:
                from referencing import Registry, Resource
                defs = kvu.schema_contents('%s/_definitions.json' % schema_dir, version)
                registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
                cls = validators.extend(jsonschema.Draft202012Validator, {'pattern': _re2_pattern})
                self._cache[key] = cls(schema, registry=registry)
        if self._cache[key] is None:
            return ['no schema for %s %s: neither a stored CRD (INDEX.json) nor a Kubernetes %s built-in kind'
                    % (api, kind, self.kubernetes_version)]
        return _messages(self._cache[key], doc)

    # Helm -----------------------------------------------------------------------------------
    def chart_files(self, chart, version):
        return self._chart_versions(chart).get(self._stored_version(chart, version))

    def _chart_versions(self, chart):
        return self.index['helm_charts'].get(chart, {})

    def _stored_version(self, chart, version):
        """The store's key of chart@version: the version itself, or ``v<version>`` for a chart the
        store keys by its git tag (chaos-mesh: tag v2.8.3 is chart version 2.8.3 of its repository)."""
        stored = self._chart_versions(chart)
        version = str(version)
        if version not in stored and 'v' + version in stored:
            return 'v' + version
        return version

    def values(self, values, chart, version):
        """(errors, notes) of a values mapping for chart@version.

        Like Helm, the schema is checked against the chart's defaults coalesced with *values*
        (a required top-level key the chart defaults is satisfied; ``null`` removes a default).
        """
        charts = self.index['helm_charts']
        if chart not in charts:
            return [], ['chart %s is not in the schema store; values not checked' % chart]
        files = charts[chart].get(self._stored_version(chart, version))
        if files is None:
            stored = ', '.join(sorted(charts[chart]))
            if any('values.schema.json' in f for f in charts[chart].values()):
                return ['chart %s version %s is not in the schema store (stored: %s); pin a stored version or '
                        'add its schema' % (chart, version, stored)], []
            return [], ['chart %s %s is not in the schema store (stored: %s) and no stored version ships a '
                        'values.schema.json; values not checked' % (chart, version, stored)]
        if not isinstance(values, dict):
            return ['values are a %s, not a mapping' % type(values).__name__], []
        errors, notes = [], []
        defaults = {}
        if 'values.yaml' in files:
            defaults = yaml.load((self.root / files['values.yaml']).read_text(), Loader=_Loader) or {}
            for key in sorted(set(values) - set(defaults)):
                errors.append('%s: not a value of chart %s %s (the chart would silently ignore it)' % (key, chart, version))
        if 'values.schema.json' in files:
            rel = files['values.schema.json']
            key = ('values', rel)
            if key not in self._cache:
                schema = self._json(rel)
                self._cache[key] = re2_validator_class(schema)(schema)
            errors.extend(_messages(self._cache[key], coalesce(defaults, values)))
        else:
            notes.append('chart %s %s ships no values.schema.json; only top-level keys checked' % (chart, version))
        return errors, notes


def coalesce(defaults, values):
    """Helm's merge of user values over chart defaults: maps merge recursively, ``None`` deletes."""
    out = dict(defaults) if isinstance(defaults, dict) else {}
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = coalesce(out[key], value)
        else:
            out[key] = value
    return out


def main(argv=None):
    """Command line for scripts/run-tests.sh: which store is used, and the skip summary line."""
    parser = argparse.ArgumentParser(description='Schema store of the offline schema checks.')
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('where', help='print the schema store the checks will use (exit 2 when it is unusable)')
    summary = sub.add_parser('skip-summary', help='print the one-line summary of a skip ledger (nothing if empty)')
    summary.add_argument('ledger')
    args = parser.parse_args(argv)
    if args.command == 'where':
        try:
            root, source = locate_schemas()
        except SchemaStoreError as exc:
            print('error: %s' % exc, file=sys.stderr)
            return 2
        if root is None:
            print('schemas: none, %s: the schema checks will be skipped; %s' % (source, FULL_CHECK))
        else:
            print('schemas: %s (from %s)' % (root, source))
        return 0
    line = skip_summary(args.ledger)
    if line:
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
