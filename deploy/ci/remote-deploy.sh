#!/usr/bin/env bash
# Deploys image tag $TAG from a CI job (deploy/ci/github-actions.yml, gitlab-ci.yml):
#
#   by Coolify   when COOLIFY_WEBHOOK_URL is set: POST to the webhook (Bearer
#                COOLIFY_API_TOKEN); Coolify pulls and restarts the application it manages.
#   by SSH       otherwise: copy deploy/ and scripts/ to DEPLOY_DIR on DEPLOY_HOST (the
#                server's .env, secrets/ and .state/ are never overwritten), then run
#                scripts/deploy.sh --infra "$TAG" there: migrations, health-gated rolling
#                restart, automatic rollback.
#
# Environment: TAG; DEPLOY_HOST, DEPLOY_USER (default deploy), DEPLOY_SSH_KEY (private key),
# DEPLOY_KNOWN_HOSTS (host key lines), DEPLOY_DIR (default /opt/concierge); or
# COOLIFY_WEBHOOK_URL and COOLIFY_API_TOKEN.
set -euo pipefail

: "${TAG:?TAG is required}"

if [ -n "${COOLIFY_WEBHOOK_URL:-}" ]; then
  echo "deploying $TAG through Coolify"
  curl -fsS --retry 3 -X POST \
    -H "Authorization: Bearer ${COOLIFY_API_TOKEN:?COOLIFY_API_TOKEN is required with COOLIFY_WEBHOOK_URL}" \
    "$COOLIFY_WEBHOOK_URL"
  echo
  exit 0
fi

: "${DEPLOY_HOST:?DEPLOY_HOST is required}"
: "${DEPLOY_SSH_KEY:?DEPLOY_SSH_KEY is required}"
: "${DEPLOY_KNOWN_HOSTS:?DEPLOY_KNOWN_HOSTS is required (ssh-keyscan output, checked by you)}"
user=${DEPLOY_USER:-deploy}
dir=${DEPLOY_DIR:-/opt/concierge}

ssh_dir=$(mktemp -d)
trap 'rm -rf "$ssh_dir"' EXIT
printf '%s\n' "$DEPLOY_SSH_KEY" > "$ssh_dir/key"
printf '%s\n' "$DEPLOY_KNOWN_HOSTS" > "$ssh_dir/known_hosts"
chmod 600 "$ssh_dir/key" "$ssh_dir/known_hosts"
ssh_cmd="ssh -i $ssh_dir/key -o UserKnownHostsFile=$ssh_dir/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes"

echo "copying the deploy kit to $user@$DEPLOY_HOST:$dir"
rsync -az --delete -e "$ssh_cmd" \
  --exclude '.env' --exclude 'secrets/' --exclude '.state/' \
  --exclude 'terraform/' --exclude 'tests/' \
  deploy scripts "$user@$DEPLOY_HOST:$dir/"

echo "deploying $TAG"
# shellcheck disable=SC2086 # ssh_cmd is a command line on purpose
$ssh_cmd "$user@$DEPLOY_HOST" "cd '$dir' && scripts/deploy.sh --infra '$TAG'"
