//! The binary as an operator drives it: `doctor` on a fresh directory, `migrate`, the admin
//! commands with `--json`, `serve` answering a signed SMS sent by `simulate sms`, the API
//! showing the conversation, and a clean stop on SIGTERM; on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{command, concierge, json, postgres_env};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = request(url);
    if let Some(key) = bearer {
        req = req.header("Authorization", format!("Bearer {key}"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                (status, res.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    })
}

fn post_json(url: &str, bearer: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let res = reqwest::Client::new()
            .post(url)
            .bearer_auth(bearer)
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or_default())
    })
}

fn request(url: &str) -> reqwest::RequestBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(url)
}

/// A tenant with one knowledge-base entry, made with the admin commands; returns its id.
fn tenant_with_entry(
    dir: &Path,
    env: &[(&str, String)],
    (name, phone): (&str, &str),
    (title, body): (&str, &str),
) -> String {
    let tenant = json(&concierge(
        dir,
        env,
        &[
            "admin", "tenant", "create", "--name", name, "--phone", phone, "--json",
        ],
    ));
    let id = tenant["id"].as_str().expect("tenant id").to_owned();
    let entry = [
        "admin", "kb", "add", "--tenant", &id, "--title", title, "--body", body, "--json",
    ];
    json(&concierge(dir, env, &entry));
    id
}

/// A new API key for the tenant (printed once, as `key`).
fn api_key(dir: &Path, env: &[(&str, String)], tenant: &str) -> String {
    let out = concierge(
        dir,
        env,
        &["admin", "api-key", "create", "--tenant", tenant, "--json"],
    );
    json(&out)["key"].as_str().expect("key").to_owned()
}

/// Starts `serve` and waits until `/ready` answers 200.
fn serve(dir: &Path, env: &[(&str, String)], base: &str) -> Server {
    let server = Server(
        command(dir, env, &["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start serve"),
    );
    let started = Instant::now();
    while get(&format!("{base}/ready"), None).0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn drive(dir: &Path, mut env: Vec<(&'static str, String)>) {
    let (http, admin) = (free_port(), free_port());
    env.push(("CONCIERGE_HTTP__LISTEN", format!("127.0.0.1:{http}")));
    env.push(("CONCIERGE_ADMIN__LISTEN", format!("127.0.0.1:{admin}")));

    // Migrate, then the doctor is happy with the database.
    let out = concierge(dir, &env, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doctor = json(&concierge(dir, &env, &["doctor", "--json"]));
    let checks = doctor["checks"].as_array().expect("checks");
    let migrations = checks
        .iter()
        .find(|c| c["name"] == "migrations")
        .expect("a migrations check");
    assert_eq!(migrations["ok"], true, "{doctor}");

    // The admin commands, machine-readable (`--json` also accepted last).
    let tenant = json(&concierge(
        dir,
        &env,
        &[
            "admin",
            "tenant",
            "create",
            "--name",
            "Bistro",
            "--phone",
            "+15550001111",
            "--json",
        ],
    ));
    let tenant_id = tenant["id"].as_str().expect("tenant id").to_owned();
    assert_eq!(tenant["phone_numbers"][0], "+15550001111");
    let dup = concierge(
        dir,
        &env,
        &[
            "admin",
            "tenant",
            "create",
            "--name",
            "Other",
            "--phone",
            "+15550001111",
        ],
    );
    assert!(!dup.status.success(), "a number belongs to one tenant");
    let bad = concierge(
        dir,
        &env,
        &["admin", "tenant", "create", "--name", "X", "--phone", "555"],
    );
    assert!(!bad.status.success(), "invalid E.164 is refused");
    let key = json(&concierge(
        dir,
        &env,
        &[
            "admin", "api-key", "create", "--tenant", &tenant_id, "--json",
        ],
    ))["key"]
        .as_str()
        .expect("key printed once")
        .to_owned();
    json(&concierge(
        dir,
        &env,
        &[
            "admin",
            "kb",
            "add",
            "--tenant",
            &tenant_id,
            "--title",
            "Parking",
            "--body",
            "Free parking behind the restaurant.",
            "--json",
        ],
    ));
    let listed = json(&concierge(
        dir,
        &env,
        &["admin", "tenant", "list", "--json"],
    ));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == tenant_id.as_str())
    );

    // Serve, and wait for readiness.
    let base = format!("http://127.0.0.1:{http}");
    let server = serve(dir, &env, &base);

    // A signed SMS, answered from the knowledge base inline (TwiML).
    let sms = concierge(
        dir,
        &env,
        &[
            "simulate",
            "sms",
            "--from",
            "+15557770000",
            "--to",
            "+15550001111",
            "--body",
            "where can I park?",
            "--url",
            &base,
            "--json",
        ],
    );
    let answer = json(&sms);
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .contains("Free parking behind the restaurant."),
        "{answer}"
    );

    // The API shows it, to this tenant's key only.
    let (status, body) = get(&format!("{base}/api/v1/conversations"), Some(&key));
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"][0]["message_count"], 2, "{page}");
    assert_eq!(
        get(&format!("{base}/api/v1/conversations"), Some("ck_nope")).0,
        401
    );
    // Metrics are on the admin listener.
    let (status, metrics) = get(&format!("http://127.0.0.1:{admin}/metrics"), None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("concierge_inbound_messages_total"),
        "{metrics}"
    );
    // The admin listener answers liveness too (the worker's health check), and so does
    // `concierge healthcheck` pointed at it.
    assert_eq!(
        get(&format!("http://127.0.0.1:{admin}/health"), None).0,
        200
    );
    let check = concierge(
        dir,
        &env,
        &["healthcheck", "--url", &format!("http://127.0.0.1:{admin}")],
    );
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // SIGTERM: a graceful stop with exit code 0.
    let mut server = server;
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "serve exited with {status}");
}

#[test]
fn doctor_on_a_fresh_directory_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = concierge(dir.path(), &[], &["doctor", "--json"]);
    assert!(!out.status.success(), "no database yet: doctor reports it");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert!(!data.exists(), "doctor must not create the data directory");
    let backups = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backups")
        .unwrap();
    assert!(
        backups["detail"].as_str().unwrap().contains("none yet"),
        "{backups}"
    );
    // With PostgreSQL, a schedule without a backup key would stop the worker: a failure.
    let out = concierge(
        dir.path(),
        &[
            (
                "CONCIERGE_DATABASE_URL",
                "postgres://nobody@127.0.0.1:1/x".into(),
            ),
            ("CONCIERGE_BACKUP__DAILY_AT", "03:00".into()),
        ],
        &["doctor", "--json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backups = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backups")
        .unwrap();
    assert_eq!(
        (&backups["ok"], &backups["required"]),
        (&false.into(), &true.into())
    );
}

#[test]
fn sqlite_operator_tour() {
    let dir = tempfile::tempdir().unwrap();
    drive(dir.path(), Vec::new());
    // The embedded default generated its keys with private permissions.
    let key = dir.path().join("data/master.key");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "master key readable by others");
    }
}

#[test]
fn postgres_operator_tour() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(testkit::TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    let mut env = postgres_env(&db, 7);
    env.push((
        "CONCIERGE_TWILIO__AUTH_TOKEN",
        "0123456789abcdef".to_owned(),
    ));
    drive(dir.path(), env);
    assert!(
        !dir.path().join("data/master.key").exists(),
        "with PostgreSQL the master key comes from configuration only"
    );
    rt.block_on(db.cleanup());
}

/// Web chat answered by a model (a local fake speaking OpenAI Chat Completions), through
/// `serve`: the reply comes from the model, the second turn carries the first as history,
/// and with the model down the offline engine still answers.
fn chat_through_a_model(dir: &Path, mut env: Vec<(&'static str, String)>, fake_url: String) {
    let http = free_port();
    env.push(("CONCIERGE_HTTP__LISTEN", format!("127.0.0.1:{http}")));
    env.push((
        "CONCIERGE_ADMIN__LISTEN",
        format!("127.0.0.1:{}", free_port()),
    ));
    env.push(("CONCIERGE_LLM__PROVIDER", "openai_compatible".into()));
    env.push(("CONCIERGE_LLM__MODEL", "fake-model".into()));
    env.push(("CONCIERGE_LLM__BASE_URL", fake_url));
    env.push(("CONCIERGE_LLM__MAX_ATTEMPTS", "1".into()));
    let tenant = tenant_with_entry(
        dir,
        &env,
        ("Cafe", "+15550003333"),
        ("Wifi", "The wifi password is on the menu."),
    );
    let key = api_key(dir, &env, &tenant);
    let base = format!("http://127.0.0.1:{http}");
    let _server = serve(dir, &env, &base);
    let url = format!("{base}/api/v1/chat/messages");
    let (status, first) = post_json(&url, &key, &serde_json::json!({"message": "hi there"}));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["reply"], "Model says hello.", "{first}");
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let (status, second) = post_json(
        &url,
        &key,
        &serde_json::json!({"message": "and the wifi?", "conversation_id": conversation}),
    );
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["conversation_id"], conversation.as_str());
    // The model is down for this turn: the offline engine answers from the knowledge base.
    assert_eq!(
        second["reply"], "The wifi password is on the menu.",
        "{second}"
    );
}

fn fake_model_answers(fake: &testkit::fake_llm::FakeOpenAi) {
    use testkit::fake_llm::Reply;
    fake.push(Reply::Text("Model says hello.".into()));
    fake.push(Reply::Status(503));
}

fn check_model_conversation(fake: &testkit::fake_llm::FakeOpenAi) {
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "one model call per turn");
    let second = requests[1]["messages"].as_array().unwrap();
    // system, then the first exchange from the database (decrypted), then the new message.
    assert_eq!(
        second[1],
        serde_json::json!({"role": "user", "content": "hi there"})
    );
    assert_eq!(
        second[2],
        serde_json::json!({"role": "assistant", "content": "Model says hello."})
    );
    assert_eq!(
        second[3],
        serde_json::json!({"role": "user", "content": "and the wifi?"})
    );
}

#[test]
fn sqlite_web_chat_through_a_model() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(testkit::fake_llm::FakeOpenAi::start());
    fake_model_answers(&fake);
    let dir = tempfile::tempdir().unwrap();
    chat_through_a_model(dir.path(), Vec::new(), fake.base_url());
    check_model_conversation(&fake);
}

#[test]
fn postgres_web_chat_through_a_model() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(testkit::fake_llm::FakeOpenAi::start());
    fake_model_answers(&fake);
    let db = rt.block_on(testkit::TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    chat_through_a_model(dir.path(), postgres_env(&db, 9), fake.base_url());
    check_model_conversation(&fake);
    rt.block_on(db.cleanup());
}

/// `concierge chat`: lines on stdin go through the real turn path; the model's tool call is
/// shown; the conversation is stored and continues across lines.
fn chat_command(dir: &Path, mut env: Vec<(&'static str, String)>) {
    use std::io::Write as _;
    use testkit::fake_llm::{FakeOpenAi, Reply};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeOpenAi::start());
    fake.push(Reply::ToolCalls(vec![(
        "search_knowledge_base".into(),
        r#"{"query":"parking"}"#.into(),
    )]));
    fake.push(Reply::Text("Park behind the restaurant, it's free.".into()));
    fake.push(Reply::Text("You're welcome!".into()));
    env.push(("CONCIERGE_LLM__PROVIDER", "openai_compatible".into()));
    env.push(("CONCIERGE_LLM__MODEL", "fake-model".into()));
    env.push(("CONCIERGE_LLM__BASE_URL", fake.base_url()));
    assert!(concierge(dir, &env, &["migrate"]).status.success());
    let id = tenant_with_entry(
        dir,
        &env,
        ("Deli", "+15550006666"),
        ("Parking", "Free parking behind the restaurant."),
    );
    let mut child = command(dir, &env, &["chat", "--tenant", &id, "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"where do I park?\nthanks\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let turns: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[0]["reply"], "Park behind the restaurant, it's free.");
    assert_eq!(turns[0]["answered_by"], "llm");
    assert_eq!(
        turns[0]["tools"],
        serde_json::json!(["search_knowledge_base"])
    );
    assert_eq!(turns[1]["reply"], "You're welcome!");
    assert_eq!(turns[0]["conversation_id"], turns[1]["conversation_id"]);
    // The second turn saw the first one as history.
    let last = fake.requests().pop().unwrap();
    let history: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(history.contains(&"where do I park?"), "{history:?}");
    assert!(history.contains(&"Park behind the restaurant, it's free."));

    // A tenant that does not exist: a clear error, exit 1.
    let missing = concierge(
        dir,
        &env,
        &["chat", "--tenant", "01a200c3-e943-747b-817e-6634329b539c"],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no tenant"));
}

#[test]
fn sqlite_chat_command() {
    let dir = tempfile::tempdir().unwrap();
    chat_command(dir.path(), Vec::new());
}

#[test]
fn postgres_chat_command() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(testkit::TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    chat_command(dir.path(), postgres_env(&db, 5));
    rt.block_on(db.cleanup());
}

/// Any method, JSON in and out, with the tenant's key.
fn call(
    method: reqwest::Method,
    url: &str,
    bearer: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut req = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(bearer)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or_default())
    })
}

/// Hand-off as staff meet it, through `concierge all` with a fake Twilio: the customer asks
/// for a person by SMS, the agents stop answering, a member of staff takes the conversation
/// and writes (sent by the outbox through Twilio's REST API), then gives it back and the
/// agents answer again. Then the tenant brings its own model (the installation has none):
/// web chat is answered by it, and by the offline engine once the tenant removes it.
fn handoff_and_own_model(dir: &Path, mut env: Vec<(&'static str, String)>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twilio = rt.block_on(testkit::fake_twilio::FakeTwilio::start(
        "ACtest",
        "twilio-secret",
    ));
    let model = rt.block_on(testkit::fake_llm::FakeOpenAi::start());
    model.set_default_text("Answered by the tenant's own model.");
    let http = free_port();
    env.push(("CONCIERGE_HTTP__LISTEN", format!("127.0.0.1:{http}")));
    env.push((
        "CONCIERGE_ADMIN__LISTEN",
        format!("127.0.0.1:{}", free_port()),
    ));
    env.push(("CONCIERGE_TWILIO__ACCOUNT_SID", "ACtest".into()));
    env.push(("CONCIERGE_TWILIO__AUTH_TOKEN", "twilio-secret".into()));
    env.push(("CONCIERGE_TWILIO__API_BASE", twilio.base_url()));
    env.push(("CONCIERGE_TWILIO__SEND_INTERVAL_MS", "0".into()));
    env.push(("CONCIERGE_WORKER__POLL_INTERVAL_MS", "50".into()));
    env.push(("CONCIERGE_LLM__TENANT_PRIVATE_ENDPOINTS", "true".into()));
    let tenant = tenant_with_entry(
        dir,
        &env,
        ("Salon", "+15550004444"),
        ("Opening hours", "We are open from 9am to 6pm."),
    );
    let key = api_key(dir, &env, &tenant);
    let base = format!("http://127.0.0.1:{http}");
    let server = Server(
        command(dir, &env, &["all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start concierge all"),
    );
    let started = Instant::now();
    while get(&format!("{base}/ready"), None).0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = |sid: &str, body: &str| {
        let out = concierge(
            dir,
            &env,
            &[
                "simulate",
                "sms",
                "--from",
                "+15557654321",
                "--to",
                "+15550004444",
                "--body",
                body,
                "--sid",
                sid,
                "--url",
                &base,
                "--json",
            ],
        );
        let answer = json(&out);
        assert_eq!(answer["status"], 200, "{answer}");
        answer["body"].as_str().unwrap_or_default().to_owned()
    };
    let api = |method: reqwest::Method, path: &str, body: Option<&serde_json::Value>| {
        call(method, &format!("{base}/api/v1{path}"), &key, body)
    };

    let first = text(
        "SM00000000000000000000000000000001",
        "I want to talk to a human",
    );
    assert!(
        first.contains("<Message>"),
        "the agents answer the request: {first}"
    );
    let (status, inbox) = api(reqwest::Method::GET, "/handoffs", None);
    assert_eq!(status, 200, "{inbox}");
    assert_eq!(inbox["items"][0]["handoff"], "pending", "{inbox}");
    let conversation = inbox["items"][0]["id"].as_str().unwrap().to_owned();

    // Waiting for staff: recorded, not answered.
    let waiting = text("SM00000000000000000000000000000002", "hello? anyone?");
    assert!(!waiting.contains("<Message>"), "{waiting}");

    let (status, sent) = api(
        reqwest::Method::POST,
        &format!("/conversations/{conversation}/messages"),
        Some(&serde_json::json!({"text": "Hi, Marie here. How can I help?", "staff": "Marie"})),
    );
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["author"], "staff", "{sent}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !twilio
        .sent()
        .iter()
        .any(|m| m.body == "Hi, Marie here. How can I help?" && m.to == "+15557654321")
    {
        assert!(
            Instant::now() < deadline,
            "staff SMS never reached Twilio: {:?}",
            twilio.sent()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, c) = api(reqwest::Method::GET, "/handoffs", None);
    assert_eq!(c["items"][0]["handoff"], "human");
    assert_eq!(c["items"][0]["handoff_staff"], "Marie");
    let still = text(
        "SM00000000000000000000000000000003",
        "what are your opening hours?",
    );
    assert!(!still.contains("<Message>"), "a person has it: {still}");

    let (status, back) = api(
        reqwest::Method::DELETE,
        &format!("/conversations/{conversation}/handoff"),
        None,
    );
    assert_eq!(
        (status, back["handoff"].as_str()),
        (200, Some("bot")),
        "{back}"
    );
    let answered = text(
        "SM00000000000000000000000000000004",
        "what are your opening hours?",
    );
    assert!(answered.contains("9am to 6pm"), "{answered}");

    // The tenant's own model; the installation has none.
    let chat = |message: &str| {
        let (status, reply) = api(
            reqwest::Method::POST,
            "/chat/messages",
            Some(&serde_json::json!({ "message": message })),
        );
        assert_eq!(status, 200, "{reply}");
        reply["reply"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(
        chat("what are your opening hours?"),
        "We are open from 9am to 6pm."
    );
    let settings = serde_json::json!({"providers": [{
        "provider": "openai_compatible", "model": "salon-model", "base_url": model.base_url()
    }]});
    let (status, set) = api(reqwest::Method::PUT, "/model-settings", Some(&settings));
    assert_eq!(status, 200, "{set}");
    assert_eq!(chat("hello"), "Answered by the tenant's own model.");
    assert_eq!(model.requests()[0]["model"], "salon-model");
    let (status, _) = api(reqwest::Method::DELETE, "/model-settings", None);
    assert_eq!(status, 200);
    assert_eq!(
        chat("what are your opening hours?"),
        "We are open from 9am to 6pm."
    );
    assert_eq!(model.calls(), 1);
    drop(server);
}

#[test]
fn sqlite_handoff_and_own_model() {
    let dir = tempfile::tempdir().unwrap();
    handoff_and_own_model(dir.path(), Vec::new());
}

#[test]
fn postgres_handoff_and_own_model() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(testkit::TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    handoff_and_own_model(dir.path(), postgres_env(&db, 10));
    rt.block_on(db.cleanup());
}
