//! What the person is told when the server wants more scopes (step-up, C13): what happened and
//! why, in plain words, before any URL is printed or a browser opened; and the yes/no question.

use crate::login::LoginMode;

/// Text from a caller or a server, fit for a terminal: no control characters, at most 200.
pub(crate) fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Asks a yes/no question on the terminal (stderr and stdin); no terminal means no.
pub(crate) async fn ask(question: &str) -> bool {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| matches!(line.trim(), "y" | "Y" | "yes")).unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

fn scope_words(scopes: &str) -> String {
    let list: Vec<String> = scopes.split_whitespace().map(|s| format!("`{}`", printable(s))).collect();
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
    let subject = tool.map(printable).unwrap_or_else(|| "This request".to_owned());
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
        Some(t) => format!("; {} was not called", printable(t)),
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
