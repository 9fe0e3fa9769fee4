#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: plaintext_dir
short_description: Keep the cell's private plaintext directory empty between the steps that decrypt
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - The cell's plaintext directory (C(cellplatform_cell.plaintext_dir), inside the work directory)
    holds every file a run decrypts - talosconfig, machine configs, kubeconfig, keys, the modules'
    temporary files - and only while the step that needs it runs. Each step removes its own files;
    this module is the backstop around them.
  - With O(state=clean) (before the first step that decrypts), every file still in the directory
    was left by a run that was killed; the module removes the directory's content, names the files
    in a warning and in RV(removed), and never reads them. The directory (and a missing work
    directory above it) is created with mode C(0700); an existing one is set to C(0700). Empty
    subdirectories are left alone, so a rerun after a clean run changes nothing.
  - With O(state=empty) (after the steps, also when they failed) everything in the directory is
    removed; the directory itself stays, so the next O(state=clean) has nothing to change.
  - Runs on the controller. It never returns or logs file content.
options:
  path:
    description: The plaintext directory, normally C(cellplatform_cell.plaintext_dir).
    type: path
    required: true
  state:
    description:
      - C(clean) - before the steps; what is left is an interrupted run's and is removed with a warning;
        the directory exists with mode C(0700).
      - C(empty) - after the steps; their own files are removed without a warning.
    type: str
    choices: [clean, empty]
    default: clean
attributes:
  check_mode:
    support: full
    description:
      - Reports what would be removed or created without doing it. The roles run it with
        C(check_mode=false), because the directory is this controller's private cache, not the cell, and
        a check-mode preview decrypts into it too.
  diff_mode:
    support: none
    description: File contents are never shown.
seealso:
  - module: cellplatform.platform.sops_file
'''

EXAMPLES = r'''
- name: Remove what an interrupted run left; create the private plaintext directory
  cellplatform.platform.plaintext_dir:
    path: "{{ cellplatform_cell.plaintext_dir }}"
    state: clean
  check_mode: false

- name: Nothing decrypted outlives the run (the run's own files, not reported as a change)
  cellplatform.platform.plaintext_dir:
    path: "{{ cellplatform_cell.plaintext_dir }}"
    state: empty
  check_mode: false
  changed_when: false
'''

RETURN = r'''
path:
  description: The plaintext directory (absolute).
  returned: always
  type: str
  sample: /home/ops/.cache/cellplatform/cell/plaintext
removed:
  description:
    - Files (relative to RV(path)) that were (or, in check mode, would be) removed - with O(state=clean)
      the ones an interrupted run had left.
  returned: always
  type: list
  elements: str
  sample: [nodes/cp-1.yaml, talosconfig]
'''

import os
import shutil

from ansible.module_utils.basic import AnsibleModule

PRIVATE = 0o700


def leftover_files(path):
    """Files below ``path`` (relative, sorted); symlinks count as files and are never followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.append(os.path.relpath(os.path.join(dirpath, name), path))
    return sorted(found)


def remove_entry(entry):
    if os.path.isdir(entry) and not os.path.islink(entry):
        shutil.rmtree(entry)
    else:
        os.unlink(entry)


def make_private_dirs(path):
    """Create ``path`` and missing ancestors with mode 0700; -> the directories created."""
    missing = []
    current = path
    while not os.path.exists(current):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        os.mkdir(directory, PRIVATE)
        os.chmod(directory, PRIVATE)
    return list(reversed(missing))


def clean(module, path):
    result = dict(changed=False, path=path, removed=[])
    if os.path.exists(path) and not os.path.isdir(path):
        module.fail_json(msg="%s exists but is not a directory: move it away; the plaintext directory of the cell "
                             "must be a private directory" % path, **result)
    if not os.path.isdir(path):
        result["changed"] = True
        if not module.check_mode:
            make_private_dirs(path)
        return result
    removed = leftover_files(path)
    if removed:
        result.update(changed=True, removed=removed)
        module.warn("an interrupted run left %d decrypted file(s) in %s (%s); they were removed and nothing of them "
                    "was used" % (len(removed), path, ", ".join(removed)))
        if not module.check_mode:
            for name in sorted(os.listdir(path)):
                remove_entry(os.path.join(path, name))
    if os.stat(path).st_mode & 0o777 != PRIVATE:
        result["changed"] = True
        if not module.check_mode:
            os.chmod(path, PRIVATE)
    return result


def empty(module, path):
    result = dict(changed=False, path=path, removed=[])
    if not os.path.isdir(path) or os.path.islink(path):
        return result
    entries = sorted(os.listdir(path))
    if entries:
        result.update(changed=True, removed=leftover_files(path))
        if not module.check_mode:
            for name in entries:
                remove_entry(os.path.join(path, name))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", choices=["clean", "empty"], default="clean"),
        ),
        supports_check_mode=True,
    )
    path = os.path.abspath(module.params["path"])
    if module.params["state"] == "empty":
        module.exit_json(**empty(module, path))
    module.exit_json(**clean(module, path))


if __name__ == "__main__":
    main()
