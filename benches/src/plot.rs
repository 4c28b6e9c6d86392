//! `throughput.svg`: tasks per second against the failure rate, one line per
//! row (our pools solid, the Python targets dashed), one panel per task
//! cost, the floor as a dotted grey line.
//!
//! Drawn with plotters' SVG backend and no font support (no `ttf`): text is
//! laid out by plotters' own width estimate, so the file is the same on
//! every machine for the same figures. The y axis is logarithmic, so a
//! pool thousands of times slower still shows. A pool that hangs at a rate
//! has no point there (its line stops); a pool that breaks (polling) is drawn
//! as crosses, not a line, at the correct results per second it made. In
//! each panel's corner: what a death cost each row that survives them
//! (see [`Summary::death_cost`]), beside the bare fork-and-wait.

use plotters::prelude::*;

use crate::load::{Cost, Rate, Row, Throughput};
use crate::summary::{Summary, count};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 500;
/// The strip under the panels that holds the legend (up to three lines).
const LEGEND: u32 = 64;
const LEGEND_LINE: i32 = 18;

/// The colour of each of our pools' lines, by its place in the matrix.
const COLOURS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(127, 127, 127),
];
/// The colours of the external targets' (dashed) lines.
const EXTERNAL_COLOURS: [RGBColor; 10] = [
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(128, 0, 0),
    RGBColor(0, 0, 128),
    RGBColor(0, 100, 0),
    RGBColor(218, 165, 32),
    RGBColor(0, 0, 0),
    RGBColor(0, 128, 128),
];

/// How a row is drawn.
fn style_of(rows: &[Row], i: usize) -> (RGBColor, bool) {
    let externals_before = rows[..i].iter().filter(|r| matches!(r, Row::External(_))).count();
    match rows[i] {
        Row::Pool(_) => (COLOURS[(i - externals_before) % COLOURS.len()], false),
        Row::External(_) => (EXTERNAL_COLOURS[externals_before % EXTERNAL_COLOURS.len()], true),
    }
}

/// The SVG text of the plot.
pub fn svg(summary: &Summary) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root
            .titled(
                "Throughput under failures: tasks/s against the SIGKILL rate (2 workers, log scale)",
                ("sans-serif", 16),
            )
            .map_err(err)?;
        let (upper, legend) = root.split_vertically(HEIGHT - LEGEND - 24);
        let panels = upper.split_evenly((1, Cost::ALL.len()));
        let rows = summary.rows();
        draw_legend(&legend, summary, &rows)?;
        for (panel, cost) in panels.iter().zip(Cost::ALL) {
            let floor = summary.floor_per_s(cost);
            let values: Vec<f64> =
                summary.cells.iter().filter(|c| c.cost == cost).filter_map(|c| c.throughput.per_s()).collect();
            let top = values.iter().copied().fold(floor, f64::max) * 2.0;
            let bottom = values.iter().copied().fold(floor, f64::min).max(1.0) / 2.0;
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{} tasks", cost.name()), ("sans-serif", 14))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5f64..5.5f64, (bottom..top).log_scale())
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(6)
                .x_label_formatter(&|x| if [0.0, 1.0, 5.0].contains(x) { format!("{x:.0} %") } else { String::new() })
                .y_label_formatter(&|y| count(*y))
                .x_desc("tasks that SIGKILL their worker")
                .label_style(("sans-serif", 11))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(DashedLineSeries::new([(-0.5, floor), (5.5, floor)], 2, 3, GREY.stroke_width(1)))
                .map_err(err)?;
            for (i, row) in rows.iter().enumerate() {
                let (colour, dashed) = style_of(&rows, i);
                let mut line: Vec<(f64, f64)> = Vec::new();
                let mut crosses: Vec<(f64, f64)> = Vec::new();
                for rate in Rate::ALL {
                    let x = rate.percent() as f64;
                    match summary.cell(row, cost, rate).map(|c| &c.throughput) {
                        Some(Throughput::Rate { per_s, .. })
                            if line.len() == Rate::ALL.iter().position(|&r| r == rate).unwrap_or(0) =>
                        {
                            line.push((x, *per_s))
                        }
                        Some(Throughput::Breaks { per_s, .. }) => crosses.push((x, *per_s)),
                        _ => {}
                    }
                }
                if dashed {
                    let dashes = DashedLineSeries::new(line.iter().copied(), 7, 4, colour.stroke_width(2));
                    chart.draw_series(dashes).map_err(err)?;
                } else {
                    chart.draw_series(LineSeries::new(line.iter().copied(), colour.stroke_width(2))).map_err(err)?;
                }
                chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(err)?;
                chart.draw_series(crosses.iter().map(|&p| Cross::new(p, 5, colour.stroke_width(2)))).map_err(err)?;
            }
            // What a death cost each row that survives them, in the panel's corner.
            let fork = summary.floor.fork_wait.as_secs_f64();
            let mut y = 44;
            for (i, row) in rows.iter().enumerate() {
                let Some(each) = summary.death_cost(row, cost, Rate::Five) else { continue };
                let text = format!("{row}, a death at 5 %: {:.3} ms ({:.2}x fork)", each * 1e3, each / fork.max(1e-12));
                panel
                    .draw(&Text::new(text, (80, y), ("sans-serif", 10).into_font().color(&style_of(&rows, i).0)))
                    .map_err(err)?;
                y += 13;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}

const GREY: RGBColor = RGBColor(160, 160, 160);

/// One legend for all panels, in a strip of its own: a line per row (with
/// where it hangs, or that its crosses are broken batches), and the floor;
/// wrapped onto more lines when it is too wide.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    summary: &Summary,
    rows: &[Row],
) -> anyhow::Result<()> {
    // (label, colour, dashes: none, long or short)
    let mut entries: Vec<(String, RGBColor, Option<i32>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let mut hangs: Vec<String> = Vec::new();
        let mut breaks = false;
        for rate in Rate::ALL {
            let cells = Cost::ALL.iter().filter_map(|&cost| summary.cell(row, cost, rate));
            let kinds: Vec<&Throughput> = cells.map(|c| &c.throughput).collect();
            if kinds.iter().any(|t| matches!(t, Throughput::Hangs)) {
                hangs.push(rate.name());
            }
            breaks |= kinds.iter().any(|t| matches!(t, Throughput::Breaks { .. }));
        }
        let label = match (hangs.is_empty(), breaks) {
            (false, _) => format!("{row} (hangs at {})", hangs.join(", ")),
            (true, true) => format!("{row} (× = breaks)"),
            (true, false) => row.to_string(),
        };
        let (colour, dashed) = style_of(rows, i);
        entries.push((label, colour, dashed.then_some(7)));
    }
    entries.push(("floor (pipelined limit; workers / cost)".to_string(), GREY, Some(2)));
    // Laid out left to right by plotters' own width estimate: no font needed.
    let (mut x, mut y) = (20, 12);
    for (label, colour, dash) in &entries {
        let (w, _) = area.estimate_text_size(label, &("sans-serif", 11).into_text_style(area)).map_err(err)?;
        let width = 28 + w as i32 + 26;
        if x > 20 && x + width > WIDTH as i32 - 10 {
            (x, y) = (20, y + LEGEND_LINE);
        }
        let stroke = colour.stroke_width(if *dash == Some(2) { 1 } else { 2 });
        match dash {
            None => area.draw(&PathElement::new([(x, y), (x + 22, y)], stroke)).map_err(err)?,
            Some(d) => {
                for start in (x..x + 22).step_by((d + 3) as usize) {
                    area.draw(&PathElement::new([(start, y), ((start + d).min(x + 22), y)], stroke)).map_err(err)?;
                }
            }
        }
        area.draw(&Text::new(label.clone(), (x + 28, y - 6), ("sans-serif", 11))).map_err(err)?;
        x += width;
    }
    Ok(())
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_is_deterministic_and_labels_every_pool() {
        let summary = crate::summary::tests::sample();
        let a = svg(&summary).expect("plot");
        let b = svg(&summary).expect("plot again");
        assert_eq!(a, b, "same figures, same file");
        assert!(a.starts_with("<svg"), "an SVG document");
        for label in [
            "naive (hangs at 1 %, 5 %)",
            "polling (× = breaks)",
            "supervised",
            "py-pool-map (hangs at 1 %, 5 %)",
            "py-process-per-task",
            "floor (pipelined limit",
            "supervised, a death at 5 %:",
        ] {
            assert!(a.contains(label), "missing {label:?}");
        }
    }
}
