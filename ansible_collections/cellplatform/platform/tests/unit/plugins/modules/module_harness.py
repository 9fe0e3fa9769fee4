# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared in-process harness for the unit tests of the cellplatform.platform modules.

* ``run_module(module, args, check=False, diff=False)`` runs ``module.main()`` in-process through
  AnsibleModule (``basic._ANSIBLE_ARGS`` + the ``legacy`` profile that ansible-core >= 2.19 needs),
  catches the SystemExit of exit_json/fail_json and returns the JSON result (plus ``_rc``).
* ``FakeTalos`` replaces the talosctl runner of a module: it is the real ``Talosctl`` class with
  binary lookup, version check and subprocess replaced by a script of canned
  ``(rc, stdout, stderr)`` answers, so argv building, retries, error parsing and redaction stay
  the real ones. Every call is recorded (argv, nodes, endpoints, insecure, talosconfig).
* Canned outputs follow the talosctl v1.13.9 contract (platform brief section 1): per-node errors
  wrapped as ``<prefix>: 1 error occurred:\\n\\t* IP: rpc error: code = X desc = Y``, ``get -o json``
  as a stream of indented objects, the dry-run summary on stderr, the ``etcd members`` table.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import io
import json
import threading

from ansible.module_utils import _internal as module_internal
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.cellplatform.platform.plugins.module_utils import talosctl as talosctl_utils

CP = ['192.168.100.51', '192.168.100.52', '192.168.100.53']
WORKERS = ['192.168.100.61', '192.168.100.62', '192.168.100.63']

# -- canned talosctl texts (v1.13.9) ------------------------------------------------------------
OK = (0, '', '')
X509_DESC = ('connection error: desc = "transport: authentication handshake failed: tls: failed to verify '
             'certificate: x509: certificate signed by unknown authority"')
CERT_REQUIRED_DESC = ('connection error: desc = "transport: authentication handshake failed: remote error: '
                      'tls: certificate required"')


def refused_desc(ip):
    return ('connection error: desc = "transport: Error while dialing: dial tcp %s:50000: '
            'connect: connection refused"' % ip)


def wrapped(prefix, ip, code, desc):
    """stderr of a per-node failure as talosctl prints it (proxied through the endpoint)."""
    return '%s: 1 error occurred:\n\t* %s: rpc error: code = %s desc = %s\n\n\n' % (prefix, ip, code, desc)


def fail(prefix, ip, code, desc, rc=1):
    return (rc, '', wrapped(prefix, ip, code, desc))


def x509(ip, prefix=None):
    """mTLS to a node that does not trust the talosconfig's CA (``get``: printed bare)."""
    if prefix is None:
        return (1, '', 'rpc error: code = Unavailable desc = %s\n' % X509_DESC)
    return fail(prefix, ip, 'Unavailable', X509_DESC)


def cert_required(ip, prefix=None):
    """``--insecure`` to a configured node (``get``: printed bare)."""
    if prefix is None:
        return (1, '', 'rpc error: code = Unavailable desc = %s\n' % CERT_REQUIRED_DESC)
    return fail(prefix, ip, 'Unavailable', CERT_REQUIRED_DESC)


def refused(ip, prefix=None):
    """A node whose Talos API refuses the dial: machine API calls wrap it per node, ``get`` prints it bare."""
    if prefix is None:
        return (1, '', 'rpc error: code = Unavailable desc = %s\n' % refused_desc(ip))
    return fail(prefix, ip, 'Unavailable', refused_desc(ip))


def timed_out(ip, prefix=None):
    """A node whose Talos API does not answer the dial (i/o timeout after the dial timeout)."""
    desc = 'connection error: desc = "transport: Error while dialing: dial tcp %s:50000: i/o timeout"' % ip
    if prefix is None:
        return (1, '', 'rpc error: code = Unavailable desc = %s\n' % desc)
    return fail(prefix, ip, 'Unavailable', desc)


def not_found(rtype, rid, namespace):
    """``get <type> <id>`` for a resource that does not exist (COSI NotFound, no node prefix)."""
    return (1, '', '1 error occurred:\n\t* rpc error: code = NotFound desc = resource %s(%s/%s@undefined) '
                   'doesn\'t exist\n\n\n' % (rtype, namespace, rid))


def json_stream(*objs):
    """``talosctl get -o json``: indented objects one after the other (not an array)."""
    return ''.join(json.dumps(o, indent=4) + '\n' for o in objs)


def resource(ip, rtype, rid, spec, namespace='runtime'):
    return dict(node=ip, metadata=dict(namespace=namespace, type=rtype, id=rid, version=1, owner='',
                                       phase='running', created='2026-11-26T10:00:00Z',
                                       updated='2026-11-26T10:00:00Z'), spec=spec)


def machinestatus(ip, stage='running', ready=True):
    return (0, json_stream(resource(ip, 'MachineStatuses.runtime.talos.dev', 'machine',
                                    dict(stage=stage, status=dict(ready=ready, unmetConditions=[])))), '')


def dry_run(diff=None, reboot=False):
    """stderr of ``apply-config --dry-run`` (``diff`` None: ``No changes.``)."""
    return (0, '', 'Dry run summary:\nApplied configuration %s a reboot (skipped in dry-run).\nConfig diff:\n\n%s\n'
            % ('with' if reboot else 'without', diff if diff else 'No changes.'))


SERVICES_TYPE = 'Services.v1alpha1.talos.dev'
ETCD_MEMBERS_TYPE = 'EtcdMembers.etcd.talos.dev'


def etcd_service(ip, running=True):
    """``get services etcd -o json``: the Services resource exists only while etcd runs (NotFound otherwise)."""
    if not running:
        return not_found(SERVICES_TYPE, 'etcd', 'runtime')
    return (0, json_stream(resource(ip, SERVICES_TYPE, 'etcd', dict(running=True, healthy=True, unknown=False))), '')


def etcd_local_member(ip, member_id=None):
    """``get etcdmembers -o json``: the ``local`` member once the node is one, else an empty stream."""
    if not member_id:
        return OK
    return (0, json_stream(resource(ip, ETCD_MEMBERS_TYPE, 'local', dict(memberID=member_id), 'etcd')), '')


def service_info(ip, service, state, health='?'):
    """``talosctl service <id>`` (tabwriter, padding 3)."""
    return (0, 'NODE     %s\nID       %s\nSTATE    %s\nHEALTH   %s\nEVENTS   [%s]: Running pre state (5s ago)\n'
            % (ip, service, state, health, state), '')


# -- the fake runner ------------------------------------------------------------------------------
def _flag(argv, name):
    if name in argv:
        i = argv.index(name)
        return argv[i + 1] if i + 1 < len(argv) else None
    return None


class Call(object):
    """One recorded talosctl call."""

    def __init__(self, argv, timeout=None):
        self.argv = list(argv)
        self.timeout = timeout
        nodes = _flag(argv, '--nodes')
        endpoints = _flag(argv, '--endpoints')
        self.nodes = nodes.split(',') if nodes else []
        self.endpoints = endpoints.split(',') if endpoints else []
        self.insecure = '--insecure' in argv
        self.talosconfig = _flag(argv, '--talosconfig')
        words = []
        for a in argv:
            if a.startswith('-'):
                break
            words.append(a)
        self.words = tuple(words)

    def __repr__(self):
        return 'Call(%s)' % ' '.join(self.argv)


class Rule(object):
    def __init__(self, words, node, insecure, has, lacks, answers):
        self.words = tuple(words)
        self.node = node
        self.insecure = insecure
        self.has = tuple(has)
        self.lacks = tuple(lacks)
        self.answers = answers if isinstance(answers, list) or callable(answers) else [answers]
        self.used = 0

    def matches(self, call):
        if call.words[:len(self.words)] != self.words:
            return False
        if self.node is not None and self.node not in call.nodes:
            return False
        if self.insecure is not None and call.insecure != self.insecure:
            return False
        if any(h not in call.argv for h in self.has) or any(x in call.argv for x in self.lacks):
            return False
        return True

    def answer(self, call):
        if callable(self.answers):
            return self.answers(call)
        i = min(self.used, len(self.answers) - 1)
        self.used += 1
        return self.answers[i]


class Script(object):
    """Canned talosctl answers and the record of calls (thread-safe: modules ask nodes in parallel)."""

    def __init__(self):
        self.rules = []
        self.calls = []
        self.lock = threading.Lock()

    def on(self, *words, **kw):
        """Answer calls whose argv starts with ``words``; first matching rule wins.

        Keywords: ``node`` (in --nodes), ``insecure`` (bool), ``has``/``lacks`` (argv items), ``answer``
        (an (rc, out, err) tuple, a list of them used in turn (the last repeats) or a callable(call)).
        """
        self.rules.append(Rule(words, kw.get('node'), kw.get('insecure'), kw.get('has', ()), kw.get('lacks', ()),
                               kw['answer']))
        return self

    def exec_(self, argv, timeout=None):
        call = Call(argv, timeout)
        with self.lock:
            self.calls.append(call)
            rule = next((r for r in self.rules if r.matches(call)), None)
            if rule is not None and not callable(rule.answers):
                return rule.answer(call)
        if rule is None:
            raise AssertionError('unexpected talosctl call: %s' % ' '.join(argv))
        return rule.answer(call)   # outside the lock: callables may block like a slow node

    def find(self, *words, **kw):
        """Recorded calls whose argv starts with ``words`` (optionally to ``node``, with/without argv items)."""
        has, lacks, node = kw.get('has', ()), kw.get('lacks', ()), kw.get('node')
        return [c for c in self.calls if c.words[:len(words)] == tuple(words)
                and (node is None or node in c.nodes)
                and all(h in c.argv for h in has) and not any(x in c.argv for x in lacks)]

    # etcd as a control plane's Talos API reports it (get services etcd / get etcdmembers / service etcd)
    def control_plane(self, ip, etcd, member_id=None):
        """``etcd``: ``running`` (service Running + local member), ``member`` (local member, service not
        running), ``preparing`` (configured, etcd waits for bootstrap or to join), ``maintenance``, ``refused``
        (Talos API refuses the dial), ``foreign`` (configured by another cluster's CA)."""
        if etcd in ('running', 'member', 'preparing'):
            running = etcd == 'running'
            self.on('get', 'services', 'etcd', node=ip, answer=etcd_service(ip, running))
            self.on('get', 'etcdmembers', node=ip,
                    answer=etcd_local_member(ip, (member_id or '0f56d3d82142ea44') if etcd != 'preparing' else None))
            self.on('service', 'etcd', node=ip,
                    answer=service_info(ip, 'etcd', 'Running' if running else 'Preparing', 'OK' if running else '?'))
        elif etcd == 'maintenance':
            self.on('get', 'services', node=ip, insecure=False, answer=x509(ip))
            self.node(ip, 'maintenance')
        elif etcd == 'refused':
            self.on('get', node=ip, answer=refused(ip))
        elif etcd == 'foreign':
            self.on('get', 'services', node=ip, insecure=False, answer=x509(ip))
            self.node(ip, 'foreign')
        else:
            raise ValueError(etcd)
        return self

    # states of a node following the maintenance/configured recipe of the brief (1.7)
    def node(self, ip, state):
        if state == 'configured':
            self.on('get', 'machinestatus', node=ip, insecure=False, answer=machinestatus(ip))
            self.on('get', 'machinestatus', node=ip, insecure=True, answer=cert_required(ip))
        elif state == 'maintenance':
            self.on('get', 'machinestatus', node=ip, insecure=False, answer=x509(ip))
            self.on('get', 'machinestatus', node=ip, insecure=True, answer=machinestatus(ip, 'maintenance', False))
        elif state == 'unreachable':
            self.on('get', 'machinestatus', node=ip, answer=refused(ip))
        elif state == 'foreign':   # configured, but by another cluster's CA
            self.on('get', 'machinestatus', node=ip, insecure=False, answer=x509(ip))
            self.on('get', 'machinestatus', node=ip, insecure=True, answer=cert_required(ip))
        else:
            raise ValueError(state)
        return self


def fake_talosctl(script):
    """A Talosctl class for ``monkeypatch.setattr(module, 'Talosctl', fake_talosctl(script))``."""

    class FakeTalosctl(talosctl_utils.Talosctl):
        instances = []

        def __init__(self, module, **kw):  # pylint: disable=super-init-not-called
            self.module = module
            self.configure(getattr(module, 'params', None) or {}, talosconfig=kw.get('talosconfig'))
            self.retry_delay = 0.0
            self.client_version = self.talos_version
            self.path = '/fake/bin/talosctl'
            self.script = script
            FakeTalosctl.instances.append(self)

        def _exec(self, argv, timeout):
            return self.script.exec_(argv, timeout)

    return FakeTalosctl


# -- running a module ------------------------------------------------------------------------------
def run_module(module, args, check=False, diff=False, verbosity=0):
    """Run ``module.main()`` in-process; returns the result dict with ``_rc`` (0 exit_json, 1 fail_json).

    The one in-process runner of the project's tests (tests/integration uses it too)."""
    from ansible.module_utils.common import warnings as ansible_warnings
    for name in ('_global_warnings', '_global_deprecations'):
        store = getattr(ansible_warnings, name, None)
        if store is not None:
            store.clear()
    payload = dict(args)
    payload.update(_ansible_check_mode=check, _ansible_diff=diff, _ansible_verbosity=verbosity)
    basic._ANSIBLE_ARGS = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': payload}))
    basic._ANSIBLE_PROFILE = 'legacy'
    buf = io.StringIO()
    code = None
    # Importing controller code (ansible.constants, a lookup plugin ...) anywhere in the test session
    # flips module_utils into controller mode, where module.warn() prints instead of returning the
    # warning; a real module process is never in controller mode.
    was_controller = module_internal.is_controller
    module_internal.is_controller = False
    try:
        with contextlib.redirect_stdout(buf):
            try:
                module.main()
            except SystemExit as exc:
                code = exc.code
    finally:
        module_internal.is_controller = was_controller
    text = buf.getvalue()
    assert '{' in text, 'module printed no JSON result: %r' % text
    result = json.loads(text[text.index('{'):])
    result['_rc'] = code
    return result


def warnings_of(result):
    """Warning texts of a result (strings or ansible-core 2.19+ dicts)."""
    out = []
    for w in result.get('warnings') or []:
        out.append(w if isinstance(w, str) else json.dumps(w))
    return out


# -- age keys and a synthetic secrets bundle ---------------------------------------------------
class AgeKeys(object):
    """Real age keys (pyrage): ``identity`` (SOPS-style key file with two keys), ``recipients`` (the public
    key of its second key), and an unrelated key pair ``other_identity``/``other_recipients``."""

    def __init__(self, directory):
        from pyrage import x25519
        directory.mkdir(parents=True, exist_ok=True)
        first, second, other = x25519.Identity.generate(), x25519.Identity.generate(), x25519.Identity.generate()
        self.identity = directory / 'keys.txt'
        self.identity.write_text('# created: 2026-11-26T10:00:00Z\n# public key: %s\n%s\n\n# public key: %s\n%s\n'
                                 % (first.to_public(), first, second.to_public(), second))
        self.identity.chmod(0o600)
        self.other_identity = directory / 'other.txt'
        self.other_identity.write_text('%s\n' % other)
        self.recipients = [str(second.to_public())]
        self.all_recipients = [str(first.to_public()), str(second.to_public())]
        self.other_recipients = [str(other.to_public())]


BUNDLE_SECRETS = dict(
    cluster_id='Q0xVU1RFUi1JRC1zZWNyZXQtdmFsdWUtMDAx', cluster_secret='Q0xVU1RFUi1TRUNSRVQtdmFsdWUtMDAy',
    bootstraptoken='q1w2e3.r4t5y6u7i8o9p0a1', secretbox='U0VDUkVUQk9YLXNlY3JldC12YWx1ZS0wMDM=',
    trustd='t9y8u7.i6o5p4a3s2d1f0g9', crt='LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNSVC0wMDQ=',
    key='LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCktFWS0wMDU=')


def bundle_yaml(**override):
    """A complete v1.13 secrets bundle (talosctl gen secrets layout) with recognisable fake values."""
    s = dict(BUNDLE_SECRETS, **override)
    certs = dict((name, dict(crt=s['crt'], key=s['key'])) for name in ('etcd', 'k8s', 'k8saggregator', 'os'))
    certs['k8sserviceaccount'] = dict(key=s['key'])
    doc = dict(cluster=dict(id=s['cluster_id'], secret=s['cluster_secret']),
               secrets=dict(bootstraptoken=s['bootstraptoken'], secretboxencryptionsecret=s['secretbox']),
               trustdinfo=dict(token=s['trustd']), certs=certs)
    import yaml
    return yaml.safe_dump(doc, sort_keys=False)


def leaks(result, values=None):
    """The secret values (default: the bundle's) that appear anywhere in a result."""
    text = json.dumps(result)
    return [v for v in (values or BUNDLE_SECRETS.values()) if v in text]


def make_cert(days, cn='admin'):
    """base64 of a self-signed PEM certificate valid for ``days`` more days (as Talos/kubeconfig store it)."""
    import base64
    import datetime
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(cx509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()
