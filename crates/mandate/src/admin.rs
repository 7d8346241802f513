//! The admin commands: users, clients, grants, audit, keys. They work on the same database as
//! `serve` and print plain columns (or JSON for `audit --json`). The commands that only read
//! refuse to create a database.

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mandate_core::AuthServer;
use mandate_core::model::AuditFilter;
use mandate_core::scope::ScopeSet;
use mandate_core::service::ClientRegistration;

use crate::ServerFlags;
use crate::config::Config;
use crate::names::Names;

/// The admin commands, on the server's database.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Manage people who can sign in.
    Users(WithServerFlags<UsersCommand>),
    /// Manage clients (pre-register one, list, remove).
    Clients(WithServerFlags<ClientsCommand>),
    /// List and revoke grants.
    Grants(WithServerFlags<GrantsCommand>),
    /// Print the audit trail.
    Audit(AuditFlags),
    /// List and rotate signing keys.
    Keys(WithServerFlags<KeysCommand>),
}

/// An admin command group with its subcommand; the server flags are global within it.
#[derive(Args)]
pub struct WithServerFlags<C: Subcommand> {
    #[command(subcommand)]
    command: C,
    #[command(flatten)]
    server: ServerFlags,
}

impl AdminCommand {
    pub fn server_flags(&self) -> &ServerFlags {
        match self {
            AdminCommand::Users(c) => &c.server,
            AdminCommand::Clients(c) => &c.server,
            AdminCommand::Grants(c) => &c.server,
            AdminCommand::Audit(f) => &f.server,
            AdminCommand::Keys(c) => &c.server,
        }
    }

    /// The command's name and what it does, when it only reads or changes what exists.
    fn only_reads(&self) -> Option<(&'static str, &'static str)> {
        const READS: &str = "only reads";
        const CHANGES: &str = "only changes what exists";
        match self {
            AdminCommand::Users(c) => match c.command {
                UsersCommand::List => Some(("users list", READS)),
                UsersCommand::Add { .. } => None,
                UsersCommand::Disable { .. } => Some(("users disable", CHANGES)),
                UsersCommand::Enable { .. } => Some(("users enable", CHANGES)),
                UsersCommand::Remove { .. } => Some(("users remove", CHANGES)),
                UsersCommand::Passwd { .. } => Some(("users passwd", CHANGES)),
            },
            AdminCommand::Clients(c) if matches!(c.command, ClientsCommand::List) => Some(("clients list", READS)),
            AdminCommand::Grants(c) if matches!(c.command, GrantsCommand::List) => Some(("grants list", READS)),
            AdminCommand::Audit(_) => Some(("audit", READS)),
            AdminCommand::Keys(c) if matches!(c.command, KeysCommand::List) => Some(("keys list", READS)),
            AdminCommand::Keys(c) if matches!(c.command, KeysCommand::RotateKek { .. }) => {
                Some(("keys rotate-kek", CHANGES))
            }
            _ => None,
        }
    }
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a person who can sign in. The password is asked for, or read from stdin.
    Add {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List people.
    List,
    /// Disable a person: sign-in refused; every grant, browser session and MCP session ends.
    Disable {
        /// The person's id or username.
        person: String,
    },
    /// Let a disabled person sign in again (what disabling revoked stays revoked).
    Enable {
        /// The person's id or username.
        person: String,
    },
    /// Delete a person and their data (grants, sessions, consents, connected accounts); the
    /// audit trail is kept.
    Remove {
        /// The person's id or username.
        person: String,
    },
    /// Set a new password (asked for, or read from stdin); ends the person's browser sessions
    /// and revokes their grants.
    Passwd {
        /// The person's id or username.
        person: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Keep the person's grants (agents stay connected); browser sessions still end.
        #[arg(long)]
        keep_grants: bool,
    },
}

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// Pre-register a client (shown to people as verified). Prints its id, and its secret once.
    Add {
        #[arg(long)]
        name: String,
        /// A redirect URI; repeat for several.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Issue a client secret (client_secret_basic).
        #[arg(long)]
        confidential: bool,
        /// Do not issue refresh tokens to this client.
        #[arg(long)]
        no_refresh: bool,
        /// The only scopes this client may ever be granted (space-separated); default: any
        /// scope the resources offer, as the person consents.
        #[arg(long, value_name = "SCOPES")]
        scope: Option<String>,
        /// A resource this client serves (a resource server); with --confidential it may
        /// introspect tokens issued for it. Repeat for several.
        #[arg(long = "resource", value_name = "URI")]
        resources: Vec<String>,
    },
    /// List clients.
    List,
    /// Remove a client and revoke everything it holds.
    Remove { id: String },
}

#[derive(Subcommand)]
pub enum GrantsCommand {
    /// List active grants.
    List,
    /// Revoke a grant and its tokens.
    Revoke { id: String },
}

#[derive(Args)]
pub struct AuditFlags {
    /// Only events about this username.
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    server: ServerFlags,
    /// Only events about this client id.
    #[arg(long)]
    client: Option<String>,
    /// Only events newer than this: a duration (30m, 24h, 7d) or Unix seconds.
    #[arg(long)]
    since: Option<String>,
    /// At most this many events (newest).
    #[arg(long, default_value_t = 200)]
    limit: i64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List signing keys and their state.
    List,
    /// Publish a new signing key; it signs after the activation delay.
    Rotate,
    /// Re-seal every secret kept under the key-encryption key (signing keys, connected accounts'
    /// tokens) under a new one, in one transaction; prints what to change in the configuration.
    RotateKek {
        /// The new key: read from FILE, or created there (mode 0600) when FILE does not exist.
        /// Without it, the configured key is the new one and `fallback_secret_key_file` the old.
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<std::path::PathBuf>,
    },
}

fn parse_since(s: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(t) = s.parse::<i64>() {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().with_context(|| format!("--since {s:?}: expected 30m, 24h, 7d or Unix seconds"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--since {s:?}: expected 30m, 24h, 7d or Unix seconds"),
    };
    Ok(now - secs)
}

pub(crate) fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("Password: ").context("reading the password")?;
    let second = rpassword::prompt_password("Repeat password: ").context("reading the password")?;
    if first != second {
        bail!("the passwords do not match");
    }
    Ok(first)
}

fn time(t: i64) -> String {
    mandate_core::clock::format_utc(t)
}

pub async fn run(command: AdminCommand, config: &Config) -> anyhow::Result<()> {
    let sqlite_path = config.sqlite_path().map(|p| std::path::absolute(&p).unwrap_or(p));
    let missing = sqlite_path.as_ref().filter(|p| !p.exists());
    if let (Some(path), Some((name, what))) = (missing, command.only_reads()) {
        bail!(
            "no database at {}: `mandate {name}` {what}, so it does not create one.\n\
             Point at your database with --database sqlite://PATH, MANDATE_DATABASE, or `database` in the \
             configuration file (--config, MANDATE_CONFIG); `mandate serve` creates a new one.",
            path.display()
        );
    }
    let created = missing.cloned();
    let auth = crate::setup::build(config).await?;
    if let Some(p) = created {
        eprintln!("note: created a new database at {} (use --database to point at an existing one)", p.display());
    }
    match command {
        AdminCommand::Users(c) => users(&auth, c.command).await,
        AdminCommand::Clients(c) => clients(&auth, c.command).await,
        AdminCommand::Grants(c) => grants(&auth, c.command).await,
        AdminCommand::Audit(f) => audit(&auth, f).await,
        AdminCommand::Keys(c) => keys(&auth, c.command, config).await,
    }
}

async fn users(auth: &AuthServer, c: UsersCommand) -> anyhow::Result<()> {
    match c {
        UsersCommand::Add { name, password_stdin } => {
            let password = read_password(password_stdin)?;
            let user = auth.add_user(&name, password).await?;
            println!("added user {} ({})", user.username, user.id);
        }
        UsersCommand::List => {
            println!("{:<24} {:<24} {:<20} STATUS", "ID", "USERNAME", "CREATED");
            for u in auth.list_users().await? {
                let status = if u.disabled { "disabled" } else { "active" };
                println!("{:<24} {:<24} {:<20} {status}", u.id, u.username, time(u.created_at));
            }
        }
        UsersCommand::Disable { person } => crate::people::disable(auth, &person).await?,
        UsersCommand::Enable { person } => crate::people::enable(auth, &person).await?,
        UsersCommand::Remove { person } => crate::people::remove(auth, &person).await?,
        UsersCommand::Passwd { person, password_stdin, keep_grants } => {
            crate::people::passwd(auth, &person, password_stdin, keep_grants).await?
        }
    }
    Ok(())
}

async fn clients(auth: &AuthServer, c: ClientsCommand) -> anyhow::Result<()> {
    match c {
        ClientsCommand::Add { name, redirect_uris, confidential, no_refresh, scope, resources } => {
            let scope = scope
                .as_deref()
                .map(ScopeSet::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--scope: {}", e.description))?;
            let (client, secret) = auth
                .add_client(ClientRegistration {
                    name,
                    redirect_uris,
                    confidential,
                    allow_refresh: !no_refresh,
                    scope,
                    resources,
                })
                .await?;
            println!("client_id: {}", client.id);
            if let Some(s) = secret {
                println!("client_secret: {}", s.expose());
                println!("(the secret is shown only now; store it safely)");
            }
        }
        ClientsCommand::List => {
            println!("{:<38} {:<16} {:<28} {:<20} REDIRECT URIS", "ID", "KIND", "NAME", "AUTH");
            for c in auth.list_clients().await? {
                println!(
                    "{:<38} {:<16} {:<28} {:<20} {}",
                    c.id,
                    c.kind.as_str(),
                    c.name.chars().take(28).collect::<String>(),
                    c.auth_method.as_str(),
                    c.redirect_uris.join(" ")
                );
            }
        }
        ClientsCommand::Remove { id } => {
            if !auth.remove_client(&id).await? {
                bail!("no client with id {id}");
            }
            println!("removed client {id}; its grants are revoked");
        }
    }
    Ok(())
}

async fn grants(auth: &AuthServer, c: GrantsCommand) -> anyhow::Result<()> {
    match c {
        GrantsCommand::List => {
            let mut names = Names::new(auth);
            println!("{:<24} {:<16} {:<34} {:<38} {:<20} SCOPE", "ID", "USER", "CLIENT", "CLIENT ID", "GRANTED");
            for g in auth.list_grants().await? {
                let user = names.user(&g.user_id).await?;
                let client = names.client(&g.client_id).await?;
                println!(
                    "{:<24} {:<16} {:<34} {:<38} {:<20} {}",
                    g.id,
                    user.as_deref().unwrap_or("(unknown)"),
                    client.map(|c| c.short()).unwrap_or_else(|| "(removed)".to_owned()),
                    g.client_id,
                    time(g.created_at),
                    g.scope
                );
            }
        }
        GrantsCommand::Revoke { id } => {
            if !auth.revoke_grant_by_operator(&id).await? {
                bail!("no active grant with id {id}");
            }
            println!("revoked grant {id} and its tokens");
        }
    }
    Ok(())
}

async fn audit(auth: &AuthServer, f: AuditFlags) -> anyhow::Result<()> {
    let user_id = match &f.user {
        Some(name) => match auth.store().user_by_name(name).await? {
            Some(u) => Some(u.id),
            None => bail!("no user named {name:?}"),
        },
        None => None,
    };
    if f.limit < 1 {
        bail!("--limit must be at least 1");
    }
    let filter = AuditFilter {
        user_id,
        client_id: f.client.clone(),
        since: f.since.as_deref().map(|s| parse_since(s, auth.now())).transpose()?,
        before: None,
        limit: f.limit,
    };
    let mut names = Names::new(auth);
    for e in auth.audit_events(&filter).await? {
        let user = match &e.user_id {
            Some(id) => names.user(id).await?,
            None => None,
        };
        let client = match &e.client_id {
            Some(id) => names.client(id).await?,
            None => None,
        };
        if f.json {
            // The ids as stored, and the names beside them.
            let mut v = serde_json::to_value(&e)?;
            if let Some(map) = v.as_object_mut() {
                if let Some(u) = user {
                    map.insert("user_name".into(), u.into());
                }
                if let Some(c) = client {
                    map.insert("client_name".into(), c.name.into());
                    map.insert("client_verified".into(), c.verified.into());
                }
            }
            println!("{v}");
        } else {
            let user = match (&e.user_id, user) {
                (None, _) => "-".to_owned(),
                (Some(_), Some(name)) => name,
                (Some(id), None) => format!("(unknown: {id})"),
            };
            let client = match (&e.client_id, client) {
                (None, _) => "-".to_owned(),
                (Some(id), Some(c)) => format!("{c} client_id={id}"),
                (Some(id), None) => format!("(removed) client_id={id}"),
            };
            println!(
                "{}  {:<22} {:<14} user={user} client={client} grant={}  {}",
                time(e.at),
                e.kind,
                e.outcome,
                e.grant_id.as_deref().unwrap_or("-"),
                e.detail.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

async fn keys(auth: &AuthServer, c: KeysCommand, config: &Config) -> anyhow::Result<()> {
    match c {
        KeysCommand::List => {
            println!("{:<24} {:<6} {:<8} {:<20} SIGNS FROM", "KID", "ALG", "STATE", "CREATED");
            for k in auth.list_keys().await? {
                println!(
                    "{:<24} {:<6} {:<8} {:<20} {}",
                    k.kid,
                    k.alg,
                    k.state.as_str(),
                    time(k.created_at),
                    time(k.activates_at)
                );
            }
        }
        KeysCommand::Rotate => {
            let k = auth.rotate_key().await?;
            println!("published key {} ({}); it signs from {}", k.kid, k.alg, time(k.activates_at));
        }
        KeysCommand::RotateKek { new_key_file } => crate::people::rotate_kek(auth, config, new_key_file).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parsing() {
        assert_eq!(parse_since("30m", 10_000).unwrap(), 10_000 - 1800);
        assert_eq!(parse_since("7d", 1_000_000).unwrap(), 1_000_000 - 604_800);
        assert_eq!(parse_since("1700000000", 0).unwrap(), 1_700_000_000);
        assert!(parse_since("yesterday", 0).is_err());
        assert_eq!(time(0), "1970-01-01 00:00:00");
    }
}
