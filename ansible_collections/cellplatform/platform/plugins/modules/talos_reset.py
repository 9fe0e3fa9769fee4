#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_reset
short_description: Reset one Talos node (wipe its state), gracefully unless it is dead
version_added: 0.2.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Runs C(talosctl reset) against one node (its own endpoint) and waits for it (C(--wait)).
  - With O(graceful) (the default) Talos cordons and drains the node and a control plane leaves etcd before its disks
    are wiped; that needs a quorum of etcd. V(false) skips all of that - only for a node whose etcd member was already
    removed from a healthy peer (a dead control plane) or when etcd has no quorum left (disaster recovery).
  - O(system_labels_to_wipe) wipes only those system partitions - C(STATE) (the machine config; the node comes back in
    maintenance mode) and C(EPHEMERAL) (etcd data, container images, pod data). Empty uses O(wipe_mode).
  - Idempotent - a node that is already in maintenance mode is not reset again when C(STATE) is wiped; a node whose
    Talos API does not answer fails the task, or with O(allow_unreachable) is reported (it cannot be wiped - destroy
    or wipe the machine out of band before reusing it).
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  node:
    description: IP address of the node.
    type: str
    required: true
  graceful:
    description: C(--graceful). Cordon, drain and leave etcd before wiping.
    type: bool
    default: true
  reboot:
    description:
      - C(--reboot). Reboot after the reset (back in maintenance mode when C(STATE) was wiped) instead of powering off.
    type: bool
    default: true
  system_labels_to_wipe:
    description:
      - C(--system-labels-to-wipe). System partitions to wipe, for example C([STATE, EPHEMERAL]).
    type: list
    elements: str
    default: [STATE, EPHEMERAL]
  wipe_mode:
    description:
      - C(--wipe-mode), used when O(system_labels_to_wipe) is empty.
    type: str
    choices: [all, system-disk, user-disks]
    default: all
  wait_timeout:
    description:
      - Seconds talosctl waits for the reset to finish (C(--timeout)).
    type: int
    default: 900
  allow_unreachable:
    description:
      - Report a node whose Talos API does not answer (RV(reset) false, a warning) instead of failing.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: The node is asked what it is; the reset is only reported.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_etcd
notes:
  - Requires O(talosconfig) (a configured node answers over mTLS only).
'''

EXAMPLES = r'''
- name: Wipe a removed worker back to maintenance mode
  cellplatform.platform.talos_reset:
    node: 192.168.100.63
    talosconfig: "{{ cellplatform_cell.work_dir }}/talosconfig"

- name: Wipe the etcd data of a control plane for a restore (no etcd leave - etcd is broken)
  cellplatform.platform.talos_reset:
    node: 192.168.100.52
    graceful: false
    system_labels_to_wipe: [EPHEMERAL]
    talosconfig: "{{ cellplatform_cell.work_dir }}/talosconfig"
'''

RETURN = r'''
reset:
  description: Whether this task reset the node (or would, in check mode).
  returned: always
  type: bool
  sample: true
state_before:
  description: What the node was before - V(configured), V(maintenance) or V(unreachable).
  returned: always
  type: str
  sample: configured
node:
  description: The node's IP address.
  returned: always
  type: str
  sample: 192.168.100.63
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError)

LABELS = ('STATE', 'EPHEMERAL', 'META')


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        node=dict(type='str', required=True),
        graceful=dict(type='bool', default=True),
        reboot=dict(type='bool', default=True),
        system_labels_to_wipe=dict(type='list', elements='str', default=['STATE', 'EPHEMERAL']),
        wipe_mode=dict(type='str', default='all', choices=['all', 'system-disk', 'user-disks']),
        wait_timeout=dict(type='int', default=900),
        allow_unreachable=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if not p['talosconfig']:
        module.fail_json(msg="talosconfig is required: a configured node is reset over mTLS; pass the cell's talosconfig")
    bad = [label for label in p['system_labels_to_wipe'] if label not in LABELS]
    if bad:
        module.fail_json(msg="system_labels_to_wipe: %s is not one of %s" % (', '.join(bad), ', '.join(LABELS)))
    node = p['node']
    talos = Talosctl(module)
    result = dict(changed=False, reset=False, node=node, state_before=None)
    try:
        details = talos.node_details(node)
        result['state_before'] = details['state']
        if details['state'] == 'unreachable':
            why = details.get('error') or 'no answer'
            if p['allow_unreachable']:
                module.warn("node %s was not reset: its Talos API does not answer (%s); its disks still hold the old "
                            "machine config and keys - destroy the machine or wipe it before reusing it" % (node, why))
                module.exit_json(**result)
            module.fail_json(msg="cannot reset node %s: its Talos API does not answer (%s); power it on, or, if it is "
                                 "gone for good, destroy or wipe the machine out of band" % (node, why), **result)
        labels = p['system_labels_to_wipe']
        wipes_state = 'STATE' in labels or (not labels and p['wipe_mode'] != 'user-disks')
        if details['state'] == 'maintenance' and wipes_state:
            module.exit_json(**result)
        if details['state'] == 'maintenance':
            module.fail_json(msg="node %s is in maintenance mode (not configured): there is nothing of the cell to wipe "
                                 "but its disks; reset it with `talosctl reset --insecure` if you mean that" % node,
                             **result)
        result.update(changed=True, reset=True)
        if module.check_mode:
            module.exit_json(**result)
        args = ['reset', '--graceful=%s' % str(p['graceful']).lower(), '--reboot=%s' % str(p['reboot']).lower(),
                '--wait', '--timeout', '%ds' % p['wait_timeout']]
        if p['system_labels_to_wipe']:
            args += ['--system-labels-to-wipe', ','.join(p['system_labels_to_wipe'])]
        else:
            args += ['--wipe-mode', p['wipe_mode']]
        # never retried: a second reset of a node that is already rebooting would only fail or wipe twice
        talos.run(args, nodes=[node], endpoints=[node], retries=0, timeout=max(p['timeout'], p['wait_timeout'] + 120))
        module.exit_json(**result)
    except TalosctlError as e:
        result.update(e.to_result())
        module.fail_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
