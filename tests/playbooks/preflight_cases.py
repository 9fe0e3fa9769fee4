# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Negative inventories for the preflight: each case is an overlay on the reference inventory.

A case file (tests/playbooks/inventories/<name>.yml) holds:

    description: what is wrong
    layer: l0 | l1 | l2            # which checks the case is about (for the counts in the issue)
    layers: [l0]                   # optional: the preflight's `layers` option (default all)
    vars: {...}                    # deep-merged into group_vars/all; the value __delete__ removes a key
    hosts: {group: {host: vars}}   # per-host overrides: a mapping replaces the host's vars,
                                   # null removes the host from that group, a new name adds it
    expect:                        # one entry per problem, in report order; each is a substring
      - "field: value problem"     # of that problem's message (the count must match exactly)
    expect_fix: ["..."]            # optional: substrings that must appear in the fixes, in order

`materialize()` turns a case into a real inventory directory (hosts.yml + group_vars) that
ansible-playbook reads exactly like inventories/production; `in_process()` gives the same data
as plain dicts for calling module_utils/cell_model.py directly.
"""

import copy
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = os.path.join(REPO, "inventories", "production")
CASES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inventories")
DELETE = "__delete__"


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


def case_names():
    return sorted(name[:-4] for name in os.listdir(CASES_DIR) if name.endswith(".yml"))


def load_case(name):
    case = _load(os.path.join(CASES_DIR, name + ".yml"))
    case["name"] = name
    return case


def merged(case):
    """(vars, groups) of the reference inventory with the case applied."""
    variables = deep_merge(reference_vars(), case.get("vars"))
    groups = reference_groups()
    for group, members in (case.get("hosts") or {}).items():
        target = groups.setdefault(group, {})
        for host, hvars in members.items():
            if hvars is None:
                target.pop(host, None)
            else:
                target[host] = copy.deepcopy(hvars)
    return variables, groups


def in_process(case, inventory_dir="/srv/cells/inventories/case"):
    """Inputs for cell_model.validate(): templated vars and the hosts structure."""
    variables, groups = merged(case)
    for key, value in list(variables.items()):
        if isinstance(value, str):
            variables[key] = value.replace("{{ inventory_dir }}", inventory_dir)
    cell = []
    for group in ("controlplane", "workers"):
        for host in groups.get(group, {}):
            if host not in cell:
                cell.append(host)
    hosts = {"controlplane": groups.get("controlplane", {}), "workers": groups.get("workers", {}), "cell": cell}
    return variables, hosts


def materialize(case, directory):
    """Write the case as a real inventory dir; returns the path of its hosts.yml."""
    variables, groups = merged(case)
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
        handle.write("---\n" + yaml.safe_dump(inventory, sort_keys=False))
    with open(os.path.join(directory, "group_vars", "all", "cell.yml"), "w", encoding="utf-8") as handle:
        handle.write("---\n" + yaml.safe_dump(variables, sort_keys=False))
    with open(os.path.join(REFERENCE, "group_vars", "cell", "connection.yml"), encoding="utf-8") as src:
        connection = src.read()
    with open(os.path.join(directory, "group_vars", "cell", "connection.yml"), "w", encoding="utf-8") as handle:
        handle.write(connection)
    return os.path.join(directory, "hosts.yml")


def check_problems(case, problems):
    """Assert the problems are exactly the case's expectations (count, order, fixes)."""
    expected = case["expect"]
    messages = [p["message"] for p in problems]
    assert len(problems) == len(expected), "%s: expected %d problem(s) %r, got %d: %r" % (
        case["name"], len(expected), expected, len(problems), messages)
    for want, got in zip(expected, messages):
        assert want in got, "%s: expected %r in %r (all: %r)" % (case["name"], want, got, messages)
    fixes = [p["fix"] for p in problems]
    for want, got in zip(case.get("expect_fix") or [], fixes):
        assert want in got, "%s: expected fix %r in %r" % (case["name"], want, got)
    for prob in problems:
        assert set(prob) == {"field", "value", "message", "fix"}, prob
        assert prob["message"].startswith(prob["field"]), prob
        assert prob["fix"], prob
