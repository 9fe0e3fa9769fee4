# -*- coding: utf-8 -*-
# Copyright: (c) 2026, cellplatform developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret values by key (filter secret_values) and the Argo CD age key file (filter age_keys_for)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.module_utils.age_keys import AgeKeyError, key_file_for
from ansible_collections.cellplatform.platform.plugins.plugin_utils.render import to_plain
from ansible_collections.cellplatform.platform.plugins.plugin_utils.secret_values import SecretValueError, pick


def secret_values(mapping, keys, source):
    """The values of ``keys`` (dotted paths) in a decrypted secrets mapping, in order."""
    if isinstance(keys, str):
        keys = [keys]
    try:
        return pick(to_plain(mapping), [str(k) for k in keys], str(source))
    except SecretValueError as exc:
        raise AnsibleFilterError("secret_values: %s" % exc)


def age_keys_for(identity_file, recipients):
    """Text of an age key file with only the keys of ``identity_file`` whose public keys are in ``recipients``."""
    try:
        return key_file_for(str(identity_file), [str(r) for r in recipients or []])
    except AgeKeyError as exc:
        raise AnsibleFilterError("age_keys_for: %s" % exc)


class FilterModule:
    def filters(self):
        return {"secret_values": secret_values, "age_keys_for": age_keys_for}
