#!/usr/bin/env bash
# pgbench-ceiling.sh: the database ceiling the SMS benchmark is measured against.
#
# Measures how many one-row INSERT transactions per second PostgreSQL commits on this machine
# with its current settings (fsync, synchronous_commit...): every inbound SMS needs at least
# one such durable write, so no server can go faster than this. The SMS throughput is reported
# as a fraction of it (see bench/README.md).
#
# Usage:
#   bench/pgbench-ceiling.sh
#   PGURL=postgres://postgres:secret@db:5432 CLIENTS=32 SECONDS=30 bench/pgbench-ceiling.sh
#
# Environment (all optional):
#   PGURL       server URL WITHOUT a database name; query parameters (?sslmode=...) are kept
#               [postgres://postgres@127.0.0.1:5432]
#   DB          scratch database, created, then dropped at exit. An existing database of that
#               name is dropped first, so never point it at real data [concierge_pgbench]
#   CLIENTS     pgbench client connections (-c) [16]
#   THREADS     pgbench worker threads (-j) [2]
#   SECONDS     run time in seconds (-T) [20]; PGBENCH_SECONDS is the same, and wins
#   BODY_BYTES  size of the bytea column per row, a multiple of 16 [256]
#   KEEP_DB=1   keep the scratch database afterwards (to look at it)
#
# Output: pgbench's summary lines, then one machine-readable line per figure:
#   ceiling_tps=<committed transactions per second>
#   ceiling_latency_ms=<average transaction latency>
# Needs: psql and pgbench on PATH (Debian: apt-get install postgresql-client).
set -euo pipefail

PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432}"
DB="${DB:-concierge_pgbench}"
CLIENTS="${CLIENTS:-16}"
THREADS="${THREADS:-2}"
# SECONDS is special in bash: unset, it reads as the seconds since the shell started, never
# as empty. So take it from the environment we were given (PGBENCH_SECONDS wins if both).
RUN_SECONDS="${PGBENCH_SECONDS:-$(printenv SECONDS || true)}"
RUN_SECONDS="${RUN_SECONDS:-20}"
BODY_BYTES="${BODY_BYTES:-256}"
KEEP_DB="${KEEP_DB:-0}"

die() { echo "pgbench-ceiling: $*" >&2; exit 2; }

for tool in psql pgbench; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install postgresql-client)"
done
[[ "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "DB must be a plain lower-case identifier, got '$DB'"
[[ "$RUN_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a whole number of seconds, got '$RUN_SECONDS'"
[[ "$CLIENTS" =~ ^[1-9][0-9]*$ && "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "CLIENTS and THREADS must be positive integers"
[[ "$BODY_BYTES" =~ ^[0-9]+$ ]] || die "BODY_BYTES must be a number"
(( BODY_BYTES >= 16 && BODY_BYTES % 16 == 0 )) || die "BODY_BYTES must be a multiple of 16"

# Split "scheme://authority[/db][?query]" so we can name the database ourselves.
base="${PGURL%%\?*}"
query=""
[[ "$PGURL" == *\?* ]] && query="?${PGURL#*\?}"
base="${base%/}"
if [[ "$base" =~ ^[a-z]+://[^/]+/.+ ]]; then
    die "PGURL must not name a database (got '$PGURL'); set DB instead"
fi
admin_url="${base}/postgres${query}"
bench_url="${base}/${DB}${query}"

drop_db() {
    psql "$admin_url" -qAt -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS ${DB}" >/dev/null
}

work="$(mktemp -d)"
cleanup() {
    local status=$?
    if [[ "$KEEP_DB" != 1 ]]; then
        drop_db 2>/dev/null \
            || echo "pgbench-ceiling: could not drop database ${DB}" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

drop_db
psql "$admin_url" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE ${DB}" >/dev/null
psql "$bench_url" -qAt -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE bench_insert (
    id         bigserial PRIMARY KEY,
    tenant     uuid NOT NULL,
    body       bytea NOT NULL,
    created_at bigint NOT NULL
);
SQL

# One transaction per inbound message: a random tenant, a BODY_BYTES payload (16 random
# bytes repeated: contents do not matter below the 2 kB TOAST threshold), a microsecond
# timestamp. md5()::uuid works on every PostgreSQL version (gen_random_uuid needs 13+).
repeat=$(( BODY_BYTES / 16 ))
cat >"$work/insert.sql" <<SQL
\\set r random(1, 2000000000)
BEGIN;
INSERT INTO bench_insert (tenant, body, created_at) VALUES (md5(:r::text)::uuid, decode(repeat(md5((:r + 1)::text), ${repeat}), 'hex'), (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
END;
SQL

settings="$(psql "$bench_url" -qAt -c "SELECT current_setting('server_version') || ', fsync=' || current_setting('fsync') || ', synchronous_commit=' || current_setting('synchronous_commit')")"
echo "pgbench-ceiling: PostgreSQL ${settings}; ${CLIENTS} clients, ${THREADS} threads, ${RUN_SECONDS}s, ${BODY_BYTES}-byte rows" >&2

pgbench -n -f "$work/insert.sql" -c "$CLIENTS" -j "$THREADS" -T "$RUN_SECONDS" -M prepared "$bench_url" \
    >"$work/out.txt" 2>"$work/err.txt" || {
    cat "$work/err.txt" >&2
    die "pgbench failed"
}

grep -E '^(number of transactions actually processed|number of failed transactions|latency average|latency stddev|tps)\b' "$work/out.txt" || true
tps="$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' "$work/out.txt" | tail -n 1)"
latency="$(sed -nE 's/^latency average = ([0-9.]+) ms.*/\1/p' "$work/out.txt" | head -n 1)"
[[ -n "$tps" ]] || { cat "$work/out.txt" >&2; die "no tps line in pgbench's output"; }
echo "ceiling_tps=${tps}"
echo "ceiling_latency_ms=${latency}"
