#!/usr/bin/env python3
"""Generate docs/network-policy-matrix.md: the network policies of the reference cell and what they allow.

    scripts/netns-run .venv/bin/python scripts/gen-network-policy-matrix.py           # (re)write the file
    scripts/netns-run .venv/bin/python scripts/gen-network-policy-matrix.py --check   # exit 1 when stale

Renders L6 (playbooks/l6.yml, render mode) for inventories/production into a temporary build root:
L6 reads every layer's component records and writes the policies and their matrix
(l6/network-policies/matrix.md), which becomes the document. The render is offline and writes
nothing outside the temporary directory; run it inside scripts/netns-run like every playbook.
tests/integration/test_l6_network_policies.py fails when the committed file differs from a fresh render.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "network-policy-matrix.md"


def render_matrix():
    with tempfile.TemporaryDirectory(prefix="netpol-matrix-") as tmp:
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO), ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1")
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
               str(REPO / "inventories" / "production" / "hosts.yml"), str(REPO / "playbooks" / "l6.yml"),
               "-e", json.dumps({"cellplatform_mode": "render", "cellplatform_build_root": tmp})]
        proc = subprocess.run(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:])
            raise SystemExit("rendering L6 failed (exit %d); see the output above" % proc.returncode)
        return (Path(tmp) / "cell" / "l6" / "network-policies" / "matrix.md").read_text(encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is not current")
    args = parser.parse_args(argv)
    text = render_matrix()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else None
        if current != text:
            print("%s is stale; run scripts/netns-run .venv/bin/python scripts/gen-network-policy-matrix.py"
                  % OUTPUT.relative_to(REPO))
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print("wrote %s" % OUTPUT.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
