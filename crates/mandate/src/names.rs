//! Names for the ids in admin listings. A person's username is the operator's; a client's name
//! is whatever its registrant chose, so it is printed quoted (escapes included) and marked
//! `(unverified)` unless an operator registered the client: it cannot pass for an operator's label.

use std::collections::HashMap;
use std::fmt;

use mandate_core::AuthServer;

/// A client's name and whether an operator vouched for it.
#[derive(Clone)]
pub struct ClientName {
    pub name: String,
    pub verified: bool,
}

/// Longest name (in characters) the grants table shows before cutting it short.
const SHORT: usize = 24;

impl ClientName {
    /// For a table column: like the full form, with a long name cut short.
    pub fn short(&self) -> String {
        if self.name.chars().count() <= SHORT {
            return self.to_string();
        }
        let cut: String = self.name.chars().take(SHORT - 1).collect();
        Self { name: format!("{cut}…"), verified: self.verified }.to_string()
    }
}

impl fmt::Display for ClientName {
    /// `"Claude"` for a client an operator registered, `"Claude" (unverified)` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug quoting escapes quotes, control characters, bidi overrides and zero-width characters.
        write!(f, "{:?}", self.name)?;
        if !self.verified {
            f.write_str(" (unverified)")?;
        }
        Ok(())
    }
}

/// Looks each id up once.
pub struct Names<'a> {
    auth: &'a AuthServer,
    users: HashMap<String, Option<String>>,
    clients: HashMap<String, Option<ClientName>>,
}

impl<'a> Names<'a> {
    pub fn new(auth: &'a AuthServer) -> Self {
        Self { auth, users: HashMap::new(), clients: HashMap::new() }
    }

    /// The username of a user id; `None` when there is no such user.
    pub async fn user(&mut self, id: &str) -> anyhow::Result<Option<String>> {
        if let Some(known) = self.users.get(id) {
            return Ok(known.clone());
        }
        let name = self.auth.store().user_by_id(id).await?.map(|u| u.username);
        self.users.insert(id.to_owned(), name.clone());
        Ok(name)
    }

    /// The name of a client id; `None` when the client was removed.
    pub async fn client(&mut self, id: &str) -> anyhow::Result<Option<ClientName>> {
        if let Some(known) = self.clients.get(id) {
            return Ok(known.clone());
        }
        let name =
            self.auth.store().client_by_id(id).await?.map(|c| ClientName { verified: c.is_verified(), name: c.name });
        self.clients.insert(id.to_owned(), name.clone());
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::ClientName;

    #[test]
    fn client_names_are_quoted_escaped_and_marked() {
        let n = |name: &str, verified| ClientName { name: name.into(), verified };
        assert_eq!(n("Claude", true).to_string(), r#""Claude""#);
        assert_eq!(n("Claude", false).to_string(), r#""Claude" (unverified)"#);
        // A registrant cannot close the quotes, or hide text with escapes, bidi or line breaks.
        assert_eq!(
            n("Claude\" (verified)\n\u{1b}[2K\u{202e}x", false).to_string(),
            r#""Claude\" (verified)\n\u{1b}[2K\u{202e}x" (unverified)"#
        );
        assert_eq!(n(&"a".repeat(40), false).short(), format!("\"{}…\" (unverified)", "a".repeat(23)));
        assert_eq!(n("short", true).short(), r#""short""#);
    }
}
