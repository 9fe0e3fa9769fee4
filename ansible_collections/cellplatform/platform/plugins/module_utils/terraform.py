# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one terraform runner of the collection.

Everything that runs the ``terraform`` binary goes through :class:`Terraform`:

* binary lookup (``binary_path`` or ``PATH``) and a minimum version check;
* ``init -input=false`` with ``-backend-config`` (key=value pairs and files), ``-plugin-dir``
  (air-gapped provider mirrors) and ``-reconfigure``;
* ``workspace select -or-create``;
* ``plan -input=false -out=<file> -detailed-exitcode`` with ``-var-file`` (variables given as a
  mapping are written to a private ``.tfvars.json`` file, never put on the command line);
* ``show -json <planfile>`` parsed, ``apply <planfile>``, ``output -json``;
* the caller's environment is passed through (``PROXMOX_VE_API_TOKEN`` and friends), plus
  ``TF_IN_AUTOMATION=1``/``TF_INPUT=0``; values of secret-looking variables are redacted
  from anything returned;
* a timeout per command (SIGINT first so terraform can release its lock, then SIGKILL);
* terraform's error text mapped to messages that say what failed and how to fix it.

The plan analysis (:func:`summarize_plan`, :func:`plan_diff`, :func:`mask_outputs`) is pure
and has no dependency on Ansible, so it is unit tested with synthetic plan JSON.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

MIN_TERRAFORM_VERSION = (1, 5, 0)
DEFAULT_TIMEOUT = 1800
SENSITIVE = "(sensitive value)"
UNKNOWN = "(known after apply)"
SECRET_ENV_RE = re.compile(r"(TOKEN|PASSWORD|SECRET|PRIVATE_KEY|ACCESS_KEY|CREDENTIAL)", re.I)

# Options shared by every module that drives terraform (argument_spec fragment).
TERRAFORM_COMMON_ARGS = dict(
    project_path=dict(type="path", required=True),
    binary_path=dict(type="path"),
    workspace=dict(type="str", default="default"),
    init=dict(type="bool", default=True),
    init_reconfigure=dict(type="bool", default=False),
    plugin_dir=dict(type="list", elements="path", default=[]),
    backend_config=dict(type="dict", default={}),
    backend_config_files=dict(type="list", elements="path", default=[]),
    lock=dict(type="bool", default=True),
    lock_timeout=dict(type="int", default=0),
    timeout=dict(type="int", default=DEFAULT_TIMEOUT),
    work_dir=dict(type="path"),
)


class TerraformError(Exception):
    """A terraform command failed. ``message`` names what failed and how to fix it."""

    def __init__(self, message, kind="error", rc=None, stdout="", stderr="", command=None):
        super(TerraformError, self).__init__(message)
        self.message = message
        self.kind = kind
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.command = command or []

    def to_result(self):
        return dict(msg=self.message, error_kind=self.kind, rc=self.rc,
                    stdout=self.stdout, stderr=self.stderr,
                    command=" ".join(self.command))


# --------------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------------

def _diagnostics(text):
    """Split terraform's ``-no-color`` output into (summary, detail) pairs of ``Error:`` blocks.

    The detail drops the source snippet paragraph (``  on main.tf line 3:`` ...) and the
    ``This was checked by the validation rule at ...`` line, keeping what to fix.
    """
    lines = [re.sub(r"^[\u2502\u2577\u2575]\s?", "", line) for line in (text or "").splitlines()]
    blocks = []
    current = None
    for line in lines:
        if line.startswith("Error: "):
            current = [line[len("Error: "):].strip(), []]
            blocks.append(current)
        elif current is not None:
            if line.startswith("Warning: "):
                current = None
                continue
            current[1].append(line)
    out = []
    for summary, detail in blocks:
        paragraphs, para = [], []
        for line in detail + [""]:
            if line.strip():
                para.append(line)
            elif para:
                paragraphs.append(para)
                para = []
        kept = []
        for para in paragraphs:
            if para[0].startswith("  on ") or para[0].startswith("This was checked by"):
                continue
            kept.append(" ".join(" ".join(para).split()))
        out.append((summary, " ".join(kept), "\n".join(detail)))
    return out


def explain_error(subcommand, rc, stdout, stderr, project_path):
    """Map a failed terraform run to (kind, message). Pure; unit tested."""
    text = "%s\n%s" % (stdout or "", stderr or "")
    diags = _diagnostics(text)
    if diags:
        first = diags[0]
    else:
        first = ("terraform %s exited with rc=%s" % (subcommand, rc),
                 " ".join((stderr or stdout or "").split())[-600:], "")
    summary, detail, _raw = first

    if "provider packages" in summary or "Failed to install provider" in summary \
            or "Incompatible provider version" in summary or "Failed to resolve provider" in summary:
        m = re.search(r"provider ((?:[\w.-]+/)?[\w.-]+/[\w.-]+)", detail)
        provider = m.group(1) if m else "(unknown)"
        return ("provider_install",
                "terraform could not install provider %s in %s: %s: %s -- set up a provider "
                "mirror and pass it as plugin_dir (terraform providers mirror <dir> on a "
                "connected machine), or give this host network access to the registry"
                % (provider, project_path, summary, detail))
    if "Error acquiring the state lock" in summary or "state lock" in summary.lower():
        m = re.search(r"ID:\s+([0-9a-fA-F-]{8,})", text)
        lock_id = m.group(1) if m else "<lock id>"
        return ("state_locked",
                "terraform state of %s is locked by another run (lock ID %s): wait for it and "
                "retry, raise lock_timeout, or -- only if that run is dead -- run "
                "'terraform force-unlock %s' in %s" % (project_path, lock_id, lock_id, project_path))
    if "Backend configuration changed" in summary or "Backend initialization required" in summary:
        return ("backend_changed",
                "terraform backend of %s needs re-initialisation (%s): run with init: true and "
                "init_reconfigure: true (to migrate existing state run 'terraform init "
                "-migrate-state' by hand first)" % (project_path, summary))
    if "Unsupported Terraform Core version" in summary:
        return ("terraform_version",
                "the terraform binary does not satisfy required_version of %s: %s -- install a "
                "matching terraform or set binary_path" % (project_path, detail))
    if "No value for required variable" in summary:
        m = re.search(r'variable "([^"]+)"', text)
        name = m.group(1) if m else "(unknown)"
        return ("missing_variable",
                "terraform variable %r of %s has no value: set it in variables, in one of "
                "var_files, or in a *.auto.tfvars.json file in project_path" % (name, project_path))
    if "Invalid value for" in summary and "variable" in summary:
        problems = []
        for diag_summary, diag_detail, diag_raw in diags:
            if not ("Invalid value for" in diag_summary and "variable" in diag_summary):
                continue
            m = re.search(r"var\.([\w-]+)", diag_raw) or re.search(r'variable "([^"]+)"', diag_raw)
            name = m.group(1) if m else "(unknown)"
            problems.append("%s: %s" % (name, diag_detail))
        return ("invalid_variable",
                "terraform rejected %d variable value(s) of %s: %s -- fix the value in "
                "variables / var_files (for the L0 role: the inventory variable it is rendered "
                "from)" % (len(problems), project_path, "; ".join(problems)))
    if "Saved plan is stale" in summary:
        return ("stale_plan",
                "the terraform state of %s changed between plan and apply (another run?): "
                "nothing was applied from this plan; rerun the task" % project_path)
    if "Inconsistent dependency lock file" in summary or "Required plugins are not installed" in summary \
            or "Missing required provider" in summary or "Module not installed" in summary:
        return ("init_required",
                "terraform in %s is not initialised for this configuration (%s): run with "
                "init: true" % (project_path, summary))
    msg = "terraform %s failed in %s: %s" % (subcommand, project_path, summary)
    if detail:
        msg += ": %s" % detail
    if len(diags) > 1:
        msg += " (and %d more error(s): %s)" % (len(diags) - 1, "; ".join(d[0] for d in diags[1:]))
    return ("error", msg)


# --------------------------------------------------------------------------------------------
# Plan analysis (pure)
# --------------------------------------------------------------------------------------------

CATEGORIES = ("add", "change", "destroy", "replace", "forget", "import", "move")


def classify_actions(actions):
    """Map a resource_changes[].change.actions list to one category (or None for no-op/read)."""
    actions = list(actions or [])
    if actions in (["delete", "create"], ["create", "delete"]):
        return "replace"
    if actions == ["create"]:
        return "add"
    if actions == ["update"]:
        return "change"
    if actions == ["delete"]:
        return "destroy"
    if actions == ["forget"]:
        return "forget"
    if actions in (["no-op"], ["read"], []):
        return None
    # Anything terraform may add in the future: destructive if it deletes, else a change.
    if "delete" in actions:
        return "replace" if "create" in actions else "destroy"
    return "change"


def _dotted_paths(change):
    """The plan's ``replace_paths`` of one change, each as a dotted string."""
    return [".".join(str(p) for p in path) for path in change.get("replace_paths") or []]


def _address(rc):
    address = rc.get("address") or "%s.%s" % (rc.get("type"), rc.get("name"))
    if rc.get("deposed"):
        address += " (deposed object %s)" % rc["deposed"]
    return address


def summarize_plan(plan):
    """Summarise ``terraform show -json <planfile>``.

    Returns a dict with ``summary`` (counts per category, plus ``output_changes``),
    ``resources`` (addresses per category, sorted), ``destructive`` (one entry per delete or
    replace: address, action, reason, replace_paths) and ``has_changes``.
    """
    if not isinstance(plan, dict) or "format_version" not in plan:
        raise ValueError("not a terraform JSON plan (no format_version): %r" % (type(plan),))
    resources = dict((c, []) for c in CATEGORIES)
    destructive = []
    for rc in plan.get("resource_changes") or []:
        if rc.get("mode", "managed") != "managed":
            continue
        change = rc.get("change") or {}
        address = _address(rc)
        category = classify_actions(change.get("actions"))
        if change.get("importing") is not None:
            resources["import"].append(address)
        if rc.get("previous_address") and rc.get("previous_address") != rc.get("address"):
            resources["move"].append("%s -> %s" % (rc["previous_address"], address))
        if category is None:
            continue
        resources[category].append(address)
        if category in ("destroy", "replace"):
            destructive.append(dict(
                address=address,
                action="delete" if category == "destroy" else "replace",
                actions=list(change.get("actions") or []),
                reason=rc.get("action_reason") or "",
                replace_paths=_dotted_paths(change),
            ))
    for key in resources:
        resources[key] = sorted(resources[key])
    destructive.sort(key=lambda d: d["address"])
    output_changes = sorted(
        name for name, oc in (plan.get("output_changes") or {}).items()
        if list(oc.get("actions") or []) not in (["no-op"], [])
    )
    summary = dict((k, len(v)) for k, v in resources.items())
    summary["output_changes"] = len(output_changes)
    if "applyable" in plan:
        has_changes = bool(plan["applyable"])
    else:
        has_changes = any(summary.values())
    return dict(summary=summary, resources=resources, destructive=destructive,
                output_changes=output_changes, has_changes=has_changes)


ACTION_REASONS = {
    "replace_because_tainted": "the object is tainted",
    "replace_because_cannot_update": "an attribute cannot be updated in place",
    "replace_by_request": "replacement was requested (-replace)",
    "replace_by_triggers": "replace_triggered_by fired",
    "delete_because_no_resource_config": "its resource block was removed from the configuration",
    "delete_because_no_module": "its module was removed from the configuration",
    "delete_because_wrong_repetition": "it switched between count/for_each/single",
    "delete_because_count_index": "its count index is beyond the new count",
    "delete_because_each_key": "its key is no longer in for_each",
    "delete_because_no_move_target": "its moved target does not exist",
}


def describe_destructive(entry):
    """``terraform_data.node["cp-1"] (replace: forced by triggers_replace)``"""
    if entry.get("replace_paths"):
        why = "forced by a change of %s" % ", ".join(entry["replace_paths"])
    else:
        why = ACTION_REASONS.get(entry.get("reason") or "", entry.get("reason") or "")
    return "%s (%s%s)" % (entry["address"], entry["action"], ": " + why if why else "")


def address_matches(address, patterns):
    """True when ``address`` matches one of ``patterns`` (``*`` is the only wildcard)."""
    for pattern in patterns or []:
        regex = "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"
        if re.match(regex, address):
            return True
    return False


def _apply_marks(value, marks, placeholder):
    """Replace every part of ``value`` that ``marks`` flags with ``placeholder``.

    ``marks`` is terraform's ``*_sensitive``/``after_unknown`` shape: ``true`` for a whole
    value, or a dict/list mirroring the value's structure.
    """
    if marks is True:
        return placeholder
    if isinstance(marks, dict):
        if isinstance(value, dict):
            out = dict(value)
            for key, sub in marks.items():
                if sub is True or key in out:
                    out[key] = _apply_marks(out.get(key), sub, placeholder)
            return out
        if value is None and any(v is True for v in marks.values()):
            return dict((k, placeholder) for k, v in marks.items() if v is True)
        return value
    if isinstance(marks, list) and isinstance(value, list):
        out = list(value)
        for i, sub in enumerate(marks):
            if i < len(out):
                out[i] = _apply_marks(out[i], sub, placeholder)
            elif sub is True:
                out.append(placeholder)
        return out
    return value


def _render(value):
    if isinstance(value, str) and value in (SENSITIVE, UNKNOWN):
        return value
    return json.dumps(value, sort_keys=True)


_MISSING = object()


def _flatten(value, prefix="", path=()):
    """Flatten nested values to ``{"a.b[0].c": (path, leaf)}`` for a per-attribute diff.

    Placeholders (sensitive/unknown) are leaves, so a wholly sensitive object is one line.
    """
    out = {}
    if isinstance(value, dict) and value:
        for key in sorted(value):
            name = "%s.%s" % (prefix, key) if prefix else str(key)
            out.update(_flatten(value[key], name, path + (key,)))
    elif isinstance(value, list) and value and prefix:
        for i, item in enumerate(value):
            out.update(_flatten(item, "%s[%d]" % (prefix, i), path + (i,)))
    elif prefix:
        out[prefix] = (path, value)
    return out


def _lookup(value, path):
    for step in path:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            return _MISSING
    return value


def resource_diff(rc, secrets=()):
    """One Ansible diff dict for one resource change: changed attributes only, masked."""
    change = rc.get("change") or {}
    category = classify_actions(change.get("actions"))
    before = change.get("before") if isinstance(change.get("before"), dict) else {}
    after = change.get("after")
    # Raw values with unknowns marked: what is compared (never shown).
    raw_a = _apply_marks(after, change.get("after_unknown"), UNKNOWN)
    raw_a = raw_a if isinstance(raw_a, dict) else {}
    # Masked values: what is shown.
    shown_b = _apply_marks(before, change.get("before_sensitive"), SENSITIVE)
    shown_a = _apply_marks(raw_a, change.get("after_sensitive"), SENSITIVE)
    shown_b, shown_a = scrub(shown_b, secrets), scrub(shown_a, secrets)
    flat_b = _flatten(shown_b if isinstance(shown_b, dict) else {})
    flat_a = _flatten(shown_a if isinstance(shown_a, dict) else {})
    lines_b, lines_a = [], []
    for key in sorted(set(flat_b) | set(flat_a)):
        path = (flat_b.get(key) or flat_a.get(key))[0]
        vb, va = _lookup(before, path), _lookup(raw_a, path)
        if category in ("change", "replace") and vb == va:
            continue
        if key in flat_b and flat_b[key][1] is not None:
            lines_b.append("%s = %s" % (key, _render(flat_b[key][1])))
        if key in flat_a and flat_a[key][1] is not None:
            lines_a.append("%s = %s" % (key, _render(flat_a[key][1])))
    paths = _dotted_paths(change)
    extra = ", forced by %s" % ", ".join(paths) if paths else ""
    header = "%s (%s%s)" % (_address(rc), category or "no-op", extra)
    return dict(
        before_header=header,
        after_header=header,
        before="\n".join(lines_b) + ("\n" if lines_b else ""),
        after="\n".join(lines_a) + ("\n" if lines_a else ""),
    )


def _string_leaves(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_leaves(item)


def sensitive_literals(plan):
    """String values of root variables the configuration declares ``sensitive``.

    Terraform loses sensitivity when a provider copies a value into another attribute (for
    example ``terraform_data.output``); the plan then shows it unmarked. These literals are
    masked wherever they appear in a diff or output. Strings shorter than 4 characters are
    left alone (masking them would garble everything else).
    """
    declared = ((plan.get("configuration") or {}).get("root_module") or {}).get("variables") or {}
    values = plan.get("variables") or {}
    secrets = set()
    for name, spec in declared.items():
        if isinstance(spec, dict) and spec.get("sensitive") and name in values:
            secrets.update(v for v in _string_leaves(values[name].get("value")) if len(v) >= 4)
    return sorted(secrets, key=len, reverse=True)


def scrub(value, secrets):
    """Replace every occurrence of ``secrets`` in the strings of ``value``."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if value == secret:
                return SENSITIVE
            value = value.replace(secret, SENSITIVE)
        return value
    if isinstance(value, dict):
        return dict((k, scrub(v, secrets)) for k, v in value.items())
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    return value


def plan_diff(plan, secrets=None):
    """Ansible ``diff`` list: one entry per managed resource that changes.

    Values the plan marks sensitive and literals of sensitive root variables are masked.
    """
    if secrets is None:
        secrets = sensitive_literals(plan)
    out = []
    for rc in plan.get("resource_changes") or []:
        if rc.get("mode", "managed") != "managed":
            continue
        if classify_actions((rc.get("change") or {}).get("actions")) is None:
            continue
        out.append(scrub(resource_diff(rc, secrets), secrets))
    out.sort(key=lambda d: d["before_header"])
    return out


def mask_outputs(raw, secrets=None):
    """``terraform output -json`` -> ``{name: value}`` with sensitive outputs masked.

    ``secrets`` (from :func:`sensitive_literals`) are also masked inside unmarked outputs.
    """
    out = {}
    for name, entry in (raw or {}).items():
        if not isinstance(entry, dict):
            out[name] = scrub(entry, secrets)
            continue
        out[name] = SENSITIVE if entry.get("sensitive") else scrub(entry.get("value"), secrets)
    return out


def parse_version(text):
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text or "")
    if not m:
        return None
    return tuple(int(x) for x in m.groups())


def find_terraform(binary_path=None, search_path=None):
    """The terraform binary: ``binary_path`` (must be executable) or the first on ``search_path``."""
    if binary_path:
        path = os.path.expanduser(binary_path)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise TerraformError(
                "binary_path %s is not an executable file: install terraform there or unset "
                "binary_path to use terraform from PATH" % binary_path, kind="binary")
        return path
    found = shutil.which("terraform", path=search_path)
    if not found:
        raise TerraformError(
            "terraform was not found on PATH (%s): install terraform >= %s or set "
            "binary_path" % (search_path or "", ".".join(map(str, MIN_TERRAFORM_VERSION))),
            kind="binary")
    return found


def terraform_version(binary, env=None, timeout=60):
    """``terraform version -json`` of ``binary`` -> "1.11.4" (the update check stays off).

    Raises TerraformError when it does not run, its version cannot be read or is below
    MIN_TERRAFORM_VERSION.
    """
    version = read_terraform_version(binary, env, timeout)
    if version < MIN_TERRAFORM_VERSION:
        raise TerraformError(
            "%s is terraform %s, this collection needs >= %s (JSON plan format 1.2, "
            "workspace -or-create): install a newer terraform or set binary_path"
            % (binary, ".".join(map(str, version)),
               ".".join(map(str, MIN_TERRAFORM_VERSION))), kind="terraform_version")
    return ".".join(map(str, version))


def read_terraform_version(binary, env=None, timeout=60):
    """``terraform version -json`` of ``binary`` -> (1, 11, 4); TerraformError when it cannot be read."""
    env = dict(os.environ if env is None else env, CHECKPOINT_DISABLE="1")
    try:
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            [binary, "version", "-json"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TerraformError("`%s version` did not finish within %ss: the binary is broken; reinstall "
                             "terraform >= %s" % (binary, timeout, ".".join(map(str, MIN_TERRAFORM_VERSION))),
                             kind="timeout")
    except OSError as exc:
        raise TerraformError("could not run %s: %s" % (binary, exc), kind="binary")
    rc, out, err = proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    version = None
    if rc == 0:
        try:
            version = parse_version(json.loads(out).get("terraform_version"))
        except (ValueError, AttributeError):
            version = parse_version(out)
    if version is None:
        raise TerraformError(
            "could not read the version of %s (rc=%s): %s -- is it a terraform binary?"
            % (binary, rc, (err or out).strip()[:300]), kind="binary", rc=rc)
    return version


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------

class Terraform(object):
    """Runs terraform in one root module directory.

    ``module`` is an AnsibleModule (used for the binary lookup, warnings and debug logging) or
    None. Every run is recorded in ``self.commands`` (argv only; variables never reach argv).
    """

    def __init__(self, project_path, binary_path=None, module=None, timeout=DEFAULT_TIMEOUT,
                 lock=True, lock_timeout=0, environ=None, work_dir=None):
        self.module = module
        self.work_dir = work_dir
        self.project_path = os.path.abspath(os.path.expanduser(project_path))
        self.timeout = timeout
        self.lock = lock
        self.lock_timeout = lock_timeout
        self.commands = []
        self._tmpdir = None
        base = dict(os.environ if environ is None else environ)
        base.setdefault("TF_IN_AUTOMATION", "1")
        base.setdefault("CHECKPOINT_DISABLE", "1")
        base["TF_INPUT"] = "0"
        self.env = base
        self._secrets = sorted(
            (v for k, v in base.items() if SECRET_ENV_RE.search(k) and v and len(v) >= 6),
            key=len, reverse=True)
        if not os.path.isdir(self.project_path):
            raise TerraformError(
                "project_path %s is not a directory: point project_path at a terraform root "
                "module (a directory with *.tf files)" % self.project_path, kind="project_path")
        if not any(f.endswith((".tf", ".tf.json")) for f in os.listdir(self.project_path)):
            raise TerraformError(
                "project_path %s holds no *.tf or *.tf.json file: point project_path at a "
                "terraform root module" % self.project_path, kind="project_path")
        self.binary = self._find_binary(binary_path)
        self.version = self._check_version()

    # -- plumbing ------------------------------------------------------------------------------
    def _find_binary(self, binary_path):
        return find_terraform(binary_path, self.env.get("PATH"))

    def _check_version(self):
        return terraform_version(self.binary, self.env)

    def redact(self, text):
        if not text:
            return text
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text

    def _exec(self, argv, timeout=None, record=True):
        timeout = self.timeout if timeout is None else timeout
        if record:
            self.commands.append(" ".join(argv))
        if self.module is not None:
            self.module.debug("terraform: %s" % " ".join(argv))
        # Not AnsibleModule.run_command: it has no timeout, and a timed-out terraform must get
        # SIGINT (its whole process group, providers included) so it can persist state and
        # release the lock before being killed.
        try:
            proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
                argv, cwd=self.project_path, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise TerraformError("could not run %s: %s" % (argv[0], exc), kind="binary",
                                 command=argv)
        try:
            out, err = proc.communicate(timeout=timeout if timeout and timeout > 0 else None)
        except subprocess.TimeoutExpired:
            # SIGINT lets terraform stop providers gracefully, persist state and release the lock.
            try:
                os.killpg(proc.pid, signal.SIGINT)
                out, err = proc.communicate(timeout=30)
            except (subprocess.TimeoutExpired, OSError):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                out, err = proc.communicate()
            raise TerraformError(
                "terraform %s did not finish within %ss in %s and was interrupted: raise "
                "timeout, or look at what it was waiting for (a VM that does not report its IP "
                "through the guest agent, an unreachable API endpoint): %s"
                % (argv[1] if len(argv) > 1 else "", timeout, self.project_path,
                   self.redact(" ".join(err.decode("utf-8", "replace").split())[-400:])),
                kind="timeout", command=argv,
                stdout=self.redact(out.decode("utf-8", "replace")),
                stderr=self.redact(err.decode("utf-8", "replace")))
        return (proc.returncode, self.redact(out.decode("utf-8", "replace")),
                self.redact(err.decode("utf-8", "replace")))

    def run(self, args, ok_codes=(0,), timeout=None):
        argv = [self.binary] + list(args)
        rc, out, err = self._exec(argv, timeout=timeout)
        if rc not in ok_codes:
            kind, message = explain_error(args[0], rc, out, err, self.project_path)
            raise TerraformError(message, kind=kind, rc=rc, stdout=out, stderr=err, command=argv)
        return rc, out, err

    def _lock_args(self):
        args = []
        if not self.lock:
            args.append("-lock=false")
        if self.lock_timeout:
            args.append("-lock-timeout=%ds" % self.lock_timeout)
        return args

    @property
    def tmpdir(self):
        """Private (0700) directory of the plan file and the variables file, under ``work_dir`` when set."""
        if self._tmpdir is None:
            parent = None
            if self.work_dir:
                parent = os.path.expanduser(self.work_dir)
                if not os.path.isdir(parent):
                    os.makedirs(parent, 0o700)
            self._tmpdir = tempfile.mkdtemp(prefix="cellplatform-terraform-", dir=parent)
            os.chmod(self._tmpdir, 0o700)
        return self._tmpdir

    def cleanup(self):
        if self._tmpdir and os.path.isdir(self._tmpdir):
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir = None

    # -- commands ------------------------------------------------------------------------------
    def init(self, backend_config=None, backend_config_files=None, plugin_dirs=None,
             reconfigure=False, upgrade=False):
        args = ["init", "-input=false", "-no-color"]
        for key in sorted(backend_config or {}):
            value = backend_config[key]
            if isinstance(value, bool):
                value = "true" if value else "false"
            args.append("-backend-config=%s=%s" % (key, value))
        for path in backend_config_files or []:
            args.append("-backend-config=%s" % self._existing(path, "backend_config_files"))
        for path in plugin_dirs or []:
            path = os.path.abspath(os.path.expanduser(path))
            if not os.path.isdir(path):
                raise TerraformError(
                    "plugin_dir %s is not a directory: create the provider mirror with "
                    "'terraform providers mirror %s' on a connected machine and copy it here"
                    % (path, path), kind="plugin_dir")
            args.append("-plugin-dir=%s" % path)
        if reconfigure:
            args.append("-reconfigure")
        if upgrade:
            args.append("-upgrade")
        args += self._lock_args()
        self.run(args)

    def workspace(self, name):
        """Select ``name`` (created when missing). Returns the selected workspace."""
        if not name or name == "default":
            # Honour an explicit TF_WORKSPACE if the caller set one.
            return self.env.get("TF_WORKSPACE", "default")
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise TerraformError(
                "workspace %r is not a valid terraform workspace name: use letters, digits, "
                "'-', '_' and '.'" % name, kind="workspace")
        self.env.pop("TF_WORKSPACE", None)
        self.run(["workspace", "select", "-or-create=true", "-no-color", name])
        return name

    def _existing(self, path, field):
        resolved = os.path.expanduser(path)
        if not os.path.isabs(resolved):
            resolved = os.path.join(self.project_path, resolved)
        if not os.path.isfile(resolved):
            raise TerraformError(
                "%s entry %s does not exist (relative paths are resolved against project_path "
                "%s): render it first or fix the path" % (field, path, self.project_path),
                kind=field)
        return resolved

    def plan(self, var_files=None, variables=None, destroy=False, refresh=True):
        """Run plan into a private plan file. Returns (has_changes, planfile)."""
        planfile = os.path.join(self.tmpdir, "cellplatform.tfplan")
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=%s" % planfile]
        for path in var_files or []:
            args.append("-var-file=%s" % self._existing(path, "var_files"))
        if variables:
            # A JSON var file keeps complex values typed and secrets off the command line.
            varfile = os.path.join(self.tmpdir, "cellplatform-variables.tfvars.json")
            fd = os.open(varfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(variables, handle, sort_keys=True)
            args.append("-var-file=%s" % varfile)
        if destroy:
            args.append("-destroy")
        if not refresh:
            args.append("-refresh=false")
        args += self._lock_args()
        rc, _out, _err = self.run(args, ok_codes=(0, 2))
        return rc == 2, planfile

    def show_plan(self, planfile):
        _rc, out, _err = self.run(["show", "-json", "-no-color", planfile])
        try:
            return json.loads(out)
        except ValueError as exc:
            raise TerraformError("terraform show -json printed something that is not JSON (%s): "
                                 "%s" % (exc, out[:200]), kind="show")

    def apply(self, planfile):
        args = ["apply", "-input=false", "-no-color", "-auto-approve"] + self._lock_args()
        _rc, out, _err = self.run(args + [planfile])
        return out

    def output(self):
        _rc, out, _err = self.run(["output", "-json", "-no-color"])
        try:
            return json.loads(out or "{}")
        except ValueError as exc:
            raise TerraformError("terraform output -json printed something that is not JSON "
                                 "(%s): %s" % (exc, out[:200]), kind="output")
