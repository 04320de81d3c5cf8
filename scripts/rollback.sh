#!/usr/bin/env bash
# Rolls Concierge back to the previous image tag (or to the tag given), with the same
# one-replica-at-a-time health-gated replacement as scripts/deploy.sh, without a backup or
# migrations. It refuses when the database schema is newer than the target image knows
# (a release with migrations cannot be rolled back by image alone: docs/OPERATIONS.md,
# "Rollback").
#
# Usage: scripts/rollback.sh [--timeout SECONDS] [TAG]
#   TAG defaults to "previous" in deploy/.state/tags (written by scripts/deploy.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
deploy_dir=${CONCIERGE_DEPLOY_DIR:-$here/../deploy}
state_dir=${CONCIERGE_DEPLOY_STATE:-$deploy_dir/.state}

args=()
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout)
      [ $# -ge 2 ] || { echo "--timeout needs a value" >&2; exit 64; }
      args+=(--timeout "$2")
      shift
      ;;
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    -*) echo "unknown option: $1" >&2; exit 64 ;;
    *) tag=$1 ;;
  esac
  shift
done

if [ -z "$tag" ]; then
  if [ -f "$state_dir/tags" ]; then
    tag=$(sed -n 's/^previous=//p' "$state_dir/tags" | tail -n1)
  fi
  if [ -z "$tag" ]; then
    echo "no previous tag recorded in $state_dir/tags: give the tag to roll back to" >&2
    exit 1
  fi
fi

echo "rolling back to $tag" >&2
exec "$here/deploy.sh" --rollback "${args[@]}" "$tag"
