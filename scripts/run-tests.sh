#!/usr/bin/env bash
# Every check of the project. `make test` runs it; CI runs `make test`.
#   scripts/run-tests.sh            all stages
#   scripts/run-tests.sh pytest|molecule|playbooks|sanity|lint
# Stages that exercise the collection run inside scripts/netns-run (loopback only);
# sanity and lint are static analysis and run outside it (ansible-test installs its own tools).
# Upstream schemas (tests/support/schemacheck.py): $CELLPLATFORM_SCHEMAS, else .cache/schemas
# (`make schemas`), else every schema check is skipped and one line at the end says how many
# documents and tests were not schema-checked and how to get the full check.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-.venv}
BIN=$ROOT/$VENV/bin
export PATH="$BIN:$PATH"
export ANSIBLE_COLLECTIONS_PATH=$ROOT
export TF_CLI_CONFIG_FILE=$ROOT/scripts/terraformrc CHECKPOINT_DISABLE=1
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1
NETNS=$ROOT/scripts/netns-run
COLL=ansible_collections/cellplatform/platform
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(pytest molecule sanity lint)

# Which schema store the checks use; a configured CELLPLATFORM_SCHEMAS that is missing (or a
# stale cache) stops here with the fix (exit 2). Skipped checks are written to the ledger.
"$BIN/python" tests/support/schemacheck.py where || exit 2
CELLPLATFORM_SCHEMA_SKIPS=$(mktemp)
export CELLPLATFORM_SCHEMA_SKIPS
schema_skip_summary() {
  "$BIN/python" tests/support/schemacheck.py skip-summary "$CELLPLATFORM_SCHEMA_SKIPS" || true
  rm -f "$CELLPLATFORM_SCHEMA_SKIPS"
}
trap schema_skip_summary EXIT

declare -A took
run_stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "=== $name ==="
  "$@"
  took[$name]=$((SECONDS - start))
}

stage_pytest() {
  "$NETNS" "$BIN/pytest" -q -p no:cacheprovider -n 2 --dist loadfile "$COLL/tests/unit" tests
}

stage_molecule() {
  local scenario
  for scenario in molecule/*/; do
    scenario=$(basename "$scenario")
    [ -f "molecule/$scenario/molecule.yml" ] || continue
    "$NETNS" "$BIN/molecule" test -s "$scenario"
  done
}

stage_sanity() {
  # ansible-test works on a copy so its output never lands in the tree.
  local work
  work=$(mktemp -d)
  mkdir -p "$work/ansible_collections/cellplatform"
  cp -a "$COLL" "$work/ansible_collections/cellplatform/platform"
  rm -rf "$work/ansible_collections/cellplatform/platform/tests/output"
  (cd "$work/ansible_collections/cellplatform/platform" && git init -q && git add -A &&
     "$BIN/ansible-test" sanity --python 3.12 --color no)
  rm -rf "$work"
}

stage_lint() {
  "$BIN/ansible-lint" --profile production --offline
}

for s in "${stages[@]}"; do
  run_stage "$s" "stage_$s"
done
echo "=== timings (s) ==="
for s in "${stages[@]}"; do echo "$s: ${took[$s]}"; done
