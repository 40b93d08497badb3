//! The equity curve and its drawdown as one SVG (plotters' SVG backend: it writes `<text>`
//! elements and estimates text sizes itself, so no font or graphics library is linked).

use plotters::prelude::*;

use super::Report;

/// The SVG of a report: equity above, drawdown (fraction of the running peak) below; the x
/// axis is seconds since the first point.
pub fn svg(report: &Report) -> Result<String, String> {
    let pts = &report.equity_curve;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 560)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| format!("plot: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(340);
        let t0 = pts.first().map_or(0, |p| p.0);
        let xs: Vec<f64> = pts.iter().map(|p| (p.0 - t0) as f64 / 1000.0).collect();
        let x_max = xs.last().copied().unwrap_or(0.0).max(1e-3);
        let eq: Vec<f64> = pts.iter().map(|p| p.1 as f64).collect();
        let (lo, hi) = eq
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let (lo, hi) = if eq.is_empty() { (0.0, 1.0) } else { (lo, hi) };
        let pad = ((hi - lo) * 0.05).max(1.0);
        let mut c = ChartBuilder::on(&top)
            .caption(
                format!(
                    "{} on {}: equity (quote currency, minimal units)",
                    report.strategy, report.symbol
                ),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..x_max, (lo - pad)..(hi + pad))
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            xs.iter().copied().zip(eq.iter().copied()),
            &BLUE,
        ))
        .map_err(err)?;

        let mut peak = f64::MIN;
        let dd: Vec<f64> = eq
            .iter()
            .map(|&e| {
                peak = peak.max(e);
                if peak > 0.0 {
                    -(peak - e) / peak * 100.0
                } else {
                    0.0
                }
            })
            .collect();
        let dd_min = dd.iter().fold(0.0f64, |a, &b| a.min(b)).min(-1e-3);
        let mut c = ChartBuilder::on(&bottom)
            .caption("drawdown (% of peak equity)", ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..x_max, (dd_min * 1.05)..0f64)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            xs.iter().copied().zip(dd.iter().copied()),
            &RED,
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}
