//! The only module that starts processes (the docker CLI, and later other helper tools).
//!
//! Always argv vectors, never a shell. Every call that waits has a timeout; stdout and stderr are
//! read concurrently (no pipe deadlock) and a failure carries the argv, exit status and stderr.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Output of a finished command beyond this is cut (the tail is kept for stderr).
pub const OUTPUT_BYTES_MAX: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// A command that failed to start, timed out or exited non-zero.
#[derive(Debug)]
pub struct CommandError {
    pub argv: Vec<String>,
    pub kind: CommandErrorKind,
}

#[derive(Debug)]
pub enum CommandErrorKind {
    Spawn(std::io::Error),
    Timeout(Duration),
    Failed { status: ExitStatus, stderr: String },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let argv = self.argv.join(" ");
        match &self.kind {
            CommandErrorKind::Spawn(e) => write!(f, "cannot run `{argv}`: {e}"),
            CommandErrorKind::Timeout(d) => write!(f, "`{argv}` did not finish within {d:?}"),
            CommandErrorKind::Failed { status, stderr } => {
                write!(f, "`{argv}` failed ({status})")?;
                let stderr = stderr.trim();
                if !stderr.is_empty() {
                    write!(f, ": {}", tail(stderr, 2000))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// Builds a command with explicit stdin/stdout/stderr handling.
pub fn command<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Command {
    #[allow(clippy::disallowed_methods)]
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn argv<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Vec<String> {
    std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()))
        .collect()
}

/// Runs to completion with a timeout, capturing output. Non-zero exit is an error.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S], timeout: Duration) -> Result<Output, CommandError> {
    let out = run_status(program, args, timeout)?;
    if !out.status.success() {
        return Err(CommandError {
            argv: argv(program, args),
            kind: CommandErrorKind::Failed { status: out.status, stderr: out.stderr },
        });
    }
    Ok(out)
}

/// Like [`run`] but a non-zero exit is returned as output, not as an error.
pub fn run_status<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<Output, CommandError> {
    let started = Instant::now();
    let err = |kind| CommandError { argv: argv(program, args), kind };
    let mut child = command(program, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(CommandErrorKind::Spawn(e)))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().map(|s| read_thread(s, tx.clone()));
    let stderr = child.stderr.take().map(|s| read_thread(s, tx));
    // The pipes close when the process exits, so both readers finishing means it is done.
    let deadline = started + timeout;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            log::warn!("{} timed out after {timeout:?}", argv(program, args).join(" "));
            return Err(err(CommandErrorKind::Timeout(timeout)));
        }
    }
    let status = child.wait().map_err(|e| err(CommandErrorKind::Spawn(e)))?;
    let stdout = stdout.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    let stderr = stderr.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    let elapsed = started.elapsed();
    log::debug!("{} -> {status} in {elapsed:?}", argv(program, args).join(" "));
    Ok(Output { status, stdout, stderr, elapsed })
}

fn read_thread<R: Read + Send + 'static>(
    mut r: R,
    done: mpsc::Sender<()>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > OUTPUT_BYTES_MAX {
                        buf.drain(..buf.len() - OUTPUT_BYTES_MAX);
                    }
                }
            }
        }
        let _ = done.send(());
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Starts a long-running process with stdout and stderr piped (the caller reads both, and
/// kills and waits for it).
pub fn spawn_piped<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Child, CommandError> {
    command(program, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CommandError { argv: argv(program, args), kind: CommandErrorKind::Spawn(e) })
}

/// The last `max` bytes of `s` (on a char boundary), prefixed with `…` when cut.
pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run("sh", &["-c", "echo out; echo err >&2"], Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        let err = run("sh", &["-c", "echo boom >&2; exit 3"], Duration::from_secs(10)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("boom") && msg.contains("sh -c"), "{msg}");
    }

    #[test]
    fn times_out() {
        let err = run("sleep", &["30"], Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err.kind, CommandErrorKind::Timeout(_)), "{err}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run("/nonexistent/pincer-test", &["x"], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err.kind, CommandErrorKind::Spawn(_)), "{err}");
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("ab", 3), "ab");
    }
}
