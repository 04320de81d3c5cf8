#!/usr/bin/env bash
# Validates the deploy kit without a Docker engine (there is none on the build machine):
#
#   nginx      `nginx -t` on the shipped config, rendered as the nginx image renders it, in a
#              temporary prefix with a self-signed certificate: direct and load-balancer modes
#   prometheus `promtool check config`, `check rules`, `test rules` (unit tests of alerts)
#   alerting   `amtool check-config` (Alertmanager), blackbox exporter `--config.check`
#   compose    parsed and merged per environment; settings checked against the binary's
#              `concierge config reference`, secrets, ports, networks, limits (tests/check_kit.py)
#   grafana    dashboards parse, are current with build_dashboards.py, and use only metrics
#              the code emits or deploy/pending-metrics.txt lists
#   terraform  `terraform fmt -check -recursive` (when terraform is installed), every .tf
#              parsed with python-hcl2, cloud-init.yaml rendered (`terraform console`) and parsed
#   scripts    `bash -n` / `sh -n` always, shellcheck when installed; scripts/deploy.sh and
#              rollback.sh run against a fake docker (tests/deploy-smoke.sh)
#
# Usage: deploy/check.sh [CONFIG_REFERENCE.md]
#   CONFIG_REFERENCE.md is the output of `concierge config reference` (.ci/run writes
#   target/config-reference.md); without it the script runs `cargo run -q -p concierge`.
# Installs what is missing, as root: the Debian packages nginx, prometheus,
# prometheus-alertmanager, prometheus-blackbox-exporter and ShellCheck, and python-hcl2 from
# PyPI. It never starts nginx or touches /etc/nginx. CHECK_NO_INSTALL=1 skips installing (missing tools
# then fail the check).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
started=$SECONDS

log() { printf '\n== %s\n' "$*"; }
failures=0
pass() { printf '  ok    %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }

# Runs a command quietly; on failure prints its output and counts a failure.
run() {
  local what=$1
  shift
  local out
  if out=$("$@" 2>&1); then
    pass "$what"
  else
    fail "$what"
    printf '%s\n' "$out" | sed 's/^/        /'
  fi
}

# --- tools -----------------------------------------------------------------------------------

need_apt_update=1
apt_install() {
  if [ "${CHECK_NO_INSTALL:-0}" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    return 1
  fi
  # Package scripts must not start nginx or prometheus on this machine.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  if [ "$need_apt_update" = 1 ]; then apt-get update -qq; need_apt_update=0; fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}

log "tools"
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v promtool >/dev/null || missing+=(prometheus)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v prometheus-blackbox-exporter >/dev/null || missing+=(prometheus-blackbox-exporter)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "  installing ${missing[*]} (Debian packages)"
  apt_install "${missing[@]}" || echo "  could not install ${missing[*]}"
fi
PY=$(command -v /usr/bin/python3 || command -v python3)
if ! python3 -c 'import yaml, hcl2' 2>/dev/null; then
  if [ "${CHECK_NO_INSTALL:-0}" != 1 ]; then
    echo "  installing python-hcl2 and PyYAML (PyPI)"
    python3 -m pip install -q --disable-pip-version-check python-hcl2 PyYAML >/dev/null 2>&1 || true
  fi
fi
for tool in nginx promtool amtool prometheus-blackbox-exporter openssl; do
  if command -v "$tool" >/dev/null; then pass "$tool: $(command -v "$tool")"; else fail "$tool is not installed"; fi
done
# Terraform is not in Debian's archive: use it when the machine has it, otherwise parse with
# python-hcl2 and render cloud-init with an emulation of templatefile (both said below).
if command -v terraform >/dev/null; then pass "terraform: $(command -v terraform)"; else echo "  skip  terraform not installed: fmt -check and terraform console skipped"; fi
if command -v shellcheck >/dev/null; then pass "shellcheck: $(command -v shellcheck)"; else echo "  skip  shellcheck not installed: bash -n only"; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- configuration reference -------------------------------------------------------------------

log "configuration reference"
ref=${1:-}
if [ -z "$ref" ]; then
  ref="$work/config-reference.md"
  cargo run --locked -q -p concierge -- config reference > "$ref"
fi
[ -s "$ref" ] || { echo "empty configuration reference: $ref" >&2; exit 1; }
pass "settings read from $ref"

# --- nginx -------------------------------------------------------------------------------------

# render_nginx DIR LISTEN_OPTS REAL_IP_HEADER TRUSTED: the official image's start-up, offline:
# templates/*.template with CONCIERGE_DOMAIN and NGINX_* substituted into conf.d/, paths moved
# under DIR, and a self-signed certificate where Let's Encrypt's would be.
render_nginx() {
  local dir=$1
  mkdir -p "$dir/conf.d" "$dir/snippets" "$dir/letsencrypt/live/sms.example.test" "$dir/www"
  cp deploy/nginx/snippets/*.conf "$dir/snippets/"
  if [ -f /etc/nginx/mime.types ]; then cp /etc/nginx/mime.types "$dir/"; else echo 'types {}' > "$dir/mime.types"; fi
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sms.example.test" \
    -keyout "$dir/letsencrypt/live/sms.example.test/privkey.pem" \
    -out "$dir/letsencrypt/live/sms.example.test/fullchain.pem" >/dev/null 2>&1
  CONCIERGE_DOMAIN=sms.example.test NGINX_LISTEN_OPTS=$2 NGINX_REAL_IP_HEADER=$3 NGINX_TRUSTED_PROXIES=$4 \
    "$PY" - "$dir" deploy/nginx <<'PY'
import os, re, sys
from pathlib import Path
dst, src = Path(sys.argv[1]), Path(sys.argv[2])
filt = re.compile(r"^(CONCIERGE_DOMAIN|NGINX_)")
env = {k: v for k, v in os.environ.items() if filt.match(k)}
def subst(text):
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
                  lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)
for t in sorted((src / "templates").glob("*.template")):
    (dst / "conf.d" / t.name[: -len(".template")]).write_text(subst(t.read_text()))
for f in [dst / "nginx.conf"] + list((dst / "conf.d").glob("*.conf")) + list((dst / "snippets").glob("*.conf")):
    text = (src / "nginx.conf").read_text() if f.name == "nginx.conf" and f.parent == dst else f.read_text()
    text = text.replace("/etc/nginx/", f"{dst}/").replace("/etc/letsencrypt/", f"{dst}/letsencrypt/")
    text = text.replace("/var/www/certbot", f"{dst}/www").replace("/tmp/nginx.pid", f"{dst}/nginx.pid")
    f.write_text(text)
PY
  # Debian's nginx (1.22) predates `http2 on;` (1.25.1): express it the older way there.
  local version
  version=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
  if [ "$(printf '%s\n1.25.1\n' "$version" | sort -V | head -n1)" != "1.25.1" ]; then
    sed -i -e '/^\s*http2 on;/d' -e 's/listen 443 ssl default_server/listen 443 ssl http2 default_server/' \
      "$dir/conf.d/concierge-https.conf"
  fi
}

log "nginx"
nginx_version=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
render_nginx "$work/nginx-direct" "" "X-Forwarded-For" "127.0.0.1/32"
run "nginx $nginx_version -t: direct on the Internet (TLS, HTTP/2, rate-limit zones, webhooks, streams)" \
  nginx -t -q -p "$work/nginx-direct" -c "$work/nginx-direct/nginx.conf" -e "$work/nginx-direct/error.log"
render_nginx "$work/nginx-lb" " proxy_protocol" "proxy_protocol" "10.0.0.0/16"
run "nginx -t: behind the load balancer (PROXY protocol, real client IP from 10.0.0.0/16)" \
  nginx -t -q -p "$work/nginx-lb" -c "$work/nginx-lb/nginx.conf" -e "$work/nginx-lb/error.log"
conf="$work/nginx-direct/conf.d/concierge-https.conf"
checks_ok=1
for want in "zone=webhooks" "zone=agent" "zone=oauth" "zone=api" "location = /metrics" \
  "proxy_buffering off" "Strict-Transport-Security" "/webhooks/twilio/" "client_max_body_size"; do
  grep -rq -- "$want" "$work/nginx-direct" || { checks_ok=0; echo "        missing: $want"; }
done
grep -q 'rate=100r/m' deploy/nginx/nginx.conf && grep -q 'zone=agent:10m *rate=60r/m' deploy/nginx/nginx.conf || checks_ok=0
if [ "$checks_ok" = 1 ] && ! grep -q 'proxy_pass http://' "$conf"; then
  pass "rate limits (API 100/min, agent 60/min, OAuth 10/min), /metrics refused, HSTS, streams unbuffered, URI passed unchanged"
else
  fail "nginx site: expected directives"
fi

# --- Prometheus, Alertmanager, blackbox ----------------------------------------------------------

log "prometheus"
run "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
run "promtool check rules deploy/prometheus/rules/*.yml" promtool check rules deploy/prometheus/rules/*.yml
run "promtool test rules deploy/prometheus/tests/alerts_test.yml" promtool test rules deploy/prometheus/tests/alerts_test.yml
run "amtool check-config deploy/alertmanager/alertmanager.yml" amtool check-config deploy/alertmanager/alertmanager.yml
run "blackbox exporter --config.check deploy/blackbox/blackbox.yml" \
  prometheus-blackbox-exporter --config.check --config.file=deploy/blackbox/blackbox.yml

# --- compose, Dockerfile, rules' and dashboards' metrics, other YAML ---------------------------

log "grafana dashboards are current"
run "deploy/grafana/build_dashboards.py --check" "$PY" deploy/grafana/build_dashboards.py --check

log "terraform"
export TF_CLI_CONFIG_FILE=/dev/null
if command -v terraform >/dev/null; then
  run "terraform fmt -check -recursive deploy/terraform" terraform fmt -check -recursive deploy/terraform
fi
run "python-hcl2 parses every .tf file" python3 - <<'PY'
import sys
from pathlib import Path
import hcl2
files = sorted(Path("deploy/terraform").rglob("*.tf"))
kinds = {}
for f in files:
    with f.open() as fh:
        doc = hcl2.load(fh)
    for r in doc.get("resource", []):
        for kind in r:
            kind = kind.strip('"')
            kinds[kind] = kinds.get(kind, 0) + 1
need = {"hcloud_ssh_key", "hcloud_firewall", "hcloud_placement_group", "hcloud_volume", "hcloud_server",
        "hcloud_volume_attachment", "hcloud_load_balancer", "hcloud_network"}
missing = need - set(kinds)
print(f"{len(files)} files, resources: {', '.join(sorted(kinds))}")
sys.exit(1 if missing else 0)
PY
# render_cloud_init VOLUME_ID OUT: templatefile() through `terraform console`, or (without
# terraform) a small emulation of the two constructs the template uses: ${var} and
# %{ for x in list ~}...%{ endfor ~}.
render_cloud_init() {
  local volume=$1 out=$2
  if command -v terraform >/dev/null; then
    local expr="jsonencode(templatefile(\"$ROOT/deploy/terraform/cloud-init.yaml\", {admin_user = \"deploy\", ssh_public_key = \"ssh-ed25519 AAAAexample ops\", ssh_allowed_cidrs = [\"203.0.113.10/32\", \"2001:db8::/32\"], volume_id = \"$volume\", app_dir = \"/opt/concierge\"}))"
    (cd "$work" && printf '%s\n' "$expr" | terraform console 2>/dev/null) |
      "$PY" -c 'import json,sys; sys.stdout.write(json.loads(json.loads(sys.stdin.read())))' > "$out" 2>/dev/null
  else
    "$PY" - "$ROOT/deploy/terraform/cloud-init.yaml" "$volume" > "$out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
values = {"admin_user": "deploy", "ssh_public_key": "ssh-ed25519 AAAAexample ops",
          "volume_id": sys.argv[2], "app_dir": "/opt/concierge"}
lists = {"ssh_allowed_cidrs": ["203.0.113.10/32", "2001:db8::/32"]}
def loop(m):
    var, name, body = m.group(1), m.group(2), m.group(3)
    return "".join(re.sub(r"\$\{" + var + r"\}", v, body) for v in lists[name])
text = re.sub(r"%\{ for (\w+) in (\w+) ~\}\n(.*?)%\{ endfor ~\}\n", loop, text, flags=re.S)
if "%{" in text:
    sys.exit("unsupported template directive")
def var(m):
    if m.group(1) not in values:
        raise SystemExit(f"unknown template variable {m.group(1)}")
    return values[m.group(1)]
sys.stdout.write(re.sub(r"(?<!\$)\$\{(\w+)\}", var, text).replace("$${", "${"))
PY
  fi
}
cloud_inits=()
for volume in 4242 ""; do
  out="$work/cloud-init-${volume:-novolume}.yaml"
  if render_cloud_init "$volume" "$out" && [ -s "$out" ]; then
    cloud_inits+=("$out")
  else
    fail "could not render cloud-init.yaml (volume_id=\"$volume\")"
  fi
done
how="terraform console"
command -v terraform >/dev/null || how="an emulation of templatefile (no terraform here)"
[ ${#cloud_inits[@]} -eq 0 ] || pass "cloud-init.yaml rendered by $how, with and without a volume"

log "compose, Dockerfile, alert rules, dashboards (deploy/tests/check_kit.py)"
if ! python3 deploy/tests/check_kit.py "$ROOT" "$ref" --cloud-init "${cloud_inits[@]}"; then
  failures=$((failures + 1))
fi

# --- scripts -----------------------------------------------------------------------------------

log "scripts"
mapfile -t scripts < <({ ls scripts/*.sh; find deploy -name '*.sh' -type f; } | sort -u)
syntax_ok=1
for s in "${scripts[@]}"; do
  shell=bash
  head -n1 "$s" | grep -q '^#!/bin/sh' && shell='sh'
  "$shell" -n "$s" || { syntax_ok=0; echo "        $s"; }
done
if [ "$syntax_ok" = 1 ]; then pass "${#scripts[@]} scripts parse (bash -n / sh -n)"; else fail "shell syntax"; fi
if command -v shellcheck >/dev/null; then
  run "shellcheck ${#scripts[@]} scripts" shellcheck "${scripts[@]}"
fi
run "scripts/deploy.sh and rollback.sh against a fake docker (deploy/tests/deploy-smoke.sh)" deploy/tests/deploy-smoke.sh
bin=${CONCIERGE_BIN:-target/debug/concierge}
if [ -x "$bin" ]; then
  for cmd in healthcheck backup restore; do
    if "$bin" "$cmd" --help >/dev/null 2>&1; then
      pass "the binary has \`concierge $cmd\`"
    else
      echo "  warn  $bin has no \`$cmd\` subcommand yet (the image and compose files use it)"
    fi
  done
fi

log "summary"
echo "deploy/check.sh: $failures failed ($((SECONDS - started)) s)"
[ "$failures" = 0 ]
