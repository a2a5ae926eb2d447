//! SVG charts of the results (plotters, SVG backend, no system fonts).

use plotters::prelude::*;
use std::path::Path;

/// One line of a chart: `(x, y)` points; `x` is an index into the chart's
/// categories.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
    /// Draw dashed, no markers (a limit).
    pub dashed: bool,
    /// Draw thicker (ours).
    pub bold: bool,
}

/// Distinct colours, dark enough on white.
const COLOURS: [(u8, u8, u8); 16] = [
    (214, 39, 40),
    (31, 119, 180),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
    (127, 127, 127),
    (188, 189, 34),
    (0, 0, 0),
    (0, 90, 50),
    (120, 0, 60),
    (90, 90, 200),
    (200, 150, 0),
    (0, 130, 130),
];

fn y_fmt(v: &f64) -> String {
    let a = v.abs();
    if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A chart of `series` against categorical x values `cats`, y on a log
/// scale when `log_y`.
///
/// # Errors
/// When drawing or writing fails.
pub fn chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    cats: &[String],
    series: &[Series],
    log_y: bool,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| format!("plot {}: {x}", path.display());
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite() && (*v > 0.0 || !log_y))
        .collect();
    // No data (nothing measured): an empty chart that says so.
    let (lo, hi) = if ys.is_empty() {
        (1.0, 10.0)
    } else {
        (
            ys.iter().copied().fold(f64::INFINITY, f64::min),
            ys.iter().copied().fold(0.0, f64::max),
        )
    };
    let title = if ys.is_empty() {
        format!("{title} (no data)")
    } else {
        title.to_string()
    };
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let xr = -0.3f64..(cats.len() as f64 - 0.7);
    let fmt_x = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
            cats[i as usize].clone()
        } else {
            String::new()
        }
    };
    let mut b = ChartBuilder::on(&root);
    b.caption(&title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(80);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_labels(cats.len())
                .x_label_formatter(&fmt_x)
                .y_label_formatter(&y_fmt)
                .x_desc(x_desc)
                .y_desc(y_desc)
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|x| e(&x))?;
            for (i, s) in series.iter().enumerate() {
                let (r, g, b) = COLOURS[i % COLOURS.len()];
                let style = ShapeStyle {
                    color: RGBColor(r, g, b).to_rgba(),
                    filled: true,
                    stroke_width: if s.bold { 3 } else { 2 },
                };
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.1.is_finite() && (p.1 > 0.0 || !log_y))
                    .collect();
                if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                        .map_err(|x| e(&x))?
                        .label(s.label.replace('*', ""))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
                } else {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), style))
                        .map_err(|x| e(&x))?
                        .label(s.label.replace('*', ""))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, style.filled())))
                        .map_err(|x| e(&x))?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|x| e(&x))?;
        }};
    }
    if log_y {
        // Head room above the data for the legend.
        let (lo, hi) = (lo / 1.5, hi * 60.0);
        draw!(b
            .build_cartesian_2d(xr, (lo..hi).log_scale())
            .map_err(|x| e(&x))?);
    } else {
        draw!(b
            .build_cartesian_2d(xr, 0.0..hi * 1.15)
            .map_err(|x| e(&x))?);
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
