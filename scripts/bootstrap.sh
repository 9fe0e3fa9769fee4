#!/usr/bin/env bash
# Create the project venv (first use of `make render` / `make test`): find Python >= 3.12,
# install the pinned tool chain, and prepare ansible-test for machines without its CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY=$(scripts/find-python.sh)
echo "cellplatform: creating $VENV with $($PY --version) ($PY)"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# ansible-test bootstraps pip inside its own venvs with a get-pip script it downloads from a
# CDN this project cannot assume is reachable. It looks in its cache first; this stand-in
# uses the interpreter's bundled ensurepip, then installs what ansible-test asked for with the
# caller's environment (pip configuration, CA bundle) preserved.
pip_version=$("$VENV/bin/python" - <<'PYEOF'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PYEOF
)
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
cat > "$cache" <<'PYEOF'
"""Offline stand-in for ansible-test's get-pip bootstrap script (written by scripts/bootstrap.sh)."""
import os
import subprocess
import sys

env = dict(os.environ)
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, env=env,
               stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env))
PYEOF
echo "cellplatform: venv ready ($VENV)"
