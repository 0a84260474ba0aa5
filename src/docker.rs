//! The docker CLI, driven with argv vectors through [`crate::process`].
//!
//! Argument construction is pure ([`run_args`]) so it is tested without docker; every call has a
//! timeout and failures carry docker's stderr. Agent containers run detached: no docker client
//! process lives as long as a container, so the host can die and come back without taking its
//! containers along, and nothing but docker itself removes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;

use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{self, CommandError};

/// Quick metadata calls (`version`, `ps`, `inspect`, `rm`).
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(30);
/// `docker build` of the agent image.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct Docker {
    pub bin: String,
}

/// One bind mount.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub host: PathBuf,
    pub container: String,
    pub readonly: bool,
}

/// Everything `docker run` needs for an agent container.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub name: String,
    pub image: String,
    pub labels: Vec<(String, String)>,
    /// `uid:gid` the agent runs as (the owner of the data directory, so files stay the user's).
    pub user: String,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub workdir: String,
}

/// `docker run` arguments for an agent container: detached (the host removes it after its exit,
/// once its log is read), its log bounded, a tiny init as PID 1 (signals reach the runner,
/// orphaned tool processes are reaped), no capabilities, no privilege escalation, bounded
/// process count, the host reachable as `host.docker.internal`.
pub fn run_args(spec: &RunSpec) -> anyhow::Result<Vec<String>> {
    if !valid_name(&spec.name) {
        bail!("invalid container name {:?}", spec.name);
    }
    let mut args: Vec<String> = vec!["run".into(), "--detach".into(), "--name".into(), spec.name.clone()];
    for (k, v) in &spec.labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(
        [
            "--init",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=1m",
            "--log-opt",
            "max-file=1",
            "--user",
            &spec.user,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--pids-limit",
            "512",
            "--add-host",
            "host.docker.internal:host-gateway",
            "--workdir",
            &spec.workdir,
        ]
        .map(String::from),
    );
    for (k, v) in &spec.env {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    for m in &spec.mounts {
        let host = m.host.to_str().context("mount path is not UTF-8")?;
        if host.contains([',', '\n', '"']) || m.container.contains([',', '\n', '"']) {
            bail!("mount path {host:?} contains a comma, quote or newline, which docker --mount cannot take");
        }
        let mut arg = format!("type=bind,source={host},target={}", m.container);
        if m.readonly {
            arg.push_str(",readonly");
        }
        args.push("--mount".into());
        args.push(arg);
    }
    args.push(spec.image.clone());
    Ok(args)
}

/// Docker's container name rule.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && name.len() <= 128
}

impl Docker {
    pub fn new(bin: &str) -> Docker {
        Docker { bin: bin.to_string() }
    }

    fn run(&self, args: &[&str], timeout: Duration) -> Result<process::Output, CommandError> {
        process::run(&self.bin, args, timeout)
    }

    /// The engine's version, or an error saying docker is not usable.
    pub fn server_version(&self) -> anyhow::Result<String> {
        let out = self
            .run(&["version", "--format", "{{.Server.Version}}"], QUICK_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("the docker engine is not reachable: {e}"))?;
        Ok(out.stdout.trim().to_string())
    }

    /// The image's labels, or `None` if the image does not exist.
    pub fn image_labels(&self, image: &str) -> anyhow::Result<Option<BTreeMap<String, String>>> {
        let out = process::run_status(
            &self.bin,
            &["image", "inspect", "--format", "{{json .Config.Labels}}", image],
            QUICK_TIMEOUT,
        )?;
        if !out.status.success() {
            return Ok(None);
        }
        let labels: Option<BTreeMap<String, String>> =
            serde_json::from_str(out.stdout.trim()).context("parsing docker image inspect output")?;
        Ok(Some(labels.unwrap_or_default()))
    }

    /// Every container (running or not) carrying `key=value`.
    pub fn list(&self, key: &str, value: &str) -> anyhow::Result<Vec<Listed>> {
        let filter = format!("label={key}={value}");
        let out = self.run(
            &["ps", "--all", "--no-trunc", "--filter", &filter, "--format", "{{json .}}"],
            QUICK_TIMEOUT,
        )?;
        out.stdout.lines().filter(|l| !l.trim().is_empty()).map(parse_listed).collect()
    }

    /// Starts a detached container; returns when it runs (or failed to start).
    pub fn run_detached(&self, args: &[String]) -> anyhow::Result<()> {
        process::run(&self.bin, args, QUICK_TIMEOUT).map_err(classify)?;
        Ok(())
    }

    /// `docker stop -t <grace>`: SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&self, name: &str, grace: Duration) -> anyhow::Result<()> {
        if !valid_name(name) {
            bail!("invalid container name {name:?}");
        }
        let grace_s = grace.as_secs().to_string();
        match self.run(&["stop", "-t", &grace_s, name], grace + QUICK_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// `docker rm -f`, content with any state a container can be in: gone already, or being
    /// removed by docker itself, counts as removed.
    pub fn remove(&self, name: &str) -> anyhow::Result<Removed> {
        if !valid_name(name) {
            bail!("invalid container name {name:?}");
        }
        match self.run(&["rm", "--force", name], QUICK_TIMEOUT) {
            Ok(_) => Ok(Removed::Now),
            Err(e) if is_gone(&e) => Ok(Removed::Gone),
            Err(e) if stderr_of(&e).contains("already in progress") => Ok(Removed::InProgress),
            Err(e) => Err(classify(e)),
        }
    }

    /// The last `lines` lines a container wrote (stdout and stderr).
    pub fn logs(&self, name: &str, lines: usize) -> anyhow::Result<String> {
        let n = lines.to_string();
        let out = process::run_status(&self.bin, &["logs", "--tail", &n, name], QUICK_TIMEOUT)?;
        Ok(format!("{}{}", out.stdout, out.stderr))
    }

    /// `docker events` for the deaths of containers carrying `key=value`, one JSON line each.
    pub fn events(&self, key: &str, value: &str) -> Result<Child, CommandError> {
        let filter = format!("label={key}={value}");
        process::spawn_piped(
            &self.bin,
            &[
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=die",
                "--filter",
                &filter,
                "--format",
                "{{json .}}",
            ],
        )
    }

    /// `docker build` with labels; the context directory holds the Dockerfile.
    pub fn build(
        &self,
        context: &Path,
        tag: &str,
        labels: &[(String, String)],
    ) -> anyhow::Result<process::Output> {
        let ctx = context.to_str().context("image context path is not UTF-8")?;
        let mut args: Vec<String> = vec!["build".into(), "--tag".into(), tag.into()];
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.push(ctx.into());
        Ok(process::run(&self.bin, &args, BUILD_TIMEOUT)?)
    }
}

/// A container as `docker ps` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub name: String,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub state: String,
    /// Its image as `docker ps` names it: the reference it was started from while that still
    /// points at its image, the image's ID once the tag was moved to a rebuilt one.
    pub image: String,
    pub labels: BTreeMap<String, String>,
}

fn parse_listed(line: &str) -> anyhow::Result<Listed> {
    let v: serde_json::Value = serde_json::from_str(line).context("parsing docker ps output")?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    let labels = field("Labels")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Listed {
        name: field("Names"),
        state: field("State").to_ascii_lowercase(),
        image: field("Image"),
        labels,
    })
}

/// A container's death, as `docker events` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Died {
    pub name: String,
    pub code: Option<i32>,
}

/// Parses one line of [`Docker::events`].
pub fn parse_died(line: &str) -> Option<Died> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let attrs = v.get("Actor")?.get("Attributes")?;
    let name = attrs.get("name")?.as_str()?.to_string();
    let code = attrs.get("exitCode").and_then(|c| c.as_str()).and_then(|c| c.parse().ok());
    Some(Died { name, code })
}

/// How a removal went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Now,
    /// There was no such container (any more).
    Gone,
    /// Docker was already removing it.
    InProgress,
}

/// The docker engine itself could not be reached (as opposed to a container that failed).
#[derive(Debug)]
pub struct EngineDown(pub String);

impl std::fmt::Display for EngineDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the docker engine is not reachable: {}", self.0)
    }
}

impl std::error::Error for EngineDown {}

fn stderr_of(e: &CommandError) -> &str {
    match &e.kind {
        process::CommandErrorKind::Failed { stderr, .. } => stderr,
        _ => "",
    }
}

fn is_gone(e: &CommandError) -> bool {
    let s = stderr_of(e);
    s.contains("No such container") || s.contains("no such container")
}

/// Turns a failed docker call into [`EngineDown`] when docker itself is unreachable.
fn classify(e: CommandError) -> anyhow::Error {
    let down = match &e.kind {
        process::CommandErrorKind::Spawn(_) | process::CommandErrorKind::Timeout(_) => true,
        process::CommandErrorKind::Failed { stderr, .. } => {
            stderr.contains("Cannot connect to the Docker daemon")
                || stderr.contains("error during connect")
                || stderr.contains("Is the docker daemon running")
        }
    };
    if down { anyhow::Error::new(EngineDown(e.to_string())) } else { anyhow::Error::new(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_args_are_an_exact_argv() {
        let spec = RunSpec {
            name: "pincer-abc-assistant-1".into(),
            image: "pincer-agent-12345678:latest".into(),
            labels: vec![("pincer.install".into(), "abc".into())],
            user: "1000:1000".into(),
            env: vec![("TZ".into(), "UTC".into()), ("PINCER_AGENT_NAME".into(), "Ann; rm -rf /".into())],
            mounts: vec![
                Mount { host: "/d/s".into(), container: "/workspace".into(), readonly: false },
                Mount {
                    host: "/d/s/inbound.db".into(),
                    container: "/workspace/inbound.db".into(),
                    readonly: true,
                },
            ],
            workdir: "/workspace/agent".into(),
        };
        let args = run_args(&spec).unwrap();
        let want = [
            "run",
            "--detach",
            "--name",
            "pincer-abc-assistant-1",
            "--label",
            "pincer.install=abc",
            "--init",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=1m",
            "--log-opt",
            "max-file=1",
            "--user",
            "1000:1000",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--pids-limit",
            "512",
            "--add-host",
            "host.docker.internal:host-gateway",
            "--workdir",
            "/workspace/agent",
            "--env",
            "TZ=UTC",
            "--env",
            "PINCER_AGENT_NAME=Ann; rm -rf /",
            "--mount",
            "type=bind,source=/d/s,target=/workspace",
            "--mount",
            "type=bind,source=/d/s/inbound.db,target=/workspace/inbound.db,readonly",
            "pincer-agent-12345678:latest",
        ];
        assert_eq!(args, want);
    }

    #[test]
    fn parses_listings_and_deaths() {
        let line = r#"{"Command":"\"/sbin/docker-init…\"","ID":"ab12","Image":"pincer-agent-1234:latest","Labels":"pincer.install=abc,pincer.session=sess-1,pincer.gen=3","Names":"pincer-abc-sess-1-3","State":"running","Status":"Up 2 minutes"}"#;
        let l = parse_listed(line).unwrap();
        assert_eq!(l.name, "pincer-abc-sess-1-3");
        assert_eq!(l.state, "running");
        assert_eq!(l.image, "pincer-agent-1234:latest");
        assert_eq!(l.labels.get("pincer.gen").map(String::as_str), Some("3"));
        let died = r#"{"status":"die","id":"ab12","from":"img","Type":"container","Action":"die","Actor":{"ID":"ab12","Attributes":{"exitCode":"137","image":"img","name":"pincer-abc-sess-1-3","pincer.install":"abc"}},"scope":"local","time":1,"timeNano":1}"#;
        assert_eq!(parse_died(died), Some(Died { name: "pincer-abc-sess-1-3".into(), code: Some(137) }));
        assert_eq!(parse_died("not json"), None);
    }

    #[test]
    fn refuses_unsafe_names_and_paths() {
        let mut spec = RunSpec {
            name: "../x".into(),
            image: "i".into(),
            labels: vec![],
            user: "1:1".into(),
            env: vec![],
            mounts: vec![],
            workdir: "/".into(),
        };
        assert!(run_args(&spec).is_err());
        spec.name = "ok".into();
        spec.mounts.push(Mount { host: "/a,b".into(), container: "/x".into(), readonly: true });
        assert!(run_args(&spec).is_err());
        assert!(valid_name("pincer-1.a_b"));
        assert!(!valid_name("-x") && !valid_name("") && !valid_name("a b"));
    }
}
