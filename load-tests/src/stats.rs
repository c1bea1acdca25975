//! Exact percentiles of durations the harness timed itself (every sample is
//! kept: runs are bounded, and a few thousand floats cost nothing).

use serde_json::{Value, json};

use crate::prom::ms;

#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Nearest-rank percentiles of `samples` (seconds); `None` when empty.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = (q * s.len() as f64).ceil() as usize;
            s[i.clamp(1, s.len()) - 1]
        };
        Some(Summary {
            n: s.len(),
            min: s[0],
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: s[s.len() - 1],
            mean: s.iter().sum::<f64>() / s.len() as f64,
        })
    }

    /// One line: `p50 … p90 … p99 … max … (min …, mean …)`.
    pub fn line(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  max {}  (min {}, mean {}, n {})",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.min),
            ms(self.mean),
            self.n
        )
    }

    /// Milliseconds, for the JSON report.
    pub fn json_ms(&self) -> Value {
        let r = |s: f64| (s * 1e6).round() / 1e3;
        json!({
            "p50": r(self.p50), "p90": r(self.p90), "p99": r(self.p99),
            "max": r(self.max), "min": r(self.min), "mean": r(self.mean), "n": self.n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&samples).expect("samples");
        assert_eq!(
            (s.min, s.p50, s.p90, s.p99, s.max),
            (1.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(s.mean, 50.5);
        let one = Summary::of(&[0.25]).expect("one");
        assert_eq!((one.p50, one.p99, one.max), (0.25, 0.25, 0.25));
        assert!(Summary::of(&[]).is_none());
    }
}
