//! Local Rampart testnets: the library behind `rampart testnet`.
//!
//! # Design
//!
//! A testnet is a [`Scenario`] (TOML, `testnet/README.md`): the job (rule,
//! model, data, partition, hyper-parameters), the number of nodes and what
//! each node does (honest, a Byzantine behaviour, a crash and restart).
//! [`run::run`] writes deterministic keys and the job's [`Roster`] into the
//! report folder, starts every node as its own OS process running the same
//! `rampart node` a user runs (on 127.0.0.1, each node bootstrapping to
//! the ones already listening), reads each node's JSON-lines metrics from
//! its stdout ([`metrics::MetricLine`]), injects the scheduled crashes and
//! restarts, and measures the honest spread from parameter snapshots.
//! [`report::write`] turns what it saw into CSV files, `summary.json` and
//! plots.
//!
//! Nothing here links the node library's networking: the orchestrator only
//! manages processes and files, so a testnet exercises exactly the binary
//! that users run across machines.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod matrix;
pub mod metrics;
pub mod netns;
pub mod plot;
pub mod report;
pub mod roster;
pub mod run;
pub mod scenario;
pub mod spec;

pub use roster::{Member, Roster};
pub use scenario::{RoleSpec, Scenario};
pub use spec::{Behaviour, ByzantineFlag, DataName, JobSpec, ModelName, PartitionSpec, RuleName};
