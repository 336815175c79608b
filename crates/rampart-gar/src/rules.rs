//! The rules of the specification, as free functions over `&[&[T]]`.
//!
//! Inputs are already validated (non-empty, one dimension) by the caller in
//! [`crate::rule`]; parameters are checked here, before any work.

use rayon::prelude::*;

use crate::coord::{Averages, CoordOp, Rows, coordinatewise};
use crate::distance::DistanceMatrix;
use crate::order::{cmp_c5, naive_sum, norm_c4, rank_by_score, sort_c5};
use crate::rule::{
    Aggregation, BulyanStep, CoordinatePhase, Details, GeometricInit, Mixed, MultiBulyanStep,
};
use crate::{Float, GarError};

/// Coordinates per parallel task for the simple coordinate loops.
const TASK: usize = 8192;
/// Largest number of subsets minimum-diameter averaging will enumerate.
pub(crate) const MDA_SUBSET_LIMIT: u128 = 5_000_000;

pub(crate) fn precondition(
    rule: &'static str,
    n: usize,
    f: usize,
    m: Option<usize>,
    bound: &'static str,
) -> GarError {
    GarError::Precondition {
        rule,
        n,
        f,
        m,
        bound,
    }
}

/// Average of `rows[i]`, `i ∈ idx`, summed in ascending index order in `f64`.
pub(crate) fn average_of<T: Float>(rows: &[&[T]], idx: &[usize]) -> Vec<T> {
    let mut members = idx.to_vec();
    members.sort_unstable();
    let d = rows[0].len();
    let cnt = members.len() as f64;
    let mut out = vec![T::ZERO; d];
    out.par_chunks_mut(TASK).enumerate().for_each(|(t, chunk)| {
        average_chunk(rows, &members, t * TASK, chunk, cnt);
    });
    out
}

fn average_chunk<T: Float>(rows: &[&[T]], members: &[usize], c0: usize, chunk: &mut [T], cnt: f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            #[allow(unsafe_code)]
            unsafe {
                average_chunk_avx2(rows, members, c0, chunk, cnt)
            };
            return;
        }
    }
    average_chunk_generic(rows, members, c0, chunk, cnt);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn average_chunk_avx2<T: Float>(
    rows: &[&[T]],
    members: &[usize],
    c0: usize,
    chunk: &mut [T],
    cnt: f64,
) {
    average_chunk_generic(rows, members, c0, chunk, cnt);
}

/// Members outer, coordinates inner, over an `f64` buffer that stays in L1.
#[inline(always)]
fn average_chunk_generic<T: Float>(
    rows: &[&[T]],
    members: &[usize],
    c0: usize,
    chunk: &mut [T],
    cnt: f64,
) {
    const BLK: usize = 1024;
    let mut acc = [0.0f64; BLK];
    let mut b0 = 0;
    while b0 < chunk.len() {
        let len = BLK.min(chunk.len() - b0);
        let acc = &mut acc[..len];
        acc.fill(0.0);
        for &i in members {
            for (a, x) in acc.iter_mut().zip(&rows[i][c0 + b0..c0 + b0 + len]) {
                *a += x.to_f64();
            }
        }
        for (o, a) in chunk[b0..b0 + len].iter_mut().zip(acc.iter()) {
            *o = T::from_f64(a / cnt);
        }
        b0 += len;
    }
}

pub(crate) fn average<T: Float>(rows: &[&[T]]) -> Aggregation<T> {
    let all: Vec<usize> = (0..rows.len()).collect();
    Aggregation::plain(average_of(rows, &all))
}

pub(crate) fn median<T: Float>(rows: &[&[T]]) -> Aggregation<T> {
    Aggregation::plain(coordinatewise(&Rows(rows), rows[0].len(), CoordOp::Median))
}

pub(crate) fn check_trimmed_mean(n: usize, f: usize) -> Result<(), GarError> {
    if n < 2 * f + 1 {
        return Err(precondition("trimmed-mean", n, f, None, "n >= 2f + 1"));
    }
    Ok(())
}

pub(crate) fn trimmed_mean<T: Float>(rows: &[&[T]], f: usize) -> Result<Aggregation<T>, GarError> {
    check_trimmed_mean(rows.len(), f)?;
    Ok(Aggregation::plain(coordinatewise(
        &Rows(rows),
        rows[0].len(),
        CoordOp::TrimmedMean { f },
    )))
}

/// Krum score of every member, computed inside `members` with `q` neighbours
/// (`f64::NAN` for non-members).
fn krum_scores(dm: &DistanceMatrix, members: &[usize], q: usize) -> Vec<f64> {
    let mut scores = vec![f64::NAN; dm.len()];
    let mut ds = Vec::with_capacity(members.len());
    for &i in members {
        ds.clear();
        ds.extend(members.iter().filter(|&&j| j != i).map(|&j| dm.get(i, j)));
        sort_c5(&mut ds);
        scores[i] = naive_sum(ds[..q].iter().copied());
    }
    scores
}

pub(crate) fn check_krum(rule: &'static str, n: usize, f: usize) -> Result<(), GarError> {
    if n < 2 * f + 3 {
        return Err(precondition(rule, n, f, None, "n >= 2f + 3"));
    }
    Ok(())
}

pub(crate) fn check_multi_krum(n: usize, f: usize, m: Option<usize>) -> Result<usize, GarError> {
    check_krum("multi-krum", n, f)?;
    let m_eff = m.unwrap_or(n - f - 2);
    if m_eff < 1 || m_eff > n {
        return Err(precondition("multi-krum", n, f, Some(m_eff), "1 <= m <= n"));
    }
    Ok(m_eff)
}

pub(crate) fn multi_krum<T: Float>(
    rows: &[&[T]],
    f: usize,
    m: Option<usize>,
) -> Result<Aggregation<T>, GarError> {
    let n = rows.len();
    let m = check_multi_krum(n, f, m)?;
    let dm = DistanceMatrix::compute(rows);
    let all: Vec<usize> = (0..n).collect();
    let scores = krum_scores(&dm, &all, n - f - 2);
    let ranking = rank_by_score(&all, &scores);
    let selected = ranking[..m].to_vec();
    let output = if m == 1 {
        rows[selected[0]].to_vec()
    } else {
        average_of(rows, &selected)
    };
    Ok(Aggregation {
        output,
        selected,
        details: Details::Krum { scores, m },
        nnm_neighbours: None,
    })
}

pub(crate) fn check_bulyan(rule: &'static str, n: usize, f: usize) -> Result<(), GarError> {
    if n < 4 * f + 3 {
        return Err(precondition(rule, n, f, None, "n >= 4f + 3"));
    }
    Ok(())
}

pub(crate) fn bulyan<T: Float>(rows: &[&[T]], f: usize) -> Result<Aggregation<T>, GarError> {
    let n = rows.len();
    check_bulyan("bulyan", n, f)?;
    let theta = n - 2 * f;
    let beta = theta - 2 * f;
    let dm = DistanceMatrix::compute(rows);
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut selected = Vec::with_capacity(theta);
    let mut steps = Vec::with_capacity(theta);
    for _ in 0..theta {
        let r = remaining.len();
        let q = (r.saturating_sub(f + 2)).max(1).min(r - 1);
        let scores = krum_scores(&dm, &remaining, q);
        let best = rank_by_score(&remaining, &scores)[0];
        selected.push(best);
        steps.push(BulyanStep {
            remaining: r,
            neighbours: q,
            picked: best,
        });
        remaining.retain(|&i| i != best);
    }
    let s: Vec<&[T]> = selected.iter().map(|&i| rows[i]).collect();
    let output = coordinatewise(&Rows(&s), rows[0].len(), CoordOp::ClosestToMedian { beta });
    Ok(Aggregation {
        output,
        selected,
        details: Details::Bulyan { theta, beta, steps },
        nnm_neighbours: None,
    })
}

pub(crate) fn check_multi_bulyan(n: usize, f: usize, m: Option<usize>) -> Result<usize, GarError> {
    check_bulyan("multi-bulyan", n, f)?;
    let m_eff = m.unwrap_or(n - f - 2);
    if m_eff < 1 || m_eff > n - f - 2 {
        return Err(precondition(
            "multi-bulyan",
            n,
            f,
            Some(m_eff),
            "1 <= m <= n - f - 2",
        ));
    }
    Ok(m_eff)
}

/// Multi-Bulyan of spec §2.7.2.
///
/// The selection loop runs on the distance matrix alone. Removing "the member
/// of T_k closest to the average s_k" needs no pass over the inputs: for
/// i ∈ T, ‖x_i − s‖² = (1/m)·Σ_{j∈T} D(i,j) − (1/2m²)·Σ_{j,l∈T} D(j,l), whose
/// second term is the same for every i, so the member with the smallest
/// Σ_{j∈T} D(i,j) is the one closest to s (ties → earliest rank). The θ
/// averages are then formed tile by tile inside the coordinate phase and
/// never written out: the inputs are read twice in all, once for the
/// distances and once for the output.
pub(crate) fn multi_bulyan<T: Float>(
    rows: &[&[T]],
    f: usize,
    m: Option<usize>,
    phase: CoordinatePhase,
) -> Result<Aggregation<T>, GarError> {
    let n = rows.len();
    let m = check_multi_bulyan(n, f, m)?;
    let theta = n - 2 * f - 2;
    let beta = theta - 2 * f;
    let dm = DistanceMatrix::compute(rows);
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut groups = Vec::with_capacity(theta);
    let mut steps = Vec::with_capacity(theta);
    let mut removed_order = Vec::with_capacity(theta);
    for _ in 0..theta {
        let r = remaining.len();
        let q = r - f - 2;
        let scores = krum_scores(&dm, &remaining, q);
        let ranking = rank_by_score(&remaining, &scores);
        let m_k = m.min(q);
        let t_k = ranking[..m_k].to_vec();
        let mut sorted = t_k.clone();
        sorted.sort_unstable();
        let mut removed = t_k[0];
        let mut best = f64::NAN;
        for &i in &t_k {
            let spread = naive_sum(
                sorted
                    .iter()
                    .map(|&j| if j == i { 0.0 } else { dm.get(i, j) }),
            );
            if best.is_nan() || cmp_c5(spread, best).is_lt() {
                best = spread;
                removed = i;
            }
        }
        steps.push(MultiBulyanStep {
            remaining: r,
            neighbours: q,
            m_k,
            averaged: t_k,
            removed,
        });
        removed_order.push(removed);
        groups.push(sorted);
        remaining.retain(|&i| i != removed);
    }
    let op = match phase {
        CoordinatePhase::MedianClosest => CoordOp::ClosestToMedian { beta },
        CoordinatePhase::TrimmedMean => CoordOp::TrimmedMean { f },
    };
    let output = coordinatewise(&Averages::new(rows, groups), rows[0].len(), op);
    Ok(Aggregation {
        output,
        selected: removed_order,
        details: Details::MultiBulyan {
            theta,
            beta,
            m,
            steps,
        },
        nnm_neighbours: None,
    })
}

pub(crate) fn check_multi_bulyan_aggregathor(
    n: usize,
    f: usize,
    m: Option<usize>,
) -> Result<usize, GarError> {
    check_bulyan("multi-bulyan-aggregathor", n, f)?;
    let m_eff = m.unwrap_or(n - f - 2);
    if m_eff > n - f - 2 || m_eff < n - 2 * f - 2 {
        return Err(precondition(
            "multi-bulyan-aggregathor",
            n,
            f,
            Some(m_eff),
            "n - 2f - 2 <= m <= n - f - 2",
        ));
    }
    Ok(m_eff)
}

/// AggregaThor-compatible multi-Bulyan (spec §2.7.3): scores computed once and
/// decremented by pruned distances, upper-median centre.
pub(crate) fn multi_bulyan_aggregathor<T: Float>(
    rows: &[&[T]],
    f: usize,
    m: Option<usize>,
) -> Result<Aggregation<T>, GarError> {
    let n = rows.len();
    let m = check_multi_bulyan_aggregathor(n, f, m)?;
    let theta = n - 2 * f - 2;
    let beta = theta - 2 * f;
    let dm = DistanceMatrix::compute(rows);
    let q0 = n - f - 2;
    let mut scores = vec![0.0f64; n];
    let mut pruned = vec![0.0f64; n * n];
    for i in 0..n {
        let mut neigh: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        neigh.sort_by(|&a, &b| cmp_c5(dm.get(i, a), dm.get(i, b)).then(a.cmp(&b)));
        neigh.truncate(q0);
        let mut ds: Vec<f64> = neigh.iter().map(|&j| dm.get(i, j)).collect();
        sort_c5(&mut ds);
        scores[i] = naive_sum(ds);
        for &j in &neigh {
            pruned[i * n + j] = dm.get(i, j);
        }
    }
    let mut alive: Vec<usize> = (0..n).collect();
    let mut groups = Vec::with_capacity(theta);
    let mut steps = Vec::with_capacity(theta);
    let mut removed_order = Vec::with_capacity(theta);
    for k in 0..theta {
        let keyed: Vec<f64> = scores
            .iter()
            .map(|&s| if s.is_nan() { f64::INFINITY } else { s })
            .collect();
        let ranking = rank_by_score(&alive, &keyed);
        let m_k = m - k;
        let sel = ranking[..m_k].to_vec();
        let mut sorted = sel.clone();
        sorted.sort_unstable();
        groups.push(sorted);
        let gone = ranking[0];
        removed_order.push(gone);
        steps.push(MultiBulyanStep {
            remaining: alive.len(),
            neighbours: q0,
            m_k,
            averaged: sel,
            removed: gone,
        });
        if k + 1 >= theta {
            break;
        }
        alive.retain(|&i| i != gone);
        for &i in &alive {
            scores[i] -= pruned[i * n + gone];
        }
    }
    let output = coordinatewise(
        &Averages::new(rows, groups),
        rows[0].len(),
        CoordOp::ClosestToUpperMedian { beta },
    );
    Ok(Aggregation {
        output,
        selected: removed_order,
        details: Details::MultiBulyan {
            theta,
            beta,
            m,
            steps,
        },
        nnm_neighbours: None,
    })
}

/// Sum of squares of `x − z` with the overflow-safe retry of spec C4.
fn norm_of_diff<T: Float>(x: &[T], z: &[f64]) -> f64 {
    let mut s = 0.0f64;
    for (a, b) in x.iter().zip(z) {
        let t = a.to_f64() - b;
        s += t * t;
    }
    if s.is_finite() {
        return s.sqrt();
    }
    let diff: Vec<f64> = x.iter().zip(z).map(|(a, b)| a.to_f64() - b).collect();
    norm_c4(&diff)
}

pub(crate) fn check_geometric_median(nu: f64) -> Result<(), GarError> {
    if !(nu.is_finite() && nu > 0.0) {
        return Err(GarError::InvalidParameter {
            rule: "geometric-median",
            name: "nu",
            value: nu.to_string(),
            reason: "must be finite and > 0",
        });
    }
    Ok(())
}

pub(crate) fn geometric_median<T: Float>(
    rows: &[&[T]],
    nu: f64,
    iters: usize,
    init: GeometricInit,
) -> Result<Aggregation<T>, GarError> {
    check_geometric_median(nu)?;
    let d = rows[0].len();
    let kept: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].iter().all(|v| v.is_finite()))
        .collect();
    if kept.is_empty() {
        return Err(GarError::NoFiniteInput {
            rule: "geometric-median",
        });
    }
    let mut z: Vec<f64> = match init {
        GeometricInit::Mean => {
            // The mean stays in f64: rounding it to T would leak into z.
            let cnt = kept.len() as f64;
            let mut acc = vec![0.0f64; d];
            for &i in &kept {
                for (a, x) in acc.iter_mut().zip(rows[i]) {
                    *a += x.to_f64();
                }
            }
            acc.into_iter().map(|s| s / cnt).collect()
        }
        GeometricInit::Zero => vec![0.0; d],
    };
    for _ in 0..iters {
        let w: Vec<f64> = kept
            .par_iter()
            .map(|&i| {
                let dist = norm_of_diff(rows[i], &z);
                1.0 / if dist > nu { dist } else { nu }
            })
            .collect();
        let wsum = naive_sum(w.iter().copied());
        z.par_chunks_mut(TASK).enumerate().for_each(|(t, chunk)| {
            let c0 = t * TASK;
            for (k, zc) in chunk.iter_mut().enumerate() {
                let c = c0 + k;
                *zc =
                    naive_sum(kept.iter().zip(&w).map(|(&i, wi)| wi * rows[i][c].to_f64())) / wsum;
            }
        });
    }
    Ok(Aggregation {
        output: z.into_iter().map(T::from_f64).collect(),
        selected: Vec::new(),
        details: Details::GeometricMedian { kept },
        nnm_neighbours: None,
    })
}

pub(crate) fn check_centered_clipping(
    tau: f64,
    v0: Option<&[f64]>,
    d: Option<usize>,
) -> Result<(), GarError> {
    if tau.is_nan() || tau < 0.0 {
        return Err(GarError::InvalidParameter {
            rule: "centered-clipping",
            name: "tau",
            value: tau.to_string(),
            reason: "must be >= 0",
        });
    }
    if let (Some(v0), Some(d)) = (v0, d)
        && v0.len() != d
    {
        return Err(GarError::InvalidParameter {
            rule: "centered-clipping",
            name: "v0",
            value: format!("a vector of dimension {}", v0.len()),
            reason: "must have the inputs' dimension",
        });
    }
    Ok(())
}

pub(crate) fn centered_clipping<T: Float>(
    rows: &[&[T]],
    tau: f64,
    iters: usize,
    v0: Option<&[f64]>,
) -> Result<Aggregation<T>, GarError> {
    let n = rows.len();
    let d = rows[0].len();
    check_centered_clipping(tau, v0, Some(d))?;
    let mut v: Vec<f64> = v0.map_or_else(|| vec![0.0; d], <[f64]>::to_vec);
    let finite: Vec<bool> = rows
        .iter()
        .map(|r| r.iter().all(|x| x.is_finite()))
        .collect();
    for _ in 0..iters {
        let factors: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|i| {
                if !finite[i] {
                    return 0.0;
                }
                let nr = norm_of_diff(rows[i], &v);
                if nr <= tau { 1.0 } else { tau / nr }
            })
            .collect();
        v.par_chunks_mut(TASK).enumerate().for_each(|(t, chunk)| {
            let c0 = t * TASK;
            for (k, vc) in chunk.iter_mut().enumerate() {
                let c = c0 + k;
                let s = naive_sum(
                    (0..n)
                        .filter(|&i| finite[i])
                        .map(|i| factors[i] * (rows[i][c].to_f64() - *vc)),
                );
                *vc += s / n as f64;
            }
        });
    }
    Ok(Aggregation::plain(v.into_iter().map(T::from_f64).collect()))
}

pub(crate) fn check_nnm(n: usize, f: usize) -> Result<(), GarError> {
    if f >= n {
        return Err(precondition("nnm", n, f, None, "f < n"));
    }
    Ok(())
}

/// Nearest-neighbour mixing (spec §2.10).
pub(crate) fn nnm<T: Float>(rows: &[&[T]], f: usize) -> Result<Mixed<T>, GarError> {
    let n = rows.len();
    check_nnm(n, f)?;
    let dm = DistanceMatrix::compute(rows);
    let mut neighbours = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = |j: usize| if j == i { 0.0 } else { dm.get(i, j) };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| cmp_c5(key(a), key(b)).then(a.cmp(&b)));
        order.truncate(n - f);
        out.push(average_of(rows, &order));
        neighbours.push(order);
    }
    Ok(Mixed {
        rows: out,
        neighbours,
    })
}

fn binomial(n: usize, k: usize) -> u128 {
    let k = k.min(n - k);
    let mut c: u128 = 1;
    for i in 0..k {
        c = c.saturating_mul((n - i) as u128) / (i as u128 + 1);
    }
    c
}

pub(crate) fn check_mda(n: usize, f: usize) -> Result<(), GarError> {
    if n < 2 * f + 1 {
        return Err(precondition("mda", n, f, None, "n >= 2f + 1"));
    }
    let subsets = binomial(n, f);
    if subsets > MDA_SUBSET_LIMIT {
        return Err(GarError::TooManySubsets {
            n,
            f,
            subsets,
            limit: MDA_SUBSET_LIMIT,
        });
    }
    Ok(())
}

/// Minimum-diameter averaging (spec §2.11).
pub(crate) fn mda<T: Float>(rows: &[&[T]], f: usize) -> Result<Aggregation<T>, GarError> {
    let n = rows.len();
    check_mda(n, f)?;
    let dm = DistanceMatrix::compute(rows);
    let k = n - f;
    let mut sub: Vec<usize> = (0..k).collect();
    let mut best: Option<(Vec<usize>, f64)> = None;
    loop {
        let mut diam = 0.0f64;
        for a in 0..k {
            for b in a + 1..k {
                let v = dm.get(sub[a], sub[b]);
                if v > diam {
                    diam = v;
                }
            }
        }
        if best.as_ref().is_none_or(|(_, bd)| diam < *bd) {
            best = Some((sub.clone(), diam));
        }
        // Next combination in lexicographic order.
        let mut i = k;
        loop {
            if i == 0 {
                let (selected, diameter) = best.unwrap_or_default();
                let output = average_of(rows, &selected);
                return Ok(Aggregation {
                    output,
                    selected,
                    details: Details::Mda { diameter },
                    nnm_neighbours: None,
                });
            }
            i -= 1;
            if sub[i] != i + n - k {
                break;
            }
        }
        sub[i] += 1;
        for j in i + 1..k {
            sub[j] = sub[j - 1] + 1;
        }
    }
}
