# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side preflight: validate every cellplatform_* variable at once, set cellplatform_cell.

In apply mode it also checks this controller (tools, age identity, platform secret keys,
directories) through plugin_utils/prerequisites.py, and reports those problems together with
the inventory's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

try:
    from ansible.plugins.action import VariableLayer
except ImportError:  # pragma: no cover - ansible-core < 2.21
    VariableLayer = None

from ansible_collections.cellplatform.platform.plugins.module_utils.cell_model import (
    LAYERS,
    MODES,
    build_cell_model,
    format_problems,
)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.cell_schema import HOST_VARIABLES
from ansible_collections.cellplatform.platform.plugins.plugin_utils.inventory_check import NOT_INPUTS, check_inventory
from ansible_collections.cellplatform.platform.plugins.plugin_utils import prerequisites

NODE_VARS = HOST_VARIABLES
_UNSET = object()
# Host variable of this run (like cellplatform_cell): the prerequisites an earlier preflight on this
# host already found in place, and whether it already showed the warnings. The preflight runs at the
# start of every play; this keeps it from asking the tools and repeating warnings each time.
DONE_VAR = "cell_preflight__done"


def _problem(field, value, problem, fix):
    return {"field": field, "value": value, "message": "%s: %s %s" % (field, value, problem), "fix": fix}


class ActionModule(ActionBase):
    """Inventory validation (pure) and, in apply mode, this controller's prerequisites.

    Render mode runs no command and reads no file. Apply mode runs only ``<tool> version`` of
    talosctl, terraform and helm and reads the age identity and the cell's encrypted files;
    it never touches the network or a node.
    """

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("layers", "mode", "prerequisites", "talosctl_path"))
    _requires_connection = False

    def _template(self, name, value, problems):
        try:
            return self._templar.template(value)
        except AnsibleError as exc:
            reason = to_text(exc).splitlines()[0]
            fix = "define every variable the expression uses, or write the value literally."
            if "inventory_dir" in reason:
                fix = ("run against an inventory that lists localhost as an explicit host (all.hosts.localhost, "
                       "as inventories/production/hosts.yml does) so that inventory_dir is set.")
            problems.append(_problem(name, to_text(value), "cannot be templated (%s)" % reason, fix))
            return _UNSET

    def collect(self, task_vars):
        """-> (variables, hosts, host_names, problems) from task_vars; templating errors become problems.

        ``host_names``: per node, the cellplatform_* variables set on that host only (not seen by
        this host), for the unknown-name check.
        """
        problems = []
        variables = {}
        for name in sorted(n for n in task_vars if n.startswith("cellplatform_") and n not in NODE_VARS
                           and n not in NOT_INPUTS):
            value = self._template(name, task_vars[name], problems)
            if value is not _UNSET:
                variables[name] = value
        groups = task_vars.get("groups") or {}
        hostvars = task_vars.get("hostvars") or {}
        hosts = {"cell": list(groups.get("cell") or [])}
        host_names = {}
        for group in ("controlplane", "workers"):
            members = {}
            for host in groups.get(group) or []:
                hvars = hostvars.get(host) or {}
                node = {}
                for key in NODE_VARS:
                    if key in hvars:
                        value = self._template("%s.%s" % (host, key), hvars[key], problems)
                        if value is not _UNSET:
                            node[key] = value
                members[host] = node
                own = dict((key, hvars[key]) for key in hvars if key.startswith("cellplatform_")
                           and key not in NODE_VARS and key not in task_vars and key not in NOT_INPUTS)
                if own:
                    host_names[host] = own
            hosts[group] = members
        return variables, hosts, host_names, problems

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = self._task.args
        result["changed"] = False
        problems = []

        layers = args.get("layers", list(LAYERS))
        if isinstance(layers, str):
            layers = [item.strip() for item in layers.split(",") if item.strip()]
        if not isinstance(layers, (list, tuple)) or any(item not in LAYERS for item in layers):
            problems.append(_problem("layers (task option)", to_text(layers), "is not a list of %s" % ", ".join(LAYERS),
                                     "pass layers as a list such as [l0, l1]."))
            layers = list(LAYERS)
        needs = args.get("prerequisites", layers)
        if isinstance(needs, str):
            needs = [item.strip() for item in needs.split(",") if item.strip()]
        if not isinstance(needs, (list, tuple)) or any(item not in LAYERS for item in needs):
            problems.append(_problem("prerequisites (task option)", to_text(needs), "is not a list of %s" % ", ".join(LAYERS),
                                     "pass prerequisites as a list such as [l1], or leave it out."))
            needs = layers
        mode = args.get("mode")
        if mode is not None and mode not in MODES:
            problems.append(_problem("mode (task option)", to_text(mode), "is not one of %s" % ", ".join(MODES),
                                     "pass mode: render or mode: apply, or leave it out."))
            mode = None

        variables, hosts, host_names, template_problems = self.collect(task_vars)
        problems.extend(template_problems)
        untemplated = set(p["field"] for p in template_problems)
        found, warnings = check_inventory(variables, hosts, layers=layers, mode=mode, host_names=host_names)
        # a variable that could not be templated is not reported a second time as "not set"
        problems.extend(p for p in found if not (p["field"] in untemplated and p["value"] is None))
        where = "in the inventory"
        done = task_vars.get(DONE_VAR) if isinstance(task_vars.get(DONE_VAR), dict) else {}
        checked = set(done.get("checked") or ())
        if (mode or variables.get("cellplatform_mode")) == "apply":
            # This controller: tools, identity, platform secret keys and directories of this run.
            reqs = [req for req in prerequisites.requirements(
                variables, needs, task_vars.get("ansible_run_tags"), task_vars.get("ansible_skip_tags"),
                prerequisites.secret_key_names(task_vars)) if req["id"] not in checked]
            local, notes = prerequisites.check(reqs, variables, talosctl_path=args.get("talosctl_path") or None)
            problems.extend(local)
            warnings.extend(notes)
            result["prerequisites"] = [req["id"] for req in reqs]
            checked.update(result["prerequisites"])
            if local:
                where = "in the inventory and on this controller"
        if warnings and not done.get("warned"):
            result["warnings"] = warnings
        if problems:
            result["failed"] = True
            result["problems"] = problems
            result["msg"] = format_problems(problems, where)
            return result
        cell = build_cell_model(variables, hosts, mode=mode)
        if VariableLayer is not None:
            # Like set_fact: a host variable for this play, not a gathered fact (ansible-core
            # 2.21 deprecates reading injected facts as top-level variables).
            self.register_host_variables({"cellplatform_cell": cell, DONE_VAR: {
                "checked": sorted(checked), "warned": bool(done.get("warned") or warnings)}},
                VariableLayer.EPHEMERAL_FACT)
            self.register_host_variables({}, VariableLayer.CACHEABLE_FACT)
        else:  # pragma: no cover - ansible-core < 2.21
            result["ansible_facts"] = {"cellplatform_cell": cell}
        result["cell"] = cell
        result["layers"] = sorted(set(layers) | {"l0"})
        result["problems"] = []
        result["msg"] = "Preflight passed: cell %s, %d nodes, layers %s." % (
            cell["name"], len(cell["nodes"]), ", ".join(result["layers"]))
        return result
