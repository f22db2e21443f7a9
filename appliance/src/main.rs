//! `archipel`: the one binary of the Archipel appliance.

mod cli;
mod config;
mod node;
mod serve;
mod users;

use clap::Parser;

/// mimalloc returns freed memory to the system promptly; glibc's per-thread
/// arenas kept every password hash's working memory (tens of MiB) resident.
/// Built as mimalloc v2 (frees return to the OS within ~100 ms, where v3
/// waits ~10 s) without transparent huge pages (a 2 MiB page stays resident
/// for a few live bytes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
