//! `archipel`: the one binary of the Archipel appliance.

use archipel::cli;
use clap::Parser;

/// glibc's malloc, tuned to give memory back. By default it gives each
/// thread that allocates its own arena (up to eight per core), where freed
/// memory stays resident beside live blocks, and it raises its mmap
/// threshold after every large free, so that the next password hash's
/// working memory (7 MiB for argon2id) lands in a heap that never shrinks.
/// One arena, and a fixed threshold: every allocation over 1 MiB is mapped
/// and unmapped on its own.
#[allow(unsafe_code)]
fn tune_malloc() {
    // SAFETY: mallopt only sets tunables; called first thing in `main`,
    // before any other thread exists, so no allocation races with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Lets `archipel vault list | head` end quietly: with SIGPIPE ignored (the
/// Rust default) printing to a closed pipe panics. Only for commands that
/// print and exit; a serving node keeps it ignored, or a client hanging up
/// mid-write would kill it.
#[allow(unsafe_code)]
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: restores the default disposition (no handler code runs), before
    // any other thread exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn main() -> std::process::ExitCode {
    tune_malloc();
    let cli = cli::Cli::parse();
    if !cli.serves() {
        default_sigpipe();
    }
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
