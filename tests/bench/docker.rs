//! The docker CLI calls of the bench: the `docker run` baseline, and finding, measuring and (after
//! the host has stopped) cleaning up the bench install's agent containers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).stdin(Stdio::null()).output().context("running docker")?;
    if !out.status.success() {
        bail!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Wall time of one `docker run --rm --entrypoint /bin/true <image>`.
pub(crate) fn run_true(image: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    docker(&["run", "--rm", "--entrypoint", "/bin/true", image])?;
    Ok(started.elapsed())
}

/// Names of the containers (running or not) whose name starts with `prefix`.
pub(crate) fn containers(prefix: &str) -> anyhow::Result<Vec<String>> {
    let out = docker(&["ps", "-a", "--filter", &format!("name=^{prefix}"), "--format", "{{.Names}}"])?;
    Ok(out.lines().map(str::trim).filter(|n| n.starts_with(prefix)).map(str::to_string).collect())
}

/// Memory use of each named container in MB (10^6 bytes), as `docker stats` reports it.
pub(crate) fn mem_mb(names: &[String]) -> anyhow::Result<Vec<(String, f64)>> {
    let mut args = vec!["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"];
    args.extend(names.iter().map(String::as_str));
    let out = docker(&args)?;
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, usage)| {
            let used = usage.split('/').next().unwrap_or("").trim();
            Ok((name.to_string(), parse_size(used).with_context(|| format!("bad MemUsage {usage:?}"))? / 1e6))
        })
        .collect()
}

/// `12.3MiB`, `800KiB`, `1.1GB`... in bytes.
fn parse_size(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(num.trim().parse::<f64>().ok()? * scale)
}

/// Removes containers (the bench's own leftovers after the host has stopped).
pub(crate) fn remove(names: &[String]) -> anyhow::Result<()> {
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    docker(&args).map(drop)
}

/// Resident memory (MB) of the `pincer-agent` process inside a container, from `docker top`.
pub(crate) fn runner_rss_mb(name: &str) -> anyhow::Result<f64> {
    // `docker top` runs ps on the host with these options; it needs the pid column.
    let out = docker(&["top", name, "-o", "pid,rss,args"])?;
    let line = out
        .lines()
        .find(|l| l.contains("pincer-agent") && !l.contains("docker-init"))
        .ok_or_else(|| anyhow::anyhow!("no pincer-agent process in `docker top {name}`:\n{out}"))?;
    let kb: f64 = line.split_whitespace().nth(1).unwrap_or("").parse()?;
    Ok(kb / 1024.0)
}
