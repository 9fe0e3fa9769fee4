"""Offline schema checks for everything cellplatform renders ("kubeconform-like").

Used by ``tests/support/verify_build.py`` (CLI), the molecule scenarios' verify steps and the
project tests. Data comes from the upstream schema store (``$CELLPLATFORM_SCHEMAS``, falling
back to ``<repo>/../shared/schemas``); a missing store is an error, never a silent skip.

What is checked, and against what:

* Talos machine-config documents (patches, per-node patches, full configs): every YAML
  document on its own against ``talos/<version>/config.schema.json`` (draft 2020-12), using
  the ``$defs`` entry for the document's ``kind`` (INDEX.json ``talos.documents``); a
  document without ``kind`` is the v1alpha1 config.
* Kubernetes manifests: custom resources against the per-kind CRD schema from INDEX.json
  ``kubernetes_crds`` (draft-07); built-in kinds with ``kubernetes-validate`` (strict, i.e.
  unknown fields rejected) for the pinned Kubernetes minor. A kind found in neither is a
  failure (nothing is skipped silently).
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

import json
import os
import re
from pathlib import Path

import jsonschema
import regex
import yaml
from jsonschema import validators

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KUBERNETES_VERSION = '1.36'


class SchemaStoreMissing(RuntimeError):
    """The schema store could not be found; checks cannot run (a failure, not a skip)."""


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
def schemas_root(explicit=None):
    """Resolve the schema store: *explicit*, ``$CELLPLATFORM_SCHEMAS``, ``<repo>/../shared/schemas``."""
    configured = explicit or os.environ.get('CELLPLATFORM_SCHEMAS')
    root = Path(configured).expanduser() if configured else REPO_ROOT.parent / 'shared' / 'schemas'
    if not (root / 'INDEX.json').is_file():
        how = ('CELLPLATFORM_SCHEMAS=%s' % configured) if configured else 'the default %s' % root
        raise SchemaStoreMissing(
            'schema store not found: %s has no INDEX.json. Set CELLPLATFORM_SCHEMAS to the upstream '
            'schema directory (shared/schemas); schema checks never silently skip.' % how)
    return root.resolve()


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
            schema = {'$schema': root['$schema'], '$defs': root['$defs'], '$ref': '#/$defs/%s' % defname}
            self._cache[key] = re2_validator_class(schema)(schema)
        return _messages(self._cache[key], doc)

    # Kubernetes -----------------------------------------------------------------------------
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
        return self.index['helm_charts'].get(chart, {}).get(str(version))

    def values(self, values, chart, version):
        """(errors, notes) of a values mapping for chart@version.

        Like Helm, the schema is checked against the chart's defaults coalesced with *values*
        (a required top-level key the chart defaults is satisfied; ``null`` removes a default).
        """
        charts = self.index['helm_charts']
        if chart not in charts:
            return [], ['chart %s is not in the schema store; values not checked' % chart]
        files = charts[chart].get(str(version))
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
