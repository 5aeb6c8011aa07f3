//! The `troupe` binary: parse the command line and hand over to the library.

use clap::Parser;
use troupe_node::cli::{self, Cli, Command};

/// Small, short-lived allocations (request bodies, frames, entries) dominate; mimalloc serves
/// them with less CPU than glibc's malloc (measured in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let parsed = Cli::parse();
    cli::init_tracing(parsed.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match parsed.command {
            Command::Node(args) => cli::node::run(*args).await,
            Command::Local(args) => cli::local::run(args, parsed.log_format).await,
            Command::Health(args) => cli::health::run(args).await,
            Command::Restart(args) => cli::restart::run(args).await,
            Command::Secret => cli::secret::run(),
            Command::Status(args) => cli::status::run(args).await,
            Command::Explain(args) => cli::explain::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
