//! Every metric of mailroom, declared once with its unit and description.
//! Names follow `mailroom_<subsystem>_<name>_<unit>`. Code records through
//! the constants here, never through string literals, so a name cannot drift.
//!
//! The Prometheus recorder is process-global (the `metrics` facade allows one
//! recorder per process); [`install`] is idempotent so that tests can build
//! many apps in one process.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "mailroom_http_requests_total";
pub const HTTP_DURATION: &str = "mailroom_http_request_duration_seconds";
pub const LOGINS: &str = "mailroom_logins_total";
pub const WS_SESSIONS: &str = "mailroom_ws_sessions";
pub const WS_FRAMES_IN: &str = "mailroom_ws_frames_received_total";
pub const WS_FRAMES_OUT: &str = "mailroom_ws_frames_sent_total";
pub const WS_CLOSED: &str = "mailroom_ws_closed_total";
pub const AGENTS_CONNECTED: &str = "mailroom_agents_connected";
pub const CLAIMS: &str = "mailroom_claims_total";
pub const BUILD_INFO: &str = "mailroom_build_info";
pub const IMAP_CONNECTED: &str = "mailroom_imap_connected";
pub const IMAP_IDLE: &str = "mailroom_imap_idle";
pub const IMAP_BACKING_OFF: &str = "mailroom_imap_backing_off";
pub const IMAP_ERRORS: &str = "mailroom_imap_errors_total";
pub const IMAP_WATERMARK: &str = "mailroom_imap_watermark_uid";
pub const IMAP_LAST_MAIL: &str = "mailroom_imap_last_mail_timestamp_seconds";
pub const INGEST_MAILS: &str = "mailroom_ingest_mails_total";
pub const INGEST_LATENCY: &str = "mailroom_ingest_latency_seconds";
pub const QUEUE_WAITING: &str = "mailroom_queue_waiting";
pub const OFFERS: &str = "mailroom_offers_total";
pub const OFFER_LATENCY: &str = "mailroom_offer_latency_seconds";
pub const WAIT_SECONDS: &str = "mailroom_wait_seconds";
pub const EXISTS_TO_OFFER: &str = "mailroom_exists_to_offer_seconds";
pub const OUTBOX_ATTEMPTS: &str = "mailroom_outbox_attempts_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the recorder (once per process) and describe every metric.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0,
                ])
                .and_then(|b| {
                    // The routing path is timed in milliseconds: fine buckets
                    // there, so p50 and p99 can be read off /metrics.
                    let fine = [
                        0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005,
                        0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ];
                    b.set_buckets_for_metric(Matcher::Full(EXISTS_TO_OFFER.into()), &fine)?
                        .set_buckets_for_metric(Matcher::Full(OFFER_LATENCY.into()), &fine)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (only possible in odd test
                // setups): keep a private one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by method, route and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route."
    );
    describe_counter!(
        LOGINS,
        Unit::Count,
        "Login attempts, by outcome (ok, bad_credentials)."
    );
    describe_gauge!(
        WS_SESSIONS,
        Unit::Count,
        "Open WebSocket sessions on this node."
    );
    describe_counter!(
        WS_FRAMES_IN,
        Unit::Count,
        "Frames received from clients, by type (unknown for bad frames)."
    );
    describe_counter!(
        WS_FRAMES_OUT,
        Unit::Count,
        "Frames sent to clients, by type."
    );
    describe_counter!(
        WS_CLOSED,
        Unit::Count,
        "WebSocket sessions closed, by reason."
    );
    describe_gauge!(
        AGENTS_CONNECTED,
        Unit::Count,
        "Agents with at least one socket on this node."
    );
    describe_counter!(
        CLAIMS,
        Unit::Count,
        "Claims of an interaction, by outcome (won, lost)."
    );
    describe_gauge!(
        IMAP_CONNECTED,
        Unit::Count,
        "1 while the account's IMAP session is logged in, by account."
    );
    describe_gauge!(
        IMAP_IDLE,
        Unit::Count,
        "1 while the account's session waits in IDLE, by account."
    );
    describe_gauge!(
        IMAP_BACKING_OFF,
        Unit::Count,
        "1 while the account waits to reconnect after a failure, by account."
    );
    describe_counter!(
        IMAP_ERRORS,
        Unit::Count,
        "Failed IMAP rounds (connect, sync or IDLE), by account."
    );
    describe_gauge!(
        IMAP_WATERMARK,
        Unit::Count,
        "The last UID committed, by account."
    );
    describe_gauge!(
        IMAP_LAST_MAIL,
        Unit::Seconds,
        "Unix time of the last mail committed, by account."
    );
    describe_counter!(
        INGEST_MAILS,
        Unit::Count,
        "Mails handled by ingest, by account and outcome (created, appended, continued, duplicate, bounced, quarantined)."
    );
    describe_histogram!(
        INGEST_LATENCY,
        Unit::Seconds,
        "From the mailbox learning of new mail (EXISTS during IDLE, or the poll) to the mail's commit, by account."
    );
    describe_gauge!(
        QUEUE_WAITING,
        Unit::Count,
        "Interactions waiting for an agent, by queue."
    );
    describe_counter!(
        OFFERS,
        Unit::Count,
        "Offers by outcome: offered, accepted, rejected, expired, taken, cancelled."
    );
    describe_histogram!(
        OFFER_LATENCY,
        Unit::Seconds,
        "From an interaction's enqueue to its offer being recorded and sent."
    );
    describe_histogram!(
        EXISTS_TO_OFFER,
        Unit::Seconds,
        "From the mailbox learning of a new mail (IMAP EXISTS, or the fetch that found it) to its first offer being recorded and sent to an agent."
    );
    describe_counter!(
        OUTBOX_ATTEMPTS,
        Unit::Count,
        "SMTP delivery attempts of outgoing mail, by account and outcome (sent, retry, failed)."
    );
    describe_histogram!(
        WAIT_SECONDS,
        Unit::Seconds,
        "From an interaction's enqueue to its acceptance."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; labels carry the version."
    );
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
