#!/usr/bin/env bash
# A prompt change ships, and a regression is caught before users see it.
#
# On a fresh store of its own, offline, with the local model:
#   1. pat (prompt engineer) writes a prompt that answers from the reference
#      passage, and imports the Python reference golden set;
#   2. the admin approves it, the eval gate runs the golden set, and the
#      gated production label moves to it;
#   3. pat proposes a worse version that drops the passage, and the admin
#      approves it without looking;
#   4. the eval gate against production fails with exit code 1 and names the
#      flipped cases, the label move is refused, and production stays put.
#
# Exits 0 when every step went as described. Extra arguments for the eval
# commands (such as --limit 12) can be given in SCENARIO_EVAL_ARGS.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
keelway=${KEELWAY:-$root/.venv/bin/keelway}
python=${PYTHON:-$root/.venv/bin/python}
work=${SCENARIO_DIR:-$(mktemp -d)}
golden=$root/src/keelway/evals/examples/python-reference.yaml
read -r -a eval_args <<< "${SCENARIO_EVAL_ARGS:-}"

export KEELWAY_HOME=$work/home
config=$work/keelway.yaml
unset KEELWAY_USER_KEY

step() { printf '\n== %s\n' "$*"; }
fail() { printf '\nscenario failed: %s\n' "$*" >&2; exit 1; }
kw() { "$keelway" "$@" --config "$config"; }
as() { local key=$1; shift; KEELWAY_USER_KEY=$key "$keelway" "$@" --config "$config"; }
key_of() { "$python" -c 'import json, sys; print(json.load(sys.stdin)["key"])'; }

step "a fresh store in $work, with the production label gated"
mkdir -p "$KEELWAY_HOME"
"$keelway" init "$config" >/dev/null || fail "init"
sed -i 's/^  gated_labels: \[\]$/  gated_labels: [production]/' "$config"
grep -q '^  gated_labels: \[production\]$' "$config" || fail "could not gate production"

step "users: an admin and pat, a prompt engineer"
admin=$(kw users create admin --role admin --json | key_of) || fail "admin"
pat=$(as "$admin" users create pat --role prompt_engineer --json | key_of) || fail "pat"

step "pat writes the prompt and imports the golden set"
as "$pat" prompt create python-answer --file "$here/answer-from-passage.yaml" \
    || fail "prompt create"
as "$pat" dataset import python-reference "$golden" || fail "dataset import"

step "the admin approves 1.0.0; the gate runs the golden set"
as "$admin" prompt approve python-answer 1.0.0 || fail "approve 1.0.0"
as "$pat" eval gate --candidate python-answer@1.0.0 --dataset python-reference \
    --min-pass-rate 0.2 --concurrency 2 "${eval_args[@]}" \
    || fail "the gate of 1.0.0 did not pass"

step "the gate passed, so production moves to 1.0.0"
as "$admin" prompt label python-answer production 1.0.0 || fail "label 1.0.0"

step "pat proposes a version without the passage; the admin approves it"
as "$pat" prompt propose python-answer --file "$here/answer-without-passage.yaml" \
    -m "shorter prompt" || fail "propose"
as "$admin" prompt approve python-answer 2.0.0 || fail "approve 2.0.0"

step "the gate compares 2.0.0 with production"
as "$pat" eval gate --candidate python-answer@2.0.0 \
    --baseline python-answer@production --dataset python-reference \
    --concurrency 2 --summary "$work/gate.md" --junit "$work/gate.xml" \
    "${eval_args[@]}"
status=$?
[ "$status" -eq 1 ] || fail "the gate of 2.0.0 exited $status, not 1"

step "moving production to 2.0.0 is refused"
if as "$admin" prompt label python-answer production 2.0.0; then
    fail "production moved to a version whose gate failed"
fi

step "production still serves 1.0.0"
production=$(as "$admin" prompt show python-answer --json \
    | "$python" -c 'import json, sys; print(json.load(sys.stdin)["labels"]["production"])')
[ "$production" = "1.0.0" ] || fail "production is $production"
echo "python-answer@production is $production"
printf '\nscenario passed; the gate summary is in %s/gate.md\n' "$work"
