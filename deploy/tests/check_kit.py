#!/usr/bin/env python3
"""Static checks of the deploy kit that need no Docker engine (called by deploy/check.sh).

    check_kit.py REPO_ROOT CONFIG_REFERENCE.md [--cloud-init RENDERED.yaml ...]

- Compose: each environment (base + override, merged the way Compose merges) parses; the
  concierge services set only CONCIERGE_* variables the binary knows (config reference) or
  that deploy/pending-settings.txt lists; *_FILE only for secrets, pointing at a secret the
  service mounts; every secret is defined; only nginx publishes ports (dev: 127.0.0.1 only);
  networks are internal except nginx's `edge` and the outbound-only `egress`; restart,
  logging and memory limits everywhere; api/worker wait for migrate; every ${VAR} is
  documented in .env.example; bind-mounted files exist.
- Dockerfile: its CONCIERGE_* defaults are known settings; non-root, health check, roles.
- Prometheus rules and Grafana dashboards: every concierge_* metric a query names is emitted
  by the code or pending (deploy/pending-metrics.txt); other names belong to the exporters
  we run; every alert has a severity, summary, description and a runbook anchor that exists
  in docs/OPERATIONS.md; dashboards parse and use provisioned data sources.
- YAML of Loki, Grafana provisioning, Alertmanager, blackbox, cloud-init (rendered) parses.
Prints one line per check; exits 1 if any failed.
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1]).resolve()
REFERENCE = Path(sys.argv[2])
CLOUD_INIT = []
if "--cloud-init" in sys.argv:
    CLOUD_INIT = [Path(p) for p in sys.argv[sys.argv.index("--cloud-init") + 1:]]

DEPLOY = ROOT / "deploy"
failures = []
warnings = []


def ok(msg):
    print(f"  ok    {msg}")


def fail(msg):
    failures.append(msg)
    print(f"  FAIL  {msg}")


def warn(msg):
    warnings.append(msg)
    print(f"  warn  {msg}")


def expect(cond, msg, detail=""):
    if cond:
        ok(msg)
    else:
        fail(f"{msg}{': ' + detail if detail else ''}")
    return cond


# --- inputs ----------------------------------------------------------------------------------

def load_reference():
    known = {}
    for line in REFERENCE.read_text().splitlines():
        m = re.match(r"\|\s*`(CONCIERGE_[A-Z0-9_]+)`\s*\|.*\|\s*(yes)?\s*\|\s*$", line)
        if m:
            known[m.group(1)] = bool(m.group(2))
    return known


def load_pending_settings():
    pending = {}
    for line in (DEPLOY / "pending-settings.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            parts = line.split()
            pending[parts[0]] = len(parts) > 1 and parts[1] == "secret"
    return pending


def load_pending_metrics():
    names = set()
    for line in (DEPLOY / "pending-metrics.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line.split()[0])
    return names


def emitted_metrics():
    names = set()
    for path in ROOT.glob("crates/*/src/**/*.rs"):
        names.update(re.findall(r'"(concierge_[a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    return names


REFERENCE_VARS = load_reference()
PENDING_SETTINGS = load_pending_settings()
PENDING_METRICS = load_pending_metrics()
EMITTED = emitted_metrics()


# --- YAML with Compose's merge tags ----------------------------------------------------------

class Tagged:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


class ComposeLoader(yaml.SafeLoader):
    pass


def _tagged(tag):
    def construct(loader, node):
        if isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            value = loader.construct_scalar(node)
        return Tagged(tag, value)
    return construct


ComposeLoader.add_constructor("!override", _tagged("!override"))
ComposeLoader.add_constructor("!reset", _tagged("!reset"))


def load_compose(path):
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def volume_parts(v):
    """(source, target) of a short or long volume entry; ${VAR:-default} may hold colons."""
    if isinstance(v, dict):
        return v.get("source"), v.get("target")
    text = re.sub(r"\$\{[^}]*\}", lambda m: m.group(0).replace(":", "\0"), str(v))
    parts = [p.replace("\0", ":") for p in text.split(":")]
    return (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])


def volume_target(v):
    return volume_parts(v)[1]


UNION_LISTS = {"ports", "expose", "secrets", "networks", "extra_hosts", "dns", "cap_add",
               "cap_drop", "security_opt", "profiles"}


def merge(base, over):
    """Compose's override semantics, for the keys this kit uses."""
    for key, value in over.items():
        if isinstance(value, Tagged):
            if value.tag == "!reset":
                base.pop(key, None)
            else:
                base[key] = value.value
        elif isinstance(value, dict) and isinstance(base.get(key), dict) and key not in ("healthcheck",):
            merge(base[key], value)
        elif key == "volumes" and isinstance(value, list) and isinstance(base.get(key), list):
            targets = {volume_target(v): i for i, v in enumerate(base[key])}
            for v in value:
                t = volume_target(v)
                if t in targets:
                    base[key][targets[t]] = v
                else:
                    base[key].append(v)
        elif key in UNION_LISTS and isinstance(value, list) and isinstance(base.get(key), list):
            base[key] = base[key] + [v for v in value if v not in base[key]]
        else:
            base[key] = value
    return base


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def is_concierge(service):
    return "concierge" in str(service.get("image", "")).split("/")[-1].split(":")[0]


def published(service):
    return service.get("ports") or []


def check_setting(var, where):
    """A CONCIERGE_* variable must be a setting (or a pending one); _FILE only for secrets."""
    base = var[:-5] if var.endswith("_FILE") else var
    is_file = base != var
    if base in REFERENCE_VARS:
        if is_file and not REFERENCE_VARS[base]:
            fail(f"{where}: {var}: {base} is not a secret, so it has no _FILE form")
            return False
        return True
    if base in PENDING_SETTINGS:
        if is_file and not PENDING_SETTINGS[base]:
            fail(f"{where}: {var}: pending setting {base} is not marked secret")
            return False
        return True
    if var in REFERENCE_VARS:
        return True
    fail(f"{where}: {var} is not a setting of the binary (concierge config reference) nor pending")
    return False


# --- compose ---------------------------------------------------------------------------------

def check_compose():
    print("compose")
    base_path = DEPLOY / "compose.yaml"
    raw_texts = {p.name: p.read_text() for p in sorted(DEPLOY.glob("compose*.yaml"))}
    envs = {}
    for name in ("prod", "stage", "dev"):
        merged = load_compose(base_path)
        merge(merged, load_compose(DEPLOY / f"compose.{name}.yaml"))
        envs[name] = merged
    ok(f"parsed {', '.join(raw_texts)} and merged base + prod, stage, dev")

    for name, cfg in envs.items():
        services = cfg["services"]
        secrets_defined = set(cfg.get("secrets", {}))
        networks = cfg.get("networks", {})
        problems = []
        active = {s: svc for s, svc in services.items() if not svc.get("profiles")}

        # settings of the concierge image
        concierge = [s for s, svc in services.items() if is_concierge(svc)]
        checked = 0
        for s in concierge:
            svc = services[s]
            mounted = set(svc.get("secrets") or [])
            for var, value in env_of(svc).items():
                if var.startswith("CONCIERGE_"):
                    checked += 1
                    if check_setting(var, f"{name}/{s}") and var.endswith("_FILE"):
                        m = re.fullmatch(r"/run/secrets/([a-z0-9_]+)", str(value))
                        if not m or m.group(1) not in mounted:
                            problems.append(f"{s}: {var}={value} is not a secret the service mounts")
            command = svc.get("command") or ["serve"]
            if command[0] not in ("serve", "worker", "all", "migrate"):
                problems.append(f"{s}: command {command[0]} is not a role")
        expect(checked > 0, f"{name}: {checked} CONCIERGE_* variables on {', '.join(concierge)} are known settings")

        for s, svc in services.items():
            for sec in svc.get("secrets") or []:
                sec_name = sec["source"] if isinstance(sec, dict) else sec
                if sec_name not in secrets_defined:
                    problems.append(f"{s}: secret {sec_name} is not defined")
            for var, value in env_of(svc).items():
                if var.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                    sec_name = str(value).rsplit("/", 1)[1]
                    if sec_name not in set(svc.get("secrets") or []):
                        problems.append(f"{s}: {var} names secret {sec_name} the service does not mount")
        expect(not [p for p in problems if "secret" in p],
               f"{name}: every secret used is defined and mounted", "; ".join(p for p in problems if "secret" in p))

        # published ports
        port_problems = []
        for s, svc in active.items():
            for p in published(svc):
                spec = str(p["published"]) if isinstance(p, dict) else str(p)
                if name == "dev":
                    if not spec.startswith("127.0.0.1:"):
                        port_problems.append(f"{s} publishes {spec} beyond 127.0.0.1")
                elif s != "nginx":
                    port_problems.append(f"{s} publishes {spec}")
        if name != "dev":
            nginx_ports = sorted(str(p) for p in published(services["nginx"]))
            if nginx_ports != ["443:443", "80:80"]:
                port_problems.append(f"nginx publishes {nginx_ports}, expected 80 and 443")
        expect(not port_problems,
               f"{name}: only nginx publishes ports" + (" (dev: UIs on 127.0.0.1 only)" if name == "dev" else " (80, 443)"),
               "; ".join(port_problems))

        # networks
        net_problems = []
        for n, spec in networks.items():
            spec = spec or {}
            if n in ("edge", "egress"):
                if spec.get("internal"):
                    net_problems.append(f"{n} must not be internal")
            elif not spec.get("internal"):
                net_problems.append(f"network {n} is not internal")
        for s, svc in services.items():
            nets = svc.get("networks") or []
            nets = list(nets) if isinstance(nets, (list, dict)) else []
            if "edge" in nets and s != "nginx":
                net_problems.append(f"{s} is on the public edge network")
            if svc.get("network_mode") == "host" and s != "node-exporter":
                net_problems.append(f"{s} uses the host network")
            if not nets and svc.get("network_mode") != "host":
                net_problems.append(f"{s} has no network (it would join the default, non-internal one)")
            for n in nets:
                if n not in networks:
                    net_problems.append(f"{s}: network {n} is not defined")
        expect(not net_problems, f"{name}: networks internal except edge (nginx only) and egress (outbound, no ports)",
               "; ".join(net_problems))

        # restart, logging, limits, health
        ops = []
        for s, svc in active.items():
            restart = svc.get("restart")
            if s == "migrate":
                if restart != "no":
                    ops.append("migrate must not restart")
            elif restart not in ("unless-stopped", "always"):
                ops.append(f"{s}: restart={restart}")
            if not svc.get("logging"):
                ops.append(f"{s}: no log rotation")
            limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
            if "memory" not in limits:
                ops.append(f"{s}: no memory limit")
        for s in ("api", "worker"):
            dep = (services[s].get("depends_on") or {}).get("migrate") or {}
            if dep.get("condition") != "service_completed_successfully":
                ops.append(f"{s} does not wait for migrate to complete")
            if "healthcheck" not in services[s]:
                ops.append(f"{s} has no healthcheck")
        worker_env = env_of(services["worker"])
        if "CONCIERGE_BACKUP__DIR" not in worker_env:
            ops.append("worker: no backup directory")
        else:
            bdir = worker_env["CONCIERGE_BACKUP__DIR"]
            if not any(volume_target(v) in (bdir, "/data") for v in services["worker"].get("volumes") or []):
                ops.append(f"worker: backup directory {bdir} is not a mounted volume")
        if name != "dev":
            pg = env_of(services["postgres"])
            if "POSTGRES_PASSWORD_FILE" not in pg:
                ops.append("postgres password is not read from a secret")
            redis_cmd = " ".join(services["redis"].get("command") or [])
            if "requirepass" not in redis_cmd or "/run/secrets/redis_password" not in redis_cmd:
                ops.append("redis has no password from the secret")
            if "appendonly yes" not in (DEPLOY / "redis" / "redis.conf").read_text():
                ops.append("redis.conf does not enable AOF")
        expect(not ops, f"{name}: restart policies, log rotation, memory limits, migrate gate, backups volume, DB/Redis passwords",
               "; ".join(ops))

        # bind-mounted files exist
        missing = []
        for s, svc in services.items():
            for v in svc.get("volumes") or []:
                src = volume_parts(v)[0] or ""
                if src.startswith("./") and not (DEPLOY / src).exists():
                    missing.append(f"{s}: {src}")
        expect(not missing, f"{name}: every bind-mounted file of the kit exists", ", ".join(missing))

    # variables
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (DEPLOY / ".env.example").read_text(), re.M))
    used = set()
    for text in raw_texts.values():
        used.update(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    undocumented = sorted(used - documented)
    expect(not undocumented, f"all {len(used)} variables the compose files use are in .env.example",
           ", ".join(undocumented))
    bad = [v for v in sorted(documented) if v.startswith("CONCIERGE_") and v not in ("CONCIERGE_IMAGE", "CONCIERGE_TAG", "CONCIERGE_DOMAIN")
           and not check_setting(v, ".env.example")]
    expect(not bad, ".env.example: its CONCIERGE_* settings are known")


# --- Dockerfile --------------------------------------------------------------------------------

def check_dockerfile():
    print("Dockerfile")
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    env = {}
    for line in joined.splitlines():
        if line.startswith("ENV "):
            for k, v in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line):
                env[k] = v
    for var in env:
        if var.startswith("CONCIERGE_"):
            check_setting(var, "Dockerfile")
    want = {
        "CONCIERGE_DATA_DIR": "/data",
        "CONCIERGE_HTTP__LISTEN": "0.0.0.0:8080",
        "CONCIERGE_ADMIN__LISTEN": "0.0.0.0:9090",
        "CONCIERGE_LOG_FORMAT": "json",
    }
    expect(all(env.get(k) == v for k, v in want.items()), "ENV defaults: data dir /data, listeners 0.0.0.0:8080 and :9090, JSON logs",
           str({k: env.get(k) for k in want}))
    expect(re.search(r"^USER nonroot", text, re.M) is not None, "runs as the nonroot user")
    expect('CMD ["concierge", "healthcheck"]' in text, "HEALTHCHECK runs `concierge healthcheck`")
    expect('ENTRYPOINT ["concierge"]' in text and 'CMD ["serve"]' in text, 'ENTRYPOINT ["concierge"], CMD ["serve"]')
    expect("cargo build --release --locked -p concierge" in text, "builds with --locked, release, -p concierge")
    labels = set(re.findall(r"org\.opencontainers\.image\.([a-z.]+)=", text))
    expect({"version", "revision", "source", "title", "licenses"} <= labels, "OCI labels (version and revision from build args)")


# --- PromQL ------------------------------------------------------------------------------------

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan", "Inf", "NaN"}
EXTERNAL = ("node_", "pg_", "redis_", "probe_", "prometheus_", "alertmanager_", "grafana_",
            "loki_", "scrape_")


def promql_metrics(expr):
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"'(?:\\.|[^'\\])*'", "''", s)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        if word in KEYWORDS:
            continue
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue
        if s[m.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def metric_status(name):
    """emitted | pending | external | unknown"""
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    for candidate in (name, base):
        if candidate in EMITTED:
            return "emitted"
    for candidate in (name, base):
        if candidate in PENDING_METRICS:
            return "pending"
    if name == "up" or name.startswith(EXTERNAL):
        return "external"
    return "unknown"


def check_metrics(where, exprs, used_pending):
    unknown = {}
    counts = {"emitted": set(), "pending": set(), "external": set()}
    for label, expr in exprs:
        for name in promql_metrics(expr):
            status = metric_status(name)
            if status == "unknown":
                unknown.setdefault(name, label)
            else:
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                counts[status].add(base if base in EMITTED | PENDING_METRICS else name)
    used_pending.update(counts["pending"])
    detail = "; ".join(f"{n} (in {w})" for n, w in sorted(unknown.items()))
    expect(not unknown,
           f"{where}: {len(counts['emitted'])} concierge metrics emitted by the code, "
           f"{len(counts['pending'])} pending, {len(counts['external'])} from exporters",
           "not emitted and not pending: " + detail)


def slug(heading):
    h = heading.strip().lower()
    h = re.sub(r"[^a-z0-9 _-]", "", h)
    return h.replace(" ", "-")


def check_rules(used_pending):
    print("alert rules")
    ops = ROOT / "docs" / "OPERATIONS.md"
    anchors = set()
    if ops.exists():
        for line in ops.read_text().splitlines():
            m = re.match(r"^#{1,6}\s+(.*)$", line)
            if m:
                anchors.add(slug(m.group(1)))
    exprs, problems, alerts = [], [], set()
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                exprs.append((f"{path.name}:{name}", str(rule["expr"])))
                if "alert" not in rule:
                    continue
                alerts.add(name)
                ann, labels = rule.get("annotations", {}), rule.get("labels", {})
                if labels.get("severity") not in ("critical", "warning", "info"):
                    problems.append(f"{name}: severity {labels.get('severity')}")
                for key in ("summary", "description", "runbook_url"):
                    if not ann.get(key):
                        problems.append(f"{name}: no {key}")
                m = re.search(r"#([a-z0-9_-]+)$", ann.get("runbook_url", ""))
                if not m:
                    problems.append(f"{name}: runbook_url has no anchor")
                elif m.group(1) not in anchors:
                    problems.append(f"{name}: docs/OPERATIONS.md has no heading for #{m.group(1)}")
    expect(not problems, f"{len(alerts)} alerts have severity, summary, description and a runbook anchor present in docs/OPERATIONS.md",
           "; ".join(problems))
    check_metrics("alert rules", exprs, used_pending)


def check_dashboards(used_pending):
    print("grafana")
    prov = DEPLOY / "grafana" / "provisioning"
    uids = set()
    for path in sorted(prov.rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for ds in doc.get("datasources") or []:
            uids.add(ds["uid"])
    expect({"prometheus", "loki", "jaeger"} <= uids, f"provisioned data sources: {', '.join(sorted(uids))}")
    exprs, problems, titles = [], [], []
    files = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    for path in files:
        try:
            board = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}: {e}")
            continue
        titles.append(board["title"])
        for panel in board.get("panels", []):
            ds = (panel.get("datasource") or {}).get("uid")
            if panel["type"] in ("row", "text"):
                continue
            if ds not in uids:
                problems.append(f"{path.name}/{panel['title']}: data source {ds}")
            for t in panel.get("targets", []):
                if ds == "prometheus":
                    exprs.append((f"{path.name}/{panel['title']}", t["expr"]))
                    names = promql_metrics(t["expr"])
                    if any(metric_status(n) == "pending" for n in names) and "PENDING" not in panel.get("description", ""):
                        problems.append(f"{path.name}/{panel['title']}: uses a pending metric without saying PENDING")
    expect(len(files) >= 7 and not problems, f"{len(files)} dashboards parse ({'; '.join(titles)})", "; ".join(problems))
    check_metrics("dashboards", exprs, used_pending)


def check_pending(used_pending):
    print("pending lists")
    for name in sorted(PENDING_METRICS):
        if name in EMITTED:
            warn(f"{name} is now emitted by the code: remove it from deploy/pending-metrics.txt")
        elif name not in used_pending:
            warn(f"{name} is listed as pending but no rule or dashboard uses it")
    for var in sorted(PENDING_SETTINGS):
        if var in REFERENCE_VARS:
            warn(f"{var} is now in `concierge config reference`: remove it from deploy/pending-settings.txt")
    still = sorted(v for v in PENDING_SETTINGS if v not in REFERENCE_VARS)
    ok(f"{len(PENDING_METRICS)} pending metrics, {len(still)} pending settings ({', '.join(still) or 'none'})")


def check_yaml_files():
    print("other configuration")
    for rel in ("loki/loki.yaml", "alertmanager/alertmanager.yml", "blackbox/blackbox.yml",
                "grafana/provisioning/datasources/datasources.yaml",
                "grafana/provisioning/dashboards/dashboards.yaml",
                "ci/github-actions.yml", "ci/gitlab-ci.yml"):
        try:
            yaml.safe_load((DEPLOY / rel).read_text())
            ok(f"{rel} parses")
        except yaml.YAMLError as e:
            fail(f"{rel}: {e}")
    loki = yaml.safe_load((DEPLOY / "loki/loki.yaml").read_text())
    expect(loki["compactor"]["retention_enabled"] and loki["limits_config"]["retention_period"] == "720h",
           "loki keeps logs 30 days (compactor retention)")
    alloy = (DEPLOY / "alloy/config.alloy").read_text()
    stripped = re.sub(r'"(?:\\.|[^"\\])*"', '""', re.sub(r"//[^\n]*", "", alloy))
    balanced = stripped.count("{") == stripped.count("}") and stripped.count("[") == stripped.count("]")
    expect(balanced and "loki.source.docker" in alloy and "http://loki:3100/loki/api/v1/push" in alloy,
           "alloy/config.alloy: balanced blocks, reads Docker logs, writes to Loki (not executed: no Alloy binary here)")
    for path in CLOUD_INIT:
        text = path.read_text()
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            fail(f"cloud-init ({path.name}): {e}")
            continue
        need = {"packages", "runcmd", "write_files", "users"}
        pkgs = set(doc.get("packages") or [])
        expect(text.startswith("#cloud-config\n") and need <= set(doc)
               and {"docker.io", "docker-compose-v2", "ufw", "fail2ban"} <= pkgs,
               f"cloud-init, rendered ({path.name}), is valid #cloud-config with Docker, Compose, UFW, Fail2Ban")


def check_doc_links():
    print("docs")
    problems = []
    docs = {p.name: p for p in (ROOT / "docs").glob("*.md")}
    anchors = {}
    for name, path in docs.items():
        anchors[name] = {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", path.read_text(), re.M)}
    for name in ("DEPLOY.md", "OPERATIONS.md"):
        if name not in docs:
            problems.append(f"docs/{name} is missing")
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", docs[name].read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            if not file:
                file = name
            path = (docs[name].parent / file).resolve()
            if not path.exists():
                problems.append(f"{name}: link to missing {target}")
            elif anchor and path.name in anchors and path.parent == docs[name].parent and anchor not in anchors[path.name]:
                problems.append(f"{name}: no heading for {target}")
    expect(not problems, "docs/DEPLOY.md and docs/OPERATIONS.md: every relative link and anchor resolves", "; ".join(problems))


def main():
    expect(len(REFERENCE_VARS) > 20, f"config reference: {len(REFERENCE_VARS)} settings read from {REFERENCE}")
    used_pending = set()
    check_compose()
    check_dockerfile()
    check_rules(used_pending)
    check_dashboards(used_pending)
    check_pending(used_pending)
    check_yaml_files()
    check_doc_links()
    print(f"check_kit: {len(failures)} failed, {len(warnings)} warnings")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
