//! Client ID Metadata Documents (CIMD): the URL rules (`validate_document_url`) and the document
//! (`parse_document`). Input: the first line is the `client_id` URL, the rest the document.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_core::model::{AuthMethod, ClientKind};
use mandate_core::redirect::validate_for_registration;
use mandate_core::scope::ResourceCatalog;
use mandate_core::service::{FetchedDocument, parse_document, validate_document_url};
use mandate_core::ssrf::FetchPolicy;
use mandate_fuzz::{NOW, split_line};

fn catalog() -> &'static ResourceCatalog {
    static C: OnceLock<ResourceCatalog> = OnceLock::new();
    C.get_or_init(|| ResourceCatalog::demo("https://auth.example.com").unwrap_or_else(|e| panic!("{e:?}")))
}

fuzz_target!(|data: &[u8]| {
    let (url, body) = split_line(data);
    let url = String::from_utf8_lossy(url);
    for policy in [FetchPolicy::default(), FetchPolicy { allow_loopback: true, allow_http: true }] {
        if let Ok(u) = validate_document_url(&url, policy) {
            assert!(u.scheme() == "https" || (policy.allow_http && u.scheme() == "http"), "{url}");
            assert_eq!(u.as_str(), url, "not in normal form");
            assert!(u.username().is_empty() && u.password().is_none() && u.fragment().is_none());
            assert!(u.path().len() > 1);
        }
    }
    let doc = FetchedDocument { body: body.to_vec(), max_age: Some(600), cacheable: data.len() % 2 == 0 };
    let Ok(client) = parse_document(&url, &doc, catalog(), NOW) else { return };
    assert_eq!(client.id, url);
    assert_eq!(client.kind, ClientKind::MetadataDocument);
    assert_eq!(client.auth_method, AuthMethod::None);
    assert!(client.secret_hash.is_none());
    assert!(!client.name.is_empty() && client.name.chars().count() <= 200);
    assert_eq!(mandate_core::text::display_name_problem(&client.name), None, "{:?}", client.name);
    assert!(!client.redirect_uris.is_empty());
    for u in &client.redirect_uris {
        assert_eq!(validate_for_registration(u), Ok(()), "{u}");
    }
    let ttl = client.refresh_after.unwrap_or(NOW) - NOW;
    assert!(ttl == 0 || (60..=24 * 3600).contains(&ttl), "{ttl}");
});
