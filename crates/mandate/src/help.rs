//! `mandate --help`: the commands listed in four groups. clap lists subcommands under one
//! heading, so the top-level help uses a template whose command list is rendered here from the
//! four command enums themselves: a command lands in the group of the enum that declares it.

use clap::builder::StyledStr;
use clap::{CommandFactory, Subcommand};

use crate::client::ClientCommand;
use crate::developer::DevCommand;
use crate::{Cli, ServerCommand, admin::AdminCommand};

/// The groups, in the order the help lists them.
fn groups() -> [(&'static str, clap::Command); 4] {
    [
        ("Server commands", ServerCommand::augment_subcommands(clap::Command::new("server"))),
        ("Admin commands (on the server's database)", AdminCommand::augment_subcommands(clap::Command::new("admin"))),
        ("Agent commands (connect to any MCP server)", ClientCommand::augment_subcommands(clap::Command::new("agent"))),
        ("Developer tools", DevCommand::augment_subcommands(clap::Command::new("developer"))),
    ]
}

/// The names of the visible commands in each group.
#[cfg(test)]
fn grouped_names() -> Vec<(&'static str, Vec<String>)> {
    groups()
        .into_iter()
        .map(|(heading, cmd)| {
            let names = cmd.get_subcommands().filter(|c| !c.is_hide_set()).map(|c| c.get_name().to_owned()).collect();
            (heading, names)
        })
        .collect()
}

/// `mandate`'s command line, its help listing the commands by group.
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let styles = cmd.get_styles().clone();
    let (header, literal) = (styles.get_header(), styles.get_literal());
    let groups = groups();
    let width = groups
        .iter()
        .flat_map(|(_, c)| c.get_subcommands().filter(|c| !c.is_hide_set()).map(|c| c.get_name().len()))
        .max()
        .unwrap_or(0);
    let mut list = String::new();
    for (heading, group) in &groups {
        list.push_str(&format!("{header}{heading}:{header:#}\n"));
        for c in group.get_subcommands().filter(|c| !c.is_hide_set()) {
            let about = c.get_about().map(StyledStr::to_string).unwrap_or_default();
            let name = c.get_name();
            list.push_str(&format!("  {literal}{name}{literal:#}{:pad$}  {about}\n", "", pad = width - name.len()));
        }
        list.push('\n');
    }
    // `{` and `}` in descriptions would read as template tags.
    let list = list.replace('{', "(").replace('}', ")");
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{list}{header}Options:{header:#}\n{{options}}{{after-help}}"
    );
    cmd.help_template(template).after_help(
        "The server and admin commands read --config, --database, --public-url and\n\
         --secret-key-file (before or after the command name); the agent commands do not.\n\
         `mandate COMMAND --help` describes a command.",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    /// Every visible command is in exactly one group, and the help lists each under its group.
    #[test]
    fn the_help_lists_every_command_once_under_its_group() {
        let all: Vec<String> = command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
            .map(|c| c.get_name().to_owned())
            .collect();
        let mut grouped: Vec<String> = grouped_names().into_iter().flat_map(|(_, n)| n).collect();
        grouped.sort();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(grouped, sorted);
        let help = command().render_help().to_string();
        for (heading, names) in grouped_names() {
            let section = help.split(&format!("{heading}:\n")).nth(1).expect(heading);
            let section = section.split("\n\n").next().unwrap();
            let listed: Vec<&str> = section.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
            assert_eq!(listed, names, "{heading}");
        }
        for (group, names) in [
            ("Server commands", ["serve", "migrate", "resources", "providers"].as_slice()),
            ("Admin commands (on the server's database)", &["users", "clients", "grants", "audit", "keys"]),
            (
                "Agent commands (connect to any MCP server)",
                &["login", "tools", "call", "logout", "connections", "bridge"],
            ),
            ("Developer tools", &["new", "dev", "doctor"]),
        ] {
            let found = grouped_names().into_iter().find(|(h, _)| *h == group).unwrap().1;
            assert_eq!(found, names, "{group}");
        }
    }
}
