//! Same-run physical baselines the host's numbers are compared with: a raw loopback WebSocket
//! echo and a single-row SQLite commit with the session DBs' pragmas.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use pincer::db::{self, Kind};

use crate::net::{Ws, spawn_echo_server};

/// Round-trip times of `n` text frames through an in-process tungstenite echo server.
pub(crate) fn ws_echo(n: usize) -> anyhow::Result<Vec<Duration>> {
    let port = spawn_echo_server()?;
    let mut ws = Ws::connect(port, "/")?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!(r#"{{"type":"send","room_id":"bench","client_id":"echo-{i}","text":"m{i}"}}"#);
        let started = Instant::now();
        ws.send_text(text.clone())?;
        let back = ws.read_text(Instant::now() + Duration::from_secs(5)).context("echo")?;
        times.push(started.elapsed());
        anyhow::ensure!(back == text, "echo returned {back:?}");
    }
    Ok(times)
}

/// Commit times of `n` single-row autocommit inserts into a DB at `path` opened like a session's
/// `inbound.db` (journal_mode=DELETE, synchronous=FULL).
pub(crate) fn sqlite_commits(path: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    let conn = db::open(path, Kind::Inbound)?;
    conn.execute_batch("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")?;
    let mut insert = conn.prepare("INSERT INTO bench_rows (body) VALUES (?1)")?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        insert.execute([format!("row {i}")])?;
        times.push(started.elapsed());
    }
    Ok(times)
}

/// Durable commits per second when `files` threads each commit rows to a file of their own
/// (DELETE journal, `synchronous=FULL`, as a session DB): the disk's rate, which bounds how many
/// messages any number of chats can carry (each message commits several times).
pub(crate) fn sqlite_commit_rate(dir: &Path, files: usize, per_file: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    std::thread::scope(|s| {
        let jobs: Vec<_> = (0..files)
            .map(|f| s.spawn(move || sqlite_commits(&dir.join(format!("rate-{f}.db")), per_file)))
            .collect();
        for j in jobs {
            j.join().map_err(|_| anyhow::anyhow!("a commit thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok((files * per_file) as f64 / started.elapsed().as_secs_f64())
}
