# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The k8s_gate action: polls k8s_info until every check passes, reports progress, fails clearly.

The module calls are answered by a scripted stand-in for kubernetes.core.k8s_info (the API state
changes with each poll), and time is the test's own clock, so the waits cost nothing.
"""

from __future__ import annotations

from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.cellplatform.platform.plugins.action import k8s_gate


class Clock(object):
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def deployment(name, available):
    return {"metadata": {"name": name, "namespace": "ns", "generation": 1},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": available}}


class FakeAPI(object):
    """Answers k8s_info calls from a list of states; each list call of Deployments advances one state."""

    def __init__(self, deployments, slices=(), crds=(), error_first=0):
        self.deployments = list(deployments)
        self.slices = list(slices)
        self.crds = crds
        self.calls = []
        self.errors = error_first

    def __call__(self, module_name, module_args, task_vars):
        assert module_name == "kubernetes.core.k8s_info"
        self.calls.append(dict(module_args))
        if self.errors:
            self.errors -= 1
            return {"failed": True, "msg": "Failed to get client due to HTTPSConnectionPool: connection refused"}
        kind = module_args["kind"]
        if kind == "Deployment":
            state = self.deployments.pop(0) if len(self.deployments) > 1 else self.deployments[0]
            return {"resources": state, "api_found": True}
        if kind == "EndpointSlice":
            state = self.slices.pop(0) if len(self.slices) > 1 else self.slices[0]
            return {"resources": state, "api_found": True}
        if kind == "CustomResourceDefinition":
            return {"resources": list(self.crds), "api_found": True}
        if kind == "Node":
            return {"resources": [{"metadata": {"name": "cp-1"},
                                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}}], "api_found": True}
        return {"resources": [], "api_found": True}


def run(args, api, check_mode=False):
    task = mock.MagicMock()
    task.args = args
    task.check_mode = check_mode
    task.async_val = 0
    action = k8s_gate.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None,
                                   shared_loader_obj=None)
    action._execute_module = api
    clock = Clock()
    shown = []
    with mock.patch.object(k8s_gate.time, "monotonic", clock.monotonic), \
            mock.patch.object(k8s_gate.time, "sleep", clock.sleep), \
            mock.patch.object(k8s_gate.display, "display", shown.append), \
            mock.patch.object(k8s_gate.ActionBase, "run", return_value={}):
        result = action.run(task_vars={})
    return result, shown, clock


BASE = {"component": "metallb", "namespace": "ns", "kubeconfig": "/k", "timeout": 120, "poll": 5, "progress": 30}


def test_waits_until_the_rollout_is_complete_and_says_so():
    api = FakeAPI([[deployment("ctrl", 0)]] * 8 + [[deployment("ctrl", 2)]],
                  slices=[[{"endpoints": [{"conditions": {"ready": True}}]}]])
    result, shown, clock = run(dict(BASE, deployments=["ctrl"], webhooks=["hook-svc"]), api)
    assert not result.get("failed"), result
    assert result["checks"] == ["Deployment ns/ctrl", "webhook Service ns/hook-svc"]
    assert "ready after 40s" in result["msg"] and result["elapsed"] == 40
    assert shown[0] == "metallb: waiting up to 120s for Deployment ns/ctrl, webhook Service ns/hook-svc"
    assert any("still waiting (30s of 120s) for Deployment ns/ctrl (2/2 updated, 0/2 available)" in m for m in shown)
    assert all(c.get("kubeconfig") == "/k" for c in api.calls)
    assert {"kubernetes.io/service-name=hook-svc"} == {s for c in api.calls for s in c.get("label_selectors", [])}


def test_timeout_names_what_was_not_ready_and_why():
    api = FakeAPI([[deployment("ctrl", 1)]])
    result, _shown, clock = run(dict(BASE, deployments=["ctrl", "other"], timeout=60), api)
    assert result["failed"] is True and clock.now == 60
    assert "metallb: timed out after 60s waiting for Deployment ns/ctrl (2/2 updated, 1/2 available); " \
           "Deployment ns/other (does not exist yet)" in result["msg"]
    assert result["pending"] == {"Deployment ns/ctrl": "2/2 updated, 1/2 available",
                                 "Deployment ns/other": "does not exist yet"}


def test_api_errors_are_retried_until_the_api_answers():
    api = FakeAPI([[deployment("ctrl", 2)]], error_first=3)
    result, _shown, clock = run(dict(BASE, deployments=["ctrl"]), api)
    assert not result.get("failed") and clock.now == 15


def test_an_api_that_never_answers_times_out_with_the_last_error():
    api = FakeAPI([[deployment("ctrl", 2)]], error_first=1000)
    result, _shown, _clock = run(dict(BASE, deployments=["ctrl"], timeout=20), api)
    assert result["failed"] and "API not answering" in result["msg"] and "connection refused" in result["msg"]


def test_a_failed_rollout_stops_at_once():
    stuck = deployment("ctrl", 0)
    stuck["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                      "message": "ReplicaSet ctrl-1 has timed out progressing."}]
    result, _shown, clock = run(dict(BASE, deployments=["ctrl"]), FakeAPI([[stuck]]))
    assert result["failed"] and clock.now == 0
    assert "Deployment ns/ctrl rollout failed: ReplicaSet ctrl-1 has timed out progressing." in result["msg"]


def test_check_mode_waits_for_nothing():
    api = FakeAPI([[deployment("ctrl", 0)]])
    result, _shown, _clock = run(dict(BASE, deployments=["ctrl"]), api, check_mode=True)
    assert result["skipped"] is True and api.calls == [] and "1 check(s) would run" in result["msg"]


def test_nothing_to_wait_for_makes_no_call():
    api = FakeAPI([[]])
    result, _shown, _clock = run(dict(BASE), api)
    assert result["msg"] == "metallb: nothing to wait for" and api.calls == []


def test_crds_conditions_exists_and_nodes():
    crd = {"metadata": {"name": "pools.metallb.io"}, "status": {"conditions": [{"type": "Established", "status": "True"}]}}
    api = FakeAPI([[]], crds=[crd])
    result, _shown, _clock = run(dict(BASE, crds=["pools.metallb.io"], nodes_ready=["cp-1"]), api)
    assert not result.get("failed"), result
    assert [c["kind"] for c in api.calls] == ["CustomResourceDefinition", "Node"]
    assert "namespace" not in api.calls[0]                      # cluster-scoped kinds are listed cluster-wide
    result, _shown, _clock = run(dict(BASE, nodes_ready=True, timeout=10), FakeAPI([[]]))
    assert not result.get("failed") and "every Node: 1/1 Ready" in result["msg"]
    result, _shown, _clock = run(dict(BASE, exists=[{"api_version": "v1", "kind": "ConfigMap", "name": "x"}],
                                      timeout=10), FakeAPI([[]]))
    assert result["failed"] and "ConfigMap x (does not exist yet)" in result["msg"]


@pytest.mark.parametrize("args,message", [
    (dict(BASE, namespace=None, deployments=["ctrl"]), "Deployment ctrl needs a namespace"),
    (dict(BASE, conditions=[{"kind": "Certificate", "name": "x"}]), "conditions[] entries need api_version"),
    (dict(BASE, exists=[{"kind": "X"}]), "exists[] entries need api_version, kind and name"),
])
def test_bad_arguments_are_named(args, message):
    with pytest.raises(AnsibleActionFail, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(args, FakeAPI([[]]))
