//! `pincer`: the host binary. All logic lives in the library; see `pincer::cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match pincer::cli::main(&args) {
        pincer::cli::Exit::Ok => ExitCode::SUCCESS,
        pincer::cli::Exit::Failure => ExitCode::FAILURE,
        pincer::cli::Exit::Usage => ExitCode::from(2),
    }
}
