#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: talos_config
short_description: Generate every node's Talos machine config and the talosconfig, as SOPS files, in one call
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Generates the complete machine configuration of every node of a cell, and the cell's
    talosconfig, from the encrypted secrets bundle and the rendered strategic-merge patches, in
    one batched call (one task for the whole cell, however many nodes it has).
  - "Steps: decrypt the bundle into a private temporary directory;
    C(talosctl gen config --with-secrets ... --talos-version <contract>) with the common,
    control-plane and worker patches; set the talosconfig endpoints (the control-plane IPs, never
    the VIP) and default node; C(talosctl machineconfig patch) per node with that node's patch
    (in parallel); optionally C(talosctl validate --strict) (in parallel); encrypt each result with sops
    to O(dest)/C(<name>.sops.yaml) and the talosconfig to O(talosconfig_dest)."
  - A file is only rewritten when its decrypted content (compared as YAML data) or its recipient set
    differs, so a rerun reports C(changed=false) and leaves every file byte-identical, and a change of
    O(age_recipients) re-encrypts every file.
  - C(gen config) issues a new admin client certificate and key for the talosconfig each time, so
    two runs never produce the same talosconfig. The stored talosconfig is kept while it is
    equivalent - the same current context, the same set of contexts and, in each, the same
    endpoints, nodes, CA and other settings, with a client certificate and key present - and
    replaced otherwise (new endpoints, another CA). Certificates are compared as opaque data, never
    parsed as X.509. To renew the stored admin certificate (Talos issues it for one year), set
    O(renew_talosconfig) (the C(renew-credentials.yml) playbook does) - the freshly issued one replaces
    it, signed by the Talos CA of the secrets bundle; the cluster's PKI is not touched.
  - The plaintext only exists in the private temporary directory, which is always removed.
    Results never contain configuration content; diffs have every secret value redacted.
  - Encrypted configs of nodes no longer in O(nodes) are reported in RV(orphaned), never deleted.
options:
  cluster_name:
    description: Cluster name (first positional argument of C(talosctl gen config)).
    type: str
    required: true
  cluster_endpoint:
    description: Kubernetes API endpoint, C(https://<VIP or DNS name>:<port>).
    type: str
    required: true
  secrets_bundle:
    description: The Talos secrets bundle (a SOPS file) written by M(cellplatform.platform.talos_secrets).
    type: path
    required: true
  kubernetes_version:
    description: Kubernetes version (C(--kubernetes-version)), without a leading C(v).
    type: str
    default: 1.36.3
  install_image:
    description: Installer image (C(--install-image)); use the Image Factory C(nocloud-installer) of the pinned version.
    type: str
    required: true
  install_disk:
    description: Default install disk (C(--install-disk)); per-node disks belong in the node patch.
    type: str
    default: /dev/sda
  patches:
    description: Rendered strategic-merge patch files applied by C(gen config), in order.
    type: dict
    default: {}
    suboptions:
      common:
        description: Patches for every node (C(--config-patch)).
        type: list
        elements: path
        default: []
      controlplane:
        description: Patches for control-plane nodes (C(--config-patch-control-plane)).
        type: list
        elements: path
        default: []
      worker:
        description: Patches for workers (C(--config-patch-worker)).
        type: list
        elements: path
        default: []
  nodes:
    description:
      - Every node of the cell, as dicts with C(name) (required; the config is stored as
        O(dest)/C(<name>.sops.yaml)), C(role) (required; C(controlplane) or C(worker)), C(ip)
        (optional; returned with the node's result) and C(patch) (optional; the node's own
        strategic-merge patch files, applied in order).
      - The entries of C(cellplatform_cell.nodes) can be passed unchanged; their other keys
        (C(address), C(install_disk), C(vm_id)) are accepted and ignored. Any other key is an error.
      - A node without C(patch) uses O(node_patch_dir)/C(<name>.yaml) when O(node_patch_dir) is set,
        otherwise only the role's configuration.
    type: list
    elements: dict
    required: true
  node_patch_dir:
    description:
      - Directory holding one rendered patch per node, C(<name>.yaml), used for nodes without C(patch).
    type: path
  dest:
    description: Directory for the encrypted per-node configs (created C(0700) if missing).
    type: path
    required: true
  talosconfig_dest:
    description: Path of the encrypted talosconfig, normally C(<secrets_dir>/talosconfig.sops.yaml).
    type: path
    required: true
  talos_endpoints:
    description:
      - Talos API endpoints written into the talosconfig (the control-plane IPs). The first one is
        also the default node.
      - Never the VIP (the host of O(cluster_endpoint)). The VIP depends on etcd and the API server, so
        Talos API access would fail exactly when it is needed for recovery.
    type: list
    elements: str
    required: true
  renew_talosconfig:
    description:
      - Replace the stored talosconfig with the one C(gen config) just issued (a new admin client certificate and key
        from the bundle's Talos CA) even when it is equivalent. An explicit renewal; every run with it reports a change.
    type: bool
    default: false
  validate:
    description: Run C(talosctl validate --mode <validate_mode> --strict) on every generated config.
    type: bool
    default: true
  validate_mode:
    description: The C(--mode) of C(talosctl validate).
    type: str
    choices: [metal, cloud, container]
    default: metal
  parallelism:
    description: How many talosctl processes run at the same time for the per-node steps.
    type: int
    default: 16
  work_dir:
    description:
      - Directory under which the private (C(0700)) temporary directory for plaintext is created;
        it is always removed. Defaults to the system temporary directory. Normally C(cellplatform_work_dir).
    type: path
extends_documentation_fragment:
  - cellplatform.platform.talosctl
  - cellplatform.platform.sops
attributes:
  check_mode:
    support: full
    description: Generates and compares in the temporary directory; writes nothing.
  diff_mode:
    support: full
    description: Unified diff of each changed file with every secret value replaced by C(<redacted>).
seealso:
  - module: cellplatform.platform.talos_secrets
  - module: cellplatform.platform.sops_recipients
'''

EXAMPLES = r'''
- name: Generate every node's machine config (one task for the whole cell)
  cellplatform.platform.talos_config:
    cluster_name: "{{ cellplatform_cell.name }}"
    cluster_endpoint: "{{ cellplatform_cell.api.endpoint }}"
    secrets_bundle: "{{ cellplatform_cell.secrets_dir }}/talos-secrets.sops.yaml"
    talos_version: "{{ cellplatform_cell.talos.version }}"
    kubernetes_version: "{{ cellplatform_cell.talos.kubernetes_version }}"
    install_image: "{{ cellplatform_cell.talos.installer_image }}"
    install_disk: "{{ cellplatform_cell.talos.install_disk }}"
    patches:
      common: ["{{ cellplatform_cell.build_dir }}/l0/talos/patches/common.yaml"]
      controlplane: ["{{ cellplatform_cell.build_dir }}/l0/talos/patches/controlplane.yaml"]
      worker: ["{{ cellplatform_cell.build_dir }}/l0/talos/patches/worker.yaml"]
    nodes: "{{ cellplatform_cell.nodes }}"
    node_patch_dir: "{{ cellplatform_cell.build_dir }}/l0/talos/nodes"
    dest: "{{ cellplatform_cell.build_dir }}/talos/machineconfigs"
    talosconfig_dest: "{{ cellplatform_cell.secrets_dir }}/talosconfig.sops.yaml"
    talos_endpoints: "{{ cellplatform_cell.talos_endpoints }}"
    age_recipients: "{{ cellplatform_cell.age.recipients }}"
    age_identity: "{{ cellplatform_cell.age.identity }}"
    work_dir: "{{ cellplatform_cell.work_dir }}"

- name: Minimal, explicit node list
  cellplatform.platform.talos_config:
    cluster_name: cell
    cluster_endpoint: https://192.168.100.50:6443
    secrets_bundle: inventories/production/secrets/talos-secrets.sops.yaml
    install_image: factory.talos.dev/nocloud-installer/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:v1.13.9
    nodes:
      - {name: cp-1, role: controlplane, ip: 192.168.100.51, patch: [build/cell/l0/talos/nodes/cp-1.yaml]}
      - {name: worker-1, role: worker, ip: 192.168.100.61, patch: [build/cell/l0/talos/nodes/worker-1.yaml]}
    dest: ~/.cache/cellplatform/cell/configs
    talosconfig_dest: inventories/production/secrets/talosconfig.sops.yaml
    talos_endpoints: [192.168.100.51]
    age_recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
'''

RETURN = r'''
contract:
  description: The config contract passed as C(--talos-version).
  returned: always
  type: str
  sample: v1.13
nodes:
  description: One entry per node, in the order of O(nodes); no configuration content.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
    role:
      description: Node role.
      type: str
    ip:
      description: Node IP address as given.
      type: str
    path:
      description: The encrypted config file.
      type: str
    changed:
      description: Whether the file was (or, in check mode, would be) written.
      type: bool
  sample: [{"name": "cp-1", "role": "controlplane", "ip": "192.168.100.51",
            "path": "/home/ops/.cache/cellplatform/cell/configs/cp-1.sops.yaml", "changed": false}]
changed_nodes:
  description: Names of the nodes whose config changed (or would change).
  returned: always
  type: list
  elements: str
  sample: ["worker-3"]
talosconfig:
  description: The encrypted talosconfig and whether it changed.
  returned: always
  type: dict
  sample: {"path": "/srv/cell/inventories/production/secrets/talosconfig.sops.yaml", "changed": false}
validated:
  description: Whether every config passed C(talosctl validate --strict) in this run.
  returned: always
  type: bool
  sample: true
orphaned:
  description: Encrypted configs in O(dest) that belong to no node in O(nodes) (left in place).
  returned: always
  type: list
  elements: str
  sample: []
'''

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cellplatform.platform.plugins.module_utils.private_files import (
    atomic_write, ensure_private_dir, private_tempdir)
from ansible_collections.cellplatform.platform.plugins.module_utils.sops import (
    SOPS_COMMON_ARGS, Sops, SopsError, check_recipients, recipients_of_file)
from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import (
    Talosctl, TalosctlError, TALOSCTL_COMMON_ARGS, talos_contract)

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

REDACTED = '<redacted>'
# Field names whose values are secret (or identify the cluster's secrets) in machine configs and
# talosconfigs. Any field name containing "key", "secret" or "token" is redacted as well.
SECRET_FIELDS = frozenset(('crt', 'ca', 'id', 'token', 'secret', 'bootstraptoken',
                           'secretboxencryptionsecret', 'aescbcencryptionsecret', 'contents'))
_SECRET_WORDS = ('key', 'secret', 'token', 'password')
NODE_NAME_RE = re.compile(r'^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$')
ENDPOINT_RE = re.compile(r'^https://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s]+)(?::(?P<port>\d{1,5}))?/?$')


def redact_tree(node):
    """Copy of a parsed YAML tree with every secret value replaced by ``<redacted>``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            name = str(key).lower()
            secret = name in SECRET_FIELDS or any(word in name for word in _SECRET_WORDS)
            if secret and isinstance(value, (dict, list)):
                out[key] = _redact_leaves(value)         # e.g. ca: {crt, key}
            elif secret and not isinstance(value, (bool, int, float)) and value not in (None, ''):
                out[key] = REDACTED
            else:
                out[key] = redact_tree(value)
        return out
    if isinstance(node, list):
        return [redact_tree(item) for item in node]
    return node


def _redact_leaves(node):
    if isinstance(node, dict):
        return dict((key, _redact_leaves(value)) for key, value in node.items())
    if isinstance(node, list):
        return [_redact_leaves(item) for item in node]
    return node if node in (None, '') or isinstance(node, bool) else REDACTED


def redacted_text(plaintext):
    """YAML text of all documents of ``plaintext`` with secrets redacted ('' for None)."""
    if plaintext is None:
        return ''
    try:
        docs = list(yaml.safe_load_all(plaintext))
    except yaml.YAMLError:
        return '<unparseable content: not shown>\n'
    return yaml.safe_dump_all([redact_tree(doc) for doc in docs], default_flow_style=False, sort_keys=False)


def make_diff(path, before, after):
    return dict(before_header='%s (secrets redacted)' % path, after_header='%s (secrets redacted)' % path,
                before=redacted_text(before), after=redacted_text(after))


NODE_KEYS = frozenset(('name', 'role', 'ip', 'patch'))
CELL_MODEL_NODE_KEYS = frozenset(('address', 'install_disk', 'vm_id'))   # accepted, not used here
ROLES = ('controlplane', 'worker')


def normalise_nodes(raw_nodes, node_patch_dir):
    """Nodes as dicts name/role/ip/patch(list of paths) plus the problems found on the way."""
    nodes, problems = [], []
    for index, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            problems.append('nodes[%d] = %r is not a mapping; give name, role, ip and patch' % (index, raw))
            continue
        unknown = sorted(set(raw) - NODE_KEYS - CELL_MODEL_NODE_KEYS)
        if unknown:
            problems.append('nodes[%d] has unsupported key(s) %s; supported: name, role, ip, patch'
                            % (index, ', '.join(unknown)))
        name = raw.get('name')
        name = str(name) if name is not None else ''
        role = raw.get('role')
        if role not in ROLES:
            problems.append('nodes[%d].role = %r is not valid; use controlplane or worker' % (index, role))
        patch = raw.get('patch')
        if patch is None:
            patch = [os.path.join(node_patch_dir, '%s.yaml' % name)] if node_patch_dir and name else []
        elif isinstance(patch, str):
            patch = [patch]
        elif not isinstance(patch, list) or not all(isinstance(p, str) for p in patch):
            problems.append('nodes[%d].patch = %r must be a path or a list of paths' % (index, patch))
            patch = []
        patch = [os.path.abspath(p) for p in patch]
        ip = raw.get('ip')
        nodes.append(dict(name=name, role=role, ip=str(ip) if ip is not None else None, patch=patch))
    return nodes, problems


def check_inputs(module):
    """Every input problem at once; each names the field, the value and the fix."""
    params = module.params
    problems = []
    match = ENDPOINT_RE.match(params['cluster_endpoint'] or '')
    vip = None
    if not match:
        problems.append("cluster_endpoint %r is not an https URL with a host; use https://<VIP or DNS name>:6443"
                        % params['cluster_endpoint'])
    else:
        vip = match.group('host').strip('[]')
    if not params['talos_endpoints']:
        problems.append('talos_endpoints is empty; set it to the control-plane IP addresses (never the VIP)')
    for index, endpoint in enumerate(params['talos_endpoints'] or []):
        if vip and endpoint.strip('[]').split(':')[0] == vip:
            problems.append('talos_endpoints[%d] = %r is the API VIP (host of cluster_endpoint); the VIP depends on '
                            'etcd and kube-apiserver, so use the control-plane IP addresses instead' % (index, endpoint))
    names, roles = set(), set()
    nodes, node_problems = normalise_nodes(params['nodes'], params['node_patch_dir'])
    problems.extend(node_problems)
    params['nodes'] = nodes
    for index, node in enumerate(nodes):
        name = node['name']
        if not NODE_NAME_RE.match(name or ''):
            problems.append("nodes[%d].name = %r is not a valid node name; use letters, digits, '-', '.' and '_' "
                            "(it becomes the file name <name>.sops.yaml)" % (index, name))
        elif name in names:
            problems.append('nodes[%d].name = %r appears twice; every node needs a unique name' % (index, name))
        names.add(name)
        roles.add(node['role'])
        for pindex, patch in enumerate(node['patch']):
            if not os.path.isfile(patch):
                problems.append('nodes[%d].patch[%d] = %r does not exist; render the L0 Talos patches first '
                                '(cellplatform_mode=render)' % (index, pindex, patch))
    if 'controlplane' not in roles:
        problems.append('nodes has no node with role controlplane; a cell needs at least one control-plane node')
    for kind in ('common', 'controlplane', 'worker'):
        for index, patch in enumerate((params['patches'] or {}).get(kind) or []):
            if not os.path.isfile(patch):
                problems.append('patches.%s[%d] = %r does not exist; render the L0 Talos patches first'
                                % (kind, index, patch))
    if not os.path.exists(params['secrets_bundle']):
        problems.append('secrets_bundle %r does not exist; create it with cellplatform.platform.talos_secrets '
                        '(or restore it from backup if the cluster already runs)' % params['secrets_bundle'])
    if params['parallelism'] < 1:
        problems.append('parallelism = %d must be at least 1' % params['parallelism'])
    if not params['age_recipients']:
        problems.append('age_recipients is empty; the generated configs hold the cluster secrets and are only '
                        'stored encrypted: set cellplatform_age_recipients to your public age key(s) (age1...)')
    return problems


# Issued anew by `gen config` for every talosconfig: compared only for being present.
VOLATILE_CONTEXT_KEYS = ('crt', 'key')


def talosconfig_equivalent(old, new):
    """True when the stored talosconfig ``old`` can stay although ``new`` has a fresh client certificate.

    Equivalent: the same current context and set of contexts, and in every context the same settings
    (endpoints, nodes, CA, ...) apart from the client certificate and key, which ``old`` must have.
    """
    if old is None:
        return False
    try:
        old_doc, new_doc = yaml.safe_load(old), yaml.safe_load(new)
    except yaml.YAMLError:
        return False
    if not isinstance(old_doc, dict) or not isinstance(new_doc, dict):
        return False
    if old_doc.get('context') != new_doc.get('context'):
        return False
    old_ctxs, new_ctxs = old_doc.get('contexts') or {}, new_doc.get('contexts') or {}
    if not isinstance(old_ctxs, dict) or not isinstance(new_ctxs, dict) or set(old_ctxs) != set(new_ctxs):
        return False
    for name, new_ctx in new_ctxs.items():
        old_ctx = old_ctxs[name] or {}
        new_ctx = new_ctx or {}
        if not all(old_ctx.get(k) for k in VOLATILE_CONTEXT_KEYS):
            return False
        settings = set(old_ctx) | set(new_ctx)
        if any(old_ctx.get(k) != new_ctx.get(k) for k in settings if k not in VOLATILE_CONTEXT_KEYS):
            return False
    return True


class Generator(object):

    def __init__(self, module, talos, tmpdir, contract):
        self.module = module
        self.talos = talos
        self.tmp = tmpdir
        self.contract = contract
        self.params = module.params

    def gen_config(self, bundle):
        params = self.params
        out = os.path.join(self.tmp, 'out')
        args = ['gen', 'config', params['cluster_name'], params['cluster_endpoint'],
                '--with-secrets', bundle,
                '--talos-version', self.contract,
                '--kubernetes-version', params['kubernetes_version'],
                '--install-image', params['install_image'],
                '--install-disk', params['install_disk']]
        patches = params['patches'] or {}
        for flag, kind in (('--config-patch', 'common'), ('--config-patch-control-plane', 'controlplane'),
                           ('--config-patch-worker', 'worker')):
            for patch in patches.get(kind) or []:
                args += [flag, '@' + os.path.abspath(patch)]
        args += ['--with-docs=false', '--with-examples=false',
                 '--output-types', 'controlplane,worker,talosconfig', '--output', out, '--force']
        self.talos.run(args)
        talosconfig = os.path.join(out, 'talosconfig')
        self.talos.run(['config', 'endpoint'] + list(params['talos_endpoints']), talosconfig=talosconfig)
        self.talos.run(['config', 'node', params['talos_endpoints'][0]], talosconfig=talosconfig)
        return out

    def patch_node(self, out, node):
        base = os.path.join(out, '%s.yaml' % node['role'])
        target = os.path.join(self.tmp, 'nodes', '%s.yaml' % node['name'])
        if node['patch']:
            args = ['machineconfig', 'patch', base]
            for patch in node['patch']:
                args += ['--patch', '@' + os.path.abspath(patch)]
            args += ['--output', target]
            self.talos.run(args)
        else:
            shutil.copyfile(base, target)
        return target

    def validate(self, node, path):
        try:
            self.talos.run(['validate', '--config', path, '--mode', self.params['validate_mode'], '--strict'])
        except TalosctlError as exc:
            detail = ' '.join((exc.stderr or exc.message).split())
            raise TalosctlError(
                'the generated machine config of node %s (%s) does not pass `talosctl validate --mode %s --strict`: '
                '%s; fix the inventory values or patches that produce it (a HostnameConfig that sets hostname '
                'needs auto: "off")' % (node['name'], node['role'], self.params['validate_mode'], detail),
                code=exc.code, rc=exc.rc, stderr=exc.stderr, argv=exc.argv, kind=exc.kind)


def run(module, talos, sops, contract):
    params = module.params
    recipients = params['age_recipients']
    # (check mode creates nothing: without the work dir, the private temp dir goes to the system temp dir)
    with private_tempdir('talos-config-', params['work_dir'], create_work_dir=not module.check_mode) as tmpdir:
        os.mkdir(os.path.join(tmpdir, 'nodes'), 0o700)
        bundle = os.path.join(tmpdir, 'secrets.yaml')
        atomic_write(bundle, sops.decrypt_file(params['secrets_bundle']))
        gen = Generator(module, talos, tmpdir, contract)
        out = gen.gen_config(bundle)
        nodes = params['nodes']
        with ThreadPoolExecutor(max_workers=min(params['parallelism'], max(1, len(nodes)))) as pool:
            paths = list(pool.map(lambda node: gen.patch_node(out, node), nodes))
            if params['validate']:
                list(pool.map(lambda pair: gen.validate(*pair), zip(nodes, paths)))

            def plan(pair):
                node, path = pair
                with open(path, 'rb') as handle:
                    plaintext = handle.read()
                dest = os.path.join(params['dest'], '%s.sops.yaml' % node['name'])
                reason, before = sops.plan_write(dest, plaintext, recipients)
                needed = reason is not None
                return node, dest, plaintext, needed, before

            plans = list(pool.map(plan, zip(nodes, paths)))

        with open(os.path.join(out, 'talosconfig'), 'rb') as handle:
            talosconfig = handle.read()
        tc_dest = params['talosconfig_dest']
        tc_reason, tc_before = sops.plan_write(tc_dest, talosconfig, recipients)
        if params['renew_talosconfig']:
            # An explicit renewal: the freshly issued admin certificate replaces the stored one.
            tc_reason = 'renew'
        elif tc_reason == 'content' and talosconfig_equivalent(tc_before, talosconfig):
            # Same cluster, endpoints and nodes; only the freshly issued admin cert differs. Keep the
            # stored one, re-encrypted only when the recipient set changed.
            talosconfig = tc_before
            tc_reason = None if recipients_of_file(tc_dest) == sorted(set(recipients)) else 'recipients'
        tc_needed = tc_reason is not None

    # The plaintext is in memory now; the temp dir is gone before anything is encrypted and written.
    diffs = []
    results = []
    for node, dest, plaintext, needed, before in plans:
        if needed and not module.check_mode:
            atomic_write(dest, sops.encrypt(plaintext, recipients, dest))
        if needed and module._diff:
            diffs.append(make_diff(dest, before, plaintext))
        results.append(dict(name=node['name'], role=node['role'], ip=node.get('ip'), path=dest, changed=needed))
    if tc_needed and not module.check_mode:
        atomic_write(tc_dest, sops.encrypt(talosconfig, recipients, tc_dest))
    if tc_needed and module._diff:
        diffs.append(make_diff(tc_dest, tc_before, talosconfig))

    wanted = set('%s.sops.yaml' % node['name'] for node in params['nodes'])
    orphaned = []
    if os.path.isdir(params['dest']):
        orphaned = sorted(os.path.join(params['dest'], f) for f in os.listdir(params['dest'])
                          if f.endswith('.sops.yaml') and f not in wanted)
    changed_nodes = [r['name'] for r in results if r['changed']]
    result = dict(changed=bool(changed_nodes) or tc_needed, contract=contract, nodes=results,
                  changed_nodes=changed_nodes, talosconfig=dict(path=tc_dest, changed=tc_needed),
                  validated=bool(params['validate']), orphaned=orphaned)
    if module._diff:
        result['diff'] = diffs
    return result


def main():
    argument_spec = dict(
        TALOSCTL_COMMON_ARGS,
        cluster_name=dict(type='str', required=True),
        cluster_endpoint=dict(type='str', required=True),
        secrets_bundle=dict(type='path', required=True, no_log=False),
        kubernetes_version=dict(type='str', default='1.36.3'),
        renew_talosconfig=dict(type='bool', default=False),
        install_image=dict(type='str', required=True),
        install_disk=dict(type='str', default='/dev/sda'),
        patches=dict(type='dict', default={}, options=dict(
            common=dict(type='list', elements='path', default=[]),
            controlplane=dict(type='list', elements='path', default=[]),
            worker=dict(type='list', elements='path', default=[]),
        )),
        nodes=dict(type='list', elements='dict', required=True),
        node_patch_dir=dict(type='path'),
        dest=dict(type='path', required=True),
        talosconfig_dest=dict(type='path', required=True),
        talos_endpoints=dict(type='list', elements='str', required=True),
        validate=dict(type='bool', default=True),
        validate_mode=dict(type='str', default='metal', choices=['metal', 'cloud', 'container']),
        parallelism=dict(type='int', default=16),
        work_dir=dict(type='path'),
        **SOPS_COMMON_ARGS
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_YAML:
        module.fail_json(msg="talos_config needs the Python library PyYAML on the controller: pip install PyYAML")
    params = module.params
    for key in ('dest', 'talosconfig_dest', 'secrets_bundle'):
        params[key] = os.path.abspath(params[key])
    try:
        contract = talos_contract(params['talos_version'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    problems = check_inputs(module)
    if problems:
        module.fail_json(msg='talos_config cannot run: ' + '; '.join(problems), problems=problems)
    talos = Talosctl(module)
    try:
        check_recipients(params['age_recipients'])
        sops = Sops(params['age_identity'], binary=params['sops_binary'])
        if not module.check_mode:
            ensure_private_dir(params['dest'])
        result = run(module, talos, sops, contract)
    except SopsError as exc:
        module.fail_json(msg=str(exc))
    except TalosctlError as exc:
        failure = exc.to_result()
        failure['msg'] = exc.message
        module.fail_json(**failure)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
