//! `rampart`: the command-line tool of the Rampart framework.
//!
//! One binary with a subcommand per task. `main` only parses flags and
//! dispatches; each subcommand lives in its own module with a `run` function
//! returning `anyhow::Result`. Every failure, including clap's usage errors,
//! ends the process with exit status 2 and a single `error: ...` line on
//! stderr, so that scripts can report it as is.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

mod aggregate;
mod data;
mod json;
mod keygen;
mod node;
mod npy;
mod roster;
mod testnet;

/// Rampart: Byzantine-robust peer-to-peer learning.
#[derive(Parser, Debug)]
#[command(name = "rampart", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Aggregate n vectors from a .npy or .json file with one robust rule and print the result
    /// as JSON.
    Aggregate(aggregate::AggregateArgs),
    /// Data sets: list them, fetch MNIST / Fashion-MNIST with checksum verification, verify a
    /// directory.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Create a new Ed25519 node key file (mode 0600) and print its PeerId.
    Keygen(keygen::KeygenArgs),
    /// Run one member of a training job (see `rampart node --help`).
    Node(Box<node::NodeArgs>),
    /// A job's roster file: create it, add members, print its job id.
    Roster {
        #[command(subcommand)]
        command: roster::RosterCommand,
    },
    /// Local testnets: every node a real process on 127.0.0.1, with a report.
    Testnet {
        #[command(subcommand)]
        command: testnet::TestnetCommand,
    },
}

/// Exit status of every failure.
const FAILURE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if !err.use_stderr()
                || err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // --help and --version go to stdout with status 0; a bare `rampart`
            // prints the help on stderr with status 2.
            err.exit();
        }
        Err(err) => return fail(&one_line_usage_error(&err.to_string())),
    };
    let result = match &cli.command {
        Command::Aggregate(args) => aggregate::run(args),
        Command::Data { command } => data::run(command),
        Command::Keygen(args) => keygen::run(args),
        Command::Node(args) => node::run(args),
        Command::Roster { command } => roster::run(command),
        Command::Testnet { command } => testnet::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&format!("error: {err:#}")),
    }
}

/// Prints `line` on stderr (flattened to one line) and returns status 2.
fn fail(line: &str) -> ExitCode {
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    // Nothing is left to do if stderr itself is gone.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    ExitCode::from(FAILURE)
}

/// Condenses clap's multi-line usage error to its message: the lines before
/// the usage and help pointers, joined.
fn one_line_usage_error(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_and_flag_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                assert!(!help.trim().is_empty(), "`{path}`: {id} has no help line");
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                assert!(sub.get_about().is_some(), "`{name}` has no help line");
                walk(sub, &name);
            }
        }
        walk(&Cli::command(), "rampart");
    }

    #[test]
    fn usage_errors_become_one_line() {
        let err = Cli::try_parse_from(["rampart", "aggregate", "--rule", "foo", "--input", "x"])
            .unwrap_err();
        let line = one_line_usage_error(&err.to_string());
        assert!(
            line.starts_with("error: invalid value 'foo' for '--rule"),
            "{line}"
        );
        assert!(line.contains("multi-bulyan"), "{line}");
        assert!(!line.contains('\n'));
    }
}
