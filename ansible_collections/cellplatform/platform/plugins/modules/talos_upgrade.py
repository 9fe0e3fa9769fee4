#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: talos_upgrade
short_description: Upgrade Talos on one node to an installer image, skipping a node that already runs it
version_added: 0.2.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Asks the node what it runs (C(talosctl version), the C(schematic) pseudo-extension of C(get extensions)). A node
    that already runs the Talos version of O(image) with its Image Factory schematic is left alone (C(changed=false)),
    so an interrupted rolling upgrade resumes where it stopped and a finished one changes nothing.
  - Otherwise runs C(talosctl upgrade --image O(image) --wait --drain=false --timeout O(wait_timeout)s) against the
    node (its own endpoint) and waits, as talosctl's reboot tracker does, until the node is back with a new boot;
    then asks the node again and fails unless it runs the target version and schematic.
  - C(--drain=false) because the caller drains and uncordons the Kubernetes node itself (the collection uses
    M(kubernetes.core.k8s_drain) before and a readiness gate after), so Kubernetes-side steps stay in one place.
  - One node per task. Talos 1.13's upgrade API (LifecycleService) does B(not) check etcd quorum before a control
    plane reboots; the caller must upgrade control planes one at a time and wait until etcd is healthy with every
    member before the next one (M(cellplatform.platform.talos_etcd) with C(action=status)).
  - The upgrade itself is never retried (a second call would install and reboot again); a failed call is followed
    by one more look at the node, and a node that turns out to run the target is reported as upgraded.
extends_documentation_fragment:
  - cellplatform.platform.talosctl
options:
  node:
    description:
      - IP address of the node (also its endpoint, never the API VIP).
    type: str
    required: true
  image:
    description:
      - The installer image, C(factory.talos.dev/<platform>-installer/<schematic>:<version>) - the cell's schematic and
        the target Talos version, the same image the machine config's C(machine.install.image) names.
      - Its tag must be a Talos version (C(vMAJOR.MINOR.PATCH)).
    type: str
    required: true
  wait_timeout:
    description:
      - Seconds talosctl waits for the node to come back from the upgrade reboot (C(--timeout)).
      - The talosctl process itself may run this plus 120 seconds (or O(timeout) if larger).
    type: int
    default: 1800
  reboot_mode:
    description:
      - C(--reboot-mode); V(powercycle) bypasses kexec.
    type: str
    choices: [default, powercycle]
    default: default
attributes:
  check_mode:
    support: full
    description: The node is asked what it runs; the upgrade is only reported.
  diff_mode:
    support: none
    description: No diff is returned.
seealso:
  - module: cellplatform.platform.talos_etcd
  - module: cellplatform.platform.talos_upgrade_k8s
  - module: kubernetes.core.k8s_drain
notes:
  - Requires O(talosconfig); the node must be configured.
  - Upgrade across minors one minor at a time, through the latest patch of each (the playbook C(upgrade.yml) refuses
    a longer jump before it touches anything).
'''

EXAMPLES = r'''
- name: Upgrade this node to the cell's installer image (control planes one at a time)
  cellplatform.platform.talos_upgrade:
    node: "{{ cellplatform_node_ip }}"
    image: "{{ cellplatform_cell.talos.installer_image }}"
    talosconfig: "{{ cellplatform_cell.work_dir }}/configs/{{ inventory_hostname }}.talosconfig"
    talos_version: "{{ cellplatform_cell.talos.version }}"
    wait_timeout: 1800
'''

RETURN = r'''
upgraded:
  description: Whether this task upgraded the node (or would, in check mode).
  returned: always
  type: bool
  sample: true
node:
  description: The node's IP address.
  returned: always
  type: str
  sample: 192.168.100.51
image:
  description: The installer image.
  returned: always
  type: str
  sample: factory.talos.dev/nocloud-installer/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:v1.13.10
version_before:
  description: The Talos version the node ran before the task.
  returned: always
  type: str
  sample: v1.13.9
version_after:
  description: The Talos version it runs after the task (the same as before in check mode or when skipped).
  returned: always
  type: str
  sample: v1.13.10
schematic_before:
  description: The node's Image Factory schematic before the task (null when its image has none).
  returned: always
  type: str
  sample: ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515
schematic_after:
  description: The node's Image Factory schematic after the task.
  returned: always
  type: str
  sample: ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515
'''

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    TALOSCTL_COMMON_ARGS, Talosctl, TalosctlError, image_version, redact)

_SCHEMATIC_RE = re.compile(r'^[0-9a-f]{64}$')
_TALOS_TAG_RE = re.compile(r'^v\d+\.\d+\.\d+$')


def image_target(image):
    """(Talos version, schematic or None) an installer image carries; ValueError when the tag is no version."""
    repo, tag = image_version(image)
    if not _TALOS_TAG_RE.match(tag or ''):
        raise ValueError("image %r has no Talos version as its tag (expected <repository>:vMAJOR.MINOR.PATCH, for "
                         "example factory.talos.dev/nocloud-installer/<schematic>:v1.13.10)" % image)
    last = repo.rsplit('/', 1)[-1]
    return tag, last if _SCHEMATIC_RE.match(last) else None


def runs_target(found, version, schematic):
    return found.get('talos_version') == version and (schematic is None or found.get('schematic') == schematic)


def run_module():
    argument_spec = dict(TALOSCTL_COMMON_ARGS)
    argument_spec.update(
        node=dict(type='str', required=True),
        image=dict(type='str', required=True),
        wait_timeout=dict(type='int', default=1800),
        reboot_mode=dict(type='str', default='default', choices=['default', 'powercycle']),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if not p['talosconfig']:
        module.fail_json(msg="talosconfig is required: upgrade runs over mTLS; pass the cell's decrypted talosconfig")
    if p['wait_timeout'] <= 0:
        module.fail_json(msg="wait_timeout=%s must be a positive number of seconds" % p['wait_timeout'])
    try:
        version, schematic = image_target(p['image'])
    except ValueError as e:
        module.fail_json(msg=str(e))
    node = p['node']
    talos = Talosctl(module)
    result = dict(changed=False, upgraded=False, node=node, image=p['image'])
    try:
        before = talos.node_versions(node)
        result.update(version_before=before['talos_version'], schematic_before=before['schematic'],
                      version_after=before['talos_version'], schematic_after=before['schematic'])
        if runs_target(before, version, schematic):
            module.exit_json(**result)
        result.update(changed=True, upgraded=True)
        if module.check_mode:
            module.exit_json(**result)
        args = ['upgrade', '--image', p['image'], '--wait', '--drain=false', '--timeout', '%ds' % p['wait_timeout'],
                '--reboot-mode', p['reboot_mode']]
        rc, out, err = talos.run(args, nodes=[node], endpoints=[node], check=False, retries=0,
                                 timeout=max(p['timeout'], p['wait_timeout'] + 120))
        failure = None if rc == 0 else talos.error(args, rc, out, err, nodes=[node])
        if failure is not None and 'context deadline exceeded' in (err or ''):
            failure.message = ("node %s did not come back from the upgrade reboot within wait_timeout=%ss (talosctl: "
                               "context deadline exceeded); it may still be booting: look at its console or "
                               "`talosctl -n %s dmesg`, then rerun (a node that runs the target is skipped)"
                               % (node, p['wait_timeout'], node))
        # whatever talosctl said, the node's own answer decides (it may have finished after a dropped stream)
        try:
            after = talos.node_versions(node)
        except TalosctlError as again:
            if failure is None:
                raise
            failure.message += '; asked again afterwards, the node did not answer either (%s)' % again.message
            raise failure
        result.update(version_after=after['talos_version'], schematic_after=after['schematic'])
        if runs_target(after, version, schematic):
            if failure is not None:
                module.warn("talosctl upgrade on node %s failed (%s), but the node runs %s now; treating it as "
                            "upgraded" % (node, failure.message, version))
            module.exit_json(**result)
        if failure is not None:
            raise failure
        module.fail_json(msg="talosctl upgrade on node %s reported success, but the node runs %s (schematic %s), not "
                             "%s (schematic %s): the installer image did not boot; look at `talosctl -n %s dmesg` and "
                             "the boot entries before retrying"
                             % (node, after['talos_version'], after['schematic'], version, schematic, node),
                         stdout=redact(out), **result)
    except TalosctlError as e:
        result.update(e.to_result())
        module.fail_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
