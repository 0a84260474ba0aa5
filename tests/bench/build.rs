//! The cold build, only when asked (`PINCER_BENCH_COLD_BUILD=1 make bench`: it takes minutes):
//! `make build` (the host and the runner, one static build) in a fresh clone with an empty
//! target directory, against the same-run cold build of the host alone the usual way
//! (`cargo build --release --bin pincer`), the cost of compiling the crate graph once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::ensure;

pub(crate) struct Built {
    pub(crate) one_build: Duration,
    pub(crate) host_alone: Duration,
}

fn timed(dir: &Path, target: &Path, program: &str, args: &[&str]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(program).args(args).current_dir(dir).env("CARGO_TARGET_DIR", target).output()?;
    ensure!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
    );
    Ok(started.elapsed())
}

pub(crate) fn phase(dir: &Path) -> anyhow::Result<Built> {
    let src = dir.join("src");
    let status = Command::new("git").args(["clone", "-q", env!("CARGO_MANIFEST_DIR")]).arg(&src).status()?;
    ensure!(status.success(), "git clone failed");
    let one_build = timed(&src, &dir.join("target-one"), "make", &["build"])?;
    let host_alone =
        timed(&src, &dir.join("target-host"), "cargo", &["build", "--release", "--bin", "pincer"])?;
    Ok(Built { one_build, host_alone })
}
