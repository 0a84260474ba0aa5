//! Files from people: `POST /api/rooms/:id/upload` streams a form's file into the room, posts it
//! as the person's message, and the agent in a real container reads it from its inbox. Refusals
//! (not a form, no file, too large, no room, no CSRF) say why and leave nothing behind; a retry
//! with the same `client_id` stores nothing twice; hostile names stay inert.

use serde_json::{Value, json};

use crate::support::*;
use pincer::testing::{FakeModel, openai};

const KEY: &str = "sk-test-secret-key-0123456789abcdef";
const BOUNDARY: &str = "----pincer-test-7MA4YWxkTrZu0gW";

/// A form body: `(field, file name, bytes)`.
pub fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, file, data) in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match file {
            Some(f) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
        };
        out.extend_from_slice(disposition.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

pub fn upload(host: &Host, room: &str, body: &[u8], content_type: &str) -> (u16, Value) {
    let (status, _, bytes) = http_raw(
        host.port,
        "POST",
        &format!("/api/rooms/{room}/upload"),
        Some(body),
        &[("X-Webchat-CSRF", "1"), ("Content-Type", content_type)],
    );
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub fn multipart() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn stored_files(dirs: &Dirs, room: &str) -> Vec<String> {
    let dir = dirs.data().join("webchat/uploads").join(room);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A host whose agents use the fake model over the OpenAI protocol, with the test key.
fn openai_host(dirs: &Dirs, fake: &FakeModel) -> Host {
    let base = format!("{}/v1", fake.url());
    Host::start_with(
        dirs,
        &[
            ("PINCER_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &base),
            ("OPENAI_MODEL", "fake-model"),
            ("OPENAI_API_KEY", KEY),
        ],
    )
}

#[test]
fn an_uploaded_file_reaches_the_agent_in_its_container() {
    let fake = FakeModel::start();
    let read = json!({ "command": "cat /workspace/inbox/*/notes.txt" }).to_string();
    fake.reply(openai::tool_calls(&[("call_1", "bash", &[read.as_str()])]));
    fake.reply(openai::text(&["The notes say the code is 7319."], "stop"));
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);

    let content = b"meeting notes\nthe code is 7319\n";
    let body = form(&[
        ("client_id", None, b"up-1"),
        ("file", Some("notes.txt"), content),
        ("caption", None, b"what does this say?"),
    ]);
    let (status, resp) = upload(&host, "assistant", &body, &multipart());
    assert_eq!(status, 200, "{resp}");
    let m = &resp["message"];
    assert_eq!((m["text"].as_str(), m["sender_type"].as_str()), (Some("what does this say?"), Some("user")));
    let file = &m["files"][0];
    assert_eq!(
        (file["name"].as_str(), file["mime"].as_str(), file["size"].as_u64()),
        (Some("notes.txt"), Some("text/plain; charset=utf-8"), Some(content.len() as u64))
    );
    let url = file["url"].as_str().unwrap();
    let (status, _, bytes) = http_raw(host.port, "GET", url, None, &[]);
    assert_eq!((status, bytes.as_slice()), (200, &content[..]), "served back as sent");

    // The message reaches the room's page, and the agent reads the file in its container.
    ws.wait(|f| f["type"] == "message" && f["message"]["files"][0]["name"] == "notes.txt", WARM);
    let reply = ws.agent_reply("assistant", "7319", COLD);
    assert_eq!(reply["text"], "The notes say the code is 7319.");
    let first = fake.next_request(COLD).expect("the model was called");
    let prompt = first.body.to_string();
    assert!(prompt.contains("notes.txt — saved to /workspace/inbox/"), "{prompt}");
    let second = fake.next_request(COLD).expect("the tool round");
    let results: Vec<String> = second.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(results.iter().any(|r| r.contains("the code is 7319")), "cat read the file: {results:?}");

    // The same client_id again: the first message stands, no second file.
    let (status, again) = upload(&host, "assistant", &body, &multipart());
    assert_eq!((status, &again["message"]["id"]), (200, &m["id"]));
    assert_eq!(stored_files(&dirs, "assistant").len(), 1, "{:?}", stored_files(&dirs, "assistant"));
}

#[test]
fn refused_uploads_say_why_and_leave_nothing() {
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("WEBCHAT_UPLOAD_MAX_MB", "1")]);
    let one_mib_and_more = vec![b'x'; (1 << 20) + 1];
    let cases: Vec<(Vec<u8>, String, &str, u16, &str)> = vec![
        (br#"{"text":"hi"}"#.to_vec(), "application/json".into(), "assistant", 415, "multipart/form-data"),
        (form(&[("caption", None, b"no file")]), multipart(), "assistant", 422, "no `file` field"),
        (form(&[("file", None, b"x")]), multipart(), "assistant", 422, "no file name"),
        (
            form(&[("file", Some("a.txt"), b"a"), ("file", Some("b.txt"), b"b")]),
            multipart(),
            "assistant",
            422,
            "one file per upload",
        ),
        (
            form(&[("file", Some("big.bin"), &one_mib_and_more)]),
            multipart(),
            "assistant",
            413,
            "larger than 1 MiB",
        ),
        (b"--nope\r\n".to_vec(), multipart(), "assistant", 400, "malformed"),
        (form(&[("file", Some("a.txt"), b"a")]), multipart(), "nowhere", 404, "no room"),
    ];
    for (body, ct, room, want, says) in cases {
        let (status, resp) = upload(&host, room, &body, &ct);
        assert_eq!(status, want, "{resp}");
        assert!(resp["error"].as_str().unwrap_or_default().contains(says), "{resp} (wanted {says:?})");
    }
    // Larger than the whole form may be: refused from the head, before any byte is read.
    let huge = vec![b'x'; (1 << 20) + 200 * 1024];
    let (status, _) = upload(&host, "assistant", &form(&[("file", Some("h.bin"), &huge)]), &multipart());
    assert_eq!(status, 413);
    let (status, _, _) = http_raw(
        host.port,
        "POST",
        "/api/rooms/assistant/upload",
        Some(&form(&[("file", Some("a.txt"), b"a")])),
        &[("Content-Type", &multipart())],
    );
    assert_eq!(status, 403, "no CSRF header");
    assert!(stored_files(&dirs, "assistant").is_empty(), "{:?}", stored_files(&dirs, "assistant"));
    let (_, page) = host.get("/api/rooms/assistant/messages");
    assert!(page["messages"].as_array().unwrap().is_empty(), "no message stored: {page}");
}

#[test]
fn hostile_file_names_stay_inert() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let names = [
        "../../../etc/passwd",
        "..\\..\\boot.ini",
        "<img src=x onerror=alert(1)>.html",
        "report\u{202E}fdp.exe",
        ".htaccess",
        "a\"; filename=\"b.txt",
    ];
    for n in names {
        let wire = n.replace('"', "%22");
        let (status, resp) = upload(
            &host,
            "assistant",
            &form(&[("file", Some(&wire), b"<script>alert(1)</script>")]),
            &multipart(),
        );
        assert_eq!(status, 200, "{n}: {resp}");
        let f = &resp["message"]["files"][0];
        let shown = f["name"].as_str().unwrap();
        assert!(!shown.contains(['/', '\\', '\u{202E}']) && !shown.starts_with('.'), "{n} shown as {shown}");
        let url = f["url"].as_str().unwrap();
        let stored = url.rsplit('/').next().unwrap();
        assert!(stored.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{url}");
        let (status, headers, _) = http_raw(host.port, "GET", url, None, &[]);
        assert_eq!(status, 200, "{url}");
        let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        assert!(h("content-security-policy").starts_with("sandbox"), "{n}");
        assert_eq!(h("x-content-type-options"), "nosniff");
        if n.contains(".html") || n.contains(".exe") || n.contains("htaccess") || n.contains("passwd") {
            assert!(h("content-disposition").starts_with("attachment"), "{n}: {}", h("content-disposition"));
        }
    }
    for f in stored_files(&dirs, "assistant") {
        assert!(!f.starts_with('.'), "no hidden or partial file left: {f}");
    }
    assert!(!dirs.data().join("etc").exists() && !dirs.root().join("etc/passwd").exists());
}

/// Uploads a file with a caption, waits for the agent's reply, and returns the content parts of
/// the last user message the model received.
fn send_and_read_parts(
    host: &Host,
    ws: &mut Ws,
    fake: &FakeModel,
    name: &str,
    bytes: &[u8],
    caption: &str,
    reply: &str,
) -> Vec<Value> {
    let body = form(&[("file", Some(name), bytes), ("caption", None, caption.as_bytes())]);
    let (status, resp) = upload(host, "assistant", &body, &multipart());
    assert_eq!(status, 200, "{resp}");
    ws.agent_reply("assistant", reply, COLD);
    let req = fake.next_request(COLD).expect("the model was called");
    let messages = req.body["messages"].as_array().unwrap();
    let user = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    user["content"].as_array().unwrap_or_else(|| panic!("content parts: {user}")).clone()
}

/// A picture from a phone reaches the model as image input, and a PDF as a document, in each
/// protocol's own form.
#[test]
fn a_photo_and_a_pdf_reach_the_model_in_both_protocols() {
    use base64::Engine;
    let photo: Vec<u8> = b"\x89PNG\r\n\x1a\n not really decoded by anyone here".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&photo);
    for protocol in ["openai", "anthropic"] {
        let fake = FakeModel::start();
        let dirs = Dirs::new();
        let base = format!("{}/v1", fake.url());
        let env: Vec<(&str, &str)> = if protocol == "openai" {
            fake.reply(openai::text(&["A photo."], "stop"));
            vec![
                ("PINCER_PROVIDER", "openai"),
                ("OPENAI_BASE_URL", &base),
                ("OPENAI_MODEL", "fake-model"),
                ("OPENAI_API_KEY", KEY),
            ]
        } else {
            fake.reply(pincer::testing::anthropic::text(&["A photo."]));
            vec![
                ("ANTHROPIC_API_KEY", KEY),
                ("ANTHROPIC_BASE_URL", fake.url().leak()),
                ("ANTHROPIC_MODEL", "m"),
            ]
        };
        let host = Host::start_with(&dirs, &env);
        let mut ws = host.ws();
        ws.join("assistant", None);
        let parts = send_and_read_parts(
            &host,
            &mut ws,
            &fake,
            "IMG_0042.PNG",
            &photo,
            "what is in this photo?",
            "A photo.",
        );
        let text = parts.iter().find(|p| p["type"] == "text").unwrap()["text"].as_str().unwrap().to_string();
        assert!(text.contains("what is in this photo?") && text.contains("IMG_0042.PNG"), "{text}");
        let image = if protocol == "openai" {
            parts.iter().find(|p| p["type"] == "image_url").unwrap()["image_url"]["url"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            let p = parts.iter().find(|p| p["type"] == "image").unwrap();
            assert_eq!(
                (p["source"]["type"].as_str(), p["source"]["media_type"].as_str()),
                (Some("base64"), Some("image/png"))
            );
            p["source"]["data"].as_str().unwrap().to_string()
        };
        let want = if protocol == "openai" { format!("data:image/png;base64,{b64}") } else { b64.clone() };
        assert_eq!(image, want, "{protocol}: the photo's bytes");

        // A PDF is read as a document, each protocol in its own form.
        let pdf = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n".to_vec();
        let pdf64 = base64::engine::general_purpose::STANDARD.encode(&pdf);
        if protocol == "openai" {
            fake.reply(openai::text(&["A report."], "stop"));
        } else {
            fake.reply(pincer::testing::anthropic::text(&["A report."]));
        }
        let parts =
            send_and_read_parts(&host, &mut ws, &fake, "report.pdf", &pdf, "summarise this", "A report.");
        if protocol == "openai" {
            let f = parts.iter().find(|p| p["type"] == "file").unwrap_or_else(|| panic!("{parts:?}"));
            assert_eq!(f["file"]["filename"], "report.pdf");
            assert_eq!(
                f["file"]["file_data"].as_str().unwrap(),
                format!("data:application/pdf;base64,{pdf64}")
            );
        } else {
            let d = parts.iter().find(|p| p["type"] == "document").unwrap_or_else(|| panic!("{parts:?}"));
            assert_eq!(
                (d["source"]["media_type"].as_str(), d["title"].as_str()),
                (Some("application/pdf"), Some("report.pdf"))
            );
            assert_eq!(d["source"]["data"].as_str().unwrap(), pdf64);
        }
    }
}

fn put_chunk(host: &Host, id: &str, offset: u64, bytes: &[u8]) -> (u16, Value) {
    let (status, _, body) = http_raw(
        host.port,
        "PUT",
        &format!("/api/uploads/{id}?offset={offset}"),
        Some(bytes),
        &[("X-Webchat-CSRF", "1"), ("Content-Type", "application/octet-stream")],
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A large file sent in chunks over a link that drops: a chunk cut short is taken back whole,
/// the client asks how much arrived and goes on from there, and the finished file is posted.
#[test]
fn a_resumable_upload_survives_a_dropped_chunk() {
    use std::io::{Read, Write};
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("WEBCHAT_UPLOAD_MAX_MB", "4")]);
    let mib = 1 << 20;
    let data: Vec<u8> = (0..3 * mib + 5).map(|i| (i * 7 % 251) as u8).collect();
    let (status, opened) = host.post(
        "/api/rooms/assistant/uploads",
        json!({ "name": "video.mp4", "size": data.len(), "client_id": "r-1" }),
    );
    assert_eq!(status, 201, "{opened}");
    let id = opened["upload_id"].as_str().unwrap().to_string();
    assert_eq!((opened["received"].as_u64(), opened["chunk_max"].as_u64()), (Some(0), Some(8 * mib as u64)));

    let (status, r) = put_chunk(&host, &id, 0, &data[..mib]);
    assert_eq!((status, r["received"].as_u64()), (200, Some(mib as u64)), "{r}");
    let (status, r) = put_chunk(&host, &id, 0, &data[..mib]);
    assert_eq!(
        (status, r["received"].as_u64()),
        (409, Some(mib as u64)),
        "a stale offset says where to go on: {r}"
    );

    // The link drops halfway through the next chunk.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", host.port)).unwrap();
    write!(
        s,
        "PUT /api/uploads/{id}?offset={mib} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Webchat-CSRF: 1\r\nContent-Length: {mib}\r\n\r\n",
        host.port
    )
    .unwrap();
    s.write_all(&data[mib..mib + mib / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("not kept"), "{answer}");
    let (_, st) = host.get(&format!("/api/uploads/{id}"));
    assert_eq!(st["received"].as_u64(), Some(mib as u64), "the cut chunk was taken back: {st}");

    let (status, _) = host.post(&format!("/api/uploads/{id}/finish"), json!({}));
    assert_eq!(status, 409, "not whole yet");
    let (status, _) = put_chunk(&host, &id, mib as u64, &data[mib..2 * mib]);
    assert_eq!(status, 200);
    let (status, r) = put_chunk(&host, &id, 2 * mib as u64, &data[2 * mib..]);
    assert_eq!((status, r["received"].as_u64()), (200, Some(data.len() as u64)));
    let (status, done) = host.post(&format!("/api/uploads/{id}/finish"), json!({}));
    assert_eq!(status, 200, "{done}");
    let f = &done["message"]["files"][0];
    assert_eq!((f["name"].as_str(), f["size"].as_u64()), (Some("video.mp4"), Some(data.len() as u64)));
    let (status, _, bytes) = http_raw(host.port, "GET", f["url"].as_str().unwrap(), None, &[]);
    assert!(status == 200 && bytes == data, "the file arrived whole");
    assert_eq!(host.post(&format!("/api/uploads/{id}/finish"), json!({})).0, 404, "finished once");

    // Limits: the file's size, a chunk's size, and past the end.
    let (status, _) = host.post("/api/rooms/assistant/uploads", json!({ "name": "huge", "size": 5 * mib }));
    assert_eq!(status, 413);
    let (_, small) = host.post("/api/rooms/assistant/uploads", json!({ "name": "s.txt", "size": 4 }));
    let sid = small["upload_id"].as_str().unwrap().to_string();
    let (status, r) = put_chunk(&host, &sid, 0, b"12345");
    assert_eq!(status, 413, "past the end: {r}");
    let (_, st) = host.get(&format!("/api/uploads/{sid}"));
    assert_eq!(st["received"].as_u64(), Some(0));
    assert_eq!(host.delete(&format!("/api/uploads/{sid}")).0, 200);
    assert_eq!(host.get(&format!("/api/uploads/{sid}")).0, 404);
    let (status, _) = put_chunk(&host, &"a".repeat(20), 0, b"x");
    assert_eq!(status, 404);
}

/// A phone-sized photo (far over the 5 MB a model takes as base64) reaches the model as a JPEG
/// scaled to 1568 px on its long edge; the agent's tools still get the original.
#[test]
fn a_large_photo_reaches_the_model_scaled_down() {
    use base64::Engine;
    let mut seed = 1u32;
    let pixels = image::ImageBuffer::from_fn(3000, 2000, |_, _| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let b = seed.to_le_bytes();
        image::Rgb([b[1], b[2], b[3]])
    });
    let mut photo = Vec::new();
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut std::io::Cursor::new(&mut photo), image::ImageFormat::Png)
        .unwrap();
    assert!(photo.len() > 5_000_000, "the photo is over what a model takes: {}", photo.len());
    let fake = FakeModel::start();
    fake.reply(openai::text(&["A big photo."], "stop"));
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    let parts =
        send_and_read_parts(&host, &mut ws, &fake, "IMG_1234.png", &photo, "what is this?", "A big photo.");
    let url = parts.iter().find(|p| p["type"] == "image_url").unwrap_or_else(|| panic!("{parts:?}"))["image_url"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let b64 = url.strip_prefix("data:image/jpeg;base64,").unwrap_or_else(|| panic!("a JPEG: {}", &url[..40]));
    let jpeg = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let seen = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((seen.width(), seen.height()), (1568, 1045));
    let text = parts.iter().find(|p| p["type"] == "text").unwrap()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("IMG_1234.png") && !text.contains(".model.jpg"),
        "the agent is told of the original: {text}"
    );
}
