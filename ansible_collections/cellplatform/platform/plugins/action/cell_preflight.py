# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side preflight: validate every cellplatform_* variable at once, set cellplatform_cell."""

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
    validate,
)
from ansible_collections.cellplatform.platform.plugins.plugin_utils.cell_schema import HOST_VARIABLES

NODE_VARS = HOST_VARIABLES
_UNSET = object()


def _problem(field, value, problem, fix):
    return {"field": field, "value": value, "message": "%s: %s %s" % (field, value, problem), "fix": fix}


class ActionModule(ActionBase):
    """Pure inventory validation; never runs a command, never touches the network."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("layers", "mode"))
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
        """-> (variables, hosts, problems) from task_vars; templating errors become problems."""
        problems = []
        variables = {}
        for name in sorted(n for n in task_vars if n.startswith("cellplatform_") and n not in NODE_VARS):
            value = self._template(name, task_vars[name], problems)
            if value is not _UNSET:
                variables[name] = value
        groups = task_vars.get("groups") or {}
        hostvars = task_vars.get("hostvars") or {}
        hosts = {"cell": list(groups.get("cell") or [])}
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
            hosts[group] = members
        return variables, hosts, problems

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
        mode = args.get("mode")
        if mode is not None and mode not in MODES:
            problems.append(_problem("mode (task option)", to_text(mode), "is not one of %s" % ", ".join(MODES),
                                     "pass mode: render or mode: apply, or leave it out."))
            mode = None

        variables, hosts, template_problems = self.collect(task_vars)
        problems.extend(template_problems)
        untemplated = set(p["field"] for p in template_problems)
        # a variable that could not be templated is not reported a second time as "not set"
        problems.extend(p for p in validate(variables, hosts, layers=layers, mode=mode)
                        if not (p["field"] in untemplated and p["value"] is None))
        if problems:
            result["failed"] = True
            result["problems"] = problems
            result["msg"] = format_problems(problems)
            return result
        cell = build_cell_model(variables, hosts, mode=mode)
        if VariableLayer is not None:
            # Like set_fact: a host variable for this play, not a gathered fact (ansible-core
            # 2.21 deprecates reading injected facts as top-level variables).
            self.register_host_variables({"cellplatform_cell": cell}, VariableLayer.EPHEMERAL_FACT)
            self.register_host_variables({}, VariableLayer.CACHEABLE_FACT)
        else:  # pragma: no cover - ansible-core < 2.21
            result["ansible_facts"] = {"cellplatform_cell": cell}
        result["cell"] = cell
        result["layers"] = sorted(set(layers) | {"l0"})
        result["problems"] = []
        result["msg"] = "Preflight passed: cell %s, %d nodes, layers %s." % (
            cell["name"], len(cell["nodes"]), ", ".join(result["layers"]))
        return result
