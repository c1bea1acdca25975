//! A scenario's results, as issue #7 asks for them: `report.json` (the
//! issue's field names, exactly), `report.txt` (a table and the goals, each
//! met, missed or not measured) and the plots of [`crate::plot`].
//!
//! A figure that was not measured is `null` in the JSON and `—` in the text,
//! never a 0 that would read as a result: hence the `Option`s.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::prom::Histogram;
use crate::sample::CpuShare;
use crate::stats::Summary;

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Pcts {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The two percentiles the issue asks for where it asks for no more, in
/// milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct P50P99 {
    pub p50: f64,
    pub p99: f64,
}

/// Exact (nearest-rank) percentiles of samples in milliseconds; `None`
/// when there are none.
pub fn pcts(samples_ms: &[f64]) -> Option<Pcts> {
    Summary::of(samples_ms).map(|s| Pcts {
        p50: s.p50,
        p90: s.p90,
        p99: s.p99,
        max: s.max,
    })
}

impl Pcts {
    pub fn p50_p99(&self) -> P50P99 {
        P50P99 {
            p50: self.p50,
            p99: self.p99,
        }
    }
}

impl P50P99 {
    /// From a Prometheus histogram in seconds (e.g. the server's EXISTS →
    /// offer): interpolated inside buckets, and a value past the last
    /// bound reads as that bound (see [`crate::prom::Estimate::value`]).
    pub fn from_histogram(h: &Histogram) -> Option<P50P99> {
        Some(P50P99 {
            p50: h.quantile(0.50)?.value() * 1000.0,
            p99: h.quantile(0.99)?.value() * 1000.0,
        })
    }
}

/// One scenario's results. `extra` holds what only some scenarios measure;
/// the goals read three of its keys when present: `store`
/// (`"postgres"`/`"sqlite"`), `mail_rate_per_s` (the offered rate) and
/// `rss_per_agent_kib`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub agents: u64,
    pub injected: u64,
    pub interactions: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Mail injected → offer received at an agent.
    pub offer_latency_ms: Option<Pcts>,
    pub accept_to_assigned_ms: Option<Pcts>,
    /// The server's own part, from `/metrics`.
    pub exists_to_offer_ms: Option<P50P99>,
    /// Taken-by-another reaching the other offered agents.
    pub taken_latency_ms: Option<P50P99>,
    pub throughput_per_s: Option<f64>,
    pub server_rss_mb: Option<f64>,
    pub cpu_share: Option<CpuShare>,
    pub errors: u64,
    pub duration_s: f64,
    pub extra: Map<String, Value>,
}

/// What happened over time, for the plots (times in seconds since the
/// scenario's start).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// `(time of the offer, injected → offer in ms)`.
    pub offers: Vec<(f64, f64)>,
    /// When each interaction was assigned.
    pub assigned_at: Vec<f64>,
    /// `(time, server RSS in MiB)`.
    pub rss: Vec<(f64, f64)>,
}

/// Writes `report.json`, `report.txt` and the PNG plots into `dir`
/// (created if missing).
pub fn write(dir: &Path, report: &Report, timeline: &Timeline) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(&report.json())?;
    std::fs::write(dir.join("report.json"), json + "\n")
        .with_context(|| format!("writing {}", dir.join("report.json").display()))?;
    std::fs::write(dir.join("report.txt"), report.text())
        .with_context(|| format!("writing {}", dir.join("report.txt").display()))?;
    crate::plot::all(dir, timeline)?;
    Ok(())
}

/// A goal of the issue, judged on one report.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    pub goal: &'static str,
    /// The figure it was judged on, as printed.
    pub figure: Option<String>,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Met,
    Missed,
    /// Not measured by this run, and why.
    NotMeasured(String),
}

impl Verdict {
    fn as_str(&self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::NotMeasured(_) => "not measured",
        }
    }

    fn at_most(value: f64, limit: f64) -> Verdict {
        if value <= limit {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }
}

fn round(x: f64, decimals: i32) -> f64 {
    let k = 10f64.powi(decimals);
    (x * k).round() / k
}

impl Pcts {
    fn rounded(self) -> Pcts {
        Pcts {
            p50: round(self.p50, 3),
            p90: round(self.p90, 3),
            p99: round(self.p99, 3),
            max: round(self.max, 3),
        }
    }
}

impl P50P99 {
    fn rounded(self) -> P50P99 {
        P50P99 {
            p50: round(self.p50, 3),
            p99: round(self.p99, 3),
        }
    }
}

fn share_rounded(c: CpuShare) -> CpuShare {
    let r = |x: f64| round(x, 4);
    CpuShare {
        server: c.server.map(r),
        store: r(c.store),
        imap: r(c.imap),
        harness: r(c.harness),
        other: r(c.other),
    }
}

/// `report.json` as written: the issue's fields first, in its order
/// (a derived `Serialize` keeps declaration order), then ours. An absent
/// figure is `None`, hence `null`.
#[derive(Serialize)]
struct Json<'a> {
    scenario: &'a str,
    agents: u64,
    injected: u64,
    interactions: u64,
    lost: u64,
    duplicated: u64,
    offer_latency_ms: Option<Pcts>,
    exists_to_offer_ms: Option<P50P99>,
    taken_latency_ms: Option<P50P99>,
    throughput_per_s: Option<f64>,
    server_rss_mb: Option<f64>,
    cpu_share: Option<CpuShare>,
    accept_to_assigned_ms: Option<Pcts>,
    errors: u64,
    duration_s: f64,
    goals: Vec<GoalJson>,
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct GoalJson {
    goal: &'static str,
    status: &'static str,
    figure: Option<String>,
    why: Option<String>,
}

impl Report {
    fn json(&self) -> Json<'_> {
        Json {
            scenario: &self.scenario,
            agents: self.agents,
            injected: self.injected,
            interactions: self.interactions,
            lost: self.lost,
            duplicated: self.duplicated,
            offer_latency_ms: self.offer_latency_ms.map(Pcts::rounded),
            exists_to_offer_ms: self.exists_to_offer_ms.map(P50P99::rounded),
            taken_latency_ms: self.taken_latency_ms.map(P50P99::rounded),
            throughput_per_s: self.throughput_per_s.map(|x| round(x, 2)),
            server_rss_mb: self.server_rss_mb.map(|x| round(x, 1)),
            cpu_share: self.cpu_share.map(share_rounded),
            accept_to_assigned_ms: self.accept_to_assigned_ms.map(Pcts::rounded),
            errors: self.errors,
            duration_s: round(self.duration_s, 3),
            goals: self
                .goals()
                .into_iter()
                .map(|g| GoalJson {
                    goal: g.goal,
                    status: g.verdict.as_str(),
                    figure: g.figure,
                    why: match g.verdict {
                        Verdict::NotMeasured(why) => Some(why),
                        _ => None,
                    },
                })
                .collect(),
            extra: &self.extra,
        }
    }

    /// `report.json`'s content as a value (what a reader of the file gets).
    #[cfg(test)]
    fn to_json(&self) -> Value {
        serde_json::to_value(self.json()).unwrap_or(Value::Null)
    }

    fn extra_f64(&self, key: &str) -> Option<f64> {
        self.extra.get(key).and_then(Value::as_f64)
    }

    /// The goals of issue #7, each met, missed or not measured by this run.
    pub fn goals(&self) -> Vec<Goal> {
        let ms = |x: f64| format!("{x:.2} ms");
        let not = |why: &str| Verdict::NotMeasured(why.to_string());
        let mut goals = Vec::new();

        goals.push(match self.exists_to_offer_ms {
            Some(q) => Goal {
                goal: "EXISTS → offer p99 ≤ 20 ms",
                figure: Some(ms(q.p99)),
                verdict: Verdict::at_most(q.p99, 20.0),
            },
            None => Goal {
                goal: "EXISTS → offer p99 ≤ 20 ms",
                figure: None,
                verdict: not("no offer timed by the server"),
            },
        });

        let store = self.extra.get("store").and_then(Value::as_str);
        let rate = self.extra_f64("mail_rate_per_s");
        goals.push({
            let goal = "≥ 1,000 interactions/s end to end on Postgres";
            match self.throughput_per_s {
                None => Goal {
                    goal,
                    figure: None,
                    verdict: not("no interactions routed"),
                },
                Some(t) => {
                    let figure = Some(format!("{t:.1}/s"));
                    let verdict = match (store, rate) {
                        (None, _) => not("the store was not recorded"),
                        (Some(s), _) if s != "postgres" => {
                            Verdict::NotMeasured(format!("the store was {s}, not postgres"))
                        }
                        _ if t >= 1000.0 => Verdict::Met,
                        (_, Some(r)) if r < 1000.0 => {
                            Verdict::NotMeasured(format!("mail was offered at only {r:.0}/s"))
                        }
                        _ => Verdict::Missed,
                    };
                    Goal {
                        goal,
                        figure,
                        verdict,
                    }
                }
            }
        });

        goals.push({
            let goal = "≤ 64 KiB RSS per connected agent";
            match self.extra_f64("rss_per_agent_kib") {
                Some(k) => Goal {
                    goal,
                    figure: Some(format!("{k:.1} KiB")),
                    verdict: Verdict::at_most(k, 64.0),
                },
                None => Goal {
                    goal,
                    figure: None,
                    verdict: not("this scenario does not measure it"),
                },
            }
        });

        goals.push(match self.taken_latency_ms {
            Some(q) => Goal {
                goal: "taken-by-another p99 ≤ 20 ms",
                figure: Some(ms(q.p99)),
                verdict: Verdict::at_most(q.p99, 20.0),
            },
            None => Goal {
                goal: "taken-by-another p99 ≤ 20 ms",
                figure: None,
                verdict: not("no race for an offer in this scenario"),
            },
        });

        goals.push(Goal {
            goal: "0 lost and 0 duplicated",
            figure: Some(format!(
                "{} lost, {} duplicated",
                self.lost, self.duplicated
            )),
            verdict: if self.injected == 0 {
                not("no mail injected")
            } else if self.lost == 0 && self.duplicated == 0 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        });
        goals
    }

    /// The human-readable `report.txt`.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let dash = "—".to_string();
        let store = self
            .extra
            .get("store")
            .and_then(Value::as_str)
            .map_or(String::new(), |s| format!(" on {s}"));
        let _ = writeln!(t, "mailroom-load: scenario {}{store}", self.scenario);
        let _ = writeln!(t);
        let rows: [(&str, String); 8] = [
            ("duration", format!("{:.1} s", self.duration_s)),
            ("agents", self.agents.to_string()),
            ("mails injected", self.injected.to_string()),
            ("interactions", self.interactions.to_string()),
            ("lost", self.lost.to_string()),
            ("duplicated", self.duplicated.to_string()),
            ("errors", self.errors.to_string()),
            (
                "throughput",
                self.throughput_per_s
                    .map_or(dash.clone(), |x| format!("{x:.1} interactions/s")),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(t, "  {k:<22} {v}");
        }
        let _ = writeln!(
            t,
            "  {:<22} {}",
            "server RSS",
            self.server_rss_mb
                .map_or(dash.clone(), |x| format!("{x:.1} MiB"))
        );

        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "  {:<26} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "p50", "p90", "p99", "max"
        );
        let cell = |x: Option<f64>| x.map_or(dash.clone(), |x| format!("{x:.2}"));
        let full = |name: &str, p: Option<Pcts>| {
            format!(
                "  {name:<26} {:>9} {:>9} {:>9} {:>9}",
                cell(p.map(|p| p.p50)),
                cell(p.map(|p| p.p90)),
                cell(p.map(|p| p.p99)),
                cell(p.map(|p| p.max)),
            )
        };
        let half = |name: &str, p: Option<P50P99>| {
            format!(
                "  {name:<26} {:>9} {:>9} {:>9} {:>9}",
                cell(p.map(|p| p.p50)),
                dash,
                cell(p.map(|p| p.p99)),
                dash,
            )
        };
        let _ = writeln!(t, "{}", full("injected → offer", self.offer_latency_ms));
        let _ = writeln!(
            t,
            "{}",
            full("accept → assigned", self.accept_to_assigned_ms)
        );
        let _ = writeln!(
            t,
            "{}",
            half("EXISTS → offer (server)", self.exists_to_offer_ms)
        );
        let _ = writeln!(t, "{}", half("taken-by-another", self.taken_latency_ms));

        let _ = writeln!(t);
        match &self.cpu_share {
            Some(c) => {
                let pct = |x: f64| format!("{:.1} %", x * 100.0);
                let idle = 1.0 - (c.server.unwrap_or(0.0) + c.store + c.imap + c.harness + c.other);
                let _ = writeln!(t, "  CPU share of the whole machine");
                let shares = [
                    ("server", c.server.map_or(dash.clone(), pct)),
                    ("store", pct(c.store)),
                    ("imap", pct(c.imap)),
                    ("harness", pct(c.harness)),
                    ("other", pct(c.other)),
                    ("idle", pct(idle.max(0.0))),
                ];
                for (k, v) in shares {
                    let _ = writeln!(t, "    {k:<20} {v:>9}");
                }
            }
            None => {
                let _ = writeln!(t, "  CPU share              —");
            }
        }

        let _ = writeln!(t);
        let _ = writeln!(t, "  goals");
        for g in self.goals() {
            let verdict = match &g.verdict {
                Verdict::NotMeasured(why) => format!("not measured ({why})"),
                v => v.as_str().to_string(),
            };
            let figure = g.figure.unwrap_or_else(|| dash.clone());
            let _ = writeln!(t, "    {:<46} {:>22}   {verdict}", g.goal, figure);
        }

        if !self.extra.is_empty() {
            let _ = writeln!(t);
            let _ = writeln!(t, "  extra");
            for (k, v) in &self.extra {
                let v = match v {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                let _ = writeln!(t, "    {k:<28} {v}");
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_report() -> Report {
        let mut extra = Map::new();
        extra.insert("store".into(), json!("postgres"));
        extra.insert("mail_rate_per_s".into(), json!(1000));
        extra.insert("rss_per_agent_kib".into(), json!(80.5));
        extra.insert("notes".into(), json!("a test"));
        Report {
            scenario: "steady".into(),
            agents: 2000,
            injected: 60_000,
            interactions: 59_999,
            lost: 1,
            duplicated: 0,
            offer_latency_ms: pcts(&[4.0, 5.0, 6.0, 30.0]),
            accept_to_assigned_ms: pcts(&[1.0, 2.0]),
            exists_to_offer_ms: Some(P50P99 { p50: 2.0, p99: 9.5 }),
            taken_latency_ms: Some(P50P99 {
                p50: 3.0,
                p99: 25.0,
            }),
            throughput_per_s: Some(1012.34),
            server_rss_mb: Some(412.25),
            cpu_share: Some(CpuShare {
                server: Some(0.41),
                store: 0.22,
                imap: 0.1,
                harness: 0.2,
                other: 0.02,
            }),
            errors: 3,
            duration_s: 61.5,
            extra,
        }
    }

    #[test]
    fn percentiles_are_exact_nearest_rank() {
        let samples: Vec<f64> = (1..=1000).rev().map(f64::from).collect();
        let p = pcts(&samples).expect("samples");
        assert_eq!(
            p,
            Pcts {
                p50: 500.0,
                p90: 900.0,
                p99: 990.0,
                max: 1000.0
            }
        );
        assert_eq!(
            p.p50_p99(),
            P50P99 {
                p50: 500.0,
                p99: 990.0
            }
        );
        assert_eq!(pcts(&[]), None);
    }

    #[test]
    fn histogram_percentiles_come_in_milliseconds() {
        let h = Histogram {
            buckets: vec![(0.001, 0), (0.01, 100), (f64::INFINITY, 100)],
            sum: 0.5,
            count: 100,
        };
        let q = P50P99::from_histogram(&h).expect("observed");
        assert!((q.p50 - 5.5).abs() < 1e-9, "{q:?}");
        assert!((q.p99 - 9.91).abs() < 1e-9, "{q:?}");
        assert_eq!(P50P99::from_histogram(&Histogram::default()), None);
    }

    #[test]
    fn json_has_the_issues_field_names() {
        let j = full_report().to_json();
        let obj = j.as_object().expect("object");
        for key in [
            "scenario",
            "agents",
            "injected",
            "interactions",
            "lost",
            "duplicated",
            "offer_latency_ms",
            "exists_to_offer_ms",
            "taken_latency_ms",
            "throughput_per_s",
            "server_rss_mb",
            "cpu_share",
        ] {
            assert!(obj.contains_key(key), "{key} missing");
        }
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&j["offer_latency_ms"]), ["max", "p50", "p90", "p99"]);
        assert_eq!(keys(&j["exists_to_offer_ms"]), ["p50", "p99"]);
        assert_eq!(keys(&j["taken_latency_ms"]), ["p50", "p99"]);
        for k in ["server", "store", "imap"] {
            assert!(j["cpu_share"][k].is_number(), "cpu_share.{k}");
        }
        assert_eq!(j["scenario"], "steady");
        assert_eq!(j["lost"], 1);
        assert_eq!(j["offer_latency_ms"]["p99"], 30.0);
        assert_eq!(j["throughput_per_s"], 1012.34);
        assert_eq!(j["extra"]["store"], "postgres");
    }

    #[test]
    fn absent_figures_are_null_not_zero() {
        let r = Report {
            scenario: "smoke".into(),
            agents: 10,
            injected: 100,
            interactions: 100,
            cpu_share: Some(CpuShare::default()),
            ..Report::default()
        };
        let j = r.to_json();
        for key in [
            "offer_latency_ms",
            "exists_to_offer_ms",
            "taken_latency_ms",
            "throughput_per_s",
            "server_rss_mb",
            "accept_to_assigned_ms",
        ] {
            assert!(j[key].is_null(), "{key} should be null: {}", j[key]);
        }
        assert!(j["cpu_share"]["server"].is_null());
        assert_eq!(j["cpu_share"]["store"], 0.0);
        assert!(Report::default().to_json()["cpu_share"].is_null());
    }

    #[test]
    fn goals_are_met_missed_or_not_measured() {
        let r = full_report();
        let verdicts: Vec<&str> = r.goals().iter().map(|g| g.verdict.as_str()).collect();
        // EXISTS 9.5 ms ≤ 20; 1012/s on Postgres; 80.5 KiB > 64; taken
        // 25 ms > 20; one lost.
        assert_eq!(verdicts, ["met", "met", "missed", "missed", "missed"]);

        let mut slow = full_report();
        slow.throughput_per_s = Some(300.0);
        slow.extra.insert("mail_rate_per_s".into(), json!(100));
        assert_eq!(
            slow.goals()[1].verdict,
            Verdict::NotMeasured("mail was offered at only 100/s".into())
        );
        slow.extra.insert("mail_rate_per_s".into(), json!(1000));
        assert_eq!(slow.goals()[1].verdict, Verdict::Missed);
        slow.extra.insert("store".into(), json!("sqlite"));
        assert_eq!(
            slow.goals()[1].verdict,
            Verdict::NotMeasured("the store was sqlite, not postgres".into())
        );

        let empty = Report::default();
        assert!(
            empty
                .goals()
                .iter()
                .all(|g| matches!(g.verdict, Verdict::NotMeasured(_)))
        );
        let text = r.text();
        assert!(text.contains("not measured") || text.contains("missed"));
        assert!(text.contains("injected → offer"));
        let j = r.to_json();
        assert_eq!(j["goals"][0]["status"], "met");
        assert_eq!(j["goals"][3]["figure"], "25.00 ms");
    }

    #[test]
    fn write_creates_every_file_and_valid_pngs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let offers: Vec<(f64, f64)> = (0..600)
            .map(|i| {
                let t = i as f64 * 0.05;
                // A plausible shape: ~8 ms with a tail and a slow second.
                let ms =
                    6.0 + (i % 17) as f64 * 0.4 + if (200..220).contains(&i) { 45.0 } else { 0.0 };
                (t, ms)
            })
            .collect();
        let timeline = Timeline {
            assigned_at: offers
                .iter()
                .map(|&(t, ms)| t + ms / 1000.0 + 0.01)
                .collect(),
            rss: (0..120)
                .map(|i| (i as f64 * 0.25, 80.0 + (i as f64).sqrt()))
                .collect(),
            offers,
        };
        let report = full_report();
        write(&out, &report, &timeline).expect("write");

        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("json"))
                .expect("parses");
        assert_eq!(json["agents"], 2000);
        // The file lists the issue's fields first, in the issue's order.
        let text = std::fs::read_to_string(out.join("report.json")).expect("json");
        let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap_or(usize::MAX);
        let order = [
            "scenario",
            "agents",
            "injected",
            "interactions",
            "lost",
            "duplicated",
            "offer_latency_ms",
            "exists_to_offer_ms",
            "taken_latency_ms",
            "throughput_per_s",
            "server_rss_mb",
            "cpu_share",
            "extra",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
        assert!(
            std::fs::read_to_string(out.join("report.txt"))
                .expect("txt")
                .contains("goals")
        );
        for png in [
            "latency_histogram.png",
            "throughput.png",
            "latency_over_time.png",
            "rss.png",
        ] {
            let bytes = std::fs::read(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
            assert!(bytes.len() > 1000, "{png}: {} bytes", bytes.len());
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        }
        // Keep a copy to look at, when asked to.
        if let Some(keep) = std::env::var_os("MAILROOM_LOAD_KEEP_PLOTS") {
            let keep = Path::new(&keep);
            std::fs::create_dir_all(keep).expect("keep dir");
            for e in std::fs::read_dir(&out).expect("out") {
                let e = e.expect("entry");
                std::fs::copy(e.path(), keep.join(e.file_name())).expect("copy");
            }
        }
    }

    #[test]
    fn write_without_data_still_writes_every_plot_but_rss() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), &Report::default(), &Timeline::default()).expect("write");
        for f in [
            "report.json",
            "report.txt",
            "latency_histogram.png",
            "throughput.png",
            "latency_over_time.png",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        assert!(!dir.path().join("rss.png").exists());
    }
}
