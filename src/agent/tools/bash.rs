//! The `bash` tool: runs a shell command in the agent's folder, in its own process group, with a
//! timeout and the user's stop button killing the whole group.
//!
//! Waiting is event-driven: two reader threads (stdout, stderr), a waiter thread that owns the
//! child, and the cancel hook all send on one channel; the caller blocks in `recv_timeout` until
//! the deadline.

use crate::agent::model::Cancel;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fs::cut_chars;
use super::{Tool, ToolCtx, ToolOutput, cap_middle, str_arg};
use crate::agent::model::ToolSpec;

/// Seconds a command may run when the call gives no `timeout`.
pub const BASH_DEFAULT_TIMEOUT_S: u64 = 120;
/// Longest `timeout` a call may ask for (larger values are lowered to this).
pub const BASH_MAX_TIMEOUT_S: u64 = 1800;
/// Bytes of output (stdout and stderr together) the model sees; head and tail are kept.
pub const BASH_MAX_OUTPUT_BYTES: usize = 30_000;
/// After the shell exits, how long to wait for the output pipes to close (background processes
/// that keep them open are not waited for).
const PIPE_GRACE: Duration = Duration::from_millis(500);
/// After a kill, how long to wait for the shell to be reaped and the pipes to close.
const KILL_GRACE: Duration = Duration::from_secs(5);

pub struct Bash {
    shell: PathBuf,
}

impl Default for Bash {
    fn default() -> Bash {
        Bash::new()
    }
}

impl Bash {
    /// Uses `/bin/bash`, or `/bin/sh` where there is no bash.
    pub fn new() -> Bash {
        let bash = Path::new("/bin/bash");
        Bash { shell: if bash.is_file() { bash.to_path_buf() } else { PathBuf::from("/bin/sh") } }
    }

    pub fn shell(&self) -> &Path {
        &self.shell
    }
}

/// The timeout the call asks for, in seconds, within 1..=`BASH_MAX_TIMEOUT_S`.
fn timeout_secs(input: &Value) -> Result<u64, ToolOutput> {
    let bad =
        || ToolOutput::error(format!("`timeout` must be a number of seconds (1 to {BASH_MAX_TIMEOUT_S})"));
    let secs = match input.get("timeout") {
        None | Some(Value::Null) => return Ok(BASH_DEFAULT_TIMEOUT_S),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(bad());
    }
    Ok((secs.ceil() as u64).clamp(1, BASH_MAX_TIMEOUT_S))
}

/// Keeps the first and the last `keep` bytes of a stream and counts the rest.
struct CappedBuf {
    keep: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl CappedBuf {
    fn new(keep: usize) -> CappedBuf {
        CappedBuf { keep, head: Vec::new(), tail: VecDeque::new(), total: 0 }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.head.len() < self.keep {
            let n = bytes.len().min(self.keep - self.head.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.len() >= self.keep {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.keep..]);
        } else {
            self.tail.extend(bytes);
            if self.tail.len() > self.keep {
                let excess = self.tail.len() - self.keep;
                self.tail.drain(..excess);
            }
        }
    }

    fn len(&self) -> usize {
        self.total.min(usize::MAX as u64) as usize
    }

    /// The text, at most `max` bytes (plus a note), head and tail kept.
    fn render(&self, max: usize) -> String {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        if self.total == (self.head.len() + tail.len()) as u64 {
            let mut all = self.head.clone();
            all.extend_from_slice(&tail);
            return cap_middle(&String::from_utf8_lossy(&all), max);
        }
        let h = &self.head[..self.head.len().min(max / 2)];
        let t = &tail[tail.len() - tail.len().min(max / 2)..];
        let left_out = self.total - (h.len() + t.len()) as u64;
        format!(
            "{}\n… [{left_out} bytes left out] …\n{}",
            String::from_utf8_lossy(h),
            String::from_utf8_lossy(t)
        )
    }
}

enum Event {
    Exited(io::Result<ExitStatus>),
    StreamClosed,
    Cancelled,
}

enum Ending {
    Finished,
    TimedOut,
    Stopped,
}

fn spawn_reader(
    name: &str,
    mut pipe: impl Read + Send + 'static,
    tx: mpsc::Sender<Event>,
) -> io::Result<Arc<Mutex<CappedBuf>>> {
    let buf = Arc::new(Mutex::new(CappedBuf::new(BASH_MAX_OUTPUT_BYTES)));
    let shared = buf.clone();
    std::thread::Builder::new().name(format!("bash-{name}")).spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => shared.lock().unwrap_or_else(|e| e.into_inner()).push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::StreamClosed);
    })?;
    Ok(buf)
}

fn lock_buf(b: &Option<Arc<Mutex<CappedBuf>>>) -> Option<MutexGuard<'_, CappedBuf>> {
    b.as_ref().map(|b| b.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Kills the process group `pgid` (the shell's pid: it leads its own group). Without libc this
/// runs `kill`; if that is missing or fails, the shell's builtin `kill`, and last the shell alone.
fn kill_group(pgid: u32, shell: &Path) {
    let quiet = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if quiet(Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")])) {
        return;
    }
    if quiet(Command::new(shell).arg("-c").arg(format!("kill -9 -{pgid}"))) {
        return;
    }
    let _ = quiet(Command::new(shell).arg("-c").arg(format!("kill -9 {pgid}")));
}

fn fmt_status(status: &io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code: {code}"),
            (None, Some(sig)) => format!("exit code: none (killed by signal {sig})"),
            (None, None) => "exit code: unknown".into(),
        },
        Err(e) => format!("exit code: unknown ({e})"),
    }
}

/// Splits `budget` between two sections: each gets at least half when it needs it, and what one
/// does not use goes to the other.
fn split_budget(a: usize, b: usize, budget: usize) -> (usize, usize) {
    if a + b <= budget {
        return (a, b);
    }
    let half = budget / 2;
    if a <= half {
        (a, budget - a)
    } else if b <= half {
        (budget - b, b)
    } else {
        (half, budget - half)
    }
}

/// A finished (or killed) command: how it ended and its captured output.
struct Execution {
    ending: Ending,
    status: Option<io::Result<ExitStatus>>,
    out: Option<Arc<Mutex<CappedBuf>>>,
    err: Option<Arc<Mutex<CappedBuf>>>,
    /// Output pipes still held open (by background processes).
    streams_open: usize,
    elapsed: Duration,
}

/// What a pre-task script produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptRun {
    /// Exited with status 0 within the time.
    pub ok: bool,
    /// How it ended (`exit code: 0`, a timeout) and its stderr, for an error report.
    pub detail: String,
    /// Its standard output (at most [`BASH_MAX_OUTPUT_BYTES`], head and tail).
    pub stdout: String,
}

impl Bash {
    /// Runs `command` in `cwd` with the tool's limits (its process group killed at `timeout` or
    /// on `cancel`).
    fn execute(
        &self,
        command: &str,
        cwd: &Path,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<Execution, String> {
        let mut child = match Command::new(&self.shell)
            .arg("-c")
            .arg(command)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return Err(format!("could not start {}: {e}", self.shell.display())),
        };
        let pid = child.id();
        let (tx, rx) = mpsc::channel::<Event>();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let readers = stdout
            .map(|p| spawn_reader("stdout", p, tx.clone()))
            .transpose()
            .and_then(|out| Ok((out, stderr.map(|p| spawn_reader("stderr", p, tx.clone())).transpose()?)));
        let (out_buf, err_buf) = match readers {
            Ok(r) => r,
            Err(e) => {
                kill_group(pid, &self.shell);
                let _ = child.wait();
                return Err(format!("could not start the output readers: {e}"));
            }
        };
        let mut streams_open = usize::from(out_buf.is_some()) + usize::from(err_buf.is_some());
        let waiter_tx = tx.clone();
        let waiter = std::thread::Builder::new().name("bash-wait".into()).spawn(move || {
            let _ = waiter_tx.send(Event::Exited(child.wait()));
        });
        if let Err(e) = waiter {
            // `child` moved into the closure that failed to start; the group still has to go.
            kill_group(pid, &self.shell);
            return Err(format!("could not wait for the command: {e}"));
        }
        let _hook = cancel.on_cancel(move || {
            let _ = tx.send(Event::Cancelled);
        });

        let started = Instant::now();
        let deadline = started + timeout;
        let mut status: Option<io::Result<ExitStatus>> = None;
        let mut ending = Ending::Finished;
        while status.is_none() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Event::Exited(s)) => status = Some(s),
                Ok(Event::StreamClosed) => streams_open -= 1,
                Ok(Event::Cancelled) => {
                    ending = Ending::Stopped;
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    ending = Ending::TimedOut;
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let grace = if matches!(ending, Ending::Finished) {
            PIPE_GRACE
        } else {
            kill_group(pid, &self.shell);
            KILL_GRACE
        };
        // Reap the shell (after a kill) and let the readers drain, for a bounded time.
        let until = Instant::now() + grace;
        while status.is_none() || streams_open > 0 {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Event::Exited(s)) => status = Some(s),
                Ok(Event::StreamClosed) => streams_open -= 1,
                Ok(Event::Cancelled) => {}
                Err(_) => break,
            }
        }
        let elapsed = started.elapsed();
        Ok(Execution { ending, status, out: out_buf, err: err_buf, streams_open, elapsed })
    }

    /// Runs a task's pre-task script in the agent's folder, killed after `timeout`.
    pub fn run_script(&self, script: &str, cwd: &Path, timeout: Duration, cancel: &Cancel) -> ScriptRun {
        let x = match self.execute(script, cwd, timeout, cancel) {
            Ok(x) => x,
            Err(e) => return ScriptRun { ok: false, detail: e, stdout: String::new() },
        };
        let render = |b: &Option<Arc<Mutex<CappedBuf>>>| {
            lock_buf(b).map(|b| b.render(BASH_MAX_OUTPUT_BYTES)).unwrap_or_default()
        };
        let (stdout, stderr) = (render(&x.out), render(&x.err));
        let (ok, how) = match (&x.ending, &x.status) {
            (Ending::Finished, Some(Ok(s))) => (s.success(), fmt_status(&Ok(*s))),
            (Ending::Finished, Some(e)) => (false, fmt_status(e)),
            (Ending::Finished, None) => (false, "exit code: unknown".into()),
            (Ending::TimedOut, _) => {
                (false, format!("timed out after {}s and was killed", timeout.as_secs()))
            }
            (Ending::Stopped, _) => (false, "stopped".into()),
        };
        let detail = if stderr.trim().is_empty() { how } else { format!("{how}; stderr: {}", stderr.trim()) };
        ScriptRun { ok, detail, stdout }
    }
}

impl Tool for Bash {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "bash".into(),
            description: format!(
                "Run a shell command with {} in your folder /workspace/agent (stdin is empty). Returns the \
                 exit code, then stdout, then stderr; at most {BASH_MAX_OUTPUT_BYTES} bytes of output are \
                 shown (the beginning and the end), so filter long output (grep, head, tail) or write it to \
                 a file. The command and every process it starts are killed after `timeout` seconds \
                 (default {BASH_DEFAULT_TIMEOUT_S}, max {BASH_MAX_TIMEOUT_S}) or when the user stops the \
                 turn. Each call starts a fresh shell: `cd` and variables do not carry over. A background \
                 process (`cmd &`) must send its output to a file (`cmd > log 2>&1 &`); its later output is \
                 not shown.",
                self.shell.display()
            ),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The command line, run with `bash -c`."},
                    "timeout": {"type": "integer", "minimum": 1, "maximum": BASH_MAX_TIMEOUT_S, "description": format!("Seconds before the command is killed. Default {BASH_DEFAULT_TIMEOUT_S}.")}
                },
                "required": ["command"],
                "additionalProperties": false
            }),
        }
    }

    fn summary(&self, input: &Value) -> String {
        let command = input.get("command").and_then(Value::as_str).unwrap_or("");
        let first = command.trim_start().lines().next().unwrap_or("");
        let more = if command.trim().lines().count() > 1 { " …" } else { "" };
        format!("{}{more}", cut_chars(first, 120))
    }

    fn declared_timeout_ms(&self, input: &Value) -> Option<i64> {
        timeout_secs(input).ok().map(|s| (s * 1000) as i64)
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let command = match str_arg(input, "command") {
            Ok(c) if c.trim().is_empty() => {
                return ToolOutput::error("`command` is empty; give a shell command");
            }
            Ok(c) => c,
            Err(e) => return e,
        };
        let timeout = match timeout_secs(input) {
            Ok(t) => t,
            Err(e) => return e,
        };
        if ctx.cancel.is_cancelled() {
            return ToolOutput::error("stopped by the user before the command started");
        }
        let cwd = &ctx.roots.agent;
        if !cwd.is_dir() {
            return ToolOutput::error(format!("the agent's folder {} does not exist", cwd.display()));
        }
        let x = match self.execute(command, cwd, Duration::from_secs(timeout), ctx.cancel) {
            Ok(x) => x,
            Err(e) => return ToolOutput::error(e),
        };
        let (ending, status, out_buf, err_buf, streams_open, elapsed) =
            (x.ending, x.status, x.out, x.err, x.streams_open, x.elapsed);

        // Lock both buffers once so the sizes and the text agree (background processes may still
        // be writing).
        let (out_guard, err_guard) = (lock_buf(&out_buf), lock_buf(&err_buf));
        let out_len = out_guard.as_ref().map_or(0, |b| b.len());
        let err_len = err_guard.as_ref().map_or(0, |b| b.len());
        let (out_budget, err_budget) = split_budget(out_len, err_len, BASH_MAX_OUTPUT_BYTES);

        let mut text = match ending {
            Ending::Finished => match &status {
                Some(s) => fmt_status(s),
                None => "exit code: unknown (the shell could not be waited for)".into(),
            },
            Ending::TimedOut => format!(
                "timed out after {timeout}s: the command and the processes it started were killed; \
                 give a larger `timeout` (max {BASH_MAX_TIMEOUT_S}) or run long jobs in the background \
                 with output to a file"
            ),
            Ending::Stopped => format!(
                "stopped by the user after {:.1}s: the command and the processes it started were killed",
                elapsed.as_secs_f64()
            ),
        };
        if out_len > 0 {
            text.push_str("\nstdout:\n");
            text.push_str(&out_guard.as_ref().map(|b| b.render(out_budget)).unwrap_or_default());
        }
        if err_len > 0 {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(if out_len > 0 { "\nstderr:\n" } else { "stderr:\n" });
            text.push_str(&err_guard.as_ref().map(|b| b.render(err_budget)).unwrap_or_default());
        }
        if out_len == 0 && err_len == 0 {
            text.push_str("\n(no output)");
        }
        if streams_open > 0 && matches!(ending, Ending::Finished) {
            text.push_str(
                "\n[background processes still hold the output open; their later output is not shown — \
                 redirect it to a file (`cmd > log 2>&1 &`)]",
            );
        }
        match ending {
            Ending::Finished => ToolOutput::ok(text),
            Ending::TimedOut | Ending::Stopped => ToolOutput::error(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Roots;
    use super::super::fs::testkit::{run, run_with};
    use super::*;
    use crate::agent::model::Cancel;

    fn session() -> (tempfile::TempDir, Roots) {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(dir.path().to_path_buf());
        std::fs::create_dir_all(&roots.agent).unwrap();
        (dir, roots)
    }

    /// Runs the tool on another thread; the result must arrive within `within`.
    fn run_bounded(roots: &Roots, cancel: &Cancel, input: Value, within: Duration) -> (ToolOutput, Duration) {
        let (tx, rx) = mpsc::channel();
        let (roots, cancel) = (roots.clone(), cancel.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let out = run_with(&Bash::new(), &roots, &cancel, input);
            let _ = tx.send((out, started.elapsed()));
        });
        rx.recv_timeout(within).expect("the bash tool did not return in time")
    }

    /// Whether the process is gone (or a zombie waiting for its parent).
    /// Whether the process is gone (or a zombie), allowing the kernel a moment to deliver the
    /// SIGKILL already sent: a process is not dead the instant `kill` returns.
    fn gone(pid: u32) -> bool {
        let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !dead() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    #[test]
    fn output_exit_code_and_sections() {
        let (_dir, roots) = session();
        let out = run(&Bash::new(), &roots, json!({"command": "echo hello; pwd"}));
        assert!(!out.is_error);
        let agent = std::fs::canonicalize(&roots.agent).unwrap();
        assert_eq!(out.content, format!("exit code: 0\nstdout:\nhello\n{}\n", agent.display()));

        let out = run(&Bash::new(), &roots, json!({"command": "echo out; echo err >&2; exit 3"}));
        assert_eq!(out.content, "exit code: 3\nstdout:\nout\n\nstderr:\nerr\n");
        assert!(!out.is_error, "a failing command is a result, not a tool error");

        let out = run(&Bash::new(), &roots, json!({"command": "echo only-err >&2; false"}));
        assert_eq!(out.content, "exit code: 1\nstderr:\nonly-err\n");
        let out = run(&Bash::new(), &roots, json!({"command": "true"}));
        assert_eq!(out.content, "exit code: 0\n(no output)");
        // stdin is empty, not inherited.
        let out = run(&Bash::new(), &roots, json!({"command": "cat; echo done"}));
        assert_eq!(out.content, "exit code: 0\nstdout:\ndone\n");
        let out = run(&Bash::new(), &roots, json!({"command": "kill -TERM $$"}));
        assert!(out.content.starts_with("exit code: none (killed by signal 15)"), "{}", out.content);

        assert!(run(&Bash::new(), &roots, json!({"command": "  "})).is_error);
        assert!(run(&Bash::new(), &roots, json!({})).is_error);
        assert!(run(&Bash::new(), &roots, json!({"command": "true", "timeout": "soon"})).is_error);
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let (_dir, roots) = session();
        let input = json!({"command": "sleep 300 & echo $!; sleep 30", "timeout": 1});
        let (out, elapsed) = run_bounded(&roots, &Cancel::default(), input, Duration::from_secs(15));
        assert!(out.is_error, "{}", out.content);
        assert!(out.content.starts_with("timed out after 1s"), "{}", out.content);
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        let pid: u32 = out.content.split("stdout:\n").nth(1).unwrap().trim().parse().unwrap();
        assert!(gone(pid), "the background child {pid} survived the timeout");
    }

    #[test]
    fn cancel_from_another_thread_stops_promptly() {
        let (dir, roots) = session();
        let fifo = dir.path().join("started");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let cancel = Cancel::default();
        let (tx, rx) = mpsc::channel();
        {
            let (roots, cancel, fifo) = (roots.clone(), cancel.clone(), fifo.clone());
            std::thread::spawn(move || {
                let command = format!("sleep 300 & echo $!; echo go > '{}'; sleep 60", fifo.display());
                let out = run_with(&Bash::new(), &roots, &cancel, json!({"command": command}));
                let _ = tx.send(out);
                // If the command never reached the FIFO, release the reader below (O_RDWR does
                // not block), so the test fails on its assertions instead of hanging.
                let _ = std::fs::OpenOptions::new().read(true).write(true).open(&fifo);
            });
        }
        // Blocks until the command writes to the FIFO: it is running.
        let mut started = String::new();
        std::fs::File::open(&fifo).unwrap().read_to_string(&mut started).unwrap();
        cancel.cancel();
        let out = rx.recv_timeout(Duration::from_secs(10)).expect("cancel did not stop the command");
        assert_eq!(started, "go\n");
        assert!(out.is_error && out.content.starts_with("stopped by the user"), "{}", out.content);
        let pid: u32 = out.content.split("stdout:\n").nth(1).unwrap().trim().parse().unwrap();
        assert!(gone(pid), "the background child {pid} survived the stop");

        // Already cancelled: nothing runs.
        let marker = roots.agent.join("ran");
        let out = run_with(&Bash::new(), &roots, &cancel, json!({"command": "touch ran"}));
        assert!(out.is_error && out.content.contains("stopped"), "{}", out.content);
        assert!(!marker.exists());
    }

    #[test]
    fn output_is_capped_keeping_head_and_tail() {
        let (_dir, roots) = session();
        let out = run(
            &Bash::new(),
            &roots,
            json!({"command": "echo START; head -c 3000000 /dev/zero | tr '\\0' a; echo; echo END"}),
        );
        assert!(!out.is_error);
        assert!(out.content.len() <= BASH_MAX_OUTPUT_BYTES + 200, "{}", out.content.len());
        assert!(out.content.contains("stdout:\nSTART\naaa") && out.content.trim_end().ends_with("aaa\nEND"));
        assert!(out.content.contains("bytes left out"), "{}", &out.content[..100]);

        // Both streams big: each keeps a share.
        let out = run(
            &Bash::new(),
            &roots,
            json!({"command": "head -c 100000 /dev/zero | tr '\\0' o; head -c 100000 /dev/zero | tr '\\0' e >&2"}),
        );
        assert!(out.content.len() <= BASH_MAX_OUTPUT_BYTES + 300, "{}", out.content.len());
        let (stdout, stderr) = out.content.split_once("\nstderr:\n").unwrap();
        assert!(stdout.matches('o').count() > 10_000 && stderr.matches('e').count() > 10_000);

        // Small stderr stays whole next to a big stdout.
        let out = run(
            &Bash::new(),
            &roots,
            json!({"command": "head -c 100000 /dev/zero | tr '\\0' o; echo tiny-error >&2"}),
        );
        assert!(
            out.content.ends_with("\nstderr:\ntiny-error\n"),
            "{}",
            &out.content[out.content.len() - 100..]
        );
    }

    #[test]
    fn background_processes_holding_the_pipe_do_not_block() {
        let (_dir, roots) = session();
        let input = json!({"command": "sleep 20 & echo $!"});
        let (out, elapsed) = run_bounded(&roots, &Cancel::default(), input, Duration::from_secs(15));
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert!(out.content.contains("background processes still hold the output"), "{}", out.content);
        let pid: u32 =
            out.content.split("stdout:\n").nth(1).unwrap().lines().next().unwrap().trim().parse().unwrap();
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }

    #[test]
    fn timeouts_summary_and_spec() {
        let bash = Bash::new();
        assert_eq!(bash.declared_timeout_ms(&json!({"command": "x"})), Some(120_000));
        assert_eq!(bash.declared_timeout_ms(&json!({"command": "x", "timeout": 5})), Some(5_000));
        assert_eq!(bash.declared_timeout_ms(&json!({"command": "x", "timeout": 99999})), Some(1_800_000));
        assert_eq!(bash.declared_timeout_ms(&json!({"command": "x", "timeout": 0.2})), Some(1_000));
        assert_eq!(bash.declared_timeout_ms(&json!({"command": "x", "timeout": -1})), None);
        assert_eq!(bash.summary(&json!({"command": "ls -la\necho hi"})), "ls -la …");
        assert_eq!(bash.summary(&json!({"command": "x".repeat(500)})).chars().count(), 121);
        assert_eq!(bash.spec().name, "bash");
    }

    #[test]
    fn capped_buf_keeps_head_and_tail() {
        let mut b = CappedBuf::new(10);
        for chunk in [&b"0123456789abc"[..], b"def", b"ghijklmnopqrstuvwxyz"] {
            b.push(chunk);
        }
        assert_eq!(b.len(), 36);
        assert_eq!(b.render(10), "01234\n… [26 bytes left out] …\nvwxyz");
        let mut small = CappedBuf::new(10);
        small.push(b"hello");
        assert_eq!(small.render(10), "hello");
        assert_eq!(split_budget(100, 5, 50), (45, 5));
        assert_eq!(split_budget(100, 100, 50), (25, 25));
        assert_eq!(split_budget(10, 20, 50), (10, 20));
    }
}
