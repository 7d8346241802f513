//! The authorization response that comes back to the loopback listener, and the checks it must
//! pass before its code is redeemed: `state` (C18), then `iss` (C19), then the code or the error.

use crate::error::ClientError;

/// The authorization response as it came back.
#[derive(Debug, Clone, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl Callback {
    /// The response as a query string carries it (`code=…&state=…&iss=…`).
    pub fn from_query(query: &str) -> Self {
        let mut cb = Callback::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut cb.code,
                "state" => &mut cb.state,
                "iss" => &mut cb.iss,
                "error" => &mut cb.error,
                "error_description" => &mut cb.error_description,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        cb
    }
}

/// C18 and C19 on the authorization response: state first, then `iss`, then the code or the error.
pub fn check_callback(
    cb: &Callback,
    expected_state: &str,
    issuer: Option<&str>,
    iss_advertised: bool,
) -> Result<String, ClientError> {
    let state_ok = cb.state.as_deref().is_some_and(|s| mandate_core::secret::ct_str_eq(s, expected_state));
    if !state_ok {
        return Err(ClientError::StateMismatch);
    }
    if iss_advertised && cb.iss.is_none() {
        return Err(ClientError::Authorization(
            "the authorization response has no `iss` although the server promises one (possible mix-up); discarded"
                .into(),
        ));
    }
    if let (Some(got), Some(want)) = (cb.iss.as_deref(), issuer)
        && got != want
    {
        // Do not act on or display anything else in a response from the wrong issuer.
        return Err(ClientError::Authorization(format!(
            "the authorization response came from issuer `{got}`, not `{want}` (possible mix-up); discarded"
        )));
    }
    if cb.error.as_deref() == Some("access_denied") {
        return Err(ClientError::AccessDenied(
            "you did not allow this agent at the consent page; nothing was granted".into(),
        ));
    }
    if let Some(error) = &cb.error {
        let detail = cb.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
        let error: String = error.chars().filter(|c| !c.is_control()).take(100).collect();
        let detail: String = detail.chars().filter(|c| !c.is_control()).take(300).collect();
        return Err(ClientError::Authorization(format!("the authorization server answered `{error}`{detail}")));
    }
    cb.code.clone().ok_or_else(|| ClientError::Authorization("the authorization response has no code".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cb(state: &str, iss: Option<&str>, error: Option<&str>) -> Callback {
        Callback {
            code: Some("c".into()),
            state: Some(state.into()),
            iss: iss.map(str::to_owned),
            error: error.map(str::to_owned),
            error_description: None,
        }
    }

    #[test]
    fn state_mismatch_is_refused_c18() {
        assert!(matches!(
            check_callback(&cb("other", None, None), "expected", None, false),
            Err(ClientError::StateMismatch)
        ));
        let mut missing = cb("x", None, None);
        missing.state = None;
        assert!(matches!(check_callback(&missing, "expected", None, false), Err(ClientError::StateMismatch)));
        assert_eq!(check_callback(&cb("expected", None, None), "expected", None, false).ok(), Some("c".into()));
    }

    #[test]
    fn wrong_iss_is_refused_before_the_error_is_read_c19() {
        let r = check_callback(&cb("s", Some("https://evil"), Some("access_denied")), "s", Some("https://as"), true);
        let Err(ClientError::Authorization(msg)) = r else { unreachable!("expected a refusal") };
        assert!(msg.contains("mix-up") && !msg.contains("access_denied"), "{msg}");
        let r = check_callback(&cb("s", Some("https://as"), Some("access_denied")), "s", Some("https://as"), true);
        assert!(matches!(r, Err(ClientError::AccessDenied(_))), "{r:?}");
        let r = check_callback(&cb("s", Some("https://as"), Some("server_error")), "s", Some("https://as"), true);
        assert!(matches!(r, Err(ClientError::Authorization(m)) if m.contains("server_error")));
        // Promised but absent: refused, and the error is not shown either.
        let r = check_callback(&cb("s", None, Some("access_denied")), "s", Some("https://as"), true);
        assert!(
            matches!(r, Err(ClientError::Authorization(m)) if m.contains("mix-up") && !m.contains("access_denied"))
        );
    }
}
