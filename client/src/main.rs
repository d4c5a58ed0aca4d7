//! `scopctl`: parses the command line and calls the client library.

use clap::{Parser, Subcommand};

/// The scop command-line client.
#[derive(Debug, Parser)]
#[command(name = "scopctl", version, about)]
struct Args {
    /// Address of scopd's public API.
    #[arg(long, env = "SCOP_SERVER", default_value = "http://127.0.0.1:7070", global = true)]
    server: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that the coordinator is up and serving.
    Status,
}

/// Exit code when the server cannot be reached.
const EXIT_UNREACHABLE: i32 = 5;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match args.command {
        Command::Status => match scopctl::check_server(&args.server).await {
            Ok(scopctl::ServerStatus::Serving) => println!("{}: serving", args.server),
            Ok(scopctl::ServerStatus::NotServing) => {
                eprintln!("{}: not serving", args.server);
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(EXIT_UNREACHABLE);
            }
        },
    }
}
