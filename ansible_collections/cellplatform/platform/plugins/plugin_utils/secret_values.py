# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values out of a decrypted secrets mapping (the platform secrets, the Talos bundle), by key.

Pure: the caller decrypts (``community.sops.sops`` in tasks, ``module_utils/sops.decrypt_file``
in Python) and hands the mapping in; nothing here touches a file. Error messages name the
missing keys, the keys that are there, the file and the fix; never a value.
"""

from __future__ import annotations

from collections.abc import Mapping

MISSING = object()


class SecretValueError(ValueError):
    """A key that is not in the mapping, or a value that cannot be used (never shows values)."""


def lookup(mapping, key):
    """The value at ``key`` (a dotted path into nested mappings) or MISSING."""
    node = mapping
    for part in str(key).split("."):
        node = node.get(part, MISSING) if isinstance(node, Mapping) else MISSING
        if node is MISSING:
            break
    return node


def check_mapping(mapping, source):
    if not isinstance(mapping, Mapping):
        raise SecretValueError(
            "%s must hold a YAML mapping of secret names to values, found %s; rewrite it as \"name: value\" lines "
            "(sops edit %s)" % (source, type(mapping).__name__, source))
    return mapping


def pick(mapping, keys, source, optional=False):
    """The values of ``keys`` in ``mapping``; a missing key is an error unless ``optional`` (then MISSING)."""
    check_mapping(mapping, source)
    values = [lookup(mapping, key) for key in keys]
    missing = [str(key) for key, value in zip(keys, values) if value is MISSING]
    if missing and not optional:
        raise SecretValueError(
            "%s %s not in %s (top-level keys there: %s); add %s with sops edit %s, or fix the key name"
            % (", ".join(missing), "is" if len(missing) == 1 else "are", source,
               ", ".join(sorted(str(k) for k in mapping)) or "none", "it" if len(missing) == 1 else "them", source))
    return values


def as_string(value, key, source):
    """A Secret's stringData value: strings as they are, numbers and booleans as YAML writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise SecretValueError("%s in %s is a %s; a Secret value must be a string (quote it in the file)"
                           % (key, source, type(value).__name__))
