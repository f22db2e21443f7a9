//! `archipel`: the one binary of the Archipel appliance.

mod capture;
mod cli;
mod config;
mod erasure;
mod node;
mod serve;
mod users;
mod vault_cli;

use clap::Parser;

/// mimalloc returns freed memory to the system; glibc's per-thread arenas
/// kept every password hash's working memory (tens of MiB) resident. Built
/// without transparent huge pages: a 2 MiB page stays resident for a few
/// live bytes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its index in `mi_option_t`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Return freed memory to the system at once. mimalloc's default keeps it
/// for a second (arenas: ten), which after a burst of requests left tens of
/// MiB resident with nothing live in them.
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: called first thing in `main`, before any other thread exists
    // (mimalloc's option setters are not thread safe); the option index and
    // value are valid for the mimalloc version this crate links.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
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
    tune_allocator();
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
