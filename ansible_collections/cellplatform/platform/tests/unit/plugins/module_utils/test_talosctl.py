# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of module_utils/talosctl.py (the one talosctl runner).

Fake ``talosctl`` executables are small shell scripts written per test into tmp_path; they
print exactly what the brief documents for talosctl v1.13.9 (version output, wrapped gRPC
errors, JSON object streams) so every branch of the runner is exercised without a node.
"""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from ansible_collections.cellplatform.platform.plugins.module_utils import talosctl as T

PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB3k0S0m3s3cr3tK3yM4t3r14l\n-----END EC PRIVATE KEY-----"
B64_PEM = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUIzazBTMG0zczNjcjN0SzN5TTR0M3IxNGwK"


class FakeModule(object):
    def __init__(self, **params):
        self.params = dict(talosctl_path=None, talosconfig=None, talos_version="v1.13.9", timeout=30,
                           retries=3, retry_delay=0.01, retry_deadline=300, probe_timeout=10)
        self.params.update(params)
        self.warnings = []

    def fail_json(self, **kw):
        raise AssertionError("fail_json: %s" % kw)

    def warn(self, msg):
        self.warnings.append(msg)


def fake_talosctl(tmp_path, body, version="v1.13.9"):
    """A talosctl stand-in: answers `version --client --short` like v1.13.9, else runs *body*."""
    path = tmp_path / "talosctl"
    path.write_text("#!/bin/sh\n"
                    "if [ \"$1 $2 $3\" = \"version --client --short\" ]; then printf 'Client:\\nTalos %s\\n'; exit 0; fi\n"
                    "echo \"$@\" >> \"%s\"\n%s\n" % (version, tmp_path / "argv.log", body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def argv_log(tmp_path):
    p = tmp_path / "argv.log"
    return p.read_text().splitlines() if p.exists() else []


def make(tmp_path, body="exit 0", version="v1.13.9", **params):
    path = fake_talosctl(tmp_path, body, version)
    return T.Talosctl(FakeModule(talosctl_path=path, **params), fail_on_error=False)


WRAPPED = ("error executing bootstrap: 1 error occurred:\n"
           "\t* 192.168.100.51: rpc error: code = AlreadyExists desc = etcd data directory is not empty\n\n\n")


# --- parsing ----------------------------------------------------------------------------
def test_parse_rpc_errors_wrapped_and_bare():
    assert T.parse_rpc_errors(WRAPPED) == [dict(node="192.168.100.51", code="AlreadyExists",
                                                desc="etcd data directory is not empty")]
    bare = "error executing bootstrap: rpc error: code = FailedPrecondition desc = time is not in sync yet"
    assert T.parse_rpc_errors(bare) == [dict(node=None, code="FailedPrecondition", desc="time is not in sync yet")]
    two = ("error: 2 errors occurred:\n\t* 10.0.0.1: rpc error: code = Unavailable desc = a\n"
           "\t* 10.0.0.2: rpc error: code = NotFound desc = b\n")
    got = [(e["node"], e["code"]) for e in T.parse_rpc_errors(two)]
    assert got == [("10.0.0.1", "Unavailable"), ("10.0.0.2", "NotFound")]
    assert T.parse_rpc_errors("plain failure") == []


@pytest.mark.parametrize("text,kind", [
    ('rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: '
     'tls: failed to verify certificate: x509: certificate signed by unknown authority"', "x509"),
    ('desc = "transport: authentication handshake failed: remote error: tls: certificate required"', "tls_required"),
    ('desc = "transport: Error while dialing: dial tcp 192.168.100.52:50000: connect: connection refused"',
     "unreachable"),
    ('desc = "transport: Error while dialing: dial tcp 192.168.100.52:50000: i/o timeout"', "unreachable"),
    # the node answered; its own etcd client was refused (etcd members before bootstrap): not unreachable
    ('error getting members: 1 error occurred:\n\t* 192.168.100.51: rpc error: code = Unavailable desc = connection '
     'error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:2379: connect: connection refused"',
     "node_service"),
    ("rpc error: code = DeadlineExceeded desc = context deadline exceeded", "deadline"),
    ('rpc error: code = Unavailable desc = error reading from server: read tcp 10.0.0.1:50000: connection reset by peer',
     "reset"),
    ("failed to determine endpoints", "no_endpoints"),
    ("unknown flag: --wait-timeout\n\nUsage:", "usage"),
    ("unknown shorthand flag: 'n' in -n", "usage"),
    ('unknown command "bootstrap" for "talosctl"', "usage"),
    ("rpc error: code = AlreadyExists desc = etcd data directory is not empty", None),
])
def test_classify(text, kind):
    assert T.classify(text) == kind


def test_parse_json_stream_is_not_an_array():
    text = '{\n    "node": "a",\n    "spec": {"x": 1}\n}\n{\n    "node": "b",\n    "spec": "worker"\n}\n'
    assert [o["node"] for o in T.parse_json_stream(text)] == ["a", "b"]
    assert T.parse_json_stream("") == [] and T.parse_json_stream("\n  \n") == []
    with pytest.raises(ValueError):
        T.parse_json_stream('{"a": 1} {broken')


def test_parse_version_and_dry_run():
    assert T.parse_version("Client:\nTalos v1.13.9\n") == (1, 13, 9)
    assert T.parse_version("Client:\n\tTag:         v1.14.0-alpha.1\n") == (1, 14, 0)
    assert T.parse_version("no version") is None
    nochange = ("Dry run summary:\nApplied configuration without a reboot (skipped in dry-run).\n"
                "Config diff:\n\nNo changes.\n")
    assert T.parse_dry_run(nochange) == dict(changed=False, reboot=False, diff="")
    change = ("Dry run summary:\nApplied configuration with a reboot (skipped in dry-run).\nConfig diff:\n\n"
              "--- a\n+++ b\n@@ -1 +1 @@\n-hostname: a\n+hostname: b\n")
    got = T.parse_dry_run(change)
    assert got["changed"] and got["reboot"] and "+hostname: b" in got["diff"]
    assert T.parse_dry_run("Applied configuration without a reboot") is None


# --- redaction --------------------------------------------------------------------------
def test_redact_pem_base64_fields_and_tokens():
    text = "\n".join([
        PEM,
        "    crt: " + B64_PEM,
        "+    key: c2VjcmV0LWtleS1tYXRlcmlhbA==",
        '  "token": "abcdef.0123456789abcdef",',
        "secretboxEncryptionSecret: z5tOBzQ3Tf9aYlcYBsLJ4BvYpXZW1CMqkpBlxaEo+Hc=",
        "client-key-data: QUJDREVGR0hJSktMTU5PUA==",
        "hostname: cp-1",
        "bootstrap token abcdef.0123456789abcdef in prose",
    ])
    out = T.redact(text)
    for secret in ("MHcCAQEEIB3k0S0m3s3cr3tK3yM4t3r14l", B64_PEM, "c2VjcmV0LWtleS1tYXRlcmlhbA==",
                   "0123456789abcdef", "z5tOBzQ3Tf9aYlcYBsLJ4BvYpXZW1CMqkpBlxaEo+Hc=", "QUJDREVGR0hJSktMTU5PUA=="):
        assert secret not in out
    assert "-----BEGIN EC PRIVATE KEY-----<redacted>-----END EC PRIVATE KEY-----" in out
    assert "hostname: cp-1" in out and "+    key: <redacted>" in out
    assert T.redact(None) is None and T.redact("") == ""


def test_redact_block_scalars():
    text = "machine:\n  ca:\n    key: |\n      c2VjcmV0MQ==\n      c2VjcmV0Mg==\n  type: worker\n+  token: >-\n+    dG9rZW4=\nend: 1"
    out = T.redact(text)
    assert "c2VjcmV0MQ==" not in out and "c2VjcmV0Mg==" not in out and "dG9rZW4=" not in out
    assert "  type: worker" in out and "end: 1" in out and "key: | <redacted>" in out


# --- binary lookup and version pinning ------------------------------------------------------
def test_missing_binary_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(T.TalosctlError) as e:
        T.Talosctl(FakeModule(), fail_on_error=False)
    assert e.value.message.startswith("talosctl not found; install talosctl v1.13.9")
    with pytest.raises(T.TalosctlError) as e:
        T.Talosctl(FakeModule(talosctl_path=str(tmp_path / "nope")), fail_on_error=False)
    assert "talosctl_path" in e.value.message and "is not an executable file" in e.value.message


def test_binary_found_on_path(tmp_path, monkeypatch):
    fake_talosctl(tmp_path, "exit 0")
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    t = T.Talosctl(FakeModule(), fail_on_error=False)
    assert t.path == str(tmp_path / "talosctl") and t.client_version == "v1.13.9"


def test_minor_mismatch_fails_and_patch_mismatch_warns(tmp_path):
    with pytest.raises(T.TalosctlError) as e:
        make(tmp_path, version="v1.14.2")
    assert e.value.code == "VersionMismatch"
    assert "is v1.14.2 but the cell pins Talos v1.13.9" in e.value.message
    assert "install talosctl v1.13.9" in e.value.message
    t = make(tmp_path, version="v1.13.3")
    assert t.module.warnings and "v1.13.3" in t.module.warnings[0]


def test_fail_on_error_uses_fail_json(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AssertionError) as e:
        T.Talosctl(FakeModule())
    assert "talosctl not found" in str(e.value)


def test_bad_talos_version_and_missing_talosconfig(tmp_path):
    with pytest.raises(T.TalosctlError) as e:
        make(tmp_path, talos_version="latest")
    assert "talos_version 'latest'" in e.value.message and "vX.Y.Z" in e.value.message
    with pytest.raises(T.TalosctlError) as e:
        make(tmp_path, talosconfig=str(tmp_path / "missing"))
    assert "talosconfig" in e.value.message and "does not exist" in e.value.message


# --- argv ----------------------------------------------------------------------------------
def test_build_argv_node_flags_only_where_accepted(tmp_path):
    tc = tmp_path / "talosconfig"
    tc.write_text("context: a\n")
    t = make(tmp_path, talosconfig=str(tc))
    assert t.build_argv(["gen", "secrets", "-o", "s.yaml"]) == ["gen", "secrets", "-o", "s.yaml"]
    assert t.build_argv(["config", "endpoint", "1.2.3.4"]) == ["config", "endpoint", "1.2.3.4", "--talosconfig",
                                                               str(tc)]
    assert t.build_argv(["bootstrap"], nodes=["10.0.0.1"], endpoints=["10.0.0.1"]) == [
        "bootstrap", "--talosconfig", str(tc), "--nodes", "10.0.0.1", "--endpoints", "10.0.0.1"]
    # the maintenance API takes no client certificate
    assert t.build_argv(["apply-config", "-f", "x"], nodes=["10.0.0.1"], insecure=True) == [
        "apply-config", "-f", "x", "--nodes", "10.0.0.1", "--insecure"]
    with pytest.raises(T.TalosctlError):
        t.build_argv(["gen", "secrets"], nodes=["10.0.0.1"])


# --- run: errors, retries, timeouts ----------------------------------------------------------
def test_run_maps_already_exists(tmp_path):
    t = make(tmp_path, "printf '%s' >&2; exit 1" % WRAPPED.replace("\n", "\\n").replace("\t", "\\t"))
    with pytest.raises(T.TalosctlError) as e:
        t.run(["bootstrap"], nodes=["192.168.100.51"], endpoints=["192.168.100.51"])
    assert (e.value.code, e.value.node, e.value.rc) == ("AlreadyExists", "192.168.100.51", 1)
    assert e.value.desc == "etcd data directory is not empty"
    rc, out, err = t.run(["bootstrap"], nodes=["192.168.100.51"], check=False)
    assert rc == 1 and "AlreadyExists" in err


def test_run_retries_transient_then_succeeds(tmp_path):
    counter = tmp_path / "n"
    body = ('n=$(cat %s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s\n'
            'if [ $n -lt 3 ]; then echo "error executing bootstrap: 1 error occurred:"; '
            'printf "\\t* 10.0.0.1: rpc error: code = FailedPrecondition desc = bootstrap is not available yet\\n" >&2;'
            ' exit 1; fi\necho ok' % (counter, counter))
    t = make(tmp_path, body)
    start = time.time()
    rc, out, err = t.run(["bootstrap"], nodes=["10.0.0.1"], retry_codes=("FailedPrecondition",))
    assert rc == 0 and out.strip() == "ok" and counter.read_text().strip() == "3"
    assert time.time() - start >= 0.01 + 0.02  # backoff doubled between attempts


def test_run_gives_up_after_retries_and_does_not_retry_other_codes(tmp_path):
    body = ('printf "error: 1 error occurred:\\n\\t* 10.0.0.1: rpc error: code = FailedPrecondition desc = '
            'time is not in sync yet\\n" >&2; exit 1')
    t = make(tmp_path, body, retries=2)
    with pytest.raises(T.TalosctlError) as e:
        t.run(["bootstrap"], nodes=["10.0.0.1"], retry_codes=("FailedPrecondition",))
    assert "after 3 attempts" in e.value.message and "time is not in sync yet" in e.value.message
    assert len([a for a in argv_log(tmp_path) if a.startswith("bootstrap")]) == 3
    (tmp_path / "argv.log").unlink()
    with pytest.raises(T.TalosctlError):
        t.run(["bootstrap"], nodes=["10.0.0.1"], retry_codes=("Unavailable",))
    assert len(argv_log(tmp_path)) == 1


def test_x509_is_never_retried_and_explained(tmp_path):
    body = ('printf "error getting version: rpc error: code = Unavailable desc = connection error: desc = '
            '\\"transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate '
            'signed by unknown authority\\"\\n" >&2; exit 1')
    t = make(tmp_path, body)
    with pytest.raises(T.TalosctlError) as e:
        t.run(["version"], nodes=["10.0.0.9"], retry_codes=("Unavailable",))
    assert len(argv_log(tmp_path)) == 1
    assert "node belongs to another cluster or the talosconfig/secrets bundle is wrong" in e.value.message
    assert "10.0.0.9" in e.value.message


@pytest.mark.parametrize("stderr,needle", [
    ("failed to determine endpoints", "config endpoint"),
    ("unknown flag: --wait-timeout", "install talosctl v1.13.9"),
    ('rpc error: code = Unavailable desc = connection error: desc = \\"transport: Error while dialing: dial tcp '
     '10.0.0.7:50000: connect: connection refused\\"', "Talos API does not answer (connection refused on port 50000)"),
    ("rpc error: code = InvalidArgument desc = the applied machine configuration doesn't contain v1alpha1 config",
     "not a bare patch"),
])
def test_known_errors_are_mapped(tmp_path, stderr, needle):
    t = make(tmp_path, 'printf "%s\\n" >&2; exit 1' % stderr)
    with pytest.raises(T.TalosctlError) as e:
        t.run(["health"], nodes=["10.0.0.7"])
    assert needle in e.value.message


def test_transient_failures_are_retried_by_default(tmp_path):
    """One retry policy: Unavailable/DeadlineExceeded/refused/reset are retried without the caller asking."""
    body = 'printf "rpc error: code = DeadlineExceeded desc = context deadline exceeded\\n" >&2; exit 1'
    t = make(tmp_path, body, retries=2)
    with pytest.raises(T.TalosctlError) as e:
        t.run(["version"], nodes=["10.0.0.1"])
    assert len(argv_log(tmp_path)) == 3 and e.value.kind == "deadline"
    assert "after 3 attempts" in e.value.message and "deadline" in e.value.message
    assert "powered on" not in e.value.message   # the node answered: not worded as "node down"
    (tmp_path / "argv.log").unlink()
    with pytest.raises(T.TalosctlError):
        t.run(["version"], nodes=["10.0.0.1"], retries=0)
    assert len(argv_log(tmp_path)) == 1


def test_retry_deadline_bounds_the_retries(tmp_path):
    body = ('printf "rpc error: code = Unavailable desc = connection error: desc = \\"transport: Error while dialing: '
            'dial tcp 10.0.0.1:50000: connect: connection refused\\"\\n" >&2; exit 1')
    t = make(tmp_path, body, retries=50, retry_delay=0.2, retry_deadline=1)
    start = time.time()
    with pytest.raises(T.TalosctlError) as e:
        t.run(["apply-config", "-f", "x"], nodes=["10.0.0.1"])
    assert time.time() - start < 1.5
    assert 2 <= len(argv_log(tmp_path)) <= 4 and e.value.kind == "unreachable"


def test_probe_is_bounded_by_probe_timeout(tmp_path):
    t = make(tmp_path, "sleep 5", probe_timeout=1)
    start = time.time()
    with pytest.raises(T.TalosctlError) as e:
        t.probe(["get", "machinestatus", "-o", "json"], "10.0.0.3")
    assert time.time() - start < 2.5
    assert e.value.kind == "timeout" and e.value.node == "10.0.0.3"
    assert "did not answer `talosctl get machinestatus` within 1 seconds (probe_timeout)" in e.value.message


def test_probe_retries_a_refusal_at_most_twice(tmp_path):
    body = ('printf "rpc error: code = Unavailable desc = connection error: desc = \\"transport: Error while dialing: '
            'dial tcp 10.0.0.1:50000: connect: connection refused\\"\\n" >&2; exit 1')
    t = make(tmp_path, body, retries=10, probe_timeout=5)
    rc, _out, err = t.probe(["get", "machinestatus", "-o", "json"], "10.0.0.1")
    assert rc == 1 and "connection refused" in err
    assert len(argv_log(tmp_path)) == 1 + T.PROBE_RETRIES


def test_a_transient_refusal_of_a_probe_is_survived(tmp_path):
    counter = tmp_path / "n"
    body = ('n=$(cat %s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s\n'
            'if [ $n -lt 2 ]; then printf "rpc error: code = Unavailable desc = connection error: desc = '
            '\\"transport: Error while dialing: dial tcp 10.0.0.1:50000: connect: connection refused\\"\\n" >&2; '
            'exit 1; fi\nprintf \'{"node": "10.0.0.1", "spec": {"stage": "maintenance", "status": {"ready": false}}}\'\n'
            % (counter, counter))
    t = make(tmp_path, body)
    assert t.node_state("10.0.0.1") == "maintenance"
    assert counter.read_text().strip() == "2"


def test_timeout_is_a_clear_error(tmp_path):
    t = make(tmp_path, "sleep 5", timeout=30)
    start = time.time()
    with pytest.raises(T.TalosctlError) as e:
        t.run(["health"], nodes=["10.0.0.1"], timeout=0.5)
    assert time.time() - start < 4
    assert e.value.code == "Timeout" and "talosctl health on node 10.0.0.1 did not finish within 0.5 seconds" \
        in e.value.message and "option timeout" in e.value.message
    # a timeout is worded as one: what waited and how long, not "power on / port 50000"
    assert "powered on" not in e.value.message and "50000" not in e.value.message
    assert len(argv_log(tmp_path)) == 1   # a process that hung is not started again


def test_errors_never_show_private_paths(tmp_path):
    work = tmp_path / "work" / ".talos-kubeconfig-x1y2"
    secret_path = str(work / "kubeconfig")
    tc = tmp_path / "work" / "talosconfig"
    tc.parent.mkdir(parents=True, exist_ok=True)
    tc.write_text("context: a\n")
    body = 'printf "error copying: open %s: permission denied\\n" >&2; exit 1' % secret_path
    t = make(tmp_path, body, talosconfig=str(tc))
    with pytest.raises(T.TalosctlError) as e:
        t.run(["kubeconfig", secret_path, "--force"], nodes=["10.0.0.1"], endpoints=["10.0.0.1"])
    shown = json.dumps(e.value.to_result())
    assert str(tmp_path) not in shown
    assert "talosctl kubeconfig on node 10.0.0.1" in e.value.message
    assert "open <kubeconfig>: permission denied" in e.value.message
    assert e.value.to_result()["cmd"].startswith("talosctl kubeconfig <kubeconfig> --force --talosconfig <talosconfig>")
    rc, _out, err = t.run(["apply-config", "--file", secret_path], nodes=["10.0.0.1"], check=False)
    assert rc == 1 and str(tmp_path) not in err


def test_output_and_errors_are_redacted(tmp_path):
    t = make(tmp_path, "printf 'key: %s\\n'; printf 'token: abcdef.0123456789abcdef\\n' >&2; exit 1" % B64_PEM)
    rc, out, err = t.run(["get", "x"], check=False)
    assert B64_PEM not in out and "0123456789abcdef" not in err
    with pytest.raises(T.TalosctlError) as e:
        t.run(["get", "x"])
    assert "0123456789abcdef" not in e.value.message + e.value.stderr


def test_get_parses_stream(tmp_path):
    body = "printf '{\\n    \"node\": \"10.0.0.1\",\\n    \"spec\": {\"stage\": \"running\"}\\n}\\n'"
    t = make(tmp_path, body)
    assert t.get("machinestatus", "10.0.0.1") == [{"node": "10.0.0.1", "spec": {"stage": "running"}}]
    assert argv_log(tmp_path)[-1] == "get machinestatus -o json --nodes 10.0.0.1 --endpoints 10.0.0.1"


# --- node_state -----------------------------------------------------------------------------
REFUSED = ('rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
           'dial tcp 10.0.0.1:50000: connect: connection refused"')
X509 = ('rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: '
        'tls: failed to verify certificate: x509: certificate signed by unknown authority"')
TIMED_OUT = ('rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
             'dial tcp 10.0.0.1:50000: i/o timeout"')
CERT_REQUIRED = ('rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake '
                 'failed: remote error: tls: certificate required"')
STATE_SCRIPT = r'''
case "$*" in
  *--insecure*)
    case "$MODE" in
      maintenance) printf '{\n "node": "n", "spec": {"stage": "maintenance", "status": {"ready": false}}}\n'; exit 0;;
      down) echo '%(refused)s' >&2; exit 1;;
      *) echo '%(cert_required)s' >&2; exit 1;;
    esac;;
  *)
    case "$MODE" in
      configured) printf '{"node": "n", "spec": {"stage": "running", "status": {"ready": true}}}\n'; exit 0;;
      down) echo '%(timed_out)s' >&2; exit 1;;
      *) echo '%(x509)s' >&2; exit 1;;
    esac;;
esac
''' % dict(refused=REFUSED, cert_required=CERT_REQUIRED, x509=X509, timed_out=TIMED_OUT)


@pytest.mark.parametrize("mode,with_tc,expected", [
    ("maintenance", True, "maintenance"),
    ("maintenance", False, "maintenance"),
    ("configured", True, "configured"),
    ("other", False, "configured"),
    ("down", True, "unreachable"),
    ("down", False, "unreachable"),
])
def test_node_state(tmp_path, monkeypatch, mode, with_tc, expected):
    monkeypatch.setenv("MODE", mode)
    tc = tmp_path / "tc"
    tc.write_text("context: a\n")
    t = make(tmp_path, STATE_SCRIPT, talosconfig=str(tc) if with_tc else None)
    details = t.node_details("10.0.0.1")
    assert details["state"] == expected
    calls = argv_log(tmp_path)
    if with_tc:
        assert "--talosconfig" in calls[0] and "--insecure" not in calls[0]
    else:
        assert "--insecure" in calls[0] and all("--insecure" in c for c in calls)
    if mode == "down":
        # a refusal is retried (at most twice) within probe_timeout; the reason says what failed
        assert len(calls) == 1 + T.PROBE_RETRIES
        assert details["error"] == ("i/o timeout on port 50000" if with_tc else "connection refused on port 50000")
    else:
        assert len(calls) <= 2


def test_node_state_other_cluster_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("MODE", "other")
    tc = tmp_path / "tc"
    tc.write_text("context: a\n")
    t = make(tmp_path, STATE_SCRIPT, talosconfig=str(tc))
    with pytest.raises(T.TalosctlError) as e:
        t.node_state("10.0.0.1")
    assert "another cluster" in e.value.message


# --- day-2 output parsers ------------------------------------------------------------------------
ETCD_MEMBERS = (
    "NODE             ID                 HOSTNAME   PEER URLS                     CLIENT URLS                   LEARNER\n"
    "192.168.100.51   0ea30cf63edbc73c   cp-1       https://192.168.100.51:2380   https://192.168.100.51:2379   false\n"
    "192.168.100.51   02A745F01C7FADCD   cp-3       https://192.168.100.53:2380   https://192.168.100.53:2379   true\n")
# talosctl etcd status: tabwriter (padding 3); cells hold single spaces ("20 MB", "10 MB (50.00%)"), ERRORS may be empty
ETCD_STATUS = (
    "NODE             MEMBER             DB SIZE   IN USE             LEADER             RAFT INDEX   RAFT TERM   "
    "RAFT APPLIED INDEX   LEARNER   PROTOCOL   STORAGE   ERRORS\n"
    "192.168.100.51   0ea30cf63edbc73c   20 MB     10 MB (50.00%)     0ea30cf63edbc73c   1001         3           "
    "1001                 false     3.6.5      3.6.0     \n"
    "192.168.100.52   08ac61ae00c5b4f3   20 MB     10 MB (50.00%)     0000000000000000   998          3           "
    "998                  false     3.6.5      3.6.0     etcdserver: no leader, alarm NOSPACE\n")
VERSION_OUT = ("Client:\n\tTag:         v1.13.9\n\tSHA:         4a7f6f3b\nServer:\n\tNODE:        192.168.100.51\n"
               "\tTag:         v1.13.10\n\tSHA:         4a7f6f3b\n\tEnabled:     RBAC\n\tNODE:        192.168.100.52\n"
               "\tTag:         v1.13.9\n")


def test_parse_etcd_members():
    members = T.parse_etcd_members(ETCD_MEMBERS)
    assert [(m["id"], m["hostname"], m["learner"]) for m in members] == [
        ("0ea30cf63edbc73c", "cp-1", False), ("02a745f01c7fadcd", "cp-3", True)]
    assert members[0]["peer_urls"] == ["https://192.168.100.51:2380"] and members[0]["node"] == "192.168.100.51"
    assert T.parse_etcd_members("") == []


def test_parse_etcd_status_keeps_cells_with_spaces_together():
    rows = T.parse_etcd_status(ETCD_STATUS)
    assert rows[0] == dict(node="192.168.100.51", member="0ea30cf63edbc73c", leader="0ea30cf63edbc73c",
                           db_size="20 MB", in_use="10 MB (50.00%)", raft_index=1001, raft_term=3, learner=False,
                           errors="")
    assert rows[1]["leader"] == "0" * 16 and rows[1]["errors"] == "etcdserver: no leader, alarm NOSPACE"


def test_parse_server_versions_ignores_the_client_part():
    assert T.parse_server_versions(VERSION_OUT) == {"192.168.100.51": "v1.13.10", "192.168.100.52": "v1.13.9"}
    assert T.parse_server_versions("Client:\n\tTag:         v1.13.9\n") == {}


@pytest.mark.parametrize("image,expected", [
    ("factory.talos.dev/nocloud-installer/abc:v1.13.10", ("factory.talos.dev/nocloud-installer/abc", "v1.13.10")),
    ("registry:5000/talos/installer:v1.13.9@sha256:00ff", ("registry:5000/talos/installer", "v1.13.9")),
    ("registry:5000/talos/installer", ("registry:5000/talos/installer", "")),
    ("", ("", "")),
])
def test_image_version(image, expected):
    assert T.image_version(image) == expected
