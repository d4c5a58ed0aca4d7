//! `scopctl`: parses the command line, runs it, and turns an error into a
//! one-line reason on stderr and the exit code it means (`scopctl --help`).

use clap::Parser;

fn main() {
    let cli = scopctl::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(scopctl::ExitCode::Other as i32);
        }
    };
    if let Err(error) = runtime.block_on(scopctl::cli::run(cli)) {
        eprintln!("error: {error}");
        std::process::exit(error.exit_code() as i32);
    }
}
