//! The learning side of a round: which rule runs on which inputs, in which
//! order. Shared by the node and by single-process simulations, so both
//! compute the same bits.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use libp2p::PeerId;
use rampart_gar::{Aggregate, GarError, Rule};

use crate::NodeError;

/// The rule a node aggregates with: one of rampart-gar's [`Rule`]s, or a
/// rule of the user's own ([`NodeConfigBuilder::custom_rule`]).
///
/// [`NodeConfigBuilder::custom_rule`]: crate::NodeConfigBuilder::custom_rule
#[derive(Clone)]
pub(crate) enum NodeRule {
    /// A rule of rampart-gar, with its parameters.
    Builtin(Rule),
    /// A user's rule and the number of Byzantine inputs it is declared to
    /// tolerate.
    Custom {
        rule: Arc<dyn Aggregate<f32>>,
        f: usize,
    },
}

impl fmt::Debug for NodeRule {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRule::Builtin(rule) => fmt::Debug::fmt(rule, out),
            NodeRule::Custom { rule, f } => out
                .debug_struct("Custom")
                .field("name", &rule.name())
                .field("f", f)
                .finish(),
        }
    }
}

impl NodeRule {
    /// Identifier of the rule (e.g. `multi-bulyan`, or a custom rule's name).
    pub(crate) fn id(&self) -> &'static str {
        match self {
            NodeRule::Builtin(rule) => rule.id(),
            NodeRule::Custom { rule, .. } => rule.name(),
        }
    }

    /// The declared number of Byzantine inputs (0 for rules without one).
    pub(crate) fn f(&self) -> usize {
        match self {
            NodeRule::Builtin(rule) => rule.f().unwrap_or(0),
            NodeRule::Custom { f, .. } => *f,
        }
    }

    /// The fewest inputs a round may be aggregated with: all but f.
    pub(crate) fn quorum(&self, n: usize) -> usize {
        all_but(self.f(), n)
    }

    /// Checks the rule for a full roster of `n`.
    pub(crate) fn check(&self, n: usize) -> Result<(), GarError> {
        match self {
            NodeRule::Builtin(rule) => rule.check(n),
            NodeRule::Custom { rule, f } => {
                if *f >= n {
                    return Err(GarError::Precondition {
                        rule: rule.name(),
                        n,
                        f: *f,
                        m: None,
                        bound: "f < n",
                    });
                }
                rule.check(n)
            }
        }
    }

    /// Whether `have` of the roster's `n` inputs may be aggregated after the
    /// round's timeout: at least the quorum, and the rule accepts that many.
    pub(crate) fn can_aggregate(&self, n: usize, have: usize) -> bool {
        have >= self.quorum(n)
            && match self {
                NodeRule::Builtin(rule) => effective_rule(rule, n, have).check(have).is_ok(),
                NodeRule::Custom { rule, .. } => rule.check(have).is_ok(),
            }
    }

    /// Aggregates one round's inputs, sorted by sender PeerId (the map's
    /// order), out of a roster of `n`.
    pub(crate) fn aggregate<V: AsRef<[f32]>>(
        &self,
        n: usize,
        inputs: &BTreeMap<PeerId, V>,
    ) -> Result<Vec<f32>, NodeError> {
        match self {
            NodeRule::Builtin(rule) => Ok(aggregate_inputs(rule, n, inputs)?),
            NodeRule::Custom { rule, .. } => {
                let rows: Vec<&[f32]> = inputs.values().map(AsRef::as_ref).collect();
                let expected = rampart_gar::validate(&rows)?;
                let output = rule.aggregate(&rows)?.output;
                if output.len() != expected {
                    return Err(NodeError::RuleOutput {
                        rule: rule.name(),
                        expected,
                        got: output.len(),
                    });
                }
                Ok(output)
            }
        }
    }
}

/// The rule applied when only `received` of the roster's `n` inputs arrived:
/// every missing input is counted as one of the declared f Byzantine ones
/// (f′ = f − missing, floored at 0), which keeps the rule's precondition
/// n′ ≥ g(f′) whenever n ≥ g(f) held. An explicit m that no longer fits is
/// replaced by the rule's default.
pub fn effective_rule(rule: &Rule, n: usize, received: usize) -> Rule {
    let missing = n.saturating_sub(received);
    if missing == 0 {
        return rule.clone();
    }
    let cut = |f: usize| f.saturating_sub(missing);
    let mut r = match rule {
        Rule::TrimmedMean { f } => Rule::TrimmedMean { f: cut(*f) },
        Rule::Krum { f } => Rule::Krum { f: cut(*f) },
        Rule::MultiKrum { f, m } => Rule::MultiKrum { f: cut(*f), m: *m },
        Rule::Bulyan { f } => Rule::Bulyan { f: cut(*f) },
        Rule::MultiBulyan { f, m, phase } => Rule::MultiBulyan {
            f: cut(*f),
            m: *m,
            phase: *phase,
        },
        Rule::MultiBulyanAggregathor { f, m } => Rule::MultiBulyanAggregathor { f: cut(*f), m: *m },
        Rule::Mda { f } => Rule::Mda { f: cut(*f) },
        other => other.clone(),
    };
    if r.check(received).is_err() {
        match &mut r {
            Rule::MultiKrum { m, .. }
            | Rule::MultiBulyan { m, .. }
            | Rule::MultiBulyanAggregathor { m, .. } => *m = None,
            _ => {}
        }
    }
    r
}

/// The fewest inputs a round may be aggregated with after its timeout: all
/// but the declared f.
pub fn quorum(rule: &Rule, n: usize) -> usize {
    all_but(rule.f().unwrap_or(0), n)
}

/// All of `n` but `f`, and at least one: the quorum formula, in one place.
fn all_but(f: usize, n: usize) -> usize {
    n.saturating_sub(f).max(1)
}

/// Aggregates one round's inputs: sorted by sender PeerId (the map's order),
/// with [`effective_rule`] for the number received out of `n`.
pub fn aggregate_inputs<V: AsRef<[f32]>>(
    rule: &Rule,
    n: usize,
    inputs: &BTreeMap<PeerId, V>,
) -> Result<Vec<f32>, GarError> {
    let rows: Vec<&[f32]> = inputs.values().map(AsRef::as_ref).collect();
    let rule = effective_rule(rule, n, rows.len());
    Aggregate::<f32>::aggregate(&rule, &rows).map(|a| a.output)
}

/// One drift-control step over the models received (the node's own
/// included), sorted by sender PeerId (the map's order): returns the
/// coordinate-wise median of the models, which replaces the node's
/// parameters, and the spread of the models before the step.
///
/// The spread is the largest pairwise L2 distance among the
/// `models.len() − f` models closest (in L2) to the median, ties broken by
/// sender order. A node cannot tell which models are honest; with at most f
/// Byzantine models among at least 2f + 1, the median lies inside the honest
/// models' range in every coordinate, every kept model is no farther from
/// the median than some honest model, and a model far off (a wild Byzantine
/// one) is among the f dropped. With f = 0 it is exactly the largest
/// distance between any two models received.
///
/// ```
/// use std::collections::BTreeMap;
/// use libp2p::PeerId;
///
/// let mut models = BTreeMap::new();
/// models.insert(PeerId::random(), vec![1.0f32, 2.0]);
/// models.insert(PeerId::random(), vec![1.0, 3.0]);
/// models.insert(PeerId::random(), vec![1e9, -1e9]); // a wild model
/// let (median, spread) = rampart_node::drift_step(&models, 1).unwrap();
/// assert_eq!(median, vec![1.0, 2.0]);
/// assert_eq!(spread, 1.0); // the wild model is not measured
/// ```
pub fn drift_step<V: AsRef<[f32]>>(
    models: &BTreeMap<PeerId, V>,
    f: usize,
) -> Result<(Vec<f32>, f64), GarError> {
    let rows: Vec<&[f32]> = models.values().map(AsRef::as_ref).collect();
    let median = Aggregate::<f32>::aggregate(&Rule::Median, &rows)?.output;
    let mut by_distance: Vec<(f64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (l2(r, &median), i))
        .collect();
    by_distance.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let keep = rows.len().saturating_sub(f).max(1);
    let kept: Vec<&[f32]> = by_distance[..keep].iter().map(|&(_, i)| rows[i]).collect();
    let mut spread = 0.0f64;
    for (i, a) in kept.iter().enumerate() {
        for b in &kept[i + 1..] {
            spread = spread.max(l2(a, b));
        }
    }
    Ok((median, spread))
}

/// L2 distance in f64 (NaN counts as infinitely far).
fn l2(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum();
    if s.is_nan() { f64::INFINITY } else { s.sqrt() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_gar::CoordinatePhase;

    #[test]
    fn missing_inputs_count_against_f() {
        let mb = Rule::MultiBulyan {
            f: 1,
            m: Some(4),
            phase: CoordinatePhase::MedianClosest,
        };
        assert_eq!(effective_rule(&mb, 7, 7), mb);
        let six = effective_rule(&mb, 7, 6);
        assert_eq!(six.f(), Some(0));
        assert!(six.check(6).is_ok());
        assert_eq!(quorum(&mb, 7), 6);
        assert_eq!(quorum(&Rule::Average, 5), 5);
    }

    #[test]
    fn drift_step_keeps_identical_models_and_ignores_outliers() {
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let same = vec![0.1f32, -3.5, 7.25, f32::MIN_POSITIVE];
        // Identical models, even and odd counts: the median is their bits.
        for k in [4usize, 5] {
            let m: BTreeMap<PeerId, Vec<f32>> =
                peers[..k].iter().map(|p| (*p, same.clone())).collect();
            let (med, spread) = drift_step(&m, 1).unwrap();
            assert_eq!(
                med.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                same.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(spread, 0.0);
        }
        // Four honest models within 0.5 of each other and a wild one: the
        // median stays in the honest range, the spread ignores the outlier.
        let mut m = BTreeMap::new();
        for (i, p) in peers[..4].iter().enumerate() {
            m.insert(*p, vec![i as f32 * 0.1, 1.0 + i as f32 * 0.1]);
        }
        m.insert(peers[4], vec![1e30, f32::NAN]);
        let (med, spread) = drift_step(&m, 1).unwrap();
        assert!((0.0..=0.3).contains(&med[0]) && (1.0..=1.3).contains(&med[1]));
        assert!(spread > 0.4 && spread < 0.45, "{spread}");
        // With f = 0 every model is measured.
        assert_eq!(drift_step(&m, 0).unwrap().1, f64::INFINITY);
    }

    #[test]
    fn aggregation_follows_peer_order_not_insertion() {
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        for (i, p) in peers.iter().enumerate() {
            a.insert(*p, vec![i as f32 * 0.1, 1.0 / (i as f32 + 1.0)]);
        }
        for (i, p) in peers.iter().enumerate().rev() {
            b.insert(*p, vec![i as f32 * 0.1, 1.0 / (i as f32 + 1.0)]);
        }
        let rule = Rule::MultiBulyan {
            f: 0,
            m: None,
            phase: CoordinatePhase::MedianClosest,
        };
        let x = aggregate_inputs(&rule, 5, &a).unwrap();
        let y = aggregate_inputs(&rule, 5, &b).unwrap();
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
