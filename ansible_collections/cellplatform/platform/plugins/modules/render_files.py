#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: render_files
short_description: Write a layer's rendered files into the build tree, deterministically
version_added: "0.1.0"
description:
  - Writes every file a layer renders (Talos patches, Terraform variables, Helm values, extra
    manifests, Argo CD Applications) in one task, and merges the layer's components into
    C(plan.json) and the human summary C(PLAN.md).
  - Output is byte-identical for identical input. A file is rewritten only when its bytes or
    mode change, so a rerun reports C(changed=false).
  - YAML is written with a safe dumper in block style; strings that YAML 1.1 would read as
    another type (C("off"), C("yes"), C("1.20")) stay quoted, so Talos and Kubernetes read
    back exactly the value that was meant.
  - Refuses to write private key material (PEM private keys, age identities) or a Kubernetes Secret
    with plaintext values into the tree.
  - The components' C(secrets) (see O(components)) are the one kind of secret it writes, and only
    SOPS-encrypted to the cell's age recipients (C(cell.age.recipients)); it decrypts the platform
    secrets (C(cell.secrets.platform)) itself with the cell's identity (C(cell.age.identity)), so no
    value passes through the task's arguments. An encrypted file is rewritten only when its
    decrypted content, its recipient set or its C(encrypted_regex) changed. Without the platform
    secrets, the identity or recipients it writes none, keeps what an earlier render wrote and says
    why (result C(secrets.skipped)); in apply mode (C(cell.mode)) that is an error when a component
    needs a Secret that is not C(optional).
  - With O(cell) and recipients, writes the tree's C(.sops.yaml) creation rules (public keys only).
  - This is an action plugin; it runs on the controller and never on a managed node.
author:
  - cellplatform contributors (@cellplatform)
options:
  root:
    description:
      - The build directory of the cell, for example C(build/cell). Created when missing.
    type: path
    required: true
  files:
    description:
      - The files to write, relative to O(root).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description:
          - Path relative to O(root); no leading C(/) and no C(..).
        type: str
        required: true
      data:
        description:
          - A value serialised as YAML or JSON (chosen by O(files[].format) or the file extension).
          - JSON is written with sorted keys; YAML keeps the key order given.
        type: raw
      documents:
        description:
          - A list of values written as a multi-document YAML stream.
        type: list
        elements: raw
      content:
        description:
          - Literal text, written as given (a final newline is added when missing).
        type: str
      format:
        description:
          - Serialisation of O(files[].data). Defaults from the extension (C(.json), C(.yaml)).
        type: str
        choices: [yaml, json, text]
      mode:
        description:
          - File mode, as an octal string.
        type: str
        default: "0644"
  layer:
    description:
      - The layer being rendered (C(l0) ... C(l7)). With it, the layer's components are merged into
        C(plan.json) under O(root) and C(PLAN.md) is regenerated; components of other layers already
        in C(plan.json) are kept, those of O(layer) are replaced.
    type: str
  components:
    description:
      - The layer's component records (the shape is documented in C(docs/development.md) and in the
        C(cellplatform.platform.component) role). For each enabled record the task writes its Helm
        values (C(<layer>/<name>/values.yaml)), its extra manifests (C(manifests.yaml)), its Namespace
        (C(namespace.yaml)), its Argo CD Application (C(<gitops path>/<name>.yaml)) and its Secrets,
        SOPS-encrypted with a KSOPS generator (C(<layer>/<name>/secrets/)), and adds its C(plan.json) entry.
      - Requires O(layer) and O(cell).
    type: list
    elements: dict
    default: []
  cell:
    description:
      - The cell model (the C(cellplatform_cell) variable set by the preflight). Its GitOps settings
        address the Applications; its description of the cell (nodes, network, versions) becomes the
        C(cell) section of C(plan.json).
    type: dict
  prune:
    description:
      - Directories (relative to O(root)) owned by this task. Files in them that this task did
        not write are removed, so a node taken out of the inventory loses its rendered patch.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: In check mode nothing is written; the result lists what would change.
  diff_mode:
    support: full
    description: Shows the before and after text of every file that changes.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller; writes to the controller's filesystem.
notes:
  - No secret value goes through this module's arguments; the components' Secrets are built from the
    platform secrets it decrypts itself, and written only encrypted.
"""

EXAMPLES = r"""
- name: Render L1
  cellplatform.platform.render_files:
    root: "{{ cellplatform_cell.build_dir }}"
    files:
      - path: l1/metallb/values.yaml
        data: "{{ l1_metallb_values }}"
      - path: l1/metallb/manifests.yaml
        documents: "{{ l1_metallb_manifests }}"
    layer: l1
    cell: "{{ cellplatform_cell }}"
    components:
      - name: metallb
        namespace: metallb-system
        pod_security: privileged
        chart: {repo: https://metallb.github.io/metallb, name: metallb, version: 0.16.1}
        values: {frrk8s: {enabled: false}}
        manifests: "{{ l1_metallb_manifests }}"
        gate: {deployments: [metallb-controller], daemonsets: [metallb-speaker]}
"""

RETURN = r"""
root:
  description: The absolute build directory.
  returned: always
  type: str
  sample: /home/me/cellplatform/build/cell
files:
  description: Every file handled, with C(created), C(updated), C(mode), C(removed) or C(unchanged).
  returned: always
  type: dict
  sample: {"l1/metallb/values.yaml": "unchanged", "plan.json": "updated"}
changed_files:
  description: The paths that were (or in check mode would be) written or removed.
  returned: always
  type: list
  elements: str
  sample: ["plan.json", "PLAN.md"]
secrets:
  description:
    - The components' Secrets of this render - C(rendered) (the encrypted files written or kept),
      C(skipped) (why none could be rendered here, or null) and C(components) (those whose Secrets are
      in the tree and whose Application has the KSOPS source).
  returned: when a component of O(components) lists secrets
  type: dict
  sample: {"rendered": ["l1/external-dns/secrets/external-dns-credentials.sops.yaml"], "skipped": null,
           "components": ["external-dns"]}
"""

from ansible.module_utils.basic import AnsibleModule


ARGUMENT_SPEC = dict(
    root=dict(type="path", required=True),
    files=dict(
        type="list", elements="dict", default=[],
        options=dict(
            path=dict(type="str", required=True),
            data=dict(type="raw"),
            documents=dict(type="list", elements="raw"),
            content=dict(type="str"),
            format=dict(type="str", choices=["yaml", "json", "text"]),
            mode=dict(type="str", default="0644"),
        ),
    ),
    layer=dict(type="str"),
    components=dict(type="list", elements="dict", default=[]),
    cell=dict(type="dict"),
    prune=dict(type="list", elements="str", default=[]),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg="cellplatform.platform.render_files is an action plugin and runs on the controller only.")


if __name__ == "__main__":
    main()
