//! `rampart aggregate`: runs one aggregation rule over the vectors in a file
//! and prints the result as one JSON object.
//!
//! Flags are checked against the rule before the input is read, so a typo
//! costs nothing; the rule's own precondition (n against f and m) is checked
//! by `rampart-gar` and reported with its bound.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use rampart_gar::{Aggregate, Aggregator, CoordinatePhase, Float, GeometricInit, Rule};
use serde::Serialize;

use crate::json::{self, Nums};
use crate::npy::{self, Array, Element, Matrix};

/// Defaults of the geometric median: RFA-like (spec §2.8).
const GM_NU: f64 = 1e-6;
const GM_ITERS: usize = 4;
/// Defaults of centered clipping: ByzFL's (spec §2.9).
const CC_TAU: f64 = 100.0;
const CC_ITERS: usize = 1;

const AFTER_HELP: &str = "\
Input: a .npy file holding a 2-D (n, d) little-endian float32 ('<f4') or float64 ('<f8') \
array in C order (NPY format 1.0, 2.0 or 3.0), or a .json file holding an array of n arrays \
of d numbers, where the strings \"nan\", \"inf\" and \"-inf\" stand for non-finite values. \
The rule computes in the input's precision: float32 for '<f4' files, float64 for '<f8' and JSON.

Output: one JSON object on stdout,
  {\"rule\", \"n\", \"d\", \"f\", \"m\", \"selected\", \"seconds\", \"output\"}
where
  f         the f in use (that of the rule, or of --pre nnm), null when nothing uses one;
  m         the m the rule used (Krum: 1; multi-Krum and multi-Bulyan: --m or its default
            n - f - 2), null for the other rules;
  selected  Krum's / multi-Krum's chosen inputs in rank order, Bulyan's picks in order,
            multi-Bulyan's removed input of each iteration in order, MDA's subset;
            empty for the other rules;
  seconds   the time of the aggregation alone (not reading or writing);
  output    the aggregated vector. Finite values are printed as the shortest decimal that
            reads back to the same float32/float64 value; NaN and infinities, which JSON
            cannot represent, are printed as the strings \"nan\", \"inf\" and \"-inf\".
With --output FILE the vector goes to FILE instead (.npy: a 1-D array of shape (d,) with the
input's dtype; .json: an array in the same encoding as above) and \"output\" is left out.

Parameters: every rule parameter flag (--f, --m, --coordinate-phase, --nu, --iters, --init,
--tau, --v0) is accepted only by the rules that use it; giving one to another rule is an
error rather than silently ignored. --f is required by the rules that take f and by --pre nnm.

Exit status: 0 on success; 2 with one line 'error: ...' on stderr for any bad flag, bad input
file or unmet precondition.";

/// The rules, by their CLI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RuleName {
    /// Coordinate-wise mean (not robust).
    Average,
    /// Coordinate-wise median.
    Median,
    /// Coordinate-wise trimmed mean, dropping f values at each end (n >= 2f + 1).
    TrimmedMean,
    /// Krum (n >= 2f + 3).
    Krum,
    /// Multi-Krum: the mean of the m best-scored inputs (n >= 2f + 3).
    MultiKrum,
    /// Bulyan over Krum (n >= 4f + 3).
    Bulyan,
    /// Multi-Bulyan, Bulyan over multi-Krum (n >= 4f + 3).
    MultiBulyan,
    /// The AggregaThor-compatible multi-Bulyan (n >= 4f + 3).
    MultiBulyanAggregathor,
    /// Smoothed Weiszfeld geometric median (RFA).
    GeometricMedian,
    /// Centered clipping.
    CenteredClipping,
    /// Minimum-diameter averaging (n >= 2f + 1).
    Mda,
}

impl RuleName {
    fn takes_f(self) -> bool {
        !matches!(
            self,
            RuleName::Average
                | RuleName::Median
                | RuleName::GeometricMedian
                | RuleName::CenteredClipping
        )
    }

    fn takes_m(self) -> bool {
        matches!(
            self,
            RuleName::MultiKrum | RuleName::MultiBulyan | RuleName::MultiBulyanAggregathor
        )
    }

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// Pre-aggregations that can run in front of the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Pre {
    /// Nearest-neighbour mixing: each input is replaced by the mean of its n - f nearest inputs.
    Nnm,
}

/// Multi-Bulyan's coordinate phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Phase {
    /// Per coordinate, the mean of the beta values closest to the median (Bulyan paper).
    MedianClosest,
    /// Per coordinate, the mean after dropping the f smallest and f largest values.
    TrimmedMean,
}

/// The geometric median's starting point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Init {
    /// The mean of the fully finite inputs (RFA).
    Mean,
    /// The zero vector (ByzFL).
    Zero,
}

/// Flags of `rampart aggregate`.
#[derive(Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub(crate) struct AggregateArgs {
    /// Aggregation rule.
    #[arg(long, value_enum)]
    rule: RuleName,

    /// Number of Byzantine inputs to tolerate. Required by trimmed-mean, krum, multi-krum,
    /// bulyan, multi-bulyan, multi-bulyan-aggregathor, mda and by --pre nnm; an error for the
    /// other rules without --pre nnm (they have no f). May be 0.
    #[arg(long, value_name = "F")]
    f: Option<usize>,

    /// Multi-Krum size (multi-krum, multi-bulyan, multi-bulyan-aggregathor only) [default:
    /// n - f - 2].
    #[arg(long, value_name = "M")]
    m: Option<usize>,

    /// Pre-aggregation applied before the rule, with the same --f.
    #[arg(long, value_enum, value_name = "PRE")]
    pre: Option<Pre>,

    /// Coordinate phase of multi-bulyan [default: median-closest].
    #[arg(long, value_enum, value_name = "PHASE")]
    coordinate_phase: Option<Phase>,

    /// Smoothing nu > 0 of geometric-median [default: 1e-6].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    nu: Option<f64>,

    /// Iterations: Weiszfeld updates of geometric-median [default: 4], clipping iterations
    /// of centered-clipping [default: 1].
    #[arg(long, value_name = "T")]
    iters: Option<usize>,

    /// Clipping radius tau >= 0 of centered-clipping [default: 100].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    tau: Option<f64>,

    /// Starting point of geometric-median [default: mean].
    #[arg(long, value_enum, value_name = "INIT")]
    init: Option<Init>,

    /// Starting point of centered-clipping, normally the previous round's output: a .npy file
    /// holding a 1-D array of d values or a .json array of d numbers [default: zero vector].
    #[arg(long, value_name = "FILE")]
    v0: Option<PathBuf>,

    /// Input vectors: a .npy file (2-D, n x d, '<f4' or '<f8') or a .json array of n arrays
    /// of d numbers.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,

    /// Write the aggregated vector to FILE (.npy with the input's dtype, or .json) instead of
    /// printing it in the JSON object.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// The input, in the precision it was stored in.
enum Input {
    F32(Matrix<f32>),
    F64(Matrix<f64>),
}

/// File formats, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Npy,
    Json,
}

fn format_of(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "npy" => Some(Format::Npy),
        "json" => Some(Format::Json),
        _ => None,
    }
}

/// Runs the subcommand.
pub(crate) fn run(args: &AggregateArgs) -> Result<()> {
    let aggregator = build(args)?;
    let output_format = match &args.output {
        None => None,
        Some(path) => Some(format_of(path).with_context(|| {
            format!(
                "--output {}: unknown extension; use .npy or .json",
                path.display()
            )
        })?),
    };
    match read_input(&args.input)? {
        Input::F32(m) => finish(args, &aggregator, output_format, &m),
        Input::F64(m) => finish(args, &aggregator, output_format, &m),
    }
}

/// Checks the flags against the rule and builds the aggregator.
fn build(args: &AggregateArgs) -> Result<Aggregator> {
    let rule_name = args.rule;
    let name = rule_name.name();
    let only = |flag: &str, given: bool, ok: bool, users: &str| -> Result<()> {
        if given && !ok {
            bail!("--{flag} does not apply to --rule {name} (only to {users})");
        }
        Ok(())
    };
    let nnm = args.pre == Some(Pre::Nnm);
    if rule_name.takes_f() || nnm {
        if args.f.is_none() {
            let who = if rule_name.takes_f() {
                format!("--rule {name}")
            } else {
                "--pre nnm".to_owned()
            };
            bail!("{who} needs --f (the number of Byzantine inputs to tolerate)");
        }
    } else if args.f.is_some() {
        bail!("--rule {name} takes no f; --f is used only by rules with an f or with --pre nnm");
    }
    only(
        "m",
        args.m.is_some(),
        rule_name.takes_m(),
        "multi-krum, multi-bulyan and multi-bulyan-aggregathor",
    )?;
    only(
        "coordinate-phase",
        args.coordinate_phase.is_some(),
        rule_name == RuleName::MultiBulyan,
        "multi-bulyan",
    )?;
    let gm = rule_name == RuleName::GeometricMedian;
    let cc = rule_name == RuleName::CenteredClipping;
    only("nu", args.nu.is_some(), gm, "geometric-median")?;
    only("init", args.init.is_some(), gm, "geometric-median")?;
    only(
        "iters",
        args.iters.is_some(),
        gm || cc,
        "geometric-median and centered-clipping",
    )?;
    only("tau", args.tau.is_some(), cc, "centered-clipping")?;
    only("v0", args.v0.is_some(), cc, "centered-clipping")?;

    let f = args.f.unwrap_or(0);
    let rule = match rule_name {
        RuleName::Average => Rule::Average,
        RuleName::Median => Rule::Median,
        RuleName::TrimmedMean => Rule::TrimmedMean { f },
        RuleName::Krum => Rule::Krum { f },
        RuleName::MultiKrum => Rule::MultiKrum { f, m: args.m },
        RuleName::Bulyan => Rule::Bulyan { f },
        RuleName::MultiBulyan => Rule::MultiBulyan {
            f,
            m: args.m,
            phase: match args.coordinate_phase {
                None | Some(Phase::MedianClosest) => CoordinatePhase::MedianClosest,
                Some(Phase::TrimmedMean) => CoordinatePhase::TrimmedMean,
            },
        },
        RuleName::MultiBulyanAggregathor => Rule::MultiBulyanAggregathor { f, m: args.m },
        RuleName::GeometricMedian => Rule::GeometricMedian {
            nu: args.nu.unwrap_or(GM_NU),
            iters: args.iters.unwrap_or(GM_ITERS),
            init: match args.init {
                None | Some(Init::Mean) => GeometricInit::Mean,
                Some(Init::Zero) => GeometricInit::Zero,
            },
        },
        RuleName::CenteredClipping => Rule::CenteredClipping {
            tau: args.tau.unwrap_or(CC_TAU),
            iters: args.iters.unwrap_or(CC_ITERS),
            v0: args.v0.as_deref().map(read_v0).transpose()?,
        },
        RuleName::Mda => Rule::Mda { f },
    };
    let aggregator = Aggregator::new(rule);
    Ok(if nnm {
        aggregator.with_nnm(f)
    } else {
        aggregator
    })
}

/// Reads centered clipping's starting point (always `f64`, as the library
/// takes it).
fn read_v0(path: &Path) -> Result<Vec<f64>> {
    let read = || -> Result<Vec<f64>> {
        let npy = match format_of(path) {
            Some(Format::Npy) => true,
            Some(Format::Json) => false,
            None => starts_with_magic(path)?,
        };
        if !npy {
            return json::read_vector(path);
        }
        let array = npy::read(path)?;
        if array.shape().len() != 1 {
            bail!(
                "expected a 1-D array (d,), got shape {}",
                npy::shape_str(array.shape())
            );
        }
        Ok(match array {
            Array::F32 { data, .. } => data.into_iter().map(f64::from).collect(),
            Array::F64 { data, .. } => data,
        })
    };
    read().with_context(|| format!("--v0 {}", path.display()))
}

/// Whether the file starts with the NPY magic (for paths without a known
/// extension).
fn starts_with_magic(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(6);
    std::fs::File::open(path)
        .and_then(|f| f.take(6).read_to_end(&mut head))
        .context("cannot read the file")?;
    Ok(head == npy::MAGIC)
}

/// Reads the input matrix: `.npy` or `.json` by extension, else by content.
fn read_input(path: &Path) -> Result<Input> {
    let read = || -> Result<Input> {
        let format = match format_of(path) {
            Some(f) => f,
            None if starts_with_magic(path)? => Format::Npy,
            None => Format::Json,
        };
        if format == Format::Json {
            return Ok(Input::F64(json::read_matrix(path)?));
        }
        let array = npy::read(path)?;
        let shape = array.shape().to_vec();
        let shape_text = npy::shape_str(&shape);
        let [n, d] = shape[..] else {
            bail!(
                "expected a 2-D array (n, d), got shape {shape_text} ({}-D)",
                shape.len()
            );
        };
        if n == 0 {
            bail!("shape {shape_text}: no input vectors");
        }
        if d == 0 {
            bail!("shape {shape_text}: vectors of dimension 0");
        }
        Ok(match array {
            Array::F32 { data, .. } => Input::F32(Matrix { n, d, data }),
            Array::F64 { data, .. } => Input::F64(Matrix { n, d, data }),
        })
    };
    read().with_context(|| path.display().to_string())
}

/// The JSON object printed on stdout.
#[derive(Serialize)]
struct Report<'a, T: Float + Serialize> {
    rule: &'static str,
    n: usize,
    d: usize,
    f: Option<usize>,
    m: Option<usize>,
    selected: &'a [usize],
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Nums<'a, T>>,
}

/// Aggregates in `T`, writes the output file if asked, prints the report.
fn finish<T>(
    args: &AggregateArgs,
    aggregator: &Aggregator,
    output_format: Option<Format>,
    input: &Matrix<T>,
) -> Result<()>
where
    T: Float + Element + Serialize,
    Aggregator: Aggregate<T>,
{
    let rows = input.rows();
    let start = Instant::now();
    let result = aggregator.aggregate(&rows);
    let seconds = start.elapsed().as_secs_f64();
    let agg = result.with_context(|| {
        format!(
            "cannot aggregate {} inputs of dimension {}",
            input.n, input.d
        )
    })?;
    let m = aggregator
        .rule()
        .effective_m(input.n)
        .context("computing the rule's m")?;

    if let (Some(path), Some(format)) = (&args.output, output_format) {
        match format {
            Format::Npy => npy::write_vector(path, &agg.output)?,
            Format::Json => {
                let mut text = serde_json::to_string(&Nums(&agg.output))
                    .context("encoding the output as JSON")?;
                text.push('\n');
                std::fs::write(path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
    }

    let report = Report {
        rule: aggregator.rule().id(),
        n: input.n,
        d: input.d,
        f: args.f,
        m,
        selected: &agg.selected,
        seconds,
        output: args.output.is_none().then_some(Nums(&agg.output)),
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer(&mut stdout, &report)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            writeln!(stdout)
                .and_then(|()| stdout.flush())
                .map_err(Into::into)
        })
        .context("cannot write to stdout")
}
