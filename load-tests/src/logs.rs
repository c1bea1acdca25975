//! The app runs in this process, so its tracing events come here. They are
//! written to `--log FILE` when given; in any case every warning and error
//! is counted and the first few are kept, because a load test that "passed"
//! while the app logged retries or failures has not passed.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// How many distinct warning/error lines are kept for the report.
const KEEP: usize = 12;

/// Warnings and errors the app logged.
#[derive(Clone, Default)]
pub struct LogCounts {
    // A std Mutex: locked only to bump a counter or copy the summary, never
    // across an `.await`.
    inner: Arc<Mutex<Counts>>,
}

#[derive(Clone, Default, Debug)]
pub struct Counts {
    pub warnings: u64,
    pub errors: u64,
    /// The first distinct lines (level, target, message and fields), each
    /// with how often it occurred.
    pub samples: Vec<(String, u64)>,
}

impl LogCounts {
    pub fn snapshot(&self) -> Counts {
        self.inner.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl<S: Subscriber> Layer<S> for LogCounts {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        let mut line = format!("{level} {}:", event.metadata().target());
        event.record(&mut Line(&mut line));
        let Ok(mut c) = self.inner.lock() else {
            return;
        };
        if level == Level::ERROR {
            c.errors += 1;
        } else {
            c.warnings += 1;
        }
        // Lines differ by ids and counters; group on the first 80
        // characters so one recurring problem takes one slot.
        let key: String = line.chars().take(80).collect();
        if let Some(entry) = c.samples.iter_mut().find(|(l, _)| l.starts_with(&key)) {
            entry.1 += 1;
        } else if c.samples.len() < KEEP {
            c.samples.push((line, 1));
        }
    }
}

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// Install the process's subscriber: the counter (warnings and up), and the
/// log file if asked.
pub fn init(file: Option<&Path>, filter: &str) -> anyhow::Result<LogCounts> {
    let counts = LogCounts::default();
    let writer = match file {
        Some(path) => {
            Some(File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => None,
    };
    let file_layer = match writer {
        Some(w) => Some(
            fmt::layer()
                .with_ansi(false)
                .with_writer(Mutex::new(w))
                .with_filter(
                    EnvFilter::try_new(filter)
                        .with_context(|| format!("bad --log-level `{filter}`"))?,
                ),
        ),
        None => None,
    };
    tracing_subscriber::registry()
        .with(counts.clone().with_filter(LevelFilter::WARN))
        .with(file_layer)
        .try_init()
        .context("installing the tracing subscriber")?;
    Ok(counts)
}
