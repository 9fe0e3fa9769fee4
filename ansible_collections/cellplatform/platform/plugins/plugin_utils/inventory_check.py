# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole inventory check of the preflight, pure: unknown names, then every rule of the cell model.

``check_inventory(variables, hosts, layers, mode, host_names)`` -> ``(problems, warnings)``:

* unknown names, generated from the inventory schema (``cell_schema.INVENTORY_SCHEMA``): a
  ``cellplatform_*`` variable the schema does not declare, and a key inside a ``cellplatform_*``
  mapping that its ``options`` do not declare, each named with the closest valid name (difflib).
  A new schema entry (or a new key in its ``options``) is covered without touching this file;
* every rule of ``cell_model.validate`` (problems) and ``cell_model.advise`` (warnings).

``cellplatform.platform.cell_preflight`` calls it; so do the tests, on the same inputs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import json

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    Mapping = dict  # pylint: disable=invalid-name

from ansible_collections.cellplatform.platform.plugins.module_utils.cell_model import advise, validate
from ansible_collections.cellplatform.platform.plugins.plugin_utils.cell_schema import INVENTORY_SCHEMA

# cellplatform_* names that are not inventory inputs: the cell model the preflight sets, and the
# layer selection of playbooks/validate.yml.
NOT_INPUTS = frozenset(("cellplatform_cell", "cellplatform_validate_layers"))
DOCS = "docs/variables.md"


PREFIX = "cellplatform_"


def _closest(name, candidates):
    """The valid name closest to ``name`` (difflib), compared without the shared cellplatform_ prefix."""
    def bare(text):
        return text[len(PREFIX):] if text.startswith(PREFIX) else text
    by_bare = dict((bare(c), c) for c in candidates)
    found = difflib.get_close_matches(bare(name), sorted(by_bare), n=1, cutoff=0.6)
    return by_bare[found[0]] if found else None


def _shown(value):
    """A short form of a value for a message (JSON, at most 60 characters)."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):  # pragma: no cover - defensive
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(field, name, value, candidates, where, list_candidates):
    """The problem of one unknown name, with the closest valid one (difflib) when there is one."""
    closest = _closest(name, candidates)
    valid = (" (valid: %s)" % ", ".join(sorted(candidates))) if list_candidates else " (%s lists them all)" % DOCS
    problem = "is set under an unknown %s" % where
    if closest:
        return {"field": field, "value": _plain(value),
                "message": "%s: %s %s (did you mean %s?)" % (field, _shown(value), problem, closest),
                "fix": "rename %s to %s%s, or remove it." % (name, closest, valid)}
    return {"field": field, "value": _plain(value), "message": "%s: %s %s" % (field, _shown(value), problem),
            "fix": "remove %s or correct its name%s." % (name, valid)}


def _plain(value):
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):  # pragma: no cover - defensive
        return str(value)


def _nested(field, value, spec):
    """Unknown keys inside ``value`` (a mapping or a list of mappings) against ``spec['options']``."""
    options = spec.get("options")
    if not options:
        return []
    problems = []
    items = []
    if spec.get("type") == "dict" and isinstance(value, Mapping):
        items = [(field, value)]
    elif spec.get("type") == "list" and spec.get("elements") == "dict" and isinstance(value, (list, tuple)):
        items = [("%s[%d]" % (field, idx), item) for idx, item in enumerate(value) if isinstance(item, Mapping)]
    for prefix, mapping in items:
        for key in sorted(mapping, key=str):
            sub = "%s.%s" % (prefix, key)
            if key not in options:
                problems.append(_unknown(sub, str(key), mapping[key], options, "key of %s" % prefix, True))
            else:
                problems.extend(_nested(sub, mapping[key], options[key]))
    return problems


def unknown_names(variables, host_names=None, schema=None):
    """Problems for every name the schema does not know.

    ``variables``: the cell-wide ``cellplatform_*`` variables (as the preflight collected them).
    ``host_names``: ``{host: {name: value}}`` of the ``cellplatform_*`` variables set on that host only.
    """
    schema = INVENTORY_SCHEMA if schema is None else schema
    cell_inputs = dict((name, spec) for name, spec in schema.items() if spec.get("scope") != "host")
    host_inputs = dict((name, spec) for name, spec in schema.items() if spec.get("scope") == "host")
    problems = []
    for name in sorted(variables or {}):
        if name in NOT_INPUTS or name in host_inputs:
            continue
        if name not in cell_inputs:
            problems.append(_unknown(name, name, variables[name], cell_inputs, "cellplatform_* name", False))
        else:
            problems.extend(_nested(name, variables[name], cell_inputs[name]))
    for host in sorted(host_names or {}):
        for name in sorted(host_names[host]):
            if name in NOT_INPUTS or name in schema:
                continue
            problems.append(_unknown("%s.%s" % (host, name), name, host_names[host][name], host_inputs,
                                     "host variable name", True))
    return problems


def check_inventory(variables, hosts, layers=None, mode=None, host_names=None):
    """``(problems, warnings)`` of the inventory: unknown names first, then the cell model's rules."""
    problems = unknown_names(variables, host_names)
    problems.extend(validate(variables, hosts, layers=layers, mode=mode))
    warnings = advise(variables, layers=layers, mode=mode)
    return problems, warnings
