//! Hostile and careless clients against the real binary: each attack is replayed, and a normal
//! client must still be served while it runs. Attackers connect from 127.0.0.2 and friends, so
//! they count as other addresses than the normal client on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;
use pincer::webchat::front::CONNECTIONS_PER_ADDRESS_MAX;
use pincer::webchat::http::{BODY_GRACE, HEAD_TIMEOUT};

const TOKEN: &str = "robust-test-token-0123456789abcdef";

fn request(method: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n").into_bytes()
}

fn health_is_served(host: &Host) {
    let (status, body) = host.get("/health");
    assert_eq!(status, 200, "a normal client is not served: {body}");
}

#[test]
fn connections_held_by_one_address_do_not_starve_other_clients() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    // Slowloris: every connection the address may have, each with half a request head.
    let mut held: Vec<TcpStream> = (0..CONNECTIONS_PER_ADDRESS_MAX)
        .map(|_| {
            let mut s = connect_from("127.0.0.2", host.port);
            s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    // One more from that address is refused at once, with a reason.
    let mut extra = connect_from("127.0.0.2", host.port);
    let (status, _) =
        read_response_head(&mut extra, WARM).expect("an answer to the connection over the limit");
    assert_eq!(status, 429);
    // Everyone else is served meanwhile.
    health_is_served(&host);
    let mut other = connect_from("127.0.0.3", host.port);
    let (status, _) = raw_exchange(&mut other, &request("GET", "/health", ""), WARM).unwrap();
    assert_eq!(status, 200);

    // A trickling head is cut at its deadline even though bytes keep coming (the timeout is for
    // the whole head, not per read). The trickle below is the attack itself.
    let mut trickle = held.pop().unwrap();
    let answer = std::thread::spawn(move || {
        let mut sent = 0;
        trickle.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut got = Vec::new();
        loop {
            if trickle.write_all(b"a").is_err() {
                break;
            }
            sent += 1;
            let mut buf = [0u8; 256];
            match trickle.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) if sent < 100 => continue,
                Err(_) => break,
            }
        }
        (String::from_utf8_lossy(&got).into_owned(), sent)
    });
    let (answer, sent) = answer.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "a trickled head got {answer:?} after {sent} bytes");
    // The other held connections are closed by the same deadline; their slots come back.
    for mut s in held {
        let got = read_response_head(&mut s, HEAD_TIMEOUT * 3).map(|(st, _)| st);
        assert_eq!(got, Some(408));
    }
    let mut again = connect_from("127.0.0.2", host.port);
    let (status, _) = raw_exchange(&mut again, &request("GET", "/health", ""), WARM).unwrap();
    assert_eq!(status, 200, "the address may connect again once its connections are gone");
}

#[test]
fn refused_and_malformed_requests_are_answered_at_once() {
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("WEBCHAT_TOKEN", TOKEN)]);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let csrf = "X-Webchat-CSRF: 1\r\n";
    // Unauthenticated requests with a large body that never comes: refused before the body
    // (a server reading the body first would answer 408 after the body deadline instead).
    let stalled: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut s = connect_from(&format!("127.0.0.{}", 10 + i), host.port);
            let head = request("POST", "/api/agents", &format!("{csrf}Content-Length: 1048576\r\n"));
            let (status, _) = raw_exchange(&mut s, &head, WARM).expect("an answer without the body");
            assert_eq!(status, 401);
            s
        })
        .collect();
    // Authenticated ones with a stalled body hold only their own threads.
    let slow: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut s = connect_from(&format!("127.0.0.{}", 30 + i), host.port);
            let head = request("POST", "/api/agents", &format!("{auth}{csrf}Content-Length: 1000\r\n"));
            s.write_all(&head).unwrap();
            s.write_all(b"{\"name\":").unwrap();
            s
        })
        .collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "HTTP/2 upgrade request (curl --http2)",
            request(
                "GET",
                "/health",
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
            ),
            200,
        ),
        (
            "conflicting lengths",
            request(
                "POST",
                "/api/agents",
                &format!("{auth}{csrf}Content-Length: 5\r\nContent-Length: 6\r\n"),
            ),
            400,
        ),
        (
            "invalid length",
            request("POST", "/api/agents", &format!("{auth}{csrf}Content-Length: 5x\r\n")),
            400,
        ),
        (
            "length and chunked",
            request(
                "POST",
                "/api/agents",
                &format!("{auth}{csrf}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            ),
            400,
        ),
        (
            "unknown coding",
            request("POST", "/api/agents", &format!("{auth}{csrf}Transfer-Encoding: xchunked\r\n")),
            400,
        ),
        (
            "gzip coding",
            request("POST", "/api/agents", &format!("{auth}{csrf}Transfer-Encoding: gzip, chunked\r\n")),
            501,
        ),
        (
            "huge chunk size",
            [
                request("POST", "/api/agents", &format!("{auth}{csrf}Transfer-Encoding: chunked\r\n")),
                b"fffffffffffffffffff\r\n".to_vec(),
            ]
            .concat(),
            400,
        ),
        ("space before colon", b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(), 400),
        ("no Host", b"GET /health HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 505),
        (
            "lowercase bearer scheme",
            request("GET", "/api/auth/check", &format!("authorization: bearer {TOKEN}\r\n")),
            200,
        ),
        ("no token", request("GET", "/api/auth/check", ""), 401),
        ("/ws without an upgrade", request("GET", "/ws", ""), 426),
        (
            "/ws with a bad key",
            request(
                "GET",
                "/ws",
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: nope\r\n",
            ),
            400,
        ),
        (
            "/ws with an old version",
            request(
                "GET",
                "/ws",
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            ),
            426,
        ),
    ];
    for (what, bytes, want) in cases {
        let mut s = connect_from("127.0.0.5", host.port);
        let got = raw_exchange(&mut s, &bytes, WARM).map(|(st, _)| st);
        assert_eq!(got, Some(want), "{what}");
    }
    // Header limits hold on every request of a kept-alive connection, not only the first.
    let mut s = connect_from("127.0.0.6", host.port);
    assert_eq!(raw_exchange(&mut s, &request("GET", "/health", ""), WARM).unwrap().0, 200);
    let mut body = [0u8; 256];
    let _ = s.read(&mut body);
    let huge = request("GET", "/health", &format!("X-Big: {}\r\n", "a".repeat(64 * 1024)));
    let got = raw_exchange(&mut s, &huge, WARM).map(|(st, _)| st);
    assert_eq!(got, Some(431), "an oversized head on a kept-alive connection");
    health_is_served(&host);
    // The stalled bodies end at the body deadline with 408.
    for mut s in slow {
        let got = read_response_head(&mut s, BODY_GRACE * 3).map(|(st, _)| st);
        assert_eq!(got, Some(408));
    }
    drop(stalled);
    let (status, agents) =
        http(host.port, "GET", "/api/agents", None, &[("Authorization", &format!("Bearer {TOKEN}"))]);
    assert_eq!((status, agents.as_array().unwrap().len()), (200, 1), "no agent was created: {agents}");
}

#[test]
fn sends_are_rate_limited_per_user_and_frames_per_socket() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    let sent: Vec<String> = (0..45).map(|i| ws.say("assistant", &format!("flood {i}"))).collect();
    let mut acked = 0;
    let mut limited = Vec::new();
    for _ in 0..sent.len() {
        let f =
            ws.wait(|f| f["type"] == "ack" || (f["type"] == "error" && f["code"] == "rate_limited"), WARM);
        if f["type"] == "ack" {
            acked += 1;
        } else {
            assert!(f["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{f}");
            assert!(sent.contains(&f["client_id"].as_str().unwrap().to_string()), "{f}");
            limited.push(f);
        }
    }
    assert!(acked >= 30 && !limited.is_empty(), "{acked} acked, {} limited", limited.len());
    // Only what was acknowledged is stored.
    let (_, msgs) = host.get("/api/rooms/assistant/messages?limit=1000");
    let stored = msgs["messages"].as_array().unwrap().iter().filter(|m| m["sender_type"] == "user").count();
    assert_eq!(stored, acked);
    // The HTTP path shares the user's budget and says when to retry.
    let (status, head) = {
        let mut s = connect_from("127.0.0.1", host.port);
        let body = json!({ "text": "over http", "client_id": "http-1" }).to_string();
        let req = format!(
            "POST /api/rooms/assistant/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Webchat-CSRF: 1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        raw_exchange(&mut s, req.as_bytes(), WARM).unwrap()
    };
    assert_eq!(status, 429);
    assert!(head.field("retry-after").is_some());
    // Any frame counts against the socket's own rate.
    let mut other = host.ws();
    for _ in 0..150 {
        other.send(json!({ "type": "typing", "room_id": "assistant", "is_typing": true }));
    }
    other.wait(|f| f["type"] == "error" && f["code"] == "rate_limited", WARM);
}

#[test]
fn a_websocket_client_that_never_reads_is_dropped_with_memory_bounded() {
    let dirs = Dirs::new();
    let mut host = Host::start_with(&dirs, &[("WEBCHAT_SEND_RATE", "100000")]);
    // A room with a few MB of history.
    let big = "x".repeat(60 * 1024);
    for i in 0..60 {
        let body = json!({ "text": format!("{i} {big}"), "client_id": format!("big-{i}") });
        let (status, resp) = host.post("/api/rooms/assistant/messages", body);
        assert_eq!(status, 200, "{resp}");
    }
    let before = anon_kib(host.pid());
    // The attacker asks for the whole history again and again and reads nothing.
    let mut s = connect_from("127.0.0.7", host.port);
    socket2::SockRef::from(&s).set_recv_buffer_size(4096).unwrap();
    let handshake = request(
        "GET",
        "/ws",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    let (status, _) = raw_exchange(&mut s, &handshake, WARM).unwrap();
    assert_eq!(status, 101);
    let join = json!({ "type": "join", "room_id": "assistant", "after_seq": 0 }).to_string();
    for _ in 0..300 {
        if s.write_all(&masked_text_frame(join.as_bytes())).is_err() {
            break;
        }
    }
    // A normal client is served meanwhile.
    let mut ws = host.ws();
    ws.join("assistant", Some(1_000_000));
    ws.say("assistant", "still here?");
    // Answered after the agent's backlog of large echoes (tens of seconds on a busy machine). The
    // agent answers the newest messages first, so the question may share a batch with large ones:
    // then the answer is in the whole reply attached as reply.md, not in the message's text.
    let port = host.port;
    ws.wait(
        |f| {
            f["type"] == "message"
                && f["room_id"] == "assistant"
                && f["message"]["sender_type"] == "agent"
                && reply_mentions(port, &f["message"], "echo: still here?")
        },
        3 * COLD,
    );
    // The reader that never reads is disconnected with a reason, and memory stayed bounded.
    let line = host.wait_for_line(|l| l.contains("closing the WebSocket") && l.contains("too slow"), COLD);
    assert!(line.is_some(), "the non-reading client was not dropped:\n{}", host.log_tail());
    let grown_mib = anon_kib(host.pid()).saturating_sub(before) / 1024;
    assert!(grown_mib < 48, "host memory grew by {grown_mib} MiB for one non-reading client");
}

/// Whether an agent's message says `needle`, in its text or in the whole reply it attaches.
fn reply_mentions(port: u16, message: &serde_json::Value, needle: &str) -> bool {
    if message["text"].as_str().is_some_and(|t| t.contains(needle)) {
        return true;
    }
    let files = message["files"].as_array().map(Vec::as_slice).unwrap_or_default();
    files.iter().filter(|f| f["name"] == "reply.md").any(|f| {
        let (status, body) = http(port, "GET", f["url"].as_str().unwrap_or_default(), None, &[]);
        status == 200 && body.as_str().is_some_and(|t| t.contains(needle))
    })
}

#[test]
fn a_client_that_only_receives_is_still_pinged() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut watcher = host.ws();
    watcher.join("assistant", None);
    let mut typist = host.ws();
    typist.join("assistant", None);
    // The typist keeps the watcher's socket busy every second; the watcher never sends. Only a
    // ping (and its answer) shows the server the watcher is still there.
    let deadline = Instant::now() + pincer::webchat::ws::PING_INTERVAL + Duration::from_secs(15);
    let mut pinged = false;
    let mut n = 0;
    while !pinged && Instant::now() < deadline {
        typist.send(json!({ "type": "typing", "room_id": "assistant", "is_typing": n % 2 == 0 }));
        pinged = watcher.pinged_within(Duration::from_secs(1));
        n += 1;
    }
    assert!(pinged, "a client receiving events every second was not pinged ({n} typing events)");
    assert!(
        watcher.pending.iter().any(|f| f["type"] == "typing"),
        "the watcher got no typing events: the test did not keep its socket busy"
    );
}

#[test]
fn memory_is_returned_after_many_websocket_clients_leave() {
    let dirs = Dirs::new();
    let mut host = Host::start(&dirs);
    // Warm up: the first client and room load, then measure the idle size.
    drop(host.ws());
    let idle = anon_kib(host.pid());
    let clients: Vec<Ws> = (0..500)
        .map(|i| {
            let source = format!("127.0.1.{}", 1 + i / 50);
            let mut ws = Ws::try_connect_from(&source, host.port, &[]).expect("connects");
            ws.join("assistant", None);
            ws
        })
        .collect();
    let peak = anon_kib(host.pid());
    drop(clients);
    let line = host.wait_for_line(|l| l.contains("free memory returned"), WARM);
    assert!(line.is_some(), "no memory release after the burst:\n{}", host.log_tail());
    let after = anon_kib(host.pid());
    eprintln!("host anonymous memory: idle {idle} KiB, 500 clients {peak} KiB, after they left {after} KiB");
    assert!(
        after < idle + (peak - idle) / 2,
        "memory stayed near the peak: idle {idle} KiB, peak {peak} KiB, after {after} KiB"
    );
}

#[test]
fn a_reply_larger_than_a_link_frame_reaches_the_room() {
    use pincer::testing::{FakeModel, openai};
    let fake = FakeModel::start();
    // A server that does not stream: the whole reply in one chunk, far over the link frame limit.
    let long: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
    fake.reply(openai::text(&[&long], "stop"));
    fake.reply(openai::text(&["second answer"], "stop"));
    let dirs = Dirs::new();
    let base = format!("{}/v1", fake.url());
    let host = Host::start_with(
        &dirs,
        &[("PINCER_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base), ("OPENAI_MODEL", "m")],
    );
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "write a lot");
    let mut streamed = 0;
    let reply = loop {
        let f = ws.wait(
            |f| f["type"] == "stream" || (f["type"] == "message" && f["message"]["sender_type"] == "agent"),
            COLD,
        );
        if f["type"] == "stream" {
            streamed += f["delta"].as_str().unwrap().len();
            continue;
        }
        break f["message"].clone();
    };
    assert_eq!(streamed, long.len(), "every byte was streamed, in frames under the limit");
    let files = reply["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{reply}");
    assert_eq!(files[0]["name"], "reply.md");
    assert!(reply["text"].as_str().unwrap().contains("is attached as reply.md"));
    let url = files[0]["url"].as_str().unwrap();
    let (status, _, bytes) = http_raw(host.port, "GET", url, None, &[]);
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(bytes).unwrap(), long.trim_end(), "the attachment holds the whole reply");
    // The link survived: the next message is answered by the same container.
    ws.say("assistant", "and now?");
    ws.agent_reply("assistant", "second answer", WARM);
}

/// A masked client text frame (RFC 6455 §5.2).
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}
