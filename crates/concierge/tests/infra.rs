//! The binary as an operator drives it before and after a deployment: `concierge infra
//! inventory` and `concierge infra plan` against a fake Hetzner Cloud API (empty project,
//! matching project, drifted project, bad token, bad arguments, `--json`), and `concierge
//! healthcheck` against a tiny local server and a closed port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use testkit::fake_hetzner::{self as fake, FakeHetzner};

const BIN: &str = env!("CARGO_BIN_EXE_concierge");
const TOKEN: &str = "hcloud-binary-test-token-6f1c0d7e9b2a4c8d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfg3mVSWzv8mX3ajBZKA5Y5sAT1k8n1Z2Qp9wq3cN2j";
/// Ids above 2^52, as the API hands out now.
const BIG: u64 = 4_503_599_627_370_496;

/// Runs the binary in `dir` with a clean environment plus `env`, off the async runtime so the
/// fakes keep answering.
async fn concierge(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run concierge")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn json(out: &Output) -> Value {
    assert_eq!(
        code(out),
        0,
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

fn assert_no_token(out: &Output) {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(TOKEN), "the token was printed: {all}");
}

struct Setup {
    dir: tempfile::TempDir,
    fake: FakeHetzner,
}

impl Setup {
    async fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            fake: FakeHetzner::start(TOKEN).await,
        }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    /// `concierge infra <args> --api-base <fake>` with `HCLOUD_TOKEN` set.
    async fn infra(&self, args: &[&str]) -> Output {
        let base = self.fake.api_base();
        let mut all = vec!["infra"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--api-base", &base]);
        let out = concierge(self.dir.path(), &[("HCLOUD_TOKEN", TOKEN)], &all).await;
        assert_no_token(&out);
        out
    }

    /// `infra plan --json` with an SSH allow-list and the test key.
    async fn plan_json(&self) -> (Value, String) {
        let key = self.file("id_ed25519.pub", &format!("{KEY} ops@laptop\n"));
        let out = self
            .infra(&[
                "plan",
                "--ssh-allow",
                "198.51.100.7/32",
                "--ssh-public-key-file",
                key.to_str().expect("utf-8 path"),
                "--json",
            ])
            .await;
        (json(&out), text(&out.stderr))
    }

    /// The project as deploy/terraform leaves it with its defaults.
    fn deploy_matching(&self) {
        let mut server = fake::server(BIG + 1, "concierge-prod-1", "ccx33", "nbg1", "ubuntu-24.04");
        server["placement_group"] =
            fake::placement_group(BIG + 3, "concierge-prod-pg", "spread", &[BIG + 1]);
        server["public_net"]["firewalls"] =
            serde_json::json!([{"id": BIG + 2, "status": "applied"}]);
        server["volumes"] = serde_json::json!([BIG + 4]);
        server["protection"] = serde_json::json!({"delete": true, "rebuild": true});
        self.fake.set("servers", vec![server]);
        self.fake.set(
            "firewalls",
            vec![fake::firewall(
                BIG + 2,
                "concierge-prod-firewall",
                firewall_rules(&["0.0.0.0/0", "::/0"]),
                &[BIG + 1],
            )],
        );
        self.fake.set(
            "placement_groups",
            vec![fake::placement_group(
                BIG + 3,
                "concierge-prod-pg",
                "spread",
                &[BIG + 1],
            )],
        );
        let mut volume = fake::volume(BIG + 4, "concierge-prod-data", 50, "nbg1", Some(BIG + 1));
        volume["protection"]["delete"] = true.into();
        self.fake.set("volumes", vec![volume]);
        self.fake.set(
            "ssh_keys",
            vec![fake::ssh_key(
                BIG + 5,
                "concierge-prod-key",
                &format!("{KEY} deploy@ci"),
            )],
        );
        self.fake.set(
            "primary_ips",
            vec![fake::primary_ip(
                BIG + 6,
                "primary_ip-1",
                "203.0.113.10",
                Some(BIG + 1),
            )],
        );
    }
}

/// deploy/terraform's firewall with SSH from 198.51.100.7 and 80/443 from `web`.
fn firewall_rules(web: &[&str]) -> Vec<Value> {
    vec![
        fake::tcp_rule_in("22", &["198.51.100.7/32"]),
        fake::tcp_rule_in("80", web),
        fake::tcp_rule_in("443", web),
        fake::icmp_rule_in(&["0.0.0.0/0", "::/0"]),
    ]
}

fn items(plan: &Value) -> Vec<(String, String, String)> {
    plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["resource"].as_str().expect("resource").to_owned(),
                i["name"].as_str().expect("name").to_owned(),
                i["action"].as_str().expect("action").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn inventory_of_an_empty_project_prints_the_seed_table() {
    let setup = Setup::new().await;
    let out = setup.infra(&["inventory"]).await;

    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for label in [
        "Servers",
        "Volumes",
        "Firewalls",
        "SSH Keys",
        "Networks",
        "Placement Groups",
        "Load Balancers",
        "Floating IPs",
        "Primary IPs",
        "Certificates",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line in\n{stdout}"));
        assert!(line.contains("empty"), "{line}");
    }
    assert!(stdout.contains("The project is empty"), "{stdout}");
    let requests = setup.fake.requests();
    assert_eq!(requests.len(), 10);
    assert!(requests.iter().all(|r| r.authorized));
}

#[tokio::test]
async fn inventory_json_lists_resources_with_their_attributes() {
    let setup = Setup::new().await;
    setup.deploy_matching();
    setup.fake.set(
        "networks",
        (0..60)
            .map(|i| fake::network(BIG + 100 + i, &format!("net-{i}"), "10.0.0.0/16"))
            .collect(),
    );

    let inventory = json(&setup.infra(&["inventory", "--json"]).await);

    assert_eq!(inventory["counts"]["servers"], 1);
    // 60 networks: two pages of 50.
    assert_eq!(inventory["counts"]["networks"], 60);
    assert_eq!(inventory["total"], 66);
    let server = &inventory["resources"]["servers"][0];
    assert_eq!(server["id"], BIG + 1);
    assert_eq!(server["server_type"]["name"], "ccx33");
    assert_eq!(server["backup_window"], "22-02");
    assert_eq!(inventory["resources"]["volumes"][0]["size"], 50);
    assert_eq!(
        inventory["resources"]["firewalls"][0]["rules"][0]["source_ips"][0],
        "198.51.100.7/32"
    );

    let table = setup.infra(&["inventory"]).await;
    let stdout = text(&table.stdout);
    assert!(
        stdout.contains(&format!("concierge-prod-1 (#{})", BIG + 1)),
        "{stdout}"
    );
    assert!(
        stdout.contains("in tcp 22 from 198.51.100.7/32"),
        "{stdout}"
    );
    assert!(stdout.contains("and 56 more"), "{stdout}");
}

#[tokio::test]
async fn plan_on_an_empty_project_creates_everything() {
    let setup = Setup::new().await;
    let (plan, stderr) = setup.plan_json().await;

    assert_eq!(
        items(&plan),
        [
            ("ssh_key", "concierge-prod-key", "create"),
            ("firewall", "concierge-prod-firewall", "create"),
            ("placement_group", "concierge-prod-pg", "create"),
            ("volume", "concierge-prod-data", "create"),
            ("server", "concierge-prod-1", "create"),
        ]
        .map(|(r, n, a)| (r.to_owned(), n.to_owned(), a.to_owned()))
    );
    assert_eq!(plan["summary"]["create"], 5);
    assert_eq!(plan["desired"]["server_type"], "ccx33");
    assert_eq!(plan["desired"]["location"], "nbg1");
    assert_eq!(plan["desired"]["ssh_allow"][0], "198.51.100.7/32");
    assert!(!stderr.contains("warning"), "{stderr}");

    // The same as text, with the default (no --ssh-allow) warned about.
    let out = setup.infra(&["plan"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("+ create"), "{stdout}");
    assert!(
        stdout.contains("Plan: 5 to create, 0 unchanged, 0 differ."),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("warning: no --ssh-allow"));
}

#[tokio::test]
async fn plan_keeps_what_already_matches() {
    let setup = Setup::new().await;
    setup.deploy_matching();
    setup.fake.set(
        "certificates",
        vec![fake::certificate(9, "site", &["example.org"])],
    );

    let (plan, _) = setup.plan_json().await;

    for (resource, name, action) in items(&plan) {
        assert_eq!(action, "keep", "{resource} {name}: {plan}");
    }
    assert_eq!(plan["summary"]["keep"], 5);
    assert_eq!(plan["unmanaged"][0]["kind"], "certificates");
    assert_eq!(plan["unmanaged"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn plan_reports_what_differs() {
    let setup = Setup::new().await;
    setup.deploy_matching();
    let mut volume = fake::volume(BIG + 4, "concierge-prod-data", 20, "nbg1", Some(BIG + 1));
    volume["protection"]["delete"] = false.into();
    setup.fake.set("volumes", vec![volume]);
    setup.fake.set(
        "firewalls",
        vec![fake::firewall(
            BIG + 2,
            "concierge-prod-firewall",
            {
                let mut rules = firewall_rules(&["0.0.0.0/0", "::/0"]);
                rules[0] = fake::tcp_rule_in("22", &["0.0.0.0/0", "::/0"]);
                rules
            },
            &[BIG + 1],
        )],
    );

    let (plan, _) = setup.plan_json().await;

    let by_resource = |resource: &str| {
        plan["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["resource"] == resource)
            .cloned()
            .expect(resource)
    };
    let volume = by_resource("volume");
    assert_eq!(volume["action"], "differs");
    assert_eq!(volume["id"], BIG + 4);
    assert_eq!(
        volume["details"],
        serde_json::json!([
            "size is 20 GB, want 50 GB (a volume can grow, never shrink)",
            "delete protection is off, want on"
        ])
    );
    let firewall = by_resource("firewall");
    assert_eq!(firewall["action"], "differs");
    assert_eq!(
        firewall["details"][0],
        "allows in tcp 22 from 0.0.0.0/0, ::/0, which the plan does not"
    );
    assert_eq!(by_resource("server")["action"], "keep");
    assert_eq!(plan["summary"]["differs"], 2);

    let out = setup.infra(&["plan", "--ssh-allow", "198.51.100.7"]).await;
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "~ differs  volume           concierge-prod-data (#{})",
            BIG + 4
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("      delete protection is off, want on"),
        "{stdout}"
    );
}

#[tokio::test]
async fn app_nodes_add_a_load_balancer_to_the_plan() {
    let setup = Setup::new().await;
    setup.deploy_matching();
    let out = setup
        .infra(&[
            "plan",
            "--app-nodes",
            "2",
            "--ssh-allow",
            "198.51.100.7",
            "--json",
        ])
        .await;
    let plan = json(&out);
    let planned: Vec<_> = items(&plan)
        .into_iter()
        .filter(|(_, _, action)| action == "create")
        .map(|(_, name, _)| name)
        .collect();
    assert_eq!(
        planned,
        [
            "concierge-prod-2",
            "concierge-prod-net",
            "concierge-prod-lb"
        ]
    );
}

#[tokio::test]
async fn a_wrong_token_fails_clearly_without_printing_it() {
    let setup = Setup::new().await;
    let token_file = setup.file("token", &format!("{TOKEN}-revoked\n"));
    let base = setup.fake.api_base();
    let out = concierge(
        setup.dir.path(),
        &[("HCLOUD_TOKEN", TOKEN)],
        &[
            "infra",
            "inventory",
            "--token-file",
            token_file.to_str().expect("utf-8 path"),
            "--api-base",
            &base,
        ],
    )
    .await;

    assert_eq!(code(&out), 1);
    assert_no_token(&out);
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("refused the token (HTTP 401"), "{stderr}");
    assert!(stderr.contains("HCLOUD_TOKEN or --token-file"), "{stderr}");
    // The file wins over the variable.
    assert!(setup.fake.requests().iter().all(|r| !r.authorized));
}

#[tokio::test]
async fn a_token_file_is_read_and_trimmed() {
    let setup = Setup::new().await;
    let token_file = setup.file("token", &format!("{TOKEN}\n"));
    let base = setup.fake.api_base();
    let out = concierge(
        setup.dir.path(),
        &[],
        &[
            "infra",
            "inventory",
            "--json",
            "--token-file",
            token_file.to_str().expect("utf-8 path"),
            "--api-base",
            &base,
        ],
    )
    .await;
    assert_eq!(json(&out)["total"], 0);
}

#[tokio::test]
async fn api_failures_exit_1_with_a_hint() {
    let setup = Setup::new().await;
    setup.fake.rate_limit_next(100);
    let out = setup.infra(&["inventory"]).await;
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rate limit is exhausted (HTTP 429)"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: try again in"), "{stderr}");

    let setup = Setup::new().await;
    setup.fake.set_malformed("servers");
    let out = setup.infra(&["plan", "--ssh-allow", "198.51.100.7"]).await;
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("unexpected answer"),
        "{}",
        text(&out.stderr)
    );
}

/// Environment, arguments, and what stderr must say.
type BadCase<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>, &'a str);

#[tokio::test]
async fn bad_arguments_exit_2() {
    let setup = Setup::new().await;
    let base = setup.fake.api_base();
    let dir = setup.dir.path();
    let private = setup.file(
        "id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nVERYSECRETKEYMATERIAL\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    let private = private.to_str().expect("utf-8 path");
    let cases: Vec<BadCase<'_>> = vec![
        (
            vec![],
            vec!["infra", "inventory", "--api-base", &base],
            "set HCLOUD_TOKEN or pass --token-file",
        ),
        (
            vec![("HCLOUD_TOKEN", "  ")],
            vec!["infra", "plan", "--api-base", &base],
            "set HCLOUD_TOKEN",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec!["infra", "inventory", "--token-file", "/nonexistent/token"],
            "cannot read the token file /nonexistent/token",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec![
                "infra",
                "inventory",
                "--api-base",
                "http://api.hetzner.cloud/v1",
            ],
            "would send the token unencrypted",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec![
                "infra",
                "plan",
                "--ssh-allow",
                "my-laptop",
                "--api-base",
                &base,
            ],
            "is not an IP address or CIDR network",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec![
                "infra",
                "plan",
                "--ssh-allow",
                "198.51.100.7/24",
                "--api-base",
                &base,
            ],
            "host bits set",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec!["infra", "plan", "--app-nodes", "0", "--api-base", &base],
            "--app-nodes",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec![
                "infra",
                "plan",
                "--ssh-public-key-file",
                private,
                "--api-base",
                &base,
            ],
            "is a private key",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec!["infra", "plan", "--unknown-flag"],
            "unexpected argument",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec!["infra", "plan", "--environment", "dev", "--api-base", &base],
            "possible values: prod, stage",
        ),
        (
            vec![("HCLOUD_TOKEN", TOKEN)],
            vec!["infra", "plan", "--name", "Concierge", "--api-base", &base],
            "lowercase letter",
        ),
    ];
    for (env, args, expected) in cases {
        let out = concierge(dir, &env, &args).await;
        let stderr = text(&out.stderr);
        assert_eq!(code(&out), 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_no_token(&out);
        assert!(!stderr.contains("VERYSECRETKEYMATERIAL"), "{stderr}");
    }
    // Nothing reached the API.
    assert!(setup.fake.requests().is_empty());
}

/// A local server whose `/health` answers 200 and `/ready` 503.
async fn health_server() -> std::net::SocketAddr {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/health",
            get(|| async { (StatusCode::OK, "{\"status\":\"ok\"}") }),
        )
        .route(
            "/ready",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"starting\"}") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn healthcheck_exits_0_on_200_and_1_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = health_server().await;
    let url = format!("http://{addr}");

    let out = concierge(dir.path(), &[], &["healthcheck", "--url", &url]).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with(&format!("healthy: GET {url}/health -> 200 OK")),
        "{stdout}"
    );

    let out = concierge(
        dir.path(),
        &[],
        &["healthcheck", "--url", &url, "--ready", "--json"],
    )
    .await;
    assert_eq!(code(&out), 1);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["status"], 503);
    assert_eq!(report["url"], format!("{url}/ready"));

    // Without --url: the configured listener, its wildcard address checked on loopback. No
    // database is opened, so nothing appears in the working directory.
    let listen = format!("0.0.0.0:{}", addr.port());
    let out = concierge(
        dir.path(),
        &[("CONCIERGE_HTTP__LISTEN", &listen)],
        &["healthcheck"],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(&format!("http://127.0.0.1:{}/health", addr.port())));
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[tokio::test]
async fn healthcheck_of_a_closed_port_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = concierge(
        dir.path(),
        &[],
        &["healthcheck", "--listen", &format!("127.0.0.1:{port}")],
    )
    .await;
    assert_eq!(code(&out), 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("unhealthy: GET http://127.0.0.1:"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}
