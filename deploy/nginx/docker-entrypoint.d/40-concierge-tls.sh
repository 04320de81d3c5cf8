#!/bin/sh
# Runs in the nginx container at start, after the official image rendered templates/ into
# /etc/nginx/conf.d (20-envsubst-on-templates.sh).
#
# 1. Until Let's Encrypt issued the certificate, nginx cannot load the HTTPS server. It then
#    starts with port 80 only, which is what certbot's first HTTP-01 challenge needs;
#    restart the nginx container once the certificate exists (docs/DEPLOY.md).
# 2. certbot renews in its own container; a reload every 12 h picks the new files up.
set -eu

conf=/etc/nginx/conf.d/concierge-https.conf
live="/etc/letsencrypt/live/${CONCIERGE_DOMAIN:?CONCIERGE_DOMAIN is not set}"

if [ -f "$conf" ] && { [ ! -s "$live/fullchain.pem" ] || [ ! -s "$live/privkey.pem" ]; }; then
    echo "$0: no certificate in $live yet: serving HTTP only (ACME challenges and /nginx-health)." >&2
    echo "$0: obtain one (docs/DEPLOY.md, 'Certificates'), then: docker compose restart nginx" >&2
    mv "$conf" "$conf.disabled"
fi

(
    while :; do
        sleep 43200
        nginx -s reload >/dev/null 2>&1 || true
    done
) &
