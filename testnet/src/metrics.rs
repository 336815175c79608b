//! The JSON lines a node writes with `rampart node --metrics`, one object
//! per line, tagged by `kind`. The testnet reads them back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One line of a node's metrics output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricLine {
    /// The node is configured and starts.
    Start {
        /// Milliseconds since the node process started.
        t_ms: u64,
        /// This node's PeerId.
        peer: String,
        /// Its behaviour (`honest`, `alie`, `ipm:tau=10`, …).
        role: String,
        /// Job id (hex).
        job: String,
        /// Model dimension d.
        dim: usize,
        /// Roster size n.
        n: usize,
        /// Rounds of the job.
        rounds: u64,
    },
    /// An event of the node library, as it serialises itself
    /// (`{"RoundCompleted": {...}}`, `{"Listening": {...}}`, …).
    Event {
        /// Milliseconds since the node process started.
        t_ms: u64,
        /// The event.
        event: serde_json::Value,
    },
    /// Test-set evaluation after applying round `round`.
    Eval {
        /// Milliseconds since the node process started.
        t_ms: u64,
        /// The round just applied (0-based).
        round: u64,
        /// Test accuracy as a fraction.
        accuracy: f64,
        /// Mean test loss (NaN for a diverged model).
        #[serde(deserialize_with = "nan_if_null")]
        loss: f64,
        /// Where the parameters of that round were written, if asked
        /// (`--snapshot-dir`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
    },
    /// The node finished its rounds.
    Final {
        /// Milliseconds since the node process started.
        t_ms: u64,
        /// Rounds done.
        rounds: u64,
        /// Final test accuracy.
        accuracy: f64,
        /// Final test loss (NaN for a diverged model).
        #[serde(deserialize_with = "nan_if_null")]
        loss: f64,
        /// SHA-256 (hex) of the final flat parameters (f32 little-endian).
        model_hash: String,
        /// Refused inputs per reason over the whole run.
        counters: BTreeMap<String, u64>,
        /// Ignored inputs per reason over the whole run (too old, too far
        /// ahead, duplicates, from excluded peers). Absent in lines of
        /// nodes that predate it.
        #[serde(default)]
        ignored: BTreeMap<String, u64>,
        /// Peers excluded.
        excluded: Vec<String>,
        /// Application bytes this node handed to libp2p over the run (the
        /// sum of `RoundCompleted.bytes_sent`; no transport overhead).
        bytes_sent: u64,
    },
}

/// Reads `null` as NaN: JSON has no NaN or ±∞, so the node's writer puts
/// `null` for them (the loss of a diverged model), and the line must still
/// be read (it carries the accuracy and the model hash).
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The `RoundCompleted` fields the testnet uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundInfo {
    /// The round.
    pub round: u64,
    /// Local mini-batch loss.
    pub loss: Option<f64>,
    /// Inputs aggregated.
    pub accepted: u64,
    /// Inputs rejected during the round.
    pub rejected: u64,
    /// Excluded peers so far.
    pub excluded: Vec<String>,
    /// Round duration (ms).
    pub total_ms: f64,
    /// Honest spread if the node measured it.
    pub honest_spread: Option<f64>,
    /// Application bytes sent during the round.
    pub bytes_sent: u64,
}

/// Reads a `RoundCompleted` event value, if it is one.
pub fn round_completed(event: &serde_json::Value) -> Option<RoundInfo> {
    let rc = event.get("RoundCompleted")?;
    let total = rc.get("timings").and_then(|t| t.get("total"));
    let total_ms = total
        .map(|t| {
            let s = t.get("secs").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let n = t.get("nanos").and_then(|v| v.as_f64()).unwrap_or(0.0);
            s * 1e3 + n / 1e6
        })
        .unwrap_or(0.0);
    Some(RoundInfo {
        round: rc.get("round")?.as_u64()?,
        loss: rc.get("loss").and_then(|v| v.as_f64()),
        accepted: rc.get("accepted").and_then(|v| v.as_u64()).unwrap_or(0),
        rejected: rc.get("rejected").and_then(|v| v.as_u64()).unwrap_or(0),
        excluded: rc
            .get("excluded")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        total_ms,
        honest_spread: rc.get("honest_spread").and_then(|v| v.as_f64()),
        bytes_sent: rc.get("bytes_sent").and_then(|v| v.as_u64()).unwrap_or(0),
    })
}

/// The address of a `Listening` event, if it is one.
pub fn listening(event: &serde_json::Value) -> Option<String> {
    event
        .get("Listening")?
        .get("addr")?
        .as_str()
        .map(str::to_owned)
}

/// The `InputRejected` reason, if it is one.
pub fn rejected_reason(event: &serde_json::Value) -> Option<String> {
    let r = event.get("InputRejected")?.get("reason")?;
    r.as_str()
        .map(str::to_owned)
        .or_else(|| Some(r.to_string()))
}

/// The error of a `Failed` event, if it is one.
pub fn failed(event: &serde_json::Value) -> Option<String> {
    let e = event.get("Failed")?.get("error")?;
    Some(e.as_str().map_or_else(|| e.to_string(), str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::MetricLine;

    #[test]
    fn a_diverged_models_lines_are_still_read() {
        let eval = MetricLine::Eval {
            t_ms: 1,
            round: 4,
            accuracy: 0.098,
            loss: f64::NAN,
            snapshot: None,
        };
        let text = serde_json::to_string(&eval).unwrap();
        assert!(text.contains("\"loss\":null"), "{text}");
        match serde_json::from_str::<MetricLine>(&text).unwrap() {
            MetricLine::Eval { accuracy, loss, .. } => {
                assert_eq!(accuracy, 0.098);
                assert!(loss.is_nan());
            }
            other => panic!("{other:?}"),
        }
        let fin = r#"{"kind":"final","t_ms":9,"rounds":3,"accuracy":0.1,"loss":null,"model_hash":"ab","counters":{},"excluded":[],"bytes_sent":0}"#;
        assert!(matches!(
            serde_json::from_str::<MetricLine>(fin).unwrap(),
            MetricLine::Final { loss, .. } if loss.is_nan()
        ));
    }
}
