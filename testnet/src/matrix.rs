//! `rampart testnet matrix`: one scenario run for every (rule, attack)
//! pair, one after another, and a table (Markdown and CSV) of the final
//! honest accuracy.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::report;
use crate::run::{self, RunOptions};
use crate::scenario::{RoleSpec, Scenario};
use crate::spec::{Behaviour, RuleName};

/// One cell of the matrix.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Rule.
    pub rule: RuleName,
    /// Attack (`none` for an all-honest run).
    pub attack: String,
    /// The run's summary (None: the run could not start).
    pub summary: Option<report::Summary>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}

/// The scenario with `rule` and `attack` (f nodes play it; `None`: all
/// honest). Honest roles of the scenario (crashes) are kept.
pub fn variant(base: &Scenario, rule: RuleName, attack: Option<&Behaviour>) -> Scenario {
    let mut s = base.clone();
    s.rule = rule;
    s.roles.retain(|r| r.behaviour == "honest");
    if let Some(b) = attack
        && s.f > 0
    {
        s.roles.push(RoleSpec::of(b, s.f));
    }
    s
}

/// Runs the grid; every run's report goes to `out/<rule>/<attack>/`, and
/// the table to `out/matrix.md` and `out/matrix.csv`.
pub fn run_matrix(
    base: &Scenario,
    rules: &[RuleName],
    attacks: &[Option<Behaviour>],
    exe: &Path,
    out: &Path,
    progress: bool,
) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for attack in attacks {
        for &rule in rules {
            let name = attack.as_ref().map_or("none".into(), Behaviour::to_string);
            let s = variant(base, rule, attack.as_ref());
            s.validate()
                .with_context(|| format!("rule {rule} with attack {name}"))?;
            let dir = out.join(rule.name()).join(name.replace([':', '='], "_"));
            eprintln!("matrix: rule {rule}, attack {name} -> {}", dir.display());
            let opts = RunOptions {
                exe: exe.to_path_buf(),
                out: dir.clone(),
                progress,
            };
            let cell = match run::run(&s, &opts).and_then(|rec| {
                let sum = report::write(&rec, &dir)?;
                Ok((rec.aborted.clone(), sum))
            }) {
                Ok((aborted, sum)) => Cell {
                    rule,
                    attack: name,
                    summary: Some(sum),
                    error: aborted,
                },
                Err(e) => Cell {
                    rule,
                    attack: name,
                    summary: None,
                    error: Some(format!("{e:#}")),
                },
            };
            cells.push(cell);
            write_tables(base, rules, &cells, out)?;
            if run::interrupted() {
                bail!("interrupted; partial table in {}", out.display());
            }
        }
    }
    Ok(cells)
}

/// Writes `matrix.md` and `matrix.csv` for the cells so far.
pub fn write_tables(base: &Scenario, rules: &[RuleName], cells: &[Cell], out: &Path) -> Result<()> {
    let mut attacks: Vec<&str> = Vec::new();
    for c in cells {
        if !attacks.contains(&c.attack.as_str()) {
            attacks.push(&c.attack);
        }
    }
    let cell =
        |rule: RuleName, attack: &str| cells.iter().find(|c| c.rule == rule && c.attack == attack);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Final honest test accuracy (mean over honest nodes, min in brackets): {}, n = {}, f = {}, {} rounds, {:?} data, {} partition, seed {}.\n",
        base.name, base.nodes, base.f, base.rounds, base.data, base.partition, base.seed
    );
    let _ = write!(md, "| attack |");
    for r in rules {
        let _ = write!(md, " {r} |");
    }
    let _ = write!(md, "\n|---|");
    for _ in rules {
        let _ = write!(md, "---:|");
    }
    md.push('\n');
    let mut csv = String::from(
        "rule,attack,honest_accuracy_mean,honest_accuracy_min,honest_accuracy_max,rounds_completed,error\n",
    );
    for a in &attacks {
        let _ = write!(md, "| {a} |");
        for &r in rules {
            match cell(r, a) {
                Some(Cell {
                    summary: Some(s),
                    error,
                    ..
                }) => {
                    let h = s.honest_accuracy;
                    let mark = if error.is_some() { " (incomplete)" } else { "" };
                    let _ = write!(
                        md,
                        " {:.2}% ({:.2}%){mark} |",
                        100.0 * h.mean,
                        100.0 * h.min
                    );
                    let _ = writeln!(
                        csv,
                        "{r},{a},{},{},{},{},{}",
                        h.mean,
                        h.min,
                        h.max,
                        s.rounds_completed,
                        error.as_deref().unwrap_or("").replace(',', ";")
                    );
                }
                Some(Cell { error, .. }) => {
                    let _ = write!(md, " failed |");
                    let _ = writeln!(
                        csv,
                        "{r},{a},,,,,{}",
                        error.as_deref().unwrap_or("").replace(',', ";")
                    );
                }
                None => {
                    let _ = write!(md, " |");
                }
            }
        }
        md.push('\n');
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("matrix.md"), md)?;
    std::fs::write(out.join("matrix.csv"), csv)?;
    Ok(())
}
