//! The two writes of every token request (a refresh rotation, a code redemption) on both engines:
//! each with its audit record, kept or lost together, whatever the outcome. On PostgreSQL each is
//! one statement (`one_statement.rs`); these cases hold it to the transaction's behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::Arc;

use mandate_core::StoreError;
use mandate_core::model::{AuditEvent, AuditFilter, Redemption, RetryWindow, RotateOutcome};
use mandate_core::secret::SecretHash;
use mandate_core::store::{AuditStore, GrantStore, PeopleStore};
use mandate_store::SqlStore;

use common::refresh_token as token;

fn event(id: &str, kind: &str) -> AuditEvent {
    AuditEvent {
        id: id.into(),
        at: 1,
        kind: kind.into(),
        outcome: "success".into(),
        user_id: Some("u1".into()),
        client_id: Some("c1".into()),
        grant_id: None,
        detail: None,
    }
}

/// A pending grant `id` of person u1 with its code `code-<id>`.
async fn pending(s: &SqlStore, id: &str) {
    pending_of(s, "u1", id).await;
}

/// A pending grant `id` of `person` with its code `code-<id>`.
async fn pending_of(s: &SqlStore, person: &str, id: &str) {
    common::pending_grant_with_code(s, person, id, &format!("code-{id}")).await;
}

async fn kinds(s: &SqlStore) -> Vec<String> {
    let mut trail = s.events(&AuditFilter { limit: 100, ..Default::default() }).await.unwrap();
    trail.sort_by(|a, b| a.id.cmp(&b.id));
    trail.into_iter().map(|e| format!("{}:{}", e.id, e.kind)).collect()
}

fn window(now: i64) -> RetryWindow {
    RetryWindow { successor_since: None, race_since: now }
}

async fn rotate(
    s: &SqlStore,
    presented: &str,
    next: &str,
    now: i64,
    record: Option<AuditEvent>,
) -> Result<RotateOutcome, StoreError> {
    s.rotate_refresh(
        &SecretHash(presented.into()),
        &token(next, "g1", Some(presented), now),
        None,
        now,
        window(now),
        Box::new(move |o| match o {
            RotateOutcome::Inactive => None,
            RotateOutcome::Rotated => record.clone(),
            other => Some(event(&format!("z-{other:?}"), "token.other")),
        }),
    )
    .await
}

/// A rotation writes its record; a record that cannot be written (its id taken) undoes the
/// rotation with it; the outcomes decided outside the normal case are recorded too.
async fn a_rotation_and_its_record_are_one_write(s: SqlStore) {
    pending(&s, "g1").await;
    assert!(s.activate_grant("g1", Some(&token("r0", "g1", None, 0)), 0).await.unwrap());
    assert_eq!(rotate(&s, "r0", "r1", 1, Some(event("e1", "token.refreshed"))).await.unwrap(), RotateOutcome::Rotated);
    assert_eq!(kinds(&s).await, ["e1:token.refreshed"]);

    let failed = rotate(&s, "r1", "r2", 2, Some(event("e1", "token.refreshed"))).await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    assert!(s.refresh_token(&SecretHash("r2".into())).await.unwrap().is_none(), "no successor stored");
    assert_eq!(s.refresh_token(&SecretHash("r1".into())).await.unwrap().unwrap().rotated_at, None, "r1 still current");

    // r1 is still the one to present: it rotates now.
    assert_eq!(rotate(&s, "r1", "r2", 3, Some(event("e2", "token.refreshed"))).await.unwrap(), RotateOutcome::Rotated);
    // r0 again, long after: reuse, recorded, the family revoked.
    assert_eq!(rotate(&s, "r0", "r9", 50, None).await.unwrap(), RotateOutcome::ReuseDetected);
    assert_eq!(kinds(&s).await, ["e1:token.refreshed", "e2:token.refreshed", "z-ReuseDetected:token.other"]);
    assert!(s.grant("g1").await.unwrap().unwrap().revoked_at.is_some());
    // A revoked grant's current token: inactive, nothing recorded, nothing stored.
    assert_eq!(rotate(&s, "r2", "r3", 51, Some(event("e3", "x"))).await.unwrap(), RotateOutcome::Inactive);
    assert!(s.refresh_token(&SecretHash("r3".into())).await.unwrap().is_none());
    assert_eq!(kinds(&s).await.len(), 3);
}

async fn redeem(
    s: &SqlStore,
    grant: &str,
    first: Option<&str>,
    now: i64,
    ids: (&str, &str),
) -> Result<Redemption, StoreError> {
    let (activated, revoked) = (event(ids.0, "token.issued"), event(ids.1, "token.refused"));
    s.redeem_code(
        &SecretHash(format!("code-{grant}")),
        grant,
        first.map(|h| token(h, grant, None, now)).as_ref(),
        now,
        Box::new(move |r| match r {
            Redemption::Activated => Some(activated.clone()),
            Redemption::GrantRevoked => Some(revoked.clone()),
            Redemption::CodeAlreadyUsed => None,
        }),
    )
    .await
}

/// Each outcome of a redemption with its record: activated (grant active, first token stored,
/// record written); spent on a revoked grant (nothing activated or stored, its record written);
/// spent already (nothing written). A record that cannot be written leaves the code unspent.
async fn a_redemption_and_its_record_are_one_write(s: SqlStore) {
    pending(&s, "g1").await;
    assert_eq!(redeem(&s, "g1", Some("first"), 5, ("e1", "e1")).await.unwrap(), Redemption::Activated);
    assert!(s.refresh_token(&SecretHash("first".into())).await.unwrap().is_some());
    // The same record id again, on another grant's code: refused, and nothing of it is kept.
    pending(&s, "g2").await;
    let failed = redeem(&s, "g2", Some("second"), 6, ("e1", "e1")).await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    assert_eq!(s.code(&SecretHash("code-g2".into())).await.unwrap().unwrap().consumed_at, None, "code unspent");
    assert_eq!(s.grant("g2").await.unwrap().unwrap().activated_at, None, "grant not active");
    assert!(s.refresh_token(&SecretHash("second".into())).await.unwrap().is_none());
    assert_eq!(redeem(&s, "g2", Some("second"), 7, ("e2", "x")).await.unwrap(), Redemption::Activated);
    assert!(s.refresh_token(&SecretHash("second".into())).await.unwrap().is_some());

    pending(&s, "g3").await;
    s.revoke_grant("g3", 8).await.unwrap();
    assert_eq!(redeem(&s, "g3", Some("third"), 9, ("x", "e3")).await.unwrap(), Redemption::GrantRevoked);
    assert!(s.refresh_token(&SecretHash("third".into())).await.unwrap().is_none());
    assert_eq!(s.grant("g3").await.unwrap().unwrap().activated_at, None);
    assert_eq!(redeem(&s, "g3", Some("third"), 10, ("y", "z")).await.unwrap(), Redemption::CodeAlreadyUsed);
    assert_eq!(redeem(&s, "g2", Some("again"), 11, ("y", "z")).await.unwrap(), Redemption::CodeAlreadyUsed);
    assert_eq!(kinds(&s).await, ["e1:token.issued", "e2:token.issued", "e3:token.refused"]);
}

/// A code refused by a failed check is spent (`consume_code`) while a correct exchange of the same
/// code redeems it: one of them wins, and never half of each (a grant made active with no token,
/// or a token for a code that was spent elsewhere).
async fn a_spent_code_never_leaves_a_grant_half_redeemed(s: SqlStore) {
    let s = Arc::new(s);
    for round in 0..40 {
        let grant = format!("g{round}");
        pending(&s, &grant).await;
        let (a, b) = (s.clone(), s.clone());
        let code = SecretHash(format!("code-{grant}"));
        let spend = tokio::spawn(async move { a.consume_code(&code, 5).await.unwrap() });
        let g = grant.clone();
        let first = format!("first-{round}");
        let f = first.clone();
        let redeemed = tokio::spawn(async move {
            b.redeem_code(&SecretHash(format!("code-{g}")), &g, Some(&token(&f, &g, None, 5)), 5, Box::new(|_| None))
                .await
                .unwrap()
        });
        let (spent, redeemed) = (spend.await.unwrap(), redeemed.await.unwrap());
        let active = s.grant(&grant).await.unwrap().unwrap().activated_at.is_some();
        let stored = s.refresh_token(&SecretHash(first)).await.unwrap().is_some();
        match redeemed {
            Redemption::Activated => assert!(!spent && active && stored, "round {round}"),
            Redemption::CodeAlreadyUsed => assert!(spent && !active && !stored, "round {round}"),
            Redemption::GrantRevoked => panic!("round {round}: the grant was live"),
        }
    }
}

/// A person removed while their agent refreshes and another of their codes is redeemed: each
/// write waits for the others (the removal takes codes, grants, then tokens, the order the token
/// writes take them) and none fails; afterwards nothing of the person's is left. Before, the
/// removal deleted tokens before it took the grants, so on PostgreSQL a rotation committed
/// meanwhile left its new token behind, its grant gone (this test fails on that order).
async fn removing_a_person_while_their_agent_refreshes_leaves_nothing_behind(s: SqlStore) {
    let s = Arc::new(s);
    for round in 0..30 {
        let (person, active, other) = (format!("p{round}"), format!("a{round}"), format!("b{round}"));
        pending_of(&s, &person, &active).await;
        pending_of(&s, &person, &other).await;
        let first = format!("r0-{round}");
        assert!(s.activate_grant(&active, Some(&token(&first, &active, None, 0)), 0).await.unwrap());
        let (a, b, c) = (s.clone(), s.clone(), s.clone());
        let (g, f) = (active.clone(), first.clone());
        let refresh = tokio::spawn(async move {
            a.rotate_refresh(
                &SecretHash(f.clone()),
                &token(&format!("{f}-next"), &g, Some(&f), 1),
                None,
                1,
                window(1),
                Box::new(|_| None),
            )
            .await
        });
        let g = other.clone();
        let redeem = tokio::spawn(async move {
            b.redeem_code(
                &SecretHash(format!("code-{g}")),
                &g,
                Some(&token(&format!("{g}-first"), &g, None, 1)),
                1,
                Box::new(|_| None),
            )
            .await
        });
        let p = person.clone();
        let remove = tokio::spawn(async move {
            c.remove_user(&p, &mandate_core::service::LoginThrottleKeys::for_username(&p), "o", Box::new(|_| None))
                .await
        });
        let (refresh, redeem, remove) = (refresh.await.unwrap(), redeem.await.unwrap(), remove.await.unwrap());
        assert!(refresh.is_ok(), "round {round}: {refresh:?}");
        assert!(redeem.is_ok(), "round {round}: {redeem:?}");
        assert!(remove.as_ref().is_ok_and(Option::is_some), "round {round}: {remove:?}");
        assert!(s.grant(&active).await.unwrap().is_none() && s.grant(&other).await.unwrap().is_none(), "round {round}");
        assert!(s.refresh_token(&SecretHash(format!("{first}-next"))).await.unwrap().is_none(), "round {round}");
    }
}

on_both_engines!(
    a_rotation_and_its_record_are_one_write,
    a_redemption_and_its_record_are_one_write,
    a_spent_code_never_leaves_a_grant_half_redeemed,
    removing_a_person_while_their_agent_refreshes_leaves_nothing_behind,
);
