#!/usr/bin/env bash
# Runs scripts/deploy.sh and scripts/rollback.sh against deploy/tests/fake-docker (no Docker
# engine needed): first deploy, a rolling upgrade, a rollback, a failed upgrade rolled back
# automatically, a failed upgrade after new migrations (no automatic rollback), a refused
# rollback across a schema change, and recovery by fixing forward. Part of deploy/check.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/bin" "$work/deploy"
# The fake is called hundreds of times: prefer the system interpreter (a version manager's
# shim can cost 100 ms a call).
py=$(command -v /usr/bin/python3 || command -v python3)
printf '#!/bin/sh\nexec %s %s "$@"\n' "$py" "$here/fake-docker" > "$work/bin/docker"
chmod +x "$work/bin/docker"
printf 'CONCIERGE_IMAGE=registry.example/concierge\nCONCIERGE_TAG=latest\n' > "$work/deploy/.env"

export PATH="$work/bin:$PATH"
export FAKE_DOCKER_STATE="$work/state.json"
export CONCIERGE_DEPLOY_DIR="$work/deploy"
export DEPLOY_POLL_INTERVAL=0
export FAKE_MIGRATIONS="v1=2 v2=2 v3=2 v4=3 v5=3"
export FAKE_BAD_TAGS="v3 v4"

passed=0
failed=0

# expect RC DESCRIPTION -- COMMAND...: run COMMAND (output to a log) and compare its status.
expect() {
  local want=$1 what=$2
  shift 3
  local rc=0
  "$@" >"$work/out.log" 2>&1 || rc=$?
  if [ "$rc" = "$want" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $what: exit $rc, expected $want" >&2
    sed 's/^/    /' "$work/out.log" >&2
  fi
}

# check DESCRIPTION PYTHON-EXPRESSION: evaluated with st (fake-docker state), env (.env
# text), tags (deploy/.state/tags text) and history (its text).
check() {
  local what=$1 expr=$2
  if "$py" - "$work" "$expr" <<'PY'
import json, sys
work, expr = sys.argv[1], sys.argv[2]
st = json.load(open(f"{work}/state.json"))
env = open(f"{work}/deploy/.env").read()
def read(p):
    try:
        return open(p).read()
    except FileNotFoundError:
        return ""
tags = read(f"{work}/deploy/.state/tags")
history = read(f"{work}/deploy/.state/history.log")
def on(svc):
    return sorted(c["tag"] for c in st["containers"].values() if c["service"] == svc and c["running"])
sys.exit(0 if eval(expr) else 1)
PY
  then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $what ($expr)" >&2
    sed 's/^/    /' "$work/out.log" >&2
  fi
}

reset_min() {
  "$py" - "$work/state.json" <<'PY'
import json, sys
p = sys.argv[1]; st = json.load(open(p)); st["min_running"] = {}; json.dump(st, open(p, "w"))
PY
}

deploy="$root/scripts/deploy.sh"
rollback="$root/scripts/rollback.sh"

expect 0 "first deploy of v1" -- "$deploy" --no-backup v1
check "v1 runs 2 api and 3 workers" 'on("api") == ["v1"] * 2 and on("worker") == ["v1"] * 3'
check ".env and state record v1" '"CONCIERGE_TAG=v1" in env and "current=v1" in tags'
check "the database is started before migrating" 'st["log"].index("up postgres") < st["log"].index("migrate v1")'

reset_min
expect 0 "rolling upgrade to v2" -- "$deploy" v2
check "v2 everywhere" 'on("api") == ["v2"] * 2 and on("worker") == ["v2"] * 3'
check "never fewer than the target while rolling" 'st["min_running"]["api"] >= 2 and st["min_running"]["worker"] >= 3'
check "backup taken with v1 before migrating with v2" 'st["log"].index("backup v1") < st["log"].index("migrate v2")'
check "state: current v2, previous v1" '"current=v2" in tags and "previous=v1" in tags and "CONCIERGE_TAG=v2" in env'

expect 0 "rollback.sh to the previous tag" -- "$rollback"
check "v1 everywhere after rollback" 'on("api") == ["v1"] * 2 and on("worker") == ["v1"] * 3'
check "state after rollback: no way back to the bad tag" '"current=v1" in tags and "previous=\n" in tags'
expect 1 "a second rollback without a tag refuses (nothing known to go back to)" -- "$rollback"
expect 0 "upgrade to v2 again" -- "$deploy" v2

expect 1 "v3 never becomes ready: automatic rollback" -- "$deploy" --timeout 1 v3
check "back on v2" 'on("api") == ["v2"] * 2 and on("worker") == ["v2"] * 3'
check "state unchanged, history says rolled back" '"current=v2" in tags and "CONCIERGE_TAG=v2" in env and "rolled back to v2" in history'

expect 2 "v4 fails after a new migration: no automatic rollback" -- "$deploy" --timeout 1 v4
check "v2 replicas still serve" '"v2" in on("api")'
expect 1 "rollback to v2 refused: schema newer than v2" -- "$rollback" v2
check "refusal recorded" '"refused: schema 3 > 2" in history'

expect 0 "fix forward with v5" -- "$deploy" v5
check "v5 everywhere" 'on("api") == ["v5"] * 2 and on("worker") == ["v5"] * 3'

expect 64 "a bad tag is refused" -- "$deploy" 'v1;rm'

echo "deploy-smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
