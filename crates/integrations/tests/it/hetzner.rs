//! The Hetzner Cloud client against `testkit::fake_hetzner`, over real HTTP on 127.0.0.1:
//! pagination, every resource kind, and each failure the client types.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integrations::hetzner::{HetznerClient, HetznerError, ResourceId, ResourceKind};
use secrecy::SecretString;
use testkit::fake_hetzner::{self as fake, FakeHetzner};

const TOKEN: &str = "hcloud-test-token-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP";
/// Ids above 2^52, as the API now hands out.
const BIG: u64 = 4_503_599_627_370_496;

fn client_with(base: &str, token: &str, timeout: Duration) -> HetznerClient {
    super::install_crypto_provider();
    HetznerClient::new(base, SecretString::from(token), timeout).expect("client")
}

fn client(fake: &FakeHetzner) -> HetznerClient {
    client_with(&fake.api_base(), TOKEN, Duration::from_secs(5))
}

#[tokio::test]
async fn an_empty_project_lists_nothing_and_asks_for_every_kind_once() {
    let fake = FakeHetzner::start(TOKEN).await;
    let inventory = client(&fake).inventory().await.expect("inventory");

    assert_eq!(inventory.total(), 0);
    let mut requested: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| {
            assert!(r.authorized, "{r:?}");
            assert_eq!(r.query.as_deref(), Some("page=1&per_page=50"), "{r:?}");
            r.collection.clone()
        })
        .collect();
    requested.sort();
    let mut expected: Vec<String> = ResourceKind::ALL
        .iter()
        .map(|k| k.path().to_owned())
        .collect();
    expected.sort();
    assert_eq!(requested, expected);
}

#[tokio::test]
async fn a_long_list_is_read_page_by_page_in_order() {
    let fake = FakeHetzner::start(TOKEN).await;
    let servers: Vec<_> = (0..120)
        .map(|i| {
            fake::server(
                BIG + i,
                &format!("node-{i:03}"),
                "cx22",
                "nbg1",
                "ubuntu-24.04",
            )
        })
        .collect();
    fake.set("servers", servers);

    let servers = client(&fake).servers().await.expect("servers");

    assert_eq!(servers.len(), 120);
    for (i, server) in (0u64..).zip(&servers) {
        assert_eq!(server.id, ResourceId(BIG + i));
        assert_eq!(server.name, format!("node-{i:03}"));
    }
    let pages: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.collection == "servers")
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert_eq!(
        pages,
        [
            "page=1&per_page=50",
            "page=2&per_page=50",
            "page=3&per_page=50"
        ]
    );
}

#[tokio::test]
async fn every_kind_is_read_with_the_fields_the_inventory_needs() {
    let fake = FakeHetzner::start(TOKEN).await;
    let mut server = fake::server(
        BIG + 1,
        "concierge-production",
        "ccx33",
        "fsn1",
        "ubuntu-24.04",
    );
    server["protection"]["delete"] = true.into();
    server["volumes"] = serde_json::json!([BIG + 2]);
    server["public_net"]["firewalls"] = serde_json::json!([{"id": BIG + 3, "status": "applied"}]);
    server["placement_group"] =
        fake::placement_group(BIG + 5, "concierge-pg", "spread", &[BIG + 1]);
    // A server created after the datacenter phase-out has only `location`.
    server.as_object_mut().expect("object").remove("datacenter");
    fake.set("servers", vec![server]);
    let mut volume = fake::volume(BIG + 2, "concierge-data", 50, "fsn1", Some(BIG + 1));
    volume["protection"]["delete"] = true.into();
    fake.set("volumes", vec![volume]);
    fake.set(
        "firewalls",
        vec![fake::firewall(
            BIG + 3,
            "concierge-firewall",
            vec![
                fake::tcp_rule_in("22", &["198.51.100.7/32"]),
                fake::tcp_rule_in("443", &["0.0.0.0/0", "::/0"]),
            ],
            &[BIG + 1],
        )],
    );
    fake.set(
        "ssh_keys",
        vec![fake::ssh_key(
            BIG + 4,
            "concierge-main-key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample ops@example",
        )],
    );
    fake.set(
        "placement_groups",
        vec![fake::placement_group(
            BIG + 5,
            "concierge-pg",
            "spread",
            &[BIG + 1],
        )],
    );
    fake.set(
        "networks",
        vec![fake::network(BIG + 6, "private", "10.0.0.0/16")],
    );
    fake.set(
        "load_balancers",
        vec![fake::load_balancer(
            BIG + 7,
            "concierge-lb",
            "lb11",
            "fsn1",
            &[BIG + 1],
        )],
    );
    fake.set(
        "floating_ips",
        vec![fake::floating_ip(BIG + 8, "spare", "198.51.100.9", "fsn1")],
    );
    fake.set(
        "primary_ips",
        vec![fake::primary_ip(
            BIG + 9,
            "primary_ip-1",
            "203.0.113.10",
            Some(BIG + 1),
        )],
    );
    fake.set(
        "certificates",
        vec![fake::certificate(BIG + 10, "site", &["example.org"])],
    );

    let inv = client(&fake).inventory().await.expect("inventory");

    assert_eq!(inv.total(), 10);
    for kind in ResourceKind::ALL {
        assert_eq!(inv.count(kind), 1, "{kind:?}");
    }
    let server = &inv.servers[0];
    assert_eq!(server.server_type.name, "ccx33");
    assert_eq!(server.location_name(), Some("fsn1"));
    assert_eq!(server.image_name(), Some("ubuntu-24.04"));
    assert!(server.backups_enabled());
    assert!(server.protection.delete);
    assert_eq!(
        server.placement_group.as_ref().map(|p| p.name.as_str()),
        Some("concierge-pg")
    );
    assert_eq!(server.public_net.firewalls[0].id, ResourceId(BIG + 3));
    assert_eq!(
        server.public_net.ipv4.as_ref().map(|ip| ip.ip.as_str()),
        Some("203.0.113.10")
    );
    assert_eq!(server.volumes, [ResourceId(BIG + 2)]);

    let volume = &inv.volumes[0];
    assert_eq!(
        (volume.size, volume.server, volume.protection.delete),
        (50, Some(ResourceId(BIG + 1)), true)
    );
    assert_eq!(volume.format.as_deref(), Some("ext4"));

    let firewall = &inv.firewalls[0];
    assert_eq!(firewall.rules.len(), 2);
    assert_eq!(firewall.rules[0].port.as_deref(), Some("22"));
    assert_eq!(firewall.rules[0].source_ips, ["198.51.100.7/32"]);
    assert_eq!(firewall.server_ids(), [ResourceId(BIG + 1)]);

    assert!(inv.ssh_keys[0].public_key.starts_with("ssh-ed25519 "));
    assert_eq!(inv.placement_groups[0].kind, "spread");
    assert_eq!(inv.networks[0].ip_range, "10.0.0.0/16");
    let lb = &inv.load_balancers[0];
    assert_eq!(
        lb.load_balancer_type.as_ref().map(|t| t.name.as_str()),
        Some("lb11")
    );
    assert_eq!(lb.server_ids(), [ResourceId(BIG + 1)]);
    assert_eq!(
        lb.services
            .iter()
            .map(|s| s.listen_port)
            .collect::<Vec<_>>(),
        [80, 443]
    );
    assert_eq!(inv.floating_ips[0].ip, "198.51.100.9");
    assert_eq!(inv.primary_ips[0].assignee_id, Some(ResourceId(BIG + 1)));
    assert_eq!(inv.primary_ips[0].location_name(), Some("fsn1"));
    assert_eq!(inv.certificates[0].domain_names, ["example.org"]);

    // The JSON form keeps the API's field names, ids as plain numbers.
    let json = serde_json::to_value(&inv).expect("json");
    assert_eq!(json["servers"][0]["id"], BIG + 1);
    assert_eq!(json["placement_groups"][0]["type"], "spread");
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_never_echoed() {
    let fake = FakeHetzner::start(TOKEN).await;
    let wrong = "not-the-right-token-but-a-secret-all-the-same";
    let err = client_with(&fake.api_base(), wrong, Duration::from_secs(5))
        .inventory()
        .await
        .expect_err("401");

    assert!(matches!(err, HetznerError::Unauthorized), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(fake.requests().iter().all(|r| !r.authorized));
}

#[tokio::test]
async fn a_rate_limit_is_reported_with_its_reset_time() {
    let fake = FakeHetzner::start(TOKEN).await;
    fake.rate_limit_next(100);
    let err = client(&fake).servers().await.expect_err("429");

    let HetznerError::RateLimited {
        reset_at: Some(reset),
    } = err
    else {
        panic!("expected a rate limit with a reset time, got {err:?}");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        (now + 50..=now + 70).contains(&reset),
        "reset {reset}, now {now}"
    );
    assert!(err.retry_after(SystemTime::now()).expect("retry after") <= Duration::from_secs(61));
}

#[tokio::test]
async fn a_slow_api_times_out_on_time() {
    let fake = FakeHetzner::start(TOKEN).await;
    fake.set_delay(Duration::from_secs(5));
    let client = client_with(&fake.api_base(), TOKEN, Duration::from_millis(300));

    let started = Instant::now();
    let err = client.servers().await.expect_err("timeout");

    assert!(
        matches!(&err, HetznerError::Timeout { path, .. } if path == "/servers"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn malformed_json_is_a_decode_error() {
    let fake = FakeHetzner::start(TOKEN).await;
    fake.set_malformed("volumes");
    let err = client(&fake).inventory().await.expect_err("decode");

    assert!(
        matches!(&err, HetznerError::Decode { path, .. } if path == "/volumes"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_resource_missing_a_required_field_names_the_item() {
    let fake = FakeHetzner::start(TOKEN).await;
    fake.set("ssh_keys", vec![serde_json::json!({"name": "no id"})]);
    let err = client(&fake).ssh_keys().await.expect_err("decode");

    let HetznerError::Decode { detail, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(detail.contains("item 0 of page 1"), "{detail}");
    assert!(detail.contains("id"), "{detail}");
}

#[tokio::test]
async fn pagination_that_does_not_move_forward_stops() {
    let fake = FakeHetzner::start(TOKEN).await;
    fake.set_looping("certificates");
    let err = client(&fake).certificates().await.expect_err("loop");

    let HetznerError::Decode { detail, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(detail.contains("does not move forward"), "{detail}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_next_page_that_is_not_a_number_is_an_error_not_a_short_list() {
    let fake = FakeHetzner::start(TOKEN).await;
    fake.set_next_page("servers", serde_json::json!("2"));
    let err = client(&fake).servers().await.expect_err("bad next_page");
    let HetznerError::Decode { detail, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(detail.contains("not a page number"), "{detail}");
}

#[tokio::test]
async fn api_errors_are_typed_by_status() {
    let fake = FakeHetzner::start(TOKEN).await;
    fake.fail("firewalls", 403);
    fake.fail("networks", 503);
    fake.fail("load_balancers", 422);
    let client = client(&fake);

    let err = client.firewalls().await.expect_err("403");
    assert!(
        matches!(&err, HetznerError::Forbidden { code: Some(c), .. } if c == "forbidden"),
        "{err:?}"
    );
    let err = client.networks().await.expect_err("503");
    assert!(
        matches!(&err, HetznerError::Server { status: 503, code: Some(c), .. } if c == "service_error"),
        "{err:?}"
    );
    let err = client.load_balancers().await.expect_err("422");
    assert!(
        matches!(&err, HetznerError::Rejected { status: 422, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_base_url_is_not_found() {
    let fake = FakeHetzner::start(TOKEN).await;
    let base = fake.api_base().replace("/v1", "/v2");
    let err = client_with(&base, TOKEN, Duration::from_secs(5))
        .servers()
        .await
        .expect_err("404");
    assert!(matches!(err, HetznerError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn a_closed_port_is_a_transport_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let err = client_with(
        &format!("http://127.0.0.1:{port}/v1"),
        TOKEN,
        Duration::from_secs(5),
    )
    .servers()
    .await
    .expect_err("refused");
    assert!(matches!(err, HetznerError::Transport { .. }), "{err:?}");
    assert!(!err.to_string().contains(TOKEN));
}
