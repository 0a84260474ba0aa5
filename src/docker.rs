//! The docker CLI, driven with argv vectors through [`crate::process`].
//!
//! Argument construction is pure ([`run_args`]) so it is tested without docker; every call has a
//! timeout and failures carry docker's stderr.

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

/// `docker run` arguments for an agent container: removed on exit, a tiny init as PID 1 (signals
/// reach the runner, orphaned tool processes are reaped), no capabilities, no privilege
/// escalation, bounded process count, the host reachable as `host.docker.internal`.
pub fn run_args(spec: &RunSpec) -> anyhow::Result<Vec<String>> {
    if !valid_name(&spec.name) {
        bail!("invalid container name {:?}", spec.name);
    }
    let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), spec.name.clone()];
    for (k, v) in &spec.labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(
        [
            "--init",
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

    /// Removes every container (running or not) carrying `key=value`; returns how many.
    pub fn remove_labelled(&self, key: &str, value: &str) -> anyhow::Result<usize> {
        let filter = format!("label={key}={value}");
        let out = self.run(&["ps", "-aq", "--filter", &filter], QUICK_TIMEOUT)?;
        let ids: Vec<&str> = out.stdout.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut args = vec!["rm", "-f"];
        args.extend(&ids);
        self.run(&args, QUICK_TIMEOUT)?;
        Ok(ids.len())
    }

    /// `docker stop -t <grace>`: SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&self, name: &str, grace: Duration) -> anyhow::Result<()> {
        if !valid_name(name) {
            bail!("invalid container name {name:?}");
        }
        let grace_s = grace.as_secs().to_string();
        self.run(&["stop", "-t", &grace_s, name], grace + QUICK_TIMEOUT)?;
        Ok(())
    }

    /// Starts `docker run` attached (the child lives as long as the container).
    pub fn spawn_run(&self, args: &[String]) -> Result<Child, CommandError> {
        process::spawn_with_stderr(&self.bin, args)
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
            "--rm",
            "--name",
            "pincer-abc-assistant-1",
            "--label",
            "pincer.install=abc",
            "--init",
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
