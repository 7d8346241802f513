//! The guard's inspection of JSON-RPC bodies (`tools/call` against the tool policy; single
//! messages and batches; escapes such as `tools\/call` decoded). Input: the request body.
//! Checked against an independent reading of the body: a call naming a tool the policy does not
//! list, naming none, or with non-object arguments is never forwarded (answered in JSON-RPC's
//! form, 200 or 400); a listed tool the caller lacks a scope for gets 403; a body naming a member
//! twice anywhere is refused with 400 (it could be read two ways); nothing else is stopped.
#![no_main]

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use mandate_core::clock::ManualClock;
use mandate_core::scope::ScopeSet;
use mandate_fuzz::{ISSUER, NOW, RESOURCE, block_on};
use mandate_guard::{Guard, GuardConfig, KeySource, Principal, TokenCheck, ToolScopes, Validator, VerificationKey};
use serde_json::Value;

struct NoKeys;

#[async_trait]
impl KeySource for NoKeys {
    async fn key(&self, _kid: &str) -> Option<VerificationKey> {
        None
    }
}

/// Tool → scope, as configured; the caller holds `todos.read` only.
const TOOLS: &[(&str, &str)] = &[("list_todos", "todos.read"), ("send_invoice", "invoices.send")];

fn fixture() -> &'static (Guard, Principal) {
    static F: OnceLock<(Guard, Principal)> = OnceLock::new();
    F.get_or_init(|| {
        let mut config = GuardConfig::new(RESOURCE, ISSUER);
        config.tools = TOOLS.iter().fold(ToolScopes::new(), |t, (tool, scope)| t.with(tool, &[*scope]));
        let validator = Validator::new(ISSUER, RESOURCE, Arc::new(NoKeys), Arc::new(ManualClock::new(NOW)));
        let principal = Principal {
            issuer: ISSUER.into(),
            subject: "user-1".into(),
            client_id: "client-1".into(),
            scopes: ScopeSet::from_names(["todos.read"]),
            grant_id: None,
            token_id: None,
            expires_at: NOW + 3600,
        };
        (Guard::new(config, TokenCheck::Jwt(validator)), principal)
    })
}

/// What the guard must do with one message: `Some(true)` refuse as JSON-RPC, `Some(false)` step
/// up (403), `None` let through.
fn expected(m: &Value) -> Option<bool> {
    if m.get("method").and_then(Value::as_str) != Some("tools/call") {
        return None;
    }
    let params = m.get("params");
    let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else { return Some(true) };
    let Some((_, scope)) = TOOLS.iter().find(|(t, _)| *t == name) else { return Some(true) };
    if !matches!(params.and_then(|p| p.get("arguments")), None | Some(Value::Null | Value::Object(_))) {
        return Some(true);
    }
    (*scope != "todos.read").then_some(false)
}

/// Whether any object in the JSON names a member twice: read here by a visitor of its own that
/// lists each object's keys (the guard refuses such a body, never reading it one way).
fn has_duplicate_member(data: &[u8]) -> bool {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Dups(bool);
    struct V<'a>(&'a mut Dups);
    impl<'de> serde::de::DeserializeSeed<'de> for V<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for V<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> { Ok(()) }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> { Ok(()) }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> { Ok(()) }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> { Ok(()) }
        fn visit_str<E>(self, _: &str) -> Result<(), E> { Ok(()) }
        fn visit_unit<E>(self) -> Result<(), E> { Ok(()) }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(V(self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut keys: Vec<String> = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                if keys.contains(&k) {
                    self.0.0 = true;
                }
                keys.push(k);
                map.next_value_seed(V(self.0))?;
            }
            Ok(())
        }
    }
    let _ = IgnoredAny;
    let mut found = Dups(false);
    let mut de = serde_json::Deserializer::from_slice(data);
    serde::de::DeserializeSeed::deserialize(V(&mut found), &mut de).is_ok() && found.0
}

fuzz_target!(|data: &[u8]| {
    let (guard, principal) = fixture();
    let answer = block_on(guard.inspect_body(principal, data, true));
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        assert_eq!(answer, None, "a body that is not JSON is the transport's to refuse");
        return;
    };
    if has_duplicate_member(data) {
        assert_eq!(answer, Some(StatusCode::BAD_REQUEST), "a member named twice: {v}");
        let refused = block_on(guard.inspect_body(principal, data, false));
        assert_eq!(refused, Some(StatusCode::NOT_ACCEPTABLE));
        return;
    }
    let messages = match &v {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let verdicts: Vec<bool> = messages.iter().filter_map(expected).collect();
    if verdicts.contains(&true) {
        assert!(matches!(answer, Some(StatusCode::OK | StatusCode::BAD_REQUEST)), "{answer:?} for {v}");
        let refused = block_on(guard.inspect_body(principal, data, false));
        assert_eq!(refused, Some(StatusCode::NOT_ACCEPTABLE));
    } else if verdicts.contains(&false) {
        assert_eq!(answer, Some(StatusCode::FORBIDDEN), "{v}");
    } else {
        assert_eq!(answer, None, "{v}");
    }
});
