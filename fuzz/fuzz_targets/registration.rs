//! RFC 7591 registration metadata (`validate_registration`, all of `register_client` but the
//! store). Input: the request body. Whatever is accepted must hold only what mandate allows.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_core::model::AuthMethod;
use mandate_core::redirect::validate_for_registration;
use mandate_core::scope::ResourceCatalog;
use mandate_core::service::{MAX_REDIRECT_URIS, validate_registration};

fn catalog() -> &'static ResourceCatalog {
    static C: OnceLock<ResourceCatalog> = OnceLock::new();
    C.get_or_init(|| ResourceCatalog::demo("https://auth.example.com").unwrap_or_else(|e| panic!("{e:?}")))
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(reg) = validate_registration(&body, catalog()) else { return };
    assert!(!reg.redirect_uris.is_empty() && reg.redirect_uris.len() <= MAX_REDIRECT_URIS);
    for (i, u) in reg.redirect_uris.iter().enumerate() {
        assert_eq!(validate_for_registration(u), Ok(()), "{u}");
        assert!(!reg.redirect_uris[..i].contains(u), "duplicate {u}");
    }
    assert!(reg.grant_types.iter().any(|g| g == "authorization_code"));
    assert!(reg.grant_types.iter().all(|g| g == "authorization_code" || g == "refresh_token"));
    assert!(reg.response_types.iter().all(|r| r == "code"));
    assert!(matches!(reg.auth_method, AuthMethod::None | AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost));
    assert!(reg.name.chars().count() <= 200 && reg.name == reg.name.trim());
    assert_eq!(mandate_core::text::display_name_problem(&reg.name), None, "{:?}", reg.name);
    for (k, v) in &reg.echoed {
        match k.as_str() {
            "client_uri" | "logo_uri" | "tos_uri" | "policy_uri" => {
                let u = url::Url::parse(v.as_str().unwrap_or_default()).unwrap_or_else(|_| panic!("{v}"));
                assert_eq!(u.scheme(), "https");
            }
            "application_type" => assert!(v == "native" || v == "web"),
            other => panic!("unexpected echoed field {other}"),
        }
    }
    if let Some(s) = &reg.allowed_scope {
        assert!(!s.is_empty() && s.is_subset_of(&catalog().all_scopes()));
    }
});
