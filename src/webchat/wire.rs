//! What every endpoint speaks: the request ([`Req`]) and response ([`Resp`]) of the HTTP API,
//! the caller ([`User`]), errors ([`ApiError`]: a status and a message that says what to fix),
//! and JSON bodies ([`parse_body`]). The endpoint modules (`api`, `people`, `tasks`, `trust`,
//! `files`) and the transports (`http`, `ws`) build on it; it depends on none of them.

use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Peer;

/// Largest JSON request body.
pub const JSON_BODY_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: Peer,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Served from this file instead of `body` (streamed, not read into memory).
    pub file: Option<std::path::PathBuf>,
}

impl Resp {
    pub fn json(status: u16, value: &Value) -> Resp {
        Resp {
            status,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Cache-Control".into(), "no-store".into()),
            ],
            body: serde_json::to_vec(value).expect("JSON values serialise"),
            file: None,
        }
    }

    pub fn error(status: u16, message: &str) -> Resp {
        Resp::json(status, &json!({ "error": message }))
    }
}

/// An API failure: status and a message for the caller.
#[derive(Debug)]
pub struct ApiError(pub u16, pub String);

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(400, msg.into())
    }
    pub fn internal(e: anyhow::Error) -> ApiError {
        if crate::db::is_disk_full(&e) {
            log::error!("the disk is full: {e:#}");
            return ApiError(
                507,
                "the disk holding pincer's data is full: nothing was stored; free some space and send again"
                    .into(),
            );
        }
        log::error!("internal error: {e:#}");
        ApiError(500, "internal error; the host log has the details".into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> ApiError {
        ApiError::internal(e.into())
    }
}

pub type ApiResult = Result<Resp, ApiError>;

/// The caller, resolved and registered.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub display_name: String,
    pub owner: bool,
    /// Owner or global admin.
    pub admin: bool,
    /// How the caller was identified: `session`, `bearer`, `proxy`, `tailscale`, `loopback`.
    pub via: &'static str,
    /// The signed-in session, when identified by its cookie.
    pub session: Option<String>,
}

/// Parses a JSON body into `T`, with errors that say what was expected.
pub fn parse_body<T: for<'de> Deserialize<'de>>(req: &Req, shape: &str) -> Result<T, ApiError> {
    if req.body.len() > JSON_BODY_BYTES_MAX {
        return Err(ApiError(413, format!("request body is larger than {JSON_BODY_BYTES_MAX} bytes")));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad(format!("invalid JSON body ({e}); expected {shape}")))
}

/// Largest message text.
pub const TEXT_BYTES_MAX: usize = 64 * 1024;
/// Longest client-chosen message id.
pub const CLIENT_ID_CHARS_MAX: usize = 128;

/// Checks a client-chosen message id.
pub fn validate_client_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.chars().count() <= CLIENT_ID_CHARS_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !ok {
        return Err(ApiError::bad(format!(
            "invalid client_id: use 1-{CLIENT_ID_CHARS_MAX} characters from A-Z a-z 0-9 - _ . : (a UUID works)"
        )));
    }
    Ok(())
}
