//! The element types the rules run on: `f32` (what nodes exchange) and `f64`
//! (what the conformance vectors use).

use std::fmt::Debug;
use std::ops::{Add, Div, Sub};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type a rule can aggregate.
///
/// Implemented for `f32` and `f64` only (sealed). Rules accumulate sums and
/// distances in `f64` whatever the element type, and round once at the end.
pub trait Float:
    Copy
    + Debug
    + PartialOrd
    + Send
    + Sync
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Div<Output = Self>
    + 'static
    + sealed::Sealed
{
    /// Zero.
    const ZERO: Self;
    /// Name of the type, for messages (`"f32"` or `"f64"`).
    const NAME: &'static str;

    /// Widens to `f64` (exact for both types).
    fn to_f64(self) -> f64;
    /// Rounds an `f64` to this type (round to nearest).
    fn from_f64(v: f64) -> Self;
    /// `true` when neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// `true` for any NaN.
    fn is_nan(self) -> bool;
    /// `acc + t * t`, the step of a squared-distance accumulation in this
    /// type. `f64` never fuses (spec C3); `f32` fuses, which is both faster and
    /// more accurate, and gives the same bits on every machine.
    fn sq_acc(acc: Self, t: Self) -> Self;
    /// `n` as this type.
    fn from_usize(n: usize) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// `rows` as `f32` rows when `Self` is `f32` (for kernels written for
    /// `f32` only).
    fn as_f32_rows<'a>(rows: &'a [&'a [Self]]) -> Option<&'a [&'a [f32]]>;
    /// `buf` as `f32` when `Self` is `f32`.
    fn as_f32_slice_mut(buf: &mut [Self]) -> Option<&mut [f32]>;
    /// The smaller of two finite values (IEEE minNum: a plain vector min,
    /// where a select would compile to slow masked stores in a sorting
    /// network).
    fn min_finite(a: Self, b: Self) -> Self;
    /// The larger of two finite values.
    fn max_finite(a: Self, b: Self) -> Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const NAME: &'static str = "f32";
    fn as_f32_rows<'a>(rows: &'a [&'a [Self]]) -> Option<&'a [&'a [f32]]> {
        Some(rows)
    }
    fn as_f32_slice_mut(buf: &mut [Self]) -> Option<&mut [f32]> {
        Some(buf)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline(always)]
    fn sq_acc(acc: Self, t: Self) -> Self {
        t.mul_add(t, acc)
    }
    #[inline(always)]
    fn from_usize(n: usize) -> Self {
        n as Self
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Self::abs(self)
    }
    #[inline(always)]
    fn min_finite(a: Self, b: Self) -> Self {
        a.min(b)
    }
    #[inline(always)]
    fn max_finite(a: Self, b: Self) -> Self {
        a.max(b)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const NAME: &'static str = "f64";
    fn as_f32_rows<'a>(_rows: &'a [&'a [Self]]) -> Option<&'a [&'a [f32]]> {
        None
    }
    fn as_f32_slice_mut(_buf: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    #[inline(always)]
    fn sq_acc(acc: Self, t: Self) -> Self {
        acc + t * t
    }
    #[inline(always)]
    fn from_usize(n: usize) -> Self {
        n as Self
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Self::abs(self)
    }
    #[inline(always)]
    fn min_finite(a: Self, b: Self) -> Self {
        a.min(b)
    }
    #[inline(always)]
    fn max_finite(a: Self, b: Self) -> Self {
        a.max(b)
    }
}
