#!/bin/sh
# Runs once, when the PostgreSQL data directory is initialised (the official image runs
# /docker-entrypoint-initdb.d/*.sh as the postgres user). Creates the application role and
# its database from the database_url secret, as docs/DATABASE.md prescribes: an ordinary
# role that owns its database, with no SUPERUSER and no BYPASSRLS, so row-level security
# applies to the application.
#
# The secret must look like postgres://USER:PASSWORD@postgres:5432/DB[?params], with a
# password made of URL-safe characters (deploy/gen-secrets.sh uses hex).
set -eu

url_file=${CONCIERGE_DATABASE_URL_SECRET:-/run/secrets/database_url}
if [ ! -r "$url_file" ]; then
  echo "10-concierge-role: $url_file is missing; create the role by hand (docs/DATABASE.md)" >&2
  exit 1
fi
url=$(tr -d '\r\n' < "$url_file")

rest=${url#*://}
creds=${rest%%@*}
app_user=${creds%%:*}
app_pass=${creds#*:}
after=${rest#*@}
app_db=${after#*/}
app_db=${app_db%%\?*}

ok() { printf '%s' "$1" | grep -Eq "$2"; }
if ! ok "$app_user" '^[a-z_][a-z0-9_]*$' || ! ok "$app_db" '^[a-z_][a-z0-9_]*$'; then
  echo "10-concierge-role: user and database in database_url must match [a-z_][a-z0-9_]*" >&2
  exit 1
fi
if [ "$app_pass" = "$creds" ] || ! ok "$app_pass" '^[A-Za-z0-9._~-]{16,}$'; then
  echo "10-concierge-role: database_url needs a URL-safe password of 16+ characters" >&2
  exit 1
fi

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v app_user="$app_user" -v app_pass="$app_pass" -v app_db="$app_db" <<'SQL'
CREATE ROLE :"app_user" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD :'app_pass';
CREATE DATABASE :"app_db" OWNER :"app_user";
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
SQL
echo "10-concierge-role: created role $app_user and database $app_db"
