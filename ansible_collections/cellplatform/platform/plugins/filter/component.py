# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The component records a run applies (filter component_run) and their Secrets (filter component_secrets)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.plugin_utils.component import (
    ComponentError,
    namespace_document,
    records_for,
    route_documents,
    secret_documents,
    select_for_run,
)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.render import to_plain


def component_run(records, layer, run_tags=None, skip_tags=None, cell=None):
    """Normalised, enabled records of ``layer`` that ``--tags``/``--skip-tags`` select, in order.

    Each record also carries ``namespace_document``: the Namespace the render step writes to
    ``<layer>/<name>/namespace.yaml`` (None when the component does not create its namespace),
    and ``route_documents``: the HTTPRoutes of its UIs (``<layer>/<name>/routes.yaml``, built from
    the cell model's shared Gateway and DNS domain), so the apply sends exactly what was
    rendered, in check mode too.
    """
    try:
        selected = select_for_run(records_for(to_plain(records or []), layer), run_tags, skip_tags)
        plain_cell = to_plain(cell) if cell is not None else None
        for rec in selected:
            rec["namespace_document"] = namespace_document(rec) if rec["namespace_create"] else None
            rec["route_documents"] = route_documents(rec, plain_cell)
    except ComponentError as exc:
        raise AnsibleFilterError("component_run: %s" % exc)
    return selected


def component_secrets(component, platform, source, files=None, secrets_dir=None):
    """The Secret objects of a (normalised) component, values from the decrypted platform secrets.

    ``platform`` is the mapping ``community.sops.sops`` decrypted from ``source`` (its path, named in
    errors); ``files`` maps the generated SOPS files its Secrets name (``file``) to their decrypted
    mappings, in ``secrets_dir``. The same objects the render step writes SOPS-encrypted for Argo CD.
    """
    try:
        generated = dict((str(name), (to_plain(mapping), "%s/%s" % (secrets_dir, name)))
                         for name, mapping in (to_plain(files) or {}).items())
        return secret_documents(to_plain(component), to_plain(platform), str(source), generated)
    except ComponentError as exc:
        raise AnsibleFilterError("component_secrets: %s" % exc)


class FilterModule:
    def filters(self):
        return {"component_run": component_run, "component_secrets": component_secrets}
