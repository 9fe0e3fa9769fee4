# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""component_run: what a run applies, and bad records as filter errors that name the component."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.filter.component import component_run

RECORDS = [
    {"name": "kyverno", "namespace": "kyverno", "chart": {"repo": "https://k", "name": "kyverno", "version": "3.9.0"}},
    {"name": "kyverno-policies", "namespace": "kyverno", "tags": ["kyverno", "kyverno_policies"], "manifests": [{}],
     "depends_on": ["kyverno"]},
    {"name": "linkerd-crds", "namespace": "linkerd", "tags": ["linkerd"], "enabled": "False", "manifests": [{}]},
]


def test_tags_and_enabled_decide():
    assert [r["name"] for r in component_run(RECORDS, "l2")] == ["kyverno", "kyverno-policies"]
    assert [r["name"] for r in component_run(RECORDS, "l2", ["kyverno_policies"], [])] == ["kyverno-policies"]
    assert component_run(RECORDS, "l2", ["l1"], []) == []
    assert component_run(None, "l2") == []


def test_bad_records_are_filter_errors():
    with pytest.raises(AnsibleFilterError, match="component_run: component kyverno says layer l2 but is listed by layer l3"):
        component_run([dict(RECORDS[0], layer="l2")], "l3")


def test_each_record_carries_the_routes_of_its_uis():
    cell = {"dns_domain": "cell.lan", "gateway": {"name": "platform", "namespace": "gateway", "https_listener": "https"}}
    ui = dict(RECORDS[0], ui=[{"service": "kyverno-ui", "port": 8080, "host": "policies"}])
    run = component_run([ui, RECORDS[1]], "l2", ["all"], [], cell)
    assert [r["metadata"]["name"] for r in run[0]["route_documents"]] == ["policies-ui"]
    assert run[0]["route_documents"][0]["spec"]["hostnames"] == ["policies.cell.lan"]
    assert run[1]["route_documents"] == []
    with pytest.raises(AnsibleFilterError, match="component_run: component kyverno publishes a UI"):
        component_run([ui], "l2", ["all"], [], None)
