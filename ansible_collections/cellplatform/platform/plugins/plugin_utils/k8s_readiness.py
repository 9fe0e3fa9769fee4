# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readiness of Kubernetes objects, as plain functions over the objects' JSON.

Each check returns ``(ready, detail)``: ``detail`` says in a few words where the object stands
("1/3 updated, 0/3 available"), or ``(None, reason)`` for a terminal failure that waiting will
not fix (a Deployment past its progress deadline, a failed Job). The rollout rules are those of
``kubectl rollout status``; the same rules serve every gate of every layer.
"""

from __future__ import annotations


def _status(obj):
    return (obj or {}).get("status") or {}


def _generation_seen(obj):
    meta = (obj or {}).get("metadata") or {}
    return _status(obj).get("observedGeneration", 0) >= meta.get("generation", 1)


def _condition(obj, kind):
    for cond in _status(obj).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def deployment(obj):
    if not _generation_seen(obj):
        return False, "waiting for the controller to see the new spec"
    progressing = _condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return None, "rollout failed: %s" % (progressing.get("message") or "progress deadline exceeded")
    want = ((obj.get("spec") or {}).get("replicas", 1))
    st = _status(obj)
    updated, total, available = st.get("updatedReplicas", 0), st.get("replicas", 0), st.get("availableReplicas", 0)
    detail = "%d/%d updated, %d/%d available" % (updated, want, available, want)
    if updated < want:
        return False, detail
    if total > updated:
        return False, "%s, %d old replica(s) terminating" % (detail, total - updated)
    if available < updated:
        return False, detail
    return True, detail


def daemonset(obj):
    if not _generation_seen(obj):
        return False, "waiting for the controller to see the new spec"
    st = _status(obj)
    desired = st.get("desiredNumberScheduled")
    if desired is None:
        return False, "not scheduled yet"
    updated, available = st.get("updatedNumberScheduled", 0), st.get("numberAvailable", st.get("numberReady", 0))
    detail = "%d/%d updated, %d/%d available" % (updated, desired, available, desired)
    if desired == 0:
        return False, "scheduled on no node"
    return (updated >= desired and available >= desired), detail


def statefulset(obj):
    if not _generation_seen(obj):
        return False, "waiting for the controller to see the new spec"
    want = (obj.get("spec") or {}).get("replicas", 1)
    st = _status(obj)
    ready, updated = st.get("readyReplicas", 0), st.get("updatedReplicas", 0)
    detail = "%d/%d updated, %d/%d ready" % (updated, want, ready, want)
    strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy == "OnDelete":
        return ready >= want, detail
    if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision"):
        return False, detail + ", revision rolling out"
    return (updated >= want and ready >= want), detail


def crd(obj):
    cond = _condition(obj, "Established")
    if cond and cond.get("status") == "True":
        return True, "Established"
    names = _condition(obj, "NamesAccepted")
    if names and names.get("status") == "False":
        return None, "names not accepted: %s" % (names.get("message") or names.get("reason"))
    return False, "not Established yet"


def job(obj):
    if _condition(obj, "Failed") and _condition(obj, "Failed").get("status") == "True":
        return None, "failed: %s" % (_condition(obj, "Failed").get("message") or "the job failed")
    cond = _condition(obj, "Complete")
    if cond and cond.get("status") == "True":
        return True, "complete"
    return False, "%d succeeded, %d active" % (_status(obj).get("succeeded", 0), _status(obj).get("active", 0))


def condition(obj, kind, status="True"):
    cond = _condition(obj, kind)
    if cond is None:
        return False, "no %s condition yet" % kind
    if str(cond.get("status")) == str(status):
        return True, "%s=%s" % (kind, status)
    return False, "%s=%s (%s)" % (kind, cond.get("status"), cond.get("reason") or cond.get("message") or "")


def node(obj):
    return condition(obj, "Ready", "True")


def endpoints(slices):
    """A Service answers when one of its EndpointSlices has a ready endpoint."""
    total = ready = 0
    for sl in slices or []:
        for ep in sl.get("endpoints") or []:
            total += 1
            if (ep.get("conditions") or {}).get("ready"):
                ready += 1
    if ready:
        return True, "%d/%d endpoint(s) ready" % (ready, total)
    return False, "no ready endpoint (%d listed)" % total


ROLLOUTS = {"Deployment": deployment, "DaemonSet": daemonset, "StatefulSet": statefulset}
