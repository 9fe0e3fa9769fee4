# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Negative inventories for the preflight: each case is an overlay on the reference inventory.

A case file (tests/playbooks/inventories/<name>.yml) holds:

    description: what is wrong
    layer: l0 | l1 | l2            # which checks the case is about (for the counts in the issue)
    layers: [l0]                   # optional: the preflight's `layers` option (default all)
    vars: {...}                    # deep-merged into group_vars/all; the value __delete__ removes a key
    hosts: {group: {host: vars}}   # per-host overrides: a mapping replaces the host's vars,
                                   # null removes the host from that group, a new name adds it
    hosts_yml: |                   # optional: hosts.yml verbatim (YAML the overlay cannot express,
      ...                          # such as a duplicate key); such a case only runs through
                                   # ansible-playbook, and `expect_error` is a substring of its error
    controller: {...}              # optional: an apply-mode case about this controller (below)
    expect:                        # one entry per problem, in report order; each is a substring
      - "field: value problem"     # of that problem's message (the count must match exactly)
    expect_fix: ["..."]            # optional: substrings that must appear in the fixes, in order
    expect_warnings: ["..."]       # optional: substrings of the warnings, in order (count exact)

Apply-mode cases (``controller:`` set, or ``cellplatform_mode: apply`` in ``vars``) run in a
private controller built by ``controller_setup()``: the recording stand-ins of
tests/playbooks/recorders on a PATH of their own (without /usr/local/bin, so the machine's real
terraform is not found; the real sops of the virtualenv is), an age identity whose public key is
the only recipient, and a secrets directory with ``platform.sops.yaml`` (a SOPS file written by the
real sops) holding every key the reference cell needs. ``controller:`` changes it:

    tools: {talosctl: v1.12.4, terraform: null}   # the version a stand-in answers; null: not on PATH
    identity: missing | foreign    # no file at cellplatform_age_identity / a key of someone else
    secrets: {key: value} | null   # the keys of platform.sops.yaml (replaces the default) / no file
    foreign_files: [name.sops]     # encrypted files of the cell this identity cannot open
    files: [name.sops]             # encrypted files of the cell (to the right key)
    work_dir: file                 # cellplatform_work_dir is an existing regular file

A file name ending in ``.age`` is written as a legacy age file (a cell from before SOPS, which
the next run migrates), every other name as a SOPS file.

``@IDENTITY@``, ``@SECRETS@``, ``@WORK@`` and ``@BIN@`` in ``expect``/``expect_fix`` stand for that
controller's paths.

`materialize()` turns a case into a real inventory directory (hosts.yml + group_vars) that
ansible-playbook reads exactly like inventories/production; `in_process()` gives the same data
as plain dicts for calling the preflight's pure functions directly.
"""

import copy
import os
import secrets as pysecrets
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = os.path.join(REPO, "inventories", "production")
CASES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inventories")
RECORDERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recorders")
DELETE = "__delete__"
# The object store's keys L5 reads with SeaweedFS (the reference cell): part of the default
# platform secrets; a case whose ``secrets:`` replaces them and is about other keys lists them too.
OBJECT_STORE_SECRETS = {"object_store_access_key_id": "backup-access-key",
                        "object_store_secret_access_key": "backup-secret-key",
                        "object_store_read_access_key_id": "backup-read-access-key",
                        "object_store_read_secret_access_key": "backup-read-secret-key"}
# What the stand-ins answer by default: the pinned versions (talosctl = cellplatform_talos_version).
TOOL_VERSIONS = {"talosctl": "v1.13.9", "terraform": "1.11.4", "helm": "v3.19.0"}
HOST_VARIABLES = ("cellplatform_node_ip", "cellplatform_node_install_disk", "cellplatform_node_vm_id")


def _load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def reference_vars():
    return _load(os.path.join(REFERENCE, "group_vars", "all", "cell.yml"))


def reference_groups():
    """{'controlplane': {host: vars}, 'workers': {host: vars}} from the reference hosts.yml."""
    children = _load(os.path.join(REFERENCE, "hosts.yml"))["all"]["children"]["cell"]["children"]
    return {group: dict(children[group]["hosts"]) for group in ("controlplane", "workers")}


def deep_merge(base, overlay):
    result = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if value == DELETE:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


LAYER_ADMIN_SECRETS = {
    "gitea_admin_password": "gitea-admin-test-password",
    "harbor_admin_password": "harbor-admin-test-password",
    "grafana_admin_user": "admin",
    "grafana_admin_password": "grafana-admin-test-password",
}


def case_names():
    return sorted(name[:-4] for name in os.listdir(CASES_DIR) if name.endswith(".yml"))


def load_case(name):
    case = _load(os.path.join(CASES_DIR, name + ".yml"))
    case["name"] = name
    return case


def is_apply_case(case):
    return case.get("controller") is not None or (case.get("vars") or {}).get("cellplatform_mode") == "apply"


def controller_setup(case, directory):
    """Build the private controller of an apply-mode case under ``directory``.

    Returns {"vars": inventory overrides, "env": environment (PATH, recorder settings),
    "tokens": {"@IDENTITY@": path, ...}, "log": recorder log path}.
    """
    import pyrage  # a declared test dependency
    from ansible_collections.cellplatform.platform.plugins.module_utils import sops as sops_runner

    spec = case.get("controller") or {}
    root = os.path.abspath(directory)
    bin_dir = os.path.join(root, "bin")
    os.makedirs(bin_dir)
    env = {"CELLPLATFORM_RECORDER_LOG": os.path.join(root, "recorded-commands.log")}
    tools = dict(TOOL_VERSIONS, **(spec.get("tools") or {}))
    for tool, version in sorted(tools.items()):
        if version is None:
            continue
        os.symlink(os.path.join(RECORDERS, tool), os.path.join(bin_dir, tool))
        env["CELLPLATFORM_RECORDER_%s_VERSION" % tool.upper()] = str(version)
    # the recorders first, then Python and the base system; never /usr/local/bin (real terraform)
    env["PATH"] = os.pathsep.join([bin_dir, os.path.dirname(sys.executable), "/usr/bin", "/bin"])

    mine = pyrage.x25519.Identity.generate()
    other = pyrage.x25519.Identity.generate()
    identity = os.path.join(root, "age", "keys.txt")
    os.makedirs(os.path.dirname(identity), mode=0o700)
    if spec.get("identity") != "missing":
        with open(identity, "w", encoding="utf-8") as handle:
            handle.write("# test identity\n%s\n" % (other if spec.get("identity") == "foreign" else mine))
    secrets_dir = os.path.join(root, "secrets")
    os.makedirs(secrets_dir)

    sops = sops_runner.Sops(None, binary=os.path.join(os.path.dirname(sys.executable), "sops"))

    def encrypt(name, text, key):
        path = os.path.join(secrets_dir, name)
        data = pyrage.encrypt(text.encode(), [key.to_public()]) if name.endswith(".age") else \
            sops.encrypt(text, [str(key.to_public())], path)
        with open(path, "wb") as handle:
            handle.write(data)

    platform = spec.get("secrets", {
        "proxmox_api_token": "terraform@pve!cell=%s" % pysecrets.token_hex(8),
        "external_dns_tsig_secret": pysecrets.token_hex(16),
    })
    if isinstance(platform, dict) and not spec.get("secrets_exactly"):
        # The admin passwords of L3 and L4 and the L5 object store's keys (the reference cell enables
        # them all): present unless the case says its secrets are exactly the ones it lists, so an
        # L0-L2 case is about L0-L2 only.
        platform = dict(LAYER_ADMIN_SECRETS, **dict(OBJECT_STORE_SECRETS, **platform))
    if platform is not None:
        encrypt("platform.sops.yaml", yaml.safe_dump(platform), mine)
    for name in spec.get("files") or []:
        encrypt(name, "test: %s\n" % pysecrets.token_hex(4), mine)
    for name in spec.get("foreign_files") or []:
        encrypt(name, "test: %s\n" % pysecrets.token_hex(4), other)
    work_dir = os.path.join(root, "work")
    if spec.get("work_dir") == "file":
        with open(work_dir, "w", encoding="utf-8") as handle:
            handle.write("not a directory\n")
    variables = {
        "cellplatform_mode": "apply",
        "cellplatform_age_recipients": [str(mine.to_public())],
        "cellplatform_age_identity": identity,
        "cellplatform_secrets_dir": secrets_dir,
        "cellplatform_work_dir": work_dir,
    }
    tokens = {"@IDENTITY@": identity, "@SECRETS@": secrets_dir, "@WORK@": work_dir, "@BIN@": bin_dir}
    return {"vars": variables, "env": env, "tokens": tokens, "log": env["CELLPLATFORM_RECORDER_LOG"]}


def expected(case, setup=None):
    """The case with its @TOKEN@ placeholders replaced by the controller's paths."""
    case = copy.deepcopy(case)
    for key in ("expect", "expect_fix", "expect_warnings"):
        if key not in case:
            continue
        items = []
        for item in case.get(key) or []:
            for token, path in ((setup or {}).get("tokens") or {}).items():
                item = item.replace(token, path)
            items.append(item)
        case[key] = items
    return case


def merged(case, setup=None):
    """(vars, groups) of the reference inventory with the controller setup and the case applied."""
    variables = deep_merge(reference_vars(), (setup or {}).get("vars"))
    variables = deep_merge(variables, case.get("vars"))
    groups = reference_groups()
    for group, members in (case.get("hosts") or {}).items():
        target = groups.setdefault(group, {})
        for host, hvars in members.items():
            if hvars is None:
                target.pop(host, None)
            else:
                target[host] = copy.deepcopy(hvars)
    return variables, groups


def in_process(case, inventory_dir="/srv/cells/inventories/case", setup=None):
    """Inputs for inventory_check.check_inventory(): (templated vars, hosts, host_names)."""
    variables, groups = merged(case, setup)
    for key, value in list(variables.items()):
        if isinstance(value, str):
            variables[key] = value.replace("{{ inventory_dir }}", inventory_dir)
    cell = []
    host_names = {}
    for group in ("controlplane", "workers"):
        for host, hvars in groups.get(group, {}).items():
            if host not in cell:
                cell.append(host)
            own = dict((k, v) for k, v in (hvars or {}).items()
                       if k.startswith("cellplatform_") and k not in HOST_VARIABLES)
            if own:
                host_names[host] = own
    hosts = {"controlplane": {h: dict((k, v) for k, v in (hv or {}).items() if k in HOST_VARIABLES)
                              for h, hv in groups.get("controlplane", {}).items()},
             "workers": {h: dict((k, v) for k, v in (hv or {}).items() if k in HOST_VARIABLES)
                         for h, hv in groups.get("workers", {}).items()},
             "cell": cell}
    return variables, hosts, host_names


def materialize(case, directory, setup=None):
    """Write the case as a real inventory dir; returns the path of its hosts.yml."""
    variables, groups = merged(case, setup)
    children = {}
    for group in ("controlplane", "workers"):
        members = groups.get(group) or {}
        children[group] = {"hosts": {host: (hvars or None) for host, hvars in members.items()}}
    inventory = {"all": {
        "hosts": {"localhost": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
        "children": {"cell": {"children": children}},
    }}
    os.makedirs(os.path.join(directory, "group_vars", "all"), exist_ok=True)
    os.makedirs(os.path.join(directory, "group_vars", "cell"), exist_ok=True)
    with open(os.path.join(directory, "hosts.yml"), "w", encoding="utf-8") as handle:
        handle.write(case["hosts_yml"] if case.get("hosts_yml") else "---\n" + yaml.safe_dump(inventory, sort_keys=False))
    with open(os.path.join(directory, "group_vars", "all", "cell.yml"), "w", encoding="utf-8") as handle:
        handle.write("---\n" + yaml.safe_dump(variables, sort_keys=False))
    with open(os.path.join(REFERENCE, "group_vars", "cell", "connection.yml"), encoding="utf-8") as src:
        connection = src.read()
    with open(os.path.join(directory, "group_vars", "cell", "connection.yml"), "w", encoding="utf-8") as handle:
        handle.write(connection)
    return os.path.join(directory, "hosts.yml")


def check_problems(case, problems, warnings=None):
    """Assert the problems (and warnings) are exactly the case's expectations (count, order, fixes)."""
    expected_messages = case["expect"]
    messages = [p["message"] for p in problems]
    assert len(problems) == len(expected_messages), "%s: expected %d problem(s) %r, got %d: %r" % (
        case["name"], len(expected_messages), expected_messages, len(problems), messages)
    for want, got in zip(expected_messages, messages):
        assert want in got, "%s: expected %r in %r (all: %r)" % (case["name"], want, got, messages)
    fixes = [p["fix"] for p in problems]
    for want, got in zip(case.get("expect_fix") or [], fixes):
        assert want in got, "%s: expected fix %r in %r" % (case["name"], want, got)
    for prob in problems:
        assert set(prob) == {"field", "value", "message", "fix"}, prob
        assert prob["message"].startswith(prob["field"]), prob
        assert prob["fix"], prob
    if warnings is not None:
        want = case.get("expect_warnings") or []
        assert len(warnings) == len(want), "%s: expected warnings %r, got %r" % (case["name"], want, warnings)
        for item, got in zip(want, warnings):
            assert item in got, "%s: expected warning %r in %r" % (case["name"], item, got)
