#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_apply
short_description: Apply a machine configuration to one Talos node
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Applies the complete machine configuration of B(one) Talos node with C(talosctl apply-config).
  - Detects whether the node is in maintenance mode or already configured.
    A node in maintenance mode gets C(apply-config --insecure -n IP -e IP -f FILE), exactly one node per call
    (C(--insecure) with several nodes silently applies to the first only).
    A configured node is first asked with C(--dry-run) over mTLS; C(No changes.) means nothing to do,
    otherwise the configuration is applied.
  - Run it once per node (for example on the C(cell) group with C(connection=local)) so that Ansible forks apply
    all nodes in parallel.
  - Transient C(FailedPrecondition) errors (another apply in progress, node rebooting) are retried with backoff.
  - The configuration content holds secrets and is never returned; the diff is redacted.
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  node:
    description:
      - IP address of the node (also used as its endpoint, never the API VIP).
    type: str
    required: true
  config:
    description:
      - Path of the node's complete, plaintext machine configuration (multi-document YAML with the C(v1alpha1)
        document).
      - The file holds secrets; keep it in a private work directory and remove it after the run.
    type: path
    required: true
  mode:
    description:
      - The C(apply-config --mode).
      - V(auto) lets Talos decide whether a reboot is needed; V(no-reboot) fails if one is; V(staged) applies on the
        next reboot; V(try) rolls back after the talosctl default of one minute unless confirmed.
      - In maintenance mode Talos installs and reboots whatever the mode.
    type: str
    choices: [auto, no-reboot, reboot, staged, try]
    default: auto
  wait:
    description:
      - After applying to a node in maintenance mode, wait until it answers over mTLS as a configured node.
      - Needs O(talosconfig); without it the task returns right after the apply.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for a node installed from maintenance mode to come back configured (O(wait)).
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    description: Configured nodes are asked with C(--dry-run); nodes in maintenance mode are reported as changed.
  diff_mode:
    support: full
    description: The diff is the Talos dry-run diff (or the whole configuration for a maintenance node), redacted.
seealso:
  - module: cellplatform.platform.talos_info
  - module: cellplatform.platform.talos_bootstrap
notes:
  - Nodes in maintenance mode must be directly reachable from the controller; the maintenance API cannot be proxied.
'''

EXAMPLES = r'''
- name: Apply the machine configuration of every node in parallel
  cellplatform.platform.talos_apply:
    node: "{{ cellplatform_node_ip }}"
    config: "{{ cellplatform_work_dir }}/configs/{{ inventory_hostname }}.yaml"
    talosconfig: "{{ cellplatform_work_dir }}/talosconfig"
    talos_version: "{{ cellplatform_cell.talos.version }}"
  delegate_to: localhost

- name: Change a configured node only if that needs no reboot
  cellplatform.platform.talos_apply:
    node: 192.168.100.61
    config: /home/ops/.cache/cellplatform/cell/configs/worker-1.yaml
    talosconfig: /home/ops/.cache/cellplatform/cell/talosconfig
    mode: no-reboot
'''

RETURN = r'''
node:
  description: The node the configuration was applied to.
  returned: always
  type: str
  sample: 192.168.100.51
state_before:
  description: State of the node before the task.
  returned: always
  type: str
  choices: [maintenance, configured]
  sample: maintenance
insecure:
  description: Whether the configuration went through the maintenance API (C(--insecure)).
  returned: always
  type: bool
  sample: true
reboot_required:
  description:
    - Whether applying the configuration reboots the node (always true for a node in maintenance mode, which installs
      Talos and reboots; from the dry-run summary otherwise).
  returned: always
  type: bool
  sample: false
waited:
  description: Seconds spent waiting for the node to come back configured after an install from maintenance mode.
  returned: always
  type: float
  sample: 74.2
applied:
  description: Whether C(apply-config) was actually run (false in check mode and when there were no changes).
  returned: always
  type: bool
  sample: true
mode:
  description: The apply mode used.
  returned: always
  type: str
  sample: auto
diff:
  description:
    - Redacted configuration diff (only with C(--diff)).
    - For a node in maintenance mode C(before) is empty and C(after) is the redacted configuration; for a configured
      node C(prepared) holds the unified diff Talos computed in the dry-run.
  returned: when diff mode is on and there is a change
  type: dict
  sample: {prepared: "@@ -14,5 +14,5 @@\n-hostname: cp-1\n+hostname: cp-one"}
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError, parse_dry_run, redact)

APPLY_RETRY_CODES = ('FailedPrecondition',)


def read_config(module, path):
    """Return the v1alpha1 document of *path* (failing clearly, never echoing content)."""
    if not os.path.isfile(path):
        module.fail_json(msg="config %r does not exist; render and decrypt the node's machine configuration first "
                             "(cellplatform.platform.talos_config)" % path)
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        module.fail_json(msg="config %r is not readable YAML (%s); regenerate it with "
                             "cellplatform.platform.talos_config" % (path, redact(str(e).splitlines()[0])))
    v1 = [d for d in docs if isinstance(d, dict) and d.get('version') == 'v1alpha1' and 'kind' not in d]
    if not v1:
        module.fail_json(msg="config %r has no 'version: v1alpha1' document; talos_apply needs the complete machine "
                             "configuration of the node, not a patch" % path)
    mtype = (v1[0].get('machine') or {}).get('type')
    if mtype not in ('controlplane', 'worker'):
        module.fail_json(msg="config %r has machine.type %r; use controlplane or worker" % (path, mtype))
    return text, mtype


def wait_configured(talos, node, seconds):
    """Probe *node* until it answers over mTLS as configured; returns the seconds waited (None: timed out)."""
    start = time.monotonic()
    attempt = 0
    while True:
        details = talos.node_details(node)
        waited = time.monotonic() - start
        if details['state'] == 'configured':
            return round(waited, 1)
        pause = max(0.5, min(talos.backoff(min(attempt, 8)), 10.0))
        if waited + pause > seconds:
            return None
        time.sleep(pause)
        attempt += 1


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        node=dict(type='str', required=True),
        config=dict(type='path', required=True),
        mode=dict(type='str', default='auto', choices=['auto', 'no-reboot', 'reboot', 'staged', 'try']),
        wait=dict(type='bool', default=True),
        wait_timeout=dict(type='int', default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_YAML:
        module.fail_json(msg='PyYAML is required on the controller')
    node = module.params['node']
    path = module.params['config']
    mode = module.params['mode']
    text, mtype = read_config(module, path)

    talos = Talosctl(module)
    result = dict(changed=False, node=node, mode=mode, applied=False, insecure=False, reboot_required=False,
                  machine_type=mtype, waited=0.0)
    apply_args = ['apply-config', '--file', path, '--mode', mode]
    try:
        details = talos.node_details(node)
        state = details['state']
        if state == 'unreachable':
            module.fail_json(msg="node %s: its Talos API (port 50000) did not answer within %s seconds "
                                 "(probe_timeout): %s; nothing was applied. Check that the machine is powered on and "
                                 "has its address (if an apply just rebooted it, rerun in a minute)"
                                 % (node, talos.probe_timeout, details.get('error') or 'no answer'), **result)
        result['state_before'] = state
        if state == 'maintenance':
            result.update(changed=True, insecure=True, reboot_required=True)
            if module._diff:
                result['diff'] = dict(before='', after=redact(text),
                                      before_header='%s (maintenance mode)' % node, after_header=path)
            if module.check_mode:
                module.exit_json(**result)
            rc, out, err = talos.run(apply_args, nodes=[node], endpoints=[node], insecure=True, check=False,
                                     retry_codes=APPLY_RETRY_CODES)
            if rc != 0:
                e = talos.error(apply_args, rc, out, err, nodes=[node], attempts=talos.last_attempts)
                if not (e.kind == 'tls_required' and talos.last_attempts > 1 and talos.talosconfig):
                    raise e
                # an earlier attempt got through: the node now only speaks mTLS; treat it as configured below
                module.warn("node %s: a retried apply-config --insecure found the node already configured (an earlier "
                            "attempt got through); checking it over mTLS instead" % node)
                result['applied'] = True
            else:
                result['applied'] = True
                if module.params['wait'] and talos.talosconfig:
                    waited = wait_configured(talos, node, module.params['wait_timeout'])
                    if waited is None:
                        module.fail_json(msg="node %s took its configuration (it installs to disk and reboots) but did "
                                             "not answer over mTLS as a configured node within %s seconds "
                                             "(wait_timeout); watch its console for the install, then rerun (the "
                                             "rerun only dry-runs it)" % (node, module.params['wait_timeout']),
                                         **result)
                    result['waited'] = waited
                module.exit_json(**result)

        if not talos.talosconfig:
            module.fail_json(msg="node %s is already configured and only accepts mTLS; pass the cell's talosconfig "
                                 "(option talosconfig) to update it" % node, **result)
        rc, out, err = talos.run(apply_args + ['--dry-run'], nodes=[node], endpoints=[node],
                                 retry_codes=APPLY_RETRY_CODES)
        summary = parse_dry_run(err) or parse_dry_run(out)
        if summary is None:
            module.fail_json(msg="talosctl apply-config --dry-run on node %s printed no 'Dry run summary'; the talosctl "
                                 "binary does not behave like %s: install talosctl %s"
                                 % (node, talos.talos_version, talos.talos_version),
                             stderr=redact(err), **result)
        result['reboot_required'] = bool(summary['reboot'])
        if not summary['changed']:
            module.exit_json(**result)
        result['changed'] = True
        if module._diff:
            result['diff'] = dict(prepared=redact(summary['diff']))
        if not module.check_mode:
            talos.run(apply_args, nodes=[node], endpoints=[node], retry_codes=APPLY_RETRY_CODES)
            result['applied'] = True
        module.exit_json(**result)
    except TalosctlError as e:
        result.update(e.to_result())
        module.fail_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
