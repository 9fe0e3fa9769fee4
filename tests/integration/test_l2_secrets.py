"""Linkerd identity lifecycle of l2_core_platform with the real community.crypto modules.

Runs the role's ``linkerd_certs.yml`` (the apply-mode certificate step) against a temporary
secrets directory of SOPS files (the real sops), as an apply run does, and checks:

* first run: trust anchor (ECDSA P-256, CN root.linkerd.cluster.local, CA) and issuer
  (ECDSA P-256, CN identity.linkerd.cluster.local, CA pathlen 0, signed by the anchor) are
  generated with the inventory lifetimes and stored only as SOPS files; plaintext stays in the
  0700 work directory with 0600 files;
* rerun: changed=0 and the four SOPS files are byte-identical (nothing regenerated);
* an issuer that expires within issuer_renew_before_days, or one not signed by the anchor, is
  re-issued; the anchor is never touched;
* half a pair fails closed (nothing regenerated);
* no private key appears in the -vvv output.

Run inside scripts/netns-run:
    scripts/netns-run python -m pytest tests/integration/test_l2_secrets.py -q
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_utils  # noqa: E402

pyrage = pytest.importorskip("pyrage")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

RECAP = re.compile(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
FILES = ("trust-anchor.crt", "trust-anchor.key", "issuer.crt", "issuer.key")
LIFETIMES = {"trust_anchor_lifetime_days": 3650, "issuer_lifetime_days": 365, "issuer_renew_before_days": 30}

PLAYBOOK = """\
- name: Linkerd identity (apply-mode step of l2_core_platform)
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ensure the trust anchor and issuer
      ansible.builtin.include_role:
        name: cellplatform.platform.l2_core_platform
        tasks_from: linkerd_certs.yml
"""


class Cell(object):
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.secrets = self.tmp / "secrets"
        self.secrets.mkdir()
        self.work = self.tmp / "work"
        ident = pyrage.x25519.Identity.generate()
        self.identity = self.tmp / "keys.txt"
        self.identity.write_text("# test identity\n%s\n" % ident)
        self.identity.chmod(0o600)
        self.recipient = str(ident.to_public())
        self.playbook = self.tmp / "certs.yml"
        self.playbook.write_text(PLAYBOOK)
        self.inventory = self.tmp / "inventory.yml"
        self.inventory.write_text(
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
            "      ansible_python_interpreter: %s\n" % sys.executable)

    def run(self, *args):
        # The part of the cell model (set by the preflight in a real run) this step reads.
        extra = {"cellplatform_cell": {
            "name": "cell",
            "work_dir": str(self.work),
            "plaintext_dir": str(self.work / "plaintext"),
            "secrets_dir": str(self.secrets),
            "age": {"identity": str(self.identity), "recipients": [self.recipient]},
            "linkerd": LIFETIMES,
        }}
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_PIPELINING="1", HOME=str(self.tmp))
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.inventory),
               "-e", json.dumps(extra), str(self.playbook)] + list(args)
        proc = subprocess.run(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
        return proc.returncode, proc.stdout

    def stored(self, name):
        return (self.secrets / ("linkerd-%s.sops" % name)).read_bytes()

    def plain(self, name):
        return sops_utils.decrypt_file(str(self.secrets / ("linkerd-%s.sops" % name)), str(self.identity))

    def cert(self, name):
        return x509.load_pem_x509_certificate(self.plain(name + ".crt"))

    def store(self, name, data):
        path = self.secrets / ("linkerd-%s.sops" % name)
        path.write_bytes(sops_utils.Sops(str(self.identity)).encrypt(data, [self.recipient], str(path)))


def recap(out):
    m = RECAP.search(out)
    assert m, out[-4000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups())))


def days_left(cert):
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).days


def make_issuer(anchor_cert, anchor_key, days):
    """An issuer signed by the given CA that expires in ``days`` days (PEM cert, PEM key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "identity.linkerd.cluster.local")]))
            .issuer_name(anchor_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(anchor_key.public_key()),
                           critical=False)
            .sign(anchor_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def assert_no_key_material(cell, out):
    for name in ("trust-anchor.key", "issuer.key"):
        pem = cell.plain(name).decode()
        body = "".join(pem.strip().splitlines()[1:-1])
        assert body[:40] not in out.replace("\n", "")
    assert "PRIVATE KEY" not in out


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    cell = Cell(tmp_path_factory.mktemp("l2certs"))
    rc, out = cell.run("-vvv")
    return cell, rc, out


def test_first_run_generates_anchor_and_issuer(lifecycle):
    cell, rc, out = lifecycle
    assert rc == 0, out[-5000:]
    assert recap(out)["changed"] > 0
    anchor, issuer = cell.cert("trust-anchor"), cell.cert("issuer")
    for cert in (anchor, issuer):
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"
    assert anchor.subject.rfc4514_string() == "CN=root.linkerd.cluster.local"
    assert anchor.issuer == anchor.subject
    bc = anchor.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert 3648 <= days_left(anchor) <= 3650
    assert issuer.subject.rfc4514_string() == "CN=identity.linkerd.cluster.local"
    assert issuer.issuer == anchor.subject
    bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    issuer.verify_directly_issued_by(anchor)
    assert 363 <= days_left(issuer) <= 365
    # the stored keys match the certificates
    for name, cert in (("trust-anchor", anchor), ("issuer", issuer)):
        key = serialization.load_pem_private_key(cell.plain(name + ".key"), None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_only_encrypted_files_in_secrets_dir_and_private_work_dir(lifecycle):
    cell, rc, out = lifecycle
    assert sorted(p.name for p in cell.secrets.iterdir()) == sorted("linkerd-%s.sops" % f for f in FILES)
    for f in FILES:
        assert sops_utils.recipients_of_file(str(cell.secrets / ("linkerd-%s.sops" % f))) == [cell.recipient]
        assert b"PRIVATE KEY" not in cell.stored(f) and b"BEGIN CERTIFICATE" not in cell.stored(f)
    linkerd_dir = cell.work / "plaintext" / "linkerd"
    assert linkerd_dir.stat().st_mode & 0o777 == 0o700
    for p in linkerd_dir.iterdir():
        assert p.stat().st_mode & 0o077 == 0, p


def test_verbose_output_has_no_key_material(lifecycle):
    cell, rc, out = lifecycle
    assert_no_key_material(cell, out)


def test_rerun_changes_nothing(lifecycle):
    cell, rc, out = lifecycle
    before = {f: cell.stored(f) for f in FILES}
    rc2, out2 = cell.run()
    assert rc2 == 0, out2[-5000:]
    assert recap(out2)["changed"] == 0, out2[-5000:]
    assert {f: cell.stored(f) for f in FILES} == before


def test_rerun_without_work_dir_regenerates_nothing(lifecycle):
    """A fresh controller (empty work dir) decrypts the stored pair instead of generating."""
    cell, rc, out = lifecycle
    before = {f: cell.stored(f) for f in FILES}
    for p in (cell.work / "plaintext" / "linkerd").iterdir():
        p.unlink()
    rc2, out2 = cell.run()
    assert rc2 == 0, out2[-5000:]
    assert {f: cell.stored(f) for f in FILES} == before


def test_issuer_near_expiry_is_renewed_and_anchor_kept(lifecycle):
    cell, rc, out = lifecycle
    anchor_before = (cell.stored("trust-anchor.crt"), cell.stored("trust-anchor.key"))
    anchor = cell.cert("trust-anchor")
    anchor_key = serialization.load_pem_private_key(cell.plain("trust-anchor.key"), None)
    crt, key = make_issuer(anchor, anchor_key, days=10)        # inside the 30-day window
    cell.store("issuer.crt", crt)
    cell.store("issuer.key", key)
    rc2, out2 = cell.run("-vvv")
    assert rc2 == 0, out2[-5000:]
    assert recap(out2)["changed"] > 0
    renewed = cell.cert("issuer")
    assert renewed.public_bytes(serialization.Encoding.PEM) != crt
    assert 363 <= days_left(renewed) <= 365
    renewed.verify_directly_issued_by(anchor)
    assert cell.plain("issuer.key") != key
    assert (cell.stored("trust-anchor.crt"), cell.stored("trust-anchor.key")) == anchor_before
    assert_no_key_material(cell, out2)


def test_issuer_outside_renewal_window_is_kept(lifecycle):
    cell, rc, out = lifecycle
    anchor = cell.cert("trust-anchor")
    anchor_key = serialization.load_pem_private_key(cell.plain("trust-anchor.key"), None)
    crt, key = make_issuer(anchor, anchor_key, days=60)        # outside the 30-day window
    cell.store("issuer.crt", crt)
    cell.store("issuer.key", key)
    before = {f: cell.stored(f) for f in FILES}
    rc2, out2 = cell.run()
    assert rc2 == 0, out2[-5000:]
    assert cell.cert("issuer").public_bytes(serialization.Encoding.PEM) == crt
    assert {f: cell.stored(f) for f in FILES} == before


def test_issuer_from_another_anchor_is_reissued(lifecycle):
    cell, rc, out = lifecycle
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root.linkerd.cluster.local")])
    foreign = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(foreign_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=100))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(foreign_key, hashes.SHA256()))
    crt, key = make_issuer(foreign, foreign_key, days=300)
    cell.store("issuer.crt", crt)
    cell.store("issuer.key", key)
    rc2, out2 = cell.run()
    assert rc2 == 0, out2[-5000:]
    cell.cert("issuer").verify_directly_issued_by(cell.cert("trust-anchor"))


def test_half_a_pair_fails_closed(tmp_path):
    cell = Cell(tmp_path)
    rc, out = cell.run()
    assert rc == 0, out[-5000:]
    anchor = cell.stored("trust-anchor.crt")
    (cell.secrets / "linkerd-trust-anchor.key.sops").unlink()
    rc2, out2 = cell.run()
    assert rc2 != 0
    assert "must exist in pairs" in out2
    assert not (cell.secrets / "linkerd-trust-anchor.key.sops").exists()
    assert cell.stored("trust-anchor.crt") == anchor


def test_check_mode_is_truthful_and_writes_no_secret(tmp_path):
    cell = Cell(tmp_path)
    rc, out = cell.run("--check")                    # nothing stored yet
    assert rc == 0, out[-5000:]
    assert recap(out)["changed"] > 0
    assert "would be generated" in out
    assert list(cell.secrets.iterdir()) == []
    rc, out = cell.run()
    assert rc == 0, out[-5000:]
    before = {f: cell.stored(f) for f in FILES}
    rc, out = cell.run("--check")                    # all valid: nothing would change
    assert rc == 0 and recap(out)["changed"] == 0, out[-5000:]
    anchor = cell.cert("trust-anchor")
    anchor_key = serialization.load_pem_private_key(cell.plain("trust-anchor.key"), None)
    crt, key = make_issuer(anchor, anchor_key, days=5)
    cell.store("issuer.crt", crt)
    cell.store("issuer.key", key)
    planted = {f: cell.stored(f) for f in FILES}
    rc, out = cell.run("--check")                    # issuer due: reported, not written
    assert rc == 0, out[-5000:]
    assert recap(out)["changed"] > 0 and "would be (re)issued" in out
    assert {f: cell.stored(f) for f in FILES} == planted
    assert planted["trust-anchor.crt"] == before["trust-anchor.crt"]
