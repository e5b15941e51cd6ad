//! `muster`: parse the command line and run it; everything else lives in the library.

use clap::Parser;

/// mimalloc instead of glibc's malloc: a surge builds and frees tens of thousands of
/// small JSON values on the engine thread, and glibc spent a third of that thread's time
/// consolidating freed chunks (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process (unless `MIMALLOC_ALLOW_THP` says otherwise:
/// then mimalloc decides). mimalloc advises them for its arenas, and the first touch of a
/// 2 MiB page zeroes all of it: in a 3-node surge two thirds of the engine's time on a
/// 50,000-member order was zeroing huge pages it barely used, and delivery from the
/// request took 2.9–3.3 s against 2.0–2.4 s without them (docs/PERFORMANCE.md).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) only sets a flag of this process.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if r != 0 {
            eprintln!("muster: could not turn transparent huge pages off: {}", std::io::Error::last_os_error());
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    no_huge_pages();
    let cli = muster::cli::Cli::parse();
    match muster::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("muster: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
