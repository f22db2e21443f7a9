//! Retention: the policy's valuation per role and classification, and
//! destruction only through an approved list that holds can stop.

mod common;

use archipel_vault::{
    Error, Vault, now_ms,
    procedure::{HoldScope, Role},
    retention::{RetentionPolicy, Rule, Valuation},
};
use common::{event, event_with, open, refused, verifies};
use serde_json::json;

/// Capstone officials' records are permanent; everything else goes after a year.
fn policy() -> RetentionPolicy {
    RetentionPolicy {
        transfer_years: 20,
        rules: vec![
            Rule {
                role: Some(Role::Capstone),
                classification: None,
                valuation: Valuation::Permanent,
            },
            Rule {
                role: None,
                classification: None,
                valuation: Valuation::DestroyAfter { years: 1 },
            },
        ],
    }
}

/// Two records from November 2023: one by an official, one by a minister.
fn archive() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, vault) = open(dir.path(), 1000);
    let by_minister = event_with(1, |e| e["sender"] = json!("@minister:test.example"));
    vault.capture(vec![event(0), by_minister]).expect("capture");
    for manager in ["@rm:test.example", "@rm2:test.example"] {
        vault
            .set_records_manager(manager, true, "operator")
            .expect("records manager");
    }
    vault
        .set_role("@minister:test.example", Role::Capstone, "@rm:test.example")
        .expect("role");
    (dir, vault)
}

#[test]
fn expired_records_go_only_through_an_approved_list() {
    let (dir, vault) = archive();
    let status = vault.retention_status(&policy(), now_ms()).expect("status");
    assert_eq!((status.permanent, status.expired), (1, 1));

    let list = vault
        .propose_destruction(&policy(), now_ms(), "@rm:test.example")
        .expect("proposed");
    assert_eq!(list.records, vec![0]);
    assert!(vault.open_event(0).is_ok(), "a proposal destroys nothing");
    refused(
        vault.approve_destruction(&list.reference, "@rm:test.example", &policy()),
        "cannot also approve it",
    );
    let approved = vault
        .approve_destruction(&list.reference, "@rm2:test.example", &policy())
        .expect("approved");
    assert!(approved.held_back.is_empty());
    assert!(matches!(vault.open_event(0), Err(Error::Erased { .. })));
    assert_eq!(
        vault.open_event(1).expect("permanent")["sender"],
        "@minister:test.example"
    );
    verifies(&dir, &vault);
    refused(
        vault.propose_destruction(&policy(), now_ms(), "@rm:test.example"),
        "nothing to destroy",
    );
}

#[test]
fn a_hold_keeps_records_off_the_list_and_out_of_an_approval() {
    let (_dir, vault) = archive();
    let list = vault
        .propose_destruction(&policy(), now_ms(), "@rm:test.example")
        .expect("proposed");
    let hold = vault
        .place_hold(
            HoldScope::User("@alice:test.example".into()),
            "inquiry",
            "@rm2:test.example",
        )
        .expect("hold");
    let approved = vault
        .approve_destruction(&list.reference, "@rm2:test.example", &policy())
        .expect("approved");
    assert_eq!(approved.held_back, vec![0]);
    assert!(vault.open_event(0).is_ok(), "the hold kept it");

    let status = vault.retention_status(&policy(), now_ms()).expect("status");
    assert_eq!((status.expired, status.held), (0, 1));
    refused(
        vault.propose_destruction(&policy(), now_ms(), "@rm:test.example"),
        "nothing to destroy",
    );
    vault
        .release_hold(&hold.reference, "@rm2:test.example")
        .expect("release");
    assert_eq!(
        vault
            .propose_destruction(&policy(), now_ms(), "@rm:test.example")
            .expect("proposed again")
            .records,
        vec![0]
    );
}

#[test]
fn a_list_for_a_future_date_waits() {
    let (_dir, vault) = archive();
    let later = now_ms() + 400 * 24 * 3600 * 1000;
    let list = vault
        .propose_destruction(&policy(), later, "@rm:test.example")
        .expect("a plan for later");
    refused(
        vault.approve_destruction(&list.reference, "@rm2:test.example", &policy()),
        "once that date has passed",
    );
}

/// A peer chooses its events' `origin_server_ts`: retention counts from
/// the capture, believing a peer's time only a day before it, and never
/// after it. This node's own senders keep their time.
#[test]
fn a_peer_cannot_age_or_rejuvenate_its_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, vault) = open(dir.path(), 1000);
    let from_peer = |n, ts: u64| {
        event_with(n, |e| {
            e["sender"] = json!("@eve:peer.example");
            e["origin_server_ts"] = json!(ts);
        })
    };
    vault
        .capture(vec![from_peer(0, 0), from_peer(1, u64::MAX / 2), event(2)])
        .expect("capture");
    let now = now_ms();
    let status = vault.retention_status(&policy(), now).expect("status");
    // Only this node's own 2023 record has expired; the peer's "1970"
    // record is as young as its capture.
    assert_eq!((status.expired, status.to_destroy_later), (1, 2));
    // A year and a bit on, the peer's "far future" record has expired too.
    let later = now + 370 * 24 * 3600 * 1000;
    let status = vault.retention_status(&policy(), later).expect("status");
    assert_eq!((status.expired, status.to_destroy_later), (3, 0));
}

/// A record whose sender became a capstone official after the list was
/// proposed is kept when the list is approved.
#[test]
fn an_approval_judges_every_record_again() {
    let (dir, vault) = archive();
    let list = vault
        .propose_destruction(&policy(), now_ms(), "@rm:test.example")
        .expect("proposed");
    assert_eq!(list.records, vec![0]);
    vault
        .set_role("@alice:test.example", Role::Capstone, "@rm:test.example")
        .expect("alice becomes a capstone official");
    let approved = vault
        .approve_destruction(&list.reference, "@rm2:test.example", &policy())
        .expect("approved");
    assert_eq!(approved.kept, vec![0]);
    assert!(vault.open_event(0).is_ok(), "kept");
    verifies(&dir, &vault);
}
