#!/usr/bin/env bash
# lookup.sh: end-user lookup by phone number as a tenant grows, on PostgreSQL.
#
# Every inbound SMS finds its sender by the blind index of the From number (an HMAC). This
# measures that lookup (the same query the message hot path runs, as the application role,
# under row-level security) with 1,000 and then 1,000,000 end users in one tenant, to show
# that it stays flat (a B-tree probe, not a scan).
#
# Usage:
#   bench/lookup.sh
#   SIZES="1000 100000 1000000" SECONDS=20 bench/lookup.sh
#
# Environment (all optional):
#   PGURL     server URL WITHOUT a database name, as a superuser (to seed and create the
#             role) [postgres://postgres@127.0.0.1:5432]
#   APP_ROLE  ordinary role the lookups run as (created if missing, NOSUPERUSER NOBYPASSRLS)
#             [concierge_lookup_app]
#   DB        scratch database, dropped first and at exit [concierge_lookup]
#   SIZES     end-user counts to measure, ascending [1000 1000000]
#   CLIENTS   pgbench clients [8]
#   SECONDS   pgbench run time per size [10]
#   CONCIERGE path to the concierge binary, used to create the schema
#             [target/release/concierge]
# Needs: psql and pgbench (postgresql-client) and a built concierge binary.
set -euo pipefail

PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432}"
APP_ROLE="${APP_ROLE:-concierge_lookup_app}"
DB="${DB:-concierge_lookup}"
SIZES="${SIZES:-1000 1000000}"
CLIENTS="${CLIENTS:-8}"
RUN_SECONDS="$(printenv SECONDS || true)"
RUN_SECONDS="${RUN_SECONDS:-10}"
CONCIERGE="${CONCIERGE:-target/release/concierge}"

die() { echo "lookup: $*" >&2; exit 2; }
for tool in psql pgbench; do command -v "$tool" >/dev/null || die "$tool not found"; done
[[ -x "$CONCIERGE" ]] || die "$CONCIERGE not found: cargo build --release -p concierge"
[[ "$DB" =~ ^[a-z_][a-z0-9_]*$ && "$APP_ROLE" =~ ^[a-z_][a-z0-9_]*$ ]] || die "DB and APP_ROLE must be plain identifiers"

export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
admin() { psql "$PGURL/postgres" -v ON_ERROR_STOP=1 -qAt "$@"; }
su_db() { psql "$PGURL/$DB" -v ON_ERROR_STOP=1 -qAt "$@"; }
app_url="${PGURL/:\/\/*@/://$APP_ROLE@}/$DB"

cleanup() { admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT

admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
admin -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$APP_ROLE') THEN CREATE ROLE $APP_ROLE LOGIN NOSUPERUSER NOBYPASSRLS; END IF; END \$\$"
admin -c "CREATE DATABASE $DB OWNER $APP_ROLE"
CONCIERGE_DATABASE_URL="$app_url" CONCIERGE_MASTER_KEY="$(head -c 32 /dev/urandom | base64)" \
    CONCIERGE_LOG_LEVEL=warn "$CONCIERGE" migrate >/dev/null

tenant=$(su_db -c "INSERT INTO tenants (id, name, created_at) VALUES (gen_random_uuid(), 'Lookup', 0) RETURNING id")
script=$(mktemp)
trap 'rm -f "$script"; cleanup' EXIT
cat >"$script" <<'SQL'
\set i random(1, :n)
BEGIN;
SELECT set_config('app.tenant_id', :tenant, true);
SELECT u.id, u.opted_out, c.id FROM end_users u LEFT JOIN conversations c ON c.end_user_id = u.id WHERE u.tenant_id = :tenant::uuid AND u.phone_index = sha256(('+1555' || (1000000 + :i))::bytea);
END;
SQL

have=0
printf '%-12s %12s %14s %14s %s\n' end_users lookups/s avg_ms index_MiB plan
for n in $SIZES; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "SIZES must be numbers"
    if (( n > have )); then
        su_db -c "INSERT INTO end_users (id, tenant_id, phone_index, phone_cipher, created_at, last_seen_at)
                  SELECT gen_random_uuid(), '$tenant', sha256(('+1555' || (1000000 + i))::bytea), '\\x00', 0, 0
                  FROM generate_series($((have + 1)), $n) AS i" >/dev/null
        su_db -c "VACUUM ANALYZE end_users" >/dev/null
        have=$n
    fi
    plan=$(su_db -c "SET app.tenant_id = '$tenant'; EXPLAIN (COSTS OFF) SELECT id FROM end_users WHERE tenant_id = '$tenant' AND phone_index = sha256('+15551000001'::bytea)" | grep -o 'Index[A-Za-z ]* Scan using [a-z_]*' | head -1)
    index_mib=$(su_db -c "SELECT round(pg_relation_size('end_users_phone') / 1048576.0, 1)")
    out=$(pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$RUN_SECONDS" -D n="$n" -D tenant="$tenant" -f "$script" "$app_url" 2>&1) \
        || { echo "$out" >&2; die "pgbench failed"; }
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    printf '%-12s %12.0f %14s %14s %s\n' "$n" "$tps" "$lat" "$index_mib" "$plan"
    echo "lookup_n${n}_tps=$tps lookup_n${n}_latency_ms=$lat"
done
