//! The token endpoint (OAuth 2.1 §3.2, §4.1.3, §4.3): authorization-code redemption and
//! refresh-token rotation with reuse detection.

use serde::Serialize;

use super::clients::BasicCredentials;
use super::{AuditDraft, AuthServer};
use crate::clock::UnixTime;
use crate::error::{ErrorCode, OAuthError};
use crate::model::{
    AuditEvent, AuthorizationCode, Client, Grant, Redemption, RefreshContext, RefreshToken, RetryWindow, RotateOutcome,
};
use crate::params::Params;
use crate::pkce;
use crate::scope::{ScopeSet, canonical_resource};
use crate::secret::{Secret, SecretHash, SecretKind, generate, random_id};
use crate::successor;
use crate::tokens::{AccessClaims, mint};

/// Seconds after a rotation in which another presentation of the rotated token, its successor
/// unused, is a concurrent request that lost the race rather than reuse, when the grace window does
/// not cover it: rotated at or after `now - RACE_TOLERANCE`, the same or the previous clock second
/// (a request racing the winner may be judged after the clock ticks). It matters only with
/// `refresh_grace` 0 or 1: such a presentation gets `invalid_grant` and revokes nothing.
pub const RACE_TOLERANCE: i64 = 1;

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

impl AuthServer {
    /// Handles a token request whose form body is `params`.
    pub async fn token(&self, params: &Params, basic: Option<&BasicCredentials>) -> Result<TokenResponse, OAuthError> {
        let grant_type = params.single("grant_type")?;
        let client = self.authenticate_client(params, basic).await?;
        match grant_type {
            Some("authorization_code") => self.redeem_code(params, &client).await,
            Some("refresh_token") => self.refresh(params, &client).await,
            Some(_) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "supported grant types are authorization_code and refresh_token",
            )),
            None => Err(OAuthError::invalid_request("grant_type is missing")),
        }
    }

    fn check_resource(params: &Params, bound: &str) -> Result<(), OAuthError> {
        if params.is_repeated("resource") {
            return Err(OAuthError::invalid_target("only one resource may be requested"));
        }
        match params.single("resource")? {
            Some(r) if canonical_resource(r)? != bound => {
                Err(OAuthError::invalid_target("the resource differs from the one authorized"))
            }
            _ => Ok(()),
        }
    }

    /// A code presented again. Only a replay that proves possession (same client, verifier,
    /// redirect) revokes what the code issued; a garbled one must not be a denial of service (AC-03).
    async fn code_replayed(
        &self,
        record: &AuthorizationCode,
        client: &Client,
        proof_ok: bool,
        now: UnixTime,
    ) -> OAuthError {
        let revoked = match proof_ok {
            true => match self.store.revoke_grant(&record.grant_id, now).await {
                Ok(r) => r,
                Err(e) => return e.into(),
            },
            false => false,
        };
        self.counters.code_replay(revoked);
        if revoked {
            self.note_revocation().await;
            self.audit(AuditDraft {
                kind: "code.replay_detected",
                outcome: "grant_revoked",
                user: Some(&record.user_id),
                client: Some(&client.id),
                grant: Some(&record.grant_id),
                detail: Some("an authorization code was redeemed twice; every token it issued is revoked".into()),
            })
            .await;
        }
        OAuthError::invalid_grant("the authorization code was already used")
    }

    async fn redeem_code(&self, params: &Params, client: &Client) -> Result<TokenResponse, OAuthError> {
        let code = params.required("code")?;
        let hash = SecretHash::of(code);
        let Some(record) = self.store.code(&hash).await? else {
            return Err(OAuthError::invalid_grant("the authorization code is invalid"));
        };
        // A code is bound to its client; another client's attempt changes nothing (AC-05).
        if record.client_id != client.id {
            return Err(OAuthError::invalid_grant("the authorization code is invalid"));
        }
        let now = self.now();
        let proof_ok = self.code_proof_ok(params, &record)?;
        if record.consumed_at.is_some() {
            return Err(self.code_replayed(&record, client, proof_ok, now).await);
        }
        // A first use that fails a check still spends the code: it was shown to someone.
        let refused = if record.expires_at <= now {
            Some(OAuthError::invalid_grant("the authorization code has expired"))
        } else if !proof_ok {
            Some(OAuthError::invalid_grant("code_verifier or redirect_uri does not match the authorization request"))
        } else if let Err(e) = Self::check_resource(params, &record.resource) {
            Some(e)
        } else if params
            .single("scope")?
            .is_some_and(|s| ScopeSet::parse(s).map(|s| !s.is_subset_of(&record.scope)).unwrap_or(true))
        {
            Some(OAuthError::invalid_scope("the requested scope exceeds the authorization"))
        } else {
            None
        };
        if let Some(e) = refused {
            if !self.store.consume_code(&hash, now).await? {
                return Err(self.code_replayed(&record, client, proof_ok, now).await);
            }
            return Err(e);
        }
        // The family's absolute lifetime runs from now, its grant's activation (RT-12).
        let family_end = now + self.settings.refresh_family_ttl;
        let refresh =
            client.allows_refresh.then(|| self.new_refresh(&record.grant_id, &record.scope, None, now, family_end));
        // The record of the redemption is written in its own transaction.
        let issued = self.audit_record(AuditDraft {
            kind: "token.issued",
            outcome: "success",
            user: Some(&record.user_id),
            client: Some(&client.id),
            grant: Some(&record.grant_id),
            detail: Some(format!("authorization_code; scope {}; resource {}", record.scope, record.resource)),
        });
        let audit = Box::new(move |r: &Redemption| matches!(r, Redemption::Activated).then(|| issued.clone()));
        match self.store.redeem_code(&hash, &record.grant_id, refresh.as_ref().map(|(_, r)| r), now, audit).await? {
            Redemption::Activated => {}
            Redemption::CodeAlreadyUsed => return Err(self.code_replayed(&record, client, proof_ok, now).await),
            Redemption::GrantRevoked => return Err(OAuthError::invalid_grant("the authorization was revoked")),
        }
        let grant = Grant {
            id: record.grant_id.clone(),
            user_id: record.user_id.clone(),
            client_id: client.id.clone(),
            scope: record.scope.clone(),
            resource: record.resource.clone(),
            created_at: now,
            activated_at: Some(now),
            last_used_at: None,
            revoked_at: None,
        };
        self.respond(&grant, &record.scope, refresh.map(|(s, _)| s)).await
    }

    /// Does the token request prove it continues the authorization request?
    fn code_proof_ok(&self, params: &Params, record: &AuthorizationCode) -> Result<bool, OAuthError> {
        let verifier_ok = params.single("code_verifier")?.is_some_and(|v| pkce::verify(v, &record.code_challenge));
        let redirect_ok = match params.single("redirect_uri")? {
            Some(r) => r == record.redirect_uri,
            None => !record.redirect_uri_explicit,
        };
        Ok(verifier_ok && redirect_ok)
    }

    fn new_refresh(
        &self,
        grant_id: &str,
        scope: &ScopeSet,
        parent: Option<SecretHash>,
        now: i64,
        family_end: UnixTime,
    ) -> (Secret, RefreshToken) {
        let secret = generate(self.rng.as_ref(), SecretKind::RefreshToken);
        let record = RefreshToken {
            hash: secret.hash(),
            grant_id: grant_id.to_owned(),
            parent_hash: parent,
            scope: scope.clone(),
            issued_at: now,
            // Idle expiry, never past the family's absolute end.
            expires_at: (now + self.settings.refresh_token_idle_ttl).min(family_end),
            rotated_at: None,
            revoked_at: None,
        };
        (secret, record)
    }

    async fn respond(
        &self,
        grant: &Grant,
        scope: &ScopeSet,
        refresh: Option<Secret>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: grant.user_id.clone(),
            aud: grant.resource.clone(),
            client_id: grant.client_id.clone(),
            scope: scope.to_string(),
            iat: now,
            exp: now + self.settings.access_token_ttl,
            jti: random_id(self.rng.as_ref()),
            grant_id: grant.id.clone(),
        };
        let ring = self.keys.ring(now).await?;
        let access_token = mint(&ring, &claims, now).map_err(|e| {
            tracing::error!(error = %e, "could not sign an access token");
            OAuthError::server_error()
        })?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings.access_token_ttl,
            refresh_token: refresh.map(|s| s.expose().to_owned()),
            scope: scope.to_string(),
        })
    }

    async fn refresh(&self, params: &Params, client: &Client) -> Result<TokenResponse, OAuthError> {
        // A client that did not register the grant is told so before any token is looked up
        // (RFC 6749 §5.2 unauthorized_client; TK-09).
        if !client.allows_refresh {
            return Err(OAuthError::unauthorized_client("this client did not register the refresh_token grant"));
        }
        let presented = params.required("refresh_token")?;
        let hash = SecretHash::of(presented);
        let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
        let Some(RefreshContext { token, grant, person_enabled }) = self.store.refresh_context(&hash).await? else {
            return Err(invalid());
        };
        // Bound to its client: another client's attempt changes nothing (RT-08).
        if grant.client_id != client.id {
            return Err(invalid());
        }
        if grant.revoked_at.is_some() {
            return Err(invalid());
        }
        if !person_enabled {
            return Err(invalid());
        }
        let now = self.now();
        // A family lives at most `refresh_family_ttl` from its grant's start, however often it is
        // refreshed (RT-12 a); each token's own expiry is the idle timeout (RT-12 b).
        let family_end = grant.activated_at.unwrap_or(grant.created_at) + self.settings.refresh_family_ttl;
        if now >= family_end {
            return Err(invalid());
        }
        Self::check_resource(params, &grant.resource)?;
        let scope = match params.single("scope")? {
            Some(s) => {
                let s = ScopeSet::parse(s)?;
                if !s.is_subset_of(&token.scope) {
                    return Err(OAuthError::invalid_scope("the requested scope exceeds the authorization"));
                }
                s
            }
            None => token.scope.clone(),
        };
        let (secret, next) = self.new_refresh(&grant.id, &token.scope, Some(hash.clone()), now, family_end);
        // Only a grace window hands a successor out twice; without one nothing is sealed.
        let sealed = match self.settings.refresh_grace > 0 {
            true => Some(successor::seal(self.rng.as_ref(), presented, &secret).map_err(|e| {
                tracing::error!(error = %e, "could not seal a refresh token's successor");
                OAuthError::server_error()
            })?),
            false => None,
        };
        // The record of the outcome is written in the rotation's own transaction.
        let base = self.audit_record(AuditDraft {
            kind: "token.refreshed",
            outcome: "success",
            user: Some(&grant.user_id),
            client: Some(&client.id),
            grant: Some(&grant.id),
            detail: None,
        });
        let record = Box::new(move |outcome: &RotateOutcome| {
            let (kind, result, detail) = match outcome {
                RotateOutcome::Rotated => ("token.refreshed", "success", "rotated"),
                RotateOutcome::Retry { .. } => {
                    ("token.refreshed", "success", "retry inside the grace window: the same successor was returned")
                }
                RotateOutcome::RaceLost => (
                    "token.refreshed",
                    "refused",
                    "presented again while its rotation an instant ago was answered (no grace window); the family is intact",
                ),
                RotateOutcome::ReuseDetected => (
                    "token.reuse_detected",
                    "grant_revoked",
                    "a rotated refresh token was presented again; the whole family is revoked",
                ),
                RotateOutcome::Inactive => return None,
            };
            Some(AuditEvent { kind: kind.into(), outcome: result.into(), detail: Some(detail.into()), ..base.clone() })
        });
        let outcome =
            self.store.rotate_refresh(&hash, &next, sealed.as_deref(), now, self.retry_window(now), record).await?;
        match outcome {
            RotateOutcome::Rotated => {
                self.counters.refresh_rotated.inc();
                self.respond(&grant, &scope, Some(secret)).await
            }
            RotateOutcome::Retry { successor: expected, sealed } => {
                self.counters.refresh_grace_retries.inc();
                // Only the holder of the presented token can open this; the database cannot.
                let same = match successor::open(presented, &sealed) {
                    Ok(s) if s.hash().ct_eq(&expected) => s,
                    Ok(_) | Err(_) => {
                        tracing::error!(grant = %grant.id, "a stored sealed successor does not open to its successor");
                        return Err(OAuthError::server_error());
                    }
                };
                self.respond(&grant, &scope, Some(same)).await
            }
            RotateOutcome::RaceLost => {
                self.counters.refresh_races_lost.inc();
                Err(invalid())
            }
            RotateOutcome::ReuseDetected => {
                self.counters.refresh_reuse_detected.inc();
                self.note_revocation().await;
                Err(invalid())
            }
            RotateOutcome::Inactive => Err(invalid()),
        }
    }

    /// How a presentation of an already-rotated token is judged at `now` (see [`RetryWindow`]).
    fn retry_window(&self, now: UnixTime) -> RetryWindow {
        let grace = self.settings.refresh_grace;
        RetryWindow { successor_since: (grace > 0).then(|| now - grace + 1), race_since: now - RACE_TOLERANCE }
    }
}
