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
        vault.approve_destruction(&list.reference, "@rm:test.example"),
        "cannot also approve it",
    );
    let approved = vault
        .approve_destruction(&list.reference, "@rm2:test.example")
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
        .approve_destruction(&list.reference, "@rm2:test.example")
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
        vault.approve_destruction(&list.reference, "@rm2:test.example"),
        "once that date has passed",
    );
}
