//! The report folder: per-node CSV, `summary.json`, plots, and the table
//! printed at the end of a run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::run::RunRecord;

/// Minimum, mean and maximum of a set of fractions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Smallest value.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Largest value.
    pub max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Rounding can put the mean of equal values a hair above them
        // (7 × 0.78225 / 7 = 0.7822500000000001), which then prints as
        // 78.23% next to a minimum of 78.22%: keep it within [min, max].
        let mean = (values.iter().sum::<f64>() / values.len() as f64).clamp(min, max);
        Some(Self { min, mean, max })
    }
}

/// One node in `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeSummary {
    /// Node index.
    pub index: usize,
    /// PeerId.
    pub peer: String,
    /// Behaviour (`honest`, `alie`, …).
    pub role: String,
    /// Final test accuracy (fraction); the last evaluation if the node did
    /// not finish.
    pub accuracy: Option<f64>,
    /// SHA-256 of the final parameters.
    pub model_hash: Option<String>,
    /// Rounds completed.
    pub rounds: u64,
    /// Whether the node finished its rounds.
    pub finished: bool,
    /// Process starts (1 + restarts).
    pub starts: u32,
    /// Why the node failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Aggregation rule.
    pub rule: String,
    /// Nodes.
    pub n: usize,
    /// Declared f.
    pub f: usize,
    /// Rounds of the job.
    pub rounds: u64,
    /// Rounds every honest node completed.
    pub rounds_completed: u64,
    /// Byzantine behaviours, one entry per Byzantine node.
    pub attacks: Vec<String>,
    /// Final test accuracy of the honest nodes (fractions).
    pub honest_accuracy: Stats,
    /// Inputs refused by honest nodes, per reason (summed over nodes).
    pub rejected: BTreeMap<String, u64>,
    /// Inputs honest nodes ignored (too old, too far ahead, duplicates,
    /// from excluded peers), per reason (summed over nodes).
    pub ignored: BTreeMap<String, u64>,
    /// Peers excluded by at least one honest node.
    pub excluded: Vec<String>,
    /// Largest distance between honest models at the last measured round.
    pub honest_spread: Option<f64>,
    /// Largest honest spread over all measured rounds.
    pub honest_spread_max: Option<f64>,
    /// Application bytes all nodes handed to libp2p (pushes, gossip, pulls;
    /// no transport overhead), as the nodes measured them.
    pub bytes_sent: u64,
    /// The dissemination lower bound for the rounds completed: every node
    /// sends its gradient to every other once, n · (n − 1) · d · w per round,
    /// w the bytes per value of the job's gradient encoding (4 for f32, 2
    /// for bf16).
    pub bytes_bound: u64,
    /// Whether every honest node finished and identical hashes say so.
    pub honest_models_identical: bool,
    /// Wall time (s).
    pub wall_s: f64,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// Per node.
    pub nodes: Vec<NodeSummary>,
}

/// Adds the non-zero counts of `from` to `into`, reason by reason.
fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, &v) in from {
        if v > 0 {
            *into.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// Builds the summary of a run.
pub fn summarize(rec: &RunRecord) -> Summary {
    let s = &rec.scenario;
    let honest: Vec<_> = rec.nodes.iter().filter(|n| !n.byzantine).collect();
    let final_acc = |n: &crate::run::NodeRecord| {
        n.final_line
            .as_ref()
            .map(|f| f.accuracy)
            .or_else(|| n.evals.last().map(|e| e.1))
    };
    let accs: Vec<f64> = honest.iter().filter_map(|n| final_acc(n)).collect();
    let mut rejected = BTreeMap::new();
    let mut ignored = BTreeMap::new();
    let mut excluded = BTreeSet::new();
    for n in &honest {
        let refused = n.final_line.as_ref().map_or(&n.rejected, |f| &f.counters);
        add_counts(&mut rejected, refused);
        if let Some(f) = &n.final_line {
            add_counts(&mut ignored, &f.ignored);
            excluded.extend(f.excluded.iter().cloned());
        }
        if let Some(r) = n.rounds.last() {
            excluded.extend(r.excluded.iter().cloned());
        }
    }
    let rounds_completed = honest
        .iter()
        .map(|n| n.rounds.last().map_or(0, |r| r.round + 1))
        .min()
        .unwrap_or(0);
    let hashes: BTreeSet<_> = honest
        .iter()
        .filter(|n| !n.crashes)
        .map(|n| n.final_line.as_ref().map(|f| f.model_hash.clone()))
        .collect();
    let identical = hashes.len() == 1 && hashes.iter().all(Option::is_some);
    Summary {
        scenario: s.name.clone(),
        rule: s.rule.name().to_owned(),
        n: s.nodes,
        f: s.f,
        rounds: s.rounds,
        rounds_completed,
        attacks: s.attacks().unwrap_or_default(),
        honest_accuracy: Stats::of(&accs).unwrap_or_default(),
        rejected,
        ignored,
        excluded: excluded.into_iter().collect(),
        honest_spread: rec.spread.values().next_back().copied(),
        honest_spread_max: rec.spread.values().copied().reduce(f64::max),
        bytes_sent: rec
            .nodes
            .iter()
            .flat_map(|n| n.rounds.iter().map(|r| r.bytes_sent))
            .sum(),
        bytes_bound: {
            let d = rec.nodes.iter().map(|n| n.dim).max().unwrap_or(0) as u64;
            let n = s.nodes as u64;
            let width = s.encoding.wire().width() as u64;
            rounds_completed * n * n.saturating_sub(1) * d * width
        },
        honest_models_identical: identical,
        wall_s: rec.wall.as_secs_f64(),
        aborted: rec.aborted.clone(),
        nodes: rec
            .nodes
            .iter()
            .map(|n| NodeSummary {
                index: n.index,
                peer: n.peer.clone(),
                role: n.role.clone(),
                accuracy: final_acc(n),
                model_hash: n.final_line.as_ref().map(|f| f.model_hash.clone()),
                rounds: n.rounds.last().map_or(0, |r| r.round + 1),
                finished: n.final_line.is_some(),
                starts: n.starts,
                failure: n.failure.clone(),
            })
            .collect(),
    }
}

/// Writes the report folder: `summary.json`, `metrics/node-<i>.csv`,
/// `metrics/spread.csv`, `accuracy.{png,svg}`, `spread.{png,svg}`.
pub fn write(rec: &RunRecord, out: &Path) -> Result<Summary> {
    let summary = summarize(rec);
    let dir = out.join("metrics");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for n in &rec.nodes {
        let evals: BTreeMap<u64, (f64, f64)> =
            n.evals.iter().map(|&(r, a, l)| (r, (a, l))).collect();
        let mut csv = String::from(
            "round,loss,accepted,rejected,excluded,round_ms,bytes_sent,test_accuracy,test_loss\n",
        );
        for r in &n.rounds {
            let (acc, tl) = evals
                .get(&r.round)
                .map(|(a, l)| (a.to_string(), l.to_string()))
                .unwrap_or_default();
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{:.3},{},{acc},{tl}",
                r.round,
                r.loss.map(|l| l.to_string()).unwrap_or_default(),
                r.accepted,
                r.rejected,
                r.excluded.len(),
                r.total_ms,
                r.bytes_sent,
            );
        }
        let p = dir.join(format!("node-{}.csv", n.index));
        std::fs::write(&p, csv).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let mut csv = String::from("round,honest_spread\n");
    for (r, d) in &rec.spread {
        let _ = writeln!(csv, "{r},{d}");
    }
    std::fs::write(dir.join("spread.csv"), csv)?;
    let json = serde_json::to_string_pretty(&summary).context("cannot encode the summary")?;
    std::fs::write(out.join("summary.json"), json + "\n")?;
    crate::plot::accuracy(rec, out)?;
    crate::plot::spread(rec, out)?;
    Ok(summary)
}

/// The summary as a text table.
pub fn table(s: &Summary) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} — rule {}, n = {}, f = {}, {} of {} rounds, {:.1} s",
        s.scenario, s.rule, s.n, s.f, s.rounds_completed, s.rounds, s.wall_s
    );
    let _ = writeln!(
        t,
        "{:<5} {:<54} {:<18} {:>9} {:>7}  model",
        "node", "peer", "role", "accuracy", "rounds"
    );
    for n in &s.nodes {
        let acc = n
            .accuracy
            .map(|a| format!("{:.2}%", 100.0 * a))
            .unwrap_or_else(|| "-".into());
        let hash = n
            .model_hash
            .as_deref()
            .map(|h| h.get(..12).unwrap_or(h).to_owned())
            .unwrap_or_else(|| "-".into());
        let status = match (&n.failure, n.finished) {
            (Some(f), _) => format!("  FAILED: {f}"),
            (None, false) => "  (not finished)".into(),
            _ => String::new(),
        };
        let _ = writeln!(
            t,
            "{:<5} {:<54} {:<18} {:>9} {:>7}  {hash}{status}",
            n.index, n.peer, n.role, acc, n.rounds
        );
    }
    let h = &s.honest_accuracy;
    let _ = writeln!(
        t,
        "honest accuracy: min {:.2}%  mean {:.2}%  max {:.2}%   identical honest models: {}",
        100.0 * h.min,
        100.0 * h.mean,
        100.0 * h.max,
        if s.honest_models_identical {
            "yes"
        } else {
            "no"
        }
    );
    let list = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(
        t,
        "rejected inputs: {}   ignored inputs: {}   excluded peers: {}   honest spread: {}   bytes sent: {} ({:.3} x the bound)",
        list(&s.rejected),
        list(&s.ignored),
        s.excluded.len(),
        s.honest_spread.map_or("-".into(), |d| format!("{d:.3e}")),
        s.bytes_sent,
        s.bytes_sent as f64 / s.bytes_bound.max(1) as f64
    );
    if let Some(a) = &s.aborted {
        let _ = writeln!(t, "run stopped early: {a}");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn the_mean_of_equal_values_is_that_value() {
        let s = Stats::of(&[0.78225; 7]).unwrap();
        assert_eq!((s.min, s.mean, s.max), (0.78225, 0.78225, 0.78225));
        assert_eq!(format!("{:.2}", 100.0 * s.mean), "78.22");
    }
}
