//! The learning side of a round: which rule runs on which inputs, in which
//! order. Shared by the node and by single-process simulations, so both
//! compute the same bits.

use std::collections::BTreeMap;

use libp2p::PeerId;
use rampart_gar::{Aggregate, GarError, Rule};

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
    n.saturating_sub(rule.f().unwrap_or(0)).max(1)
}

/// Aggregates one round's inputs: sorted by sender PeerId (the map's order),
/// with [`effective_rule`] for the number received out of `n`.
pub fn aggregate_inputs(
    rule: &Rule,
    n: usize,
    inputs: &BTreeMap<PeerId, Vec<f32>>,
) -> Result<Vec<f32>, GarError> {
    let rows: Vec<&[f32]> = inputs.values().map(Vec::as_slice).collect();
    let rule = effective_rule(rule, n, rows.len());
    Aggregate::<f32>::aggregate(&rule, &rows).map(|a| a.output)
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
