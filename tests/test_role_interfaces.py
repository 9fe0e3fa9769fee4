"""The roles' interfaces: meta/argument_specs.yml against what each role reads and its defaults;
the inventory schema against the reference inventory; docs/variables.md. Pure and in-process
(YAML parsing, a regex over the Jinja text, ansible-core's ArgumentSpecValidator); no playbook runs.

    scripts/netns-run .venv/bin/pytest -q tests/test_role_interfaces.py

How a name found in a role is classified (the conventions this test enforces):

- *knob*: a name prefixed with the role name (``l0_infrastructure_*``, ``l1_cluster_platform_*``,
  ``l2_core_platform_*``, ``component_*``) that ``defaults/main.yml`` defines. Declared, with the
  same default. An option without a default is an input its caller passes (``component_records``).
- *internal*: a name the role defines for itself: a key of ``vars/main.yml`` (derived data: L0
  ``__l0_infrastructure_*``, L1 role-prefixed derived values, L2 ``l2_core_platform__*``), a task or
  block ``vars:`` key (including ``import_tasks``/``include_*`` vars), a ``register:`` result, a
  ``set_fact`` key or a ``loop_control.loop_var``. Never declared.
- *cell model*: ``cellplatform_cell``, set by ``cellplatform.platform.cell_preflight`` from the
  inventory. Never declared; the only ``cellplatform_*`` name a role may read.
- *inventory input*: any other ``cellplatform_*`` name. Declared once, in the inventory schema
  (``plugins/plugin_utils/cell_schema.py``); no role reads or declares it.

Only Jinja is scanned (``{{ }}``/``{% %}`` blocks, and the bare expressions of ``when``,
``changed_when``, ``failed_when``, ``until`` and ``that``), with string literals removed, so
comments, file names and messages that merely mention a variable do not count. ``files/`` holds
Terraform and Go templates (not Jinja) and is not scanned.
"""

import importlib.util
import re
from pathlib import Path

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = Path(__file__).resolve().parents[1]
ROLES_DIR = REPO / "ansible_collections" / "cellplatform" / "platform" / "roles"
PLUGINS = REPO / "ansible_collections" / "cellplatform" / "platform" / "plugins"
GENERATOR = REPO / "scripts" / "gen-variables-doc.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_variables_doc", str(GENERATOR))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The doc generator is the one reader of specs and inventory; the tests check against it.
GEN = _load_generator()
ROLES = GEN.ROLES
REGENERATE = GEN.REGENERATE
load_yaml = GEN.load_yaml

VARIABLES_DOC = REPO / "docs" / "variables.md"

FACTS = {"cellplatform_cell"}
COND_KEYS = {"when", "changed_when", "failed_when", "until", "that"}
SET_FACT = {"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"}
NAME_RE = re.compile(r"(?<![\w.])((?:cellplatform|%s)_\w+)" % "|".join(ROLES))
JINJA_RE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
STRING_RE = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


# --- loading -------------------------------------------------------------------------------------

def spec_of(role):
    data = load_yaml(ROLES_DIR / role / "meta" / "argument_specs.yml")
    return data["argument_specs"]["main"]["options"]


def defaults_of(role):
    return load_yaml(ROLES_DIR / role / "defaults" / "main.yml") or {}


def role_vars_of(role):
    path = ROLES_DIR / role / "vars" / "main.yml"
    return (load_yaml(path) or {}) if path.exists() else {}


def names_in_expression(expr):
    return set(NAME_RE.findall(STRING_RE.sub("''", expr)))


def names_in_text(text):
    names = set()
    for match in JINJA_RE.finditer(text):
        names |= names_in_expression(match.group(1) or match.group(2) or "")
    return names


class Scan(object):
    """Names referenced in Jinja, and names the role defines for itself, of YAML documents."""

    def __init__(self):
        self.referenced = set()
        self.defined = set()

    def walk(self, node, key=None):
        if isinstance(node, dict):
            for name, value in node.items():
                if name == "register" and isinstance(value, str):
                    self.defined.add(value)
                elif name == "vars" and isinstance(value, dict):
                    self.defined |= set(value)
                elif name in SET_FACT and isinstance(value, dict):
                    self.defined |= {k for k in value if k != "cacheable"}
                elif name == "loop_control" and isinstance(value, dict) and "loop_var" in value:
                    self.defined.add(value["loop_var"])
                self.walk(value, name)
        elif isinstance(node, list):
            for item in node:
                self.walk(item, key)
        elif isinstance(node, str):
            if key in COND_KEYS:
                self.referenced |= names_in_expression(node)
            self.referenced |= names_in_text(node)
        elif isinstance(node, bool) or node is None:
            return


def scan_role(role):
    root = ROLES_DIR / role
    scan = Scan()
    for path in sorted((root / "tasks").glob("*.yml")):
        scan.walk(load_yaml(path))
    scan.walk(role_vars_of(role))
    scan.walk(defaults_of(role))
    if (root / "handlers" / "main.yml").exists():
        scan.walk(load_yaml(root / "handlers" / "main.yml"))
    templates = root / "templates"
    if templates.is_dir():
        for path in sorted(p for p in templates.rglob("*") if p.is_file()):
            scan.referenced |= names_in_text(path.read_text(encoding="utf-8"))
    scan.defined |= set(role_vars_of(role))
    return scan


def reference_inventory():
    return GEN.reference_inventory(REPO)


def inventory_schema():
    return GEN.inventory_schema(REPO)


def is_template(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


# --- the scanner itself --------------------------------------------------------------------------

def test_scanner_finds_known_references_and_definitions():
    """Guards the regex: if it silently matched nothing, every other test would pass vacuously."""
    l0 = scan_role("l0_infrastructure")
    assert {"cellplatform_cell", "l0_infrastructure_talos_timeout", "l0_infrastructure_cilium_chart"} <= l0.referenced
    assert "__l0_infrastructure_terraform" in l0.defined        # register
    l1 = scan_role("l1_cluster_platform")
    assert {"l1_cluster_platform__components", "l1_cluster_platform_proxmox"} <= l1.defined  # vars/main.yml, task vars
    comp = scan_role("component")
    assert {"component_records", "component_wait_timeout"} <= comp.referenced
    assert {"component__run", "component"} <= comp.defined      # set_fact, loop_var
    # a name inside a string literal or a YAML comment is not a reference
    assert names_in_text("{{ x ~ 'cellplatform_token.tf' }}") == set()
    assert names_in_text("{{ cellplatform_gitops.path | default('apps') }}") == {"cellplatform_gitops"}
    assert names_in_text("{{ x | cellplatform.platform.component_run('l1') }}") == set()


# --- (a) a role reads the cell model and its own knobs; what it declares exists --------------------

@pytest.mark.parametrize("role", ROLES)
def test_a_role_reads_the_cell_model_never_an_inventory_input(role):
    scan = scan_role(role)
    raw = sorted(n for n in scan.referenced if n.startswith("cellplatform_") and n not in FACTS)
    assert not raw, (
        "%s reads inventory inputs directly: %s. Read the cell model instead (cellplatform_cell, built by the "
        "preflight; add the input to cell_model.build_cell_model if it is not there yet)." % (role, ", ".join(raw)))


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_the_role_reads_is_declared(role):
    scan = scan_role(role)
    spec = spec_of(role)
    undeclared = sorted(n for n in scan.referenced
                        if n not in scan.defined and n not in FACTS and n not in spec
                        and not n.startswith("cellplatform_"))
    assert not undeclared, (
        "%s reads these variables but meta/argument_specs.yml does not declare them (a knob goes in "
        "defaults/main.yml and the spec; derived data goes in vars/main.yml): %s" % (role, ", ".join(undeclared)))


@pytest.mark.parametrize("role", ROLES)
def test_every_declared_option_is_a_knob_or_a_required_input(role):
    defaults = defaults_of(role)
    internal = set(role_vars_of(role)) | FACTS
    wrong = []
    for name, spec in spec_of(role).items():
        if name in internal:
            wrong.append("%s is internal (vars/main.yml or the cell model) and must not be declared" % name)
        elif not name.startswith(role + "_"):
            wrong.append("%s does not carry the role prefix %s_ (inventory inputs belong to the inventory "
                         "schema, not to a role)" % (name, role))
        elif name not in defaults and not spec.get("required"):
            wrong.append("%s is declared but neither defined in defaults/main.yml nor required" % name)
    assert not wrong, "%s meta/argument_specs.yml:\n  %s" % (role, "\n  ".join(wrong))


@pytest.mark.parametrize("role", ROLES)
def test_derived_values_are_not_knobs(role):
    """vars/main.yml (internal) beats defaults and inventory: a name in both would be a dead knob."""
    overlap = sorted(set(role_vars_of(role)) & (set(defaults_of(role)) | set(spec_of(role))))
    assert not overlap, "%s: defined in vars/main.yml and also a knob/declared: %s" % (role, overlap)


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_declares_the_same_knobs(role):
    data = load_yaml(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]
    main = data["main"]["options"]
    for entry, spec in data.items():
        assert spec.get("options") == main, "%s: entry point %s declares other options than main" % (role, entry)
        assert (ROLES_DIR / role / "tasks" / ("%s.yml" % entry)).exists(), "%s: no tasks/%s.yml" % (role, entry)


# --- (b) defaults ------------------------------------------------------------------------------------

def _nested_default_mismatches(name, spec, value):
    bad = []
    for key, sub in (spec.get("options") or {}).items():
        if not isinstance(value, dict):
            break
        if "default" in sub and sub["default"] != value.get(key):
            bad.append("%s.%s: spec default %r != defaults/main.yml %r" % (name, key, sub["default"], value.get(key)))
        bad.extend(_nested_default_mismatches("%s.%s" % (name, key), sub, value.get(key)))
    return bad


@pytest.mark.parametrize("role", ROLES)
def test_every_knob_is_declared_with_the_default_of_defaults_main(role):
    spec = spec_of(role)
    bad = []
    for name, value in defaults_of(role).items():
        if not name.startswith(role + "_"):
            bad.append("%s: a knob must carry the role prefix %s_" % (name, role))
            continue
        if name not in spec:
            bad.append("%s: in defaults/main.yml but not declared" % name)
            continue
        if spec[name].get("required"):
            bad.append("%s: a knob has a default, so it is not required" % name)
        if "default" not in spec[name]:
            bad.append("%s: no default in the spec (defaults/main.yml has %r)" % (name, value))
        elif spec[name]["default"] != value:
            bad.append("%s: spec default %r != defaults/main.yml %r" % (name, spec[name]["default"], value))
        if is_template(value) and "cellplatform_cell" in str(value):
            bad.append("%s: a default may not read the cell model (the argument spec is checked before the "
                       "role's preflight builds it); derive the value in vars/main.yml" % name)
        bad.extend(_nested_default_mismatches(name, spec[name], value))
    assert not bad, "%s:\n  %s" % (role, "\n  ".join(bad))


def _check_typed(name, spec, bad):
    if "type" not in spec:
        bad.append("%s: no type" % name)
    if not spec.get("description"):
        bad.append("%s: no description" % name)
    if spec.get("type") == "list" and "elements" not in spec:
        bad.append("%s: a list without elements" % name)
    for key, sub in (spec.get("options") or {}).items():
        _check_typed("%s.%s" % (name, key), sub, bad)


@pytest.mark.parametrize("role", ROLES)
def test_every_option_is_typed_and_described(role):
    bad = []
    for name, spec in spec_of(role).items():
        _check_typed(name, spec, bad)
    assert not bad, "%s:\n  %s" % (role, "\n  ".join(bad))


@pytest.mark.parametrize("role", ROLES)
def test_literal_defaults_pass_the_spec(role):
    """ansible-core validates the declared knobs at role start: the literal defaults must pass."""
    spec = spec_of(role)
    params = {n: v for n, v in defaults_of(role).items() if not is_template(v)}
    checked = {n: s for n, s in spec.items() if n in params}
    result = ArgumentSpecValidator(checked).validate(params)
    assert not result.error_messages, "%s: %s" % (role, result.error_messages)


# --- (c) the inventory schema ----------------------------------------------------------------------

def _schema_spec():
    """The inventory schema as an Ansible argument spec (the schema's own keys removed)."""
    def strip(spec):
        out = {k: v for k, v in spec.items() if k not in ("layer", "scope")}
        if "options" in out:
            out["options"] = {k: strip(v) for k, v in out["options"].items()}
        return out
    return {name: strip(spec) for name, spec in inventory_schema().items()}


def test_every_schema_entry_is_typed_described_and_layered():
    bad = []
    for name, spec in inventory_schema().items():
        if not name.startswith("cellplatform_"):
            bad.append("%s: an inventory input carries the cellplatform_ prefix" % name)
        if spec.get("layer") not in ("l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"):
            bad.append("%s: no layer" % name)
        _check_typed(name, spec, bad)
    assert not bad, "\n".join(bad)


def test_reference_inventory_passes_the_schema():
    """Types and nested keys of every reference value (templated strings are checked as strings)."""
    spec = _schema_spec()
    group_vars, hosts = reference_inventory()
    params = {n: v for n, v in group_vars.items() if n in spec and not (is_template(v) and spec[n]["type"] != "str")}
    result = ArgumentSpecValidator({n: spec[n] for n in params}).validate(params)
    assert not result.error_messages, result.error_messages
    for host, hvars in hosts.items():
        hparams = {n: v for n, v in hvars.items() if n.startswith("cellplatform_")}
        result = ArgumentSpecValidator({n: spec[n] for n in hparams}).validate(hparams)
        assert not result.error_messages, (host, result.error_messages)


def test_the_schema_rejects_a_typo_in_a_nested_key():
    """The nested options are the real structure (the unknown-key check is generated from them)."""
    spec = _schema_spec()
    params = {"cellplatform_linkerd": {"trust_anchor_lifetime_days": 3650, "issuer_lifetime_day": 365}}
    result = ArgumentSpecValidator({"cellplatform_linkerd": spec["cellplatform_linkerd"]}).validate(params)
    assert any("issuer_lifetime_day" in msg for msg in result.error_messages), result.error_messages


def test_every_inventory_variable_is_in_the_schema():
    group_vars, hosts = reference_inventory()
    names = {n for n in group_vars if n.startswith("cellplatform_")}
    for hvars in hosts.values():
        names |= {n for n in hvars if n.startswith("cellplatform_")}
    outside = GEN.OUTSIDE_ROLES
    doc = VARIABLES_DOC.read_text(encoding="utf-8") if VARIABLES_DOC.exists() else ""
    missing = sorted(n for n in names
                     if n not in inventory_schema() and not (n in outside and "`%s`" % n in doc))
    assert not missing, (
        "inventory variables that the inventory schema (plugins/plugin_utils/cell_schema.py) does not declare and "
        "docs/variables.md does not list as read by the playbooks only (OUTSIDE_ROLES in "
        "scripts/gen-variables-doc.py): %s" % ", ".join(missing))


def test_the_preflight_reads_only_inputs_of_the_schema():
    text = (PLUGINS / "module_utils" / "cell_model.py").read_text(encoding="utf-8")
    used = set(re.findall(r'"(cellplatform_[a-z0-9_]+)"', text))
    unknown = sorted(used - set(inventory_schema()))
    assert not unknown, "cell_model.py reads inputs the schema does not declare: %s" % unknown


# --- (d) docs/variables.md is generated from the schema and the specs --------------------------------

def test_variables_doc_is_up_to_date():
    expected = GEN.render(REPO)
    current = VARIABLES_DOC.read_text(encoding="utf-8") if VARIABLES_DOC.exists() else ""
    assert current == expected, "docs/variables.md is out of date: run `%s`" % REGENERATE


def test_variables_doc_is_deterministic():
    gen = GEN
    assert gen.render(REPO) == gen.render(REPO)
