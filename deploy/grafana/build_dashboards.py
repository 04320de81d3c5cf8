#!/usr/bin/env python3
"""Writes the Grafana dashboards of deploy/grafana/dashboards/*.json.

The JSON files are generated so that every query lives in one readable place and
deploy/check.sh can verify the files are current (`build_dashboards.py --check`) and that
every metric a query names is emitted by the code or listed in deploy/pending-metrics.txt.

    python3 deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python3 deploy/grafana/build_dashboards.py --check  # exit 1 if they are out of date

Metric names and labels come from the code (grep `"concierge_` under crates/); see
docs/AGENTS.md ("Metrics") and docs/OPERATIONS.md ("Dashboards").
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}

PENDING_NOTE = (
    "PENDING: {metric} is not emitted by Concierge yet ({why}). This panel stays empty "
    "until it is; the name is listed in deploy/pending-metrics.txt."
)

NOT_HEALTH = 'route!~"/health|/ready"'


class Board:
    """A dashboard laid out on Grafana's 24-column grid, left to right, top to bottom."""

    def __init__(self, uid, title, description, tags):
        self.uid = uid
        self.title = title
        self.description = description
        self.tags = ["concierge"] + tags
        self.panels = []
        self.variables = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self.y += 1

    def _panel(self, kind, title, description, targets, w, h, datasource=PROM, **extra):
        panel = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": datasource,
            "gridPos": self._place(w, h),
            "targets": [
                dict(
                    {"refId": chr(ord("A") + i), "datasource": datasource},
                    **t,
                )
                for i, t in enumerate(targets)
            ],
        }
        panel.update(extra)
        self.panels.append(panel)

    def timeseries(self, title, description, queries, unit="short", w=12, h=8, stack=False,
                   min_zero=True):
        defaults = {
            "unit": unit,
            "custom": {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 20 if stack else 10,
                "showPoints": "never",
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            },
        }
        if min_zero:
            defaults["min"] = 0
        self._panel(
            "timeseries",
            title,
            description,
            [{"expr": e, "legendFormat": legend, "range": True} for e, legend in queries],
            w,
            h,
            fieldConfig={"defaults": defaults, "overrides": []},
            options={
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            },
        )

    def stat(self, title, description, expr, unit="short", w=6, h=4, thresholds=None,
             mappings=None, legend="", decimals=None):
        steps = [{"color": "green", "value": None}]
        for value, color in thresholds or []:
            steps.append({"color": color, "value": value})
        defaults = {
            "unit": unit,
            "thresholds": {"mode": "absolute", "steps": steps},
            "mappings": mappings or [],
        }
        if decimals is not None:
            defaults["decimals"] = decimals
        self._panel(
            "stat",
            title,
            description,
            [{"expr": expr, "legendFormat": legend, "instant": True}],
            w,
            h,
            fieldConfig={"defaults": defaults, "overrides": []},
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background",
                "graphMode": "none",
                "textMode": "auto",
                "justifyMode": "auto",
                "orientation": "auto",
            },
        )

    def bargauge(self, title, description, queries, unit="short", w=24, h=8):
        self._panel(
            "bargauge",
            title,
            description,
            [
                {"expr": e, "legendFormat": legend, "instant": True, "format": "time_series"}
                for e, legend in queries
            ],
            w,
            h,
            fieldConfig={"defaults": {"unit": unit, "min": 0}, "overrides": []},
            options={
                "orientation": "horizontal",
                "displayMode": "gradient",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        )

    def logs(self, title, description, expr, w=24, h=10):
        self._panel(
            "logs",
            title,
            description,
            [{"expr": expr}],
            w,
            h,
            datasource=LOKI,
            options={
                "showTime": True,
                "wrapLogMessage": True,
                "sortOrder": "Descending",
                "enableLogDetails": True,
            },
        )

    def loki_timeseries(self, title, description, queries, unit="short", w=12, h=8):
        self._panel(
            "timeseries",
            title,
            description,
            [{"expr": e, "legendFormat": legend, "queryType": "range"} for e, legend in queries],
            w,
            h,
            datasource=LOKI,
            fieldConfig={"defaults": {"unit": unit, "min": 0}, "overrides": []},
            options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        )

    def text(self, title, content, w=24, h=4):
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "text",
                "title": title,
                "gridPos": self._place(w, h),
                "options": {"mode": "markdown", "content": content},
            }
        )

    def textbox_variable(self, name, label, default, description):
        self.variables.append(
            {
                "type": "textbox",
                "name": name,
                "label": label,
                "description": description,
                "query": default,
                "current": {"text": default, "value": default},
                "hide": 0,
            }
        )

    def json(self):
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "timezone": "utc",
            "editable": False,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "links": [
                {
                    "type": "dashboards",
                    "tags": ["concierge"],
                    "asDropdown": True,
                    "title": "Concierge dashboards",
                }
            ],
            "panels": self.panels,
        }


def quantile(q, metric, by="", selector=""):
    group = f"le{', ' + by if by else ''}"
    sel = f"{{{selector}}}" if selector else ""
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{sel}[$__rate_interval])))"


UP_MAPPINGS = [
    {"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}}},
    {"type": "value", "options": {"1": {"text": "UP", "color": "green"}}},
]


def system():
    b = Board(
        "concierge-system",
        "Concierge / System",
        "Host, containers' scrape targets, PostgreSQL and Redis (node-exporter, postgres-exporter, redis-exporter).",
        ["system"],
    )
    b.row("Overview")
    b.stat("Targets up", "Scrape targets answering, out of all targets.",
           'sum(up)', w=4, legend="up")
    b.stat("Targets down", "Scrape targets not answering (see the Service status panel).",
           'count(up == 0) or vector(0)', w=4, thresholds=[(1, "red")])
    b.stat("CPU", "Share of CPU time not idle, all cores (alert: > 80 % for 15 min, > 90 % for 5 min).",
           '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m])))', unit="percent",
           w=4, thresholds=[(80, "orange"), (90, "red")], decimals=0)
    b.stat("Memory", "Used memory (1 - MemAvailable / MemTotal). Alerts at 85 % and 95 %.",
           '100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)', unit="percent",
           w=4, thresholds=[(85, "orange"), (95, "red")], decimals=0)
    b.stat("Data volume", "Use of /mnt/data (database, Redis, backups, metrics). Alerts at 80 % and 90 %.",
           '100 * (1 - node_filesystem_avail_bytes{mountpoint="/mnt/data"} / node_filesystem_size_bytes{mountpoint="/mnt/data"})',
           unit="percent", w=4, thresholds=[(80, "orange"), (90, "red")], decimals=0)
    b.stat("Root disk", "Use of / (Docker images, logs).",
           '100 * (1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"})',
           unit="percent", w=4, thresholds=[(80, "orange"), (90, "red")], decimals=0)
    b.stat("Last backup", "Age of the newest successful scheduled backup, over every worker's samples of the last 26 h (alert BackupTooOld above 26 h; RPO 24 h).",
           'time() - max(max_over_time(concierge_backup_last_success_timestamp_seconds[26h]))',
           unit="s", w=6, thresholds=[(25 * 3600, "orange"), (26 * 3600, "red")])
    b.stat("Last backup size", "Size of the newest backup file (concierge_backup_last_size_bytes).",
           'max(max_over_time(concierge_backup_last_size_bytes[26h]))', unit="bytes", w=6, thresholds=[])
    b.stat("Backups created (time range)", "concierge_backups_total{outcome=\"created\"}: scheduled and manual.",
           'sum(increase(concierge_backups_total{outcome="created"}[$__range])) or vector(0)', w=6, thresholds=[])
    b.stat("Backup verification failures (time range)", "A backup that does not restore is no backup (alert BackupFailed).",
           'sum(max_over_time(concierge_backups_total{outcome="verify_failed"}[$__range])) or vector(0)',
           w=6, thresholds=[(1, "red")])
    b.stat("Service status", "One box per scrape target: UP or DOWN (Prometheus `up`).",
           'up', w=24, h=5, legend="{{job}} {{instance}}", mappings=UP_MAPPINGS,
           thresholds=[])
    b.row("Host")
    b.timeseries("CPU by mode", "node_cpu_seconds_total, all cores, by mode.",
                 [('100 * sum by (mode) (rate(node_cpu_seconds_total{mode!="idle"}[$__rate_interval])) / scalar(count(node_cpu_seconds_total{mode="idle"}))', "{{mode}}")],
                 unit="percent", stack=True)
    b.timeseries("Memory", "Total, available and used memory.",
                 [("node_memory_MemTotal_bytes", "total"),
                  ("node_memory_MemAvailable_bytes", "available"),
                  ("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes", "used")],
                 unit="bytes")
    b.timeseries("Disk usage by mount point", "Real file systems only.",
                 [('100 * (1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs|nsfs|ramfs|fuse.*"} / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs|nsfs|ramfs|fuse.*"})', "{{mountpoint}}")],
                 unit="percent")
    b.timeseries("Network", "Bytes per second on physical interfaces (Docker bridges and veths left out).",
                 [('sum by (device) (rate(node_network_receive_bytes_total{device!~"lo|veth.*|br-.*|docker.*"}[$__rate_interval]))', "{{device}} in"),
                  ('-sum by (device) (rate(node_network_transmit_bytes_total{device!~"lo|veth.*|br-.*|docker.*"}[$__rate_interval]))', "{{device}} out")],
                 unit="Bps", min_zero=False)
    b.timeseries("Load average", "1, 5 and 15 minute load; compare with the number of cores.",
                 [("node_load1", "1m"), ("node_load5", "5m"), ("node_load15", "15m"),
                  ('count(node_cpu_seconds_total{mode="idle"})', "cores")])
    b.timeseries("Disk I/O", "Bytes read and written per second, per device.",
                 [('sum by (device) (rate(node_disk_read_bytes_total[$__rate_interval]))', "{{device}} read"),
                  ('sum by (device) (rate(node_disk_written_bytes_total[$__rate_interval]))', "{{device}} write")],
                 unit="Bps")
    b.row("PostgreSQL")
    b.timeseries("Connections", "Sessions by state, and max_connections (alert above 80 % and 90 %).",
                 [("sum by (state) (pg_stat_activity_count)", "{{state}}"),
                  ("max(pg_settings_max_connections)", "max_connections")])
    b.timeseries("Transactions", "Commits and rollbacks per second, per database.",
                 [('sum by (datname) (rate(pg_stat_database_xact_commit{datname!~"template.*"}[$__rate_interval]))', "{{datname}} commit"),
                  ('sum by (datname) (rate(pg_stat_database_xact_rollback{datname!~"template.*"}[$__rate_interval]))', "{{datname}} rollback")],
                 unit="ops")
    b.timeseries("Database size", "pg_database_size_bytes per database.",
                 [('pg_database_size_bytes{datname!~"template.*"}', "{{datname}}")], unit="bytes")
    b.timeseries("Deadlocks and conflicts", "Per second.",
                 [("sum(rate(pg_stat_database_deadlocks[$__rate_interval]))", "deadlocks"),
                  ("sum(rate(pg_stat_database_conflicts[$__rate_interval]))", "conflicts")])
    b.row("Redis")
    b.timeseries("Memory", "Used memory and maxmemory (alert at 90 %).",
                 [("redis_memory_used_bytes", "used"), ("redis_memory_max_bytes", "max")], unit="bytes")
    b.timeseries("Clients and commands", "Connected clients, commands per second.",
                 [("redis_connected_clients", "clients"),
                  ("rate(redis_commands_processed_total[$__rate_interval])", "commands/s")])
    return b


def http():
    b = Board(
        "concierge-http",
        "Concierge / HTTP",
        "API and webhook traffic: concierge_http_requests_total and concierge_http_request_seconds (method, route, status), API error codes, webhook rejections, nginx access logs.",
        ["http"],
    )
    b.row("Traffic")
    b.stat("Requests/s", "All routes except /health and /ready.",
           f'sum(rate(concierge_http_requests_total{{{NOT_HEALTH}}}[5m]))', unit="reqps", w=6)
    b.stat("5xx ratio", "Server errors over all requests (alerts: > 2 % for 10 min, > 5 % for 5 min).",
           f'sum(rate(concierge_http_requests_total{{status=~"5..",{NOT_HEALTH}}}[5m])) / sum(rate(concierge_http_requests_total{{{NOT_HEALTH}}}[5m]))',
           unit="percentunit", w=6, thresholds=[(0.02, "orange"), (0.05, "red")], decimals=2)
    b.stat("p95 latency", "95th percentile over all routes (objective < 2 s).",
           quantile(0.95, "concierge_http_request_seconds", selector=NOT_HEALTH).replace("$__rate_interval", "5m"),
           unit="s", w=6, thresholds=[(2, "orange"), (10, "red")], decimals=2)
    b.stat("API replicas up", "concierge-api targets answering scrapes.",
           'count(up{job="concierge-api"} == 1) or vector(0)', w=6, thresholds=[])
    b.timeseries("Requests by route", "Per second, by matched route (unmatched = 404s on unknown paths).",
                 [(f'sum by (route) (rate(concierge_http_requests_total{{{NOT_HEALTH}}}[$__rate_interval]))', "{{route}}")],
                 unit="reqps", stack=True)
    b.timeseries("Responses by status", "Per second, by status code.",
                 [(f'sum by (status) (rate(concierge_http_requests_total{{{NOT_HEALTH}}}[$__rate_interval]))', "{{status}}")],
                 unit="reqps", stack=True)
    b.row("Latency")
    b.timeseries("Latency percentiles", "p50, p95 and p99 over all routes except probes. Buckets stop at 10 s.",
                 [(quantile(0.5, "concierge_http_request_seconds", selector=NOT_HEALTH), "p50"),
                  (quantile(0.95, "concierge_http_request_seconds", selector=NOT_HEALTH), "p95"),
                  (quantile(0.99, "concierge_http_request_seconds", selector=NOT_HEALTH), "p99")],
                 unit="s")
    b.timeseries("p95 by route", "Webhooks wait up to the inline budget (2 s) for a turn.",
                 [(quantile(0.95, "concierge_http_request_seconds", by="route", selector=NOT_HEALTH), "{{route}}")],
                 unit="s")
    b.row("Errors")
    b.timeseries("API errors by code", "concierge_api_errors_total by stable error code (unauthorized, not_found, payload_too_large...).",
                 [("sum by (code) (rate(concierge_api_errors_total[$__rate_interval]))", "{{code}}")],
                 unit="reqps", stack=True)
    b.timeseries("Webhook rejections", "Twilio webhooks refused before processing, by reason (invalid_signature usually means public_url does not match Twilio's URL).",
                 [("sum by (reason) (rate(concierge_webhook_rejections_total[$__rate_interval]))", "{{reason}}")],
                 unit="reqps", stack=True)
    b.loki_timeseries("nginx responses by status (logs)", "From nginx's JSON access log in Loki; 429 = rate limited by nginx, 502/503/504 = no healthy replica.",
                      [('sum by (status) (count_over_time({service="nginx"} | json | __error__="" [1m]))', "{{status}}")])
    b.loki_timeseries("Rate-limited requests (logs)", "Requests nginx answered 429 (zones api 100/min, agent 60/min, oauth 10/min per client IP).",
                      [('sum(count_over_time({service="nginx"} | json | status="429" [1m]))', "429/min")])
    b.logs("Warnings and errors", "Concierge logs at WARN or ERROR (JSON; never bodies, secrets or phone numbers).",
           '{service=~"api|worker|migrate", level=~"WARN|ERROR"}')
    return b


def agents():
    b = Board(
        "concierge-agents",
        "Concierge / Agents and models",
        "Turns, engines, model providers, tokens, circuit breakers, tools and hand-offs (docs/AGENTS.md).",
        ["agents"],
    )
    b.row("Turns")
    b.timeseries("Turns by engine", "concierge_turns_total by who answered: llm, knowledge_base, fallback, small_talk, handoff; offline engine answers after a model failure count as their engine.",
                 [("sum by (engine) (rate(concierge_turns_total{outcome=\"ok\"}[$__rate_interval]))", "{{engine}}")],
                 unit="ops", stack=True)
    b.timeseries("Turns by outcome", "ok, error, timeout (worker), over_budget (inline turns handed to the worker).",
                 [("sum by (mode, outcome) (rate(concierge_turns_total[$__rate_interval]))", "{{mode}} {{outcome}}")],
                 unit="ops", stack=True)
    b.timeseries("Turn latency p95", "Inline turns are bounded by messaging.inline_budget_ms; worker turns are not.",
                 [(quantile(0.95, "concierge_turn_seconds", by="mode"), "{{mode}}")], unit="s")
    b.timeseries("Offline fallbacks by reason", "Turns the offline engine answered because the model could not (concierge_model_fallbacks_total).",
                 [("sum by (reason) (rate(concierge_model_fallbacks_total[$__rate_interval]))", "{{reason}}")],
                 unit="ops", stack=True)
    b.row("Models")
    b.timeseries("Model latency p95 by provider", "concierge_model_seconds, per step of a turn.",
                 [(quantile(0.95, "concierge_model_seconds", by="provider"), "{{provider}}")], unit="s")
    b.timeseries("Provider calls by outcome", "concierge_llm_requests_total: ok, rate_limited, timeout, server, auth...",
                 [("sum by (provider, outcome) (rate(concierge_llm_requests_total[$__rate_interval]))", "{{provider}} {{outcome}}")],
                 unit="ops", stack=True)
    b.timeseries("Tokens per second", "concierge_model_tokens_total by provider and kind (input, output).",
                 [("sum by (provider, kind) (rate(concierge_model_tokens_total[$__rate_interval]))", "{{provider}} {{kind}}")])
    b.timeseries("Circuit breaker", "concierge_llm_breaker_open: 0 closed, 0.5 half open, 1 open (alert after 1 min open).",
                 [("max by (provider) (concierge_llm_breaker_open)", "{{provider}}")])
    b.stat("Model cost (time range)", "concierge_model_cost_microusd_total: tokens times llm.price_input_per_mtok / llm.price_output_per_mtok (0 until prices are configured). Cached answers are not counted.",
           "sum(increase(concierge_model_cost_microusd_total[$__range])) / 1e6 or vector(0)",
           unit="currencyUSD", w=8, thresholds=[], decimals=2)
    b.stat("Provider fallbacks (time range)", "Calls passed to the next provider in the chain (concierge_llm_fallbacks_total).",
           "sum(increase(concierge_llm_fallbacks_total[$__range])) or vector(0)", w=8, thresholds=[])
    b.stat("Hand-offs requested (time range)", "Conversations handed to staff (by customer, agent or staff).",
           'sum(increase(concierge_handoffs_total{event=~"requested_by_.*"}[$__range])) or vector(0)', w=8, thresholds=[])
    b.timeseries("Model cost by tenant", "concierge_model_cost_microusd_total by tenant, US dollars per hour.",
                 [("sum by (tenant) (rate(concierge_model_cost_microusd_total[$__rate_interval])) * 3600 / 1e6", "{{tenant}}")],
                 unit="currencyUSD")
    b.timeseries("Budget refusals and cache", "concierge_budget_refusals_total by scope (a daily budget spent), and concierge_llm_cache_total by result (the response cache).",
                 [("sum by (scope) (rate(concierge_budget_refusals_total[$__rate_interval]))", "budget {{scope}}"),
                  ("sum by (result) (rate(concierge_llm_cache_total[$__rate_interval]))", "cache {{result}}")],
                 unit="ops")
    b.row("Tools and hand-offs")
    b.timeseries("Tool calls", "concierge_tool_calls_total by tool.",
                 [("sum by (tool) (rate(concierge_tool_calls_total[$__rate_interval]))", "{{tool}}")], unit="ops")
    b.timeseries("Tool errors", "concierge_tool_errors_total by tool (refusals, bad arguments, unknown tools).",
                 [("sum by (tool) (rate(concierge_tool_errors_total[$__rate_interval]))", "{{tool}}")], unit="ops")
    b.timeseries("Hand-offs", "concierge_handoffs_total by event: requested_by_customer, requested_by_agent, requested_by_staff, resolved.",
                 [("sum by (event) (increase(concierge_handoffs_total[$__rate_interval]))", "{{event}}")], w=24)
    return b


def queue():
    b = Board(
        "concierge-queue",
        "Concierge / Queue and workers",
        "The durable job queue (PostgreSQL): depth, age, throughput, outcomes, dead letters.",
        ["queue"],
    )
    b.row("Now")
    b.stat("Queued", "Jobs waiting (due now or later, retries included).",
           'max(concierge_queue_jobs{state="queued"})', w=6, thresholds=[(500, "orange")])
    b.stat("Running", "Jobs leased by a worker.", 'max(concierge_queue_jobs{state="running"})', w=6, thresholds=[])
    b.stat("Oldest due job", "How long the oldest due job has waited (alerts: 2 min, 10 min).",
           "max(concierge_queue_oldest_due_seconds)", unit="s", w=6, thresholds=[(120, "orange"), (600, "red")])
    b.stat("Workers up", "concierge-worker targets answering scrapes.",
           'count(up{job="concierge-worker"} == 1) or vector(0)', w=6,
           thresholds=[], mappings=[{"type": "value", "options": {"0": {"text": "NONE", "color": "red"}}}])
    b.row("Over time")
    b.timeseries("Queue depth", "concierge_queue_jobs by state (dead letters are kept, never deleted).",
                 [('max by (state) (concierge_queue_jobs)', "{{state}}")])
    b.timeseries("Oldest due job age", "concierge_queue_oldest_due_seconds.",
                 [("max(concierge_queue_oldest_due_seconds)", "oldest due")], unit="s")
    b.timeseries("Jobs finished by outcome", "concierge_jobs_total: done, retry, postponed (paced), dead.",
                 [("sum by (kind, outcome) (rate(concierge_jobs_total[$__rate_interval]))", "{{kind}} {{outcome}}")],
                 unit="ops", stack=True)
    b.timeseries("Job duration p95", "concierge_job_seconds by kind (turn, send_sms).",
                 [(quantile(0.95, "concierge_job_seconds", by="kind"), "{{kind}}")], unit="s")
    b.timeseries("Dead letters", "Jobs dead-lettered per interval (alert on any).",
                 [("sum by (kind) (increase(concierge_jobs_total{outcome=\"dead\"}[$__rate_interval]))", "{{kind}}")], w=24)
    return b


def sms():
    b = Board(
        "concierge-sms",
        "Concierge / SMS",
        "Inbound messages, outbound SMS and delivery, Twilio API calls, opt-outs.",
        ["sms"],
    )
    b.row("Outbound")
    b.stat("Sent (time range)", "Outbound SMS accepted by Twilio.",
           'sum(increase(concierge_outbound_sms_total{status="sent"}[$__range])) or vector(0)', w=6, thresholds=[])
    b.stat("Delivered (time range)", "Delivery callbacks with status delivered.",
           'sum(increase(concierge_outbound_sms_total{status="delivered"}[$__range])) or vector(0)', w=6, thresholds=[])
    b.stat("Failure ratio", "failed + undelivered + rejected over sent + those (alerts: 5 %, 20 %).",
           'sum(rate(concierge_outbound_sms_total{status=~"failed|undelivered|rejected"}[15m])) / sum(rate(concierge_outbound_sms_total{status=~"sent|failed|undelivered|rejected"}[15m]))',
           unit="percentunit", w=6, thresholds=[(0.05, "orange"), (0.2, "red")], decimals=1)
    b.stat("Not configured (time range)", "Sends attempted without Twilio credentials (alert on any).",
           'sum(increase(concierge_outbound_sms_total{status="not_configured"}[$__range])) or vector(0)',
           w=6, thresholds=[(1, "red")])
    b.timeseries("Outbound SMS by status", "concierge_outbound_sms_total: send outcomes (sent, retry, failed, rejected, opted_out, suppressed, not_configured) and delivery callbacks (delivered, undelivered...).",
                 [("sum by (status) (rate(concierge_outbound_sms_total[$__rate_interval]))", "{{status}}")],
                 unit="ops", stack=True)
    b.timeseries("Twilio API calls", "concierge_twilio_requests_total by outcome, per HTTP attempt.",
                 [("sum by (outcome) (rate(concierge_twilio_requests_total[$__rate_interval]))", "{{outcome}}")],
                 unit="ops", stack=True)
    b.timeseries("Twilio API latency", "concierge_twilio_request_seconds, p50 and p95.",
                 [(quantile(0.5, "concierge_twilio_request_seconds"), "p50"),
                  (quantile(0.95, "concierge_twilio_request_seconds"), "p95")], unit="s")
    b.timeseries("Pacing (Redis) latency", "concierge_pacing_redis_seconds p95: the shared per-sender pacing script.",
                 [(quantile(0.95, "concierge_pacing_redis_seconds"), "p95")], unit="s")
    b.row("Inbound")
    b.timeseries("Inbound messages", "concierge_inbound_messages_total by channel and outcome: answered (inline), deferred (to the worker), keyword (STOP/START/HELP), opted_out, duplicate (Twilio retry).",
                 [("sum by (channel, outcome) (rate(concierge_inbound_messages_total[$__rate_interval]))", "{{channel}} {{outcome}}")],
                 unit="ops", stack=True)
    b.timeseries("Webhook rejections", "By reason: media_type, too_large, missing_signature, malformed, invalid_signature.",
                 [("sum by (reason) (rate(concierge_webhook_rejections_total[$__rate_interval]))", "{{reason}}")],
                 unit="ops", stack=True)
    return b


def bookings():
    b = Board(
        "concierge-bookings",
        "Concierge / Bookings",
        "The booking saga (ARCHITECTURE.md section 6). PENDING: the saga is not built yet, so none of these metrics exist; every panel says which name it expects.",
        ["bookings", "pending"],
    )
    b.text(
        "Not built yet",
        "The booking saga (availability, slot hold, payment, confirmation, CRM, SMS, reminder) "
        "is not implemented yet, so Concierge exports no booking metric. The panels below use "
        "the names listed as **pending** in `deploy/pending-metrics.txt`; they stay empty until "
        "the saga emits them. `deploy/check.sh` reports a pending name as soon as the code "
        "emits it, so the list is pruned when the saga lands (and the names checked then).",
        h=4,
    )
    why = "the booking saga is not implemented"
    b.timeseries("Bookings by state", PENDING_NOTE.format(metric="concierge_bookings_total{state}", why=why),
                 [("sum by (state) (increase(concierge_bookings_total[$__rate_interval]))", "{{state}}")], stack=True)
    b.timeseries("Saga steps by outcome", PENDING_NOTE.format(metric="concierge_booking_steps_total{step,outcome}", why=why),
                 [("sum by (step, outcome) (rate(concierge_booking_steps_total[$__rate_interval]))", "{{step}} {{outcome}}")],
                 unit="ops", stack=True)
    b.timeseries("Saga step latency p95", PENDING_NOTE.format(metric="concierge_booking_step_seconds{step}", why=why),
                 [(quantile(0.95, "concierge_booking_step_seconds", by="step"), "{{step}}")], unit="s")
    b.timeseries("Payments by outcome", PENDING_NOTE.format(metric="concierge_payments_total{outcome}", why="Stripe payments are not implemented"),
                 [("sum by (outcome) (increase(concierge_payments_total[$__rate_interval]))", "{{outcome}}")], stack=True)
    return b


def funnel():
    b = Board(
        "concierge-funnel",
        "Concierge / Business funnel",
        "From first message to paid booking. The first stages use metrics that exist; conversations started, bookings and payments are PENDING (see deploy/pending-metrics.txt).",
        ["business", "pending"],
    )
    b.text(
        "Reading this funnel",
        "**Exists today:** inbound messages, turns answered, hand-offs to staff, opt-outs. "
        "**Pending** (not emitted yet, panels empty): conversations started "
        "(`concierge_conversations_started_total`), bookings confirmed "
        "(`concierge_bookings_total{state=\"confirmed\"}`) and payments succeeded "
        "(`concierge_payments_total{outcome=\"succeeded\"}`). All counts cover the selected time range.",
        h=4,
    )
    b.bargauge(
        "Funnel (time range)",
        "Each bar counts events in the selected range. Inbound messages and answered turns come from existing metrics; "
        + PENDING_NOTE.format(metric="concierge_conversations_started_total, concierge_bookings_total and concierge_payments_total",
                              why="conversation, booking and payment events are not exported yet"),
        [
            ("sum(increase(concierge_inbound_messages_total{outcome!=\"duplicate\"}[$__range]))", "1. inbound messages"),
            ("sum(increase(concierge_conversations_started_total[$__range]))", "2. conversations started (pending)"),
            ("sum(increase(concierge_turns_total{outcome=\"ok\"}[$__range]))", "3. turns answered"),
            ("sum(increase(concierge_handoffs_total{event=~\"requested_by_.*\"}[$__range]))", "4. handed off to staff"),
            ("sum(increase(concierge_bookings_total{state=\"confirmed\"}[$__range]))", "5. bookings confirmed (pending)"),
            ("sum(increase(concierge_payments_total{outcome=\"succeeded\"}[$__range]))", "6. payments succeeded (pending)"),
        ],
    )
    b.stat("Answered by a model", "Share of answered turns the model wrote (engine llm), the rest by the offline engine.",
           'sum(increase(concierge_turns_total{outcome="ok", engine="llm"}[$__range])) / sum(increase(concierge_turns_total{outcome="ok"}[$__range]))',
           unit="percentunit", w=8, thresholds=[], decimals=1)
    b.stat("Hand-off rate", "Hand-offs requested over answered turns.",
           'sum(increase(concierge_handoffs_total{event=~"requested_by_.*"}[$__range])) / sum(increase(concierge_turns_total{outcome="ok"}[$__range]))',
           unit="percentunit", w=8, thresholds=[], decimals=1)
    b.stat("Opt-out keywords", "Inbound STOP/START/HELP keywords answered by the platform, and messages from opted-out numbers, in the range.",
           'sum(increase(concierge_inbound_messages_total{outcome=~"keyword|opted_out"}[$__range])) or vector(0)',
           w=8, thresholds=[])
    b.timeseries("Inbound messages by channel", "SMS and web chat, per interval.",
                 [("sum by (channel) (increase(concierge_inbound_messages_total{outcome!=\"duplicate\"}[$__rate_interval]))", "{{channel}}")],
                 w=24, stack=True)
    return b


BOARDS = [system, http, agents, queue, sms, bookings, funnel]
FILES = {
    "system": "system.json",
    "http": "http.json",
    "agents": "agents-and-models.json",
    "queue": "queue.json",
    "sms": "sms.json",
    "bookings": "bookings.json",
    "funnel": "business-funnel.json",
}


def render():
    return {
        FILES[make.__name__]: json.dumps(make().json(), indent=2, ensure_ascii=False) + "\n"
        for make in BOARDS
    }


def main(argv):
    check = "--check" in argv
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if check and stale:
        print("out of date (run deploy/grafana/build_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
