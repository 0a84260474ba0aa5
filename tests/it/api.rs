//! The HTTP API and WebSocket edges: validation, limits, auth and CSRF, static files.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn error_of(body: &Value) -> String {
    body["error"].as_str().unwrap_or_else(|| panic!("no error field in {body}")).to_string()
}

#[test]
fn health_and_static_files() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let (status, body) = host.get("/health");
    assert_eq!((status, body["ok"].clone()), (200, json!(true)));
    let (status, headers, html) = http_raw(host.port, "GET", "/", None, &[]);
    assert_eq!(status, 200);
    let header =
        |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(header("content-type").starts_with("text/html"));
    assert!(header("content-security-policy").contains("script-src 'self'"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(String::from_utf8_lossy(&html).contains("<html"));
    // Revalidation with the ETag.
    let etag = header("etag");
    let (status, _, _) = http_raw(host.port, "GET", "/", None, &[("If-None-Match", &etag)]);
    assert_eq!(status, 304);
    for path in ["/nope", "/../Cargo.toml", "/%2e%2e/Cargo.toml", "/www/app.js"] {
        assert_eq!(host.get(path).0, 404, "{path}");
    }
}

#[test]
fn state_changes_need_the_csrf_header() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let body = json!({ "name": "x" }).to_string();
    let (status, resp) = http(host.port, "POST", "/api/agents", Some(&body), &[]);
    assert_eq!(status, 403);
    assert!(error_of(&resp).contains("X-Webchat-CSRF"));
}

#[test]
fn bad_requests_get_clear_errors() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let csrf = [("X-Webchat-CSRF", "1")];
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", "/api/agents", "{not json".into(), 400, "invalid JSON body"),
        ("POST", "/api/agents", json!({ "name": "" }).to_string(), 400, "name is empty"),
        ("POST", "/api/agents", json!({ "name": "a\nb" }).to_string(), 400, "control characters"),
        ("POST", "/api/agents", json!({ "nom": "x" }).to_string(), 400, "missing field `name`"),
        ("POST", "/api/rooms/nope/messages", json!({ "text": "x" }).to_string(), 404, "no room"),
        ("POST", "/api/rooms/assistant/messages", json!({ "text": "  " }).to_string(), 400, "text is empty"),
        (
            "POST",
            "/api/rooms/assistant/messages",
            json!({ "text": "x".repeat(70_000) }).to_string(),
            413,
            "limit",
        ),
        (
            "POST",
            "/api/rooms/assistant/messages",
            json!({ "text": "x", "client_id": "has space" }).to_string(),
            400,
            "client_id",
        ),
        ("GET", "/api/rooms/assistant/messages?limit=0", String::new(), 400, "limit"),
        ("GET", "/api/rooms/assistant/messages?after=-1", String::new(), 400, "after"),
        ("DELETE", "/api/rooms", String::new(), 405, "not allowed"),
        ("GET", "/api/nothing", String::new(), 404, "no API route"),
    ];
    for (method, path, body, want_status, needle) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (status, resp) = http(host.port, method, path, body.as_deref(), &csrf);
        assert_eq!(status, want_status, "{method} {path}: {resp}");
        assert!(error_of(&resp).contains(needle), "{method} {path}: {resp}");
    }
    let huge = "x".repeat(1024 * 1024 + 10);
    let (status, resp) = http(host.port, "POST", "/api/agents", Some(&huge), &csrf);
    assert_eq!(status, 413, "{resp}");
    // Nothing was stored by any of the bad requests.
    let (_, msgs) = host.get("/api/rooms/assistant/messages");
    assert_eq!(msgs["messages"], json!([]));
    let (_, agents) = host.get("/api/agents");
    assert_eq!(agents.as_array().unwrap().len(), 1);
}

#[test]
fn loopback_auto_login_needs_a_loopback_host_and_same_origin() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    // A page on another name that resolves here (DNS rebinding) is not trusted.
    let (status, body) = http(host.port, "GET", "/api/rooms", None, &[("Host", "evil.example:3100")]);
    assert_eq!(status, 401, "{body}");
    // A WebSocket from another origin is refused.
    let err = Ws::try_connect(host.port, &[("Origin", "http://evil.example")]).err().expect("refused");
    assert!(err.contains("403"), "{err}");
    // Same origin works.
    let origin = format!("http://{}", host.base());
    Ws::connect(host.port, &[("Origin", &origin)]);
}

#[test]
fn bearer_token_mode() {
    let dirs = Dirs::new();
    let token = "0123456789abcdefghijklmnopqrstuv";
    let host = Host::start_with(&dirs, &[("WEBCHAT_TOKEN", token)]);
    assert_eq!(host.get("/api/rooms").0, 401, "loopback no longer passes once a token is set");
    let bearer = format!("Bearer {token}");
    let (status, rooms) = http(host.port, "GET", "/api/rooms", None, &[("Authorization", &bearer)]);
    assert_eq!(status, 200, "{rooms}");
    let wrong = format!("Bearer {}x", &token[..token.len() - 1]);
    assert_eq!(http(host.port, "GET", "/api/rooms", None, &[("Authorization", &wrong)]).0, 401);
    assert_eq!(host.get("/health").0, 200, "health stays public");
    assert_eq!(host.get("/").0, 200, "the page loads so it can ask for the token");
    // Browsers authenticate the socket with a subprotocol.
    let proto = format!("bearer.{token}");
    let ws = Ws::connect(host.port, &[("Sec-WebSocket-Protocol", &proto)]);
    assert_eq!(ws.ready["user"]["id"], "webchat:owner");
    assert!(Ws::try_connect(host.port, &[]).is_err());
}

#[test]
fn websocket_frames_are_validated() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut ws = host.ws();
    let err_of = |ws: &mut Ws| ws.wait(|f| f["type"] == "error", Duration::from_secs(5));
    ws.send(json!({ "type": "dance" }));
    assert_eq!(err_of(&mut ws)["code"], "bad_request");
    ws.send(json!({ "type": "join", "room_id": "nope" }));
    assert_eq!(err_of(&mut ws)["code"], "not_found");
    ws.send(json!({ "type": "send", "room_id": "assistant", "text": "no id" }));
    let e = err_of(&mut ws);
    assert_eq!(e["code"], "send_failed");
    assert!(e["message"].as_str().unwrap().contains("client_id"));
    ws.send(json!({ "type": "send", "room_id": "assistant", "client_id": "c1", "text": "" }));
    let e = err_of(&mut ws);
    assert_eq!((e["code"].clone(), e["client_id"].clone()), (json!("send_failed"), json!("c1")));
    // The socket still works after errors.
    ws.join("assistant", None);
    ws.say("assistant", "still fine");
    ws.agent_reply("assistant", "echo: still fine", COLD);
}

#[test]
fn typing_reaches_other_clients_in_the_room() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut a = host.ws();
    let mut b = host.ws();
    a.join("assistant", None);
    b.join("assistant", None);
    a.send(json!({ "type": "typing", "room_id": "assistant", "is_typing": true }));
    let t = b.wait(|f| f["type"] == "typing", WARM);
    assert_eq!(t["is_typing"], true);
    assert_eq!(t["room_id"], "assistant");
}

#[test]
fn history_pages_backwards_and_search_finds_words_in_rooms_the_caller_may_see() {
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("WEBCHAT_TRUSTED_PROXY_IPS", "127.0.0.1")]);
    let alice = [("X-Webchat-CSRF", "1"), ("X-Forwarded-User", "alice")];
    let bob = [("X-Webchat-CSRF", "1"), ("X-Forwarded-User", "bob")];
    let post = |text: &str| {
        let body = json!({ "text": text, "client_id": pincer::ids::new_id("c") }).to_string();
        let (status, m) = http(host.port, "POST", "/api/rooms/assistant/messages", Some(&body), &alice);
        assert_eq!(status, 200, "{m}");
        m["message"]["seq"].as_i64().unwrap()
    };
    let first = post("The quick brown fox");
    post("jumps over the lazy dog at the café");
    let third = post("and a secret: my password is hunter2hunter2");

    // Paging back: the messages just before a seq, ascending.
    let (status, page) = http(
        host.port,
        "GET",
        &format!("/api/rooms/assistant/messages?before={third}&limit=2"),
        None,
        &alice,
    );
    assert_eq!(status, 200, "{page}");
    let seqs: Vec<i64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert!(seqs.len() == 2 && seqs[0] < seqs[1] && seqs[1] < third && seqs[0] >= first, "{seqs:?}");
    for bad in ["before=0", "before=x", &format!("before={third}&after=1")] {
        let (status, body) =
            http(host.port, "GET", &format!("/api/rooms/assistant/messages?{bad}"), None, &alice);
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Search: words (diacritics folded, the last a prefix), excerpts, secrets masked.
    let find = |q: &str, who: &[(&str, &str)]| {
        let (status, body) = http(host.port, "GET", &format!("/api/search?q={q}"), None, who);
        assert_eq!(status, 200, "{q}: {body}");
        body["results"].as_array().unwrap().clone()
    };
    let hits = find("quick%20fo", &alice);
    assert!(hits.iter().any(|h| h["seq"] == first && h["room_id"] == "assistant"), "{hits:?}");
    assert!(hits[0]["snippet"].as_str().unwrap().contains("quick brown fox"), "{hits:?}");
    assert!(!find("cafe", &alice).is_empty(), "café is found as cafe");
    let secret = find("password", &alice);
    assert!(!secret.is_empty());
    assert!(secret.iter().all(|h| !h.to_string().contains("hunter2hunter2")), "{secret:?}");
    assert!(find("%22%20OR%20NEAR(", &alice).is_empty(), "operators are text, not syntax");
    // Bob may not see the room: nothing from it, and asking for it is a 404.
    assert!(find("fox", &bob).is_empty());
    let (status, _) = http(host.port, "GET", "/api/search?q=fox&room_id=assistant", None, &bob);
    assert_eq!(status, 404);
    let (status, body) = http(host.port, "GET", "/api/search?q=", None, &alice);
    assert_eq!(status, 400, "{body}");
}
