//! `mandate users disable|enable|remove|passwd` and `mandate keys rotate-kek`: each prints what it
//! did; an unknown person is an error (exit status 1).

use std::path::PathBuf;

use anyhow::bail;
use mandate_core::AuthServer;
use mandate_core::model::{PersonRevocation, User};

use crate::config::Config;

async fn person(auth: &AuthServer, who: &str) -> anyhow::Result<User> {
    match auth.find_person(who).await? {
        Some(u) => Ok(u),
        None => bail!("no person with the id or username {who:?} (see `mandate users list`)"),
    }
}

fn gone(u: &User) -> anyhow::Error {
    anyhow::anyhow!("{} ({}) was removed meanwhile", u.username, u.id)
}

fn revoked(r: &PersonRevocation) -> String {
    format!(
        "{} grant(s) revoked (their tokens stop working), {} browser session(s) and {} MCP session(s) ended",
        r.grants, r.sessions, r.mcp_sessions
    )
}

pub async fn disable(auth: &AuthServer, who: &str) -> anyhow::Result<()> {
    let u = person(auth, who).await?;
    let r = auth.disable_person(&u).await?.ok_or_else(|| gone(&u))?;
    println!("disabled {} ({}): sign-in is refused; {}", u.username, u.id, revoked(&r));
    Ok(())
}

pub async fn enable(auth: &AuthServer, who: &str) -> anyhow::Result<()> {
    let u = person(auth, who).await?;
    if !u.disabled {
        println!("{} ({}) is not disabled; nothing changed", u.username, u.id);
        return Ok(());
    }
    if !auth.enable_person(&u).await? {
        return Err(gone(&u));
    }
    println!("enabled {} ({}): they can sign in again; grants revoked when disabled stay revoked", u.username, u.id);
    Ok(())
}

pub async fn remove(auth: &AuthServer, who: &str) -> anyhow::Result<()> {
    let u = person(auth, who).await?;
    let r = auth.remove_person(&u).await?.ok_or_else(|| gone(&u))?;
    println!(
        "removed {} ({}) with their grants, consents, sessions, connected accounts and sign-in failure counts; {}. \
         The audit trail keeps their events under the id {}",
        u.username,
        u.id,
        revoked(&r),
        u.id
    );
    Ok(())
}

pub async fn passwd(auth: &AuthServer, who: &str, password_stdin: bool, keep_grants: bool) -> anyhow::Result<()> {
    let u = person(auth, who).await?;
    let password = crate::admin::read_password(password_stdin)?;
    let r = auth.change_password(&u, password, !keep_grants).await?.ok_or_else(|| gone(&u))?;
    if keep_grants {
        println!(
            "set a new password for {} ({}); {} browser session(s) ended; grants kept (--keep-grants)",
            u.username, u.id, r.sessions
        );
    } else {
        println!("set a new password for {} ({}); {}", u.username, u.id, revoked(&r));
    }
    if u.disabled {
        println!("note: {} is disabled; `mandate users enable {}` lets them sign in", u.username, u.id);
    }
    Ok(())
}

/// Where the configured key comes from, as the operator would name it.
fn current_key_source(config: &Config) -> String {
    match (&config.secret_key, config.key_file()) {
        (Some(_), _) => "secret_key (MANDATE_SECRET_KEY)".to_owned(),
        (None, Some(path)) => format!("the key file {}", path.display()),
        (None, None) => "the configured key".to_owned(),
    }
}

fn fallback_source(config: &Config) -> Option<&'static str> {
    if config.fallback_secret_key.is_some() {
        Some("fallback_secret_key (MANDATE_FALLBACK_SECRET_KEY)")
    } else if config.fallback_secret_key_file.is_some() {
        Some("fallback_secret_key_file (MANDATE_FALLBACK_SECRET_KEY_FILE)")
    } else {
        None
    }
}

pub async fn rotate_kek(auth: &AuthServer, config: &Config, new_key_file: Option<PathBuf>) -> anyhow::Result<()> {
    let new = match &new_key_file {
        Some(path) => {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let (key, created) = crate::setup::new_key_file(&path)?;
            if auth.kek_is(&key) {
                bail!("{} holds the key already configured: give a new key file", path.display());
            }
            if created {
                println!("created a new key-encryption key in {} (mode 0600)", path.display());
            }
            Some((path, key))
        }
        None if !auth.kek_has_fallback() => bail!(
            "nothing to rotate from: give --new-key-file FILE (the new key; created when FILE does not exist), or \
             configure the new key as the key (secret_key_file) and the old one as fallback_secret_key_file, then run \
             this again"
        ),
        None => None,
    };
    let count = auth.rotate_kek(new.as_ref().map(|(_, k)| k)).await?;
    println!(
        "re-sealed {} signing key(s), {} connected account(s) and {} provider request(s) under the new \
         key-encryption key, in one transaction",
        count.signing_keys, count.upstream_accounts, count.provider_flows
    );
    println!("now change the configuration of every instance, then restart it:");
    match &new {
        Some((path, _)) => {
            println!("  secret_key_file = {:?}   (or MANDATE_SECRET_KEY_FILE, --secret-key-file)", path.display());
            if config.secret_key.is_some() {
                println!("  and unset secret_key (MANDATE_SECRET_KEY)");
            }
            if let Some(f) = fallback_source(config) {
                println!("  and remove {f}");
            }
            println!(
                "Until an instance restarts with the new key it cannot open what is now sealed under it (signing keys \
                 included). The old key ({}) no longer opens anything: keep it only for backups of the database \
                 taken before now.",
                current_key_source(config)
            );
        }
        None => {
            let f = fallback_source(config).unwrap_or("the fallback key");
            println!("  remove {f}: everything is now sealed under {}", current_key_source(config));
            println!("Keep the old key only for backups of the database taken before now.");
        }
    }
    Ok(())
}
