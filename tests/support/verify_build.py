#!/usr/bin/env python3
"""Validate a rendered cell (build/<cell>/) against the upstream schemas, offline.

    python tests/support/verify_build.py build/<cell> [--layer l0] [--schemas DIR]
                                         [--kubernetes-version 1.36] [-q]

For the chosen layer (default: every layer in plan.json plus the Talos and Terraform trees):

* ``talos/patches/*.yaml``, ``talos/nodes/*.yaml`` (layer l0): every document against the
  Talos schema of the pinned version (``talos/<ver>/config.schema.json``);
* ``terraform/*.json`` (layer l0): must parse as a JSON object;
* each plan.json component of the layer: its ``values_file`` against the chart's
  ``values.schema.json`` for the component's ``chart``/``version``, every document of its
  ``manifests`` and its Argo CD ``application`` against CRD schemas (INDEX.json) or, for
  built-in kinds, kubernetes-validate for the pinned Kubernetes minor;
* any other YAML file under ``<layer>/`` that plan.json does not name: as manifests;
* SOPS files (``*.sops.yaml``: a component's Secrets, the machine configs): every value that sops
  encrypts is encrypted (``ENC[...]``; with ``encrypted_regex`` the matching keys' values), the
  file has age recipients, and a SOPS Kubernetes manifest (without its ``sops`` metadata) is
  schema-checked like any manifest;
* a component's KSOPS directory: ``kustomization.yaml`` generators and the ``ksops`` generator's
  files exist, and each generator file is a SOPS file;
* Backstage catalog files (L7, ``backstage.io``/``scaffolder.backstage.io`` entities): kind,
  apiVersion and a DNS-safe name (no schema is published); a software template's ``skeleton/``
  (Nunjucks templates Backstage renders) is counted, not parsed;
* every file of the layer: no private key material.

Without a schema store (``$CELLPLATFORM_SCHEMAS`` unset and no ``.cache/schemas``; see
schemacheck.locate_schemas) the schema checks are skipped and counted, everything else
(YAML/JSON parses, files named in plan.json exist, no empty manifest, no key material) still
runs; the last line says how many documents were not schema-checked and the count goes to the
skip ledger of scripts/run-tests.sh.

Prints every failure (``path [doc n kind/name]: field: message``) and exits 1 when there is
any; exits 2 when the build tree or plan.json is missing or a configured schema store is unusable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from schemacheck import (  # noqa: E402  pylint: disable=wrong-import-position
    DEFAULT_KUBERNETES_VERSION, SchemaStore, SchemaStoreError, SchemaStoreUnavailable, load_documents, record_skip)

_PRIVATE_KEY_RE = re.compile(r'-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----|AGE-SECRET-KEY-1[0-9A-Z]{50,}')


class Report(object):
    def __init__(self):
        self.failures = []
        self.notes = []
        self.checked = {}
        self.unchecked = {}
        self.gaps = set()   # kinds without a stored schema (schemacheck.UNSTORED_CRD_GROUPS)

    def fail(self, path, message):
        self.failures.append('%s: %s' % (path, message))

    def count(self, what, schema_checked=True):
        counts = self.checked if schema_checked else self.unchecked
        counts[what] = counts.get(what, 0) + 1


def _label(i, doc):
    if not isinstance(doc, dict):
        return 'doc %d' % i
    kind = doc.get('kind') or ('v1alpha1' if 'kind' not in doc and 'apiVersion' not in doc else '?')
    meta = doc.get('metadata') if isinstance(doc.get('metadata'), dict) else {}
    name = doc.get('name') or doc.get('hostname') or meta.get('name')
    return 'doc %d %s%s' % (i, kind, '/%s' % name if name else '')


def _read_docs(path, rel, report):
    try:
        return load_documents(path.read_text())
    except Exception as exc:  # pylint: disable=broad-except
        report.fail(rel, 'not valid YAML: %s' % exc)
        return None


def _check_documents(path, rel, report, what, validate, unstored=None):
    """Validate every document of a multi-document YAML file; an empty file is a failure.

    *validate* None (no schema store): the documents are parsed and counted as not schema-checked.
    *unstored*: tells why a document has no schema in the store (schemacheck.UNSTORED_CRD_GROUPS);
    such a document is counted as not schema-checked, its gap named in the summary.
    """
    docs = _read_docs(path, rel, report)
    if docs is None:
        return
    if not docs:
        report.fail(rel, 'no documents')
    for i, doc in enumerate(docs):
        gap = unstored(doc) if unstored else None
        if gap:
            # Counted and named, never passed silently: the object itself is still checked for shape.
            report.count(what, schema_checked=False)
            report.gaps.add(gap.split(' in the store')[0].replace('no upstream schema of ', ''))
            meta = doc.get('metadata') if isinstance(doc.get('metadata'), dict) else {}
            if not doc.get('kind') or not meta.get('name'):
                report.fail('%s [%s]' % (rel, _label(i, doc)), 'kind and metadata.name are required')
            continue
        report.count(what, schema_checked=validate is not None)
        for err in validate(doc) if validate else ():
            report.fail('%s [%s]' % (rel, _label(i, doc)), err)


def check_talos_file(store, path, rel, report):
    _check_documents(path, rel, report, 'talos documents', store.talos_document if store else None)


def check_manifest_file(store, path, rel, report):
    _check_documents(path, rel, report, 'manifests', store.manifest if store else None,
                     store.unstored if store else None)


def check_values_file(store, path, rel, comp, report):
    docs = _read_docs(path, rel, report)
    if docs is None:
        return
    if len(docs) > 1:
        report.fail(rel, 'a values file must be one YAML document, found %d' % len(docs))
        return
    values = docs[0] if docs else {}
    chart, version = comp.get('chart'), comp.get('version')
    if not chart or not version:
        report.fail(rel, 'plan.json component %s names this values file but no chart/version' % comp.get('name'))
        return
    if store is None:
        if not isinstance(values, dict):
            report.fail(rel, 'values are a %s, not a mapping' % type(values).__name__)
        report.count('values files', schema_checked=False)
        return
    report.count('values files')
    errors, notes = store.values(values, chart, version)
    for err in errors:
        report.fail('%s [%s %s]' % (rel, chart, version), err)
    report.notes.extend('%s: %s' % (rel, n) for n in notes)


def _plaintext_values(node, regex, inside, where):
    """Key paths of values sops should have encrypted but did not (empty strings stay as they are)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = '%s.%s' % (where, key) if where else str(key)
            enc = inside or regex is None or bool(regex.search(str(key)))
            if str(key).endswith('_unencrypted'):
                continue
            found.extend(_plaintext_values(value, regex, enc, here))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_plaintext_values(value, regex, inside, '%s[%d]' % (where, i)))
    elif inside and node not in (None, '') and not (isinstance(node, str) and node.startswith('ENC[')):
        found.append(where)
    return found


def is_sops_documents(docs):
    return bool(docs) and all(isinstance(d, dict) and isinstance(d.get('sops'), dict) for d in docs)


def check_sops_file(store, docs, rel, report):
    """Every value sops encrypts is ENC[...]; a SOPS Kubernetes manifest is also schema-checked."""
    for i, doc in enumerate(docs):
        meta = doc['sops']
        if not meta.get('age'):
            report.fail('%s [doc %d]' % (rel, i), 'SOPS file without age recipients')
        regex = re.compile(meta['encrypted_regex']) if meta.get('encrypted_regex') else None
        body = dict((k, v) for k, v in doc.items() if k != 'sops')
        plain = _plaintext_values(body, regex, False, '')
        if plain:
            report.fail('%s [%s]' % (rel, _label(i, body)), 'plaintext values in a SOPS file: %s' % ', '.join(plain))
        if regex is not None and 'apiVersion' in body and 'kind' in body:
            report.count('manifests', schema_checked=store is not None)
            for err in store.manifest(body) if store else ():
                report.fail('%s [%s]' % (rel, _label(i, body)), err)
        else:
            report.notes.append('%s [doc %d]: SOPS-encrypted, not schema-checked' % (rel, i))


def check_kustomize_file(path, docs, rel, report):
    """A component's KSOPS directory: the kustomization's generators and the generator's files exist."""
    report.count('kustomize files', schema_checked=False)
    for doc in docs:
        if doc.get('kind') == 'Kustomization':
            listed = doc.get('generators') or []
            what = 'generator'
        else:
            listed = doc.get('files') or []
            what = 'SOPS file'
            annotations = (doc.get('metadata') or {}).get('annotations') or {}
            if 'path: ksops' not in str(annotations.get('config.kubernetes.io/function', '')):
                report.fail(rel, 'the ksops generator does not run the ksops exec function')
        if not listed:
            report.fail(rel, 'lists no %s' % what)
        for name in listed:
            target = path.parent / name
            if not target.is_file():
                report.fail(rel, '%s %s does not exist' % (what, name))
            elif what == 'SOPS file' and not is_sops_documents(load_documents(target.read_text())):
                report.fail(rel, '%s is not a SOPS file' % name)


def _kustomize_kind(docs):
    return bool(docs) and all(isinstance(d, dict) and (
        str(d.get('apiVersion', '')).startswith('kustomize.config.k8s.io/')
        or (d.get('apiVersion') == 'viaduct.ai/v1' and d.get('kind') == 'ksops')) for d in docs)


# Backstage catalog entities and software templates (L7's catalog): not Kubernetes objects, no schema in
# the store; apiVersion, kind and a DNS-safe metadata.name are checked here, the references between the
# entities by the catalog generator and tests/integration/test_l7_render.py.
BACKSTAGE_APIS = {'backstage.io/v1alpha1', 'scaffolder.backstage.io/v1beta3'}
BACKSTAGE_KINDS = {'Component', 'Resource', 'System', 'Domain', 'Group', 'User', 'Location', 'Template', 'API'}
_ENTITY_NAME_RE = re.compile(r'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$')


def _backstage_kind(docs):
    return bool(docs) and all(isinstance(d, dict) and d.get('apiVersion') in BACKSTAGE_APIS for d in docs)


def check_backstage_file(docs, rel, report):
    report.count('Backstage catalog files', schema_checked=False)
    for doc in docs:
        name = (doc.get('metadata') or {}).get('name')
        if doc.get('kind') not in BACKSTAGE_KINDS:
            report.fail(rel, 'kind %r is not a Backstage catalog kind' % doc.get('kind'))
        if (doc.get('kind') == 'Template') != (doc.get('apiVersion') == 'scaffolder.backstage.io/v1beta3'):
            report.fail(rel, '%s %s has apiVersion %s' % (doc.get('kind'), name, doc.get('apiVersion')))
        if not isinstance(name, str) or not _ENTITY_NAME_RE.match(name):
            report.fail(rel, 'metadata.name %r is not DNS-safe' % (name,))


def check_json_file(path, rel, report):
    report.count('json files')
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        report.fail(rel, 'not valid JSON: %s' % exc)
        return
    if not isinstance(data, dict):
        report.fail(rel, 'top level must be a JSON object')


def verify(build, layer=None, store=None, report=None):
    """Validate *build* (a Path to build/<cell>); return the Report. *store* None: no schema checks."""
    report = report or Report()
    build = Path(build)
    plan_path = build / 'plan.json'
    plan = json.loads(plan_path.read_text())
    components = [c for c in plan.get('components', []) if isinstance(c, dict)]
    layers = [layer] if layer else sorted({c.get('layer') for c in components if c.get('layer')} | {'l0'})
    claimed = set()

    def _file(relpath, comp_name, what):
        path = build / relpath
        claimed.add(relpath)
        if not path.is_file():
            report.fail(relpath, 'named as %s of component %s in plan.json but missing' % (what, comp_name))
            return None
        return path

    for comp in components:
        if comp.get('layer') not in layers:
            continue
        name = comp.get('name')
        if comp.get('values_file'):
            path = _file(comp['values_file'], name, 'values_file')
            if path:
                check_values_file(store, path, comp['values_file'], comp, report)
        for rel in comp.get('manifests') or []:
            path = _file(rel, name, 'manifest')
            if path:
                check_manifest_file(store, path, rel, report)
        if comp.get('application'):
            path = _file(comp['application'], name, 'application')
            if path:
                check_manifest_file(store, path, comp['application'], report)

    files = []
    for lay in layers:
        root = build / lay
        if root.is_dir():
            files.extend(p for p in sorted(root.rglob('*')) if p.is_file())
    if 'l0' in layers:
        talos_files = sorted((build / 'talos' / 'patches').glob('*.yaml')) + sorted((build / 'talos' / 'nodes').glob('*.yaml'))
        if not talos_files:
            report.fail('talos/', 'no Talos patches rendered (talos/patches/*.yaml, talos/nodes/*.yaml)')
        for path in talos_files:
            rel = str(path.relative_to(build))
            claimed.add(rel)
            check_talos_file(store, path, rel, report)
        for path in sorted((build / 'terraform').glob('*.json')):
            rel = str(path.relative_to(build))
            claimed.add(rel)
            check_json_file(path, rel, report)
        files.extend(p for d in ('talos', 'terraform') if (build / d).is_dir()
                     for p in sorted((build / d).rglob('*')) if p.is_file())

    for path in files:
        rel = str(path.relative_to(build))
        if path.suffix == '.age':
            report.fail(rel, 'a legacy age file: secrets are SOPS files now (an apply run migrates it)')
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            report.fail(rel, 'binary file in the build tree')
            continue
        if _PRIVATE_KEY_RE.search(text):
            report.fail(rel, 'private key material in the build tree')
        if '/skeleton/' in rel:
            # The files of a Backstage software template: Nunjucks templates that Backstage renders.
            claimed.add(rel)
            report.count('software template skeleton files', schema_checked=False)
            continue
        if rel not in claimed and path.suffix in ('.yaml', '.yml'):
            docs = _read_docs(path, rel, report)
            if docs is None:
                continue
            if is_sops_documents(docs):
                claimed.add(rel)
                check_sops_file(store, docs, rel, report)
                continue
            if _kustomize_kind(docs):
                claimed.add(rel)
                check_kustomize_file(path, docs, rel, report)
                continue
            if _backstage_kind(docs):
                claimed.add(rel)
                check_backstage_file(docs, rel, report)
                continue
            claimed.add(rel)
            check_manifest_file(store, path, rel, report)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('build', help='the rendered cell directory, e.g. build/cell')
    parser.add_argument('--layer', help='only this layer (l0, l1, ...); default: all')
    parser.add_argument('--schemas', help='schema store (default: $CELLPLATFORM_SCHEMAS, then .cache/schemas; '
                        'with neither the schema checks are skipped and counted)')
    parser.add_argument('--kubernetes-version', default=None,
                        help='Kubernetes minor for built-in kinds (default: plan.json cell, else %s)'
                        % DEFAULT_KUBERNETES_VERSION)
    parser.add_argument('-q', '--quiet', action='store_true', help='print failures only')
    args = parser.parse_args(argv)

    build = Path(args.build)
    if not (build / 'plan.json').is_file():
        print('verify_build: %s has no plan.json; render the cell first' % build, file=sys.stderr)
        return 2
    kube = args.kubernetes_version
    if not kube:
        cell = json.loads((build / 'plan.json').read_text()).get('cell') or {}
        kube = str((cell.get('talos') or {}).get('kubernetes_version') or DEFAULT_KUBERNETES_VERSION)
    kube = '.'.join(kube.lstrip('v').split('.')[:2])
    unavailable = None
    try:
        store = SchemaStore(args.schemas, kubernetes_version=kube)
    except SchemaStoreError as exc:
        print('verify_build: %s' % exc, file=sys.stderr)
        return 2
    except SchemaStoreUnavailable as exc:
        store, unavailable = None, exc
    report = verify(build, args.layer, store)
    if not args.quiet:
        for note in report.notes:
            print('note: %s' % note)
    for failure in report.failures:
        print('FAIL %s' % failure)
    what = '%s%s' % (build, ' layer %s' % args.layer if args.layer else '')
    if store is None:
        skipped = sum(report.unchecked.values())
        record_skip(skipped, 'rendered documents', 'verify_build %s' % what)
        detail = ', '.join('%d %s' % (n, kind) for kind, n in sorted(report.unchecked.items())) or 'nothing'
        print('verify_build: %s: schema checks SKIPPED, %d documents not schema-checked (%s): %s; '
              'other checks: %d failure(s)' % (what, skipped, detail, unavailable, len(report.failures)))
    else:
        summary = ', '.join('%d %s' % (n, kind) for kind, n in sorted(report.checked.items())) or 'nothing'
        gaps = ''
        if report.unchecked:
            gaps = '; not schema-checked, no upstream schema stored: %s (%s)' % (
                ', '.join('%d %s' % (n, kind) for kind, n in sorted(report.unchecked.items())),
                ', '.join(sorted(report.gaps)))
        print('verify_build: %s: %s checked (schemas %s, Kubernetes %s)%s: %d failure(s)' % (
            what, summary, store.root, kube, gaps, len(report.failures)))
    return 1 if report.failures else 0


if __name__ == '__main__':
    sys.exit(main())
