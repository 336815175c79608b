//! Errors of the aggregation rules.

/// Why a rule refused its inputs or parameters. Nothing is aggregated when
/// one of these is returned (spec C2: no silent clamping).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GarError {
    /// The rule's bound on n, f or m does not hold.
    #[error("{rule} needs {bound}, but n = {n}, f = {f}{}", m.map(|m| format!(", m = {m}")).unwrap_or_default())]
    Precondition {
        /// Rule identifier, e.g. `multi-bulyan`.
        rule: &'static str,
        /// Number of inputs.
        n: usize,
        /// Declared number of Byzantine inputs.
        f: usize,
        /// The explicit m, where the rule takes one and the bound concerns it.
        m: Option<usize>,
        /// The bound that failed, e.g. `n >= 4f + 3`.
        bound: &'static str,
    },
    /// A real-valued parameter is out of its domain.
    #[error("{rule}: parameter {name} = {value} is invalid: {reason}")]
    InvalidParameter {
        /// Rule identifier.
        rule: &'static str,
        /// Parameter name.
        name: &'static str,
        /// The value given, as text.
        value: String,
        /// What the parameter must satisfy.
        reason: &'static str,
    },
    /// No input vectors at all.
    #[error("no input vectors: aggregation needs at least one")]
    NoInputs,
    /// Input vectors of dimension zero.
    #[error("input vectors have dimension 0")]
    EmptyDimension,
    /// An input's length differs from the first input's.
    #[error("input {index} has dimension {got}, but input 0 has dimension {expected}")]
    DimensionMismatch {
        /// Index of the offending input.
        index: usize,
        /// Dimension of input 0.
        expected: usize,
        /// Dimension of input `index`.
        got: usize,
    },
    /// Every input has a non-finite coordinate (geometric median).
    #[error("{rule}: every input has a non-finite coordinate")]
    NoFiniteInput {
        /// Rule identifier.
        rule: &'static str,
    },
    /// Minimum-diameter averaging would enumerate too many subsets.
    #[error(
        "mda: C({n}, {f}) = {subsets} subsets exceeds the limit of {limit}; use a smaller f or another rule"
    )]
    TooManySubsets {
        /// Number of inputs.
        n: usize,
        /// Declared f.
        f: usize,
        /// Subsets that would be enumerated.
        subsets: u128,
        /// The limit.
        limit: u128,
    },
}
