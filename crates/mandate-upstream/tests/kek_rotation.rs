//! Issue 13: rotating the key-encryption key re-seals the connected accounts' tokens; an instance
//! given only the new key reads them, one given only the old key does not start, and one given
//! the new key as a fallback (not yet restarted with it as its key) reads them too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mandate_core::clock::OsRandom;
use mandate_core::keys::{KeyEncryptionKey, KeyError};
use mandate_core::service::SetupError;

#[tokio::test]
async fn connected_accounts_are_read_under_the_new_key_after_rotate_kek() {
    let p = pair().await;
    connect(&p).await;
    let alice = user_id(&p.ours, "alice").await;
    let before = handle(&p.upstreams).token(&alice).await.unwrap();

    let new = KeyEncryptionKey::generate(&OsRandom);
    let count = p.ours.auth.rotate_kek(Some(&new)).await.unwrap();
    assert_eq!((count.signing_keys, count.upstream_accounts), (1, 1));

    // Only the new key: the signing keys load and the vault opens the same tokens.
    let renewed = instance_with_kek(&p, new.clone()).await.unwrap();
    assert_eq!(handle(&renewed).token(&alice).await.unwrap(), before);
    assert!(works_upstream(&p, before.expose()).await);
    // The old key as the key, the new one as its fallback: reads too.
    let window = instance_with_kek(&p, p.ours.kek.clone().with_fallback(&new)).await.unwrap();
    assert_eq!(handle(&window).token(&alice).await.unwrap(), before);
    // Only the old key: refused at start, saying why.
    let refused = instance_with_kek(&p, p.ours.kek.without_fallback()).await.err();
    assert!(matches!(refused, Some(SetupError::Key(KeyError::Decrypt))), "{refused:?}");
}
