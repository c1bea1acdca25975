//! The `smoke` scenario, end to end: `mailroom-load --scenario smoke` starts
//! mailroom in its own process on SQLite, connects 10 agents over
//! WebSockets, sends 100 mails through Postfix, and every mail must become
//! exactly one interaction, offered and assigned, with no error. No timing
//! is asserted (the machine is shared); the report's files must exist.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SERVICES_ENV: &str = "/var/tmp/mailroom-services/env";

/// The services' env file (scripts/services.sh), as variables for the
/// child; variables already set in the environment win.
fn services_env() -> HashMap<String, String> {
    let text = std::fs::read_to_string(SERVICES_ENV)
        .unwrap_or_else(|e| panic!("{SERVICES_ENV}: {e}; run scripts/services.sh start"));
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect()
}

#[test]
fn smoke_scenario_offers_every_mail_once() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let status = Command::new(env!("CARGO_BIN_EXE_mailroom-load"))
        .args(["--scenario", "smoke", "--out"])
        .arg(out.path())
        .envs(services_env())
        .status()
        .expect("running mailroom-load");
    let server_log = std::fs::read_to_string(out.path().join("server.log")).unwrap_or_default();
    assert!(
        status.success(),
        "mailroom-load --scenario smoke failed ({status}); server log:\n{server_log}"
    );
    let json = std::fs::read_to_string(out.path().join("report.json")).expect("report.json");
    let report: Value = serde_json::from_str(&json).expect("report.json is JSON");
    let field = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {json}"))
    };
    assert_eq!(report["scenario"], "smoke", "{json}");
    assert_eq!(field("agents"), 10, "{json}");
    assert_eq!(field("injected"), 100, "{json}");
    assert_eq!(field("interactions"), 100, "{json}");
    assert_eq!(field("lost"), 0, "{json}");
    assert_eq!(field("duplicated"), 0, "{json}");
    assert_eq!(field("errors"), 0, "{json}");
    assert_eq!(report["extra"]["assigned"], 100, "{json}");
    assert_eq!(report["extra"]["interactions_assigned_twice"], 0, "{json}");
    for f in [
        "report.txt",
        "latency_histogram.png",
        "throughput.png",
        "latency_over_time.png",
    ] {
        let p = out.path().join(f);
        assert!(is_nonempty(&p), "{} is missing or empty", p.display());
    }
}

fn is_nonempty(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
}
