# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE: the offline config-generation commands of talosctl v1.13.9.

This stands in for the real ``talosctl`` in tests only; the collection never refers to it.
It implements, with the v1.13 flags, outputs, exit codes and error texts (platform brief 1.0-1.2,
2.1-2.3, Appendix B):

    talosctl gen secrets [-o FILE] [--talos-version vX.Y] [--force]
    talosctl gen config <cluster name> <endpoint> [--with-secrets F] [--talos-version vX.Y]
             [--kubernetes-version V] [--install-image I] [--install-disk D]
             [--config-patch @f|yaml]... [--config-patch-control-plane ...]... [--config-patch-worker ...]...
             [--with-docs=B] [--with-examples=B] [-t types] [-o DIR] [--force] ...
    talosctl machineconfig patch <file> -p @patch... [-o FILE]
    talosctl validate -c FILE -m metal|cloud|container [--strict]
    talosctl config endpoint|node <addr>...      (on --talosconfig / $TALOSCONFIG / ~/.talos/config)
    talosctl config info

Generated material is real: the secrets bundle holds freshly generated CA certificates and keys
(``cryptography``), so every run produces different secrets exactly like the real command, and
``gen config`` issues a new admin client certificate for the talosconfig every time. Machine
configs derived from the same bundle and inputs are byte-identical, as with the real tool.

Strategic-merge patching follows Talos' configpatcher: multi-document patches match documents by
apiVersion + kind + name (a patch document without ``kind`` targets the v1alpha1 document),
missing documents are appended, ``$patch: delete`` removes a field or a whole document (never the
v1alpha1 document), lists are appended except ``podSubnets``/``serviceSubnets`` (replaced),
``apiServer.auditPolicy`` (replaced), ``network.interfaces`` (merged by interface/deviceSelector),
``vlans`` (merged by vlanId) and ``configFiles`` (merged by mountPath). JSON6902 patches are
rejected on multi-document configs with the real error text.

With ``ctx.strict`` (the "stricter stand-in"), ``validate`` also rejects what real 1.13.9 accepts
but is wrong for this platform: a ``Layer2VIPConfig`` in a worker config, and legacy
``machine.network`` fields.

Interface with the rest of the double (tests/doubles/talosctl_double/cli.py): ``COMMANDS`` maps
subcommand-word tuples to ``handler(args, ctx) -> exit code``; ``args`` is the argv after the
subcommand words; ``ctx`` has ``state_dir``, ``stdout``, ``stderr``, ``record(dict)``, ``strict``.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import os
import re
import secrets as _random
import string
from urllib.parse import urlparse

import yaml

from talosctl_double.flags import Flag, UsageError, parse_flags

# cryptography is imported lazily (only gen secrets/config and config info need it): every
# talosctl call is a new process, and validate/patch/config endpoint run once per node.
x509 = hashes = serialization = ec = ed25519 = NameOID = None


def _load_crypto():
    global x509, hashes, serialization, ec, ed25519, NameOID
    if x509 is None:
        from cryptography import x509 as _x509
        from cryptography.hazmat.primitives import hashes as _hashes, serialization as _serialization
        from cryptography.hazmat.primitives.asymmetric import ec as _ec, ed25519 as _ed25519
        from cryptography.x509.oid import NameOID as _NameOID
        x509, hashes, serialization, ec, ed25519, NameOID = _x509, _hashes, _serialization, _ec, _ed25519, _NameOID


DOUBLE_VERSION = (1, 13)          # the talosctl minor this double implements
DEFAULT_CONTRACT = (1, 13)
DEFAULT_KUBERNETES = '1.36.3'
DEFAULT_INSTALL_IMAGE = 'ghcr.io/siderolabs/installer:latest'
JSON6902_MULTIDOC = 'JSON6902 patches are not supported for multi-document machine configuration'


class CommandError(Exception):
    """A runtime error: printed bare on stderr; rc 1."""


# --------------------------------------------------------------------------------------------
# YAML in the shape talosctl writes (4-space indentation, strings like "off" stay quoted)
# --------------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper, value):
    if '\n' in value:
        return dumper.represent_scalar('tag:yaml.org,2002:str', value, style='|')
    return dumper.represent_scalar('tag:yaml.org,2002:str', value)


_Dumper.add_representer(str, _str_representer)


def dump(doc):
    return yaml.dump(doc, Dumper=_Dumper, indent=4, default_flow_style=False, sort_keys=False, width=1 << 16)


def dump_all(docs):
    return '---\n'.join(dump(doc) for doc in docs)


def load_all(text, source):
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise CommandError('failed to decode %s: %s' % (source, str(exc).replace('\n', ' ')))


def exact_args(positionals, count):
    if len(positionals) != count:
        raise UsageError('accepts %d arg(s), received %d' % (count, len(positionals)))


def parse_contract(value):
    match = re.match(r'^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-[0-9A-Za-z.-]+)?$', value or '')
    if not match:
        raise CommandError('invalid talos-version: failed to parse version contract "%s"' % value)
    contract = (int(match.group(1)), int(match.group(2)))
    if contract > DOUBLE_VERSION:
        raise CommandError('invalid talos-version: version contract v%d.%d is newer than talosctl v%d.%d'
                           % (contract + DOUBLE_VERSION))
    if contract < (1, 12):
        raise CommandError('the talosctl test double only implements the v1.12 and v1.13 config contracts, '
                           'not v%d.%d' % contract)
    return contract


def refuse_overwrite(path, force):
    if os.path.exists(path) and not force:
        raise CommandError('file "%s" already exists, use --force to overwrite' % path)


def write_file(path, text, mode=0o600):
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w') as handle:
        handle.write(text)


def read_file(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError('open %s: %s' % (path, (exc.strerror or str(exc)).lower()))


# --------------------------------------------------------------------------------------------
# PKI: the secrets bundle (Appendix B layout)
# --------------------------------------------------------------------------------------------
def _b64(data):
    return base64.b64encode(data).decode('ascii')


def _pem_key(key, label):
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if label == 'EC PRIVATE KEY':
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    body = base64.encodebytes(der).decode('ascii').replace('\n', '')
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ('-----BEGIN %s-----\n%s\n-----END %s-----\n' % (label, '\n'.join(lines), label)).encode('ascii')


def _cert(subject_cn, key, issuer_cert=None, issuer_key=None, days=3650, ca=True, org=None):
    name = [x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)] if subject_cn else []
    if org:
        name.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    subject = x509.Name(name)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(seconds=10))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    signer = issuer_key if issuer_key is not None else key
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


def _ca(cn, kind, org=None):
    key = ed25519.Ed25519PrivateKey.generate() if kind == 'ed25519' else ec.generate_private_key(ec.SECP256R1())
    cert = _cert(cn, key, org=org)
    label = 'ED25519 PRIVATE KEY' if kind == 'ed25519' else 'EC PRIVATE KEY'
    return dict(crt=_b64(cert.public_bytes(serialization.Encoding.PEM)), key=_b64(_pem_key(key, label)))


def _token(alphabet=string.ascii_lowercase + string.digits):
    return '%s.%s' % (''.join(_random.choice(alphabet) for _ in range(6)),
                      ''.join(_random.choice(alphabet) for _ in range(16)))


def new_bundle():
    _load_crypto()
    sa_key = ec.generate_private_key(ec.SECP256R1())
    return dict(
        cluster=dict(id=_b64(_random.token_bytes(32)), secret=_b64(_random.token_bytes(32))),
        secrets=dict(bootstraptoken=_token(), secretboxencryptionsecret=_b64(_random.token_bytes(32))),
        trustdinfo=dict(token=_token()),
        certs=dict(
            etcd=_ca('etcd', 'ecdsa', org='etcd'),
            k8s=_ca('kubernetes', 'ecdsa', org='kubernetes'),
            k8saggregator=_ca('', 'ecdsa'),
            k8sserviceaccount=dict(key=_b64(_pem_key(sa_key, 'EC PRIVATE KEY'))),
            os=_ca('', 'ed25519', org='talos'),
        ),
    )


BUNDLE_FIELDS = (('cluster', 'id'), ('cluster', 'secret'), ('secrets', 'bootstraptoken'),
                 ('secrets', 'secretboxencryptionsecret'), ('trustdinfo', 'token'),
                 ('certs', 'etcd', 'crt'), ('certs', 'etcd', 'key'), ('certs', 'k8s', 'crt'),
                 ('certs', 'k8s', 'key'), ('certs', 'k8saggregator', 'crt'), ('certs', 'k8saggregator', 'key'),
                 ('certs', 'k8sserviceaccount', 'key'), ('certs', 'os', 'crt'), ('certs', 'os', 'key'))


def load_bundle(path):
    docs = load_all(read_file(path), path)
    bundle = docs[0] if docs else None
    if not isinstance(bundle, dict):
        raise CommandError('failed to load secrets bundle: %s is not a secrets bundle' % path)
    for field in BUNDLE_FIELDS:
        node = bundle
        for part in field:
            node = node.get(part) if isinstance(node, dict) else None
        if not node:
            raise CommandError('failed to load secrets bundle: %s: missing %s' % (path, '.'.join(field)))
    return bundle


def admin_talosconfig(bundle, context):
    """A talosconfig with a fresh os:admin client certificate signed by the bundle's OS CA."""
    _load_crypto()
    ca_cert = x509.load_pem_x509_certificate(base64.b64decode(bundle['certs']['os']['crt']))
    ca_key = serialization.load_der_private_key(
        base64.b64decode(''.join(base64.b64decode(bundle['certs']['os']['key']).decode().splitlines()[1:-1])),
        password=None)
    key = ed25519.Ed25519PrivateKey.generate()
    cert = _cert('', key, issuer_cert=ca_cert, issuer_key=ca_key, days=365, ca=False, org='os:admin')
    return dict(context=context, contexts={context: dict(
        endpoints=[],
        ca=bundle['certs']['os']['crt'],
        crt=_b64(cert.public_bytes(serialization.Encoding.PEM)),
        key=_b64(_pem_key(key, 'ED25519 PRIVATE KEY')),
    )})


# --------------------------------------------------------------------------------------------
# Machine config generation (v1.13 contract)
# --------------------------------------------------------------------------------------------
def machine_config(kind, bundle, opts):
    """The v1alpha1 + HostnameConfig documents of the v1.12/v1.13 contracts (identical for both)."""
    k8s = opts['kubernetes-version'].lstrip('v')
    endpoint = opts['endpoint']
    host = urlparse(endpoint).hostname
    controlplane = kind == 'controlplane'
    machine = dict(
        type=kind,
        token=bundle['trustdinfo']['token'],
        ca=dict(crt=bundle['certs']['os']['crt'], key=bundle['certs']['os']['key'] if controlplane else ''),
        certSANs=list(opts['additional-sans']),
        kubelet=dict(image='ghcr.io/siderolabs/kubelet:v%s' % k8s, defaultRuntimeSeccompProfileEnabled=True,
                     disableManifestsDirectory=True),
        install=dict(disk=opts['install-disk'], image=opts['install-image'], wipe=False),
        features=dict(diskQuotaSupport=True, kubePrism=dict(enabled=True, port=7445),
                      hostDNS=dict(enabled=True, forwardKubeDNSToHost=True)),
    )
    if controlplane:
        machine['nodeLabels'] = {'node.kubernetes.io/exclude-from-external-load-balancers': ''}
    cluster = dict(
        id=bundle['cluster']['id'],
        secret=bundle['cluster']['secret'],
        controlPlane=dict(endpoint=endpoint),
        clusterName=opts['cluster-name'],
        network=dict(dnsDomain=opts['dns-domain'], podSubnets=['10.244.0.0/16'], serviceSubnets=['10.96.0.0/12']),
        token=bundle['secrets']['bootstraptoken'],
    )
    if controlplane:
        cluster['secretboxEncryptionSecret'] = bundle['secrets']['secretboxencryptionsecret']
        cluster['ca'] = dict(crt=bundle['certs']['k8s']['crt'], key=bundle['certs']['k8s']['key'])
        cluster['aggregatorCA'] = dict(crt=bundle['certs']['k8saggregator']['crt'],
                                       key=bundle['certs']['k8saggregator']['key'])
        cluster['serviceAccount'] = dict(key=bundle['certs']['k8sserviceaccount']['key'])
        cluster['apiServer'] = dict(
            image='registry.k8s.io/kube-apiserver:v%s' % k8s,
            certSANs=[host] + [s for s in opts['additional-sans'] if s != host],
            admissionControl=[dict(name='PodSecurity', configuration=dict(
                apiVersion='pod-security.admission.config.k8s.io/v1alpha1', kind='PodSecurityConfiguration',
                defaults={'audit': 'restricted', 'audit-version': 'latest', 'enforce': 'baseline',
                          'enforce-version': 'latest', 'warn': 'restricted', 'warn-version': 'latest'},
                exemptions=dict(namespaces=['kube-system'], runtimeClasses=[], usernames=[])))],
            auditPolicy=dict(apiVersion='audit.k8s.io/v1', kind='Policy', rules=[dict(level='Metadata')]),
        )
        cluster['controllerManager'] = dict(image='registry.k8s.io/kube-controller-manager:v%s' % k8s)
        cluster['proxy'] = dict(image='registry.k8s.io/kube-proxy:v%s' % k8s)
        cluster['scheduler'] = dict(image='registry.k8s.io/kube-scheduler:v%s' % k8s)
    else:
        cluster['ca'] = dict(crt=bundle['certs']['k8s']['crt'], key='')
    cluster['discovery'] = dict(enabled=opts['with-cluster-discovery'],
                                registries=dict(kubernetes=dict(disabled=True), service={}))
    if controlplane:
        cluster['etcd'] = dict(ca=dict(crt=bundle['certs']['etcd']['crt'], key=bundle['certs']['etcd']['key']))
        cluster['extraManifests'] = []
        cluster['inlineManifests'] = []
    v1alpha1 = dict(version='v1alpha1', debug=False)
    if opts['persist']:
        v1alpha1['persist'] = True   # deprecated but still emitted by 1.13 (brief 1.0)
    v1alpha1['machine'] = machine
    v1alpha1['cluster'] = cluster
    docs = [v1alpha1, dict(apiVersion='v1alpha1', kind='HostnameConfig', auto='stable')]
    if opts['with-kubespan']:
        docs.append(dict(apiVersion='v1alpha1', kind='KubeSpanConfig', enabled=True))
    return docs


# --------------------------------------------------------------------------------------------
# Strategic merge patching (configpatcher)
# --------------------------------------------------------------------------------------------
REPLACE_LISTS = frozenset(('podSubnets', 'serviceSubnets'))
REPLACE_OBJECTS = frozenset(('auditPolicy',))
MERGE_LISTS_BY = dict(interfaces=('interface', 'deviceSelector'), vlans=('vlanId',), configFiles=('mountPath',))


def doc_id(doc):
    if 'kind' not in doc:
        return ('v1alpha1',)
    return (doc.get('apiVersion'), doc.get('kind'), doc.get('name'))


def describe(ident):
    if ident == ('v1alpha1',):
        return 'v1alpha1'
    return '%s/%s%s' % (ident[0], ident[1], (' ' + str(ident[2])) if ident[2] is not None else '')


def _is_delete(value):
    return isinstance(value, dict) and value.get('$patch') == 'delete'


def _strip(value):
    if isinstance(value, dict):
        return dict((k, _strip(v)) for k, v in value.items() if k != '$patch')
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def merge(dst, src):
    for key, value in src.items():
        if key == '$patch':
            continue
        if _is_delete(value):
            dst.pop(key, None)
            continue
        current = dst.get(key)
        if key in REPLACE_OBJECTS or current is None:
            dst[key] = _strip(copy.deepcopy(value))
        elif isinstance(current, dict) and isinstance(value, dict):
            merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            if key in REPLACE_LISTS:
                dst[key] = _strip(copy.deepcopy(value))
            elif key in MERGE_LISTS_BY:
                _merge_list_by(current, value, MERGE_LISTS_BY[key])
            else:
                current.extend(_strip(copy.deepcopy(value)))
        else:
            dst[key] = _strip(copy.deepcopy(value))


def _merge_list_by(current, patch, keys):
    for item in patch:
        match = None
        if isinstance(item, dict):
            for candidate in current:
                if isinstance(candidate, dict) and any(k in item and candidate.get(k) == item[k] for k in keys):
                    match = candidate
                    break
        if match is None:
            if not _is_delete(item):
                current.append(_strip(copy.deepcopy(item)))
        elif _is_delete(item):
            current.remove(match)
        else:
            merge(match, item)


def load_patch(spec):
    """A --config-patch / -p value: @file or inline YAML/JSON. Returns ('json6902', ops) or ('strategic', docs)."""
    text = read_file(spec[1:]) if spec.startswith('@') else spec
    source = spec[1:] if spec.startswith('@') else 'patch'
    docs = load_all(text, source)
    if len(docs) == 1 and isinstance(docs[0], list):
        return 'json6902', docs[0]
    for doc in docs:
        if not isinstance(doc, dict):
            raise CommandError('failed to load patch %s: strategic merge patch documents must be mappings' % source)
    seen = set()
    for doc in docs:
        ident = doc_id(doc)
        if ident in seen:
            raise CommandError('failed to load patch %s: the patch touches document %s twice'
                               % (source, describe(ident)))
        seen.add(ident)
    return 'strategic', docs


def _json_pointer(path):
    if not path.startswith('/'):
        raise CommandError('JSON6902 patch: invalid path %r' % path)
    return [p.replace('~1', '/').replace('~0', '~') for p in path[1:].split('/')]


def apply_json6902(doc, ops):
    for op in ops:
        parts = _json_pointer(op.get('path', ''))
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op.get('op')
        if kind in ('add', 'replace'):
            if isinstance(parent, list):
                if last == '-':
                    parent.append(op.get('value'))
                elif kind == 'add':
                    parent.insert(int(last), op.get('value'))
                else:
                    parent[int(last)] = op.get('value')
            else:
                if kind == 'replace' and last not in parent:
                    raise CommandError('replace operation does not apply: doc is missing key: %s' % op['path'])
                parent[last] = op.get('value')
        elif kind == 'remove':
            try:
                del parent[int(last) if isinstance(parent, list) else last]
            except (KeyError, IndexError, ValueError):
                raise CommandError('remove operation does not apply: doc is missing path: %s' % op['path'])
        else:
            raise CommandError('JSON6902 patch: unsupported operation %r' % kind)


def apply_patches(docs, specs):
    docs = copy.deepcopy(docs)
    for spec in specs:
        kind, patch = load_patch(spec)
        if kind == 'json6902':
            if len(docs) != 1:
                raise CommandError(JSON6902_MULTIDOC)
            apply_json6902(docs[0], patch)
            continue
        for pdoc in patch:
            ident = doc_id(pdoc)
            index = next((i for i, d in enumerate(docs) if doc_id(d) == ident), None)
            if _is_delete(pdoc):
                if ident == ('v1alpha1',):
                    raise CommandError('failed to apply patch: the v1alpha1 document cannot be deleted')
                if index is not None:
                    del docs[index]
                continue
            if index is None:
                docs.append(_strip(copy.deepcopy(pdoc)))
            else:
                merge(docs[index], pdoc)
    return docs


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------
KNOWN_KINDS = frozenset((
    'HostnameConfig', 'LinkAliasConfig', 'LinkConfig', 'Layer2VIPConfig', 'ResolverConfig', 'TimeSyncConfig',
    'DHCPv4Config', 'DHCPv6Config', 'VLANConfig', 'BondConfig', 'BridgeConfig', 'DummyLinkConfig',
    'StaticHostConfig', 'RoutingRuleConfig', 'VRFConfig', 'WireguardConfig', 'KubeSpanConfig',
    'NetworkRuleConfig', 'NetworkDefaultActionConfig', 'EthernetConfig', 'TCPProbeConfig', 'EnvironmentConfig',
    'RegistryMirrorConfig', 'RegistryAuthConfig', 'RegistryTLSConfig', 'UserVolumeConfig', 'VolumeConfig',
    'ExtensionServiceConfig', 'TrustedRootsConfig', 'ImageVerificationConfig', 'HCloudVIPConfig',
    'KubeSpanEndpointsConfig', 'ExistingVolumeConfig', 'ExternalVolumeConfig', 'RawVolumeConfig',
    'SwapVolumeConfig', 'ZswapConfig', 'SideroLinkConfig', 'EventSinkConfig', 'KmsgLogConfig',
    'WatchdogTimerConfig', 'OOMConfig', 'PCIDriverRebindConfig', 'LinkAliasConfig', 'BlackholeRouteConfig',
    'ProbeConfig', 'RunDefaultsConfig', 'UdevRuleConfig'))


def validate_docs(docs, mode, strict_double):
    errors, warnings = [], []
    seen = set()
    v1 = None
    for doc in docs:
        if not isinstance(doc, dict):
            errors.append('document is not a mapping')
            continue
        ident = doc_id(doc)
        if ident in seen:
            errors.append('duplicate document: %s' % describe(ident))
        seen.add(ident)
        if ident == ('v1alpha1',):
            v1 = doc
        elif doc.get('kind') not in KNOWN_KINDS:
            errors.append('unknown document kind %r (apiVersion %r)' % (doc.get('kind'), doc.get('apiVersion')))
    if v1 is None:
        return ['v1alpha1 document is missing'], warnings
    machine = v1.get('machine') or {}
    cluster = v1.get('cluster') or {}
    mtype = machine.get('type')
    if mtype not in ('controlplane', 'worker', 'init'):
        errors.append('machine type %r is not valid: use controlplane or worker' % mtype)
    endpoint = ((cluster.get('controlPlane') or {}).get('endpoint') or '')
    parsed = urlparse(endpoint)
    if parsed.scheme != 'https' or not parsed.hostname:
        errors.append('cluster.controlPlane.endpoint %r is invalid: must be an https URL' % endpoint)
    if mode == 'metal':
        install = machine.get('install') or {}
        if not install.get('disk') and not install.get('diskSelector'):
            errors.append('an install disk or disk selector must be specified')
    for key in ('podSubnets', 'serviceSubnets'):
        for cidr in (cluster.get('network') or {}).get(key) or []:
            try:
                ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                errors.append('cluster.network.%s: %r is not a valid CIDR' % (key, cidr))
    hostname_docs = [d for d in docs if isinstance(d, dict) and d.get('kind') == 'HostnameConfig']
    for doc in hostname_docs:
        auto, hostname = doc.get('auto'), doc.get('hostname')
        if auto not in (None, 'off', 'stable', 'default'):
            errors.append("hostname config: invalid value for 'auto': %r" % (auto,))
        if auto not in (None, 'off') and hostname:
            errors.append("hostname config: 'auto' and 'hostname' cannot be set at the same time")
        if auto in (None, 'off') and not hostname:
            errors.append("hostname config: either 'auto' or 'hostname' must be set")
        if (machine.get('network') or {}).get('hostname'):
            errors.append('static hostname is already set in v1alpha1 config')
        if (machine.get('features') or {}).get('stableHostname'):
            errors.append('stable hostname is already set in v1alpha1 config')
    legacy = sorted(k for k in (machine.get('network') or {}) if k != 'kubespan')
    if legacy:
        warnings.append('machine.network.%s is deprecated: use the multi-document network configuration'
                        % ', machine.network.'.join(legacy))
    if strict_double:
        if mtype == 'worker' and any(isinstance(d, dict) and d.get('kind') == 'Layer2VIPConfig' for d in docs):
            errors.append('Layer2VIPConfig is only valid on control-plane nodes (worker config has one)')
        if legacy:
            errors.append(warnings[-1])
    if mtype == 'controlplane' and not ((cluster.get('ca') or {}).get('key')):
        errors.append('cluster.ca.key is required on control-plane nodes')
    return errors, warnings


def _multierror(errors):
    return '%d error%s occurred:\n%s\n\n' % (len(errors), '' if len(errors) == 1 else 's',
                                             '\n'.join('\t* %s' % e for e in errors))


# --------------------------------------------------------------------------------------------
# talosconfig
# --------------------------------------------------------------------------------------------
def talosconfig_path(opts):
    path = opts.get('talosconfig') or os.environ.get('TALOSCONFIG')
    if not path:
        path = os.path.join(os.path.expanduser('~'), '.talos', 'config')
    return path


def load_talosconfig(path):
    if not os.path.exists(path):
        raise CommandError('failed to open config file "%s": open %s: no such file or directory' % (path, path))
    docs = load_all(read_file(path), path)
    config = docs[0] if docs else {}
    if not isinstance(config, dict) or not isinstance(config.get('contexts'), dict):
        raise CommandError('error parsing config file "%s": no contexts' % path)
    return config


def current_context(config, opts):
    name = opts.get('context') or config.get('context')
    if not name:
        raise CommandError('no context is set')
    if name not in config['contexts']:
        raise CommandError('context "%s" is not defined' % name)
    return name


# --------------------------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------------------------
def _run(handler, usage):
    def wrapped(args, ctx):
        try:
            return handler(args, ctx)
        except UsageError as exc:
            ctx.stderr.write('%s\n\n%s\n' % (exc, usage))
            return 1
        except CommandError as exc:
            ctx.stderr.write('%s\n' % exc)
            return 1
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


GEN_SECRETS_FLAGS = [
    Flag('output-file', 'o', default='secrets.yaml'), Flag('talos-version'), Flag('force', kind='bool', default=False),
    Flag('from-controlplane-config'), Flag('from-kubernetes-pki', 'p'), Flag('kubernetes-bootstrap-token', 't'),
    Flag('help', 'h', kind='bool', default=False),
]
GEN_SECRETS_USAGE = ('Usage:\n  talosctl gen secrets [flags]\n\nFlags:\n'
                     '      --force                               will overwrite existing files\n'
                     '      --from-controlplane-config string     use the provided controlplane Talos machine '
                     'configuration as input\n'
                     '  -p, --from-kubernetes-pki string          use a Kubernetes PKI directory (e.g. '
                     '/etc/kubernetes/pki) as input\n'
                     '  -t, --kubernetes-bootstrap-token string   use the provided bootstrap token as input\n'
                     '  -o, --output-file string                  path of the output file, or "-" for stdout '
                     '(default "secrets.yaml")\n'
                     '      --talos-version string                the desired Talos version to generate secrets '
                     'bundle for (backwards compatibility, e.g. v0.8)')


def gen_secrets(args, ctx):
    """talosctl gen secrets."""
    opts, positionals, seen = parse_flags(args, GEN_SECRETS_FLAGS)
    if opts['help']:
        ctx.stdout.write(GEN_SECRETS_USAGE + '\n')
        return 0
    exact_args(positionals, 0)
    for unsupported in ('from-controlplane-config', 'from-kubernetes-pki', 'kubernetes-bootstrap-token'):
        if unsupported in seen:
            raise CommandError('the talosctl test double does not implement --%s' % unsupported)
    contract = parse_contract(opts['talos-version']) if opts['talos-version'] else DEFAULT_CONTRACT
    out = opts['output-file']
    if out != '-':
        refuse_overwrite(out, opts['force'])
    text = dump(new_bundle())
    if out == '-':
        ctx.stdout.write(text)
    else:
        write_file(out, text)
    ctx.record(dict(command='gen secrets', output=out, talos_version=opts['talos-version'],
                    contract='v%d.%d' % contract, force=opts['force']))
    return 0


GEN_CONFIG_FLAGS = [
    Flag('output', 'o', default=None), Flag('output-types', 't', kind='slice',
                                            default=['controlplane', 'worker', 'talosconfig']),
    Flag('with-secrets'), Flag('talos-version'), Flag('kubernetes-version', default=DEFAULT_KUBERNETES),
    Flag('install-image', default=DEFAULT_INSTALL_IMAGE), Flag('install-disk', default='/dev/sda'),
    Flag('config-patch', kind='array'), Flag('config-patch-control-plane', kind='array'),
    Flag('config-patch-worker', kind='array'), Flag('with-docs', kind='bool', default=True),
    Flag('with-examples', kind='bool', default=True), Flag('force', kind='bool', default=False),
    Flag('additional-sans', kind='slice'), Flag('dns-domain', default='cluster.local'),
    Flag('with-cluster-discovery', kind='bool', default=True), Flag('with-kubespan', kind='bool', default=False),
    Flag('registry-mirror', kind='array'), Flag('version', default='v1alpha1'),
    Flag('persist', 'p', kind='bool', default=True), Flag('help', 'h', kind='bool', default=False),
]
GEN_CONFIG_USAGE = ('Usage:\n  talosctl gen config <cluster name> <cluster endpoint> [flags]\n\n'
                    'Flags:\n      --additional-sans strings ...\n      --config-patch stringArray ...\n'
                    '      --config-patch-control-plane stringArray ...\n      --config-patch-worker stringArray ...\n'
                    '      --dns-domain string (default "cluster.local")\n      --force\n'
                    '      --install-disk string (default "/dev/sda")\n      --install-image string\n'
                    '      --kubernetes-version string\n  -o, --output string\n'
                    '  -t, --output-types strings (default [controlplane,worker,talosconfig])\n'
                    '  -p, --persist (default true)\n      --talos-version string\n      --with-cluster-discovery\n'
                    '      --with-docs (default true)\n      --with-examples (default true)\n'
                    '      --with-kubespan\n      --with-secrets string')
OUTPUT_TYPES = ('controlplane', 'worker', 'talosconfig')


def gen_config(args, ctx):
    """talosctl gen config."""
    opts, positionals, seen = parse_flags(args, GEN_CONFIG_FLAGS)
    if opts['help']:
        ctx.stdout.write(GEN_CONFIG_USAGE + '\n')
        return 0
    exact_args(positionals, 2)
    name, endpoint = positionals
    parsed = urlparse(endpoint)
    if parsed.scheme != 'https' or not parsed.hostname:
        raise CommandError('invalid control plane endpoint "%s": must be an https URL such as https://1.2.3.4:6443'
                           % endpoint)
    if opts['version'] != 'v1alpha1':
        raise CommandError('unsupported config version: "%s"' % opts['version'])
    if 'registry-mirror' in seen:
        raise CommandError('the talosctl test double does not implement --registry-mirror')
    types = opts['output-types']
    for kind in types:
        if kind not in OUTPUT_TYPES:
            raise CommandError('unknown output type: "%s"' % kind)
    contract = parse_contract(opts['talos-version']) if opts['talos-version'] else DEFAULT_CONTRACT
    bundle = load_bundle(opts['with-secrets']) if opts['with-secrets'] else new_bundle()
    opts['endpoint'] = endpoint
    opts['cluster-name'] = name

    outputs = {}
    for kind in ('controlplane', 'worker'):
        if kind in types:
            docs = machine_config(kind, bundle, opts)
            docs = apply_patches(docs, opts['config-patch'])
            specific = opts['config-patch-control-plane'] if kind == 'controlplane' else opts['config-patch-worker']
            docs = apply_patches(docs, specific)
            text = dump_all(docs)
            if opts['with-docs']:
                text = '# %s machine configuration generated by talosctl (test double)\n%s' % (kind, text)
            outputs[kind] = text
    if 'talosconfig' in types:
        outputs['talosconfig'] = dump(admin_talosconfig(bundle, name))

    out = opts['output']
    if len(types) == 1:
        target = out if out else {'talosconfig': 'talosconfig'}.get(types[0], '%s.yaml' % types[0])
        if target == '-':
            ctx.stdout.write(outputs[types[0]])
            written = ['-']
        else:
            refuse_overwrite(target, opts['force'])
            write_file(target, outputs[types[0]])
            ctx.stderr.write('Created %s\n' % target)
            written = [target]
    else:
        out = out or '.'
        if out == '-':
            raise CommandError('can\'t use "-" as output with multiple output types')
        files = dict((kind, os.path.join(out, 'talosconfig' if kind == 'talosconfig' else '%s.yaml' % kind))
                     for kind in types)
        for path in files.values():
            refuse_overwrite(path, opts['force'])
        os.makedirs(out, exist_ok=True)
        written = []
        for kind in OUTPUT_TYPES:
            if kind in files:
                write_file(files[kind], outputs[kind])
                ctx.stderr.write('Created %s\n' % files[kind])
                written.append(files[kind])
    ctx.record(dict(command='gen config', cluster_name=name, endpoint=endpoint, talos_version=opts['talos-version'],
                    contract='v%d.%d' % contract, kubernetes_version=opts['kubernetes-version'],
                    install_image=opts['install-image'], install_disk=opts['install-disk'],
                    with_secrets=opts['with-secrets'], config_patch=opts['config-patch'],
                    config_patch_control_plane=opts['config-patch-control-plane'],
                    config_patch_worker=opts['config-patch-worker'], output_types=types, written=written,
                    with_docs=opts['with-docs'], with_examples=opts['with-examples'], force=opts['force']))
    return 0


PATCH_FLAGS = [Flag('patch', 'p', kind='array'), Flag('output', 'o', default=''),
               Flag('help', 'h', kind='bool', default=False)]
PATCH_USAGE = ('Usage:\n  talosctl machineconfig patch <machineconfig-file> [flags]\n\nFlags:\n'
               '  -o, --output string       output destination. if not specified, output will be printed to stdout\n'
               '  -p, --patch stringArray   patch generated machineconfigs (applied to all node types), '
               'use @file to read a patch from file')


def machineconfig_patch(args, ctx):
    """talosctl machineconfig patch."""
    opts, positionals, _seen = parse_flags(args, PATCH_FLAGS)
    if opts['help']:
        ctx.stdout.write(PATCH_USAGE + '\n')
        return 0
    exact_args(positionals, 1)
    source = positionals[0]
    docs = load_all(read_file(source), source)
    docs = apply_patches(docs, opts['patch'])
    text = dump_all(docs)
    if opts['output']:
        write_file(opts['output'], text)
    else:
        ctx.stdout.write(text)
    ctx.record(dict(command='machineconfig patch', input=source, patch=opts['patch'], output=opts['output']))
    return 0


VALIDATE_FLAGS = [Flag('config', 'c'), Flag('mode', 'm'), Flag('strict', kind='bool', default=False),
                  Flag('help', 'h', kind='bool', default=False)]
VALIDATE_USAGE = ('Usage:\n  talosctl validate [flags]\n\nFlags:\n'
                  '  -c, --config string   the path of the config file\n'
                  '  -m, --mode string     the mode to validate the config for (valid values are metal, cloud, '
                  'and container)\n      --strict          treat validation warnings as errors')


def validate(args, ctx):
    """talosctl validate."""
    opts, positionals, _seen = parse_flags(args, VALIDATE_FLAGS)
    if opts['help']:
        ctx.stdout.write(VALIDATE_USAGE + '\n')
        return 0
    exact_args(positionals, 0)
    if not opts['config'] or not opts['mode']:
        missing = [f for f in ('config', 'mode') if not opts[f]]
        raise UsageError('required flag(s) %s not set' % ', '.join('"%s"' % m for m in missing))
    if opts['mode'] not in ('metal', 'cloud', 'container'):
        raise CommandError('unknown mode "%s"' % opts['mode'])
    docs = load_all(read_file(opts['config']), opts['config'])
    errors, warnings = validate_docs(docs, opts['mode'], bool(getattr(ctx, 'strict', False)))
    if opts['strict'] and warnings:
        errors = errors + [w for w in warnings if w not in errors]
    ctx.record(dict(command='validate', config=opts['config'], mode=opts['mode'], strict=opts['strict'],
                    ok=not errors, errors=list(errors)))
    for warning in warnings:
        if not opts['strict']:
            ctx.stderr.write('\t%s\n' % warning)
    if errors:
        ctx.stderr.write(_multierror(errors))
        return 1
    ctx.stdout.write('%s is valid for %s mode\n' % (opts['config'], opts['mode']))
    return 0


CONFIG_FLAGS = [Flag('talosconfig'), Flag('context'), Flag('nodes', 'n', kind='slice'),
                Flag('endpoints', 'e', kind='slice'), Flag('cluster'), Flag('help', 'h', kind='bool', default=False)]


def _config_set(field, command, usage):
    def handler(args, ctx):
        opts, positionals, _seen = parse_flags(args, CONFIG_FLAGS)
        if opts['help']:
            ctx.stdout.write(usage + '\n')
            return 0
        if not positionals:
            raise UsageError('requires at least 1 arg(s), only received 0')
        path = talosconfig_path(opts)
        config = load_talosconfig(path)
        name = current_context(config, opts)
        config['contexts'][name][field] = list(positionals)
        write_file(path, dump(config))
        ctx.record(dict(command=command, talosconfig=path,
                        context=name, values=list(positionals)))
        return 0
    return handler


ENDPOINT_USAGE = 'Usage:\n  talosctl config endpoint <endpoint>... [flags]'
NODE_USAGE = 'Usage:\n  talosctl config node <endpoint>... [flags]'
INFO_USAGE = 'Usage:\n  talosctl config info [flags]'


def config_info(args, ctx):
    """talosctl config info."""
    _load_crypto()
    opts, positionals, _seen = parse_flags(args, CONFIG_FLAGS)
    exact_args(positionals, 0)
    path = talosconfig_path(opts)
    config = load_talosconfig(path)
    name = current_context(config, opts)
    context = config['contexts'][name]
    roles, expires = 'not specified', 'not specified'
    if context.get('crt'):
        cert = x509.load_pem_x509_certificate(base64.b64decode(context['crt']))
        orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        roles = ', '.join(orgs) or 'not specified'
        not_after = cert.not_valid_after_utc
        days = (not_after - datetime.datetime.now(datetime.timezone.utc)).days
        expires = '%s (%s)' % ('%d days from now' % days, not_after.strftime('%Y-%m-%d'))
    ctx.stdout.write('Current context:     %s\nNodes:               %s\nEndpoints:           %s\n'
                     'Roles:               %s\nCertificate expires: %s\n'
                     % (name, ', '.join(context.get('nodes') or []) or 'not defined',
                        ', '.join(context.get('endpoints') or []) or 'not defined', roles, expires))
    ctx.record(dict(command='config info', talosconfig=path, context=name))
    return 0


COMMANDS = {
    ('gen', 'secrets'): _run(gen_secrets, GEN_SECRETS_USAGE),
    ('gen', 'config'): _run(gen_config, GEN_CONFIG_USAGE),
    ('machineconfig', 'patch'): _run(machineconfig_patch, PATCH_USAGE),
    ('validate',): _run(validate, VALIDATE_USAGE),
    ('config', 'endpoint'): _run(_config_set('endpoints', 'config endpoint', ENDPOINT_USAGE), ENDPOINT_USAGE),
    ('config', 'node'): _run(_config_set('nodes', 'config node', NODE_USAGE), NODE_USAGE),
    ('config', 'info'): _run(config_info, INFO_USAGE),
}
