# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an apply run needs on this controller, and whether it is there (the apply-mode preflight).

Three parts, kept apart on purpose:

``requirements(variables, layers, run_tags, skip_tags, secret_keys)``
    pure: which tools, files, directories and platform secret keys the chosen options need for
    the layers and tags of this run (Proxmox token only with ``provisioner: proxmox`` and a
    Terraform step, TSIG key only with RFC2136, ...). Reads the raw inventory variables
    defensively, so it works on an inventory that has problems of its own.
``check(requirements, ...)``
    reads this controller: ``<tool> version`` of sops, talosctl, terraform and helm, the age
    identity and every encrypted file of the cell, the platform secrets' keys (never their values),
    the directories. Returns problems ``{field, value, message, fix}`` and warnings.
the secrets format
    ``secret_files``, ``open_secret`` and ``platform_secrets``: how the cell's encrypted files are
    found and opened. SOPS files are opened through the collection's one sops runner
    (``module_utils/sops.py``, ``SOPS_AGE_KEY_FILE`` = the identity), exactly as the roles open
    them; a legacy ``.age`` file a cell still holds (the next run migrates it, ``cell_secrets``) is
    opened the way that migration opens it (``age_keys.decrypt_legacy``). Plaintext only ever
    lives in memory here and is never returned beyond the key names.

The pinned tool versions live here (``TOOL_VERSIONS``): sops 3.x from ``sops.MIN_VERSION`` on (the
pinned ``sops.PINNED_VERSION``; another minor release is a warning); talosctl's minor must be the
minor of ``cellplatform_talos_version``; terraform >= ``module_utils.terraform.MIN_TERRAFORM_VERSION``;
helm 3.x or 4.x (kubernetes.core 6.6 drives both).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import ipaddress
import shutil
import socket
import subprocess

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    Mapping = dict  # pylint: disable=invalid-name

import yaml

from ansible_collections.cellplatform.platform.plugins.module_utils import age_keys
from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_runner
from ansible_collections.cellplatform.platform.plugins.module_utils.cell_model import (
    DEFAULT_AGE_IDENTITY,
    DEFAULT_WORK_DIR,
    SECRET_FILES,
    is_age_recipient,
)
from ansible_collections.cellplatform.platform.plugins.module_utils.cell_secrets import LEGACY_SUFFIX
from ansible_collections.cellplatform.platform.plugins.module_utils.talosctl import Talosctl, TalosctlError
from ansible_collections.cellplatform.platform.plugins.module_utils.terraform import (
    MIN_TERRAFORM_VERSION,
    TerraformError,
    find_terraform,
    read_terraform_version,
)

HELM_MAJORS = (3, 4)
TOOL_VERSIONS = {
    "sops": "%s (3.x from %s on)" % (sops_runner.PINNED_VERSION, ".".join(str(x) for x in sops_runner.MIN_VERSION)),
    "talosctl": "the minor release of cellplatform_talos_version (v1.13.x for v1.13.9)",
    "terraform": ">= %s" % ".".join(str(x) for x in MIN_TERRAFORM_VERSION),
    "helm": " or ".join("%d.x" % major for major in HELM_MAJORS),
}
VERSION_TIMEOUT = 30

# The platform secret keys the roles read, by purpose: (role knob that renames it, key in that knob
# or None, default key). The defaults equal the role defaults (a unit test compares them).
SECRET_KEYS = {
    "terraform_proxmox_token": ("l0_infrastructure_proxmox_token_key", None, "proxmox_api_token"),
    "tsig_secret": ("l1_cluster_platform_platform_secret_keys", "tsig_secret", "external_dns_tsig_secret"),
    "pdns_api_key": ("l1_cluster_platform_platform_secret_keys", "pdns_api_key", "external_dns_pdns_api_key"),
    "karpenter_proxmox_token": ("l1_cluster_platform_platform_secret_keys", "karpenter_proxmox_token",
                                "proxmox_api_token"),
    "ccm_proxmox_token": ("l1_cluster_platform_platform_secret_keys", "ccm_proxmox_token", "proxmox_api_token"),
    "acme_tsig_secret": ("l1_cluster_platform_platform_secret_keys", "tsig_secret", "external_dns_tsig_secret"),
    "gitops_repo_ssh_key": (None, None, "gitops_repo_ssh_key"),
    "gitea_admin_password": ("l3_delivery_platform_secret_keys", "gitea_admin_password", "gitea_admin_password"),
    "harbor_admin_password": ("l3_delivery_platform_secret_keys", "harbor_admin_password", "harbor_admin_password"),
    "grafana_admin_user": ("l4_observability_platform_secret_keys", "grafana_admin_user", "grafana_admin_user"),
    "grafana_admin_password": ("l4_observability_platform_secret_keys", "grafana_admin_password",
                               "grafana_admin_password"),
    # L5: the object store's keys (the cell model names them, module_utils/cell_model.py)
    "object_store_access_key": (None, None, "object_store_access_key_id"),
    "object_store_secret_key": (None, None, "object_store_secret_access_key"),
    "object_store_read_access_key": (None, None, "object_store_read_access_key_id"),
    "object_store_read_secret_key": (None, None, "object_store_read_secret_access_key"),
}
# Who reads each key (for the messages).
PURPOSES = {
    "terraform_proxmox_token": "Terraform (the Proxmox VMs)",
    "tsig_secret": "external-dns (RFC2136 TSIG secret)",
    "pdns_api_key": "external-dns (PowerDNS API key)",
    "karpenter_proxmox_token": "Karpenter (Proxmox workers)",
    "ccm_proxmox_token": "the Proxmox cloud-controller-manager",
    "acme_tsig_secret": "cert-manager (ACME DNS-01, RFC2136 TSIG secret)",
    "gitops_repo_ssh_key": "Argo CD (SSH key of the ssh:// GitOps repository)",
    "gitea_admin_password": "Gitea (its admin account, L3)",
    "harbor_admin_password": "Harbor (its admin account, L3)",
    "grafana_admin_user": "Grafana (its admin user name, L4)",
    "grafana_admin_password": "Grafana (its admin password, L4)",
    "object_store_access_key": "Velero and the etcd snapshots (object store access key)",
    "object_store_secret_key": "Velero and the etcd snapshots (object store secret key)",
    "object_store_read_access_key": "SeaweedFS (its read-only identity's access key)",
    "object_store_read_secret_key": "SeaweedFS (its read-only identity's secret key)",
}
# Tags of the L5 components that read the object store's keys.
L5_OBJECT_STORE_TAGS = ("l5", "seaweedfs", "velero", "etcd_backup")
PROXMOX_TOKEN_PURPOSES = ("terraform_proxmox_token", "karpenter_proxmox_token", "ccm_proxmox_token")
_PROXMOX_TOKEN_RE = re.compile(r"^[^@\s]+@[^!\s]+![^=\s]+=\S+$")
# Tags of the steps each requirement serves (the role and component tags of those steps).
L0_TALOS_TAGS = ("l0", "talos", "cilium")
L0_TERRAFORM_TAGS = ("l0", "terraform")
# Tags that select no component (no Helm release, no Kubernetes API): Terraform, Talos, the secrets step.
NO_COMPONENT_TAGS = frozenset(("talos", "terraform", "secrets"))
# Certificate pairs the roles refuse to use half of: (file prefix in the secrets dir, the pair, docs).
CERT_PAIRS = {
    "linkerd": ("linkerd-", (("trust-anchor.crt", "trust-anchor.key"), ("issuer.crt", "issuer.key")),
                "docs/l2-core-platform.md"),
    "tls_ca": ("tls-ca.", (("crt", "key"),), "docs/l1-cluster-platform.md"),
}


# --------------------------------------------------------------------------------------------
# The secrets format: the only functions that know how the cell's files are encrypted


PLATFORM_SECRETS_FILE = SECRET_FILES["platform"]
# What a cell written before secrets were SOPS files holds instead (the next apply run migrates
# each to its SOPS name, cell_secrets.sops_name).
LEGACY_NAMES = {
    SECRET_FILES["platform"]: "platform.yaml.age",
    SECRET_FILES["talos"]: "talos-secrets.yaml.age",
    SECRET_FILES["talosconfig"]: "talosconfig.age",
    SECRET_FILES["kubeconfig"]: "kubeconfig.age",
}
# Everything opening a cell secret can raise (the messages name the file and never hold plaintext).
OPEN_ERRORS = (sops_runner.SopsError, age_keys.AgeKeyError)


def _is_legacy(path):
    if not path.endswith(LEGACY_SUFFIX):
        return False
    try:
        with open(path, "rb") as handle:
            return age_keys.is_legacy_age(handle.read(64))
    except (IOError, OSError):
        return False


def secret_files(secrets_dir):
    """The cell's encrypted files in ``secrets_dir``: SOPS files and legacy age files (sorted paths)."""
    out = []
    for path in sorted(glob.glob(os.path.join(secrets_dir, "*"))):
        if os.path.isfile(path) and (_is_legacy(path) or sops_runner.is_sops_file(path)):
            out.append(path)
    return out


def stored_path(secrets_dir, name):
    """The file holding the cell secret ``name`` (a SOPS file name): itself, or its legacy age file, or None."""
    for candidate in (name, LEGACY_NAMES.get(name)):
        if candidate and os.path.isfile(os.path.join(secrets_dir or "", candidate)):
            return os.path.join(secrets_dir, candidate)
    return None


def open_secret(path, sops):
    """Decrypt one encrypted file of the cell (bytes) with ``sops`` (a sops_runner.Sops with the identity).

    Raises one of OPEN_ERRORS, whose message names the file, the cause and the fix.
    """
    if _is_legacy(path):
        return age_keys.decrypt_legacy(path, sops.identity)
    return sops.decrypt_file(path)


def platform_secrets(path, sops):
    """The decrypted platform secrets: a mapping of key -> value. Raises ValueError when it is not one."""
    try:
        data = yaml.safe_load(open_secret(path, sops))
    except yaml.YAMLError:
        raise ValueError("decrypts, but is not valid YAML")
    if not isinstance(data, Mapping):
        raise ValueError("decrypts, but holds %s instead of a mapping of key: value" % type(data).__name__)
    return data


# --------------------------------------------------------------------------------------------
# Which requirements this run has (pure)


def secret_key_names(task_vars):
    """purpose -> key in the platform secrets, from the role knobs when the run sets them."""
    names = {}
    for purpose, (knob, subkey, default) in SECRET_KEYS.items():
        value = task_vars.get(knob) if knob else None
        if subkey is not None:
            value = value.get(subkey) if isinstance(value, Mapping) else None
        names[purpose] = value if isinstance(value, str) and value.strip() else default
    return names


def _selected(tags, run_tags, skip_tags):
    """Whether a step tagged ``tags`` runs with --tags ``run_tags`` / --skip-tags ``skip_tags``."""
    run, skip, tags = set(run_tags or ("all",)), set(skip_tags or ()), set(tags)
    if "all" in skip or skip & tags:
        return False
    return "all" in run or "tagged" in run or bool(run & tags)


def _components_selected(run_tags, skip_tags):
    """Whether any component step (Helm, Kubernetes API) runs: every selection but Terraform/Talos alone."""
    run = set(run_tags or ("all",))
    return "all" not in set(skip_tags or ()) and ("all" in run or bool(run - NO_COMPONENT_TAGS))


def _get(mapping, *keys):
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, Mapping) else None
    return mapping


def _bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


def requirements(variables, layers, run_tags=None, skip_tags=None, secret_keys=None):
    """What this apply run needs: a list of requirement dicts {id, kind, ...}, in report order.

    ``layers``: the layers the calling preflight covers (exactly those; L0's tools are not needed
    by a run of L1 alone). ``run_tags``/``skip_tags``: ansible_run_tags / ansible_skip_tags.
    """
    v = variables or {}
    layers = set(layers or ())
    keys = secret_keys or secret_key_names({})
    # sops opens and re-keys the cell's secrets at the start of every apply run (L0 and every layer).
    reqs = [{"id": "sops", "kind": "tool", "name": "sops"},
            {"id": "identity", "kind": "identity"},
            {"id": "work_dir", "kind": "dir", "name": "cellplatform_work_dir"},
            {"id": "secrets_dir", "kind": "dir", "name": "cellplatform_secrets_dir"}]
    proxmox = v.get("cellplatform_provisioner") == "proxmox"
    components = _components_selected(run_tags, skip_tags)
    if "l0" in layers and _selected(L0_TALOS_TAGS, run_tags, skip_tags):
        reqs.append({"id": "talosctl", "kind": "tool", "name": "talosctl"})
        # L0 re-keys and compares the build tree's machine configs: the identity must open them too.
        reqs.append({"id": "machine_configs", "kind": "machine_configs"})
    if "l0" in layers and proxmox and _selected(L0_TERRAFORM_TAGS, run_tags, skip_tags):
        reqs.append({"id": "terraform", "kind": "tool", "name": "terraform"})
    if "l0" in layers and _bool(_get(v, "cellplatform_node_firewall", "enabled")) and \
            _selected(L0_TALOS_TAGS, run_tags, skip_tags):
        # Once the node firewall is on, only the admin networks (and the node network) reach the Talos API.
        reqs.append({"id": "firewall_reach", "kind": "firewall_reach"})
    if layers and components:
        reqs.append({"id": "helm", "kind": "tool", "name": "helm"})
        if v.get("cellplatform_kubeconfig"):
            reqs.append({"id": "kubeconfig", "kind": "kubeconfig"})
        elif "l0" not in layers:
            # A layer above L0 on its own talks to the cluster with the kubeconfig L0 stored.
            reqs.append({"id": "stored:kubeconfig", "kind": "stored", "name": SECRET_FILES["kubeconfig"],
                         "why": "the admin kubeconfig L0 stores there (the components of this run need it)"})
    if "l1" in layers and "l0" not in layers and _bool(_get(v, "cellplatform_karpenter", "enabled")) and \
            _selected(("l1", "karpenter", "proxmox_ccm"), run_tags, skip_tags):
        reqs.append({"id": "stored:talos", "kind": "stored", "name": SECRET_FILES["talos"],
                     "why": "the Talos secrets bundle L0 creates (Karpenter's workers join with its token and CA)"})

    purposes = []
    if "l0" in layers and proxmox and _selected(L0_TERRAFORM_TAGS, run_tags, skip_tags):
        purposes.append("terraform_proxmox_token")
    if "l1" in layers:
        provider = _get(v, "cellplatform_external_dns", "provider")
        if provider in ("rfc2136", "pdns") and _selected(("l1", "external_dns"), run_tags, skip_tags):
            purposes.append("tsig_secret" if provider == "rfc2136" else "pdns_api_key")
        if _bool(_get(v, "cellplatform_karpenter", "enabled")) and \
                _selected(("l1", "karpenter", "proxmox_ccm"), run_tags, skip_tags):
            purposes.extend(("karpenter_proxmox_token", "ccm_proxmox_token"))
        if _get(v, "cellplatform_tls", "issuer") == "acme" and _selected(("l1", "cert_manager"), run_tags, skip_tags):
            purposes.append("acme_tsig_secret")
        if _get(v, "cellplatform_tls", "issuer") == "internal-ca" and \
                _selected(("l1", "cert_manager"), run_tags, skip_tags):
            reqs.append({"id": "pairs:tls_ca", "kind": "pairs", "name": "tls_ca"})
    if "l2" in layers:
        url = _get(v, "cellplatform_gitops", "repo_url")
        if isinstance(url, str) and not url.startswith("https://") and _selected(("l2", "argocd"), run_tags, skip_tags):
            purposes.append("gitops_repo_ssh_key")
        if _selected(("l2", "linkerd", "linkerd_control_plane"), run_tags, skip_tags):
            reqs.append({"id": "pairs:linkerd", "kind": "pairs", "name": "linkerd"})
    if "l3" in layers:
        if isinstance(v.get("cellplatform_gitea"), Mapping) and _selected(("l3", "gitea"), run_tags, skip_tags):
            purposes.append("gitea_admin_password")
        if isinstance(v.get("cellplatform_harbor"), Mapping) and _selected(("l3", "harbor"), run_tags, skip_tags):
            purposes.append("harbor_admin_password")
    if "l4" in layers and _selected(("l4", "grafana"), run_tags, skip_tags):
        purposes.extend(("grafana_admin_user", "grafana_admin_password"))
    if "l5" in layers and _bool(_get(v, "cellplatform_resilience", "enabled")) and \
            _selected(L5_OBJECT_STORE_TAGS, run_tags, skip_tags):
        purposes.extend(("object_store_access_key", "object_store_secret_key"))
        if _get(v, "cellplatform_resilience", "object_store", "provider") == "seaweedfs":
            purposes.extend(("object_store_read_access_key", "object_store_read_secret_key"))
    by_key = {}
    for purpose in purposes:
        by_key.setdefault(keys[purpose], []).append(purpose)
    for key in sorted(by_key):
        reqs.append({"id": "secret:%s" % key, "kind": "secret", "key": key, "purposes": by_key[key]})
    return reqs


# --------------------------------------------------------------------------------------------
# Checking them on this controller


def _problem(field, value, problem, fix):
    return {"field": field, "value": value, "message": "%s: %s %s" % (field, value, problem), "fix": fix}


def _readers(purposes):
    names = [PURPOSES[p] for p in purposes]
    return names[0] if len(names) == 1 else "%s and %s" % (", ".join(names[:-1]), names[-1])


NOT_ON_PATH = "(not on PATH)"


def _paths(variables):
    """(identity, secrets_dir, work_dir, kubeconfig) as this controller sees them (expanded), or None."""
    v = variables or {}

    def path(value):
        return os.path.realpath(os.path.expanduser(value)) if isinstance(value, str) and value.strip() else None

    name = v.get("cellplatform_cell_name") if isinstance(v.get("cellplatform_cell_name"), str) else "cell"
    return (path(v.get("cellplatform_age_identity") or DEFAULT_AGE_IDENTITY),
            path(v.get("cellplatform_secrets_dir")),
            path(v.get("cellplatform_work_dir") or DEFAULT_WORK_DIR % name),
            path(v.get("cellplatform_kubeconfig")),
            path(os.path.join(v["cellplatform_build_root"], name)) if isinstance(v.get("cellplatform_build_root"), str) else None)


def check_talosctl(talosctl_path, talos_version):
    """-> (problems, warnings) for talosctl: on PATH (or at talosctl_path), its minor == the cell's."""
    release = talos_version if isinstance(talos_version, str) and talos_version else None
    want = release or "the release of cellplatform_talos_version"
    fix = ("install talosctl %s (https://github.com/siderolabs/talos/releases) on the controller's PATH, or point "
           "l0_infrastructure_talosctl_path at it." % want)
    try:
        talos = Talosctl(None, path=talosctl_path or None, talos_version=release, timeout=VERSION_TIMEOUT,
                         check_version=False, fail_on_error=False)
    except TalosctlError:
        if talosctl_path:
            return [_problem("talosctl", talosctl_path, "(l0_infrastructure_talosctl_path) is not an executable file",
                             fix)], []
        return [_problem("talosctl", NOT_ON_PATH, "is missing; the Talos steps of L0 need it", fix)], []
    if release is None:
        return [], []  # the version of the cell is itself a problem the inventory check reports
    try:
        talos.check_version()
    except TalosctlError as exc:
        shown = talos.client_version or talos.path
        if exc.kind == "version" and talos.client_version:
            return [_problem("talosctl", shown, "at %s does not match cellplatform_talos_version %s (talosctl's minor "
                             "release must be the cell's)" % (talos.path, release), fix)], []
        return [_problem("talosctl", shown, "does not answer `talosctl version --client` (%s)" % exc.message.split(";")[0],
                         fix)], []
    return [], list(talos.warnings)


def check_terraform():
    """terraform on PATH answering `terraform version -json` with at least MIN_TERRAFORM_VERSION."""
    fix = "install terraform %s on the controller's PATH." % TOOL_VERSIONS["terraform"]
    try:
        binary = find_terraform(None, os.environ.get("PATH"))
    except TerraformError:
        return [_problem("terraform", NOT_ON_PATH, "is missing; cellplatform_provisioner proxmox creates the VMs with it",
                         fix[:-1] + ", or set cellplatform_provisioner: none for machines that already boot Talos.")]
    try:
        version = read_terraform_version(binary, timeout=VERSION_TIMEOUT)
    except TerraformError as exc:
        return [_problem("terraform", binary, "does not answer `terraform version -json` (%s)" % exc.message[:200], fix)]
    if version < MIN_TERRAFORM_VERSION:
        return [_problem("terraform", ".".join(map(str, version)), "at %s is older than %s, the oldest this collection "
                         "drives" % (binary, ".".join(map(str, MIN_TERRAFORM_VERSION))), fix)]
    return []


_HELM_VERSION_RE = re.compile(r'Version:"v(\d+)\.(\d+)\.(\d+)')


def check_helm():
    """helm on PATH answering `helm version` (the output kubernetes.core reads) with 3.x or 4.x."""
    fix = "install helm %s on the controller's PATH (kubernetes.core.helm runs it)." % TOOL_VERSIONS["helm"]
    binary = shutil.which("helm")
    if binary is None:
        return [_problem("helm", NOT_ON_PATH, "is missing; every Helm release of the cell needs it", fix)]
    try:
        proc = subprocess.run([binary, "version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              stderr=subprocess.PIPE, timeout=VERSION_TIMEOUT, check=False)
        out = proc.stdout.decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [_problem("helm", binary, "does not answer `helm version` (%s)" % exc, fix)]
    match = _HELM_VERSION_RE.search(out)
    if proc.returncode != 0 or not match:
        return [_problem("helm", binary, "does not answer `helm version` with a version (rc=%d)" % proc.returncode, fix)]
    version = tuple(int(x) for x in match.groups())
    if version[0] not in HELM_MAJORS:
        return [_problem("helm", "v%d.%d.%d" % version, "at %s is not a supported Helm (%s)" % (binary, TOOL_VERSIONS["helm"]),
                         fix)]
    return []


def _writable(path):
    """None when ``path`` is (or can be created as) a writable directory, else why not."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            return "exists but is not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable by this user"
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not parent or not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        return "does not exist and cannot be created (%s is not writable)" % (parent or "/")
    return None


def _inside(path, parent):
    return bool(path and parent) and (path == parent or path.startswith(parent.rstrip(os.sep) + os.sep))


def check_sops():
    """-> (problems, warnings, runner): sops on PATH at a version the runner drives; the runner or None."""
    fix = "%s." % sops_runner.INSTALL_HINT
    try:
        binary = sops_runner.find_binary()
    except sops_runner.SopsError:
        return [_problem("sops", NOT_ON_PATH, "is missing; every secret of the cell is a SOPS file", fix)], [], None
    try:
        runner = sops_runner.Sops(None, binary=binary, timeout=VERSION_TIMEOUT)
    except sops_runner.SopsError as exc:
        return [_problem("sops", binary, "cannot be used: %s" % exc.message.split(";")[0], fix)], [], None
    pinned = tuple(int(x) for x in sops_runner.PINNED_VERSION.split("."))
    warnings = []
    if runner.version[:2] != pinned[:2]:
        found, lowest = ".".join(map(str, runner.version)), ".".join(map(str, sops_runner.MIN_VERSION))
        warnings.append("sops %s at %s is not the pinned release %s; it works (3.x from %s on), but the collection "
                        "is tested with %s" % (found, binary, sops_runner.PINNED_VERSION, lowest,
                                               sops_runner.PINNED_VERSION))
    return [], warnings, runner


def _why_not_opened(exc, path):
    """The reason a cell secret did not open, for a message that already names file and identity."""
    if isinstance(exc, sops_runner.SopsError) and exc.rc in sops_runner.CANNOT_DECRYPT:
        try:
            recipients = sops_runner.recipients_of_file(path) or []
        except (IOError, OSError):
            recipients = []
        return "it was encrypted to other recipients (%s)" % ", ".join(recipients) if recipients else \
            "it was encrypted to other recipients"
    if isinstance(exc, age_keys.AgeKeyError) and "opens" in str(exc):
        return "it was encrypted to other recipients (a legacy age file)"
    return str(exc).split(";", maxsplit=1)[0]


def check_identity(identity, recipients, secrets_dir, runner, machine_configs=None):
    """The identity file opens the cell: it exists, matches a recipient, decrypts every encrypted file.

    ``runner``: the sops runner (None when sops itself is missing: files are not opened then).
    ``machine_configs``: the build tree's machine config directory, when this run re-keys and
    compares them (L0's Talos step), else None.
    """
    field = "cellplatform_age_identity"
    fix = ("create it with `age-keygen -o %s` and put its public key into cellplatform_age_recipients, or point "
           "cellplatform_age_identity at your existing key file." % identity)
    if not os.path.exists(identity):
        return [_problem(field, identity, "does not exist", fix)]
    try:
        public = age_keys.public_keys(identity)
    except age_keys.AgeKeyError as exc:
        return [_problem(field, identity, "cannot be used: %s" % str(exc).split(";", maxsplit=1)[0], fix)]
    problems = []
    wanted = [r for r in recipients or [] if is_age_recipient(r)]
    if wanted and not set(public) & set(wanted):
        problems.append(_problem(field, identity, "holds no key of cellplatform_age_recipients, so the secrets this "
                                 "run encrypts could not be read back", "add its public key %s to "
                                 "cellplatform_age_recipients, or use the identity of one of them." % public[0]))
    if runner is None:
        return problems
    sops = sops_runner.Sops(identity, binary=runner.binary, timeout=runner.timeout)
    files = [("secrets file", path) for path in secret_files(secrets_dir)] if secrets_dir and os.path.isdir(secrets_dir) \
        else []
    if machine_configs and os.path.isdir(machine_configs):
        files += [("machine config", path) for path in secret_files(machine_configs)]
    for what, path in files:
        try:
            open_secret(path, sops)
        except OPEN_ERRORS as exc:
            problems.append(_problem("%s %s" % (what, os.path.basename(path)), path,
                                     "cannot be opened with %s: %s" % (identity, _why_not_opened(exc, path)),
                                     "use the identity of a recipient the file was encrypted to, or have one of them "
                                     "add your public key to cellplatform_age_recipients and run the playbook "
                                     "(docs/secrets.md)."))
    return problems


def check_secret_keys(reqs, secrets_dir, identity, runner):
    """Every platform secret key the run needs exists and is usable (values are never shown)."""
    needed = [r for r in reqs if r["kind"] == "secret"]
    if not needed:
        return []
    field = "secrets file %s" % PLATFORM_SECRETS_FILE
    listing = "; ".join("%s (for %s)" % (r["key"], _readers(r["purposes"])) for r in needed)
    path = stored_path(secrets_dir, PLATFORM_SECRETS_FILE)
    if path is None:
        return [_problem(field, os.path.join(secrets_dir or "", PLATFORM_SECRETS_FILE),
                         "does not exist, but this run needs: %s" % listing,
                         "create it with these keys: `sops edit %s` in the secrets directory, encrypted to "
                         "cellplatform_age_recipients (docs/secrets.md)." % PLATFORM_SECRETS_FILE)]
    if runner is None or not os.path.isfile(identity):
        return []  # check_sops / check_identity said why nothing can be opened
    try:
        data = platform_secrets(path, sops_runner.Sops(identity, binary=runner.binary, timeout=runner.timeout))
    except OPEN_ERRORS:
        return []  # check_identity reported why it cannot be opened
    except ValueError as exc:
        return [_problem(field, path, str(exc), "write one key: value per line with `sops edit %s` "
                         "(docs/secrets.md)." % PLATFORM_SECRETS_FILE)]
    problems = []
    for req in needed:
        key, why = req["key"], _readers(req["purposes"])
        value = data.get(key)
        sub = "%s key %s" % (PLATFORM_SECRETS_FILE, key)
        if value is None or (isinstance(value, str) and not value.strip()):
            needs = "need" if len(req["purposes"]) > 1 else "needs"
            problems.append(_problem(sub, "(not set)" if key not in data else "(empty)", "is missing; %s %s it" % (why, needs),
                                     "add %s with `sops edit %s` (docs/secrets.md)." % (key, PLATFORM_SECRETS_FILE)))
        elif any(p in PROXMOX_TOKEN_PURPOSES for p in req["purposes"]) and not (
                isinstance(value, str) and _PROXMOX_TOKEN_RE.match(value.strip())):
            problems.append(_problem(sub, "(secret, not shown)", "is not a Proxmox API token of the form "
                                     "user@realm!tokenid=secret (for %s)" % why,
                                     "store the token exactly as Proxmox shows it, e.g. terraform@pve!cell=<uuid>."))
    return problems


def check_pairs(secrets_dir, name):
    """Certificate files the roles use in pairs (CERT_PAIRS[name]): never one without the other."""
    prefix, pairs, docs = CERT_PAIRS[name]
    found = {}
    for suffix in (".sops", LEGACY_SUFFIX):  # a legacy pair is migrated to .sops names by the run
        for path in glob.glob(os.path.join(secrets_dir or "", prefix + "*" + suffix)):
            found.setdefault(os.path.basename(path)[len(prefix):-len(suffix)], os.path.basename(path))
    problems = []
    for crt, key in pairs:
        if (crt in found) != (key in found):
            have, missing = (crt, key) if crt in found else (key, crt)
            wanted = "%s%s.sops" % (prefix, missing)
            problems.append(_problem("secrets file %s" % wanted, os.path.join(secrets_dir, wanted),
                                     "is missing while %s exists (half a certificate pair)" % found[have],
                                     "restore it from backup (git history); delete both files of the pair only to "
                                     "replace that certificate (%s)." % docs))
    return problems


def controller_address(target):
    """The local address this controller uses towards ``target``, or None when it has no route.

    A UDP socket's connect() only selects the route and the source address: no packet is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((str(target), 50000))
            return sock.getsockname()[0]
    except (OSError, ValueError):
        return None


def check_firewall_reach(variables, address_of=controller_address):
    """-> (problems, warnings): is this controller inside the networks the node firewall lets reach the Talos API?"""
    v = variables or {}
    fw = v.get("cellplatform_node_firewall") or {}
    node_net = _get(v, "cellplatform_network", "cidr")
    allowed = list(fw.get("admin_networks") or []) + ([node_net] if node_net else [])
    target = v.get("cellplatform_api_vip")
    try:
        nets = [ipaddress.ip_network(str(n)) for n in allowed]
    except ValueError:
        return [], []  # the inventory check reports the bad network
    here = address_of(target) if target else None
    if here is None:
        return [], ["cellplatform_node_firewall: could not tell which address this controller uses towards the API VIP "
                    "%s (no route); make sure it lies in cellplatform_node_firewall.admin_networks, or the runs after "
                    "the firewall is on cannot reach the Talos API." % (target,)]
    if any(ipaddress.ip_address(here) in net for net in nets):
        return [], []
    return [_problem("cellplatform_node_firewall.admin_networks", fw.get("admin_networks") or [],
                     "holds neither this controller's address %s (its route to the API VIP %s) nor is it in the node "
                     "network %s: once the node firewall is on, this controller could not reach the Talos API "
                     "again" % (here, target, node_net),
                     "add %s/32 (or its network) to cellplatform_node_firewall.admin_networks." % here)], []


def check(reqs, variables, talosctl_path=None):
    """-> (problems, warnings): every requirement of ``reqs`` checked on this controller."""
    v = variables or {}
    identity, secrets_dir, work_dir, kubeconfig, build_dir = _paths(v)
    problems, warnings = [], []
    ids = set(r["id"] for r in reqs)
    runner = None
    if "sops" in ids or "identity" in ids or any(r["kind"] == "secret" for r in reqs):
        found, notes, runner = check_sops()
        if "sops" in ids:
            problems.extend(found)
            warnings.extend(notes)
    if "talosctl" in ids:
        found, notes = check_talosctl(talosctl_path, v.get("cellplatform_talos_version"))
        problems.extend(found)
        warnings.extend(notes)
    if "terraform" in ids:
        problems.extend(check_terraform())
    if "firewall_reach" in ids:
        found, notes = check_firewall_reach(v)
        problems.extend(found)
        warnings.extend(notes)
    if "helm" in ids:
        problems.extend(check_helm())
    if "identity" in ids:
        configs = os.path.join(build_dir, "talos", "machineconfigs") if build_dir and "machine_configs" in ids else None
        problems.extend(check_identity(identity, v.get("cellplatform_age_recipients"), secrets_dir, runner, configs))
    for req in reqs:
        if req["kind"] != "dir":
            continue
        path = work_dir if req["id"] == "work_dir" else secrets_dir
        if path is None:
            continue  # not set: the inventory check reports it
        why = _writable(path)
        if why:
            problems.append(_problem(req["name"], path, why, "create it, or pick a directory this user can write."))
        if req["id"] == "work_dir":
            for other, name in ((build_dir, "the build tree"), (secrets_dir, "cellplatform_secrets_dir")):
                if _inside(path, other):
                    problems.append(_problem(req["name"], path, "lies inside %s %s, where plaintext secrets would "
                                             "end up committed" % (name, other),
                                             "use a private directory outside the repository, e.g. %s." % (
                                                 DEFAULT_WORK_DIR % v.get("cellplatform_cell_name", "cell"))))
    for req in reqs:
        if req["kind"] == "stored" and secrets_dir and stored_path(secrets_dir, req["name"]) is None:
            problems.append(_problem("secrets file %s" % req["name"], os.path.join(secrets_dir, req["name"]),
                                     "does not exist: %s" % req["why"],
                                     "run L0 first (ansible-playbook playbooks/site.yml -t l0 -e cellplatform_mode=apply), "
                                     "or restore the file from backup."))
    if "kubeconfig" in ids and kubeconfig and not os.path.isfile(kubeconfig):
        problems.append(_problem("cellplatform_kubeconfig", kubeconfig, "does not exist",
                                 "point it at an admin kubeconfig of this cell, or remove the variable to use the one "
                                 "L0 stores encrypted in %s/%s." % (secrets_dir or "<secrets_dir>",
                                                                    SECRET_FILES["kubeconfig"])))
    problems.extend(check_secret_keys(reqs, secrets_dir, identity, runner))
    for req in reqs:
        if req["kind"] == "pairs" and secrets_dir:
            problems.extend(check_pairs(secrets_dir, req["name"]))
    return problems, warnings
