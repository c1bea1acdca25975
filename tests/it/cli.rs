//! The `mailroom` binary: config errors are reported together and refuse to
//! start; `migrate` works; `serve` logs its address and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::app::{Options, config_toml};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailroom"))
}

#[test]
fn config_errors_are_all_reported_with_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[http]
listen = "nowhere"
[store]
url = "mysql://x"
[[agents]]
username = "alice"
role = "boss"
[[queues]]
name = "support"
strategy = "beepall"
"#,
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&file)
        .env("MAILROOM__WS__HEARTBEAT_SECS", "often")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "refuses to start");
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "http.listen",
        "store.url",
        "agents[0].role",
        "queues[0].strategy",
        "ws.heartbeat_secs",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    assert!(!dir.path().join("data").exists(), "nothing was created");

    let out = bin()
        .args(["serve", "--config", "/no/such/file.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn migrate_then_serve_then_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        config_toml(&format!("sqlite://{}", db.display()), &Options::default()),
    )
    .unwrap();

    let out = bin()
        .args(["migrate", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists());

    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&file)
        .env("MAILROOM__LOG__LEVEL", "info")
        .env("MAILROOM__LOG__FORMAT", "text")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("logs `listening on http://ADDR`");
    let health = reqwest::blocking_get(&format!("http://{addr}/health"));
    assert_eq!(health, 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit 0 on SIGTERM, got {exit:?}");

    // A bare GET over std, so this test needs no async runtime.
    mod reqwest {
        use std::io::{Read, Write};
        pub fn blocking_get(url: &str) -> u16 {
            let rest = url.strip_prefix("http://").unwrap();
            let (host, path) = rest
                .split_once('/')
                .map(|(h, p)| (h, format!("/{p}")))
                .unwrap();
            let mut s = std::net::TcpStream::connect(host).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            buf.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
    }
}
