//! One conformance suite, run against SQLite and PostgreSQL: every backend must behave the
//! same for the layers above.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod batching;
mod embeddings;
mod handoff;
mod messages;
mod queue;
mod rls;
mod snapshot;
mod tenants;
mod tls;
mod turns;

use std::time::Duration;

use domain::{Channel, PhoneNumber, TenantId, TenantName};
use store::{
    Contact, InboundMessage, InboundOutcome, NewTenant, RecordedInbound, Stores, TurnPlan,
};

/// Runs each listed test function once per backend, on a fresh database.
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = testkit::TestDb::sqlite().await;
                    super::$name(&db.stores()).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = testkit::TestDb::postgres().await;
                    super::$name(&db.stores()).await;
                    db.cleanup().await;
                }
            )+
        }
    };
}
pub(crate) use conformance;

pub fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

pub async fn tenant(stores: &Stores, name: &str, number: &str) -> TenantId {
    stores
        .data
        .create_tenant(NewTenant {
            name: TenantName::parse(name).unwrap(),
            phone_numbers: vec![phone(number)],
        })
        .await
        .unwrap()
        .id
}

pub fn sms(from_index: u8, sid: &str, body: &[u8]) -> InboundMessage {
    InboundMessage {
        channel: Channel::Sms,
        contact: Contact::Phone {
            index: [from_index; 32],
            ciphertext: vec![from_index, 1, 2],
        },
        provider_sid: Some(sid.to_owned()),
        tenant_number: Some(phone("+15550000001")),
        body: body.to_vec(),
        keyword: None,
        turn: TurnPlan {
            inline_holder: None,
            lease: Duration::from_secs(30),
            max_attempts: 5,
        },
    }
}

pub async fn recorded(stores: &Stores, t: TenantId, m: InboundMessage) -> RecordedInbound {
    match stores.data.record_inbound(t, m).await.unwrap() {
        InboundOutcome::Recorded(r) => r,
        InboundOutcome::Duplicate(_) => panic!("expected a new message"),
    }
}
