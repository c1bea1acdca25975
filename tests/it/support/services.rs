//! Where the real services the tests use (Postgres, Redis, Dovecot, Postfix)
//! are listening.
//!
//! `scripts/services.sh start` starts them and writes their addresses as
//! `KEY=VALUE` lines to `$MAILROOM_SERVICES_DIR/env` (by default
//! `/var/tmp/mailroom-services/env`). An environment variable of the same
//! name wins, so that a developer can point a run at other servers.
//!
//! A missing service is a failure, never a skip: a suite that skips silently
//! looks green while testing nothing.

use std::path::PathBuf;

const DEFAULT_SERVICES_DIR: &str = "/var/tmp/mailroom-services";

/// The value of `name`: from the environment, else from the services' env
/// file. Panics, saying what to run, when neither has it.
pub fn service_var(name: &str) -> String {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return value;
    }
    let file = env_file();
    if let Some(value) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| lookup(&text, name))
    {
        return value;
    }
    panic!(
        "{name} is neither set nor in {}: run `scripts/services.sh start` (as root) to start the \
         test services, or export {name}",
        file.display()
    );
}

fn env_file() -> PathBuf {
    let dir = std::env::var("MAILROOM_SERVICES_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICES_DIR.to_string());
    PathBuf::from(dir).join("env")
}

/// The value of `name` in `KEY=VALUE` lines. Blank lines, `#` comments, an
/// `export ` in front and quotes around the value are tolerated.
fn lookup(text: &str, name: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("export ").unwrap_or(line).split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| unquote(value.trim()).to_string())
        .filter(|value| !value.is_empty())
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[test]
fn env_file_lines_are_looked_up_by_exact_key() {
    let text = "# written by scripts/services.sh\n\
                MAILROOM_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/postgres\n\
                \n\
                export MAILROOM_TEST_REDIS_URL='redis://127.0.0.1:16379'\n\
                MAILROOM_TEST_EMPTY=\n";
    assert_eq!(
        lookup(text, "MAILROOM_TEST_PG_URL").as_deref(),
        Some("postgres://postgres@127.0.0.1:5432/postgres")
    );
    assert_eq!(
        lookup(text, "MAILROOM_TEST_REDIS_URL").as_deref(),
        Some("redis://127.0.0.1:16379")
    );
    assert_eq!(lookup(text, "MAILROOM_TEST_REDIS"), None);
    assert_eq!(lookup(text, "MAILROOM_TEST_EMPTY"), None);
}
