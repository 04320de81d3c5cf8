#!/usr/bin/env bash
# Deploys one image tag of Concierge on a Docker Compose host, without downtime:
#
#   1. pull the image;
#   2. back up the database with the running version (`concierge backup create`);
#   3. apply migrations with the NEW image (`concierge migrate`, one-shot);
#   4. replace the API replicas one at a time: start one new container, wait until
#      `concierge healthcheck --ready` passes (database and Redis answer), then stop one old
#      container (graceful: in-flight requests finish); nginx finds replicas through Docker's
#      DNS, so traffic follows within seconds;
#   5. the same for the workers (gate: their metrics listener answers; running jobs finish or
#      are released at SIGTERM);
#   6. record the tag (deploy/.env CONCIERGE_TAG, and deploy/.state/tags: current/previous).
#
# If a new container fails its gate, the previous tag is rolled back the same way, unless
# this deploy applied new migrations: the previous binary refuses a schema newer than its
# own, so the script stops and points at the restore procedure (docs/OPERATIONS.md).
#
# Usage: scripts/deploy.sh [options] TAG
#   --no-backup        skip the pre-deploy backup (first deploy, or no backup support yet)
#   --infra            also apply changes to the other services (nginx, prometheus...) and
#                      reload nginx, Prometheus and Alertmanager configuration
#   --timeout SECONDS  how long a new container may take to pass its gate (default 180)
#   --rollback         used by scripts/rollback.sh: no backup, no migration, schema check
#
# Environment: CONCIERGE_DEPLOY_DIR (default: ./deploy beside this script), CONCIERGE_DEPLOY_STATE
# (default: $CONCIERGE_DEPLOY_DIR/.state), API_REPLICAS / WORKER_REPLICAS (default: what the
# compose files say), DEPLOY_POLL_INTERVAL (seconds between readiness checks, default 2).
# Needs docker with the compose plugin, jq and flock.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY_DIR=${CONCIERGE_DEPLOY_DIR:-$ROOT/deploy}
STATE_DIR=${CONCIERGE_DEPLOY_STATE:-$DEPLOY_DIR/.state}
TIMEOUT=180
POLL=${DEPLOY_POLL_INTERVAL:-2}
BACKUP=1
INFRA=0
MODE=deploy
TAG=""

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --no-backup) BACKUP=0 ;;
    --infra) INFRA=1 ;;
    --rollback) MODE=rollback ;;
    --timeout)
      [ $# -ge 2 ] || usage 64
      TIMEOUT=$2
      shift
      ;;
    -h | --help) usage 0 ;;
    -*) echo "unknown option: $1" >&2; usage 64 ;;
    *)
      [ -z "$TAG" ] || usage 64
      TAG=$1
      ;;
  esac
  shift
done
[ -n "$TAG" ] || usage 64
case "$TAG" in
  *[!A-Za-z0-9._-]*) echo "invalid tag: $TAG" >&2; exit 64 ;;
esac
case "$TIMEOUT" in
  '' | *[!0-9]*) echo "invalid --timeout: $TIMEOUT" >&2; exit 64 ;;
esac

log() {
  printf '%s deploy: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}
die() {
  log "ERROR: $*"
  exit 1
}
record() {
  printf '%s %s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$MODE" "$TAG" "$*" >> "$STATE_DIR/history.log"
}

for tool in docker jq flock; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[ -f "$DEPLOY_DIR/.env" ] || die "$DEPLOY_DIR/.env is missing (copy .env.example, see docs/DEPLOY.md)"

mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/lock"
flock -n 9 || die "another deploy is running (lock: $STATE_DIR/lock)"

# --- compose helpers -------------------------------------------------------------------------

compose() {
  (cd "$DEPLOY_DIR" && docker compose "$@")
}

# compose_at TAG ARGS...: compose with CONCIERGE_TAG overriding .env for this call.
compose_at() {
  local tag=$1
  shift
  (cd "$DEPLOY_DIR" && CONCIERGE_TAG="$tag" docker compose "$@")
}

env_get() {
  sed -n "s/^$1=//p" "$DEPLOY_DIR/.env" | tail -n1
}

env_set() {
  local name=$1 value=$2 file="$DEPLOY_DIR/.env"
  if grep -q "^$name=" "$file"; then
    sed -i "s|^$name=.*|$name=$value|" "$file"
  else
    printf '%s=%s\n' "$name" "$value" >> "$file"
  fi
}

state_get() {
  [ -f "$STATE_DIR/tags" ] || return 0
  sed -n "s/^$1=//p" "$STATE_DIR/tags" | tail -n1
}

state_set() {
  printf 'current=%s\nprevious=%s\n' "$1" "$2" > "$STATE_DIR/tags.tmp"
  mv "$STATE_DIR/tags.tmp" "$STATE_DIR/tags"
}

image_ref() {
  local image=${CONCIERGE_IMAGE:-$(env_get CONCIERGE_IMAGE)}
  printf '%s:%s' "${image:-ghcr.io/your-org/concierge}" "$1"
}

# replicas SERVICE: API_REPLICAS / WORKER_REPLICAS from the environment, else what the
# merged compose configuration says.
replicas() {
  local svc=$1 from_env=""
  case "$svc" in
    api) from_env=${API_REPLICAS:-} ;;
    worker) from_env=${WORKER_REPLICAS:-} ;;
  esac
  if [ -n "$from_env" ]; then
    echo "$from_env"
    return
  fi
  compose_at "$TAG" config --format json | jq -r --arg s "$svc" '.services[$s].deploy.replicas // 1'
}

containers() {
  compose ps -q -a "$1"
}

running() {
  [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = "true" ]
}

# gate SERVICE CONTAINER: wait until the container passes its readiness check twice in a
# row, or fail when it exits or the timeout passes.
gate() {
  local svc=$1 c=$2 ok=0
  local deadline=$((SECONDS + TIMEOUT))
  local -a check
  case "$svc" in
    api) check=(concierge healthcheck --ready) ;;
    *) check=(concierge healthcheck --url http://127.0.0.1:9090) ;;
  esac
  log "waiting for $svc container ${c:0:12} to be ready (up to ${TIMEOUT}s)"
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! running "$c"; then
      log "$svc container ${c:0:12} is not running; its last log lines:"
      docker logs --tail 30 "$c" >&2 2>&1 || true
      return 1
    fi
    local out=""
    if out=$(docker exec "$c" "${check[@]}" 2>&1) ||
      { [ "$svc" != api ] && [[ "$out" == *"-> 404"* ]]; }; then
      # (A worker whose admin listener answers 404 for /health is alive: binaries that
      # serve only /metrics there.)
      ok=$((ok + 1))
      if [ "$ok" -ge 2 ]; then
        log "$svc container ${c:0:12} is ready"
        return 0
      fi
    else
      ok=0
    fi
    sleep "$POLL"
  done
  log "$svc container ${c:0:12} did not become ready in ${TIMEOUT}s; its last log lines:"
  docker logs --tail 30 "$c" >&2 2>&1 || true
  return 1
}

retire() {
  local svc=$1 c=$2 grace=30
  [ "$svc" = worker ] && grace=40
  log "stopping old $svc container ${c:0:12}"
  docker stop -t "$grace" "$c" >/dev/null || true
  docker rm -f "$c" >/dev/null || true
}

contains() {
  local needle=$1
  shift
  local x
  for x in "$@"; do [ "$x" = "$needle" ] && return 0; done
  return 1
}

# roll SERVICE TAG COUNT: converge SERVICE to COUNT healthy containers of TAG's image, one
# new container at a time, each gated before one old container is retired.
roll() {
  local svc=$1 tag=$2 count=$3
  local target c
  target=$(docker image inspect -f '{{.Id}}' "$(image_ref "$tag")") ||
    { log "image $(image_ref "$tag") is not present"; return 1; }
  local -a olds=() news=()
  while read -r c; do
    [ -n "$c" ] || continue
    if [ "$(docker inspect -f '{{.Image}}' "$c")" = "$target" ] && running "$c"; then
      news+=("$c")
    else
      olds+=("$c")
    fi
  done < <(containers "$svc")
  log "$svc: ${#news[@]} container(s) already on $tag, ${#olds[@]} to replace, want $count"

  while [ "${#news[@]}" -lt "$count" ]; do
    local total=$((${#olds[@]} + ${#news[@]} + 1)) fresh=""
    compose_at "$tag" up -d --no-deps --no-recreate --scale "$svc=$total" "$svc" >&2
    while read -r c; do
      [ -n "$c" ] || continue
      if ! contains "$c" "${olds[@]}" "${news[@]}"; then fresh=$c; fi
    done < <(containers "$svc")
    [ -n "$fresh" ] || { log "$svc: compose did not create a new container"; return 1; }
    gate "$svc" "$fresh" || return 1
    news+=("$fresh")
    if [ "${#olds[@]}" -gt 0 ]; then
      retire "$svc" "${olds[0]}"
      olds=("${olds[@]:1}")
    fi
  done
  for c in "${olds[@]}"; do
    retire "$svc" "$c"
  done
  # Extra containers of the right image beyond COUNT (scaling down).
  while [ "${#news[@]}" -gt "$count" ]; do
    retire "$svc" "${news[-1]}"
    unset 'news[-1]'
  done
  log "$svc: $count container(s) on $tag"
}

# schema TAG: prints "APPLIED KNOWN" as the image TAG sees the database (doctor --json).
schema() {
  local detail
  detail=$(compose_at "$1" run --rm --no-deps -T migrate doctor --json 2>/dev/null |
    jq -r '.checks[] | select(.name == "migrations") | .detail' 2>/dev/null || true)
  if [[ "$detail" =~ ^([0-9]+)\ of\ ([0-9]+) ]]; then
    echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
  fi
}

infra_services() {
  compose config --services | grep -vxE 'api|worker|migrate' || true
}

# --- the deploy ------------------------------------------------------------------------------

FIRST=0
if [ -z "$(containers api)" ]; then FIRST=1; fi
CURRENT=$(state_get current)
# Without a recorded deploy, the tag in .env is what runs (unless nothing runs at all).
if [ -z "$CURRENT" ] && [ "$FIRST" = 0 ]; then CURRENT=$(env_get CONCIERGE_TAG); fi
API_N=$(replicas api)
WORKER_N=$(replicas worker)
log "$MODE $TAG (running: ${CURRENT:-nothing}; api x$API_N, worker x$WORKER_N)"

log "pulling $(image_ref "$TAG")"
compose_at "$TAG" pull --quiet migrate >&2 || die "could not pull $(image_ref "$TAG")"

# The database and Redis must be up before anything below (on a first deploy they are not).
# Only --infra may change them: a changed definition must not restart the database mid-deploy.
if [ "$INFRA" = 1 ]; then
  compose_at "$TAG" up -d --wait postgres redis >&2 || die "postgres and redis did not become healthy"
else
  compose_at "$TAG" up -d --wait --no-recreate postgres redis >&2 || die "postgres and redis did not become healthy"
fi

SCHEMA_CHANGED=0
if [ "$MODE" = rollback ]; then
  read -r applied known <<<"$(schema "$TAG")" || true
  if [ -n "${applied:-}" ] && [ "$applied" -gt "$known" ]; then
    record "refused: schema $applied > $known"
    die "the database has $applied migrations but $TAG knows only $known: it cannot start on this schema. Restore the pre-deploy backup instead (docs/OPERATIONS.md, 'Rollback')."
  fi
else
  if [ "$BACKUP" = 1 ] && [ "$FIRST" = 0 ] && [ -n "$CURRENT" ]; then
    log "pre-deploy backup with the running version ($CURRENT)"
    # --no-rotate: a second deploy the same day must not rotate away the first one's backup,
    # which is the one to restore if that deploy's migration has to be undone.
    compose_at "$CURRENT" run --rm --no-deps -T worker backup create --no-rotate >&2 ||
      die "the pre-deploy backup failed (use --no-backup to deploy anyway)"
  fi
  read -r applied known <<<"$(schema "$TAG")" || true
  if [ -n "${applied:-}" ] && [ "$applied" -lt "$known" ]; then
    SCHEMA_CHANGED=1
    log "$TAG brings $((known - applied)) new migration(s)"
  fi
  log "applying migrations with $TAG"
  if ! compose_at "$TAG" run --rm --no-deps -T migrate >&2; then
    record "failed: migrate"
    die "migrations failed; nothing else was changed"
  fi
fi

failed=""
if [ "$FIRST" = 1 ]; then
  log "first deploy: starting the whole stack"
  compose_at "$TAG" up -d >&2
  for svc in api worker; do
    while read -r c; do
      [ -n "$c" ] || continue
      gate "$svc" "$c" || failed=$svc
    done < <(containers "$svc")
  done
fi

if [ -n "$failed" ]; then
  :
elif ! roll api "$TAG" "$API_N"; then
  failed=api
elif ! roll worker "$TAG" "$WORKER_N"; then
  failed=worker
fi

if [ -n "$failed" ]; then
  record "failed: $failed"
  if [ "$MODE" = rollback ]; then
    die "rollback to $TAG failed at $failed: see docs/OPERATIONS.md, 'Rollback'"
  fi
  if [ "$FIRST" = 1 ]; then
    die "first deploy of $TAG: $failed did not become ready (docker compose logs $failed)"
  fi
  if [ "$SCHEMA_CHANGED" = 1 ]; then
    log "ERROR: $failed failed on $TAG after new migrations were applied."
    log "The previous version ($CURRENT) cannot start on the new schema, so no automatic rollback."
    log "Fix forward with a new tag, or restore the pre-deploy backup: docs/OPERATIONS.md, 'Rollback'."
    exit 2
  fi
  if [ -z "$CURRENT" ] || [ "$CURRENT" = "$TAG" ]; then
    die "$failed failed on $TAG and there is no previous tag to roll back to"
  fi
  log "rolling back to $CURRENT"
  if roll api "$CURRENT" "$API_N" && roll worker "$CURRENT" "$WORKER_N"; then
    record "rolled back to $CURRENT"
    log "rolled back to $CURRENT; $TAG is not deployed"
  else
    record "rollback to $CURRENT failed"
    log "ERROR: the rollback to $CURRENT failed too: docs/OPERATIONS.md, 'Rollback'"
  fi
  exit 1
fi

if [ "$INFRA" = 1 ]; then
  log "applying infrastructure changes"
  mapfile -t infra < <(infra_services)
  compose_at "$TAG" up -d --no-deps "${infra[@]}" >&2
  # nginx renders its templates when the container starts: recreate it so site changes apply.
  compose_at "$TAG" up -d --no-deps --force-recreate nginx >&2 || log "nginx recreate failed"
  compose kill -s HUP prometheus alertmanager >&2 || log "could not signal prometheus/alertmanager"
fi

env_set CONCIERGE_TAG "$TAG"
if [ "$MODE" = rollback ]; then
  # The tag rolled back from is bad: a second rollback must not return to it, and the
  # one before this tag is not known, so there is no automatic target any more.
  state_set "$TAG" ""
elif [ "$CURRENT" != "$TAG" ]; then
  state_set "$TAG" "$CURRENT"
else
  state_set "$TAG" "$(state_get previous)"
fi
record "ok"
log "done: $TAG is live (previous: ${CURRENT:-none})"
