//! Signing in: the challenge that starts it, discovery with its checks, and the authorization
//! itself (registration, the person in the browser or headless, the code redeemed).

use super::*;

impl Connection {
    /// Sends an unauthenticated `initialize` and returns the 401's `WWW-Authenticate`, if any.
    pub(super) async fn probe_challenge(&self) -> Result<Option<String>, ClientError> {
        let body = serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": crate::session::PROTOCOL_VERSION.as_str(), "capabilities":{},
            "clientInfo":{"name":"mandate","version":env!("CARGO_PKG_VERSION")}}});
        let mut exchange = HttpExchange {
            purpose: "probe".into(),
            method: "POST".into(),
            url: self.server.to_string(),
            request_headers: vec![
                ("accept".into(), "application/json, text/event-stream".into()),
                ("content-type".into(), "application/json".into()),
            ],
            request_body: Some(body.to_string()),
            ..Default::default()
        };
        let resp = self
            .http
            .post(self.server.clone())
            .timeout(self.opts.request_timeout)
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let e = network_error(self.server.as_str(), &e);
                exchange.error = Some(e.to_string());
                self.record(exchange.clone());
                e
            })?;
        exchange.status = Some(resp.status().as_u16());
        exchange.response_headers = header_pairs(resp.headers());
        let challenge = (resp.status() == reqwest::StatusCode::UNAUTHORIZED)
            .then(|| resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned))
            .flatten();
        if self.opts.recorder.is_some() {
            exchange.response_body = resp.bytes().await.ok().map(|b| body_text(&b));
            self.record(exchange);
        }
        Ok(challenge)
    }

    /// Discovery, registration, the person's login and the code exchange. `explicit`: the person
    /// asked for this login (`mandate login`), which may replace credentials pinned to endpoints
    /// the authorization server no longer names; other logins refuse to (CL-07).
    pub(super) async fn authorize(
        &self,
        held: &mut Held,
        challenge: Option<&str>,
        scopes: Option<Vec<String>>,
        explicit: bool,
    ) -> Result<String, ClientError> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if n > MAX_AUTHORIZATION_ATTEMPTS {
            return Err(ClientError::TooManyAttempts(MAX_AUTHORIZATION_ATTEMPTS));
        }
        // From here the person may be needed: the requests' clocks stop (see `deadline`).
        let _person = self.waits.begin();
        held.restored = true;
        let mut manager = self.new_manager().await?;
        let metadata = self.discover(&manager, challenge).await?;
        let issuer = metadata.issuer.clone();
        let iss_advertised = metadata
            .additional_fields
            .get("authorization_response_iss_parameter_supported")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let cimd_supported = metadata
            .additional_fields
            .get("client_id_metadata_document_supported")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let has_registration = metadata.registration_endpoint.is_some();
        let as_scopes = metadata.scopes_supported.clone().unwrap_or_default();
        let endpoints = pinned_endpoints(&metadata);
        // Credentials stored for this issuer are reused only through the endpoints they were
        // issued through (CL-07). Otherwise only the person's own `mandate login` replaces them.
        let stored = self.vault.load(&self.resource)?.filter(|(c, _)| c.issuer.is_some() && c.issuer == issuer);
        let stored = match stored {
            Some(s) if self.vault.endpoints(&self.resource)?.as_ref() == Some(&endpoints) => Some(s),
            Some(_) if !explicit => {
                check_pin(&self.vault, &self.resource, &metadata)?;
                None
            }
            _ => None,
        };
        // What this authorization will replace, when it succeeds (see `revoke_replaced`).
        let replaced = match self.opts.revoke_replaced {
            true => self.vault.load(&self.resource)?.filter(|(c, _)| c.issuer.is_some() && c.issuer == issuer),
            false => None,
        };
        manager.set_metadata(metadata);

        let listener = match &self.opts.external_sign_in {
            Some(_) => None,
            None => Some(CallbackListener::bind().await?),
        };
        let redirect_uri = match (&listener, &self.opts.external_sign_in) {
            (Some(l), _) => l.redirect_uri().to_owned(),
            (None, Some(external)) => external.redirect_uri(),
            (None, None) => return Err(ClientError::Authorization("no way to reach the person".into())),
        };
        let scopes = match scopes {
            Some(s) => s,
            None => manager.select_initial_scopes(&[]).await,
        };
        let mut request = AuthorizationRequest::new(&redirect_uri).with_client_name(&self.opts.client_name);
        if !scopes.is_empty() {
            request = request.with_scopes(scopes.clone());
        }

        // Registration order (C6): pre-registered → stored for this issuer → CIMD → DCR.
        let mut new_secret: Option<Option<String>> = None;
        if let Some(id) = &self.opts.client_id {
            request = request.with_preregistered_client(id);
            if let Some(secret) = &self.opts.client_secret {
                request = request.with_client_secret(secret);
            }
            new_secret = Some(self.opts.client_secret.clone());
        } else if let Some((creds, secret)) =
            stored.filter(|(c, _)| !c.client_id.starts_with("https://") || cimd_supported)
        {
            request = request.with_preregistered_client(&creds.client_id);
            if let Some(secret) = secret {
                request = request.with_client_secret(secret);
            }
        } else if let (Some(url), true) = (&self.opts.client_metadata_url, cimd_supported) {
            request = request.with_client_metadata_url(url);
            new_secret = Some(None);
        } else if has_registration {
            // Registered for everything the server offers, so a later step-up with the same client
            // is not refused as unregistered; each authorization still asks only for what it needs.
            let mut registered = scopes.clone();
            registered.extend(as_scopes.into_iter().filter(|s| !scopes.contains(s)));
            let refs: Vec<&str> = registered.iter().map(String::as_str).collect();
            let config = manager
                .register_client(&self.opts.client_name, &redirect_uri, &refs)
                .await
                .map_err(|e| self.explain(e))?;
            request = request.with_preregistered_client(&config.client_id);
            if let Some(secret) = &config.client_secret {
                request = request.with_client_secret(secret);
            }
            new_secret = Some(config.client_secret);
        } else {
            return Err(ClientError::Registration(
                "the authorization server offers neither Client ID Metadata Documents nor dynamic registration; \
                 pass --client-id (and --client-secret-stdin) for a client registered there"
                    .into(),
            ));
        }

        let session = AuthorizationSession::new(manager, request).await.map_err(|(_, e)| self.explain(e))?;
        let auth_url = check_url(session.get_authorization_url(), "the authorization URL", self.opts.policy)?;
        let expected_state = auth_url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| ClientError::Authorization("the authorization URL has no state".into()))?;

        let callback = match (listener, &self.opts.external_sign_in) {
            (Some(listener), _) => {
                listener.expect(&expected_state, issuer.as_deref(), iss_advertised);
                run_user_agent(
                    self.opts.login,
                    &auth_url,
                    listener,
                    &self.http,
                    self.opts.policy,
                    Timeouts { login: self.opts.login_timeout, request: self.opts.request_timeout },
                )
                .await?
            }
            (None, Some(external)) => {
                external.sign_in(auth_url.clone(), expected_state.clone(), self.opts.login_timeout).await?
            }
            (None, None) => return Err(ClientError::Authorization("no way to reach the person".into())),
        };
        let code = check_callback(&callback, &expected_state, issuer.as_deref(), iss_advertised)?;
        session
            .handle_callback_with_issuer(&code, &expected_state, callback.iss.as_deref())
            .await
            .map_err(|e| self.explain(e))?;
        if let Some(secret) = new_secret {
            self.vault.set_client_secret(&self.resource, secret)?;
        }
        let revocation_endpoint = endpoints.revocation_endpoint.clone();
        self.vault.set_endpoints(&self.resource, endpoints)?;
        if let (Some((old, old_secret)), Some(endpoint)) = (replaced, revocation_endpoint)
            && let Some(token) = old.token_response.as_ref()
        {
            self.revoke(&endpoint, token, &old.client_id, old_secret.as_deref()).await;
        }
        let manager = session.auth_manager;
        let token = manager.get_access_token().await.map_err(|e| self.explain(e))?;
        held.manager = Some(manager);
        Ok(token)
    }

    /// Discovery from `challenge` (or the well-known URLs), refusing guessed legacy endpoints
    /// and checking the metadata (C4, C5, C17, C23).
    pub(super) async fn discover(
        &self,
        manager: &AuthorizationManager,
        challenge: Option<&str>,
    ) -> Result<AuthorizationMetadata, ClientError> {
        if let Some(challenge) = challenge {
            check_resource_metadata_origin(&self.server, challenge)?;
        }
        let resolution = manager.resolve_metadata_from_challenge(challenge).await.map_err(|e| self.explain(e))?;
        if resolution.source == AuthorizationMetadataSource::LegacyEndpointFallback {
            return Err(ClientError::Discovery(format!(
                "no authorization server metadata found for {} (protected resource metadata and the RFC 8414 / OIDC well-known URLs)",
                self.server
            )));
        }
        self.check_metadata(&resolution.metadata)?;
        Ok(resolution.metadata)
    }

    /// C17 and C23 on the discovered metadata, before anything is registered or opened.
    pub(super) fn check_metadata(&self, m: &AuthorizationMetadata) -> Result<(), ClientError> {
        check_authorization_metadata(m, self.opts.policy)
    }
}
