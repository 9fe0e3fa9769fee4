#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter (current Ansible needs it).
# Order: python3.12 (what CI's `ansible-test sanity --python 3.12` needs), python3.13, python3,
# then pyenv-installed 3.12.x, then newer pyenv versions.
set -euo pipefail
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
for cand in python3.12 python3.13 python3; do
  if p=$(command -v "$cand" 2>/dev/null) && ok "$p"; then echo "$p"; exit 0; fi
done
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for p in $(ls -d "$root"/versions/3.12*/bin/python 2>/dev/null | sort -rV) \
           $(ls -d "$root"/versions/3.1[3-9]*/bin/python 2>/dev/null | sort -V); do
    if ok "$p"; then echo "$p"; exit 0; fi
  done
fi
echo "error: no Python >= 3.12 found (tried python3.13, python3.12, python3, pyenv versions)." >&2
echo "fix: install Python 3.12+ (e.g. 'pyenv install 3.12') and re-run." >&2
exit 1
