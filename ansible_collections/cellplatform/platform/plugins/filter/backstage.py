# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The developer portal's generated files: the Backstage catalog of the cell with its software template
(filter backstage_catalog) and the Argo CD objects of the template's services (filter backstage_service_apps)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.plugin_utils.backstage_catalog import (
    CatalogError,
    catalog_files,
    service_applications,
    service_template,
)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.render import to_plain


def backstage_catalog(plan, records, cell, options, template):
    """render_files entries of the catalog (from plan.json and the L7 records) and the software template."""
    try:
        options, template = to_plain(options), to_plain(template)
        template = dict(template, dir=options["dir"], owner=options["owner"])
        return catalog_files(to_plain(plan or {}), to_plain(records or []), to_plain(cell), options,
                             service_template(template))
    except (CatalogError, KeyError) as exc:
        raise AnsibleFilterError("backstage_catalog: %s" % (exc if isinstance(exc, CatalogError)
                                                            else "option %s is required" % exc))


def backstage_service_apps(options):
    """The AppProject and ApplicationSet that deploy the services the software template creates."""
    try:
        return service_applications(to_plain(options))
    except KeyError as exc:
        raise AnsibleFilterError("backstage_service_apps: option %s is required" % exc)


class FilterModule:
    def filters(self):
        return {"backstage_catalog": backstage_catalog, "backstage_service_apps": backstage_service_apps}
