//! Carrier keywords over the SMS webhook: STOP, START, HELP and the consent ledger.

use domain::ConsentKeyword;
use store::Page;
use testkit::TestDb;

use crate::{CUSTOMER, FALLBACK, HOURS, TestApp, each_backend};

each_backend!(
    stop_silences_a_number_until_start,
    keywords_are_case_insensitive_and_exact
);

const UNSUBSCRIBED: &str = "Acme Dental: you are unsubscribed and will receive no more messages. Reply START to resubscribe.";
const SUBSCRIBED: &str =
    "Acme Dental: you are subscribed again. Reply HELP for help, STOP to unsubscribe.";
const HELP: &str = "Acme Dental: reply to this number to reach us. Reply STOP to unsubscribe. Msg &amp; data rates may apply.";

/// The stored reply to the inbound message with this sid, if any.
async fn reply_to(app: &TestApp, sid: &str) -> Option<store::StoredMessage> {
    let conversation = app
        .stores
        .data
        .list_conversations(app.tenant.id, Page::default())
        .await
        .unwrap()[0]
        .id;
    let messages = app
        .stores
        .data
        .list_messages(app.tenant.id, conversation, Page::new(200, None))
        .await
        .unwrap();
    let inbound = messages
        .iter()
        .find(|m| m.provider_sid.as_deref() == Some(sid))
        .expect("the inbound message");
    app.stores
        .data
        .reply_to(app.tenant.id, inbound.id)
        .await
        .unwrap()
}

async fn stop_silences_a_number_until_start(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.text("SMc1", CUSTOMER, "opening hours?")
        .await
        .assert_twiml(Some(HOURS));

    app.text("SMc2", CUSTOMER, "STOP")
        .await
        .assert_twiml(Some(UNSUBSCRIBED));
    assert!(app.end_user(CUSTOMER).await.opted_out);
    let confirmation = reply_to(&app, "SMc2")
        .await
        .expect("the confirmation is stored");
    assert_eq!(confirmation.status, domain::MessageStatus::RepliedInline);

    // Opted out: recorded, never answered, and no turn is queued for a worker either.
    app.text("SMc3", CUSTOMER, "opening hours?")
        .await
        .assert_twiml(None);
    assert!(reply_to(&app, "SMc3").await.is_none());
    let stats = app.stores.queue.stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    // A replay of a keyword answers as the first time.
    app.text("SMc2", CUSTOMER, "STOP")
        .await
        .assert_twiml(Some(UNSUBSCRIBED));

    // HELP is answered even while opted out, and does not opt back in.
    app.text("SMc4", CUSTOMER, "HELP")
        .await
        .assert_twiml(Some(HELP));
    assert!(app.end_user(CUSTOMER).await.opted_out);

    app.text("SMc5", CUSTOMER, "START")
        .await
        .assert_twiml(Some(SUBSCRIBED));
    assert!(!app.end_user(CUSTOMER).await.opted_out);
    app.text("SMc6", CUSTOMER, "do you sell bicycles")
        .await
        .assert_twiml(Some(FALLBACK));
    app.text("SMc7", CUSTOMER, "help")
        .await
        .assert_twiml(Some(HELP));

    let user = app.end_user(CUSTOMER).await;
    let ledger: Vec<ConsentKeyword> = app
        .stores
        .data
        .consent_history(app.tenant.id, user.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.keyword)
        .collect();
    assert_eq!(
        ledger,
        [
            ConsentKeyword::OptOut,
            ConsentKeyword::Help,
            ConsentKeyword::OptIn,
            ConsentKeyword::Help
        ],
        "the ledger records each keyword once, in order (the replay adds nothing)"
    );

    // Everything is in one conversation: 7 inbound (the replay not counted) and 6 replies.
    let conversation = app.only_conversation().await;
    let messages = app.messages(&conversation).await;
    assert_eq!(
        messages
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count(),
        7
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m["direction"] == "outbound")
            .count(),
        6
    );
}

async fn keywords_are_case_insensitive_and_exact(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.text("SMk1", CUSTOMER, " stop ")
        .await
        .assert_twiml(Some(UNSUBSCRIBED));
    assert!(app.end_user(CUSTOMER).await.opted_out);
    app.text("SMk2", CUSTOMER, "Start!")
        .await
        .assert_twiml(Some(SUBSCRIBED));
    app.text("SMk3", CUSTOMER, "Unsubscribe.")
        .await
        .assert_twiml(Some(UNSUBSCRIBED));
    app.text("SMk4", CUSTOMER, "unstop")
        .await
        .assert_twiml(Some(SUBSCRIBED));
    assert!(!app.end_user(CUSTOMER).await.opted_out);

    // A sentence containing a keyword is an ordinary message (here, a visit to book).
    app.text("SMk5", CUSTOMER, "please stop by tomorrow")
        .await
        .assert_twiml(Some("What would you like to book?"));
    assert!(!app.end_user(CUSTOMER).await.opted_out);
}
