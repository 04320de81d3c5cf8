//! `concierge backup` and `concierge restore` as an operator runs them: a backup of a live
//! installation (encrypted messages and all), checked, listed, rotated, refused when damaged
//! or read with the wrong key, and restored across backends (SQLite to PostgreSQL and back),
//! after which the restored installation carries on the same conversations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use support::{command, concierge, json, key, postgres_env};

type Env = Vec<(&'static str, String)>;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sends `lines` through `concierge chat --as PHONE --json`; returns each turn's JSON.
fn chat(dir: &Path, env: &Env, tenant: &str, phone: &str, lines: &str) -> Vec<serde_json::Value> {
    let mut child = command(
        dir,
        env,
        &["chat", "--tenant", tenant, "--as", phone, "--json"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An installation with a tenant, knowledge, and an SMS conversation (encrypted bodies and
/// phone number); returns the tenant id and the conversation id.
fn populate(dir: &Path, env: &Env) -> (String, String) {
    assert!(concierge(dir, env, &["migrate"]).status.success());
    let tenant = json(&concierge(
        dir,
        env,
        &[
            "admin",
            "tenant",
            "create",
            "--name",
            "Deli",
            "--phone",
            "+15550006666",
            "--json",
        ],
    ))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    json(&concierge(
        dir,
        env,
        &[
            "admin",
            "kb",
            "add",
            "--tenant",
            &tenant,
            "--title",
            "Parking",
            "--body",
            "Free parking behind the restaurant.",
            "--json",
        ],
    ));
    let turns = chat(
        dir,
        env,
        &tenant,
        "+15551230000",
        "where do I park?\nthanks\n",
    );
    assert_eq!(turns.len(), 2);
    assert!(turns[0]["reply"].as_str().unwrap().contains("parking"));
    assert_eq!(turns[0]["conversation_id"], turns[1]["conversation_id"]);
    (
        tenant,
        turns[0]["conversation_id"].as_str().unwrap().to_owned(),
    )
}

fn create(dir: &Path, env: &Env) -> (PathBuf, serde_json::Value) {
    let created = json(&concierge(dir, env, &["backup", "create", "--json"]));
    assert_eq!(created["verified"], true, "{created}");
    (PathBuf::from(created["path"].as_str().unwrap()), created)
}

fn refused(dir: &Path, env: &Env, args: &[&str], expect: &str) {
    let out = concierge(dir, env, args);
    assert!(!out.status.success(), "{args:?} should have failed");
    let err = stderr(&out);
    assert!(
        err.contains(expect),
        "{args:?}: expected {expect:?} in {err}"
    );
}

fn tour(src_dir: &Path, src: &Env, dst_dir: &Path, dst: &Env) {
    let (tenant, conversation) = populate(src_dir, src);
    let (path, created) = create(src_dir, src);
    let path = src_dir.join(path);
    assert_eq!(created["rows"]["messages"], 4, "{created}");
    assert_eq!(created["rows"]["end_users"], 1);
    assert_eq!(created["rows"]["tenant_keys"], 1);
    assert!(created["bytes"].as_u64().unwrap() > 100);
    // The checksum file is in sha256sum format.
    let sidecar = std::fs::read_to_string(format!("{}.sha256", path.display())).unwrap();
    assert!(sidecar.starts_with(created["sha256"].as_str().unwrap()));
    // Nothing in the file is readable without the key.
    let raw = std::fs::read(&path).unwrap();
    assert!(raw.starts_with(b"CCBACKUP"));
    assert!(!raw.windows(4).any(|w| w == b"Deli"));

    let listed = json(&concierge(src_dir, src, &["backup", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let checked = json(&concierge(
        src_dir,
        src,
        &["backup", "verify", path.to_str().unwrap(), "--json"],
    ));
    assert_eq!(checked["rows"]["messages"], 4);
    assert_eq!(checked["master_keys"].as_array().unwrap().len(), 1);

    // Damage: a flipped byte (caught by the checksum file, and without it by the
    // encryption), a truncated copy, and the wrong key.
    let scratch = tempfile::tempdir().unwrap();
    let flipped = scratch.path().join("concierge-20260101T000000Z.ccbk");
    let mut bytes = raw.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&flipped, &bytes).unwrap();
    std::fs::copy(
        format!("{}.sha256", path.display()),
        format!("{}.sha256", flipped.display()),
    )
    .unwrap();
    let flipped_arg = flipped.to_str().unwrap();
    refused(
        src_dir,
        src,
        &["backup", "verify", flipped_arg],
        "does not match its .sha256",
    );
    std::fs::remove_file(format!("{}.sha256", flipped.display())).unwrap();
    refused(
        src_dir,
        src,
        &["backup", "verify", flipped_arg],
        "damaged backup",
    );
    std::fs::write(&flipped, &raw[..raw.len() - 40]).unwrap();
    refused(
        src_dir,
        src,
        &["backup", "verify", flipped_arg],
        "damaged backup",
    );
    std::fs::write(
        &flipped,
        b"PK\x03\x04 this is a zip file, not a backup at all",
    )
    .unwrap();
    refused(
        src_dir,
        src,
        &["backup", "verify", flipped_arg],
        "not a Concierge backup",
    );
    let mut wrong_key = src.clone();
    wrong_key.retain(|(k, _)| *k != "CONCIERGE_BACKUP__KEY");
    wrong_key.push(("CONCIERGE_BACKUP__KEY", key(200)));
    refused(
        src_dir,
        &wrong_key,
        &["backup", "verify", path.to_str().unwrap()],
        "backup key",
    );

    // Restore: a dry run keeps nothing, then the real one, then a second one is refused.
    let file = path.to_str().unwrap();
    let dry = json(&concierge(
        dst_dir,
        dst,
        &["restore", file, "--dry-run", "--json"],
    ));
    assert_eq!(dry["rows"]["messages"], 4);
    let tenants = json(&concierge(
        dst_dir,
        dst,
        &["admin", "tenant", "list", "--json"],
    ));
    assert_eq!(
        tenants.as_array().unwrap().len(),
        0,
        "the dry run kept nothing"
    );
    let restored = json(&concierge(dst_dir, dst, &["restore", file, "--json"]));
    assert_eq!(restored["rows"], checked["rows"]);
    refused(dst_dir, dst, &["restore", file], "not empty");
    let tenants = json(&concierge(
        dst_dir,
        dst,
        &["admin", "tenant", "list", "--json"],
    ));
    assert_eq!(tenants[0]["id"], tenant);

    // The restored installation knows the caller (blind index) and reads the history
    // (decryption): a model sees the messages from before the backup.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(testkit::fake_llm::FakeOpenAi::start());
    fake.push(testkit::fake_llm::Reply::Text("Welcome back!".into()));
    let mut with_model = dst.clone();
    with_model.push(("CONCIERGE_LLM__PROVIDER", "openai_compatible".into()));
    with_model.push(("CONCIERGE_LLM__MODEL", "fake-model".into()));
    with_model.push(("CONCIERGE_LLM__BASE_URL", fake.base_url()));
    let turns = chat(dst_dir, &with_model, &tenant, "+15551230000", "I'm back\n");
    assert_eq!(turns[0]["reply"], "Welcome back!");
    assert_eq!(
        turns[0]["conversation_id"],
        conversation.as_str(),
        "the same conversation"
    );
    let seen: Vec<String> = fake.requests().pop().unwrap()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect();
    assert!(seen.iter().any(|m| m == "where do I park?"), "{seen:?}");
    let after = json(&concierge(dst_dir, dst, &["backup", "create", "--json"]));
    assert_eq!(
        after["rows"]["end_users"], 1,
        "the same caller, not a new one"
    );
    assert_eq!(after["rows"]["messages"], 6);
}

#[test]
fn sqlite_to_postgres_and_back() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pg = rt.block_on(testkit::TestDb::postgres());
    // The embedded install and PostgreSQL share one master key (an embedded install that
    // generated its own passes the contents of data/master.key).
    let src_dir = tempfile::tempdir().unwrap();
    let src: Env = vec![
        ("CONCIERGE_MASTER_KEY", key(4)),
        ("CONCIERGE_BACKUP__KEY", key(1)),
    ];
    let pg_dir = tempfile::tempdir().unwrap();
    let mut pg_env = postgres_env(&pg, 4);
    pg_env.push(("CONCIERGE_BACKUP__KEY", key(1)));
    tour(src_dir.path(), &src, pg_dir.path(), &pg_env);

    // PostgreSQL back to a new embedded install.
    let (pg_backup, _) = create(pg_dir.path(), &pg_env);
    let pg_backup = pg_dir.path().join(pg_backup);
    let pg_backup = pg_backup.to_str().unwrap();
    let back_dir = tempfile::tempdir().unwrap();
    let restored = json(&concierge(
        back_dir.path(),
        &src,
        &["restore", pg_backup, "--json"],
    ));
    assert_eq!(restored["source"], "postgres");
    // The tour's chat on PostgreSQL added two messages.
    assert_eq!(restored["rows"]["messages"], 6);

    // A master key other than the one that wrapped the data keys is refused, and nothing
    // is half-written.
    let other_dir = tempfile::tempdir().unwrap();
    let other: Env = vec![
        ("CONCIERGE_MASTER_KEY", key(77)),
        ("CONCIERGE_BACKUP__KEY", key(1)),
    ];
    refused(
        other_dir.path(),
        &other,
        &["restore", pg_backup],
        "master key",
    );
    let tenants = json(&concierge(
        other_dir.path(),
        &other,
        &["admin", "tenant", "list", "--json"],
    ));
    assert_eq!(tenants.as_array().unwrap().len(), 0);
    // An embedded install with no master key at all is told which one to configure.
    let bare_dir = tempfile::tempdir().unwrap();
    let bare: Env = vec![("CONCIERGE_BACKUP__KEY", key(1))];
    refused(
        bare_dir.path(),
        &bare,
        &["restore", pg_backup],
        "CONCIERGE_MASTER_KEY",
    );
    rt.block_on(pg.cleanup());
}

#[test]
fn postgres_to_sqlite() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pg = rt.block_on(testkit::TestDb::postgres());
    let pg_dir = tempfile::tempdir().unwrap();
    let mut src = postgres_env(&pg, 9);
    src.push(("CONCIERGE_BACKUP__KEY", key(2)));
    let dst_dir = tempfile::tempdir().unwrap();
    let dst: Env = vec![
        ("CONCIERGE_MASTER_KEY", key(9)),
        ("CONCIERGE_BACKUP__KEY", key(2)),
    ];
    tour(pg_dir.path(), &src, dst_dir.path(), &dst);

    // With PostgreSQL a backup key must be configured.
    let no_key = postgres_env(&pg, 9);
    refused(
        pg_dir.path(),
        &no_key,
        &["backup", "create"],
        "CONCIERGE_BACKUP__KEY",
    );
    rt.block_on(pg.cleanup());
}

#[test]
fn rotation_keeps_the_newest_per_day() {
    let dir = tempfile::tempdir().unwrap();
    let env: Env = vec![
        ("CONCIERGE_BACKUP__KEY", key(3)),
        ("CONCIERGE_BACKUP__KEEP_DAILY", "2".into()),
        ("CONCIERGE_BACKUP__KEEP_WEEKLY", "0".into()),
        ("CONCIERGE_BACKUP__KEEP_MONTHLY", "0".into()),
    ];
    assert!(concierge(dir.path(), &env, &["migrate"]).status.success());
    let backups = dir.path().join("data/backups");
    std::fs::create_dir_all(&backups).unwrap();
    // Older backups (their contents do not matter to rotation), and an unrelated file.
    let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let old = [
        yesterday,
        yesterday - jiff::SignedDuration::from_hours(24),
        yesterday - jiff::SignedDuration::from_hours(48),
    ];
    for t in old {
        let name = format!("concierge-{}.ccbk", t.strftime("%Y%m%dT%H%M%SZ"));
        std::fs::write(backups.join(&name), b"old").unwrap();
        std::fs::write(backups.join(format!("{name}.sha256")), b"x").unwrap();
    }
    std::fs::write(backups.join("notes.txt"), b"keep me").unwrap();
    let created = json(&concierge(
        dir.path(),
        &env,
        &["backup", "create", "--json"],
    ));
    assert_eq!(created["removed"].as_array().unwrap().len(), 2, "{created}");
    let left: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 5, "{left:?}"); // today's and yesterday's (+ .sha256), notes.txt
    assert!(left.contains(&"notes.txt".to_owned()));
    let yesterday_name = format!("concierge-{}.ccbk", old[0].strftime("%Y%m%dT%H%M%SZ"));
    assert!(left.contains(&yesterday_name));

    // Bad settings are refused before anything runs.
    let mut bad = env.clone();
    bad.push(("CONCIERGE_BACKUP__DAILY_AT", "25:00".into()));
    refused(dir.path(), &bad, &["backup", "list"], "HH:MM");
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "CONCIERGE_BACKUP__KEY");
    bad.push(("CONCIERGE_BACKUP__KEY", "c2hvcnQ=".into()));
    refused(dir.path(), &bad, &["backup", "create"], "32 bytes");
    // Reading backups never makes up a key: without one, the error says which to set.
    let keyless = tempfile::tempdir().unwrap();
    refused(
        keyless.path(),
        &Vec::new(),
        &["backup", "verify", "concierge-20260101T000000Z.ccbk"],
        "no backup key",
    );
    assert!(!keyless.path().join("data/backup.key").exists());
    refused(
        dir.path(),
        &env,
        &["restore", "/nonexistent/backup.ccbk"],
        "opening",
    );
}
