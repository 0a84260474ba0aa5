//! Entry points for the fuzz targets in `tests/fuzz/` (built with the `fuzzing` feature): each
//! takes arbitrary bytes and runs one parser of untrusted input the way the product does. A
//! target's only job is not to panic, hang or blow up memory; limits are the product's own.

use std::io::{BufReader, Read};

use crate::agent::model::Cancel;
use crate::http1;

/// The HTTP/1.1 head reader and framing, then the chunked body decoder, as the webchat's
/// connection loop applies them.
pub fn http1_request(data: &[u8]) {
    let mut r = BufReader::with_capacity(256, data);
    while let Ok(head) = http1::read_head(&mut r, 16 * 1024) {
        let _ = http1::parse_request_line(&head.start);
        let _ = http1::parse_status_line(&head.start);
        match http1::request_framing(&head) {
            Ok(http1::Framing::Chunked) => {
                let mut body = Vec::new();
                if http1::Chunked::new(&mut r).take(1 << 20).read_to_end(&mut body).is_err() {
                    return;
                }
            }
            Ok(http1::Framing::Length(n)) => {
                let mut body = Vec::new();
                let _ = (&mut r).take(n.min(1 << 20)).read_to_end(&mut body);
            }
            Ok(http1::Framing::None) => {}
            Err(_) => return,
        }
    }
}

/// A client's WebSocket bytes: frames decoded by the server side of the protocol, each text
/// message parsed as a client frame.
pub fn ws_frames(data: &[u8]) {
    use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
    let config = WebSocketConfig::default()
        .max_message_size(Some(crate::webchat::ws::MESSAGE_BYTES_MAX))
        .max_frame_size(Some(crate::webchat::ws::MESSAGE_BYTES_MAX));
    let stream = ReadOnly(std::io::Cursor::new(data.to_vec()));
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    for _ in 0..10_000 {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let _ = crate::webchat::ws::parse_client_frame(t.as_str());
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// A stream that can be read; writes (pongs, closes) go nowhere.
struct ReadOnly(std::io::Cursor<Vec<u8>>);

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Write for ReadOnly {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The model's output: the `<message>`/`<internal>` parser, and the stream filter fed the same
/// text in pieces whose sizes come from the first byte.
pub fn model_output(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let is_origin = |n: &str| n == "origin";
    let _ = crate::agent::output::parse(&text, &is_origin);
    let mut filter = crate::agent::output::StreamFilter::new(|n: &str| n == "origin");
    let step = usize::from(step % 16) + 1;
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(step) {
        let _ = filter.push(&piece.iter().collect::<String>());
    }
    let _ = filter.finish();
}

/// An Anthropic Messages event stream as the runner reads it from the proxy.
pub fn anthropic_stream(data: &[u8]) {
    let _ =
        crate::agent::provider::anthropic::read_stream(BufReader::new(data), &mut |_| {}, &Cancel::default());
}

/// An OpenAI Chat Completions stream as the runner reads it from the proxy.
pub fn openai_stream(data: &[u8]) {
    let _ =
        crate::agent::provider::openai::read_stream(BufReader::new(data), &mut |_| {}, &Cancel::default());
}

/// A cron expression as the scheduling tool checks it.
pub fn cron(data: &[u8]) {
    if let Ok(cron) = crate::cron::Cron::parse(&String::from_utf8_lossy(data)) {
        // The next run from a fixed instant in a zone with daylight saving time.
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").expect("bundled zone");
        let _ = cron.next_after(jiff::Timestamp::UNIX_EPOCH, &tz);
    }
}

/// An engage pattern and a message (split at the first NUL), compiled and matched with the
/// router's limits.
pub fn engage_pattern(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, message) = text.split_once('\0').unwrap_or((&text, "hello"));
    if let Ok(re) = crate::host::router::compile_pattern(pattern) {
        let _ = crate::host::router::pattern_engages(&re, message);
    }
}

/// An upload's form: the boundary from the first line (as a Content-Type would give it), then
/// every part read the way the upload endpoint reads them, with small limits.
pub fn multipart_form(data: &[u8]) {
    use crate::webchat::multipart::{Multipart, boundary};
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let ct = format!("multipart/form-data; boundary={}", String::from_utf8_lossy(&data[..split]));
    let Ok(b) = boundary(&ct) else { return };
    let body = data.get(split + 1..).unwrap_or_default();
    let mut form = Multipart::new(body, &b);
    let mut parts = 0;
    while let Ok(Some(_)) = form.next_part() {
        parts += 1;
        if parts > 100 || form.copy_part(&mut std::io::sink(), 1 << 16).is_err() {
            return;
        }
    }
}
