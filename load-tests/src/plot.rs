//! The report's PNG plots, drawn with plotters on its bitmap backend:
//!
//! - `latency_histogram.png`: injected → offer, in ms;
//! - `throughput.png`: interactions assigned per second over the run;
//! - `latency_over_time.png`: every offer's latency, with per-second p50
//!   and p99 (log scale: a slow second must not flatten the rest);
//! - `rss.png`: the server's resident memory over the run, when sampled.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (plotters'
//! `ab_glyph` font backend), so the plots need no system fonts or
//! fontconfig and render the same on any machine.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::Timeline;

const SIZE: (u32, u32) = (1000, 600);
const FONT: &str = "sans-serif";
const DEJAVU: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const BAR: RGBColor = RGBColor(70, 120, 180);
const P50: RGBColor = RGBColor(40, 140, 60);
const P99: RGBColor = RGBColor(200, 60, 40);
const DOTS: RGBColor = RGBColor(90, 110, 160);
const LIGHT: RGBColor = RGBColor(236, 236, 236);

/// An axis label without trailing zeros: `10`, `2.5`, `0.25`.
fn tick(v: &f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Registers the bundled font under the family the charts ask for, once
/// per process (plotters keeps fonts in a global table).
fn fonts() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU).is_ok());
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the bundled DejaVu Sans font did not load"))
    }
}

/// Plotters' errors carry the backend's error type; flatten them to text.
fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// Draws every plot of `timeline` into `dir`; `rss.png` only when an RSS
/// series was sampled.
pub fn all(dir: &Path, timeline: &Timeline) -> anyhow::Result<()> {
    fonts()?;
    let latencies: Vec<f64> = timeline.offers.iter().map(|&(_, ms)| ms).collect();
    latency_histogram(&dir.join("latency_histogram.png"), &latencies)?;
    throughput(&dir.join("throughput.png"), &timeline.assigned_at)?;
    latency_over_time(&dir.join("latency_over_time.png"), &timeline.offers)?;
    if !timeline.rss.is_empty() {
        rss(&dir.join("rss.png"), &timeline.rss)?;
    }
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn canvas(path: &Path) -> anyhow::Result<Area<'_>> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// A chart with nothing to show still gets its title and says so, so a
/// report directory always has the same files.
fn no_data(root: &Area<'_>, title: &str, why: &str) -> anyhow::Result<()> {
    root.draw(&Text::new(
        title.to_string(),
        (40, 30),
        (FONT, 26).into_font(),
    ))
    .map_err(err)?;
    root.draw(&Text::new(
        why.to_string(),
        (40, 90),
        (FONT, 20).into_font().color(&RGBColor(90, 90, 90)),
    ))
    .map_err(err)?;
    root.present().map_err(err)
}

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let i = (q * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn latency_histogram(path: &Path, samples_ms: &[f64]) -> anyhow::Result<()> {
    let root = canvas(path)?;
    let title = "Mail injected → offer received";
    if samples_ms.is_empty() {
        return no_data(&root, title, "No offer was timed in this run.");
    }
    let mut sorted = samples_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        nearest_rank(&sorted, 0.5),
        nearest_rank(&sorted, 0.99),
        sorted[sorted.len() - 1],
    );
    // A long tail would squeeze the body into one bar: show up to twice the
    // p99 and count what lies past it in the caption.
    let hi = if max > 2.0 * p99 && p99 > 0.0 {
        2.0 * p99
    } else {
        max
    };
    let hi = if hi > 0.0 { hi } else { 1.0 };
    let bins = ((sorted.len() as f64).sqrt() * 2.0).clamp(10.0, 60.0) as usize;
    let width = hi / bins as f64;
    let mut counts = vec![0u64; bins];
    let mut beyond = 0u64;
    for &x in &sorted {
        if x > hi {
            beyond += 1;
        } else {
            counts[((x / width) as usize).min(bins - 1)] += 1;
        }
    }
    let top = counts.iter().copied().max().unwrap_or(1) as f64 * 1.2;
    let caption = if beyond > 0 {
        format!(
            "{title}: {} offers ({beyond} above {hi:.1} ms not shown, max {max:.1} ms)",
            sorted.len()
        )
    } else {
        format!("{title}: {} offers", sorted.len())
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..hi * 1.02, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("latency (ms)")
        .y_desc("offers")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .max_light_lines(1)
        .light_line_style(LIGHT)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &n)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, n as f64)], BAR.filled())
        }))
        .map_err(err)?;
    for (label, x, color) in [("p50", p50, P50), ("p99", p99, P99)] {
        if x <= hi {
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, top)], color.stroke_width(2)))
                .map_err(err)?
                .label(format!("{label} {x:.2} ms"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
    }
    legend(&mut chart)?;
    root.present().map_err(err)
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
        .map_err(err)
}

/// Counts per whole second since the start: `[k, k + 1)` → bucket k.
fn per_second(times: &[f64]) -> Vec<u64> {
    let last = times.iter().copied().fold(0.0, f64::max);
    let mut counts = vec![0u64; last.floor() as usize + 1];
    for &t in times {
        if t >= 0.0 {
            counts[t.floor() as usize] += 1;
        }
    }
    counts
}

fn throughput(path: &Path, assigned_at: &[f64]) -> anyhow::Result<()> {
    let root = canvas(path)?;
    let title = "Interactions assigned per second";
    if assigned_at.is_empty() {
        return no_data(&root, title, "No interaction was assigned in this run.");
    }
    let counts = per_second(assigned_at);
    let secs = counts.len() as f64;
    // Headroom above the tallest second for the legend.
    let top = counts.iter().copied().max().unwrap_or(1) as f64 * 1.35;
    let first = assigned_at.iter().copied().fold(f64::INFINITY, f64::min);
    let last = assigned_at.iter().copied().fold(0.0, f64::max);
    // The mean over the span that assigned anything, not from t = 0: the
    // first seconds are spent logging agents in.
    let mean = if last > first {
        assigned_at.len() as f64 / (last - first)
    } else {
        assigned_at.len() as f64
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: {} in total", assigned_at.len()),
            (FONT, 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..secs, 0f64..top.max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("interactions / s")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .max_light_lines(1)
        .light_line_style(LIGHT)
        .draw()
        .map_err(err)?;
    // A step line: each second's count held across that second.
    let steps = counts
        .iter()
        .enumerate()
        .flat_map(|(k, &n)| [(k as f64, n as f64), (k as f64 + 1.0, n as f64)]);
    chart
        .draw_series(LineSeries::new(steps, BAR.stroke_width(2)))
        .map_err(err)?
        .label("assigned in that second")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BAR.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            [(first, mean), (last, mean)],
            P99.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!("mean {mean:.1}/s"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], P99.stroke_width(2)));
    legend(&mut chart)?;
    root.present().map_err(err)
}

fn latency_over_time(path: &Path, offers: &[(f64, f64)]) -> anyhow::Result<()> {
    let root = canvas(path)?;
    let title = "Injected → offer over the run";
    if offers.is_empty() {
        return no_data(&root, title, "No offer was timed in this run.");
    }
    let secs = offers
        .iter()
        .map(|&(t, _)| t)
        .fold(0.0, f64::max)
        .ceil()
        .max(1.0);
    let max = offers.iter().map(|&(_, ms)| ms).fold(0.0, f64::max);
    // Log scale needs a positive floor; sub-0.05 ms offers sit on it.
    let floor = offers
        .iter()
        .map(|&(_, ms)| ms)
        .filter(|&ms| ms > 0.0)
        .fold(f64::INFINITY, f64::min)
        .max(0.05)
        * 0.8;
    let floor = if floor.is_finite() { floor } else { 0.05 };
    // Headroom above the slowest offer for the legend.
    let ceiling = (max * 2.5).max(floor * 10.0);

    // p50 and p99 of each second that had offers, drawn at its middle.
    let mut by_second: Vec<Vec<f64>> = vec![Vec::new(); secs as usize + 1];
    for &(t, ms) in offers {
        if t >= 0.0 {
            by_second[t.floor() as usize].push(ms);
        }
    }
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for (k, v) in by_second.iter_mut().enumerate() {
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let x = k as f64 + 0.5;
        p50s.push((x, nearest_rank(v, 0.5).max(floor)));
        p99s.push((x, nearest_rank(v, 0.99).max(floor)));
    }

    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: {} offers, log scale", offers.len()),
            (FONT, 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..secs, (floor..ceiling).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (ms)")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        // Plotters' log mesh crowds its minor lines near some decades into
        // a grey band: the labelled lines are enough.
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let dot = DOTS.mix(0.35).filled();
    chart
        .draw_series(
            offers
                .iter()
                .map(|&(t, ms)| Circle::new((t, ms.max(floor)), 2, dot)),
        )
        .map_err(err)?
        .label("one offer")
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, DOTS.filled()));
    for (label, series, color) in [("p50 per second", p50s, P50), ("p99 per second", p99s, P99)] {
        chart
            .draw_series(LineSeries::new(series, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present().map_err(err)
}

fn rss(path: &Path, series: &[(f64, f64)]) -> anyhow::Result<()> {
    let root = canvas(path)?;
    let secs = series.iter().map(|&(t, _)| t).fold(0.0, f64::max).max(1.0);
    let max = series.iter().map(|&(_, mb)| mb).fold(0.0, f64::max);
    let last = series.last().map_or(0.0, |&(_, mb)| mb);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Server resident memory: peak {max:.1} MiB, last {last:.1} MiB"),
            (FONT, 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..secs, 0f64..(max * 1.15).max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("RSS (MiB)")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .max_light_lines(1)
        .light_line_style(LIGHT)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(series.iter().copied(), BAR.stroke_width(2)))
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_bucket_half_open() {
        assert_eq!(per_second(&[0.0, 0.99, 1.0, 2.5, 2.7]), [2, 1, 2]);
        assert_eq!(per_second(&[]), [0]);
    }

    #[test]
    fn ticks_drop_trailing_zeros() {
        let t = |v: f64| tick(&v);
        assert_eq!(
            [t(10.0), t(2.5), t(0.25), t(0.0), t(-0.001)],
            ["10", "2.5", "0.25", "0", "0"]
        );
    }

    #[test]
    fn the_bundled_font_loads() {
        fonts().expect("DejaVu Sans registers");
    }
}
