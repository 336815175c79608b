//! Scalar order and exact scalar helpers of the specification (C5–C7).
//!
//! These are the slow, obviously-correct forms. The fast kernels in
//! [`crate::coord`] and [`crate::distance`] are checked against them.

use std::cmp::Ordering;

use crate::Float;

/// Spec C5: `−∞ < finite < +∞ < NaN`, all NaNs equal, `−0.0 == +0.0`.
#[inline]
pub(crate) fn cmp_c5<T: Float>(a: T, b: T) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Stable sort with the C5 order.
pub(crate) fn sort_c5<T: Float>(w: &mut [T]) {
    w.sort_by(|a, b| cmp_c5(*a, *b));
}

/// Ranks `members` by `(score, index)` ascending (spec C6); NaN scores last.
pub(crate) fn rank_by_score(members: &[usize], scores: &[f64]) -> Vec<usize> {
    let mut r = members.to_vec();
    r.sort_by(|&a, &b| cmp_c5(scores[a], scores[b]).then(a.cmp(&b)));
    r
}

/// Left-to-right sum from `+0.0` (spec C7).
#[inline]
pub(crate) fn naive_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut s = 0.0;
    for v in values {
        s += v;
    }
    s
}

/// Median of a C5-sorted slice: the middle value, or the mean of the two
/// middle values (sum, then divide) for even lengths (spec §2.2).
#[inline]
pub(crate) fn median_of_sorted<T: Float>(w: &[T]) -> f64 {
    let k = w.len();
    if k % 2 == 1 {
        w[k / 2].to_f64()
    } else {
        (w[k / 2 - 1].to_f64() + w[k / 2].to_f64()) / 2.0
    }
}

/// Distance to a centre with NaN mapped to `+∞` (spec §2.6 step 3).
#[inline(always)]
pub(crate) fn centre_dist(v: f64, centre: f64) -> f64 {
    let t = (v - centre).abs();
    if t.is_nan() { f64::INFINITY } else { t }
}

/// Mean of the `beta` values of the sorted `w` closest to `centre`, keyed by
/// `(distance, position)`, summed in ascending position order (spec §2.6).
pub(crate) fn closest_to_centre_mean<T: Float>(w: &[T], centre: f64, beta: usize) -> f64 {
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&p, &q| {
        cmp_c5(
            centre_dist(w[p].to_f64(), centre),
            centre_dist(w[q].to_f64(), centre),
        )
        .then(p.cmp(&q))
    });
    let mut chosen = order[..beta].to_vec();
    chosen.sort_unstable();
    naive_sum(chosen.iter().map(|&p| w[p].to_f64())) / beta as f64
}

/// Squared distance of spec C3 in the canonical coordinate order, NaN → `+∞`.
#[cfg(test)]
pub(crate) fn sq_dist_exact<T: Float>(a: &[T], b: &[T]) -> f64 {
    let mut acc = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        let t = x.to_f64() - y.to_f64();
        acc += t * t;
    }
    if acc.is_nan() { f64::INFINITY } else { acc }
}

/// Euclidean norm of spec C4: naive, with an overflow-safe rescaled retry
/// when the sum of squares overflows while every coordinate is finite.
pub(crate) fn norm_c4(v: &[f64]) -> f64 {
    let s = naive_sum(v.iter().map(|x| x * x));
    if s == f64::INFINITY {
        if v.iter().all(|x| x.is_finite()) {
            let a = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let t = naive_sum(v.iter().map(|x| (x / a) * (x / a)));
            return a * t.sqrt();
        }
        return if v.iter().any(|x| x.is_nan()) {
            f64::NAN
        } else {
            f64::INFINITY
        };
    }
    if s.is_nan() {
        return f64::NAN;
    }
    s.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c5_orders_nan_last_and_zeros_equal() {
        let mut v = vec![
            f64::NAN,
            1.0,
            f64::INFINITY,
            -0.0,
            f64::NEG_INFINITY,
            0.0,
            -f64::NAN,
        ];
        sort_c5(&mut v);
        assert_eq!(v[0], f64::NEG_INFINITY);
        assert!(
            v[1] == 0.0 && v[1].is_sign_negative(),
            "stable: -0.0 stays first"
        );
        assert!(v[2] == 0.0 && v[2].is_sign_positive());
        assert_eq!(v[3], 1.0);
        assert_eq!(v[4], f64::INFINITY);
        assert!(v[5].is_nan() && v[6].is_nan());
    }

    #[test]
    fn norm_rescales_huge_finite_vectors() {
        let v = [1e300, 1e300];
        let n = norm_c4(&v);
        assert!((n / (1e300 * 2f64.sqrt()) - 1.0).abs() < 1e-15);
        assert_eq!(norm_c4(&[f64::INFINITY, 1.0]), f64::INFINITY);
        assert!(norm_c4(&[f64::NAN, f64::INFINITY]).is_nan());
    }

    #[test]
    fn closest_to_centre_is_not_trimmed_mean() {
        // Spec §2.6 example: {0,0,0,10,100}, beta 3 -> 0.
        let w = [0.0f64, 0.0, 0.0, 10.0, 100.0];
        let c = median_of_sorted(&w);
        assert_eq!(closest_to_centre_mean(&w, c, 3), 0.0);
    }
}
