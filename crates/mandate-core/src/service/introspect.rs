//! Revocation (RFC 7009) and introspection (RFC 7662).

use serde_json::{Value, json};

use super::clients::BasicCredentials;
use super::{AuditDraft, AuthServer};
use crate::error::OAuthError;
use crate::model::Client;
use crate::params::Params;
use crate::secret::SecretHash;
use crate::tokens::{AccessClaims, verify};

/// What a presented token turned out to be.
enum Found {
    Refresh {
        grant_id: String,
        client_id: String,
        user_id: String,
        /// The resource the grant is for (its access tokens' audience).
        resource: String,
        scope: String,
        iat: i64,
        exp: i64,
        active: bool,
    },
    Access(AccessClaims, bool),
    Nothing,
}

impl AuthServer {
    async fn identify(&self, token: &str) -> Result<Found, OAuthError> {
        let now = self.now();
        if let Some(rt) = self.store.refresh_token(&SecretHash::of(token)).await? {
            let Some(grant) = self.store.grant(&rt.grant_id).await? else {
                return Ok(Found::Nothing);
            };
            let active =
                rt.rotated_at.is_none() && rt.revoked_at.is_none() && rt.expires_at > now && grant.revoked_at.is_none();
            return Ok(Found::Refresh {
                grant_id: grant.id,
                client_id: grant.client_id,
                user_id: grant.user_id,
                resource: grant.resource,
                scope: rt.scope.to_string(),
                iat: rt.issued_at,
                exp: rt.expires_at,
                active,
            });
        }
        let ring = self.keys.ring(now).await?;
        match verify(&ring, token, &self.settings.issuer, now) {
            Ok(claims) => {
                let grant_live = self.store.grant(&claims.grant_id).await?.is_some_and(|g| g.revoked_at.is_none());
                let active = grant_live && !self.store.access_token_revoked(&claims.jti).await?;
                Ok(Found::Access(claims, active))
            }
            Err(_) => Ok(Found::Nothing),
        }
    }

    /// Revokes a token the authenticated client holds. Unknown tokens and other clients' tokens
    /// are answered the same way (RFC 7009 §2.2): success, nothing changed.
    pub async fn revoke(&self, params: &Params, basic: Option<&BasicCredentials>) -> Result<(), OAuthError> {
        let client = self.authenticate_client(params, basic).await?;
        let token = params.required("token")?;
        params.single("token_type_hint")?;
        let now = self.now();
        match self.identify(token).await? {
            Found::Refresh { grant_id, client_id, user_id, .. } if client_id == client.id => {
                let was_live = self.store.revoke_grant(&grant_id, now).await?;
                self.note_revocation().await;
                if was_live {
                    self.audit(AuditDraft {
                        kind: "grant.revoked",
                        outcome: "success",
                        user: Some(&user_id),
                        client: Some(&client.id),
                        grant: Some(&grant_id),
                        detail: Some("refresh token revoked by the client (RFC 7009)".into()),
                    })
                    .await;
                }
            }
            Found::Access(claims, _) if claims.client_id == client.id => {
                self.store.revoke_access_token(&claims.jti, claims.exp).await?;
                self.note_revocation().await;
                self.audit(AuditDraft {
                    kind: "token.revoked",
                    outcome: "success",
                    user: Some(&claims.sub),
                    client: Some(&client.id),
                    grant: Some(&claims.grant_id),
                    detail: Some("access token revoked by the client (RFC 7009)".into()),
                })
                .await;
            }
            _ => {}
        }
        Ok(())
    }

    /// Introspects a token for an authenticated confidential client.
    pub async fn introspect(&self, params: &Params, basic: Option<&BasicCredentials>) -> Result<Value, OAuthError> {
        let client: Client = self.authenticate_client(params, basic).await?;
        if !client.auth_method.is_confidential() {
            return Err(OAuthError::invalid_client("introspection requires an authenticated confidential client")
                .with_basic_auth(basic.is_some()));
        }
        let token = params.required("token")?;
        params.single("token_type_hint")?;
        // Who may learn about a token (RFC 7662 §4, RV-09): the client it was issued to, or a
        // client an operator registered as serving the token's audience (`clients add
        // --resource`): a resource server learns nothing about tokens meant for another one, and
        // a self-registered client nothing about other clients' tokens.
        let found = self.identify(token).await?;
        let (owner, user, audience) = match &found {
            Found::Refresh { client_id, user_id, resource, .. } => {
                (client_id.as_str(), user_id.as_str(), resource.as_str())
            }
            Found::Access(c, _) => (c.client_id.as_str(), c.sub.as_str(), c.aud.as_str()),
            Found::Nothing => ("", "", ""),
        };
        let serves_audience = client.is_verified() && client.served_resources.iter().any(|r| r == audience);
        let entitled = !owner.is_empty() && (owner == client.id || serves_audience);
        let user_active = entitled && self.store.user_by_id(user).await?.is_some_and(|u| !u.disabled);
        if !entitled || !user_active {
            return Ok(json!({ "active": false }));
        }
        Ok(match found {
            Found::Refresh { client_id, user_id, scope, iat, exp, active: true, .. } => json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": client_id,
                "sub": user_id,
                "scope": scope,
                "iat": iat,
                "exp": exp,
                "iss": self.settings.issuer,
            }),
            Found::Access(c, true) => json!({
                "active": true,
                "token_type": "Bearer",
                "client_id": c.client_id,
                "sub": c.sub,
                "aud": c.aud,
                "scope": c.scope,
                "iat": c.iat,
                "exp": c.exp,
                "iss": c.iss,
                "jti": c.jti,
            }),
            _ => json!({ "active": false }),
        })
    }
}
