# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/cell_model.py, observability (L4): the Talos log receiver's address, retention and
volume sizes, whether the volumes fit the storage, and the reserved LoadBalancer addresses."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.cellplatform.platform.plugins.module_utils import cell_model as cm
from ansible_collections.cellplatform.platform.tests.unit.plugins.module_utils.test_cell_model import (
    fields, reference_hosts)
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS


@pytest.fixture
def ref():
    return copy.deepcopy(REFERENCE_VARS), reference_hosts()


def by_field(problems):
    return {p["field"]: p for p in problems}


def test_model_of_the_reference_cell(ref):
    cell = cm.build_cell_model(*ref)
    obs = cell["observability"]
    assert obs == {
        "namespace": "observability", "monitoring_namespace": "monitoring",
        "log_receiver": {"address": "192.168.100.201", "port": 5170, "endpoint": "tcp://192.168.100.201:5170/"},
        "otlp": {"service": "opentelemetry-collector",
                 "grpc": "opentelemetry-collector.observability.svc.cluster.local:4317",
                 "http": "http://opentelemetry-collector.observability.svc.cluster.local:4318"},
        "prometheus": {"retention_days": 15, "volume_gib": 15}, "alertmanager": {"volume_gib": 1},
        "loki": {"retention_days": 14, "volume_gib": 15}, "tempo": {"retention_days": 7, "volume_gib": 5},
        "grafana": {"volume_gib": 1},
    }
    # the Gateway's and the receiver's addresses are reserved; MetalLB hands out the rest
    assert cell["lb_reserved"] == {
        "addresses": [{"address": "192.168.100.200", "owner": "gateway"},
                      {"address": "192.168.100.201", "owner": "log-receiver"}],
        "auto_assign_ranges": ["192.168.100.202-192.168.100.250"]}


def test_observability_is_optional_below_l4_and_required_with_it(ref):
    variables, hosts = ref
    del variables["cellplatform_observability"]
    assert cm.validate(variables, hosts, layers=["l0", "l1", "l2"]) == []
    assert cm.build_cell_model(variables, hosts)["observability"] is None
    assert fields(cm.validate(variables, hosts, layers=["l4"])) == ["cellplatform_observability"]
    assert fields(cm.validate(variables, hosts)) == ["cellplatform_observability"]


@pytest.mark.parametrize("address,problem", [
    ("192.168.100.200", "is the shared Gateway's address (cellplatform_gateway.address)"),
    ("192.168.100.50", "is the API VIP"),
    ("192.168.100.61", "is also the address of node worker-1"),
    ("192.168.100.180", "is outside the LoadBalancer pool 192.168.100.200-192.168.100.250 (MetalLB assigns only pool "
                        "addresses)"),
    ("10.0.0.5", "is outside the node network 192.168.100.0/24"),
    ("192.168.100.300", "is not a valid IPv4 address"),
])
def test_log_receiver_address_is_checked_with_l0(ref, address, problem):
    variables, hosts = ref
    variables["cellplatform_observability"]["log_receiver"]["address"] = address
    problems = cm.validate(variables, hosts, layers=["l0"])
    assert fields(problems) == ["cellplatform_observability.log_receiver.address"]
    assert problems[0]["message"] == "cellplatform_observability.log_receiver.address: %s %s" % (address, problem)
    assert problems[0]["fix"] == ("pick a free address inside the LoadBalancer pool 192.168.100.200-192.168.100.250 "
                                  "other than the Gateway's, e.g. 192.168.100.250.")


def test_log_receiver_needs_an_address_and_a_port_number(ref):
    variables, hosts = ref
    variables["cellplatform_observability"]["log_receiver"] = {"port": "5170"}
    assert fields(cm.validate(variables, hosts, layers=["l0"])) == [
        "cellplatform_observability.log_receiver.port", "cellplatform_observability.log_receiver.address"]


def test_retention_and_sizes_are_l4_checks_reported_at_once(ref):
    variables, hosts = ref
    obs = variables["cellplatform_observability"]
    obs["prometheus"]["retention_days"] = 0
    obs["tempo"]["retention_days"] = 400
    obs["loki"]["volume_gib"] = "15Gi"
    del obs["grafana"]
    assert cm.validate(variables, hosts, layers=["l0"]) == []
    problems = by_field(cm.validate(variables, hosts, layers=["l4"]))
    assert sorted(problems) == ["cellplatform_observability.grafana", "cellplatform_observability.loki.volume_gib",
                                "cellplatform_observability.prometheus.retention_days",
                                "cellplatform_observability.tempo.retention_days"]
    assert "out of range (allowed between 1 and 365)" in problems["cellplatform_observability.tempo.retention_days"][
        "message"]
    assert problems["cellplatform_observability.grafana"]["fix"] == \
        "set cellplatform_observability.grafana: {volume_gib: <GiB>}."


def test_reference_volumes_fit_longhorn_on_the_worker_data_disks(ref):
    variables, hosts = ref
    cap = cm.storage_capacity(variables, hosts)
    # 100 GiB data disk per worker VM, 10% reserved by Longhorn, three workers, three replicas
    assert cap == {"provider": "longhorn", "replicas": 3, "per_node_gib": 90, "nodes": 3, "total_gib": 270,
                   "basis": "a partition of the 100 GiB data disk of each worker VM, 10% of it reserved by "
                            "Longhorn"}
    assert cm.validate(variables, hosts) == []


def test_volumes_that_do_not_fit_the_storage_are_refused(ref):
    variables, hosts = ref
    variables["cellplatform_observability"]["prometheus"]["volume_gib"] = 60
    variables["cellplatform_observability"]["loki"]["volume_gib"] = 40
    problems = cm.validate(variables, hosts, layers=["l4"])
    # 60 + 1 + 40 + 5 + 1 = 107 GiB x 3 replicas = 321 GiB > 3 x 90 GiB
    assert fields(problems) == ["cellplatform_observability"]
    assert problems[0]["message"] == (
        "cellplatform_observability: prometheus 60 GiB, alertmanager 1 GiB, loki 40 GiB, tempo 5 GiB, grafana 1 GiB "
        "needs 321 GiB of storage (107 GiB x 3 replica(s)), more than the 270 GiB the 3 static worker(s) offer "
        "(90 GiB each: a partition of the 100 GiB data disk of each worker VM, 10% of it reserved by "
        "Longhorn)")
    # two replicas: 214 GiB fit
    variables["cellplatform_storage"]["longhorn"]["replicas"] = 2
    assert cm.validate(variables, hosts, layers=["l4"]) == []


def test_a_volume_larger_than_one_worker_is_refused(ref):
    variables, hosts = ref
    variables["cellplatform_storage"]["longhorn"]["replicas"] = 1
    variables["cellplatform_observability"]["loki"]["volume_gib"] = 95
    problems = cm.validate(variables, hosts, layers=["l4"])
    assert fields(problems) == ["cellplatform_observability.loki.volume_gib"]
    assert "does not fit on one static worker" in problems[0]["message"]
    assert problems[0]["fix"].startswith("lower volume_gib to at most 90,")


def test_capacity_follows_the_partition_bounds_and_the_provider(ref):
    variables, hosts = ref
    variables["cellplatform_storage"]["volume"]["max_size_gib"] = 60      # the cap wins over the data disk
    assert cm.storage_capacity(variables, hosts)["per_node_gib"] == 54
    variables["cellplatform_provisioner"] = "none"                       # bare metal: only the bounds are known
    del variables["cellplatform_storage"]["volume"]["max_size_gib"]
    assert cm.storage_capacity(variables, hosts)["per_node_gib"] == 45   # min_size_gib 50, 10% reserved
    variables["cellplatform_storage"] = {
        "provider": "local-path", "volume": {"type": "partition", "disk_selector": "!system_disk", "min_size_gib": 20}}
    cap = cm.storage_capacity(variables, hosts)
    assert (cap["replicas"], cap["per_node_gib"], cap["total_gib"]) == (1, 20, 60)
    # 37 GiB in one copy fit three 20 GiB volumes, but the 15 GiB Prometheus and Loki volumes each fit too
    assert cm.validate(variables, hosts, layers=["l4"]) == []
    variables["cellplatform_storage"]["volume"] = {"type": "directory"}   # no size of its own: nothing to check
    assert cm.storage_capacity(variables, hosts) is None
    variables["cellplatform_observability"]["prometheus"]["volume_gib"] = 5000
    assert cm.validate(variables, hosts, layers=["l4"]) == []


def test_a_broken_storage_setting_is_reported_once(ref):
    variables, hosts = ref
    variables["cellplatform_storage"]["longhorn"]["replicas"] = 5
    variables["cellplatform_observability"]["prometheus"]["volume_gib"] = 500
    assert fields(cm.validate(variables, hosts, layers=["l4"])) == ["cellplatform_storage.longhorn.replicas"]


@pytest.mark.parametrize("gateway,receiver,ranges", [
    ("192.168.100.200", "192.168.100.250", ["192.168.100.201-192.168.100.249"]),
    ("192.168.100.220", "192.168.100.210", ["192.168.100.200-192.168.100.209", "192.168.100.211-192.168.100.219",
                                            "192.168.100.221-192.168.100.250"]),
    ("192.168.100.250", "192.168.100.249", ["192.168.100.200-192.168.100.248"]),
])
def test_reserved_addresses_leave_the_auto_assigned_pool(ref, gateway, receiver, ranges):
    variables, hosts = ref
    variables["cellplatform_gateway"]["address"] = gateway
    variables["cellplatform_observability"]["log_receiver"]["address"] = receiver
    assert cm.validate(variables, hosts) == []
    reserved = cm.build_cell_model(variables, hosts)["lb_reserved"]
    assert reserved["auto_assign_ranges"] == ranges
    assert [r["owner"] for r in reserved["addresses"]] == ["gateway", "log-receiver"]


def test_observability_is_part_of_the_plan_cell(ref):
    assert {"observability", "lb_reserved"} <= set(cm.PLAN_CELL_KEYS)
