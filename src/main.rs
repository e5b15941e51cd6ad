//! `muster`: parse the command line and run it; everything else lives in the library.

use clap::Parser;

/// mimalloc instead of glibc's malloc: a surge builds and frees tens of thousands of
/// small JSON values on the engine thread, and glibc spent a third of that thread's time
/// consolidating freed chunks (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
