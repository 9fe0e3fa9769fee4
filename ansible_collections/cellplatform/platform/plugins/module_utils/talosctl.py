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
from concurrent.futures import ThreadPoolExecutor

TALOSCTL_COMMON_ARGS = dict(
    talosctl_path=dict(type='path'),
    talosconfig=dict(type='path'),
    talos_version=dict(type='str', default='v1.13.9'),
    timeout=dict(type='int', default=300),
    retries=dict(type='int', default=10),
    retry_delay=dict(type='float', default=2.0),
    retry_deadline=dict(type='int', default=300),
    probe_timeout=dict(type='int', default=10),
)

# Commands (first word of the argv) that never talk to a node: talosctl rejects the node
# flags (-n, -e, --talosconfig) on them (brief 1.0).
OFFLINE_COMMANDS = frozenset(('gen', 'machineconfig', 'validate', 'completion', 'docs', 'cluster'))
# `config *` edits the talosconfig: it takes --talosconfig but no -n/-e.
CONFIG_COMMANDS = frozenset(('config',))

MAX_BACKOFF = 30.0
# Ports of the Talos API on a node (apid, trustd). A dial error to one of them means the node's
# API does not answer; a dial error to any other port (127.0.0.1:2379: the node's own etcd
# client) means the node answered and one of its services is not up.
TALOS_API_PORTS = ('50000', '50001')
# Failure kinds that are configuration or TLS problems: retrying cannot help.
PERMANENT_KINDS = ('x509', 'tls_required', 'usage', 'no_endpoints')
# The one retry policy: these gRPC codes and failure kinds are transient (the node is rebooting,
# a connection dropped, a call ran into its deadline). Callers add codes that are transient for
# their command (FailedPrecondition for apply-config/bootstrap while a node installs).
TRANSIENT_CODES = ('Unavailable', 'DeadlineExceeded')
TRANSIENT_KINDS = ('unreachable', 'reset', 'deadline')
# A reachability/state probe retries a transient refusal at most this often, all attempts
# within probe_timeout: a node that is down costs seconds, not a retry chain.
PROBE_RETRIES = 2

_RPC_RE = re.compile(
    r'(?:\*\s+(?P<node>[^\s:*]+(?::\d+)?):\s+)?rpc error: code = (?P<code>[A-Za-z]+) desc = (?P<desc>[^\n]*)')
_VERSION_RE = re.compile(r'v?(\d+)\.(\d+)\.(\d+)')
_NODE_IN_TEXT_RE = re.compile(r'(?:dial tcp |\* )(\d{1,3}(?:\.\d{1,3}){3})')
_DIAL_RE = re.compile(
    r'dial tcp (?P<host>\[[^\]]+\]|[^\s:"]+):(?P<port>\d+): (?:connect: )?'
    r'(?P<why>connection refused|i/o timeout|no route to host|network is unreachable|connection timed out)')
# argv values that are paths are shown as what they are, never as the (private, temporary) path
_PATH_LABELS = {
    '--talosconfig': '<talosconfig>', '--file': '<machine config>', '-f': '<machine config>',
    '--with-secrets': '<secrets bundle>', '--output': '<output>', '--output-file': '<output>',
    '--config': '<machine config>', '--patch': '<patch>', '--config-patch': '<patch>',
    '--config-patch-control-plane': '<patch>', '--config-patch-worker': '<patch>',
}
_POSITIONAL_LABELS = {'kubeconfig': '<kubeconfig>', 'machineconfig': '<machine config>'}

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
    ``VersionMismatch``, ``Usage``, ``Unknown``), ``desc`` (the gRPC description), ``kind`` (see
    classify(), or ``timeout`` when the process was stopped), ``node`` (the node the error is about,
    if known), ``rc``, ``stderr`` (redacted, private paths replaced), ``argv`` (the same) and
    ``message`` (what failed on which node and how to fix it).
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


class _ProcessTimeout(Exception):
    """talosctl was stopped because it ran longer than its timeout."""


def parse_rpc_errors(stderr):
    """All ``rpc error`` entries of a talosctl stderr: list of dicts node/code/desc."""
    out = []
    for m in _RPC_RE.finditer(stderr or ''):
        out.append(dict(node=m.group('node'), code=m.group('code'), desc=m.group('desc').strip()))
    return out


def classify(stderr):
    """Return the kind of a talosctl failure from its stderr.

    ``usage`` (unknown flag/command: version mismatch), ``no_endpoints``, ``x509`` (wrong CA / other
    cluster / maintenance node over mTLS), ``tls_required`` (an insecure call to a configured node),
    ``unreachable`` (dialling the node's Talos API, port 50000/50001, failed: refused, i/o timeout,
    no route), ``node_service`` (the node answered, but a service it dialled itself refused, e.g. its
    etcd at 127.0.0.1:2379 before bootstrap), ``reset`` (an open connection dropped), ``deadline``
    (a call ran into its deadline: the node answered too late or a service on it waits) or ``None``.
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
    dial = _DIAL_RE.search(s)
    if dial:
        return 'unreachable' if dial.group('port') in TALOS_API_PORTS else 'node_service'
    if 'no route to host' in low or 'network is unreachable' in low:
        return 'unreachable'
    if 'connection reset' in low or 'transport is closing' in low or 'error reading from server: eof' in low:
        return 'reset'
    if 'deadlineexceeded' in low or 'deadline exceeded' in low:
        return 'deadline'
    return None


def dial_failure(stderr):
    """``connection refused``/``i/o timeout``/... of a failed dial in *stderr*, with the port (or None)."""
    m = _DIAL_RE.search(stderr or '')
    return '%s on port %s' % (m.group('why'), m.group('port')) if m else None


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


def command_words(args):
    """The command words of *args* (``get machinestatus``, ``kubeconfig``): up to the first flag or path."""
    words = []
    for a in args:
        if a.startswith('-') or os.sep in a or a.startswith('@'):
            break
        words.append(a)
    return ' '.join(words)


def path_labels(argv):
    """{path: label} for every argv value that is a file path (so messages never show private paths)."""
    labels = {}
    prev = None
    head = argv[0] if argv else None
    for a in argv:
        path = a[1:] if a.startswith('@') else a
        if path.startswith(os.sep):
            labels[path] = _PATH_LABELS.get(prev) or _POSITIONAL_LABELS.get(head) or '<file>'
        prev = a
    return labels


def scrub(text, labels):
    """*text* with every path of *labels* replaced by its label (longest paths first)."""
    if not text or not labels:
        return text
    for path in sorted(labels, key=len, reverse=True):
        text = text.replace(path, labels[path])
    return text


class Talosctl(object):
    """Runs talosctl for a module.

    ``module`` is an AnsibleModule whose argument_spec contains TALOSCTL_COMMON_ARGS (only
    ``params``, ``fail_json`` and ``warn`` are used). Keyword arguments override params.
    Construction fails the module (fail_json) when the binary is missing or its version does
    not match ``talos_version``; pass ``fail_on_error=False`` to get TalosctlError instead.

    The retry policy (one for every command): a failure whose gRPC code is in TRANSIENT_CODES
    (plus the codes a caller adds) or whose kind is in TRANSIENT_KINDS is retried with
    exponential backoff from ``retry_delay`` (capped at 30 s), at most ``retries`` times and
    never starting a new attempt after ``retry_deadline`` seconds; TLS, x509 and usage failures
    are never retried. Probes (``probe``, ``node_details``) retry at most PROBE_RETRIES times and
    finish, every attempt included, within ``probe_timeout``.
    """

    def __init__(self, module, path=None, talosconfig=None, talos_version=None, timeout=None,
                 retries=None, retry_delay=None, check_version=True, fail_on_error=True):
        self.module = module
        self.configure(getattr(module, 'params', None) or {}, talosconfig=talosconfig, talos_version=talos_version,
                       timeout=timeout, retries=retries, retry_delay=retry_delay)
        try:
            self.path = self._find(path or (getattr(module, 'params', None) or {}).get('talosctl_path'))
            if self.talosconfig and not os.path.isfile(self.talosconfig):
                raise TalosctlError(
                    "the talosconfig given in option talosconfig does not exist; pass the path of the cell's "
                    "decrypted talosconfig, or omit it for maintenance-mode calls",
                    code='NotFound', kind='config')
            if check_version:
                self._check_version()
        except TalosctlError as e:
            if fail_on_error:
                module.fail_json(**e.to_result())
            raise

    def configure(self, params, talosconfig=None, talos_version=None, timeout=None, retries=None, retry_delay=None):
        """Settings from the module params (TALOSCTL_COMMON_ARGS); keyword arguments override them."""
        def pick(value, name, default):
            if value is not None:
                return value
            got = params.get(name)
            return default if got is None else got
        self.talosconfig = talosconfig or params.get('talosconfig')
        self.talos_version = talos_version or params.get('talos_version') or 'v1.13.9'
        self.timeout = timeout or params.get('timeout') or 300
        self.retries = pick(retries, 'retries', 10)
        self.retry_delay = pick(retry_delay, 'retry_delay', 2.0)
        self.retry_deadline = pick(None, 'retry_deadline', 300)
        self.probe_timeout = pick(None, 'probe_timeout', 10)
        self.calls = []
        self.last_attempts = 0
        self.warnings = []
        self.client_version = None

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

    def check_version(self):
        """The client version (``v1.13.9``) after checking it against talos_version; raises TalosctlError.

        The constructor does this unless ``check_version=False`` (the apply preflight asks it itself).
        """
        self._check_version()
        return self.client_version

    def _check_version(self):
        want = parse_version(self.talos_version)
        if want is None:
            raise TalosctlError(
                "talos_version %r is not a Talos version; use the form vX.Y.Z such as v1.13.9" % self.talos_version,
                code='InvalidArgument', kind='config')
        try:
            rc, out, err = self._exec(['version', '--client', '--short'], self.timeout)
        except _ProcessTimeout:
            raise TalosctlError("`talosctl version --client` (%s) did not finish within %s seconds; the binary is "
                                "broken: install talosctl %s" % (self.path, self.timeout, self.talos_version),
                                code='Timeout', kind='timeout')
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
        """Run talosctl *argv*; (rc, stdout, stderr) unredacted. Raises _ProcessTimeout after *timeout* s."""
        full = [self.path] + list(argv)
        started = time.time()
        try:
            # AnsibleModule.run_command has no timeout; a hung talosctl must not hang the play.
            proc = subprocess.run(  # pylint: disable=ansible-bad-function
                full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            self.calls.append(dict(argv=' '.join(self.shown(argv)), rc=None, seconds=round(time.time() - started, 3)))
            raise _ProcessTimeout()
        except OSError as e:
            raise TalosctlError("cannot execute %s: %s; install talosctl %s or fix talosctl_path"
                                % (self.path, e, self.talos_version), code='NotFound', kind='binary')
        out = proc.stdout.decode('utf-8', 'replace')
        err = proc.stderr.decode('utf-8', 'replace')
        self.calls.append(dict(argv=' '.join(self.shown(argv)), rc=proc.returncode, seconds=round(time.time() - started, 3)))
        return proc.returncode, out, err

    def shown(self, argv):
        """*argv* as it may be shown (list): ``talosctl``, paths replaced by what they are, secrets redacted."""
        labels = path_labels(argv)
        out = ['talosctl']
        for a in argv:
            bare = a[1:] if a.startswith('@') else a
            out.append(labels[bare] if bare in labels else redact(a))
        return out

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

    def transient(self, stderr, retry_codes=()):
        """Whether a failure with this stderr is worth another attempt (the retry policy)."""
        kind = classify(stderr)
        if kind in PERMANENT_KINDS:
            return False
        if kind in TRANSIENT_KINDS:
            return True
        codes = set(TRANSIENT_CODES) | set(retry_codes)
        return any(e['code'] in codes for e in parse_rpc_errors(stderr))

    def run(self, args, nodes=None, endpoints=None, insecure=False, retry_codes=(), check=True,
            timeout=None, talosconfig=None, retries=None, deadline=None, retry_if=None, probe=False):
        """Run talosctl under the retry policy; returns (rc, stdout, stderr), redacted.

        Transient failures (see ``transient``; *retry_codes* adds codes such as ``FailedPrecondition``)
        are retried with backoff, at most *retries* times (default ``retries``), no new attempt
        after *deadline* seconds (default ``retry_deadline``); *retry_if(rc, out, err)* may veto a
        retry. A process that runs longer than *timeout* is stopped and raises TalosctlError
        (code ``Timeout``), never retried. ``probe=True`` bounds every attempt by what is left of
        *deadline* and words a timeout as "the Talos API did not answer". With ``check=True`` a
        non-zero exit raises TalosctlError.
        """
        argv = self.build_argv(args, nodes=nodes, endpoints=endpoints, insecure=insecure, talosconfig=talosconfig)
        timeout = timeout or self.timeout
        retries = self.retries if retries is None else retries
        deadline = self.retry_deadline if deadline is None else deadline
        started = time.monotonic()
        attempt = 0
        while True:
            self.last_attempts = attempt + 1
            limit = timeout
            if probe:
                limit = min(timeout, max(0.1, deadline - (time.monotonic() - started)))
            try:
                rc, out, err = self._exec(argv, limit)
            except _ProcessTimeout:
                raise self.timeout_error(args, argv, nodes, deadline if probe else limit, probe=probe)
            if rc == 0:
                return rc, redact(out), redact(err)
            if attempt < retries and self.transient(err, retry_codes) and (retry_if is None or retry_if(rc, out, err)):
                pause = self.backoff(attempt)
                if time.monotonic() - started + pause < deadline:
                    time.sleep(pause)
                    attempt += 1
                    continue
            if not check:
                labels = path_labels(argv)
                return rc, redact(scrub(out, labels)), redact(scrub(err, labels))
            raise self.error(args, rc, out, err, nodes=nodes, attempts=attempt + 1, argv=argv)

    def probe(self, args, node, insecure=False):
        """One reachability/state question to *node* (its own endpoint): (rc, stdout, stderr).

        Transient refusals are retried at most PROBE_RETRIES times; all attempts together finish
        within ``probe_timeout`` seconds. Raises TalosctlError (kind ``timeout``) when the node did
        not answer in that time.
        """
        return self.run(args, nodes=[node], endpoints=[node], insecure=insecure, check=False,
                        timeout=self.probe_timeout, retries=PROBE_RETRIES, deadline=self.probe_timeout, probe=True)

    def backoff(self, attempt):
        """Seconds to wait before retry number *attempt* + 1: ``retry_delay`` doubled per attempt, capped."""
        return min(MAX_BACKOFF, self.retry_delay * (2 ** attempt))

    def timeout_error(self, args, argv, nodes, seconds, probe=False):
        """TalosctlError for a talosctl process stopped after *seconds*: a timeout, worded as one."""
        cmd = command_words(args)
        node = nodes[0] if nodes and len(nodes) == 1 else None
        where = ' on node %s' % node if node else (' on nodes %s' % ', '.join(nodes) if nodes else '')
        secs = ('%g' % seconds) if isinstance(seconds, float) else str(seconds)
        if probe:
            msg = ("the Talos API of node %s did not answer `talosctl %s` within %s seconds (probe_timeout): the "
                   "node is down, still booting or cut off; check that it is powered on, has its address and that "
                   "port 50000 is reachable from the controller" % (node, cmd, secs))
        else:
            msg = ("talosctl %s%s did not finish within %s seconds (option timeout) and was stopped; the node did "
                   "not complete the request in time: look at what it is doing (`talosctl -n %s dmesg`, "
                   "`talosctl -n %s service`) and rerun, or raise timeout"
                   % (cmd, where, secs, node or '<node>', node or '<node>'))
        return TalosctlError(msg, code='Timeout', node=node, argv=self.shown(argv), kind='timeout')

    def error(self, args, rc, out, err, nodes=None, attempts=1, argv=None):
        """Build the TalosctlError for a failed call (message names node, step, cause and fix)."""
        labels = path_labels(argv if argv is not None else args)
        err = scrub(err, labels)
        out = scrub(out, labels)
        errors = parse_rpc_errors(err)
        first = errors[0] if errors else dict(node=None, code=None, desc=None)
        kind = classify(err)
        node = first['node']
        if node and ':' in node:
            node = node.split(':', 1)[0]
        if not node:
            m = _NODE_IN_TEXT_RE.search(err or '')
            node = m.group(1) if m and m.group(1) != '127.0.0.1' else (nodes[0] if nodes and len(nodes) == 1 else None)
        cmd = command_words(args)
        red = redact((err or out or '').strip())
        last = red.splitlines()[-1] if red else ''
        where = ' on node %s' % node if node else ''
        after = ' after %d attempts' % attempts if attempts > 1 else ''
        code = first['code']
        desc = redact(first['desc']) if first['desc'] else None
        if kind == 'usage':
            msg = ("talosctl rejected the command line of `talosctl %s`: %s; this usually means the talosctl binary "
                   "is not %s (client %s): install talosctl %s"
                   % (cmd, red.splitlines()[0] if red else '', self.talos_version, self.client_version or 'unknown',
                      self.talos_version))
            code = code or 'Usage'
        elif kind == 'no_endpoints':
            msg = ("talosctl %s failed: failed to determine endpoints; the talosconfig has no endpoints: set them "
                   "with `talosctl --talosconfig FILE config endpoint <control-plane IPs>` (never the VIP)" % cmd)
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
            msg = ("talosctl %s%s: the node's Talos API does not answer (%s)%s; check that the machine is powered "
                   "on, has its address and that port 50000 is reachable from the controller"
                   % (cmd, where, dial_failure(err) or desc or last, after))
            code = code or 'Unavailable'
        elif kind == 'node_service':
            msg = ("talosctl %s%s: the node answered, but a service it asked on its own behalf refused the "
                   "connection (%s)%s; that service is not running yet on the node"
                   % (cmd, where, dial_failure(err), after))
        elif kind == 'reset':
            msg = ("talosctl %s%s: the connection to the node was reset (%s)%s; the node is probably rebooting: "
                   "rerun when it is up" % (cmd, where, desc or last, after))
        elif kind == 'deadline':
            msg = ("talosctl %s%s: the request ran into its deadline (%s)%s; the node answered but did not finish in "
                   "time (busy or still starting): rerun, or raise retries/retry_deadline"
                   % (cmd, where, desc or last, after))
            code = code or 'DeadlineExceeded'
        elif code:
            msg = "talosctl %s%s failed%s: rpc error %s: %s" % (cmd, where, after, code, desc)
            if code == 'FailedPrecondition':
                msg += '; the node is not ready for this yet (still installing, rebooting or time not in sync): ' \
                       'retry later or raise retries/retry_deadline'
            elif code == 'InvalidArgument' and 'v1alpha1' in (first['desc'] or ''):
                msg += '; the file is not a complete machine configuration: apply the full per-node config, ' \
                       'not a bare patch'
        else:
            msg = "talosctl %s%s failed (rc=%s): %s" % (cmd, where, rc, red)
        return TalosctlError(msg, code=code, desc=desc, node=node, rc=rc, stderr=redact(err),
                             argv=self.shown(argv if argv is not None else args), kind=kind)

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
        return self.parse_objects(out, args, node)

    @staticmethod
    def parse_objects(out, args, node):
        """The objects of a ``get -o json`` stdout (TalosctlError when it is not a JSON object stream)."""
        try:
            return parse_json_stream(out)
        except ValueError as e:
            raise TalosctlError("cannot parse the JSON stream of `talosctl %s` from node %s: %s"
                                % (command_words(args), node, e), code='Unknown', node=node)

    def node_state(self, ip):
        """Return ``maintenance``, ``configured`` or ``unreachable`` for node *ip* (see node_details)."""
        return self.node_details(ip)['state']

    def node_details(self, ip):
        """What node *ip* is: dict(state, stage, ready, machine_status[, error]).

        ``state`` is ``configured``, ``maintenance`` or ``unreachable`` (its Talos API did not answer
        within probe_timeout; ``error`` says how it failed). mTLS ``get machinestatus`` with the
        talosconfig first (success: configured); on a TLS failure or without a talosconfig the
        maintenance API (``get machinestatus --insecure``). Every call is a probe (bounded by
        probe_timeout). Raises TalosctlError when mTLS fails with x509 and the node is not in
        maintenance either (it belongs to another cluster or the talosconfig is wrong).
        """
        args = ['get', 'machinestatus', '-o', 'json']
        mtls_error = None
        if self.talosconfig:
            rc, out, err = self.probe_answer(args, ip)
            if rc is None:
                return _unreachable(err, why=err)
            if rc == 0:
                spec = _machinestatus_spec(out)
                return dict(state='configured', stage=spec.get('stage'), ready=(spec.get('status') or {}).get('ready'),
                            machine_status=spec or None)
            kind = classify(err)
            if kind in TRANSIENT_KINDS:
                return _unreachable(err)
            if kind not in ('x509', 'tls_required'):
                raise self.error(args, rc, out, err, nodes=[ip])
            mtls_error = (rc, out, err)
        rc, out, err = self.probe_answer(args, ip, insecure=True)
        if rc is None:
            return _unreachable(err, why=err)
        if rc == 0:
            spec = _machinestatus_spec(out)
            stage = spec.get('stage')
            ready = (spec.get('status') or {}).get('ready')
            if stage == 'maintenance':
                return dict(state='maintenance', stage=stage, ready=ready, machine_status=spec)
            if mtls_error:
                raise self.error(args, *mtls_error, nodes=[ip])
            return dict(state='configured', stage=stage, ready=ready, machine_status=spec)
        kind = classify(err)
        if kind in TRANSIENT_KINDS:
            return _unreachable(err)
        if kind == 'tls_required':
            if mtls_error:
                # configured node that does not trust our talosconfig
                raise self.error(args, *mtls_error, nodes=[ip])
            return dict(state='configured', stage=None, ready=None, machine_status=None)
        raise self.error(args, rc, out, err, nodes=[ip])

    def probe_answer(self, args, node, insecure=False):
        """probe(), except that a probe without an answer in time returns (None, '', why) instead of raising."""
        try:
            return self.probe(args, node, insecure=insecure)
        except TalosctlError as e:
            if e.kind != 'timeout':
                raise
            return None, '', 'no answer within %s seconds (probe_timeout)' % self.probe_timeout

    def probe_nodes(self, ips, probe=None):
        """Run *probe(ip)* (default node_details) for every node at once; (results, errors) by IP.

        One thread per node (at most 32), so N unreachable nodes cost one probe_timeout, not N.
        """
        probe = probe or self.node_details
        results, errors = {}, {}
        if not ips:
            return results, errors

        def one(ip):
            try:
                return ip, probe(ip), None
            except TalosctlError as e:
                return ip, None, e
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(ips)))) as pool:
            for ip, found, exc in pool.map(one, ips):
                if exc is not None:
                    errors[ip] = exc
                else:
                    results[ip] = found
        return results, errors


def _machinestatus_spec(out):
    """The ``spec`` of the first object of a ``get machinestatus -o json`` stream ({} if unparsable)."""
    try:
        objs = parse_json_stream(out)
    except ValueError:
        objs = []
    return (objs[0].get('spec') or {}) if objs else {}


def unreachable_reason(err):
    """Short reason why a node's Talos API did not answer, from a talosctl stderr."""
    errors = parse_rpc_errors(err)
    text = (err or '').strip()
    why = dial_failure(err) or ('%s: %s' % (errors[0]['code'], errors[0]['desc']) if errors else None) \
        or (text.splitlines()[-1] if text else 'no answer')
    return redact(why)


def _unreachable(err, why=None):
    """node_details result for a node whose Talos API did not answer."""
    return dict(state='unreachable', stage=None, ready=None, machine_status=None, error=why or unreachable_reason(err))
