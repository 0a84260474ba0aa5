//! Notifications when an agent answers and the person is not looking: Web Push to each of
//! their devices (aes128gcm, RFC 8291; VAPID, RFC 8292) and, for devices where Web Push cannot
//! work (no HTTPS, iOS without the app installed), the same event to an ntfy-style webhook
//! (`PINCER_NOTIFY_URL`) for the people who chose it.
//!
//! It runs on its own thread fed by a bounded queue: a slow or failing push service never
//! delays chat, and a full queue is logged, not silent. A gone subscription (404, 410) is
//! deleted; 429 and 5xx are retried with backoff (honouring `Retry-After`). Endpoints must be
//! https on a known push service, or an origin the operator allowed (`WEBCHAT_PUSH_ALLOW`).
//! Bodies are redacted previews; VAPID keys are made on first start (`data/push/`, mode 0600)
//! unless given in the environment.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use p256::ecdsa::signature::Signer;
use serde_json::json;

use crate::db::central::{Room, RoomMessage};
use crate::db::{self, Kind, people};
use crate::ids::now_ms;

/// Notifications waiting to be sent.
pub const QUEUE_MAX: usize = 256;
/// One push or webhook request.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of one push (429, 5xx, network errors).
pub const TRIES_MAX: u32 = 3;
/// Longest wait a push service may ask for before a retry.
pub const RETRY_WAIT_MAX: Duration = Duration::from_secs(30);
/// Push subscriptions kept per person (the newest; a new one beyond this replaces the oldest).
pub const DEVICES_MAX: usize = 20;
/// The longest subscription endpoint accepted (the browsers' are a few hundred bytes).
pub const ENDPOINT_MAX: usize = 2048;
/// How long a push service keeps a notification for an offline device.
pub const TTL_S: u64 = 3600;
/// Characters of a message shown in a notification.
pub const PREVIEW_CHARS: usize = 160;
/// Push services the browsers use (https only).
const PUSH_HOSTS: &[&str] = &[
    ".push.apple.com",
    "fcm.googleapis.com",
    "android.googleapis.com",
    "updates.push.services.mozilla.com",
    ".notify.windows.com",
];

/// The server's VAPID identity.
pub struct Vapid {
    key: p256::ecdsa::SigningKey,
    /// Uncompressed public key, base64url: what the browser's `applicationServerKey` takes.
    pub public: String,
    subject: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')).ok()
}

impl Vapid {
    /// From the environment if set there, else from (or newly into) `data/push/`.
    pub fn load(
        data_dir: &Path,
        private: Option<&str>,
        public: Option<&str>,
        subject: Option<&str>,
    ) -> anyhow::Result<Vapid> {
        let subject = subject.unwrap_or("mailto:pincer@localhost").to_string();
        if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
            bail!("invalid WEBCHAT_VAPID_SUBJECT={subject:?}: use a mailto: address or an https: URL");
        }
        let secret = match private {
            Some(p) => unb64(p).filter(|b| b.len() == 32).context(
                "invalid WEBCHAT_VAPID_PRIVATE_KEY: expected 32 bytes in base64url (the raw P-256 private key)",
            )?,
            None => {
                let dir = data_dir.join("push");
                let file = dir.join("vapid-private.key");
                match std::fs::read_to_string(&file) {
                    Ok(text) => unb64(&text).filter(|b| b.len() == 32).with_context(|| {
                        format!("{} is damaged: delete it to make new keys (browsers then subscribe again)", file.display())
                    })?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                        let bytes = crate::ids::random_bytes::<32>();
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o600)
                            .open(&file)
                            .with_context(|| format!("writing {}", file.display()))?;
                        f.write_all(b64(&bytes).as_bytes())?;
                        f.sync_all()?;
                        log::info!("created Web Push keys in {}", dir.display());
                        bytes.to_vec()
                    }
                    Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
                }
            }
        };
        let key = p256::ecdsa::SigningKey::from_slice(&secret)
            .context("the VAPID private key is not a P-256 key")?;
        let derived = b64(key.verifying_key().to_encoded_point(false).as_bytes());
        if let Some(p) = public
            && p.trim().trim_end_matches('=') != derived
        {
            bail!(
                "WEBCHAT_VAPID_PUBLIC_KEY does not belong to WEBCHAT_VAPID_PRIVATE_KEY: set both from one key pair, or neither"
            );
        }
        Ok(Vapid { key, public: derived, subject })
    }

    /// The keys `load` would use, without making any: `None` when they would be made on first
    /// start (for `pincer doctor`).
    pub fn peek(
        data_dir: &Path,
        private: Option<&str>,
        public: Option<&str>,
        subject: Option<&str>,
    ) -> anyhow::Result<Option<Vapid>> {
        if private.is_none() && !data_dir.join("push").join("vapid-private.key").exists() {
            return Ok(None);
        }
        Vapid::load(data_dir, private, public, subject).map(Some)
    }

    /// `Authorization: vapid t=<JWT>, k=<public key>` for a push service's origin.
    pub fn authorization(&self, audience: &str, now_s: i64) -> String {
        let header = b64(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = b64(json!({ "aud": audience, "exp": now_s + 12 * 3600, "sub": self.subject })
            .to_string()
            .as_bytes());
        let signing_input = format!("{header}.{claims}");
        let sig: p256::ecdsa::Signature = self.key.sign(signing_input.as_bytes());
        format!("vapid t={signing_input}.{}, k={}", b64(&sig.to_bytes()), self.public)
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains('@'))
        .then(|| format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

/// Checks a subscription endpoint: https on a browser push service, or an allowed origin.
pub fn endpoint_allowed(endpoint: &str, allow: &[String]) -> Result<(), String> {
    if endpoint.len() > ENDPOINT_MAX {
        return Err(format!("the endpoint is longer than {ENDPOINT_MAX} bytes"));
    }
    let Some(o) = origin(endpoint) else { return Err("the endpoint is not a URL".into()) };
    if allow.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(&o)) {
        return Ok(());
    }
    let Some(host) = o.strip_prefix("https://") else {
        return Err("push endpoints must be https (or an origin listed in WEBCHAT_PUSH_ALLOW)".into());
    };
    let host = host.split(':').next().unwrap_or("");
    if PUSH_HOSTS.iter().any(|h| if h.starts_with('.') { host.ends_with(h) } else { host == *h }) {
        Ok(())
    } else {
        Err(format!("{host} is not a known push service; the operator can allow it with WEBCHAT_PUSH_ALLOW"))
    }
}

/// One thing to notify about.
enum Job {
    /// `looking`: who had the room in view when the message was stored (decided then, not when
    /// the queue gets to it, by which time they may have looked away).
    Message { room: Room, message: RoomMessage, looking: std::collections::HashSet<String> },
}

/// The notifier: its queue and thread.
pub struct Notifier {
    tx: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Notifications sent per person since they last looked (the app badge).
    unread: Arc<Mutex<HashMap<String, u32>>>,
    pub vapid: Arc<Vapid>,
    pub webhook: Option<String>,
}

struct Worker {
    central_path: std::path::PathBuf,
    vapid: Arc<Vapid>,
    webhook: Option<String>,
    http: ureq::Agent,
    unread: Arc<Mutex<HashMap<String, u32>>>,
    /// The central DB, opened at the first message and kept (opening it for every message
    /// was a large share of the host's CPU per message); dropped after an error.
    conn: Option<db::Connection>,
}

impl Notifier {
    pub fn start(central_path: &Path, vapid: Vapid, webhook: Option<String>) -> anyhow::Result<Notifier> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_MAX);
        let vapid = Arc::new(vapid);
        let unread = Arc::new(Mutex::new(HashMap::new()));
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(SEND_TIMEOUT))
            .max_redirects(0)
            .build()
            .into();
        let worker = Worker {
            central_path: central_path.to_path_buf(),
            vapid: vapid.clone(),
            webhook: webhook.clone(),
            http,
            unread: unread.clone(),
            conn: None,
        };
        let thread = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || worker.run(rx))
            .context("starting the notification thread")?;
        Ok(Notifier { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), unread, vapid, webhook })
    }

    /// An agent's message was stored: notify whoever is not looking (queued, never blocking).
    /// `looking`: who had the room in view when the message was stored ([`super::hub::Hub::looking_at`],
    /// taken before the message went out: after that, a page may react to it by looking away).
    pub fn message(&self, room: &Room, message: &RoomMessage, looking: std::collections::HashSet<String>) {
        let job = Job::Message { room: room.clone(), message: message.clone(), looking };
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else { return };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                log::warn!(
                    "the notification queue is full ({QUEUE_MAX}); no notification for message {}",
                    message.id
                )
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The person looked: the badge count starts over.
    pub fn seen(&self, user_id: &str) {
        self.unread.lock().unwrap_or_else(|e| e.into_inner()).remove(user_id);
    }

    /// Sends what is queued, then ends the thread.
    pub fn stop(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Worker {
    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            match job {
                Job::Message { room, message, looking } => {
                    if let Err(e) = self.message(&room, &message, &looking) {
                        log::warn!("notifying about message {}: {e:#}", message.id);
                        self.conn = None;
                    }
                }
            }
        }
    }

    fn message(
        &mut self,
        room: &Room,
        message: &RoomMessage,
        looking: &std::collections::HashSet<String>,
    ) -> anyhow::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(db::open(&self.central_path, Kind::Central)?);
        }
        let conn = self.conn.as_ref().expect("opened above");
        let title = format!("{} · {}", message.sender, room.name);
        let text = super::redact::redact(&message.text);
        let body: String =
            text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(PREVIEW_CHARS).collect();
        let away = |user: &str| -> anyhow::Result<bool> {
            let owner = crate::db::central::is_owner(conn, user)?;
            let may = owner
                || crate::db::central::wirings_of_room(conn, &room.id)?.iter().try_fold(
                    false,
                    |acc, w| {
                        Ok::<_, rusqlite::Error>(
                            acc || crate::db::central::can_access_agent(conn, user, &w.agent_id)?,
                        )
                    },
                )?;
            Ok(may && !looking.contains(user))
        };
        let mut by_user: HashMap<String, Vec<people::PushSub>> = HashMap::new();
        for s in people::push_subs(conn)? {
            by_user.entry(s.user_id.clone()).or_default().push(s);
        }
        for (user, subs) in by_user {
            if !away(&user)? {
                continue;
            }
            let unread = {
                let mut u = self.unread.lock().unwrap_or_else(|e| e.into_inner());
                let n = u.entry(user.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let payload = json!({
                "title": title, "body": body, "room_id": room.id, "message_id": message.id,
                "tag": format!("room-{}", room.id), "unread": unread,
            })
            .to_string();
            for s in subs {
                self.push(conn, &s, &payload);
            }
        }
        if let Some(url) = &self.webhook {
            let mut wanted = false;
            for u in people::webhook_users(conn)? {
                wanted |= away(&u)?;
            }
            if wanted {
                self.webhook(url, &title, &body, &room.id);
            }
        }
        Ok(())
    }

    /// One push, retried on 429, 5xx and network errors; a gone subscription is deleted.
    fn push(&self, conn: &db::Connection, s: &people::PushSub, payload: &str) {
        let result = || -> anyhow::Result<(u16, Option<u64>)> {
            let ua_public = unb64(&s.p256dh).context("bad p256dh")?;
            let ua_public = p256::PublicKey::from_sec1_bytes(&ua_public).context("bad p256dh")?;
            let auth = unb64(&s.auth).filter(|a| a.len() == 16).context("bad auth secret")?;
            let auth = web_push_native::Auth::clone_from_slice(&auth);
            let body = web_push_native::encrypt(payload.as_bytes().to_vec(), &ua_public, &auth)
                .map_err(|e| anyhow::anyhow!("encrypting: {e}"))?;
            let audience = origin(&s.endpoint).context("bad endpoint")?;
            let resp = self
                .http
                .post(&s.endpoint)
                .header("TTL", TTL_S.to_string())
                .header("Urgency", "normal")
                .header("Content-Encoding", "aes128gcm")
                .header("Content-Type", "application/octet-stream")
                .header("Authorization", self.vapid.authorization(&audience, now_ms() / 1000))
                .send(&body[..])?;
            let retry =
                resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            Ok((resp.status().as_u16(), retry))
        };
        for attempt in 1..=TRIES_MAX {
            match result() {
                Ok((status, _)) if (200..300).contains(&status) => {
                    let _ = people::push_result(conn, &s.endpoint, true, now_ms());
                    return;
                }
                Ok((404 | 410, _)) => {
                    log::info!("push subscription of {} is gone; removed", s.user_id);
                    let _ = people::delete_push(conn, &s.endpoint, None);
                    return;
                }
                Ok((status, retry)) if status == 429 || status >= 500 => {
                    let wait = retry
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_secs(1 << attempt))
                        .min(RETRY_WAIT_MAX);
                    log::warn!("push service answered {status}; try {attempt} of {TRIES_MAX}");
                    if attempt < TRIES_MAX {
                        std::thread::sleep(wait);
                    }
                }
                Ok((status, _)) => {
                    log::warn!("push service refused a notification for {} ({status})", s.user_id);
                    break;
                }
                Err(e) => {
                    log::warn!("push to {} failed: {e:#}; try {attempt} of {TRIES_MAX}", s.user_id);
                    if attempt < TRIES_MAX {
                        std::thread::sleep(Duration::from_secs(1 << attempt));
                    }
                }
            }
        }
        let _ = people::push_result(conn, &s.endpoint, false, now_ms());
    }

    /// The event to the webhook, ntfy-style: the text as the body, the title in a header.
    fn webhook(&self, url: &str, title: &str, body: &str, room_id: &str) {
        let res = self
            .http
            .post(url)
            .header("Title", header_text(title))
            .header("Tags", "speech_balloon")
            .header("X-Pincer-Room", room_id)
            .header("Content-Type", "text/plain; charset=utf-8")
            .send(body.as_bytes());
        match res {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => log::warn!("the notification webhook answered {}", r.status()),
            Err(e) => log::warn!("the notification webhook: {e}"),
        }
    }
}

/// A header value for any text: printable ASCII as it is, anything else as an RFC 2047
/// encoded word (`=?UTF-8?B?…?=`), which ntfy and mail-style receivers decode.
fn header_text(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        text.to_string()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        format!("=?UTF-8?B?{b64}?=")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_encodes_only_what_a_header_cannot_carry() {
        assert_eq!(header_text("Plain title"), "Plain title");
        assert_eq!(header_text("A · B"), "=?UTF-8?B?QSDCtyBC?=");
        assert_eq!(header_text("line\nbreak"), "=?UTF-8?B?bGluZQpicmVhaw==?=");
    }

    #[test]
    fn endpoints_are_allowed_only_on_push_services_or_listed_origins() {
        let allow = vec!["http://127.0.0.1:9999".to_string()];
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://web.push.apple.com/QGz",
            "https://updates.push.services.mozilla.com/wpush/v2/x",
            "https://db5p.notify.windows.com/w/?token=x",
            "http://127.0.0.1:9999/push/1",
        ] {
            assert!(endpoint_allowed(ok, &allow).is_ok(), "{ok}");
        }
        for bad in [
            "http://fcm.googleapis.com/x",
            "https://evil.example/push",
            "https://fcm.googleapis.com.evil.example/x",
            "https://user@fcm.googleapis.com/x",
            "http://127.0.0.1:9998/push",
            "not a url",
        ] {
            assert!(endpoint_allowed(bad, &allow).is_err(), "{bad}");
        }
    }

    #[test]
    fn vapid_keys_are_made_once_and_sign_jwts() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Vapid::load(tmp.path(), None, None, None).unwrap();
        let b = Vapid::load(tmp.path(), None, None, None).unwrap();
        assert_eq!(a.public, b.public, "kept in the data dir");
        let file = tmp.path().join("push/vapid-private.key");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(unb64(&a.public).unwrap().len(), 65);
        let auth = a.authorization("https://fcm.googleapis.com", 1_000);
        let jwt = auth.strip_prefix("vapid t=").unwrap().split(", k=").next().unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let claims: serde_json::Value = serde_json::from_slice(&unb64(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://fcm.googleapis.com");
        assert_eq!(claims["exp"], 1_000 + 12 * 3600);
        use p256::ecdsa::signature::Verifier;
        let sig = p256::ecdsa::Signature::from_slice(&unb64(parts[2]).unwrap()).unwrap();
        a.key.verifying_key().verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();
        // From the environment: the public key must match.
        let private = std::fs::read_to_string(&file).unwrap();
        assert!(Vapid::load(tmp.path(), Some(&private), Some(&a.public), None).is_ok());
        assert!(Vapid::load(tmp.path(), Some(&private), Some("BAAA"), None).is_err());
        assert!(Vapid::load(tmp.path(), None, None, Some("ftp://x")).is_err());
    }
}
