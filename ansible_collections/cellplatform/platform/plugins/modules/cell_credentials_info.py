#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cellplatform contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cell_credentials_info
short_description: Report when the admin client certificates of the cell's talosconfig and kubeconfig expire
version_added: 0.2.0
author:
  - cellplatform contributors (@cellplatform)
description:
  - Decrypts each SOPS file of O(files) in memory (never on disk, through the collection's sops runner), reads the client certificates it holds - every
    context's C(crt) of a talosconfig, every user's C(client-certificate-data) of a kubeconfig - and reports when each
    expires (C(notAfter)), read with the C(cryptography) library.
  - Talos issues both for one year. A certificate that expires within O(warn_days) days (or has expired) produces a
    warning naming the file and the fix (the C(renew-credentials.yml) playbook).
  - Only reports; it decides nothing. A file that is missing, cannot be parsed, or a certificate that cannot be
    read is reported with status V(unknown), never as an error - the report must not stop a run.
  - Never returns certificate or key material.
options:
  files:
    description: The SOPS-encrypted talosconfig and kubeconfig files to look at (absolute paths), by name.
    type: dict
    required: true
  warn_days:
    description: Warn when a certificate expires within this many days.
    type: int
    default: 30
extends_documentation_fragment:
  - cellplatform.platform.sops
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: No diff is returned.
requirements:
  - cryptography (without it every certificate is reported as V(unknown))
seealso:
  - module: cellplatform.platform.talos_config
  - module: cellplatform.platform.talos_kubeconfig
'''

EXAMPLES = r'''
- name: Warn 30 days before the admin credentials expire
  cellplatform.platform.cell_credentials_info:
    files:
      talosconfig: "{{ cellplatform_cell.secrets.talosconfig }}"
      kubeconfig: "{{ cellplatform_cell.secrets.kubeconfig }}"
    age_identity: "{{ cellplatform_cell.age.identity }}"
    warn_days: 30
'''

RETURN = r'''
credentials:
  description: Per file name of O(files), what was found.
  returned: always
  type: dict
  sample:
    talosconfig:
      status: ok
      expires: "2027-12-06T21:43:00+00:00"
      days_left: 364
      certificates: [{name: cell, expires: "2027-12-06T21:43:00+00:00", days_left: 364, status: ok}]
  contains:
    status:
      description: V(ok), V(expiring) (within O(warn_days)), V(expired), V(missing) or V(unknown) - the worst of its certificates.
      type: str
    expires:
      description: The earliest C(notAfter) of its certificates (ISO 8601, UTC), or null.
      type: str
    days_left:
      description: Whole days until then (negative once expired), or null.
      type: int
    certificates:
      description: Each client certificate - the context (talosconfig) or user (kubeconfig) name, expiry, status and why
        it is V(unknown) (C(reason)).
      type: list
      elements: dict
expiring:
  description: Names of O(files) whose status is V(expiring) or V(expired).
  returned: always
  type: list
  elements: str
  sample: []
'''

import base64
import datetime
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cellplatform.platform.plugins.module_utils.sops import SOPS_COMMON_ARGS, Sops, SopsError

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

try:
    from cryptography import x509
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported as "unknown"
    x509 = None
    HAS_CRYPTOGRAPHY = False

RANK = {'ok': 0, 'unknown': 1, 'missing': 1, 'expiring': 2, 'expired': 3}


def certificates_of(doc):
    """[(name, base64 PEM)] of the client certificates in a talosconfig or kubeconfig document."""
    found = []
    if not isinstance(doc, dict):
        return found
    for name, ctx in sorted((doc.get('contexts') or {}).items()) if isinstance(doc.get('contexts'), dict) else []:
        if isinstance(ctx, dict) and ctx.get('crt'):
            found.append((str(name), ctx['crt']))
    for user in doc.get('users') or [] if isinstance(doc.get('users'), list) else []:
        data = ((user or {}).get('user') or {}).get('client-certificate-data') if isinstance(user, dict) else None
        if data:
            found.append((str(user.get('name')), data))
    return found


def not_after(b64_pem):
    """The certificate's notAfter (aware UTC datetime); ValueError when it cannot be read."""
    if not HAS_CRYPTOGRAPHY:
        raise ValueError('the Python library cryptography is not installed')
    try:
        pem = base64.b64decode(b64_pem, validate=True)
    except (TypeError, ValueError):
        raise ValueError('the certificate is not base64')
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except Exception:  # cryptography raises ValueError and others for garbage
        raise ValueError('the certificate is not a PEM X.509 certificate')
    when = getattr(cert, 'not_valid_after_utc', None)
    if when is None:  # cryptography < 42
        when = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return when


def judge(when, now, warn_days):
    days = int((when - now).total_seconds() // 86400)
    if when <= now:
        return 'expired', days
    if when - now <= datetime.timedelta(days=warn_days):
        return 'expiring', days
    return 'ok', days


def inspect(path, sops, warn_days, now):
    if not os.path.exists(path):
        return dict(status='missing', expires=None, days_left=None, certificates=[], reason='no such file')
    try:
        doc = yaml.safe_load(sops.decrypt_file(path))
    except (SopsError, yaml.YAMLError) as exc:
        reason = str(exc) if isinstance(exc, SopsError) else 'not YAML'
        return dict(status='unknown', expires=None, days_left=None, certificates=[], reason=reason)
    certs = []
    for name, data in certificates_of(doc):
        try:
            when = not_after(data)
        except ValueError as exc:
            certs.append(dict(name=name, status='unknown', expires=None, days_left=None, reason=str(exc)))
            continue
        status, days = judge(when, now, warn_days)
        certs.append(dict(name=name, status=status, expires=when.isoformat(), days_left=days))
    if not certs:
        return dict(status='unknown', expires=None, days_left=None, certificates=[],
                    reason='no client certificate found in it')
    worst = max(certs, key=lambda c: RANK[c['status']])['status']
    dated = [c for c in certs if c['expires']]
    first = min(dated, key=lambda c: c['expires']) if dated else None
    return dict(status=worst, expires=first['expires'] if first else None,
                days_left=first['days_left'] if first else None, certificates=certs)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            SOPS_COMMON_ARGS,
            files=dict(type='dict', required=True),
            warn_days=dict(type='int', default=30),
        ),
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg='PyYAML is required on the controller')
    now = datetime.datetime.now(datetime.timezone.utc)
    found = {}
    sops = Sops(module.params['age_identity'], binary=module.params['sops_binary'])
    for name in sorted(module.params['files']):
        path = str(module.params['files'][name])
        found[name] = inspect(path, sops, module.params['warn_days'], now)
    expiring = [n for n in sorted(found) if found[n]['status'] in ('expiring', 'expired')]
    for name in expiring:
        info = found[name]
        module.warn("the admin client certificate in the cell's %s %s on %s (%d days); renew it with "
                    "`ansible-playbook playbooks/renew-credentials.yml` (new certificates from the cell's secrets bundle, "
                    "the cluster PKI is not touched)"
                    % (name, 'expired' if info['status'] == 'expired' else 'expires', info['expires'],
                       info['days_left']))
    module.exit_json(changed=False, credentials=found, expiring=expiring)


if __name__ == '__main__':
    main()
