//! Test-only: the records the one-call and one-statement tests start from (person `u`, pending
//! grant `g` of client `c` for scope `a` at `https://r`, its code `code`), and their tokens.
#![allow(clippy::unwrap_used)]

use mandate_core::model::{AuditEvent, AuthorizationCode, Grant, RefreshToken, User};
use mandate_core::scope::ScopeSet;
use mandate_core::secret::SecretHash;
use mandate_core::store::{GrantStore, UserStore};

use crate::SqlStore;

/// Person `u`, and their pending grant `g` with its unspent code `code`, stored in `s`.
pub(crate) async fn pending_grant(s: &SqlStore) -> AuthorizationCode {
    let person =
        User { id: "u".into(), username: "u".into(), password_hash: "x".into(), created_at: 0, disabled: false };
    s.insert_user(&person).await.unwrap();
    let g = Grant {
        id: "g".into(),
        user_id: "u".into(),
        client_id: "c".into(),
        scope: ScopeSet::parse("a").unwrap(),
        resource: "https://r".into(),
        created_at: 0,
        activated_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    let code = AuthorizationCode {
        hash: SecretHash("code".into()),
        grant_id: "g".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        redirect_uri: "https://a/cb".into(),
        redirect_uri_explicit: true,
        code_challenge: "x".into(),
        scope: g.scope.clone(),
        resource: g.resource.clone(),
        expires_at: 60,
        consumed_at: None,
    };
    s.insert_grant_with_code(&g, &code, None).await.unwrap();
    code
}

/// A refresh token of grant `g`, issued at 1, expiring at 1000.
pub(crate) fn token(hash: &str, parent: Option<&str>) -> RefreshToken {
    RefreshToken {
        hash: SecretHash(hash.into()),
        grant_id: "g".into(),
        parent_hash: parent.map(|p| SecretHash(p.into())),
        scope: ScopeSet::parse("a").unwrap(),
        issued_at: 1,
        expires_at: 1000,
        rotated_at: None,
        revoked_at: None,
    }
}

/// An audit event `id` of `kind`, at 1, about no one in particular.
pub(crate) fn event(id: &str, kind: &str) -> AuditEvent {
    AuditEvent {
        id: id.into(),
        at: 1,
        kind: kind.into(),
        outcome: "success".into(),
        user_id: None,
        client_id: None,
        grant_id: None,
        detail: None,
    }
}
