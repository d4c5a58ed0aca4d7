//! The report's charts as SVG text, drawn with plotters' SVG backend (text is
//! left to the browser's fonts): loss and accuracy per stage, β per unit, and
//! channels kept per unit.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

const WIDTH: u32 = 560;
/// Width of the per-unit charts, which need room for the unit names.
const WIDE: u32 = 1000;
const CURVE_HEIGHT: u32 = 300;
/// Height of one unit's row in the per-unit charts.
const ROW: u32 = 22;
const FONT: &str = "sans-serif";

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TEST: RGBColor = RGBColor(214, 39, 40);
const BEFORE: RGBColor = RGBColor(205, 210, 218);
const AFTER: RGBColor = RGBColor(31, 119, 180);

/// One training stage's curves: training figures per logged step (x in
/// epochs, fractional) and test-split figures per evaluated epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curves {
    pub stage: String,
    /// `(epoch, loss, accuracy)` of the training windows.
    pub train: Vec<(f64, f64, f64)>,
    /// `(epoch, loss, top-1)` of the evaluations; epoch 0 is before training.
    pub test: Vec<(f64, f64, f64)>,
}

fn drawn<T, E: std::fmt::Display>(result: std::result::Result<T, E>) -> Result<T> {
    result.map_err(|e| Error::Report(e.to_string()))
}

/// Draws onto a fresh SVG of `size` and returns its text.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        drawn(root.fill(&WHITE))?;
        draw(&root)?;
        drawn(root.present())?;
    }
    Ok(text)
}

/// `(lo, hi)` of some values, widened a little so lines do not touch the frame.
fn span(values: impl Iterator<Item = f64>, floor: Option<f64>, ceiling: Option<f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let lo = floor.map_or(lo - pad, |f| (lo - pad).max(f));
    let hi = ceiling.map_or(hi + pad, |c| (hi + pad).min(c));
    (lo, hi)
}

/// The loss chart and the accuracy chart of one stage.
pub fn curves(curves: &Curves) -> Result<(String, String)> {
    let epochs = curves.train.iter().chain(&curves.test).map(|p| p.0).fold(1.0, f64::max);
    let loss = line_chart(
        &format!("{}: loss", curves.stage),
        "loss",
        epochs,
        curves.train.iter().map(|p| (p.0, p.1)).collect(),
        curves.test.iter().map(|p| (p.0, p.1)).collect(),
        span(curves.train.iter().chain(&curves.test).map(|p| p.1), Some(0.0), None),
    )?;
    let accuracy = line_chart(
        &format!("{}: accuracy (%)", curves.stage),
        "accuracy %",
        epochs,
        curves.train.iter().map(|p| (p.0, p.2 * 100.0)).collect(),
        curves.test.iter().map(|p| (p.0, p.2 * 100.0)).collect(),
        span(curves.train.iter().chain(&curves.test).map(|p| p.2 * 100.0), Some(0.0), Some(100.0)),
    )?;
    Ok((loss, accuracy))
}

fn line_chart(
    title: &str,
    y_desc: &str,
    epochs: f64,
    train: Vec<(f64, f64)>,
    test: Vec<(f64, f64)>,
    (lo, hi): (f64, f64),
) -> Result<String> {
    svg((WIDTH, CURVE_HEIGHT), |root| {
        // A little room left and right, so the points at epoch 0 and at the
        // last epoch are not cut by the frame.
        let pad = epochs * 0.04;
        let mut chart = drawn(
            ChartBuilder::on(root)
                .caption(title, (FONT, 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(-pad..epochs + pad, lo..hi),
        )?;
        drawn(
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(y_desc)
                .x_labels((epochs.ceil() as usize + 1).min(11))
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { format!("{x:.1}") }
                })
                .light_line_style(RGBColor(238, 238, 238))
                .label_style((FONT, 12))
                .draw(),
        )?;
        // The legend is the page's (one for all curves), so no curve hides under it.
        if !train.is_empty() {
            drawn(chart.draw_series(LineSeries::new(train, TRAIN.stroke_width(2))))?;
        }
        if !test.is_empty() {
            drawn(chart.draw_series(LineSeries::new(test.clone(), TEST.stroke_width(2))))?;
            drawn(chart.draw_series(test.into_iter().map(|p| Circle::new(p, 4, TEST.filled()))))?;
        }
        Ok(())
    })
}

/// Colours of a sweep's criteria in the Pareto chart, in order of appearance.
const SERIES: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One finished candidate of a sweep, a point of the Pareto chart.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// The series it belongs to: its criterion, with its residual mode where
    /// the sweep's candidates differ in that.
    pub series: String,
    /// Multiply-accumulates per sample, in millions.
    pub mflops: f64,
    /// Top-1 after finetune, in %.
    pub top1: f64,
}

/// Top-1 against FLOPs, one series per [`SweepPoint::series`] (its candidates joined in
/// order of FLOPs), and the dense network as a black diamond when known.
pub fn pareto(points: &[SweepPoint], dense: Option<(f64, f64)>) -> Result<String> {
    let mut names: Vec<&str> = Vec::new();
    for p in points {
        if !names.contains(&p.series.as_str()) {
            names.push(&p.series);
        }
    }
    let xs = points.iter().map(|p| p.mflops).chain(dense.map(|d| d.0));
    let ys = points.iter().map(|p| p.top1).chain(dense.map(|d| d.1));
    let (x_lo, x_hi) = span(xs, Some(0.0), None);
    let (y_lo, y_hi) = span(ys, Some(0.0), Some(100.0));
    svg((WIDE, 420), |root| {
        let mut chart = drawn(
            ChartBuilder::on(root)
                .caption("top-1 after finetune vs FLOPs, per criterion", (FONT, 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi),
        )?;
        drawn(
            chart
                .configure_mesh()
                .x_desc("FLOPs per sample (M multiply-accumulates)")
                .y_desc("top-1 %")
                .light_line_style(RGBColor(238, 238, 238))
                .label_style((FONT, 12))
                .draw(),
        )?;
        for (i, name) in names.iter().enumerate() {
            let colour = SERIES[i % SERIES.len()];
            let mut series: Vec<(f64, f64)> =
                points.iter().filter(|p| p.series == *name).map(|p| (p.mflops, p.top1)).collect();
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
            drawn(chart.draw_series(LineSeries::new(series.clone(), colour.stroke_width(2))))?
                .label(name.to_string())
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
            drawn(chart.draw_series(series.into_iter().map(|p| Circle::new(p, 5, colour.filled()))))?;
        }
        if let Some(point) = dense {
            drawn(chart.draw_series(std::iter::once(TriangleMarker::new(point, 7, BLACK.filled()))))?
                .label("dense")
                .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, BLACK.filled()));
        }
        drawn(
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.9))
                .border_style(RGBColor(200, 200, 200))
                .label_font((FONT, 13))
                .draw(),
        )?;
        Ok(())
    })
}

/// The CSS colours of the training and the test curves, for the page's legend.
pub const TRAIN_CSS: &str = "rgb(31,119,180)";
pub const TEST_CSS: &str = "rgb(214,39,40)";

/// The row of unit `index` of a per-unit chart: the first unit on top.
fn row(index: usize, rows: i32) -> i32 {
    rows - 1 - index as i32
}

/// Name of the unit drawn in `value`'s row.
fn row_label(names: &[String], value: &SegmentValue<i32>) -> String {
    match value {
        SegmentValue::CenterOf(r) | SegmentValue::Exact(r) => {
            let index = usize::try_from(names.len() as i32 - 1 - r).ok();
            index.and_then(|i| names.get(i)).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    }
}

/// A box plot's figures: quartiles (linear interpolation) and Tukey's
/// whiskers, which reach the farthest values within 1.5 IQR of the box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub low: f32,
    pub q1: f32,
    pub median: f32,
    pub q3: f32,
    pub high: f32,
}

impl Spread {
    /// `None` for no (finite) values.
    pub fn of(values: &[f32]) -> Option<Spread> {
        let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f32::total_cmp);
        let last = sorted.len().checked_sub(1)?;
        let at = |q: f32| {
            let pos = q * last as f32;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f32)
        };
        let (q1, median, q3) = (at(0.25), at(0.5), at(0.75));
        let reach = 1.5 * (q3 - q1);
        let low = sorted.iter().copied().find(|v| *v >= q1 - reach).unwrap_or(q1);
        let high = sorted.iter().rev().copied().find(|v| *v <= q3 + reach).unwrap_or(q3);
        Some(Spread { low, q1, median, q3, high })
    }
}

/// Horizontal box plots of β per unit (Tukey's whiskers), with every
/// channel's β as a dot behind its box.
pub fn beta_distribution(units: &[(String, Vec<f32>)]) -> Result<String> {
    let names: Vec<String> = units.iter().map(|(n, _)| n.clone()).collect();
    let rows = units.len().max(1) as i32;
    let height = 90 + ROW * rows as u32;
    svg((WIDE, height), |root| {
        let mut chart = drawn(
            ChartBuilder::on(root)
                .caption("β per channel, by unit (latest knockoff epoch)", (FONT, 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(130)
                .build_cartesian_2d(0f32..1f32, (0..rows).into_segmented()),
        )?;
        drawn(
            chart
                .configure_mesh()
                .x_desc("β")
                .y_labels(rows as usize)
                .y_label_formatter(&|v| row_label(&names, v))
                .light_line_style(RGBColor(238, 238, 238))
                .label_style((FONT, 11))
                .draw(),
        )?;
        for (index, (_, betas)) in units.iter().enumerate() {
            let row = row(index, rows);
            // A fixed spread within the row, so the dots do not all overlap.
            let dots = betas.iter().enumerate().map(|(c, b)| {
                let jitter = ((c * 7919) % 11) as f64 / 10.0 - 0.5;
                let y = SegmentValue::CenterOf(row);
                EmptyElement::at((*b, y))
                    + Circle::new((0, (jitter * f64::from(ROW) * 0.6) as i32), 2, TRAIN.mix(0.35).filled())
            });
            drawn(chart.draw_series(dots))?;
            if let Some(spread) = Spread::of(betas) {
                let center = || SegmentValue::CenterOf(row);
                let half = (ROW / 4) as i32;
                let mut body = Rectangle::new(
                    [(spread.q1, SegmentValue::Exact(row)), (spread.q3, SegmentValue::Exact(row + 1))],
                    WHITE.mix(0.6).filled(),
                );
                body.set_margin(ROW / 4, ROW / 4, 0, 0);
                let mut frame = Rectangle::new(
                    [(spread.q1, SegmentValue::Exact(row)), (spread.q3, SegmentValue::Exact(row + 1))],
                    BLACK.stroke_width(1),
                );
                frame.set_margin(ROW / 4, ROW / 4, 0, 0);
                drawn(chart.draw_series([body, frame]))?;
                let whiskers = [(spread.low, spread.q1), (spread.q3, spread.high)].map(|(a, b)| {
                    PathElement::new(vec![(a, center()), (b, center())], BLACK.stroke_width(1))
                });
                drawn(chart.draw_series(whiskers))?;
                let tick = |x: f32, h: i32, width: u32| {
                    EmptyElement::at((x, center()))
                        + PathElement::new(vec![(0, -h), (0, h)], BLACK.stroke_width(width))
                };
                let ticks = [
                    tick(spread.low, half / 2, 1),
                    tick(spread.high, half / 2, 1),
                    tick(spread.median, half, 2),
                ];
                drawn(chart.draw_series(ticks))?;
            }
        }
        Ok(())
    })
}

/// Bars of channels per unit: before (grey) and kept (blue), with the kept share.
pub fn channels_kept(units: &[(String, u32, u32)]) -> Result<String> {
    let names: Vec<String> = units.iter().map(|(n, _, _)| n.clone()).collect();
    let rows = units.len().max(1) as i32;
    let widest = units.iter().map(|u| u.1).max().unwrap_or(1).max(1);
    let height = 90 + ROW * rows as u32;
    svg((WIDE, height), |root| {
        let mut chart = drawn(
            ChartBuilder::on(root)
                .caption("channels kept per unit", (FONT, 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(130)
                .build_cartesian_2d(0u32..widest + widest / 6, (0..rows).into_segmented()),
        )?;
        drawn(
            chart
                .configure_mesh()
                .x_desc("channels")
                .y_labels(rows as usize)
                .y_label_formatter(&|v| row_label(&names, v))
                .light_line_style(RGBColor(238, 238, 238))
                .label_style((FONT, 11))
                .draw(),
        )?;
        let bar = |row: i32, value: u32, color: RGBColor| {
            let mut rect = Rectangle::new(
                [(0, SegmentValue::Exact(row)), (value, SegmentValue::Exact(row + 1))],
                color.filled(),
            );
            rect.set_margin(4, 4, 0, 0);
            rect
        };
        drawn(chart.draw_series(units.iter().enumerate().map(|(i, u)| bar(row(i, rows), u.1, BEFORE))))?
            .label("before")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BEFORE.filled()));
        drawn(chart.draw_series(units.iter().enumerate().map(|(i, u)| bar(row(i, rows), u.2, AFTER))))?
            .label("kept")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], AFTER.filled()));
        let notes = units.iter().enumerate().map(|(i, u)| {
            let share = f64::from(u.2) / f64::from(u.1.max(1)) * 100.0;
            Text::new(
                format!("{}/{} ({share:.0} %)", u.2, u.1),
                (u.1 + widest / 60 + 1, SegmentValue::CenterOf(row(i, rows))),
                (FONT, 11).into_font().color(&RGBColor(80, 80, 80)).pos(Pos::new(HPos::Left, VPos::Center)),
            )
        });
        drawn(chart.draw_series(notes))?;
        drawn(
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .label_font((FONT, 12))
                .draw(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_plots_show_quartiles_and_whiskers_within_the_data() {
        let spread = Spread::of(&[0.1, 0.2, 0.3, 0.4, 0.5]).unwrap();
        assert_eq!((spread.low, spread.q1, spread.median, spread.q3, spread.high), (0.1, 0.2, 0.3, 0.4, 0.5));
        // 0.0 lies more than 1.5 IQR below the box: it is an outlier, and the whisker stops at 0.55.
        let spread = Spread::of(&[0.0, 0.55, 0.6, 0.6, 0.62, 0.65, 0.7]).unwrap();
        assert_eq!((spread.low, spread.median, spread.high), (0.55, 0.6, 0.7));
        assert_eq!(Spread::of(&[0.5]).unwrap().q3, 0.5);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f32::NAN]), None);
    }

    #[test]
    fn charts_are_svg_with_their_titles_and_labels() {
        let curves = Curves {
            stage: "finetune".into(),
            train: vec![(0.5, 1.2, 0.6), (1.0, 0.8, 0.7), (1.5, 0.6, 0.75), (2.0, 0.5, 0.8)],
            test: vec![(0.0, 1.0, 0.7), (1.0, 0.7, 0.8), (2.0, 0.5, 0.85)],
        };
        let (loss, accuracy) = super::curves(&curves).unwrap();
        for (svg, title) in [(&loss, "finetune: loss"), (&accuracy, "finetune: accuracy (%)")] {
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
            assert!(svg.contains(title), "{title}");
            // One line per split, in its colour.
            assert_eq!(svg.matches("stroke=\"#1F77B4\" stroke-width=\"2\"").count(), 1, "{title}");
            assert_eq!(svg.matches("stroke=\"#D62728\" stroke-width=\"2\"").count(), 1, "{title}");
        }
        let units = vec![
            ("layer1.0.conv1".to_owned(), vec![0.1f32, 0.5, 0.9, 0.7]),
            ("layer1.0.conv2".to_owned(), vec![0.2, 0.4]),
        ];
        let beta = beta_distribution(&units).unwrap();
        assert!(beta.contains("layer1.0.conv1") && beta.contains("layer1.0.conv2"), "{beta}");
        assert_eq!(beta.matches("<circle").count(), 6, "one dot per channel");
        let kept =
            channels_kept(&[("layer1.0.conv1".into(), 16, 9), ("layer2.0.conv1".into(), 32, 18)]).unwrap();
        assert!(kept.contains("9/16 (56 %)") && kept.contains("18/32 (56 %)"), "{kept}");
    }

    #[test]
    fn the_pareto_chart_has_a_series_per_criterion_and_the_dense_point() {
        let point = |criterion: &str, mflops, top1| SweepPoint { series: criterion.into(), mflops, top1 };
        let svg = pareto(
            &[
                point("scop", 13.6, 90.9),
                point("scop", 8.0, 89.5),
                point("l1", 13.6, 90.1),
                point("random", 8.0, 87.0),
            ],
            Some((30.8, 92.0)),
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for label in ["top-1 after finetune vs FLOPs", "scop", "l1", "random", "dense", "top-1 %"] {
            assert!(svg.contains(label), "{label} missing");
        }
        // Four points and a legend marker per criterion; the dense triangle and its legend's.
        assert_eq!(svg.matches("<circle").count(), 4 + 3, "{svg}");
        assert_eq!(svg.matches("<polygon").count(), 2, "{svg}");
    }
}
