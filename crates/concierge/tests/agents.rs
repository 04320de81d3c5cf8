//! Agents as an operator drives them through the built binary, on both backends:
//! `concierge profile` (validate, set, list, show, history, default), `concierge chat` with
//! the offline engine (reminders, the booking flow handed to staff, in English and French),
//! and `chat --profile` with a model, showing the agents that spoke and the tools that ran.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use support::{command, concierge, json, postgres_env};

fn tenant(dir: &Path, env: &[(&str, String)], phone: &str) -> String {
    let out = concierge(
        dir,
        env,
        &[
            "admin", "tenant", "create", "--name", "Salon", "--phone", phone, "--json",
        ],
    );
    json(&out)["id"].as_str().expect("tenant id").to_owned()
}

/// Runs `chat` with these lines on stdin; one JSON object per turn.
fn chat(
    dir: &Path,
    env: &[(&str, String)],
    args: &[&str],
    lines: &[&str],
) -> Vec<serde_json::Value> {
    let mut all = vec!["chat", "--json"];
    all.extend_from_slice(args);
    let mut child = command(dir, env, &all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn profiles(dir: &Path, env: &[(&str, String)]) {
    assert!(concierge(dir, env, &["migrate"]).status.success());
    let id = tenant(dir, env, "+15550007001");

    // A shipped profile is the starting point of a tenant's own.
    let shown = concierge(dir, env, &["profile", "show", "receptionist"]);
    assert!(shown.status.success());
    let source = String::from_utf8(shown.stdout).unwrap();
    assert!(source.contains("[agents.triage]"));
    let file = dir.join("salon.toml");
    std::fs::write(
        &file,
        source
            .replace("name = \"receptionist\"", "name = \"salon\"")
            .replace(
                "entry = \"triage\"",
                "entry = \"triage\"\ntimezone = \"Europe/Paris\"",
            ),
    )
    .unwrap();
    let valid = concierge(
        dir,
        env,
        &["profile", "validate", file.to_str().unwrap(), "--json"],
    );
    assert_eq!(json(&valid)["name"], "salon");

    // A broken profile is refused with the field named, and nothing is stored.
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        "name = \"salon\"\nentry = \"a\"\n[agents.a]\ninstructions = \"x\"\nhandoffs = [\"ghost\"]\n",
    )
    .unwrap();
    let refused = concierge(
        dir,
        env,
        &["profile", "set", "--tenant", &id, broken.to_str().unwrap()],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("agents.a: hand-off to \"ghost\""));

    for expected in [1, 2] {
        let set = concierge(
            dir,
            env,
            &[
                "profile",
                "set",
                "--tenant",
                &id,
                file.to_str().unwrap(),
                "--default",
                "--json",
            ],
        );
        assert_eq!(json(&set)["version"], expected);
    }
    let list = json(&concierge(
        dir,
        env,
        &["profile", "list", "--tenant", &id, "--json"],
    ));
    let rows = list.as_array().unwrap();
    let salon = rows.iter().find(|r| r["name"] == "salon").unwrap();
    assert_eq!(
        (salon["version"].as_u64(), salon["default"].as_bool()),
        (Some(2), Some(true))
    );
    assert!(
        rows.iter()
            .any(|r| r["name"] == "assistant" && r["source"] == "built-in")
    );
    let history = json(&concierge(
        dir,
        env,
        &["profile", "history", "--tenant", &id, "salon", "--json"],
    ));
    assert_eq!(history.as_array().unwrap().len(), 2);
    let v1 = concierge(
        dir,
        env,
        &[
            "profile",
            "show",
            "--tenant",
            &id,
            "salon",
            "--version",
            "1",
        ],
    );
    assert!(String::from_utf8_lossy(&v1.stdout).contains("Europe/Paris"));
    let unknown = concierge(dir, env, &["profile", "default", "--tenant", &id, "nope"]);
    assert!(!unknown.status.success());
    let bad_tenant = concierge(dir, env, &["profile", "list", "--tenant", "not-a-uuid"]);
    assert!(!bad_tenant.status.success());

    // Offline (no provider): reminders in English and French, by SMS, in the profile's
    // time zone; then the booking flow, handed to staff without a booking system.
    let turns = chat(
        dir,
        env,
        &["--tenant", &id, "--as", "+15557650001"],
        &[
            "remind me tomorrow at 9 to call Marc",
            "rappelle-moi demain à 10h d'appeler le garage",
            "what are my reminders?",
            "I'd like to book a haircut",
            "tomorrow at 10",
            "Marie",
            "yes",
        ],
    );
    assert_eq!(turns.len(), 7, "{turns:#?}");
    assert_eq!(turns[0]["answered_by"], "reminder");
    assert_eq!(turns[0]["tools"], serde_json::json!(["create_reminder"]));
    let confirm = turns[0]["reply"].as_str().unwrap();
    assert!(
        confirm.contains("09:00") && confirm.contains("call Marc"),
        "{confirm}"
    );
    let confirm = turns[1]["reply"].as_str().unwrap();
    assert!(
        confirm.contains("10:00") && confirm.contains("appeler le garage"),
        "{confirm}"
    );
    let listed = turns[2]["reply"].as_str().unwrap();
    assert!(
        listed.contains("Reminder: call Marc") && listed.contains("Rappel : appeler le garage"),
        "{listed}"
    );
    assert_eq!(turns[3]["answered_by"], "dialogue");
    assert_eq!(turns[6]["answered_by"], "booking");
    assert_eq!(turns[6]["tools"], serde_json::json!(["hand_off_to_human"]));
    assert!(
        turns[6]["reply"]
            .as_str()
            .unwrap()
            .contains("passed your request")
    );
    assert_eq!(turns[0]["conversation_id"], turns[6]["conversation_id"]);
}

/// `chat --profile assistant` with a model: the agent, its tools and the memory it keeps.
fn chat_with_a_profile(dir: &Path, mut env: Vec<(&'static str, String)>) {
    use testkit::fake_llm::{FakeOpenAi, Reply};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeOpenAi::start());
    fake.push(Reply::ToolCalls(vec![(
        "remember_fact".into(),
        r#"{"fact":"Prefers mornings"}"#.into(),
    )]));
    fake.push(Reply::Text("Noted.".into()));
    fake.push(Reply::Text("You prefer mornings.".into()));
    env.push(("CONCIERGE_LLM__PROVIDER", "openai_compatible".into()));
    env.push(("CONCIERGE_LLM__MODEL", "fake-model".into()));
    env.push(("CONCIERGE_LLM__BASE_URL", fake.base_url()));
    assert!(concierge(dir, &env, &["migrate"]).status.success());
    let id = tenant(dir, &env, "+15550007002");
    let unknown = concierge(dir, &env, &["chat", "--tenant", &id, "--profile", "nope"]);
    assert!(!unknown.status.success());
    let turns = chat(
        dir,
        &env,
        &[
            "--tenant",
            &id,
            "--profile",
            "assistant",
            "--as",
            "+15557650002",
        ],
        &["I prefer mornings", "what do you know about me?"],
    );
    assert_eq!(turns[0]["agents"], serde_json::json!(["assistant"]));
    assert_eq!(turns[0]["tools"], serde_json::json!(["remember_fact"]));
    let last = fake.requests().pop().unwrap();
    let system = last["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("Prefers mornings"), "{system}");
}

#[test]
fn sqlite_profiles_and_offline_chat() {
    let dir = tempfile::tempdir().unwrap();
    profiles(dir.path(), &[]);
}

#[test]
fn postgres_profiles_and_offline_chat() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(testkit::TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    profiles(dir.path(), &postgres_env(&db, 11));
    rt.block_on(db.cleanup());
}

#[test]
fn sqlite_chat_with_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    chat_with_a_profile(dir.path(), Vec::new());
}

#[test]
fn postgres_chat_with_a_profile() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(testkit::TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    chat_with_a_profile(dir.path(), postgres_env(&db, 12));
    rt.block_on(db.cleanup());
}
