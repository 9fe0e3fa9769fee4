# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cell's network policies from every layer's component records (filter network_policies)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.plugin_utils.network_policy import (
    NetworkPolicyError, component_needs, matrix_markdown, policy_documents)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.render import to_plain


def network_policies(layers, cell, extra_namespaces=None):
    """{needs, namespaces, documents, matrix} of the records of ``layers`` ([{layer, records}]).

    Only the records' name, enabled, namespace, pod_security and network are read (lazily templated
    records stay unevaluated otherwise).
    """
    try:
        needs = component_needs(layers)
        plain_cell = to_plain(cell)
        extra = [str(ns) for ns in extra_namespaces or []]
        by_ns = policy_documents(needs, plain_cell, extra)
        return {
            "needs": needs,
            "namespaces": list(by_ns),
            "documents": [doc for docs in by_ns.values() for doc in docs],
            "matrix": matrix_markdown(needs, plain_cell, by_ns, extra),
        }
    except NetworkPolicyError as exc:
        raise AnsibleFilterError("network_policies: %s" % exc)


class FilterModule:
    def filters(self):
        return {"network_policies": network_policies}
