#!/usr/bin/env bash
# Fuzz the HTTP API against its own OpenAPI document with schemathesis, once per role:
# no answer may be a 5xx, and every answer must fit the documented schema.
#
#   scripts/schemathesis.sh                 # debug binary, 50 examples per operation
#   MAX_EXAMPLES=200 SEED=7 scripts/schemathesis.sh
#   MUSTER_BIN=target/release/muster ROLES="staff member" scripts/schemathesis.sh
#
# It makes a venv under target/schemathesis/ (pip install from PyPI on first use), starts
# `muster serve --demo` on a free loopback port with a fresh data directory, mints a token
# per role with `muster token`, and runs `schemathesis run` for each. Reports (JUnit) go to
# target/schemathesis/<role>/. Not part of .ci/run: it needs PyPI and a few minutes.
# Exit status: 0 when every role passed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${MAX_EXAMPLES:-50}"
SEED="${SEED:-1}"
ROLES="${ROLES:-command command_district staff unit_admin member}"
CHECKS="${CHECKS:-not_a_server_error,response_schema_conformance}"
DEMO_MEMBERS="${DEMO_MEMBERS:-3000}"
WORK="$PWD/target/schemathesis"
VENV="$WORK/venv"

if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "== installing schemathesis into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet 'schemathesis>=4,<5'
fi
"$VENV/bin/schemathesis" --version

if [ -z "${MUSTER_BIN:-}" ]; then
  cargo build --quiet --bin muster
  MUSTER_BIN=target/debug/muster
fi

DATA="$(mktemp -d)"
OUT="$WORK/serve.out"
ERR="$WORK/serve.err"
mkdir -p "$WORK"
MUSTER_BIN="$(realpath "$MUSTER_BIN")"
# muster reads every MUSTER_* variable as configuration: keep this script's own out of it.
BIN="$MUSTER_BIN"
unset MUSTER_BIN
"$BIN" serve --demo --demo-members "$DEMO_MEMBERS" --listen 127.0.0.1:0 --data "$DATA" >"$OUT" 2>"$ERR" &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

# Wait (at most 180 s) for the address and the demo tokens to be printed.
for _ in $(seq 1 360); do
  if grep -q '^token member' "$OUT" 2>/dev/null; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then echo "muster exited:"; cat "$ERR"; exit 1; fi
  sleep 0.5
done
ADDR="$(sed -n 's|^listening on http://||p' "$OUT")"
[ -n "$ADDR" ] || { echo "muster did not print its address"; cat "$ERR"; exit 1; }
echo "== muster on $ADDR (data $DATA)"

# The demo prints the scopes that fit together; mint each role's token with `muster token`.
scope() { sed -n "s|^token $1 \([^:]*\):.*|\1|p" "$OUT"; }
DISTRICT="$(scope 'command (district)')"
COMMUNITY="$(scope staff)"
UNIT="$(scope unit_admin)"
MEMBER="$(scope member)"
token() { "$BIN" token --ttl 2h "$@"; }

status=0
for role in $ROLES; do
  case "$role" in
    command) T="$(token --role command)" ;;
    command_district) T="$(token --role command --district "$DISTRICT")" ;;
    staff) T="$(token --role staff --community "$COMMUNITY")" ;;
    unit_admin) T="$(token --role unit_admin --unit "$UNIT")" ;;
    member) T="$(token --role member --member "$MEMBER")" ;;
    *) echo "unknown role $role"; exit 2 ;;
  esac
  echo "== schemathesis as $role"
  # Run inside $WORK: schemathesis and hypothesis keep their databases in the working directory.
  if ! (cd "$WORK" && "$VENV/bin/schemathesis" run "http://$ADDR/openapi.json" \
      --header "Authorization: Bearer $T" \
      --checks "$CHECKS" \
      --max-examples "$MAX_EXAMPLES" \
      --seed "$SEED" \
      --workers 2 \
      --request-timeout 30 \
      --suppress-health-check all \
      --no-color \
      --report junit --report-dir "$WORK/$role"); then
    status=1
    echo "!! $role: failures (see above and $WORK/$role/)"
  fi
  if ! kill -0 "$PID" 2>/dev/null; then echo "!! muster died"; cat "$ERR"; exit 1; fi
done
if grep -q '"level":"ERROR"\|ERROR' "$ERR"; then
  echo "== server errors logged:"; grep 'ERROR' "$ERR" | head -20
fi
exit $status
