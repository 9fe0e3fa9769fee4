#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: talos_secrets
short_description: Generate the Talos secrets bundle of a cell exactly once and keep it as a SOPS file
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Ensures the cell's Talos secrets bundle (cluster identity, CAs, tokens; the input of every
    machine config) exists once, as a SOPS YAML file with age recipients at O(path), in the layout
    of talhelper's C(talsecret.sops.yaml), so C(sops edit) and talhelper can read it.
  - When O(path) exists it is decrypted to verify it is a complete bundle. A bundle that cannot be
    decrypted or is incomplete is an error; it is B(never) regenerated (fail closed), because new
    secrets would lock every configured node out of the cluster.
  - When O(path) does not exist, the module first makes sure no node already runs a configured
    Talos (O(cluster_configured), or by asking each of O(nodes) through talosctl). If one does,
    the bundle was lost, and the module fails and tells you to restore it from backup.
  - Otherwise it runs C(talosctl gen secrets --talos-version <contract>) into a private temporary
    directory, encrypts the result with sops to O(age_recipients), proves O(age_identity) opens it and
    removes the plaintext.
  - The recipients of an existing bundle are kept in line by M(cellplatform.platform.sops_recipients),
    which re-encrypts it without changing its content.
  - There is deliberately no C(force) option. To rotate secrets, follow the Talos CA rotation
    procedure; to start a new cluster, move the old bundle away yourself.
  - Runs on the controller. Nothing derived from the secrets is returned.
options:
  path:
    description:
      - The encrypted bundle, normally C(<secrets_dir>/talos-secrets.sops.yaml).
    type: path
    required: true
  cluster_configured:
    description:
      - Whether any node of the cell already runs a configured Talos (the caller found out, for
        example with M(cellplatform.platform.talos_info)).
      - Only consulted when O(path) does not exist. One of O(cluster_configured) and O(nodes) is required;
        when both are given, the bundle is only generated if neither reports a configured node.
    type: bool
  nodes:
    description:
      - Node IP addresses to ask (through talosctl, maintenance API) whether they are already
        configured, used when O(path) does not exist.
      - All nodes are asked at the same time, each question bounded by O(probe_timeout).
      - An unreachable node is an error (every unreachable node is named in one message), because
        the module cannot prove it is unconfigured.
    type: list
    elements: str
  work_dir:
    description:
      - Directory under which a private (C(0700)) temporary directory holds the plaintext bundle
        for the moment it takes to encrypt it; it is always removed. Defaults to the system
        temporary directory. Normally the cell's plaintext directory (C(cellplatform_cell.plaintext_dir)).
    type: path
  preview_path:
    description:
      - Check mode only, when the bundle would be generated - write a throwaway bundle, encrypted to
        O(age_recipients), to this path (never to O(path)), so that a check-mode run can show the
        machine configs that would be applied (M(cellplatform.platform.talos_config) with secrets
        redacted). The caller removes it. Its secrets are not the ones the real run generates.
    type: path
extends_documentation_fragment:
  - cellplatform.platform.talosctl
  - cellplatform.platform.sops
attributes:
  check_mode:
    support: full
    description:
      - Verifies an existing bundle or reports that one would be generated; never writes O(path).
      - With O(preview_path) it writes a throwaway bundle there for the preview of the configs.
  diff_mode:
    support: none
    description: The bundle is secret; nothing about its content is shown.
seealso:
  - module: cellplatform.platform.talos_config
  - module: cellplatform.platform.sops_recipients
'''

EXAMPLES = r'''
- name: Ensure the Talos secrets bundle exists (generated on the first run only)
  cellplatform.platform.talos_secrets:
    path: "{{ cellplatform_cell.secrets_dir }}/talos-secrets.sops.yaml"
    nodes: "{{ cellplatform_cell.nodes | map(attribute='ip') | list }}"
    talos_version: "{{ cellplatform_cell.talos.version }}"
    age_recipients: "{{ cellplatform_cell.age.recipients }}"
    age_identity: "{{ cellplatform_cell.age.identity }}"
    work_dir: "{{ cellplatform_cell.work_dir }}"

- name: Same, when an earlier task already found out whether the cluster is configured
  cellplatform.platform.talos_secrets:
    path: "{{ cellplatform_cell.secrets_dir }}/talos-secrets.sops.yaml"
    cluster_configured: "{{ talos_node_states | dict2items | selectattr('value', 'eq', 'configured') | list | length > 0 }}"
    age_recipients: "{{ cellplatform_cell.age.recipients }}"
'''

RETURN = r'''
path:
  description: Absolute path of the encrypted bundle.
  returned: always
  type: str
  sample: /srv/cell/inventories/production/secrets/talos-secrets.sops.yaml
preview:
  description: The throwaway bundle written for a check-mode preview (see O(preview_path)).
  returned: in check mode, when the bundle would be generated and O(preview_path) is set
  type: str
  sample: /home/ops/.cache/cellplatform/cell/plaintext/talos-secrets.preview.sops.yaml
generated:
  description: Whether the bundle was generated by this run (always false in check mode).
  returned: always
  type: bool
  sample: false
exists:
  description: Whether the encrypted bundle existed before this run.
  returned: always
  type: bool
  sample: true
contract:
  description: The Talos config contract passed as C(--talos-version) when generating.
  returned: always
  type: str
  sample: v1.13
node_states:
  description: The state talosctl reported for each of O(nodes) (only when they were asked).
  returned: when nodes were checked
  type: dict
  sample: {"192.168.100.51": "maintenance"}
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import atomic_write, private_tempdir
from ansible_collections.cellplatform.platform.plugins.module_utils.sops import (
    SOPS_COMMON_ARGS, Sops, SopsError, check_recipients, same_content)
from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    Talosctl, TalosctlError, TALOSCTL_COMMON_ARGS, talos_contract)

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

# Secrets bundle layout (talosctl gen secrets, v1.13 contract; brief Appendix B).
BUNDLE_FIELDS = (
    ('cluster', 'id'), ('cluster', 'secret'),
    ('secrets', 'bootstraptoken'), ('secrets', 'secretboxencryptionsecret'),
    ('trustdinfo', 'token'),
    ('certs', 'etcd', 'crt'), ('certs', 'etcd', 'key'),
    ('certs', 'k8s', 'crt'), ('certs', 'k8s', 'key'),
    ('certs', 'k8saggregator', 'crt'), ('certs', 'k8saggregator', 'key'),
    ('certs', 'k8sserviceaccount', 'key'),
    ('certs', 'os', 'crt'), ('certs', 'os', 'key'),
)


def bundle_problems(plaintext):
    """Names of the fields missing from a decrypted bundle (empty list when it is complete)."""
    try:
        data = yaml.safe_load(plaintext)
    except yaml.YAMLError:
        return ['(the file is not YAML)']
    if not isinstance(data, dict):
        return ['(the file is not a YAML mapping)']
    missing = []
    for field in BUNDLE_FIELDS:
        node = data
        for part in field:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, str) or not node.strip():
            missing.append('.'.join(field))
    return missing


def verify_existing(sops, path):
    try:
        plaintext = sops.decrypt_file(path)
    except SopsError as exc:
        raise SopsError(
            'the Talos secrets bundle %s exists but cannot be used: %s. It is never regenerated while '
            'it exists (new secrets would lock the cluster out); fix the identity or restore the '
            'bundle from backup' % (path, exc))
    missing = bundle_problems(plaintext)
    if missing:
        raise SopsError(
            'the Talos secrets bundle %s decrypts but is incomplete (missing: %s); it is never '
            'regenerated while it exists: restore it from backup' % (path, ', '.join(missing)))


def configured_nodes(module, talos, nodes):
    """State of every node (asked at once); fails the module when any node cannot be asked."""
    states, errors = talos.probe_nodes(nodes)
    if errors:
        failed = [ip for ip in nodes if ip in errors]
        first = errors[failed[0]]
        module.fail_json(
            msg='cannot tell whether node(s) %s already run a configured Talos (%s); the secrets bundle is only '
                'generated when every node is provably unconfigured: fix what the message says and rerun, or, if '
                'the cluster already exists, restore the bundle from backup instead'
                % (', '.join(failed), '; '.join(errors[ip].message for ip in failed)),
            code=first.code, node=first.node, rc=first.rc, stderr=first.stderr)
    unreachable = [ip for ip in nodes if states[ip]['state'] == 'unreachable']
    if unreachable:
        module.fail_json(
            msg='the Talos API (port 50000) of node(s) %s did not answer within %s seconds (probe_timeout), so it '
                'cannot be proven that none of them already runs a configured Talos; the secrets bundle is only '
                'generated when every node is provably unconfigured. Bring them up (in maintenance mode for a new '
                'cell) and rerun; if the cluster already exists, restore the bundle from backup instead'
                % (', '.join('%s (%s)' % (ip, states[ip].get('error') or 'no answer') for ip in unreachable),
                   talos.probe_timeout),
            node_states=dict((ip, d['state']) for ip, d in states.items()))
    return dict((ip, d['state']) for ip, d in states.items())


def generate(module, talos, sops, path, contract, work_dir):
    with private_tempdir('talos-secrets-', work_dir) as tmpdir:
        plain = os.path.join(tmpdir, 'secrets.yaml')
        talos.run(['gen', 'secrets', '--output-file', plain, '--talos-version', contract])
        with open(plain, 'rb') as handle:
            plaintext = handle.read()
        missing = bundle_problems(plaintext)
        if missing:
            raise SopsError(
                'talosctl gen secrets produced an incomplete bundle (missing: %s); check that talosctl %s '
                'is installed' % (', '.join(missing), module.params['talos_version']))
        ciphertext = sops.encrypt(plaintext, module.params['age_recipients'], path)
        # Prove the identity later runs will use can read the bundle before it is kept: a bundle
        # nobody here can decrypt would block every later run. The check reads the file sops wrote
        # next to the final path (the same directory), then the rename makes it the bundle.
        probe = os.path.join(os.path.dirname(path), '.new.' + os.path.basename(path))
        atomic_write(probe, ciphertext)
        try:
            if not same_content(sops.decrypt_file(probe), plaintext, 'yaml'):
                raise SopsError('the encrypted Talos secrets bundle did not read back as generated; nothing was '
                                'written, rerun')
            os.rename(probe, path)
        finally:
            if os.path.exists(probe):
                os.unlink(probe)


def main():
    argument_spec = dict(
        TALOSCTL_COMMON_ARGS,
        path=dict(type='path', required=True),
        cluster_configured=dict(type='bool'),
        nodes=dict(type='list', elements='str'),
        work_dir=dict(type='path'),
        preview_path=dict(type='path'),
        **SOPS_COMMON_ARGS
    )
    module = AnsibleModule(argument_spec=argument_spec,
                           required_one_of=[('cluster_configured', 'nodes')],
                           supports_check_mode=True)
    if not HAS_YAML:
        module.fail_json(msg="talos_secrets needs the Python library PyYAML on the controller: pip install PyYAML")
    params = module.params
    path = os.path.abspath(params['path'])
    try:
        contract = talos_contract(params['talos_version'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=False, path=path, generated=False, exists=os.path.exists(path), contract=contract)

    try:
        sops = Sops(params['age_identity'], binary=params['sops_binary'])
        if result['exists']:
            verify_existing(sops, path)
            module.exit_json(**result)

        # No bundle: refuse to create one for a cluster that already has one somewhere.
        # Either source saying "configured" is enough to refuse (both are consulted when given).
        talos = None
        configured, who = False, ''
        if params['cluster_configured']:
            configured, who = True, 'the caller (cluster_configured) says nodes'
        elif params['nodes']:
            talos = Talosctl(module)
            states = configured_nodes(module, talos, params['nodes'])
            result['node_states'] = states
            configured_ips = sorted(ip for ip, state in states.items() if state == 'configured')
            if configured_ips:
                configured, who = True, 'nodes %s' % ', '.join(configured_ips)
        if configured:
            module.fail_json(
                msg='%s already run a configured Talos but the secrets bundle %s is missing; restore it from backup '
                    '(regenerating would lock you out of the cluster: the nodes only trust the original CAs and tokens)'
                    % (who, path), **result)

        # Generating needs someone to encrypt to: check before touching anything.
        check_recipients(params['age_recipients'])
        result['changed'] = True
        if module.check_mode:
            result['msg'] = 'would generate the Talos secrets bundle %s (check mode)' % path
            if params['preview_path']:
                # A throwaway bundle (never the cell's): the configs of a new cell can be previewed.
                preview = os.path.abspath(params['preview_path'])
                generate(module, talos or Talosctl(module), sops, preview, contract, params['work_dir'])
                result['preview'] = preview
            module.exit_json(**result)
        if talos is None:
            talos = Talosctl(module)
        generate(module, talos, sops, path, contract, params['work_dir'])
        result['generated'] = True
    except SopsError as exc:
        result['changed'] = False  # nothing was written
        module.fail_json(msg=str(exc), **result)
    except TalosctlError as exc:
        result['changed'] = False  # nothing was written
        failure = exc.to_result()
        failure.update(result)
        failure['msg'] = exc.message
        module.fail_json(**failure)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
