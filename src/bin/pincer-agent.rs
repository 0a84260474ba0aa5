//! `pincer-agent`: the runner inside every agent container. See `pincer::agent`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cfg = match pincer::agent::AgentConfig::from_env() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("pincer-agent: {e:#}");
            return ExitCode::from(2);
        }
    };
    pincer::logger::init(cfg.log_level);
    match pincer::agent::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
