# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readiness predicates: the rules of `kubectl rollout status`, one place for every gate."""

from __future__ import annotations

import pytest

from ansible_collections.cellplatform.platform.plugins.plugin_utils import k8s_readiness as r


def deploy(want=3, generation=2, **status):
    base = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    base.update(status)
    return {"metadata": {"generation": generation}, "spec": {"replicas": want}, "status": base}


@pytest.mark.parametrize("obj,ready,detail", [
    (deploy(), True, "3/3 updated, 3/3 available"),
    (deploy(observedGeneration=1), False, "waiting for the controller to see the new spec"),
    (deploy(updatedReplicas=1, availableReplicas=3), False, "1/3 updated, 3/3 available"),
    (deploy(replicas=4), False, "1 old replica(s) terminating"),
    (deploy(availableReplicas=2), False, "3/3 updated, 2/3 available"),
    ({"metadata": {"generation": 1}, "spec": {}, "status": {}}, False, "waiting for the controller"),
])
def test_deployment_rollout(obj, ready, detail):
    got, text = r.deployment(obj)
    assert got is ready and detail in text


def test_deployment_past_its_progress_deadline_fails_at_once():
    obj = deploy(updatedReplicas=1, conditions=[{"type": "Progressing", "status": "False",
                                                 "reason": "ProgressDeadlineExceeded",
                                                 "message": 'ReplicaSet "x" has timed out progressing.'}])
    ready, text = r.deployment(obj)
    assert ready is None and "has timed out progressing" in text


@pytest.mark.parametrize("status,ready", [
    ({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}, True),
    ({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 3}, False),
    ({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}, False),
    ({"observedGeneration": 1, "desiredNumberScheduled": 0}, False),
    ({"observedGeneration": 1}, False),
    ({"observedGeneration": 0, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}, False),
])
def test_daemonset_rollout(status, ready):
    assert r.daemonset({"metadata": {"generation": 1}, "status": status})[0] is ready


def test_statefulset_rollout():
    base = {"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
                       "currentRevision": "a-1", "updateRevision": "a-1"}}
    assert r.statefulset(base)[0] is True
    rolling = dict(base, status=dict(base["status"], updateRevision="a-2"))
    assert r.statefulset(rolling) == (False, "2/2 updated, 2/2 ready, revision rolling out")
    ondelete = dict(base, spec={"replicas": 2, "updateStrategy": {"type": "OnDelete"}},
                    status=dict(base["status"], updatedReplicas=0, updateRevision="a-2"))
    assert r.statefulset(ondelete)[0] is True


def test_crd_job_condition_node_endpoints():
    assert r.crd({"status": {"conditions": [{"type": "Established", "status": "True"}]}}) == (True, "Established")
    assert r.crd({"status": {}})[0] is False
    assert r.crd({"status": {"conditions": [{"type": "NamesAccepted", "status": "False", "reason": "Conflict"}]}})[0] is None
    assert r.job({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})[0] is True
    assert r.job({"status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}}) \
        == (None, "failed: BackoffLimitExceeded")
    assert r.job({"status": {"active": 1}}) == (False, "0 succeeded, 1 active")
    cond = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}}
    assert r.node(cond) == (False, "Ready=False (KubeletNotReady)")
    assert r.condition(cond, "Synced") == (False, "no Synced condition yet")
    assert r.condition({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Ready")[0] is True
    assert r.endpoints([{"endpoints": [{"conditions": {"ready": False}}]}]) == (False, "no ready endpoint (1 listed)")
    assert r.endpoints([{"endpoints": [{"conditions": {"ready": False}}]}, {"endpoints": [{"conditions": {"ready": True}}]}]) \
        == (True, "1/2 endpoint(s) ready")
    assert r.endpoints([]) == (False, "no ready endpoint (0 listed)")
