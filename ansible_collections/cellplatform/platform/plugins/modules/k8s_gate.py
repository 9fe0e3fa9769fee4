#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_gate
short_description: Wait until Kubernetes objects are ready, saying what is still pending
version_added: "0.2.0"
description:
  - The one readiness gate of the collection. Every layer's components wait through it before anything
    that depends on them runs.
  - Polls the Kubernetes API through M(kubernetes.core.k8s_info) (one list call per kind and namespace per
    poll) until every check passes or O(timeout) expires.
  - Rollouts follow C(kubectl rollout status) - the controller saw the current generation, every replica
    is updated and available, no old replica is left. A Deployment past its progress deadline or a failed
    Job fails at once instead of waiting out the timeout.
  - While it waits it prints, every O(progress) seconds, what is still pending, its state and how long it
    has waited out of its limit; on timeout the failure names every object that was not ready and why.
  - API errors (a control plane restarting) count as "not ready yet" and are retried until the timeout.
  - This is an action plugin; it runs on the controller.
author:
  - cellplatform contributors (@cellplatform)
options:
  kubeconfig:
    description: Path of the kubeconfig to use.
    type: path
  context:
    description: Context of O(kubeconfig) to use.
    type: str
  component:
    description: Name used in the progress and failure messages (the component being gated).
    type: str
    default: gate
  namespace:
    description: Namespace of the namespaced objects given by name only (C(namespace/name) overrides it).
    type: str
  crds:
    description: CustomResourceDefinitions that must be C(Established).
    type: list
    elements: str
    default: []
  deployments:
    description: Deployments whose rollout must be complete.
    type: list
    elements: str
    default: []
  daemonsets:
    description: DaemonSets whose rollout must be complete on every node they are scheduled on.
    type: list
    elements: str
    default: []
  statefulsets:
    description: StatefulSets whose rollout must be complete.
    type: list
    elements: str
    default: []
  jobs:
    description: Jobs that must be complete.
    type: list
    elements: str
    default: []
  webhooks:
    description:
      - Services behind admission webhooks; each must have a ready endpoint in an EndpointSlice, so the API
        server's webhook calls are answered.
    type: list
    elements: str
    default: []
  conditions:
    description: Any object that must report a status condition.
    type: list
    elements: dict
    default: []
    suboptions:
      api_version:
        description: The object's apiVersion.
        type: str
        required: true
      kind:
        description: The object's kind.
        type: str
        required: true
      name:
        description: The object's name.
        type: str
        required: true
      namespace:
        description: The object's namespace, for namespaced kinds.
        type: str
      type:
        description: The condition type, for example C(Ready).
        type: str
        required: true
      status:
        description: The condition status that passes.
        type: str
        default: "True"
  exists:
    description: Objects that must exist (for example a webhook configuration a controller registers itself).
    type: list
    elements: dict
    default: []
    suboptions:
      api_version:
        description: The object's apiVersion.
        type: str
        required: true
      kind:
        description: The object's kind.
        type: str
        required: true
      name:
        description: The object's name.
        type: str
        required: true
      namespace:
        description: The object's namespace, for namespaced kinds.
        type: str
  nodes_ready:
    description:
      - V(true) - every Node the API lists must be C(Ready) (and at least one must exist); a list - these
        Nodes must exist and be C(Ready).
    type: raw
    default: false
  timeout:
    description: Seconds to wait before failing.
    type: int
    default: 600
  poll:
    description: Seconds between two polls.
    type: float
    default: 5
  progress:
    description: Seconds between two progress messages.
    type: float
    default: 30
attributes:
  check_mode:
    support: full
    description: Check mode installs nothing, so the gate reports what it would wait for and skips.
  diff_mode:
    support: none
    description: Nothing changes.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller.
requirements:
  - the C(kubernetes) Python library (as for M(kubernetes.core.k8s_info))
seealso:
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: metallb | Wait for the release to be ready
  cellplatform.platform.k8s_gate:
    kubeconfig: "{{ cellplatform_cell.kubeconfig.path }}"
    component: metallb
    namespace: metallb-system
    crds: [ipaddresspools.metallb.io, l2advertisements.metallb.io]
    deployments: [metallb-controller]
    daemonsets: [metallb-speaker]
    webhooks: [metallb-webhook-service]
    timeout: 600

- name: Every node of the cell is Ready
  cellplatform.platform.k8s_gate:
    kubeconfig: "{{ cellplatform_cell.kubeconfig.path }}"
    component: cilium
    nodes_ready: "{{ cellplatform_cell.nodes | map(attribute='name') | list }}"
"""

RETURN = r"""
checks:
  description: What the gate waited for.
  returned: always
  type: list
  elements: str
  sample: ["Deployment metallb-system/metallb-controller", "webhook Service metallb-system/metallb-webhook-service"]
elapsed:
  description: Seconds waited.
  returned: always
  type: float
  sample: 12.5
pending:
  description: On timeout, each object that was not ready and its last state.
  returned: on timeout
  type: dict
  sample: {"Deployment kyverno/kyverno-admission-controller": "1/3 updated, 0/3 available"}
"""

from ansible.module_utils.basic import AnsibleModule


def _object_ref(**extra):
    """Options naming one Kubernetes object (conditions and exists)."""
    return dict(api_version=dict(type="str", required=True), kind=dict(type="str", required=True),
                name=dict(type="str", required=True), namespace=dict(type="str"), **extra)


def main():
    names = dict(type="list", elements="str", default=[])
    module = AnsibleModule(argument_spec=dict(
        kubeconfig=dict(type="path"),
        context=dict(type="str"),
        component=dict(type="str", default="gate"),
        namespace=dict(type="str"),
        crds=names, deployments=names, daemonsets=names, statefulsets=names, jobs=names, webhooks=names,
        conditions=dict(type="list", elements="dict", default=[], options=_object_ref(
            type=dict(type="str", required=True), status=dict(type="str", default="True"))),
        exists=dict(type="list", elements="dict", default=[], options=_object_ref()),
        nodes_ready=dict(type="raw", default=False),
        timeout=dict(type="int", default=600),
        poll=dict(type="float", default=5),
        progress=dict(type="float", default=30),
    ), supports_check_mode=True)
    module.fail_json(msg="cellplatform.platform.k8s_gate is an action plugin and runs on the controller only.")


if __name__ == "__main__":
    main()
