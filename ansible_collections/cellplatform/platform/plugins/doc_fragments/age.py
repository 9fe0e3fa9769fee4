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
      - Public age keys (C(age1...)) or SSH public keys (C(ssh-ed25519 ...)) the secrets are
        encrypted to. Usually C(cellplatform_age_recipients).
      - Required whenever something has to be encrypted; an empty list is an error that says so.
    type: list
    elements: str
    default: []
  age_identity:
    description:
      - Path of the age identity file used to decrypt, in the format of C(age-keygen) and SOPS
        (C(AGE-SECRET-KEY-1...) lines, C(#) comments, several keys allowed).
      - Usually C(cellplatform_age_identity).
    type: path
    default: ~/.config/sops/age/keys.txt
requirements:
  - pyrage >= 1.2 (Python bindings of the Rust age implementation; same file format as the age CLI and SOPS)
notes:
  - age ciphertext is random, so files are only rewritten when their decrypted content differs
    (or the number of recipients changed); a rerun reports C(changed=false) and leaves the
    encrypted files byte-identical.
'''
