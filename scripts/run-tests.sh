#!/usr/bin/env bash
# Every check of the project. `make test` runs it; CI runs `make test`.
#   scripts/run-tests.sh            all stages
#   scripts/run-tests.sh pytest|molecule|playbooks|sanity|lint
#   CELLPLATFORM_EXTENDED=1 scripts/run-tests.sh pytest   also the extended suite (day-2 scenarios)
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

# Three workers on two cores: the apply tests wait on their doubles (rollouts, CRDs, polls) as much
# as they compute. Tests marked `extended` (the day-2 scenario suite) run only with
# CELLPLATFORM_EXTENDED=1 (`make test-extended`); the slowest files are listed at the end.
stage_pytest() {
  local select=(-m "not extended")
  [ "${CELLPLATFORM_EXTENDED:-0}" = 1 ] && select=()
  "$NETNS" "$BIN/pytest" -q -p no:cacheprovider -n "${PYTEST_WORKERS:-3}" --dist loadfile --durations=15 \
    "${select[@]}" "$COLL/tests/unit" tests
}

# Scenarios are independent (each renders into its own ephemeral directory) and mostly
# single-threaded Ansible, so they run MOLECULE_JOBS at a time (default: the CPU count); each
# one's output is printed whole when it ends, and the stage fails if any scenario failed.
stage_molecule() {
  local jobs=${MOLECULE_JOBS:-$(nproc)} logs scenario failed=()
  logs=$(mktemp -d)
  local scenarios=()
  for scenario in molecule/*/; do
    scenario=$(basename "$scenario")
    if [ -f "molecule/$scenario/molecule.yml" ]; then scenarios+=("$scenario"); fi
  done
  printf '%s\n' "${scenarios[@]}" | xargs -P "$jobs" -I{} bash -c \
    '"$0" "$1" test -s "$2" >"$3/$2.log" 2>&1; echo $? >"$3/$2.rc"; echo "--- molecule $2: exit $(cat "$3/$2.rc")"' \
    "$NETNS" "$BIN/molecule" {} "$logs"
  for scenario in "${scenarios[@]}"; do
    echo "=== molecule $scenario ==="
    cat "$logs/$scenario.log"
    [ "$(cat "$logs/$scenario.rc" 2>/dev/null)" = 0 ] || failed+=("$scenario")
  done
  rm -rf "$logs"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "molecule scenarios failed: ${failed[*]}" >&2
    return 1
  fi
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

# sanity and lint are static, single-threaded and independent: when a run has both, they run side
# by side (each one's output printed whole when both are done) and the run fails if either failed.
run_static_pair() {
  local logs start=$SECONDS rc_sanity=0 rc_lint=0
  logs=$(mktemp -d)
  (stage_sanity >"$logs/sanity.log" 2>&1) & local pid_sanity=$!
  (stage_lint >"$logs/lint.log" 2>&1) & local pid_lint=$!
  wait "$pid_sanity" || rc_sanity=$?
  wait "$pid_lint" || rc_lint=$?
  echo "=== sanity ==="; cat "$logs/sanity.log"
  echo "=== lint ==="; cat "$logs/lint.log"
  rm -rf "$logs"
  took[sanity]=$((SECONDS - start)); took[lint]=${took[sanity]}
  [ "$rc_sanity" = 0 ] && [ "$rc_lint" = 0 ]
}

static_done=0
for s in "${stages[@]}"; do
  if [ "$s" = sanity ] || [ "$s" = lint ]; then
    if [[ " ${stages[*]} " == *" sanity "* && " ${stages[*]} " == *" lint "* ]]; then
      if [ "$static_done" = 0 ]; then
        static_done=1
        run_static_pair
      fi
      continue
    fi
  fi
  run_stage "$s" "stage_$s"
done
echo "=== timings (s) ==="
for s in "${stages[@]}"; do echo "$s: ${took[$s]}"; done
