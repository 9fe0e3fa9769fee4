# -*- coding: utf-8 -*-
# Copyright: cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one talosctl runner used by every ``cellplatform.platform.talos_*`` module.

It finds the binary, checks its version against the pinned Talos version, builds the
argument vector (``--talosconfig``, ``-n``/``-e``, ``--insecure`` only on commands that talk
to nodes), runs it with a timeout, retries transient gRPC errors with backoff, parses the
``rpc error: code = X desc = Y`` lines talosctl prints (also when wrapped per node), maps
well-known failures to messages that say what to do, parses ``get -o json`` object
streams and redacts secret material from every text it hands back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

TALOSCTL_COMMON_ARGS = dict(
    talosctl_path=dict(type='path'),
    talosconfig=dict(type='path'),
    talos_version=dict(type='str', default='v1.13.9'),
    timeout=dict(type='int', default=300),
    retries=dict(type='int', default=10),
    retry_delay=dict(type='float', default=2.0),
)

# Commands (first word of the argv) that never talk to a node: talosctl rejects the node
# flags (-n, -e, --talosconfig) on them (brief 1.0).
OFFLINE_COMMANDS = frozenset(('gen', 'machineconfig', 'validate', 'completion', 'docs', 'cluster'))
# `config *` edits the talosconfig: it takes --talosconfig but no -n/-e.
CONFIG_COMMANDS = frozenset(('config',))

MAX_BACKOFF = 30.0
# Failure kinds that are configuration or TLS problems: retrying cannot help.
PERMANENT_KINDS = ('x509', 'tls_required', 'usage', 'no_endpoints')

_RPC_RE = re.compile(
    r'(?:\*\s+(?P<node>[^\s:*]+(?::\d+)?):\s+)?rpc error: code = (?P<code>[A-Za-z]+) desc = (?P<desc>[^\n]*)')
_VERSION_RE = re.compile(r'v?(\d+)\.(\d+)\.(\d+)')
_NODE_IN_TEXT_RE = re.compile(r'(?:dial tcp |\* )(\d{1,3}(?:\.\d{1,3}){3})')

# --- redaction -------------------------------------------------------------------------
REDACTED = '<redacted>'
_PEM_RE = re.compile(r'-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----', re.S)
# base64 of "-----BEGIN" (how Talos stores certificates and keys inside YAML/JSON)
_B64_PEM_RE = re.compile(r'LS0tLS1CRUdJTi[A-Za-z0-9+/=]*')
# key: value / "key": "value" / key=value for field names that carry secrets
_SECRET_FIELD_RE = re.compile(
    r'''(?P<pre>(?:^|[\s{,"'])(?P<q>["']?)(?:key|crt|cert|ca|token|secret|secrets|password|'''
    r'''bootstraptoken|secretboxencryptionsecret|aescbcencryptionsecret|client-key-data|'''
    r'''client-certificate-data|certificate-authority-data|privateKey|id_token)(?P=q)[ \t]*[:=][ \t]*)'''
    r'''(?P<val>["']?)(?P<body>[^\s"',}{\[\]]+)(?P=val)''',
    re.I | re.M)
# Talos/kubeadm style bootstrap tokens: abcdef.0123456789abcdef
_TOKEN_RE = re.compile(r'\b[a-z0-9]{6}\.[a-z0-9]{16}\b')


_BLOCK_RE = re.compile(r'^(?P<indent>[+\- ]?\s*)(?P<q>["\']?)(?:key|crt|cert|ca|token|secret|password|privateKey)(?P=q)'
                       r'\s*:\s*[|>][-+]?\s*$', re.I)


def _redact_blocks(text):
    """Mask YAML block scalars (``key: |``) of secret-named fields, line by line."""
    out = []
    block_indent = None
    for line in text.split('\n'):
        if block_indent is not None:
            body = line[1:] if line[:1] in ('+', '-', ' ') and line[1:2] == ' ' else line
            indent = len(body) - len(body.lstrip(' '))
            if body.strip() and indent > block_indent:
                continue
            block_indent = None
        m = _BLOCK_RE.match(line)
        if m:
            body = line[1:] if line[:1] in ('+', '-') else line
            block_indent = len(body) - len(body.lstrip(' '))
            out.append(line.rstrip() + ' ' + REDACTED)
            continue
        out.append(line)
    return '\n'.join(out)


def redact(text):
    """Return *text* with PEM blocks, base64 PEM, secret-named fields and tokens masked."""
    if not text:
        return text
    if not isinstance(text, str):
        text = str(text)
    text = _redact_blocks(text)
    text = _PEM_RE.sub(lambda m: '-----BEGIN %s-----%s-----END %s-----' % (m.group(1), REDACTED, m.group(1)), text)
    text = _B64_PEM_RE.sub(REDACTED, text)

    def _field(m):
        body = m.group('body')
        if body.startswith(REDACTED) or body in ('null', '~', 'true', 'false') or body[0] in '|>':
            return m.group(0)
        return '%s%s%s%s' % (m.group('pre'), m.group('val'), REDACTED, m.group('val'))

    text = _SECRET_FIELD_RE.sub(_field, text)
    return _TOKEN_RE.sub(REDACTED, text)


# --- errors ----------------------------------------------------------------------------
class TalosctlError(Exception):
    """A failed talosctl call.

    Attributes: ``code`` (gRPC code such as ``AlreadyExists``, or ``Timeout``, ``NotFound``,
    ``VersionMismatch``, ``Usage``, ``Unreachable``, ``Unknown``), ``desc`` (the gRPC description),
    ``node`` (the node the error is about, if known), ``rc``, ``stderr`` (redacted), ``argv``
    (redacted) and ``message`` (what failed and how to fix it).
    """

    def __init__(self, message, code=None, desc=None, node=None, rc=None, stderr='', argv=None, kind=None):
        self.message = message
        self.code = code
        self.desc = desc
        self.node = node
        self.rc = rc
        self.stderr = stderr
        self.argv = argv or []
        self.kind = kind
        super().__init__(message)

    def to_result(self):
        """Keys a module adds to fail_json."""
        return dict(msg=self.message, code=self.code, node=self.node, rc=self.rc,
                    stderr=self.stderr, cmd=' '.join(self.argv))


def parse_rpc_errors(stderr):
    """All ``rpc error`` entries of a talosctl stderr: list of dicts node/code/desc."""
    out = []
    for m in _RPC_RE.finditer(stderr or ''):
        out.append(dict(node=m.group('node'), code=m.group('code'), desc=m.group('desc').strip()))
    return out


def classify(stderr):
    """Return the kind of a talosctl failure from its stderr.

    ``x509`` (wrong CA / other cluster / maintenance node over mTLS), ``tls_required`` (an
    insecure call to a configured node), ``no_endpoints``, ``unreachable``, ``usage``
    (unknown flag/command: version mismatch) or ``None``.
    """
    s = stderr or ''
    low = s.lower()
    if 'unknown flag' in low or 'unknown shorthand flag' in low or re.search(r'unknown command ".*" for "talosctl', low) \
            or 'invalid argument "' in low:
        return 'usage'
    if 'failed to determine endpoints' in low:
        return 'no_endpoints'
    if 'x509:' in low or 'failed to verify certificate' in low or 'certificate signed by unknown authority' in low:
        return 'x509'
    if 'certificate required' in low or 'bad certificate' in low or 'authentication handshake failed' in low:
        return 'tls_required'
    if 'connection refused' in low or 'deadline exceeded' in low or 'no route to host' in low \
            or 'i/o timeout' in low or 'network is unreachable' in low or 'connection reset' in low:
        return 'unreachable'
    return None


def parse_json_stream(text):
    """Parse talosctl's ``-o json`` output: a stream of JSON objects (not an array)."""
    decoder = json.JSONDecoder()
    objs = []
    idx = 0
    text = text or ''
    n = len(text)
    while True:
        while idx < n and text[idx].isspace():
            idx += 1
        if idx >= n:
            break
        obj, end = decoder.raw_decode(text, idx)
        objs.append(obj)
        idx = end
    return objs


def talos_contract(version):
    """``v1.13.9`` -> ``v1.13``: the config contract passed to ``--talos-version``."""
    match = re.match(r'^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$', str(version or '').strip())
    if not match:
        raise ValueError("talos_version %r is not a Talos version; use the form vX.Y.Z such as v1.13.9" % version)
    return 'v%s.%s' % match.groups()


def parse_version(text):
    """Return (major, minor, patch) of the first ``vX.Y.Z`` in *text*, or None."""
    m = _VERSION_RE.search(text or '')
    return tuple(int(x) for x in m.groups()) if m else None


def parse_dry_run(stderr):
    """Parse the ``apply-config --dry-run`` summary (printed on stderr).

    Returns dict(changed, reboot, diff) or None when there is no summary.
    """
    if 'Dry run summary:' not in (stderr or ''):
        return None
    body = stderr.split('Dry run summary:', 1)[1]
    reboot = None
    m = re.search(r'Applied configuration (with|without) a reboot', body)
    if m:
        reboot = m.group(1) == 'with'
    diff = ''
    if 'Config diff:' in body:
        diff = body.split('Config diff:', 1)[1].strip('\n')
    changed = diff.strip() != 'No changes.'
    return dict(changed=changed, reboot=reboot, diff=diff if changed else '')


class Talosctl(object):
    """Runs talosctl for a module.

    ``module`` is an AnsibleModule whose argument_spec contains TALOSCTL_COMMON_ARGS (only
    ``params``, ``fail_json`` and ``warn`` are used). Keyword arguments override params.
    Construction fails the module (fail_json) when the binary is missing or its version does
    not match ``talos_version``; pass ``fail_on_error=False`` to get TalosctlError instead.
    """

    def __init__(self, module, path=None, talosconfig=None, talos_version=None, timeout=None,
                 retries=None, retry_delay=None, check_version=True, fail_on_error=True):
        self.module = module
        params = getattr(module, 'params', None) or {}
        self.talosconfig = talosconfig or params.get('talosconfig')
        self.talos_version = talos_version or params.get('talos_version') or 'v1.13.9'
        self.timeout = timeout or params.get('timeout') or 300
        self.retries = retries if retries is not None else params.get('retries', 10)
        if self.retries is None:
            self.retries = 10
        self.retry_delay = retry_delay if retry_delay is not None else params.get('retry_delay', 2.0)
        if self.retry_delay is None:
            self.retry_delay = 2.0
        self.calls = []
        self.last_attempts = 0
        self.warnings = []
        self.client_version = None
        try:
            self.path = self._find(path or params.get('talosctl_path'))
            if self.talosconfig and not os.path.isfile(self.talosconfig):
                raise TalosctlError(
                    "talosconfig %r does not exist; pass the path of the cell's decrypted talosconfig "
                    "(option talosconfig) or omit it for maintenance-mode calls" % self.talosconfig,
                    code='NotFound', kind='config')
            if check_version:
                self._check_version()
        except TalosctlError as e:
            if fail_on_error:
                module.fail_json(**e.to_result())
            raise

    # -- setup ------------------------------------------------------------------------
    def _find(self, path):
        want = self.talos_version
        if path:
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            found = shutil.which(path) if os.sep not in path else None
            if found:
                return found
            raise TalosctlError(
                "talosctl_path %r is not an executable file; install talosctl %s "
                "(https://github.com/siderolabs/talos/releases/tag/%s) or fix talosctl_path" % (path, want, want),
                code='NotFound', kind='binary')
        found = shutil.which('talosctl')
        if not found:
            raise TalosctlError(
                "talosctl not found; install talosctl %s (https://github.com/siderolabs/talos/releases/tag/%s) "
                "on the controller's PATH or set talosctl_path" % (want, want),
                code='NotFound', kind='binary')
        return found

    def _check_version(self):
        want = parse_version(self.talos_version)
        if want is None:
            raise TalosctlError(
                "talos_version %r is not a Talos version; use the form vX.Y.Z such as v1.13.9" % self.talos_version,
                code='InvalidArgument', kind='config')
        rc, out, err = self._exec(['version', '--client', '--short'], self.timeout)
        have = parse_version(out)
        if rc != 0 or have is None:
            raise TalosctlError(
                "could not read the talosctl client version from %s (rc=%s): %s; install talosctl %s"
                % (self.path, rc, redact((err or out).strip()), self.talos_version),
                code='VersionMismatch', rc=rc, stderr=redact(err), kind='version')
        self.client_version = 'v%d.%d.%d' % have
        if have[:2] != want[:2]:
            raise TalosctlError(
                "talosctl at %s is %s but the cell pins Talos %s (talos_version); talosctl must match the "
                "Talos minor release: install talosctl %s or change talos_version"
                % (self.path, self.client_version, self.talos_version, self.talos_version),
                code='VersionMismatch', kind='version')
        if have != want:
            msg = ("talosctl %s differs from the pinned Talos version %s in the patch release; "
                   "this works, but install talosctl %s to match"
                   % (self.client_version, self.talos_version, self.talos_version))
            self.warnings.append(msg)
            warn = getattr(self.module, 'warn', None)
            if warn:
                warn(msg)

    # -- execution --------------------------------------------------------------------
    def _exec(self, argv, timeout):
        full = [self.path] + list(argv)
        started = time.time()
        try:
            # AnsibleModule.run_command has no timeout; a hung talosctl must not hang the play.
            proc = subprocess.run(  # pylint: disable=ansible-bad-function
                full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            self.calls.append(dict(argv=redact(' '.join(full)), rc=None, seconds=round(time.time() - started, 3)))
            raise TalosctlError(
                "talosctl %s did not finish within %s seconds (option timeout); the node is slow or unreachable: "
                "check that it is powered on and reachable on port 50000, or raise timeout"
                % (redact(' '.join(argv[:2])), timeout),
                code='Timeout', argv=[redact(a) for a in full], kind='timeout')
        except OSError as e:
            raise TalosctlError("cannot execute %s: %s; install talosctl %s or fix talosctl_path"
                                % (self.path, e, self.talos_version), code='NotFound', kind='binary')
        out = proc.stdout.decode('utf-8', 'replace')
        err = proc.stderr.decode('utf-8', 'replace')
        self.calls.append(dict(argv=redact(' '.join(full)), rc=proc.returncode, seconds=round(time.time() - started, 3)))
        return proc.returncode, out, err

    def build_argv(self, args, nodes=None, endpoints=None, insecure=False, talosconfig=None):
        """The argv (without the binary) for *args* plus the flags the command accepts."""
        args = list(args)
        head = args[0] if args else ''
        argv = list(args)
        if head in OFFLINE_COMMANDS:
            if nodes or endpoints or insecure:
                raise TalosctlError("talosctl %s does not talk to nodes; do not pass nodes, endpoints or insecure"
                                    % head, code='InvalidArgument', kind='usage')
            return argv
        use_tc = self.talosconfig if talosconfig is None else talosconfig
        if head in CONFIG_COMMANDS:
            if use_tc:
                argv += ['--talosconfig', use_tc]
            return argv
        if head == 'version' and '--client' in args:
            return argv
        if use_tc and not insecure:
            argv += ['--talosconfig', use_tc]
        if nodes:
            argv += ['--nodes', ','.join(nodes)]
        if endpoints:
            argv += ['--endpoints', ','.join(endpoints)]
        if insecure:
            argv.append('--insecure')
        return argv

    def run(self, args, nodes=None, endpoints=None, insecure=False, retry_codes=(), check=True,
            timeout=None, talosconfig=None, retries=None):
        """Run talosctl; returns (rc, stdout, stderr) with stdout/stderr redacted.

        Retries (with exponential backoff starting at ``retry_delay``) when the gRPC code of the
        failure is in *retry_codes* (e.g. ``FailedPrecondition``, ``Unavailable``) and the failure
        is not a TLS/x509 problem. With ``check=True`` a non-zero exit raises TalosctlError.
        """
        argv = self.build_argv(args, nodes=nodes, endpoints=endpoints, insecure=insecure, talosconfig=talosconfig)
        timeout = timeout or self.timeout
        retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            self.last_attempts = attempt + 1
            rc, out, err = self._exec(argv, timeout)
            if rc == 0:
                return rc, redact(out), redact(err)
            errors = parse_rpc_errors(err)
            kind = classify(err)
            transient = (kind not in PERMANENT_KINDS
                         and any(e['code'] in retry_codes for e in errors))
            if 'Unreachable' in retry_codes and kind == 'unreachable':
                transient = True
            if transient and attempt < retries:
                time.sleep(self.backoff(attempt))
                attempt += 1
                continue
            if not check:
                return rc, redact(out), redact(err)
            raise self.error(args, rc, out, err, nodes=nodes, attempts=attempt + 1)

    def backoff(self, attempt):
        """Seconds to wait before retry number *attempt* + 1: ``retry_delay`` doubled per attempt, capped."""
        return min(MAX_BACKOFF, self.retry_delay * (2 ** attempt))

    def error(self, args, rc, out, err, nodes=None, attempts=1):
        """Build the TalosctlError for a failed call (message names cause and fix)."""
        errors = parse_rpc_errors(err)
        first = errors[0] if errors else dict(node=None, code=None, desc=None)
        kind = classify(err)
        node = first['node']
        if node and ':' in node:
            node = node.split(':', 1)[0]
        if not node:
            m = _NODE_IN_TEXT_RE.search(err or '')
            node = m.group(1) if m else (nodes[0] if nodes and len(nodes) == 1 else None)
        cmd = ' '.join(a for a in args[:2] if not a.startswith('-'))
        red = redact((err or out or '').strip())
        where = ' on node %s' % node if node else ''
        after = ' after %d attempts' % attempts if attempts > 1 else ''
        code = first['code']
        if kind == 'usage':
            msg = ("talosctl rejected the command line of `talosctl %s`: %s; this usually means the talosctl binary "
                   "is not %s (client %s): install talosctl %s"
                   % (cmd, red.splitlines()[0] if red else '', self.talos_version, self.client_version or 'unknown',
                      self.talos_version))
            code = code or 'Usage'
        elif kind == 'no_endpoints':
            msg = ("talosctl %s failed: failed to determine endpoints; the talosconfig %s has no endpoints: set them "
                   "with `talosctl --talosconfig FILE config endpoint <control-plane IPs>` (never the VIP)"
                   % (cmd, self.talosconfig or '(default)'))
            code = code or 'InvalidArgument'
        elif kind == 'x509':
            msg = ("talosctl %s%s failed TLS verification (x509: certificate signed by unknown authority): the node "
                   "belongs to another cluster or the talosconfig/secrets bundle is wrong (or the node is still in "
                   "maintenance mode); use the talosconfig generated from this cell's secrets bundle" % (cmd, where))
            code = code or 'Unavailable'
        elif kind == 'tls_required':
            msg = ("talosctl %s%s was refused by the node's TLS handshake: the node is already configured and "
                   "requires mTLS; call it with this cell's talosconfig instead of --insecure" % (cmd, where))
            code = code or 'Unavailable'
        elif kind == 'unreachable':
            msg = ("talosctl %s%s: node unreachable%s (%s); check that the machine is powered on, has its "
                   "address and that port 50000 is reachable from the controller"
                   % (cmd, where, after, first['desc'] or red.splitlines()[-1] if red else ''))
            code = code or 'Unavailable'
        elif code:
            msg = "talosctl %s%s failed%s: rpc error %s: %s" % (cmd, where, after, code, redact(first['desc']))
            if code == 'FailedPrecondition':
                msg += '; the node is not ready for this yet (still installing, rebooting or time not in sync): ' \
                       'retry later or raise retries/timeout'
            elif code == 'InvalidArgument' and 'v1alpha1' in (first['desc'] or ''):
                msg += '; the file is not a complete machine configuration: apply the full per-node config, ' \
                       'not a bare patch'
        else:
            msg = "talosctl %s%s failed (rc=%s): %s" % (cmd, where, rc, red)
        return TalosctlError(msg, code=code, desc=redact(first['desc']) if first['desc'] else None, node=node,
                             rc=rc, stderr=redact(err), argv=[redact(a) for a in [self.path] + list(args)], kind=kind)

    # -- helpers ----------------------------------------------------------------------
    def get(self, resource, node, resource_id=None, insecure=False, namespace=None, endpoints=None,
            retry_codes=(), timeout=None):
        """``talosctl get <resource> [id] -o json`` against one node; returns the parsed objects."""
        args = ['get', resource]
        if resource_id:
            args.append(resource_id)
        if namespace:
            args += ['--namespace', namespace]
        args += ['-o', 'json']
        ep = endpoints if endpoints is not None else ([node] if node else None)
        rc, out, err = self.run(args, nodes=[node] if node else None, endpoints=ep, insecure=insecure,
                                retry_codes=retry_codes, timeout=timeout)
        try:
            return parse_json_stream(out)
        except ValueError as e:
            raise TalosctlError("cannot parse the JSON stream of `talosctl get %s` from node %s: %s"
                                % (resource, node, e), code='Unknown', node=node)

    def node_state(self, ip, timeout=None):
        """Return ``maintenance``, ``configured`` or ``unreachable`` for node *ip*.

        mTLS ``get machinestatus`` with the talosconfig first (success: configured); on a TLS failure or
        without a talosconfig the maintenance API (``get machinestatus --insecure``). Raises
        TalosctlError when mTLS fails with x509 and the node is not in maintenance either
        (it belongs to another cluster or the talosconfig is wrong).
        """
        return self.node_details(ip, timeout=timeout)['state']

    def node_details(self, ip, timeout=None):
        """Like node_state but returns dict(state, stage, ready, machine_status)."""
        timeout = timeout or min(self.timeout, 60)
        mtls_error = None
        if self.talosconfig:
            rc, out, err = self.run(['get', 'machinestatus', '-o', 'json'], nodes=[ip], endpoints=[ip], check=False,
                                    timeout=timeout, retries=0)
            if rc == 0:
                spec = _machinestatus_spec(out)
                return dict(state='configured', stage=spec.get('stage'), ready=(spec.get('status') or {}).get('ready'),
                            machine_status=spec or None)
            kind = classify(err)
            if kind == 'unreachable':
                return _unreachable(err)
            if kind not in ('x509', 'tls_required'):
                raise self.error(['get', 'machinestatus'], rc, out, err, nodes=[ip])
            mtls_error = (rc, out, err)
        rc, out, err = self.run(['get', 'machinestatus', '-o', 'json'], nodes=[ip], endpoints=[ip], insecure=True,
                                check=False, timeout=timeout, retries=0)
        if rc == 0:
            spec = _machinestatus_spec(out)
            stage = spec.get('stage')
            ready = (spec.get('status') or {}).get('ready')
            if stage == 'maintenance':
                return dict(state='maintenance', stage=stage, ready=ready, machine_status=spec)
            if mtls_error:
                raise self.error(['get', 'machinestatus'], *mtls_error, nodes=[ip])
            return dict(state='configured', stage=stage, ready=ready, machine_status=spec)
        kind = classify(err)
        if kind == 'unreachable':
            return _unreachable(err)
        if kind == 'tls_required':
            if mtls_error:
                # configured node that does not trust our talosconfig
                raise self.error(['get', 'machinestatus'], *mtls_error, nodes=[ip])
            return dict(state='configured', stage=None, ready=None, machine_status=None)
        raise self.error(['get', 'machinestatus'], rc, out, err, nodes=[ip])


def _machinestatus_spec(out):
    """The ``spec`` of the first object of a ``get machinestatus -o json`` stream ({} if unparsable)."""
    try:
        objs = parse_json_stream(out)
    except ValueError:
        objs = []
    return (objs[0].get('spec') or {}) if objs else {}


def _unreachable(err):
    """node_details result for a node that did not answer."""
    return dict(state='unreachable', stage=None, ready=None, machine_status=None, error=redact(err.strip()))
