//! Request parameters (query strings and form bodies) parsed once, with the OAuth 2.1 §3.1 rules:
//! a parameter sent more than once is an error, and an empty value counts as absent.

use crate::error::OAuthError;

#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    /// Names whose value was not valid percent-encoded UTF-8 (a `%` without two hex digits, or
    /// bytes that are not UTF-8): reading them is `invalid_request`, never a guess (FZ-03).
    malformed: Vec<String>,
}

/// True when every `%` in `raw` starts a two-hex-digit escape.
fn escapes_are_whole(raw: &[u8]) -> bool {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = |j: usize| raw.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// A form-encoded value decoded strictly: `+` is a space, escapes must be whole, the bytes UTF-8.
fn decode_strict(raw: &[u8]) -> Option<String> {
    if !escapes_are_whole(raw) {
        return None;
    }
    let plus: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&plus).decode_utf8().ok().map(|c| c.into_owned())
}

impl Params {
    pub fn parse(input: &[u8]) -> Self {
        let mut params = Self::default();
        for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            // A name is read leniently: a malformed one cannot decode to a name mandate reads.
            let name: String = form_urlencoded::parse(raw_name).map(|(k, _)| k.into_owned()).next().unwrap_or_default();
            match decode_strict(raw_value) {
                Some(value) => params.pairs.push((name, value)),
                None => {
                    params.malformed.push(name.clone());
                    params.pairs.push((name, String::new()));
                }
            }
        }
        params
    }

    /// The one value of `name`; `None` when absent or empty; `invalid_request` when repeated,
    /// when not valid percent-encoded UTF-8, or when it holds control characters (NUL and
    /// friends never reach storage or pages).
    pub fn single(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err(OAuthError::invalid_request(format!("the {name} parameter must not be repeated")));
        }
        if self.malformed.iter().any(|m| m == name) {
            return Err(OAuthError::invalid_request(format!(
                "the {name} parameter is not valid percent-encoded UTF-8"
            )));
        }
        if first.is_some_and(|v| v.chars().any(char::is_control)) {
            return Err(OAuthError::invalid_request(format!("the {name} parameter contains control characters")));
        }
        Ok(first.map(String::as_str).filter(|v| !v.is_empty()))
    }

    /// Like [`Params::single`] but the parameter is required.
    pub fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.single(name)?.ok_or_else(|| OAuthError::invalid_request(format!("the {name} parameter is missing")))
    }

    /// Every non-empty value of `name` (checkbox lists).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty() && !v.chars().any(char::is_control))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// True when `name` appears more than once.
    pub fn is_repeated(&self, name: &str) -> bool {
        self.pairs.iter().filter(|(k, _)| k == name).count() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_empty_parameters_az_11_az_12() {
        let p = Params::parse(b"a=1&a=2&b=&c=x%20y");
        assert!(p.single("a").is_err());
        assert!(p.is_repeated("a"));
        assert_eq!(p.single("b").ok().flatten(), None);
        assert_eq!(p.single("c").ok().flatten(), Some("x y"));
        assert!(p.required("missing").is_err());
        assert!(Params::parse(b"client_id=a%00b").single("client_id").is_err(), "FZ-03");
    }

    #[test]
    fn values_are_decoded_strictly_fz_03() {
        for bad in [&b"state=%zz"[..], b"state=ab%2", b"state=%", b"state=%ff%fe", b"state=%c3"] {
            let p = Params::parse(bad);
            let e = p.single("state").err().map(|e| e.description.to_string()).unwrap_or_default();
            assert!(e.contains("not valid percent-encoded UTF-8"), "{:?}: {e}", String::from_utf8_lossy(bad));
        }
        let p = Params::parse(b"a=x+y%20z&&b=%C3%A9%E2%9C%93&c&d=%2B");
        assert_eq!(p.single("a").ok().flatten(), Some("x y z"));
        assert_eq!(p.single("b").ok().flatten(), Some("é✓"));
        assert_eq!(p.single("c").ok().flatten(), None, "a name alone is an empty value");
        assert_eq!(p.single("d").ok().flatten(), Some("+"));
        // `;` is not a separator: it stays in the value.
        assert_eq!(Params::parse(b"a=1;b=2").single("a").ok().flatten(), Some("1;b=2"));
        // A malformed value of one parameter does not spoil the others.
        assert_eq!(Params::parse(b"x=%zz&y=1").single("y").ok().flatten(), Some("1"));
    }
}
