//! Request parameters (query strings and form bodies) parsed once, with the OAuth 2.1 §3.1 rules:
//! a parameter sent more than once is an error, and an empty value counts as absent.

use crate::error::OAuthError;

#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(input: &[u8]) -> Self {
        Self(form_urlencoded::parse(input).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The one value of `name`; `None` when absent or empty; `invalid_request` when repeated
    /// or when it holds control characters (NUL and friends never reach storage or pages).
    pub fn single(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut found = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err(OAuthError::invalid_request(format!("the {name} parameter must not be repeated")));
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
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty() && !v.chars().any(char::is_control))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// True when `name` appears more than once.
    pub fn is_repeated(&self, name: &str) -> bool {
        self.0.iter().filter(|(k, _)| k == name).count() > 1
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
}
