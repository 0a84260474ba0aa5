//! The files-and-history phase: how fast an upload streams to disk (against `cp` of the same
//! file on the same file system), how long a search over 100 000 stored messages takes
//! through the API (against the same full-text query run directly on the database), and how
//! long the app in headless Chromium takes to open a 10 000-message room and scroll back to its
//! first message (against the same browser laying out 10 000 plain message elements).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

use crate::host::Host;
use crate::net::http_json;

/// The uploaded file.
pub(crate) const UPLOAD_MIB: usize = 64;
const UPLOADS: usize = 3;
/// Messages searched.
pub(crate) const MESSAGES: usize = 100_000;
const SEARCHES: usize = 50;
/// Messages in the room the browser opens.
pub(crate) const RENDERED: usize = 10_000;
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Filed {
    /// MB/s of each upload (request sent → answer read).
    pub(crate) upload_mb_s: Vec<f64>,
    /// MB/s of `cp` of the same file.
    pub(crate) cp_mb_s: Vec<f64>,
    pub(crate) search: Vec<Duration>,
    pub(crate) fts_direct: Vec<Duration>,
    /// `tests/bench/render.py`'s figures (ms): open_ms, scroll_back_ms, static_ms.
    pub(crate) render: serde_json::Value,
}

pub(crate) fn phase(dir: &std::path::Path, image: &str) -> anyhow::Result<Filed> {
    let mut host = Host::start(dir, image, &[], TIMEOUT)?;
    let port = host.port;
    // A room without agents: the upload alone is measured, not an agent's turn.
    let (status, made) =
        http_json(port, "POST", "/api/rooms", Some(&json!({ "name": "Files", "agents": [] })))?;
    ensure!(status == 201, "POST /api/rooms answered {status}: {made}");
    let room = made["room"]["id"].as_str().context("room id")?.to_string();

    let src = dir.join("upload.bin");
    let mut data = vec![0u8; UPLOAD_MIB << 20];
    getrandom::fill(&mut data).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(&src, &data)?;
    let mb = data.len() as f64 / 1e6;
    let mut out = Filed {
        upload_mb_s: Vec::new(),
        cp_mb_s: Vec::new(),
        search: Vec::new(),
        fts_direct: Vec::new(),
        render: serde_json::Value::Null,
    };
    for n in 0..UPLOADS {
        let copy = dir.join(format!("copy-{n}.bin"));
        let started = Instant::now();
        let status = std::process::Command::new("cp").arg(&src).arg(&copy).status()?;
        ensure!(status.success(), "cp failed");
        // cp's copy is flushed too, as the upload's is before it is answered.
        std::fs::File::open(&copy)?.sync_all()?;
        out.cp_mb_s.push(mb / started.elapsed().as_secs_f64());
        std::fs::remove_file(&copy)?;

        let started = Instant::now();
        upload(port, &room, &data, n)?;
        out.upload_mb_s.push(mb / started.elapsed().as_secs_f64());
    }

    // 100 000 messages written straight into the central DB (its triggers queue them for the
    // index), indexed by a first search (not timed), then searched for words of different
    // frequency through the API and directly.
    let db = rusqlite::Connection::open(host.data_dir.join("pincer.db"))?;
    db.busy_timeout(TIMEOUT)?;
    db.execute_batch("BEGIN IMMEDIATE")?;
    {
        let mut insert = db.prepare(
            "INSERT INTO room_messages (id, room_id, seq, sender, sender_id, sender_type, text, html, files, created_at, routed_at)
             VALUES (?1, ?2, ?3, 'bench', 'webchat:local-owner', 'user', ?4, '', '[]', ?5, ?5)",
        )?;
        let base: i64 = db.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM room_messages WHERE room_id = ?1",
            [&room],
            |r| r.get(0),
        )?;
        for i in 0..MESSAGES {
            let text = format!(
                "message {i} about topic{} and word{} in the archive of the bench run",
                i % 1000,
                i % 7
            );
            let seq = base + i as i64 + 1;
            insert.execute(rusqlite::params![
                format!("bench-{i}"),
                room,
                seq,
                text,
                1_700_000_000_000i64 + i as i64
            ])?;
        }
    }
    db.execute_batch("COMMIT")?;
    let (status, found) = http_json(port, "GET", "/api/search?q=archive", None)?;
    ensure!(status == 200, "the first search answered {status}: {found}");
    for n in 0..SEARCHES {
        // A word shared by 100 messages and one by 14 000: about 14 hold both.
        let q = format!("topic{} word{}", (n * 37) % 1000, n % 7);
        let started = Instant::now();
        let (status, found) =
            http_json(port, "GET", &format!("/api/search?q={}", q.replace(' ', "%20")), None)?;
        out.search.push(started.elapsed());
        ensure!(status == 200, "search answered {status}: {found}");
        ensure!(found["results"].as_array().is_some_and(|r| !r.is_empty()), "no results for {q}");
        let started = Instant::now();
        let mut stmt = db.prepare_cached(
            "SELECT m.id, m.text FROM message_search s JOIN room_messages m ON m.rowid = s.rowid
             WHERE message_search MATCH ?1 ORDER BY rank LIMIT 50",
        )?;
        let rows: Vec<(String, String)> = stmt
            .query_map([format!("\"topic{}\" \"word{}\"", (n * 37) % 1000, n % 7)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        out.fts_direct.push(started.elapsed());
        ensure!(!rows.is_empty(), "the direct query found nothing");
    }
    // A room of its own with 10 000 messages, opened and scrolled back in the browser.
    let (status, made) =
        http_json(port, "POST", "/api/rooms", Some(&json!({ "name": "Render", "agents": [] })))?;
    ensure!(status == 201, "POST /api/rooms answered {status}: {made}");
    let render_room = made["room"]["id"].as_str().context("room id")?.to_string();
    db.execute_batch("BEGIN IMMEDIATE")?;
    {
        let mut insert = db.prepare(
            "INSERT INTO room_messages (id, room_id, seq, sender, sender_id, sender_type, text, html, files, created_at, routed_at)
             VALUES (?1, ?2, ?3, 'bench', 'webchat:local-owner', 'user', ?4, ?5, '[]', ?6, ?6)",
        )?;
        for i in 1..=RENDERED {
            insert.execute(rusqlite::params![
                format!("render-{i}"),
                render_room,
                i as i64,
                format!("note {i}"),
                format!("<p>note {i}</p>"),
                1_700_000_000_000i64 + i as i64 * 60_000
            ])?;
        }
    }
    db.execute_batch("COMMIT")?;
    drop(db);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bench/render.py");
    let run = std::process::Command::new("python3")
        .args([script, &port.to_string(), &render_room, &RENDERED.to_string()])
        .output()
        .context("running tests/bench/render.py (make deps installs Chromium and selenium)")?;
    ensure!(
        run.status.success(),
        "render.py failed: {}",
        String::from_utf8_lossy(&run.stderr).lines().last().unwrap_or_default()
    );
    out.render = serde_json::from_slice(&run.stdout).context("render.py's figures")?;
    host.stop()?;
    Ok(out)
}

/// Streams one upload: the form's head, the file, its tail; waits for the answer.
fn upload(port: u16, room: &str, data: &[u8], n: usize) -> anyhow::Result<()> {
    let boundary = "----pincer-bench-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\nbench-up-{n}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench-{n}.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    write!(
        s,
        "POST /api/rooms/{room}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nX-Webchat-CSRF: 1\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        head.len() + data.len() + tail.len()
    )?;
    s.write_all(head.as_bytes())?;
    s.write_all(data)?;
    s.write_all(tail.as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    ensure!(
        answer.starts_with("HTTP/1.1 200"),
        "the upload was answered {}",
        answer.lines().next().unwrap_or("")
    );
    Ok(())
}
