//! Typed errors, one enum per concern.

use std::path::PathBuf;

/// Reading or generating a data set failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or read (includes a broken gzip stream).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Neither the raw file nor its `.gz` form exists.
    #[error("{path}: not found (neither the raw file nor {path}.gz exists)")]
    Missing {
        /// The raw path that was looked for.
        path: PathBuf,
    },
    /// The file (after decompression) is larger than any valid file of its kind.
    #[error("{path}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The largest size accepted.
        limit: u64,
    },
    /// The file ends before the data its header announces.
    #[error("{path}: truncated: {expected} bytes expected, {actual} present")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header (or the format) requires.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// The file has bytes after the data its header announces.
    #[error("{path}: {actual} bytes, but the header describes {expected}")]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes the header describes.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// The IDX magic number is not the one expected for this file.
    #[error("{path}: magic {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number required.
        expected: u32,
        /// The magic number read.
        found: u32,
    },
    /// The dimensions in the file are not those of the data set.
    #[error("{path}: shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// The file.
        path: PathBuf,
        /// The dimensions required (sample dimensions, without the count).
        expected: Vec<usize>,
        /// The dimensions read.
        found: Vec<usize>,
    },
    /// The decompressed bytes do not have the published SHA-256.
    #[error("{path}: SHA-256 {found} does not match the published {expected}")]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The published hash (hex).
        expected: String,
        /// The hash of the bytes read (hex).
        found: String,
    },
    /// The images file and the labels file disagree on the number of samples.
    #[error("{images} images but {labels} labels")]
    CountMismatch {
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A label is not below the number of classes.
    #[error("label {label} at index {index} is not below the {classes} classes")]
    BadLabel {
        /// Sample index.
        index: usize,
        /// The label read.
        label: u32,
        /// Number of classes of the data set.
        classes: usize,
    },
    /// Features and labels given to [`crate::Dataset::new`] do not fit together.
    #[error("{features} feature values do not make {samples} samples of {sample_len} values")]
    FeatureLength {
        /// Length of the feature vector.
        features: usize,
        /// Number of labels.
        samples: usize,
        /// Values per sample (product of the sample shape).
        sample_len: usize,
    },
    /// A configuration value is out of its range.
    #[error("invalid {field}: {requirement}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What it must satisfy.
        requirement: &'static str,
    },
    /// A sample index is past the end of the data set.
    #[error("sample index {index} out of range for {len} samples")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// Number of samples.
        len: usize,
    },
    /// Building a tensor from the data failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Building, training or evaluating a model failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LearnError {
    /// A candle operation failed (shape error in a custom model, ...).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A flat vector does not have the model's parameter count.
    #[error("flat vector has {found} values, the model has {expected} parameters")]
    DimMismatch {
        /// The model's parameter count.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The model cannot take inputs of this shape (e.g. a CNN on flat vectors).
    #[error("model {model} cannot take samples of shape {shape:?}")]
    InputShape {
        /// The model.
        model: &'static str,
        /// The sample shape.
        shape: Vec<usize>,
    },
    /// The data set's sample shape differs from the one the model was built for.
    #[error("data samples have shape {found:?}, the model was built for {expected:?}")]
    DataShape {
        /// The model's input shape.
        expected: Vec<usize>,
        /// The data set's sample shape.
        found: Vec<usize>,
    },
    /// The learner was given no training samples.
    #[error("the training shard is empty")]
    EmptyShard,
    /// Evaluation was asked on an empty data set.
    #[error("the evaluation set is empty")]
    EmptyEvalSet,
    /// A configuration value is out of its range.
    #[error("invalid {field}: {requirement}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What it must satisfy.
        requirement: &'static str,
    },
    /// Sampling a batch from the data failed.
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Splitting a data set across nodes failed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PartitionError {
    /// There must be at least one node.
    #[error("cannot partition across zero nodes")]
    ZeroNodes,
    /// The Dirichlet concentration must be positive and finite.
    #[error("Dirichlet alpha must be positive and finite, got {alpha}")]
    BadAlpha {
        /// The value given.
        alpha: f64,
    },
    /// The node index is not below the number of nodes.
    #[error("node {node} out of range for {nodes} nodes")]
    NodeOutOfRange {
        /// The index asked.
        node: usize,
        /// Number of nodes.
        nodes: usize,
    },
}

/// Why a checkpoint file is not a valid checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptKind {
    /// The safetensors container does not parse.
    Container,
    /// A required tensor is absent.
    MissingTensor(&'static str),
    /// A tensor has the wrong dtype or shape.
    BadTensor(&'static str),
    /// A required metadata entry is absent or does not parse.
    BadMetadata(&'static str),
    /// The stored digest does not match the contents.
    DigestMismatch,
}

impl std::fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Container => write!(f, "not a safetensors file"),
            Self::MissingTensor(t) => write!(f, "tensor `{t}` missing"),
            Self::BadTensor(t) => write!(f, "tensor `{t}` has the wrong dtype or shape"),
            Self::BadMetadata(k) => write!(f, "metadata `{k}` missing or invalid"),
            Self::DigestMismatch => write!(f, "contents do not match the stored digest"),
        }
    }
}

/// Writing or reading a checkpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file or its directory could not be written or read.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The checkpoint path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid checkpoint.
    #[error("checkpoint {path} is corrupt: {kind}")]
    Corrupt {
        /// The checkpoint path.
        path: PathBuf,
        /// What is wrong.
        kind: CorruptKind,
    },
    /// The file was written by an incompatible format version.
    #[error("checkpoint {path} has format {found}, this build reads {expected}")]
    Version {
        /// The checkpoint path.
        path: PathBuf,
        /// The version this build writes and reads.
        expected: u32,
        /// The version in the file.
        found: u32,
    },
    /// The checkpoint belongs to another configuration (job, model, optimiser).
    #[error("checkpoint {path} was written for config {found}, expected {expected}")]
    ConfigMismatch {
        /// The checkpoint path.
        path: PathBuf,
        /// Hash of the current configuration (hex).
        expected: String,
        /// Hash stored in the file (hex).
        found: String,
    },
    /// The checkpoint holds a model of another size.
    #[error("checkpoint {path} holds {found} parameters, the model has {expected}")]
    DimMismatch {
        /// The checkpoint path.
        path: PathBuf,
        /// The model's parameter count.
        expected: usize,
        /// The count in the file.
        found: usize,
    },
    /// Restoring the parameters into the model failed.
    #[error(transparent)]
    Learn(#[from] LearnError),
}
