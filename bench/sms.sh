#!/usr/bin/env bash
# sms.sh: the full inbound-SMS benchmark of a Concierge server.
#
#   1. bench/pgbench-ceiling.sh: how many one-row insert transactions/s PostgreSQL commits
#      here (the ceiling no SMS pipeline can pass);
#   2. concierge-loadgen closed loop: the most signed Twilio webhooks/s the server answers;
#   3. concierge-loadgen open loop at half the ceiling (or RATE): latency, p99 above all, at a
#      fixed arrival rate, measured from each message's scheduled time;
#   then prints throughput / ceiling, and the server's RSS if its PID is known.
#
# The server must already be running (give SERVER_PID to record its memory), or be started by
# this script from SERVER_CMD. Either way it must serve a tenant whose Twilio number is
# TO_NUMBER and auth token is AUTH_TOKEN, with its public URL set to PUBLIC_URL (the URL the
# webhook signatures cover).
#
# Usage:
#   AUTH_TOKEN=... bench/sms.sh
#   AUTH_TOKEN=... TO_NUMBER=+15550000000 CONCURRENCY=64 DURATION=60s SERVER_PID=1234 bench/sms.sh
#   AUTH_TOKEN=... SERVER_CMD='exec target/release/concierge serve' bench/sms.sh
#   AUTH_TOKEN=... SKIP_PGBENCH=1 CEILING_TPS=4000 bench/sms.sh
#
# Environment (only AUTH_TOKEN is required):
#   BASE_URL        where the server listens [http://127.0.0.1:8080]
#   PUBLIC_URL      the server's configured public URL, signed over [BASE_URL]
#   AUTH_TOKEN      the tenant's Twilio auth token
#   TO_NUMBER       the tenant's Twilio number [+15550000000]
#   ACCOUNT_SID     AccountSid sent with each message [loadgen's default]
#   USERS           distinct simulated senders [10000]
#   CONCURRENCY     closed-loop workers (connections) [32]
#   OPEN_CONCURRENCY  most requests in flight in the open loop [4 x CONCURRENCY]
#   DURATION        measured time of each loadgen run [30s]
#   WARMUP          unmeasured warm-up before each loadgen run [3s]
#   RATE            open-loop rate, msgs/s [half the pgbench ceiling]
#   SERVER_PID      the server's PID: its RSS is recorded before and after each run
#   SERVER_CMD      start the server with `bash -c "$SERVER_CMD"` (use `exec ...` so the PID is
#                   the server's); it is stopped when this script ends
#   READY_TIMEOUT   seconds to wait for a started server to accept HTTP [30]
#   SKIP_PGBENCH=1  do not run pgbench; CEILING_TPS must then be given
#   CEILING_TPS     the ceiling to use instead of measuring it
#   PGURL, DB, PG_CLIENTS, PG_THREADS, PG_SECONDS, BODY_BYTES: passed to pgbench-ceiling.sh
#                   (as PGURL, DB, CLIENTS, THREADS, SECONDS, BODY_BYTES)
#   LOADGEN         the loadgen binary [built with `cargo build --release -p bench`]
#   RESULTS_DIR     where JSON results and summary.txt go [bench/results/<UTC time>]
#
# Exit status: 0 when every step succeeded, 1 when a loadgen run exceeded its error limit
# (the summary is still printed), 2 on a set-up error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"
BASE_URL="${BASE_URL%/}"
PUBLIC_URL="${PUBLIC_URL:-$BASE_URL}"
TO_NUMBER="${TO_NUMBER:-+15550000000}"
USERS="${USERS:-10000}"
CONCURRENCY="${CONCURRENCY:-32}"
OPEN_CONCURRENCY="${OPEN_CONCURRENCY:-$(( CONCURRENCY * 4 ))}"
DURATION="${DURATION:-30s}"
WARMUP="${WARMUP:-3s}"
RATE="${RATE:-}"
SERVER_PID="${SERVER_PID:-}"
SERVER_CMD="${SERVER_CMD:-}"
READY_TIMEOUT="${READY_TIMEOUT:-30}"
SKIP_PGBENCH="${SKIP_PGBENCH:-0}"
CEILING_TPS="${CEILING_TPS:-}"
RESULTS_DIR="${RESULTS_DIR:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)}"

die() { echo "sms.sh: $*" >&2; exit 2; }
log() { echo "== $*" >&2; }

[[ -n "${AUTH_TOKEN:-}" ]] || die "AUTH_TOKEN is required (the tenant's Twilio auth token)"
export TWILIO_AUTH_TOKEN="$AUTH_TOKEN" # read by the loadgen, so the token is not in `ps`
if [[ "$SKIP_PGBENCH" == 1 && -z "$CEILING_TPS" ]]; then
    die "SKIP_PGBENCH=1 needs CEILING_TPS"
fi

# Reads a number from a JSON file: json_get FILE FILTER (a jq path like .latency_ms.p99).
json_get() {
    if command -v jq >/dev/null; then
        jq -r "$2 // empty" "$1"
    else
        python3 - "$1" "$2" <<'PY'
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].lstrip(".").split("."):
    value = value.get(key) if isinstance(value, dict) else None
print("" if value is None else value)
PY
    fi
}

# Resident set size of the server in MiB, now and at its peak ("-" when unknown).
rss_now() {
    [[ -n "$SERVER_PID" ]] || { echo "-"; return; }
    local kib
    kib="$(ps -o rss= -p "$SERVER_PID" 2>/dev/null | tr -d ' ')" || true
    [[ -n "$kib" ]] && awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }' || echo "-"
}
rss_peak() {
    [[ -n "$SERVER_PID" && -r "/proc/$SERVER_PID/status" ]] || { echo "-"; return; }
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024; found = 1 } END { if (!found) print "-" }' \
        "/proc/$SERVER_PID/status"
}

mkdir -p "$RESULTS_DIR"

# --- the loadgen -----------------------------------------------------------------------
if [[ -z "${LOADGEN:-}" ]]; then
    log "building concierge-loadgen"
    (cd "$root" && cargo build --release -p bench >&2)
    LOADGEN="${CARGO_TARGET_DIR:-$root/target}/release/concierge-loadgen"
fi
[[ -x "$LOADGEN" ]] || die "loadgen not found at $LOADGEN"

# --- the server ------------------------------------------------------------------------
started_pid=""
cleanup() {
    local status=$?
    if [[ -n "$started_pid" ]] && kill -0 "$started_pid" 2>/dev/null; then
        log "stopping the server (pid $started_pid)"
        kill "$started_pid" 2>/dev/null || true
        wait "$started_pid" 2>/dev/null || true
    fi
    exit "$status"
}
trap cleanup EXIT

if [[ -n "$SERVER_CMD" ]]; then
    log "starting the server: $SERVER_CMD"
    bash -c "$SERVER_CMD" >"$RESULTS_DIR/server.log" 2>&1 &
    started_pid=$!
    SERVER_PID="$started_pid"
    for (( waited = 0; ; waited++ )); do
        # Any HTTP answer, even a 404, means it is listening.
        curl -s -o /dev/null --max-time 1 "$BASE_URL/" && break
        kill -0 "$started_pid" 2>/dev/null || die "the server exited; see $RESULTS_DIR/server.log"
        (( waited < READY_TIMEOUT * 4 )) || die "the server did not answer on $BASE_URL within ${READY_TIMEOUT}s"
        sleep 0.25
    done
fi
if [[ -n "$SERVER_PID" ]]; then
    kill -0 "$SERVER_PID" 2>/dev/null || die "SERVER_PID $SERVER_PID is not running"
fi
rss_start="$(rss_now)"

# --- 1. the database ceiling -----------------------------------------------------------
if [[ "$SKIP_PGBENCH" != 1 ]]; then
    log "1/3 database ceiling (pgbench)"
    (
        [[ -n "${PG_CLIENTS:-}" ]] && export CLIENTS="$PG_CLIENTS"
        [[ -n "${PG_THREADS:-}" ]] && export THREADS="$PG_THREADS"
        [[ -n "${PG_SECONDS:-}" ]] && export PGBENCH_SECONDS="$PG_SECONDS"
        exec "$here/pgbench-ceiling.sh"
    ) | tee "$RESULTS_DIR/pgbench.txt"
    CEILING_TPS="$(sed -n 's/^ceiling_tps=//p' "$RESULTS_DIR/pgbench.txt")"
    [[ -n "$CEILING_TPS" ]] || die "pgbench-ceiling.sh printed no ceiling"
else
    log "1/3 database ceiling: given, ${CEILING_TPS} tps"
fi
if [[ -z "$RATE" ]]; then
    RATE="$(awk -v c="$CEILING_TPS" 'BEGIN { printf "%.1f", c / 2 }')"
fi

loadgen_sms() {
    "$LOADGEN" sms --url "$BASE_URL" --public-url "$PUBLIC_URL" --to "$TO_NUMBER" \
        ${ACCOUNT_SID:+--account-sid "$ACCOUNT_SID"} --users "$USERS" \
        --duration "$DURATION" --warmup "$WARMUP" --json "$@"
}
failed=0

# --- 2. closed loop --------------------------------------------------------------------
log "2/3 closed loop: $CONCURRENCY workers for $DURATION"
loadgen_sms --concurrency "$CONCURRENCY" >"$RESULTS_DIR/closed.json" || failed=1
[[ -s "$RESULTS_DIR/closed.json" ]] || die "the closed-loop run produced no result"
rss_closed="$(rss_now)"

# --- 3. open loop ----------------------------------------------------------------------
log "3/3 open loop: $RATE msgs/s for $DURATION, up to $OPEN_CONCURRENCY in flight"
loadgen_sms --concurrency "$OPEN_CONCURRENCY" --rate "$RATE" >"$RESULTS_DIR/open.json" || failed=1
[[ -s "$RESULTS_DIR/open.json" ]] || die "the open-loop run produced no result"
rss_open="$(rss_now)"
rss_max="$(rss_peak)"

# --- summary ---------------------------------------------------------------------------
c="$RESULTS_DIR/closed.json"
o="$RESULTS_DIR/open.json"
closed_tps="$(json_get "$c" .throughput_rps)"
ratio="$(awk -v t="$closed_tps" -v c="$CEILING_TPS" 'BEGIN { if (c > 0) printf "%.3f", t / c; else print "-" }')"
fmt() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }

{
    echo "SMS benchmark: $BASE_URL (signed for $PUBLIC_URL), $(date -u +%FT%TZ)"
    echo "  database ceiling     $(fmt "$CEILING_TPS") insert tx/s"
    echo "  closed loop          $(fmt "$closed_tps") msgs/s with $CONCURRENCY workers" \
        "| p50 $(fmt "$(json_get "$c" .latency_ms.p50)") ms" \
        "| p99 $(fmt "$(json_get "$c" .latency_ms.p99)") ms" \
        "| errors $(json_get "$c" .errors)/$(json_get "$c" .requests)"
    echo "  throughput/ceiling   $ratio"
    echo "  open loop            $(fmt "$RATE") msgs/s offered, $(fmt "$(json_get "$o" .throughput_rps)") ok/s" \
        "| p50 $(fmt "$(json_get "$o" .latency_ms.p50)") ms" \
        "| p99 $(fmt "$(json_get "$o" .latency_ms.p99)") ms" \
        "| p99.9 $(fmt "$(json_get "$o" .latency_ms.p999)") ms" \
        "| max $(fmt "$(json_get "$o" .latency_ms.max)") ms" \
        "| errors $(json_get "$o" .errors)/$(json_get "$o" .requests)" \
        "| late sends $(json_get "$o" .late_sends)"
    echo "  server RSS MiB       start $rss_start, after closed $rss_closed, after open $rss_open, peak $rss_max"
    echo "  results              $RESULTS_DIR"
} | tee "$RESULTS_DIR/summary.txt"

if command -v jq >/dev/null; then
    jq -n --argjson ceiling "$CEILING_TPS" --argjson rate "$RATE" --arg ratio "$ratio" \
        --arg rss_start "$rss_start" --arg rss_closed "$rss_closed" --arg rss_open "$rss_open" \
        --arg rss_peak "$rss_max" --slurpfile closed "$c" --slurpfile open "$o" \
        '{ceiling_tps: $ceiling, open_rate: $rate, throughput_over_ceiling: ($ratio | tonumber? // null),
          rss_mib: {start: $rss_start, after_closed: $rss_closed, after_open: $rss_open, peak: $rss_peak},
          closed: $closed[0], open: $open[0]}' >"$RESULTS_DIR/summary.json"
fi

if (( failed )); then
    echo "sms.sh: a loadgen run had more than 1 % errors (see error_samples in its JSON)" >&2
    exit 1
fi
