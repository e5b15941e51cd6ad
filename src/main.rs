//! `muster`: parse the command line and run it; everything else lives in the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = muster::cli::Cli::parse();
    match muster::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("muster: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
