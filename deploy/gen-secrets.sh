#!/usr/bin/env bash
# Creates the secret files deploy/compose.yaml mounts, in SECRETS_DIR (default: deploy/secrets,
# or the value in deploy/.env). Never overwrites an existing file: run it again after adding a
# service and only the missing files appear.
#
#   deploy/gen-secrets.sh                       # generate everything that can be generated
#   TWILIO_AUTH_TOKEN=... deploy/gen-secrets.sh # also store the Twilio auth token
#
# Generated: postgres_password, database_url (application role concierge, random password),
# redis_password, redis_url, master_key, backup_key, grafana_admin_password.
# Placeholders you must replace: twilio_auth_token (unless TWILIO_AUTH_TOKEN is set),
# llm_api_key ("none" is fine without a model provider), smtp_password.
#
# KEEP master_key AND backup_key SAFE, OFF THIS SERVER TOO: without master_key the stored
# messages and phone numbers cannot be decrypted; without backup_key the backups cannot be
# restored. Losing the server must not lose them (see docs/OPERATIONS.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${SECRETS_DIR:-}
if [ -z "$dir" ] && [ -f "$here/.env" ]; then
  dir=$(sed -n 's/^SECRETS_DIR=//p' "$here/.env" | tail -n1)
fi
dir=${dir:-./secrets}
case "$dir" in
  /*) ;;
  *) dir="$here/${dir#./}" ;;
esac

command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }

umask 077
mkdir -p "$dir"
chmod 700 "$dir"

created=()
placeholders=()

# write NAME VALUE: create the file only if it does not exist. Files are 0644 inside a 0700
# directory: Compose bind-mounts them as they are, and the containers that read them run as
# different users (postgres, redis, nonroot 65532, grafana 472...), so the directory is the
# barrier on the host.
write() {
  local name=$1 value=$2
  local path="$dir/$name"
  if [ -e "$path" ]; then return; fi
  printf '%s\n' "$value" > "$path"
  chmod 644 "$path"
  created+=("$name")
}

hex() { openssl rand -hex "$1"; }

db_password=$(hex 24)
redis_password=$(hex 24)

write postgres_password "$(hex 24)"
if [ ! -e "$dir/database_url" ]; then
  write database_url "postgres://concierge:${db_password}@postgres:5432/concierge?sslmode=disable"
fi
if [ ! -e "$dir/redis_password" ]; then
  write redis_password "$redis_password"
  write redis_url "redis://:${redis_password}@redis:6379"
elif [ ! -e "$dir/redis_url" ]; then
  write redis_url "redis://:$(tr -d '\r\n' < "$dir/redis_password")@redis:6379"
fi
write master_key "$(openssl rand -base64 32)"
write backup_key "$(openssl rand -base64 32)"
write grafana_admin_password "$(hex 16)"

if [ -n "${TWILIO_AUTH_TOKEN:-}" ]; then
  write twilio_auth_token "$TWILIO_AUTH_TOKEN"
elif [ ! -e "$dir/twilio_auth_token" ]; then
  write twilio_auth_token "REPLACE_WITH_TWILIO_AUTH_TOKEN"
  placeholders+=("twilio_auth_token")
fi
if [ ! -e "$dir/llm_api_key" ]; then
  write llm_api_key "none"
  placeholders+=("llm_api_key (keep \"none\" without a model provider)")
fi
if [ ! -e "$dir/smtp_password" ]; then
  write smtp_password "REPLACE_WITH_SMTP_PASSWORD"
  placeholders+=("smtp_password")
fi

if [ ${#created[@]} -eq 0 ]; then
  echo "all secrets already exist in $dir"
else
  echo "created in $dir: ${created[*]}"
fi
if [ ${#placeholders[@]} -gt 0 ]; then
  echo "replace the placeholder in: ${placeholders[*]}"
fi
echo "back up master_key and backup_key somewhere other than this server."
