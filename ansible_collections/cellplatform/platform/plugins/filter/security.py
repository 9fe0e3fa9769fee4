# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cell's network policies from every layer's component records (filter network_policies)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.plugin_utils.component import ComponentError, namespace_creators
from ansible_collections.cellplatform.platform.plugins.plugin_utils.network_policy import (
    NetworkPolicyError, component_needs, matrix_markdown, policy_documents)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.render import to_plain


def network_policies(layers, cell, extra_namespaces=None, layer=None):
    """{needs, namespaces, documents, matrix, later_namespaces} of the records of ``layers`` ([{layer, records}]).

    Only the records' name, enabled, namespace, namespace_create, namespace_labels, pod_security and
    network are read (lazily templated records stay unevaluated otherwise). ``later_namespaces``: the
    Namespaces (as their own layers render them) of the policed namespaces that a layer after
    ``layer`` creates, in layer order; the policies' layer creates them first at apply time.
    """
    try:
        needs = component_needs(layers)
        plain_cell = to_plain(cell)
        extra = [str(ns) for ns in extra_namespaces or []]
        by_ns = policy_documents(needs, plain_cell, extra)
        creators = namespace_creators(sorted(layers or [], key=lambda entry: str(entry["layer"])))
        # in layer order, and within a layer in the policies' order (sorted() is stable)
        later = [] if layer is None else [
            to_plain(creators[ns]["document"]) for ns in sorted(
                (ns for ns in by_ns if ns in creators and creators[ns]["layer"] > str(layer)),
                key=lambda ns: creators[ns]["layer"])]
        return {
            "needs": needs,
            "namespaces": list(by_ns),
            "documents": [doc for docs in by_ns.values() for doc in docs],
            "matrix": matrix_markdown(needs, plain_cell, by_ns, extra),
            "later_namespaces": later,
        }
    except (NetworkPolicyError, ComponentError) as exc:
        raise AnsibleFilterError("network_policies: %s" % exc)


class FilterModule:
    def filters(self):
        return {"network_policies": network_policies}
