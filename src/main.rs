//! The `mailroom` command: parse the command line, load settings, start,
//! wait for shutdown. Everything else lives in the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mailroom::config::Settings;
use mailroom::startup::{App, open_store, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "mailroom",
    version,
    about = "The email channel of a contact center."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (IMAP in, WebSockets to agents, SMTP out).
    Serve {
        /// A TOML file layered over the embedded config/default.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Apply the store's migrations and exit.
    Migrate {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Read a password on stdin and print its argon2 PHC string, for
    /// `password_hash` in the config.
    HashPassword,
}

fn load(config: Option<PathBuf>) -> Result<Settings, ExitCode> {
    Settings::load(config.as_deref()).map_err(|e| {
        eprint!("mailroom: {e}");
        ExitCode::from(2)
    })
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let settings = match load(config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            mailroom::telemetry::init(&settings.log);
            let app = match App::build(settings).await {
                Ok(app) => app,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start");
                    return ExitCode::FAILURE;
                }
            };
            match app.run_until_stopped(shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate { config } => {
            let settings = match load(config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            mailroom::telemetry::init(&settings.log);
            match open_store(&settings).await {
                Ok(store) => {
                    tracing::info!(store = store.backend(), "migrations applied");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "migration failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::HashPassword => {
            let mut input = String::new();
            if std::io::stdin().read_to_string(&mut input).is_err() {
                eprintln!("mailroom: could not read stdin");
                return ExitCode::FAILURE;
            }
            let password = input.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("mailroom: the password is empty");
                return ExitCode::FAILURE;
            }
            match mailroom::auth::hash_password(password) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mailroom: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
