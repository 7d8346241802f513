//! What the person is told when the server wants more scopes (step-up, C13): what happened and
//! why, in plain words, before any URL is printed or a browser opened.

use crate::login::LoginMode;

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn scope_words(scopes: &str) -> String {
    let list: Vec<String> = scopes.split_whitespace().map(|s| format!("`{}`", clean(s))).collect();
    match list.as_slice() {
        [] => "more scopes".to_owned(),
        [one] => format!("the scope {one}"),
        [rest @ .., last] => format!("the scopes {} and {last}", rest.join(", ")),
    }
}

/// "it" or "them", for the scopes asked for.
pub fn it(scopes: &str) -> &'static str {
    if scopes.split_whitespace().count() > 1 { "them" } else { "it" }
}

/// Why the request was refused: `send_invoice needs the scope `invoices.send`, which you have not
/// granted to this agent.` (`tool` is `None` when the refused request was not a tool call.)
pub fn why(tool: Option<&str>, missing: &[String], wanted: &[String]) -> String {
    let subject = tool.map(clean).unwrap_or_else(|| "This request".to_owned());
    if missing.is_empty() {
        // The server wants scopes the stored grant already lists: it was narrowed meanwhile.
        return format!(
            "{subject} needs {}, and the server refused the token this agent holds for it.",
            scope_words(&wanted.join(" "))
        );
    }
    format!("{subject} needs {}, which you have not granted to this agent.", scope_words(&missing.join(" ")))
}

/// What happens next: `Asking the server for it: a browser will open…`.
pub fn asking(scopes: &str, mode: LoginMode) -> String {
    let it = it(scopes);
    let how = match mode {
        LoginMode::Browser => format!("a browser will open at the authorization server, where you can allow {it}"),
        LoginMode::NoBrowser => format!("open the URL below and allow {it} there"),
        LoginMode::Headless => "following the authorization URL without a browser".to_owned(),
    };
    format!("Asking the server for {it}: {how}.")
}

/// The person said no at the consent page.
pub fn declined(tool: Option<&str>, scopes: &str) -> String {
    let what = match tool {
        Some(t) => format!("; {} was not called", clean(t)),
        None => String::new(),
    };
    format!("you did not grant {} to this agent at the consent page{what}", scope_words(scopes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words() {
        let missing = vec!["invoices.send".to_owned()];
        assert_eq!(
            why(Some("send_invoice"), &missing, &missing),
            "send_invoice needs the scope `invoices.send`, which you have not granted to this agent."
        );
        let two = vec!["a.read".to_owned(), "b.write".to_owned()];
        assert_eq!(
            why(None, &two, &two),
            "This request needs the scopes `a.read` and `b.write`, which you have not granted to this agent."
        );
        assert_eq!(
            asking("invoices.send", LoginMode::Browser),
            "Asking the server for it: a browser will open at the authorization server, where you can allow it."
        );
        assert_eq!(
            asking("a b", LoginMode::NoBrowser),
            "Asking the server for them: open the URL below and allow them there."
        );
        assert_eq!(
            declined(Some("send_invoice"), "invoices.send"),
            "you did not grant the scope `invoices.send` to this agent at the consent page; send_invoice was not called"
        );
        assert!(!why(Some("x\u{1b}[31m"), &missing, &missing).contains('\u{1b}'), "no terminal escapes");
    }
}
