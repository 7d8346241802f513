//! Issue 13 at the store: re-sealing is one transaction (a failure part-way leaves every sealed
//! value as it was), and the people writes answer `None` for an unknown person without writing
//! anything. Runs on SQLite, and on PostgreSQL when `MANDATE_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use mandate_core::model::{AuditEvent, AuditFilter, Reseal, SealedRef, StoredSigningKey, UpstreamAccount, User};
use mandate_core::service::LoginThrottleKeys;
use mandate_core::store::{AuditStore, KeyStore, PeopleStore, SealedStore, UpstreamStore, UserStore};
use mandate_store::SqlStore;

fn event(kind: &str) -> AuditEvent {
    AuditEvent {
        id: format!("ev-{kind}"),
        at: 1,
        kind: kind.into(),
        outcome: "success".into(),
        user_id: None,
        client_id: None,
        grant_id: None,
        detail: None,
    }
}

async fn seed(s: &SqlStore) {
    s.insert_user(&User {
        id: "u1".into(),
        username: "alice".into(),
        password_hash: "x".into(),
        created_at: 0,
        disabled: false,
    })
    .await
    .unwrap();
    s.insert_key(&StoredSigningKey {
        kid: "k1".into(),
        alg: "ES256".into(),
        encrypted_private_key: b"old:k1".to_vec(),
        public_jwk: "{}".into(),
        created_at: 0,
        activates_at: 0,
    })
    .await
    .unwrap();
    for provider in ["a", "b"] {
        s.save_upstream_account(&UpstreamAccount {
            user_id: "u1".into(),
            provider: provider.into(),
            subject: None,
            sealed_tokens: format!("old:{provider}").into_bytes(),
            scope: None,
            access_expires_at: None,
            version: 1,
            connected: true,
            connected_at: 0,
            refreshed_at: 0,
        })
        .await
        .unwrap();
    }
}

/// "Re-seals" `old:X` as `new:X`; refuses provider `b` when `fail_on_b`.
fn reseal(fail_on_b: bool) -> Reseal {
    Arc::new(move |what: SealedRef<'_>, sealed: &[u8]| {
        if fail_on_b && matches!(what, SealedRef::UpstreamAccount { provider: "b", .. }) {
            return Err("b opens with no key".into());
        }
        let text = String::from_utf8(sealed.to_vec()).unwrap();
        Ok(text.replacen("old:", "new:", 1).into_bytes())
    })
}

async fn sealed_values(s: &SqlStore) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = s.list_keys().await.unwrap().into_iter().map(|k| k.encrypted_private_key).collect();
    v.extend(s.upstream_accounts("u1").await.unwrap().into_iter().map(|a| a.sealed_tokens));
    v.sort();
    v
}

async fn reseal_is_one_transaction(s: &SqlStore) {
    seed(s).await;
    let before = sealed_values(s).await;
    // The signing key and account `a` are re-sealed before `b` fails: all of it is undone, and
    // no audit event is written.
    let err = s.reseal_all(reseal(true), Box::new(|_| Some(event("key.kek_rotated")))).await.unwrap_err();
    assert!(err.to_string().contains("b opens with no key"), "{err}");
    assert_eq!(sealed_values(s).await, before, "nothing changed");
    let filter = AuditFilter { limit: 10, ..AuditFilter::default() };
    assert!(s.events(&filter).await.unwrap().is_empty());
    // Without the failure, every value is replaced, with the event in the same transaction.
    let count = s.reseal_all(reseal(false), Box::new(|_| Some(event("key.kek_rotated")))).await.unwrap();
    assert_eq!((count.signing_keys, count.upstream_accounts, count.provider_flows), (1, 2, 0));
    assert_eq!(sealed_values(s).await, [b"new:a".to_vec(), b"new:b".to_vec(), b"new:k1".to_vec()]);
    assert_eq!(s.events(&filter).await.unwrap().len(), 1);
}

async fn unknown_people_change_nothing(s: &SqlStore) {
    let audit = || Box::new(|_: &_| Some(event("x"))) as mandate_core::model::AuditOf<_>;
    assert_eq!(s.disable_user("nobody", "o", 1, audit()).await.unwrap(), None);
    assert!(!s.enable_user("nobody", Box::new(|_| Some(event("y")))).await.unwrap());
    assert_eq!(s.remove_user("nobody", &LoginThrottleKeys::for_username("nobody"), "o", audit()).await.unwrap(), None);
    assert_eq!(s.change_password("nobody", "h", true, "o", 1, audit()).await.unwrap(), None);
    let filter = AuditFilter { limit: 10, ..AuditFilter::default() };
    assert!(s.events(&filter).await.unwrap().is_empty(), "no event for a person who is not there");
}

#[tokio::test]
async fn kek_reseal_is_one_transaction_sqlite() {
    let (_dir, s) = common::sqlite().await;
    reseal_is_one_transaction(&s).await;
}

#[tokio::test]
async fn kek_reseal_is_one_transaction_postgres() {
    let Some(pg) = common::postgres().await else { return };
    reseal_is_one_transaction(&pg.store).await;
    pg.drop_database().await;
}

#[tokio::test]
async fn unknown_people_change_nothing_sqlite() {
    let (_dir, s) = common::sqlite().await;
    unknown_people_change_nothing(&s).await;
}

#[tokio::test]
async fn unknown_people_change_nothing_postgres() {
    let Some(pg) = common::postgres().await else { return };
    unknown_people_change_nothing(&pg.store).await;
    pg.drop_database().await;
}
