# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: age_secret
short_description: Read a value from an age-encrypted YAML mapping
version_added: 0.1.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Decrypts an age-encrypted YAML file (such as C(<secrets_dir>/platform.yaml.age)) on the
    controller and returns the value of each requested key.
  - A key may be a dotted path into nested mappings (C(git.password)).
  - "Use the result only in tasks with C(no_log: true); the lookup never writes plaintext to disk."
options:
  _terms:
    description: Keys to look up (dotted paths into the mapping).
    required: true
    type: list
    elements: str
  file:
    description: The age-encrypted YAML file.
    type: path
    required: true
  identity:
    description: The age identity file (C(AGE-SECRET-KEY-1...) lines; the SOPS key file works).
    type: path
    default: ~/.config/sops/age/keys.txt
  default:
    description: Returned for a missing key instead of failing. Unset means a missing key is an error.
    type: raw
requirements:
  - pyrage >= 1.2
seealso:
  - module: cellplatform.platform.age_file
'''

EXAMPLES = r'''
- name: Create the external-dns TSIG secret
  kubernetes.core.k8s:
    kubeconfig: "{{ cellplatform_kubeconfig }}"
    definition:
      apiVersion: v1
      kind: Secret
      metadata: {name: external-dns-tsig, namespace: external-dns}
      stringData:
        tsig-secret: >-
          {{ lookup('cellplatform.platform.age_secret', 'tsig_secret',
                    file=cellplatform_cell.secrets_dir ~ '/platform.yaml.age',
                    identity=cellplatform_age_identity) }}
  no_log: true
'''

RETURN = r'''
_raw:
  description: The value of each requested key (any YAML type).
  type: list
  elements: raw
'''

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase

from ansible_collections.cellplatform.platform.plugins.module_utils import age_crypto

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

_MISSING = object()


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        path = self.get_option('file')
        identity = self.get_option('identity') or age_crypto.DEFAULT_IDENTITY
        default = self.get_option('default') if 'default' in kwargs else _MISSING
        if not HAS_YAML:
            raise AnsibleLookupError('age_secret needs PyYAML on the controller')
        try:
            plaintext = age_crypto.decrypt_file(path, identity)
        except age_crypto.AgeError as exc:
            raise AnsibleLookupError(to_native(exc))
        try:
            data = yaml.safe_load(plaintext)
        except yaml.YAMLError as exc:
            mark = getattr(exc, 'problem_mark', None)
            where = ' at line %d' % (mark.line + 1) if mark is not None else ''
            raise AnsibleLookupError('%s decrypts, but is not valid YAML%s; decrypt it with '
                                     'cellplatform.platform.age_file, fix it and encrypt it again' % (path, where))
        if not isinstance(data, dict):
            raise AnsibleLookupError('%s must hold a YAML mapping of secret names to values, found %s; '
                                     'rewrite it as "name: value" lines' % (path, type(data).__name__))
        values = []
        for term in terms:
            node = data
            for part in str(term).split('.'):
                node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
                if node is _MISSING:
                    break
            if node is _MISSING:
                if default is not _MISSING:
                    values.append(default)
                    continue
                available = ', '.join(sorted(str(k) for k in data)) or 'none'
                raise AnsibleLookupError(
                    'key %r is not in %s (top-level keys there: %s); add it to that file (decrypt with '
                    'cellplatform.platform.age_file, edit, encrypt again) or fix the key name'
                    % (str(term), path, available))
            values.append(node)
        return values
