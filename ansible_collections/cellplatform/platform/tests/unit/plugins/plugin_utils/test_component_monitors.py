# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Component records, field ``monitors``: the prometheus-operator kinds a component creates put their
CRDs in front of its release, need a metrics ingress rule, and show in the plan and the Application."""

from __future__ import annotations

import pytest

from ansible_collections.cellplatform.platform.plugins.plugin_utils import component as comp
from ansible_collections.cellplatform.platform.tests.unit.plugins.plugin_utils.test_component import GITOPS, METALLB

METRICS = {"ingress": [{"peer": "monitoring", "ports": [7472], "why": "controller and speaker metrics"}]}


def test_monitors_require_their_crds_before_the_release_once():
    rec = comp.normalise(dict(METALLB, monitors=["ServiceMonitor", "PrometheusRule", "ServiceMonitor"],
                              requires_crds=["servicemonitors.monitoring.coreos.com", "other.example.io"],
                              network=METRICS), "l1")
    assert rec["monitors"] == ["ServiceMonitor", "PrometheusRule"]
    assert rec["requires_crds"] == ["servicemonitors.monitoring.coreos.com", "other.example.io",
                                    "prometheusrules.monitoring.coreos.com"]


def test_a_record_without_monitors_is_unchanged():
    rec = comp.normalise(METALLB, "l1")
    assert rec["monitors"] == [] and rec["requires_crds"] == []
    assert "monitors" not in comp.plan_entry(rec, GITOPS)
    assert "SkipDryRunOnMissingResource=true" in comp.application(rec, GITOPS)["spec"]["syncPolicy"]["syncOptions"]
    bare = comp.normalise(dict(METALLB, manifests=[]), "l1")
    assert "SkipDryRunOnMissingResource=true" not in comp.application(bare, GITOPS)["spec"]["syncPolicy"]["syncOptions"]


def test_plan_entry_and_application_of_a_monitored_component():
    rec = comp.normalise(dict(METALLB, manifests=[], monitors=["PodMonitor"], network=METRICS), "l1")
    assert comp.plan_entry(rec, GITOPS)["monitors"] == ["PodMonitor"]
    # the chart renders custom resources of CRDs another Application installs
    assert "SkipDryRunOnMissingResource=true" in comp.application(rec, GITOPS)["spec"]["syncPolicy"]["syncOptions"]


@pytest.mark.parametrize("record,message", [
    (dict(METALLB, monitors=["Servicemonitor"]), "monitors lists 'Servicemonitor'; known kinds: ServiceMonitor, "
                                                 "PodMonitor, PrometheusRule, Probe, ScrapeConfig"),
    (dict(METALLB, monitors="ServiceMonitor"), "field monitors must be list"),
    (dict(METALLB, monitors=["ServiceMonitor", "PodMonitor"]),
     "monitors lists ServiceMonitor and PodMonitor, but network.ingress has no rule from peer monitoring"),
    (dict(METALLB, monitors=["PodMonitor"], network={"ingress": [{"peer": "gateway", "ports": [80]}]}),
     "network.ingress has no rule from peer monitoring"),
])
def test_bad_monitors_are_refused(record, message):
    with pytest.raises(comp.ComponentError) as exc:
        comp.normalise(record, "l1")
    assert message in str(exc.value)


def test_rules_alone_need_no_scrape_rule():
    rec = comp.normalise(dict(METALLB, monitors=["PrometheusRule"]), "l1")
    assert rec["requires_crds"] == ["prometheusrules.monitoring.coreos.com"]
