# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight and cell model of the resilience settings (L5; L0 reads whether L5 is on).

The negative inventories under tests/playbooks/inventories/l5_*.yml cover one rule each through
the preflight; these tests cover the model (what the roles read) and the layer selection.
"""

from __future__ import annotations

import copy

from ansible_collections.cellplatform.platform.plugins.module_utils import cell_model as cm
from ansible_collections.cellplatform.platform.tests.unit.plugins.module_utils.test_cell_model import reference_hosts
from ansible_collections.cellplatform.platform.tests.unit.plugins.reference_cell import REFERENCE_VARS

EXTERNAL = {"provider": "external", "bucket": "cell.backups",
            "external": {"endpoint": "https://s3.example.org:9000/", "region": "eu-central-1", "path_style": False,
                         "ca_bundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}


def _vars(**resilience):
    v = copy.deepcopy(REFERENCE_VARS)
    v["cellplatform_resilience"].update(resilience)
    return v


def test_seaweedfs_model_points_at_the_in_cell_store():
    res = cm.build_cell_model(_vars(), reference_hosts())["resilience"]
    assert res["enabled"] is True
    assert res["talos_api_access"] == {"roles": ["os:etcd:backup"], "namespaces": ["etcd-backup"]}
    assert res["namespaces"]["etcd_backup"] == "etcd-backup"
    store = res["object_store"]
    assert store["endpoint"] == "http://seaweedfs-all-in-one.object-store.svc.cluster.local:8333"
    assert (store["in_cell"], store["path_style"], store["volume_gib"], store["bucket"]) == (True, True, 40, "cell-backups")
    assert store["secret_keys"]["read_access_key_id"] == "object_store_read_access_key_id"
    assert res["backups"] == {"schedule": "0 2 * * *", "retention_days": 14, "ttl": "336h0m0s"}
    assert res["etcd_snapshots"] == {"schedule": "0 */6 * * *", "prefix": "cell/etcd"}


def test_external_model_keeps_the_endpoint_settings():
    v = _vars(object_store=EXTERNAL)
    assert cm.validate(v, reference_hosts()) == []
    store = cm.build_cell_model(v, reference_hosts())["resilience"]["object_store"]
    assert store["endpoint"] == "https://s3.example.org:9000"
    assert (store["in_cell"], store["path_style"], store["region"]) == (False, False, "eu-central-1")
    assert store["ca_bundle"].startswith("-----BEGIN CERTIFICATE-----")
    assert set(store["secret_keys"]) == {"access_key_id", "secret_access_key"}


def test_disabled_is_valid_and_grants_no_talos_api_access():
    v = copy.deepcopy(REFERENCE_VARS)
    v["cellplatform_resilience"] = {"enabled": False}
    assert cm.validate(v, reference_hosts()) == []
    res = cm.build_cell_model(v, reference_hosts())["resilience"]
    assert res["enabled"] is False and res["talos_api_access"] is None and "object_store" not in res


def test_missing_is_only_a_problem_when_l5_is_selected():
    v = copy.deepcopy(REFERENCE_VARS)
    del v["cellplatform_resilience"]
    assert cm.validate(v, reference_hosts(), layers=["l0", "l1", "l2"]) == []
    assert [p["field"] for p in cm.validate(v, reference_hosts(), layers=["l5"])] == ["cellplatform_resilience"]
    assert cm.build_cell_model(v, reference_hosts())["resilience"]["enabled"] is False


def test_l0_alone_checks_only_the_switch():
    v = _vars(backups={"schedule": "daily", "retention_days": -1})
    assert cm.validate(v, reference_hosts(), layers=["l0"]) == []
    assert len(cm.validate(v, reference_hosts(), layers=["l5"])) == 2


def test_cron_expressions():
    assert cm.is_cron("0 2 * * *") and cm.is_cron("*/15 0-6 1,15 jan-mar MON-FRI")
    assert not cm.is_cron("@daily") and not cm.is_cron("0 0 2 * * *") and not cm.is_cron(5)
