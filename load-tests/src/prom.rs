//! Histograms read back from Prometheus text (what `/metrics` serves).
//!
//! The exporter keeps bucket counts, not observations, so a percentile can
//! only be estimated. We do what Prometheus's `histogram_quantile` does:
//! find the bucket holding the wanted rank and interpolate linearly between
//! its bounds (from 0 for the first bucket). A value in the `+Inf` bucket
//! is reported as "above the last bound". Sum and count are exact, so the
//! mean is too.

use std::fmt;

/// One histogram series: cumulative counts per upper bound, ascending,
/// ending with `+Inf`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// A percentile estimated from buckets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Estimate {
    /// Interpolated inside the bucket `(lower, upper]`.
    Within { value: f64, lower: f64, upper: f64 },
    /// In the `+Inf` bucket: more than `bound`.
    Above { bound: f64 },
}

impl Estimate {
    /// The number to put in a JSON report: the estimate, or the last bound
    /// when the value is above it (a lower bound, marked as such in text).
    pub fn value(&self) -> f64 {
        match *self {
            Estimate::Within { value, .. } => value,
            Estimate::Above { bound } => bound,
        }
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Estimate::Within { value, .. } => write!(f, "{}", ms(value)),
            Estimate::Above { bound } => write!(f, "> {}", ms(bound)),
        }
    }
}

/// Seconds as milliseconds, with sensible precision.
pub fn ms(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    // Compared at the precision printed, so 9.999 shows as 10.0, not 10.00.
    if ms < 9.995 {
        format!("{ms:.2} ms")
    } else if ms < 99.95 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

impl Histogram {
    /// The series `name` whose labels include every `(label, value)` of
    /// `labels` (others may be present). `None` if there is none yet (a
    /// histogram appears at its first observation).
    pub fn parse(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
        let mut h = Histogram::default();
        let mut seen = false;
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let Some(suffix) = metric.strip_prefix(name) else {
                continue;
            };
            let pairs = parse_labels(label_text);
            let matches = labels
                .iter()
                .all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v));
            if !matches {
                continue;
            }
            match suffix {
                "_bucket" => {
                    let Some(le) = pairs.iter().find(|(k, _)| k == "le").map(|(_, v)| v) else {
                        continue;
                    };
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        match le.parse() {
                            Ok(b) => b,
                            Err(_) => continue,
                        }
                    };
                    let Ok(n) = value.parse::<f64>() else {
                        continue;
                    };
                    h.buckets.push((bound, n as u64));
                    seen = true;
                }
                "_sum" => {
                    h.sum = value.parse().unwrap_or(0.0);
                    seen = true;
                }
                "_count" => {
                    h.count = value.parse::<f64>().map_or(0, |n| n as u64);
                    seen = true;
                }
                _ => {}
            }
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        seen.then_some(h)
    }

    /// What was observed between `earlier` and `self` (same series).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(bound, n)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == bound)
                    .map_or(0, |(_, n)| *n);
                (bound, n.saturating_sub(before))
            })
            .collect();
        Histogram {
            buckets,
            sum: self.sum - earlier.sum,
            count: self.count.saturating_sub(earlier.count),
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `q` quantile (0 < q ≤ 1), interpolated inside its bucket.
    pub fn quantile(&self, q: f64) -> Option<Estimate> {
        let total = self.buckets.last().map_or(0, |b| b.1);
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut lower = 0.0;
        let mut below = 0u64;
        for &(upper, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > below {
                if upper.is_infinite() {
                    return Some(Estimate::Above { bound: lower });
                }
                let inside = (cumulative - below) as f64;
                let value = lower + (upper - lower) * (rank - below as f64) / inside;
                return Some(Estimate::Within {
                    value,
                    lower,
                    upper,
                });
            }
            lower = upper;
            below = cumulative;
        }
        None
    }

    /// The bucket holding the largest observation: the histogram knows no
    /// more than that it lies in `(lower, upper]`.
    pub fn max(&self) -> Option<Estimate> {
        let mut lower = 0.0;
        let mut below = 0u64;
        let mut found = None;
        for &(upper, cumulative) in &self.buckets {
            if cumulative > below {
                found = Some(if upper.is_infinite() {
                    Estimate::Above { bound: lower }
                } else {
                    Estimate::Within {
                        value: upper,
                        lower,
                        upper,
                    }
                });
            }
            lower = upper;
            below = cumulative;
        }
        found
    }
}

/// The sum of every sample of `name` whose labels include all of `labels`
/// (a counter, summed over its other labels); 0 when there is none yet.
pub fn total(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let pairs = parse_labels(label_text);
            labels
                .iter()
                .all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// `a="x",le="0.5"` → pairs (values unescaped for `\"` and `\\`).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let key = key.trim().trim_start_matches(',').trim().to_string();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        pairs.push((key, value));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE mailroom_ingest_latency_seconds histogram
mailroom_ingest_latency_seconds_bucket{account="LOAD",le="0.001"} 0
mailroom_ingest_latency_seconds_bucket{account="LOAD",le="0.01"} 40
mailroom_ingest_latency_seconds_bucket{account="LOAD",le="0.1"} 90
mailroom_ingest_latency_seconds_bucket{account="LOAD",le="+Inf"} 100
mailroom_ingest_latency_seconds_sum{account="LOAD"} 4.5
mailroom_ingest_latency_seconds_count{account="LOAD"} 100
mailroom_ingest_latency_seconds_bucket{account="OTHER",le="0.001"} 7
mailroom_ingest_latency_seconds_bucket{account="OTHER",le="+Inf"} 7
mailroom_ingest_mails_total{account="LOAD",outcome="created"} 100
"#;

    fn load() -> Histogram {
        Histogram::parse(
            TEXT,
            "mailroom_ingest_latency_seconds",
            &[("account", "LOAD")],
        )
        .expect("series")
    }

    #[test]
    fn reads_one_series_by_its_labels() {
        let h = load();
        assert_eq!(h.count, 100);
        assert_eq!(h.sum, 4.5);
        assert_eq!(
            h.buckets,
            vec![(0.001, 0), (0.01, 40), (0.1, 90), (f64::INFINITY, 100)]
        );
        assert_eq!(h.mean(), Some(0.045));
        assert!(
            Histogram::parse(
                TEXT,
                "mailroom_ingest_latency_seconds",
                &[("account", "NONE")]
            )
            .is_none()
        );
        assert_eq!(
            total(TEXT, "mailroom_ingest_mails_total", &[("account", "LOAD")]),
            100.0
        );
        assert_eq!(
            total(TEXT, "mailroom_ingest_mails_total", &[("account", "X")]),
            0.0
        );
    }

    #[test]
    fn percentiles_interpolate_inside_their_bucket() {
        let h = load();
        // Rank 50 is the 10th of 50 observations in (0.01, 0.1].
        let Some(Estimate::Within {
            value,
            lower,
            upper,
        }) = h.quantile(0.5)
        else {
            panic!("p50 is within a bucket");
        };
        assert!(
            (value - (0.01 + 0.09 * 10.0 / 50.0)).abs() < 1e-12,
            "{value}"
        );
        assert_eq!((lower, upper), (0.01, 0.1));
        // Rank 20 is halfway through (0.001, 0.01].
        assert!((h.quantile(0.2).map(|e| e.value()).unwrap_or(0.0) - 0.0055).abs() < 1e-12);
        // p99 lies in +Inf: above the last bound.
        assert_eq!(h.quantile(0.99), Some(Estimate::Above { bound: 0.1 }));
        assert_eq!(h.max(), Some(Estimate::Above { bound: 0.1 }));
    }

    #[test]
    fn a_difference_of_snapshots_holds_what_happened_between() {
        let before = load();
        let mut after = load();
        after.buckets = vec![(0.001, 0), (0.01, 41), (0.1, 91), (f64::INFINITY, 101)];
        after.sum = 4.5 + 0.004;
        after.count = 101;
        let d = after.since(&before);
        assert_eq!(d.count, 1);
        assert!((d.sum - 0.004).abs() < 1e-12);
        assert_eq!(
            d.max(),
            Some(Estimate::Within {
                value: 0.01,
                lower: 0.001,
                upper: 0.01
            })
        );
    }
}
