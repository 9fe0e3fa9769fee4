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
      - Seconds one C(talosctl) invocation may run before it is stopped and the task fails.
    type: int
    default: 300
  retries:
    description:
      - How many times a call is retried when it fails with a transient gRPC error
        (for example C(FailedPrecondition) while a node installs, or C(Unavailable) while it reboots).
    type: int
    default: 10
  retry_delay:
    description:
      - Seconds before the first retry; each further retry doubles the delay (at most 30 seconds).
    type: float
    default: 2.0
requirements:
  - talosctl with the same major.minor version as O(talos_version) on the controller
notes:
  - Nodes are reached from the controller on the Talos API port 50000; nothing connects over SSH.
  - Secret material (PEM blocks, keys, certificates, tokens) is redacted from every text the module returns.
'''
