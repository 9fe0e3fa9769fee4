# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """Options shared by every module that runs talosctl (module_utils/talosctl.py)."""

    DOCUMENTATION = r'''
options:
  talosctl_path:
    description:
      - Path of the C(talosctl) binary.
      - When not set, C(talosctl) is looked up on the controller's E(PATH).
    type: path
  talosconfig:
    description:
      - Path of the decrypted talosconfig of the cell (mTLS client certificate and CA).
      - Passed as C(--talosconfig) to every command that talks to a node over mTLS.
      - Calls to the maintenance API (C(--insecure)) do not use it.
    type: path
  talos_version:
    description:
      - The Talos version the cell is pinned to.
      - The C(talosctl) client must have the same major and minor version; a different patch
        release only produces a warning.
    type: str
    default: v1.13.9
  timeout:
    description:
      - Seconds one C(talosctl) invocation may run before it is stopped and the task fails with a timeout that says
        which command on which node did not finish.
    type: int
    default: 300
  retries:
    description:
      - How many times a call is retried when it fails transiently.
      - "Transient for every command: C(Unavailable), C(DeadlineExceeded), connection refused or reset on the Talos
        API. Commands add their own (C(FailedPrecondition) for C(apply-config), C(bootstrap) and C(kubeconfig) while
        a node installs). TLS, x509 and command-line errors are never retried; a call that exceeded O(timeout) is
        not started again."
    type: int
    default: 10
  retry_delay:
    description:
      - Seconds before the first retry; each further retry doubles the delay (at most 30 seconds).
    type: float
    default: 2.0
  retry_deadline:
    description:
      - Seconds one step may spend retrying transient failures; no new attempt starts after it.
      - Together with O(retries) it bounds the retry policy shared by every talosctl call.
    type: int
    default: 300
  probe_timeout:
    description:
      - Seconds a reachability or state probe of one node may take, every attempt included (a transient refusal is
        retried at most twice within that time).
      - A node whose Talos API does not answer within it is reported unreachable, so nodes that are down cost seconds,
        not a retry chain. Nodes are probed at the same time.
    type: int
    default: 10
requirements:
  - talosctl with the same major.minor version as O(talos_version) on the controller
notes:
  - Nodes are reached from the controller on the Talos API port 50000; nothing connects over SSH.
  - Secret material (PEM blocks, keys, certificates, tokens) is redacted from every text the module returns.
'''
