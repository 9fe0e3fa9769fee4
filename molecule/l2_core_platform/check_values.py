#!/usr/bin/env python3
"""Check that every key the L2 values files set exists in the pinned chart's default values.

    python check_values.py build/<cell> [--schemas DIR] [--layer l2]

The L2 charts (argo-cd, kyverno, kyverno-policies, linkerd-*) and L3's Harbor ship no
values.schema.json, so a typo such as ``admissionController.replica`` would be silently ignored by
Helm. This walks each values file of the layer (default l2) in plan.json and fails on any key path
that the chart's stored default
values.yaml (<schema store>/helm/<chart>/<version>/values.yaml) does not have, except below
maps the chart documents as free-form. Linkerd charts are stored as version-2.20 (the source tag
of the 2026.x edge charts); linkerd2-cni is not stored and is reported as unchecked.

The schema store is found as tests/support/schemacheck.py finds it (--schemas,
$CELLPLATFORM_SCHEMAS, .cache/schemas); without one the check is skipped, counted in the skip
ledger of scripts/run-tests.sh, and the script says so.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tests' / 'support'))
from schemacheck import (  # noqa: E402  pylint: disable=wrong-import-position
    SchemaStoreError, SchemaStoreUnavailable, schemas_root)

# Maps whose keys are free-form in the chart (config map contents, selectors, ...).
OPEN_PATHS = {
    'argo-cd': {('configs', 'cm'), ('configs', 'params')},
    'kyverno-policies': {('vpolExclude',), ('vpolExcludeByPolicy',)},
}
# Stored chart version to use when the pinned version is not stored.
VERSION_FALLBACK = {'linkerd-crds': 'version-2.20', 'linkerd-control-plane': 'version-2.20'}


def walk(values, defaults, path, open_paths, errors):
    if tuple(path) in open_paths or not isinstance(values, dict):
        return
    if not isinstance(defaults, dict) or not defaults:
        # A default of {} / null / a list is an open value: anything below it is the user's.
        return
    for key, val in values.items():
        here = path + [key]
        if key not in defaults:
            errors.append('.'.join(here))
            continue
        walk(val, defaults[key], here, open_paths, errors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('build')
    ap.add_argument('--schemas', default=None, help='schema store (default: $CELLPLATFORM_SCHEMAS, then .cache/schemas)')
    ap.add_argument('--layer', default='l2', help='the layer whose values files are checked (default l2)')
    args = ap.parse_args()
    plan = json.load(open(os.path.join(args.build, 'plan.json')))
    layer_values = [c for c in plan['components'] if c.get('layer') == args.layer and c.get('values_file')]
    try:
        schemas = str(schemas_root(args.schemas))
    except SchemaStoreError as exc:
        print('check_values: error: %s' % exc, file=sys.stderr)
        return 2
    except SchemaStoreUnavailable as exc:
        # Not added to the skip ledger: the same values files are counted by verify_build.py,
        # which the scenario runs on the same build (one document is counted once).
        print('check_values: SKIPPED, %d values file(s) not checked against the charts\' default values: %s'
              % (len(layer_values), exc))
        return 0
    index = json.load(open(os.path.join(schemas, 'INDEX.json')))['helm_charts']
    failures, checked = [], 0
    for comp in layer_values:
        chart, version = comp['chart'], str(comp['version'])
        stored = index.get(chart, {})
        entry = stored.get(version) or stored.get(VERSION_FALLBACK.get(chart, ''))
        if not entry:
            print('note: %s %s is not in the schema store; keys not checked' % (chart, version))
            continue
        defaults = yaml.safe_load(open(os.path.join(schemas, entry['values.yaml'])))
        values = yaml.safe_load(open(os.path.join(args.build, comp['values_file']))) or {}
        errors = []
        walk(values, defaults, [], OPEN_PATHS.get(chart, set()), errors)
        checked += 1
        for err in errors:
            failures.append('%s [%s %s]: key %s is not a value of the chart' % (
                comp['values_file'], chart, version, err))
    for line in failures:
        print('FAIL ' + line)
    print('check_values: %d values file(s) checked, %d failure(s)' % (checked, len(failures)))
    return 1 if failures or not checked else 0


if __name__ == '__main__':
    sys.exit(main())
