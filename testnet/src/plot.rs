//! Plots with plotters, PNG and SVG.
//!
//! The build carries no font library (plotters' `ttf` feature would need
//! the system's fontconfig and freetype), so only the SVG files have text:
//! an SVG viewer renders the labels itself. The PNG files are the same
//! plots without caption or tick labels.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::run::RunRecord;

const SIZE: (u32, u32) = (900, 540);

fn palette(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(23, 190, 207),
        RGBColor(140, 86, 75),
        RGBColor(188, 189, 34),
        RGBColor(127, 127, 127),
        RGBColor(255, 127, 14),
    ];
    C[i % C.len()]
}

/// `accuracy.png` and `accuracy.svg`: test accuracy vs round, one line per
/// node; Byzantine nodes in red with cross markers.
pub fn accuracy(rec: &RunRecord, out: &Path) -> Result<()> {
    let png = out.join("accuracy.png");
    let svg = out.join("accuracy.svg");
    draw_accuracy(
        &BitMapBackend::new(&png, SIZE).into_drawing_area(),
        rec,
        false,
    )?;
    draw_accuracy(&SVGBackend::new(&svg, SIZE).into_drawing_area(), rec, true)?;
    Ok(())
}

/// `spread.png` and `spread.svg`: largest distance between honest models
/// vs round.
pub fn spread(rec: &RunRecord, out: &Path) -> Result<()> {
    let png = out.join("spread.png");
    let svg = out.join("spread.svg");
    draw_spread(
        &BitMapBackend::new(&png, SIZE).into_drawing_area(),
        rec,
        false,
    )?;
    draw_spread(&SVGBackend::new(&svg, SIZE).into_drawing_area(), rec, true)?;
    Ok(())
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

fn draw_accuracy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rec: &RunRecord,
    text: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let max_round = rec.scenario.rounds.max(1);
    let mut builder = ChartBuilder::on(root);
    builder.margin(20);
    if text {
        builder
            .caption(
                format!(
                    "{}: test accuracy per node ({}; Byzantine in red)",
                    rec.scenario.name,
                    rec.scenario.rule.name()
                ),
                ("sans-serif", 20),
            )
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = builder
        .build_cartesian_2d(0u64..max_round, 0.0f64..1.0)
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("round").y_desc("test accuracy");
    }
    mesh.draw().map_err(err)?;
    // Byzantine lines first, honest lines over them, Byzantine markers on
    // top: a Byzantine node that tracks the honest model stays visible.
    let series = |n: &crate::run::NodeRecord| -> Vec<(u64, f64)> {
        n.evals.iter().map(|&(r, a, _)| (r + 1, a)).collect()
    };
    for n in rec.nodes.iter().filter(|n| n.byzantine) {
        let style = ShapeStyle::from(&RED).stroke_width(1);
        chart
            .draw_series(LineSeries::new(series(n), style))
            .map_err(err)?;
    }
    for (k, n) in rec.nodes.iter().filter(|n| !n.byzantine).enumerate() {
        chart
            .draw_series(LineSeries::new(series(n), palette(k).stroke_width(2)))
            .map_err(err)?;
    }
    for n in rec.nodes.iter().filter(|n| n.byzantine) {
        chart
            .draw_series(
                series(n)
                    .into_iter()
                    .map(|p| Cross::new(p, 5, RED.stroke_width(2))),
            )
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn draw_spread<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rec: &RunRecord,
    text: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let max_round = rec.scenario.rounds.max(1);
    let top = rec
        .spread
        .values()
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.1;
    let mut builder = ChartBuilder::on(root);
    builder.margin(20);
    if text {
        builder
            .caption(
                format!(
                    "{}: largest distance between honest models",
                    rec.scenario.name
                ),
                ("sans-serif", 20),
            )
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(0u64..max_round, 0.0f64..top)
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("round").y_desc("honest spread (L2)");
    }
    mesh.draw().map_err(err)?;
    let pts: Vec<(u64, f64)> = rec.spread.iter().map(|(&r, &d)| (r + 1, d)).collect();
    chart
        .draw_series(LineSeries::new(pts.clone(), palette(0).stroke_width(2)))
        .map_err(err)?;
    chart
        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, palette(0).filled())))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
