#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cell_preflight
short_description: Validate every cellplatform_* inventory variable at once and build the cell model
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Reads every C(cellplatform_*) variable of the current host, the groups C(cell),
    C(controlplane) and C(workers), and each node's C(cellplatform_node_ip) (plus the optional
    C(cellplatform_node_install_disk) and C(cellplatform_node_vm_id)) from C(hostvars).
  - Checks the address plan (node network, node addresses, gateway, API VIP, LoadBalancer pool,
    Karpenter dynamic-worker range, pod and service CIDRs), host names, the control-plane count,
    the Talos/Kubernetes version pair, Proxmox and machine settings, age recipients (required in
    C(apply) mode), types and required values; with layer C(l1) also the DNS domain,
    external-dns and Karpenter settings; with layer C(l2) the GitOps repository, Argo CD domain,
    policy mode and Linkerd certificate lifetimes; with layer C(l3) Gitea (admin account, sizes,
    the hosted GitOps repository), Harbor (proxy caches, CI project, sizes) and the image policy.
  - Every C(cellplatform_*) name and every key inside a C(cellplatform_*) mapping must be one the
    inventory schema declares (C(plugins/plugin_utils/cell_schema.py)); an unknown one is a
    problem that names the closest valid one.
  - Inputs that are valid but probably not meant are warnings, not problems - an API DNS name
    outside the cell's DNS domain (external-dns will not publish it), and, in a copied inventory or
    in apply mode, the reference cell's example names (C(cell.lan), the DNS server
    C(192.168.100.1)).
  - In C(apply) mode it also checks this controller for what the apply needs, for the layers in
    O(prerequisites) and the steps the run's tags select - C(sops) 3.x from 3.9 on (the pinned 3.11;
    another minor release is a warning), C(talosctl) whose minor release is the one of
    C(cellplatform_talos_version), C(terraform) >= 1.5.0 (only with
    C(cellplatform_provisioner=proxmox)), C(helm) 3.x or 4.x; the age identity file, which must
    belong to a recipient and open every SOPS file of the cell (decrypted through the collection's
    sops runner with the identity as C(SOPS_AGE_KEY_FILE), as every later step does; with L0's Talos
    step also the machine configs of the build tree; a legacy C(.age) file the run would migrate
    is opened as the migration opens it); every key of C(platform.sops.yaml) the chosen options need
    (the Proxmox token only with a Terraform step or Karpenter, the TSIG secret only with RFC2136 or
    the ACME issuer, ...; values are never shown); the work and secrets directories; a kubeconfig
    named in the inventory; Linkerd certificates and the internal CA in pairs.
  - Reports every problem at once, each naming the field, the value and the fix, and fails
    before anything is touched. When everything is in order it sets the fact C(cellplatform_cell),
    the normalised cell model every role uses.
  - Controller-side. In render mode it runs no command, opens no connection and touches no file
    (it only resolves the build and secrets directories with C(realpath)). In apply mode the only
    commands it runs are C(sops --version), C(talosctl version --client --short), C(terraform
    version -json), C(helm version) and C(sops decrypt) of the cell's own files (the plaintext stays
    in memory, is never returned and never logged), and it only reads files. What an earlier preflight of the same run found in
    place on this host is not checked again, and its warnings are shown once.
options:
  layers:
    description:
      - The layers whose checks run. C(l0) is always checked because every layer needs the cell
        model; the variables of C(l1), C(l2) and C(l3) are only required when their layer is
        selected (C(cellplatform_karpenter) is checked whenever it is set). C(l4) to C(l7) have no
        inputs yet.
    type: list
    elements: str
    choices: [l0, l1, l2, l3, l4, l5, l6, l7]
    default: [l0, l1, l2, l3, l4, l5, l6, l7]
  mode:
    description:
      - Overrides C(cellplatform_mode) (validated the same way).
    type: str
    choices: [render, apply]
  prerequisites:
    description:
      - The layers whose apply prerequisites are checked on this controller in C(apply) mode
        (default O(layers)). A layer role passes its own layer, so that a run of L1 alone does not
        need talosctl.
    type: list
    elements: str
    choices: [l0, l1, l2]
  talosctl_path:
    description:
      - The talosctl binary to check (the role variable C(l0_infrastructure_talosctl_path)); empty
        means the first C(talosctl) on C(PATH).
    type: str
    default: ''
attributes:
  check_mode:
    support: full
    description: Validation is the same in check mode; nothing is ever changed.
  diff_mode:
    support: none
    description: There is nothing to diff; the module never changes anything.
  action:
    support: full
    description: Runs on the controller as an action plugin.
  async:
    support: none
    description: Validation takes milliseconds.
notes:
  - This is an action plugin; it runs on the controller only.
seealso:
  - name: The cell model
    description: The C(cellplatform_cell) structure, in docs/development.md.
    link: https://example.invalid/cellplatform/cellplatform/docs/development.md
'''

EXAMPLES = r'''
- name: Preflight every layer
  cellplatform.platform.cell_preflight:

- name: Preflight only what L0 needs, for an apply run (checks talosctl, terraform, helm, identity, secrets)
  cellplatform.platform.cell_preflight:
    layers: [l0]
    mode: apply
    talosctl_path: "{{ l0_infrastructure_talosctl_path }}"

- name: Preflight the inventory L1 reads; in apply mode check only what L1 itself needs here
  cellplatform.platform.cell_preflight:
    layers: [l0, l1]
    prerequisites: [l1]
'''

RETURN = r'''
cell:
  description:
    - The normalised cell model, returned only when the inventory is clean. The same value is
      set as the host variable C(cellplatform_cell) for the rest of the play (like
      M(ansible.builtin.set_fact); run it with C(run_once) to set it on every host of the play).
    - Keys are C(name), C(mode), C(build_dir), C(secrets_dir), C(network), C(api), C(lb_pool),
      C(pod_cidr), C(service_cidr), C(talos), C(nodes) (control planes first, then workers, in
      inventory order), C(controlplane), C(workers), C(bootstrap_node), C(talos_endpoints).
  returned: success
  type: dict
  sample: {"name": "cell", "bootstrap_node": "cp-1", "talos_endpoints": ["192.168.100.51"]}
problems:
  description: Every problem found (empty on success).
  returned: always
  type: list
  elements: dict
  contains:
    field:
      description: The variable (dotted path) or inventory item at fault.
      type: str
    value:
      description: The offending value (null when it is not set).
      type: raw
    message:
      description: What is wrong, naming the field and the value.
      type: str
    fix:
      description: How to fix it.
      type: str
  sample:
    - field: cellplatform_api_vip
      value: 192.168.100.61
      message: "cellplatform_api_vip: 192.168.100.61 is also the address of node worker-1"
      fix: pick a free address in 192.168.100.0/24 outside the LoadBalancer pool, e.g. 192.168.100.2.
prerequisites:
  description: What was checked on this controller (apply mode), by identifier; none of it holds a secret.
  returned: in apply mode
  type: list
  elements: str
  sample: [sops, identity, work_dir, secrets_dir, talosctl, machine_configs, terraform, helm, "secret:proxmox_api_token"]
layers:
  description: The layers that were checked.
  returned: success
  type: list
  elements: str
  sample: [l0, l1, l2, l3]
'''

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            layers=dict(type="list", elements="str", choices=["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"],
                        default=["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"]),
            mode=dict(type="str", choices=["render", "apply"]),
            prerequisites=dict(type="list", elements="str", choices=["l0", "l1", "l2"]),
            talosctl_path=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    module.fail_json(msg="cellplatform.platform.cell_preflight is an action plugin and runs on the controller only.")


if __name__ == "__main__":
    main()
