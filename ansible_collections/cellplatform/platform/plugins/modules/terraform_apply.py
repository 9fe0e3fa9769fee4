#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: terraform_apply
short_description: Plan and apply a Terraform root module, refusing destroys unless allowed
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Runs C(terraform init), C(terraform plan -detailed-exitcode -out=<planfile>), reads the
    plan with C(terraform show -json), and applies exactly that saved plan with
    C(terraform apply <planfile>) when it has changes. Finally returns the root module's
    outputs from C(terraform output -json).
  - Counts what the plan would add, change, destroy and replace, and lists the resource
    addresses of each.
  - Refuses, before anything is applied, any plan that deletes or replaces a resource unless
    O(allow_destroy=true). The failure names every such resource, its action and what forced it.
  - In check mode it runs C(init) and C(plan) only and reports RV(ignore:changed) when the plan
    has changes. With C(--diff) it returns a per-resource diff of the changed attributes;
    values the plan marks as sensitive are masked, values only known after apply are shown
    as C((known after apply)). Values of root variables declared C(sensitive) are also masked
    wherever they appear (terraform drops the mark when a provider copies a value into
    another attribute); strings shorter than 4 characters are not.
  - The module's environment is passed to terraform, so provider credentials come from
    environment variables set with the task's C(environment) keyword, for example
    E(PROXMOX_VE_API_TOKEN) for the bpg/proxmox provider. Values of variables whose names
    contain TOKEN, PASSWORD, SECRET, PRIVATE_KEY, ACCESS_KEY or CREDENTIAL are redacted from
    everything the module returns.
  - Variables given in O(variables) are written to a private temporary C(.tfvars.json) file
    (mode 0600) and never put on the command line. The plan file lives in the same private
    temporary directory and is removed when the module ends.
options:
  project_path:
    description:
      - The Terraform root module directory (the one holding the C(*.tf) files). Terraform runs
        with this directory as its working directory, so C(*.auto.tfvars.json) files in it are
        read automatically and the local state lives here unless O(backend_config) moves it.
    type: path
    required: true
  state:
    description:
      - V(present) plans and, when the plan has changes, applies it.
      - V(planned) only plans (also outside check mode); RV(ignore:changed) is always false and
        RV(has_changes) tells whether an apply would change anything. Destructive changes are
        reported in RV(destructive) but not refused.
    type: str
    choices: [present, planned]
    default: present
  allow_destroy:
    description:
      - Allow plans that delete or replace resources (actions C([delete]),
        C([delete, create]) or C([create, delete])).
      - When false (the default) such a plan fails before anything is applied, naming every
        resource address and action. Review the plan (check mode with C(--diff)) first.
    type: bool
    default: false
  allow_destroy_patterns:
    description:
      - Resource addresses that may be deleted or replaced even when O(allow_destroy=false).
        C(*) matches any characters; nothing else is special (brackets and quotes are literal).
      - Meant for disposable resources, for example the Talos boot image
        C(proxmox_download_file.talos), which is replaced when the Talos version changes while
        the VMs built from it stay.
    type: list
    elements: str
    default: []
  var_files:
    description:
      - Variable files passed as C(-var-file), in order (later files win).
      - Relative paths are resolved against O(project_path). Every file must exist.
    type: list
    elements: path
    default: []
  variables:
    description:
      - Variables for the plan, as a mapping. Values keep their types (lists, maps, numbers).
      - They are written to a private C(.tfvars.json) file passed after O(var_files), so they
        win over them.
    type: dict
    default: {}
  workspace:
    description:
      - Terraform workspace to select (created when missing) before planning.
      - V(default) leaves workspace selection alone (terraform's default, or E(TF_WORKSPACE)).
    type: str
    default: default
  init:
    description:
      - Run C(terraform init -input=false) before planning. It is idempotent and also runs in
        check mode (it writes C(.terraform/) and C(.terraform.lock.hcl), not infrastructure).
    type: bool
    default: true
  init_reconfigure:
    description:
      - Pass C(-reconfigure) to C(init), to accept a changed backend configuration without
        migrating state.
    type: bool
    default: false
  plugin_dir:
    description:
      - Provider mirror directories for air-gapped hosts, passed as C(-plugin-dir) to C(init).
        Create one with C(terraform providers mirror <dir>) on a connected machine.
      - When set, terraform installs providers only from these directories.
    type: list
    elements: path
    default: []
  backend_config:
    description:
      - Backend settings passed as C(-backend-config=KEY=VALUE) to C(init), for example
        C(path=/srv/state/cell.tfstate) for the local backend.
      - Do not put credentials here; use O(backend_config_files) or the backend's environment
        variables.
    type: dict
    default: {}
  backend_config_files:
    description:
      - Backend configuration files passed as C(-backend-config=<file>) to C(init). Relative
        paths are resolved against O(project_path).
    type: list
    elements: path
    default: []
  lock:
    description:
      - Lock the state while planning and applying. Only disable it when nothing else can run
        terraform on this state.
    type: bool
    default: true
  lock_timeout:
    description:
      - Seconds to wait for a state lock held by another run (C(-lock-timeout)). V(0) fails at
        once.
    type: int
    default: 0
  timeout:
    description:
      - Seconds each terraform command may run. On expiry terraform is interrupted (SIGINT, so
        it can persist state and release its lock, then SIGKILL after 30 seconds) and the task
        fails. V(0) waits forever.
    type: int
    default: 1800
  binary_path:
    description:
      - Path of the terraform binary. Defaults to C(terraform) on E(PATH). Terraform 1.5 or
        newer is required.
    type: path
  work_dir:
    description:
      - Directory under which a private (C(0700)) temporary directory holds the plan file and the
        variables file of O(variables) (which may hold secrets) while the module runs; it is
        always removed. Defaults to the system temporary directory. Normally the cell's private
        plaintext directory, which the next run empties should this run be killed.
    type: path
attributes:
  check_mode:
    support: full
    description: Runs C(init) and C(plan) only; reports changed when the plan has changes.
  diff_mode:
    support: full
    description: Per-resource before/after of the changed attributes, sensitive values masked.
notes:
  - The plan is saved and exactly that plan is applied, so what was checked against
    O(allow_destroy) is what runs. If the state changed in between, terraform refuses the stale
    plan and the task fails without applying anything.
  - A replace counts as one RV(summary.replace), not as one add plus one destroy as in
    terraform's own summary line.
  - Outputs returned in check mode are the outputs of the current state.
requirements:
  - terraform >= 1.5 on the host that runs the module
seealso:
  - name: Terraform JSON output format
    description: The plan representation this module reads.
    link: https://developer.hashicorp.com/terraform/internals/json-format
"""

EXAMPLES = r"""
- name: Create or update the cell's VMs (never destroys without allow_destroy)
  cellplatform.platform.terraform_apply:
    project_path: "{{ cellplatform_cell.build_dir }}/terraform"
    allow_destroy: "{{ cellplatform_terraform_allow_destroy | default(false) | bool }}"
    variables:
      proxmox_api_token: >-
        {{ lookup('community.sops.sops', cellplatform_cell.secrets.platform, age_keyfile=cellplatform_cell.age.identity)
           | from_yaml | cellplatform.platform.secret_values(['proxmox_api_token'], cellplatform_cell.secrets.platform)
           | first }}
  no_log: true
  register: cell_vms

- name: Show the VM ids
  ansible.builtin.debug:
    var: cell_vms.outputs.vm_ids

- name: Review what would change (plan only, readable diff)
  cellplatform.platform.terraform_apply:
    project_path: /srv/cell/terraform
    var_files:
      - cell.tfvars.json
    variables:
      talos_version: v1.13.9
  check_mode: true
  diff: true

- name: Air-gapped host, state kept outside the build tree
  cellplatform.platform.terraform_apply:
    project_path: /srv/cell/terraform
    plugin_dir:
      - /opt/terraform/providers
    backend_config:
      path: /var/lib/cellplatform/cell.tfstate
    lock_timeout: 300

- name: Drift detection (never applies)
  cellplatform.platform.terraform_apply:
    project_path: /srv/cell/terraform
    state: planned
  register: drift
  failed_when: drift.has_changes
"""

RETURN = r"""
has_changes:
  description: Whether the plan had changes (resources or outputs).
  returned: always
  type: bool
  sample: true
applied:
  description: Whether C(terraform apply) ran.
  returned: always
  type: bool
  sample: true
summary:
  description:
    - Counts per action. RV(summary.replace) is a resource that is deleted and created again;
      it is not counted in RV(summary.add) or RV(summary.destroy).
  returned: always
  type: dict
  contains:
    add:
      description: Resources to create.
      type: int
    change:
      description: Resources to update in place.
      type: int
    destroy:
      description: Resources to delete.
      type: int
    replace:
      description: Resources to delete and create again.
      type: int
    forget:
      description: Resources removed from state without being destroyed (C(removed) blocks).
      type: int
    import:
      description: Resources imported into state.
      type: int
    move:
      description: Resources whose address changes (C(moved) blocks).
      type: int
    output_changes:
      description: Root module outputs whose value changes.
      type: int
  sample: {add: 6, change: 0, destroy: 0, replace: 0, forget: 0, import: 0, move: 0, output_changes: 2}
resources:
  description: Resource addresses per action, sorted. Same keys as RV(summary) except RV(summary.output_changes).
  returned: always
  type: dict
  sample:
    add: ["proxmox_virtual_environment_vm.node[\"cp-1\"]"]
    change: []
    destroy: []
    replace: []
    forget: []
    import: []
    move: []
destructive:
  description:
    - Every delete or replace in the plan. Refused unless O(allow_destroy=true) or the address
      matches O(allow_destroy_patterns).
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: Resource address.
      type: str
    action:
      description: V(delete) or V(replace).
      type: str
    actions:
      description: Terraform's action list, for example C([delete, create]).
      type: list
      elements: str
    reason:
      description: Terraform's C(action_reason), for example C(replace_because_cannot_update).
      type: str
    replace_paths:
      description: Attributes that force the replacement, dotted.
      type: list
      elements: str
  sample:
    - address: proxmox_virtual_environment_vm.node["cp-1"]
      action: replace
      actions: [delete, create]
      reason: replace_because_cannot_update
      replace_paths: [vm_id]
outputs:
  description:
    - Root module outputs as C(name => value) after the run (the current state's outputs in
      check mode, with O(state=planned), or when a plan was refused). Sensitive outputs are
      replaced by C((sensitive value)), and so are values of sensitive root variables found
      inside other outputs.
  returned: always
  type: dict
  sample: {vm_ids: {cp-1: 151}, node_ips: {cp-1: 192.168.100.51}}
workspace:
  description: The workspace that was planned.
  returned: always
  type: str
  sample: default
terraform_version:
  description: Version of the terraform binary that ran.
  returned: always
  type: str
  sample: 1.11.4
commands:
  description: The terraform command lines that ran, in order (no variable values appear in them).
  returned: always
  type: list
  elements: str
  sample: ["/usr/local/bin/terraform init -input=false -no-color"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.terraform import (
    TERRAFORM_COMMON_ARGS,
    Terraform,
    TerraformError,
    address_matches,
    describe_destructive,
    mask_outputs,
    plan_diff,
    sensitive_literals,
    summarize_plan,
)


def refusal_message(project_path, destructive):
    return (
        "terraform plan for %s would delete or replace %d resource(s) and allow_destroy is "
        "false: %s. Nothing was applied. Review the plan (check mode with --diff); if the "
        "destruction is intended, set allow_destroy: true on the task (for the L0 role: "
        "-e cellplatform_terraform_allow_destroy=true)."
        % (project_path, len(destructive), ", ".join(describe_destructive(d) for d in destructive))
    )


def run_module(module, runner_class=None):
    runner_class = runner_class or Terraform
    p = module.params
    result = dict(changed=False, applied=False, has_changes=False, outputs={},
                  summary={}, resources={}, destructive=[], workspace=p["workspace"],
                  terraform_version="", commands=[])
    tf = None
    try:
        tf = runner_class(p["project_path"], binary_path=p["binary_path"], module=module,
                          timeout=p["timeout"], lock=p["lock"], lock_timeout=p["lock_timeout"],
                          work_dir=p["work_dir"])
        result["terraform_version"] = tf.version
        if p["init"]:
            tf.init(backend_config=p["backend_config"],
                    backend_config_files=p["backend_config_files"],
                    plugin_dirs=p["plugin_dir"], reconfigure=p["init_reconfigure"])
        result["workspace"] = tf.workspace(p["workspace"])
        has_changes, planfile = tf.plan(var_files=p["var_files"], variables=p["variables"])
        plan = tf.show_plan(planfile)
        analysis = summarize_plan(plan)
        secrets = sensitive_literals(plan)
        # The exit code of plan -detailed-exitcode is authoritative for "anything to apply".
        has_changes = bool(has_changes)
        result.update(has_changes=has_changes, summary=analysis["summary"],
                      resources=analysis["resources"], destructive=analysis["destructive"])
        if module._diff:
            result["diff"] = plan_diff(plan, secrets)
        blocked = []
        if p["state"] == "present" and not p["allow_destroy"]:
            blocked = [d for d in analysis["destructive"]
                       if not address_matches(d["address"], p["allow_destroy_patterns"])]

        if p["state"] == "present" and has_changes and not blocked:
            if module.check_mode:
                result["changed"] = True
            else:
                tf.apply(planfile)
                result.update(applied=True, changed=True)
        # `output -json` reads the state as it is now (the plan's prior_state outputs are
        # re-evaluated with the new variables, so they are not used).
        result["outputs"] = mask_outputs(tf.output(), secrets)
        result["commands"] = tf.commands
        if blocked:
            module.fail_json(msg=refusal_message(tf.project_path, blocked),
                             error_kind="destroy_refused", **result)
    except TerraformError as exc:
        if tf is not None:
            result["commands"] = tf.commands
        fail = dict(result)
        fail.update(exc.to_result())
        if any(c.split()[1:2] == ["apply"] for c in result["commands"]):
            # terraform apply writes state as it goes: part of the plan may be in place.
            fail["changed"] = True
            fail["msg"] += (" (terraform apply had started, so part of the plan may have been "
                            "applied; the state records it and a rerun converges)")
        module.fail_json(**fail)
    finally:
        if tf is not None:
            tf.cleanup()
    module.exit_json(**result)


def main():
    argument_spec = dict(TERRAFORM_COMMON_ARGS)
    argument_spec.update(
        state=dict(type="str", default="present", choices=["present", "planned"]),
        allow_destroy=dict(type="bool", default=False),
        allow_destroy_patterns=dict(type="list", elements="str", default=[]),
        var_files=dict(type="list", elements="path", default=[]),
        variables=dict(type="dict", default={}),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
