//! Signing in and people, against the real binary: token sign-in with a session cookie, sign-out,
//! expiry, the per-address lockout, invitations (one-time, expiring, CSRF-protected), roles on
//! every owner/admin endpoint, removal closing sockets at once, the trusted-proxy identity (only
//! from listed addresses, CIDRs included), and Tailscale identities.

use serde_json::{Value, json};

use crate::support::*;

const TOKEN: &str = "access-test-token-0123456789abcdef";

fn token_host(dirs: &Dirs) -> Host {
    Host::start_with(dirs, &[("WEBCHAT_TOKEN", TOKEN)])
}

/// The `name=value` of a `Set-Cookie` header.
fn cookie_of(headers: &[(String, String)]) -> String {
    let set = headers.iter().find(|(k, _)| k == "set-cookie").map(|(_, v)| v.clone()).expect("Set-Cookie");
    set.split(';').next().unwrap().to_string()
}

fn call(
    host: &Host,
    method: &str,
    path: &str,
    body: Option<Value>,
    cookie: Option<&str>,
) -> (u16, Value, Vec<(String, String)>) {
    let mut headers = vec![("X-Webchat-CSRF", "1".to_string())];
    if let Some(c) = cookie {
        headers.push(("Cookie", c.to_string()));
    }
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = body.map(|b| b.to_string());
    let (status, head, bytes) = http_raw(host.port, method, path, body.as_deref().map(str::as_bytes), &h);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), head)
}

fn sign_in(host: &Host) -> String {
    let (status, body, head) = call(host, "POST", "/api/login", Some(json!({ "token": TOKEN })), None);
    assert_eq!(status, 200, "{body}");
    cookie_of(&head)
}

#[test]
fn token_sign_in_gives_a_session_cookie_that_sign_out_ends_at_once() {
    let dirs = Dirs::new();
    let host = token_host(&dirs);
    let (status, body, _) = call(&host, "GET", "/api/auth/check", None, None);
    assert_eq!(status, 401, "{body}");
    let (status, body, _) =
        call(&host, "POST", "/api/login", Some(json!({ "token": "wrong-token-0123456789abcdef" })), None);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("wrong token"));
    let (status, _, head) = call(&host, "POST", "/api/login", Some(json!({ "token": TOKEN })), None);
    assert_eq!(status, 200);
    let set = head.iter().find(|(k, _)| k == "set-cookie").unwrap().1.clone();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "no Secure without TLS: {set}");
    let cookie = cookie_of(&head);
    let (status, me, _) = call(&host, "GET", "/api/auth/check", None, Some(&cookie));
    assert_eq!(
        (status, me["owner"].as_bool(), me["via"].as_str()),
        (200, Some(true), Some("session")),
        "{me}"
    );
    // The cookie works for the WebSocket too.
    let mut ws = Ws::connect(host.port, &[("Cookie", cookie.as_str())]);
    assert_eq!(ws.ready["user"]["id"], "webchat:owner");
    // Signing out: the cookie stops working, and the open socket is closed.
    let (status, _, head) = call(&host, "POST", "/api/logout", None, Some(&cookie));
    assert_eq!(status, 200);
    assert!(head.iter().any(|(k, v)| k == "set-cookie" && v.contains("Max-Age=0")));
    let (status, _, _) = call(&host, "GET", "/api/auth/check", None, Some(&cookie));
    assert_eq!(status, 401);
    assert!(ws.closed_within(WARM), "the socket of the ended session was not closed");
    assert!(Ws::try_connect(host.port, &[("Cookie", cookie.as_str())]).is_err());
    // The token leaks into nothing the host logged.
    assert!(!host.log_tail().contains(TOKEN));
}

#[test]
fn failed_sign_ins_lock_out_one_address_only() {
    let dirs = Dirs::new();
    let host = token_host(&dirs);
    let attempt = |source: &str, token: &str| {
        let body = json!({ "token": token }).to_string();
        let req = format!(
            "POST /api/login HTTP/1.1\r\nHost: x\r\nX-Webchat-CSRF: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = connect_from(source, host.port);
        raw_exchange(&mut s, req.as_bytes(), WARM).expect("an answer")
    };
    for _ in 0..5 {
        assert_eq!(attempt("127.0.0.2", "nope").0, 401);
    }
    assert_eq!(attempt("127.0.0.2", "nope").0, 401, "the sixth failure locks the address");
    let (status, head) = attempt("127.0.0.2", TOKEN);
    assert_eq!(status, 429, "locked out even with the right token");
    assert!(head.field("retry-after").is_some());
    assert_eq!(attempt("127.0.0.3", TOKEN).0, 200, "other addresses are not affected");
}

#[test]
fn an_expired_session_stops_working() {
    let dirs = Dirs::new();
    let host = token_host(&dirs);
    let cookie = sign_in(&host);
    let conn = pincer::db::open(&dirs.data().join("pincer.db"), pincer::db::Kind::Central).unwrap();
    conn.execute("UPDATE auth_sessions SET expires_at = 1", []).unwrap();
    let (status, _, _) = call(&host, "GET", "/api/auth/check", None, Some(&cookie));
    assert_eq!(status, 401);
}

#[test]
fn invitations_are_one_time_and_give_only_what_they_say() {
    let dirs = Dirs::new();
    let host = token_host(&dirs);
    let owner = sign_in(&host);
    let (_, agents, _) = call(&host, "GET", "/api/agents", None, Some(&owner));
    let assistant = agents[0]["id"].as_str().unwrap().to_string();
    // A second agent the invitee gets no access to.
    let (status, other, _) = call(
        &host,
        "POST",
        "/api/agents",
        Some(json!({ "name": "Private", "withRoom": true })),
        Some(&owner),
    );
    assert_eq!(status, 201, "{other}");
    let (status, created, _) = call(
        &host,
        "POST",
        "/api/invites",
        Some(json!({ "name": "Sam", "role": "member", "agents": [assistant] })),
        Some(&owner),
    );
    assert_eq!(status, 201, "{created}");
    let url = created["invite"]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/invite/"), "{url}");
    assert!(created["invite"]["qr_svg"].as_str().unwrap().contains("<svg"));
    let path = url.split_once(&format!(":{}", host.port)).unwrap().1.to_string();
    let secret = path.trim_start_matches("/invite/").to_string();
    // Looking consumes nothing (link previews must not burn it).
    for _ in 0..2 {
        let (status, _, head) = call(&host, "GET", &path, None, None);
        assert_eq!(status, 200);
        assert!(head.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/html")));
        let (status, preview, _) = call(&host, "GET", &format!("/api/invite/{secret}"), None, None);
        assert_eq!((status, preview["name"].as_str()), (200, Some("Sam")), "{preview}");
    }
    // Accepting needs the CSRF header, as the page sends it.
    let (status, _, head) = http_raw(host.port, "POST", &path, None, &[]);
    assert_eq!(status, 403, "{head:?}");
    let (status, joined, head) = call(&host, "POST", &path, None, None);
    assert_eq!(status, 200, "{joined}");
    let sam = cookie_of(&head);
    let (status, again, _) = call(&host, "POST", &path, None, None);
    assert_eq!(status, 410, "one-time: {again}");
    // Sam sees the room of the agent he was given, not the other one.
    let (_, rooms, _) = call(&host, "GET", "/api/rooms", None, Some(&sam));
    let ids: Vec<&str> = rooms.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["assistant"], "{rooms}");
    let (status, _, _) = call(&host, "GET", "/api/rooms/private/messages", None, Some(&sam));
    assert_eq!(status, 404);
    let mut ws = Ws::connect(host.port, &[("Cookie", sam.as_str())]);
    assert_eq!(ws.ready["user"]["displayName"], "Sam");
    ws.join("assistant", None);
    ws.say("assistant", "hi from Sam");
    ws.agent_reply("assistant", "echo: hi from Sam", COLD);
    // A member may not do what owners and admins do.
    for (method, p, body) in [
        ("POST", "/api/agents", json!({ "name": "Mine" })),
        ("POST", "/api/invites", json!({ "name": "Eve", "role": "member" })),
        ("GET", "/api/users", Value::Null),
        ("GET", "/api/invites", Value::Null),
        ("POST", "/api/users/webchat:owner/revoke", json!({ "role": "owner" })),
        ("DELETE", "/api/users/webchat:owner", Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (status, resp, _) = call(&host, method, p, body, Some(&sam));
        assert_eq!(status, 403, "{method} {p}: {resp}");
    }
    // An expired invitation is refused with a reason.
    let (_, late, _) =
        call(&host, "POST", "/api/invites", Some(json!({ "name": "Late", "role": "member" })), Some(&owner));
    let late_path =
        late["invite"]["url"].as_str().unwrap().split_once(&format!(":{}", host.port)).unwrap().1.to_string();
    let conn = pincer::db::open(&dirs.data().join("pincer.db"), pincer::db::Kind::Central).unwrap();
    conn.execute("UPDATE invites SET expires_at = 1 WHERE name = 'Late'", []).unwrap();
    let (status, resp, _) = call(&host, "POST", &late_path, None, None);
    assert_eq!(status, 410, "{resp}");
    assert!(resp["error"].as_str().unwrap().contains("expired"));
    let (status, _, _) = call(&host, "POST", "/invite/not-a-real-secret", None, None);
    assert_eq!(status, 404);
    let _ = other;
}

#[test]
fn roles_are_checked_on_every_owner_and_admin_endpoint() {
    let dirs = Dirs::new();
    let host = token_host(&dirs);
    let owner = sign_in(&host);
    let invite = |role: &str, name: &str| {
        let (status, inv, _) =
            call(&host, "POST", "/api/invites", Some(json!({ "name": name, "role": role })), Some(&owner));
        assert_eq!(status, 201, "{inv}");
        let path = inv["invite"]["url"]
            .as_str()
            .unwrap()
            .split_once(&format!(":{}", host.port))
            .unwrap()
            .1
            .to_string();
        let (status, joined, head) = call(&host, "POST", &path, None, None);
        assert_eq!(status, 200, "{joined}");
        (joined["userId"].as_str().unwrap().to_string(), cookie_of(&head))
    };
    let (admin_id, admin) = invite("admin", "Ada");
    let (member_id, member) = invite("member", "Max");
    // Names are unique, ignoring case and spacing.
    let (status, resp, _) =
        call(&host, "POST", "/api/invites", Some(json!({ "name": "ADA", "role": "member" })), Some(&owner));
    assert_eq!(status, 409, "{resp}");
    // An admin sees people and invites members, but not admins.
    let (status, users, _) = call(&host, "GET", "/api/users", None, Some(&admin));
    assert_eq!(status, 200);
    let ada = users.as_array().unwrap().iter().find(|u| u["id"] == admin_id.as_str()).unwrap();
    assert_eq!(ada["roles"], json!(["admin"]));
    assert_eq!(ada["sessions"].as_array().unwrap().len(), 1);
    let (status, _, _) =
        call(&host, "POST", "/api/invites", Some(json!({ "name": "Mo", "role": "member" })), Some(&admin));
    assert_eq!(status, 201);
    let (status, _, _) =
        call(&host, "POST", "/api/invites", Some(json!({ "name": "Al", "role": "admin" })), Some(&admin));
    assert_eq!(status, 403);
    let (status, _, _) = call(
        &host,
        "POST",
        &format!("/api/users/{member_id}/grant"),
        Some(json!({ "role": "admin" })),
        Some(&admin),
    );
    assert_eq!(status, 403, "only the owner grants admin");
    let (status, _, _) = call(&host, "DELETE", &format!("/api/users/{member_id}"), None, Some(&admin));
    assert_eq!(status, 403, "only the owner removes people");
    // The owner grants and revokes; the member's socket closes when access shrinks.
    let (status, _, _) = call(
        &host,
        "POST",
        &format!("/api/users/{member_id}/grant"),
        Some(json!({ "role": "admin" })),
        Some(&owner),
    );
    assert_eq!(status, 200);
    let (_, me, _) = call(&host, "GET", "/api/auth/check", None, Some(&member));
    assert_eq!(me["admin"], true);
    let mut ws = Ws::connect(host.port, &[("Cookie", member.as_str())]);
    let (status, _, _) = call(
        &host,
        "POST",
        &format!("/api/users/{member_id}/revoke"),
        Some(json!({ "role": "admin" })),
        Some(&owner),
    );
    assert_eq!(status, 200);
    assert!(ws.closed_within(WARM), "the socket was not closed when access shrank");
    // The last owner cannot be demoted or removed.
    let (status, _, _) = call(
        &host,
        "POST",
        "/api/users/webchat:owner/revoke",
        Some(json!({ "role": "owner" })),
        Some(&owner),
    );
    assert_eq!(status, 409);
    // Removing a person signs every device out at once.
    let mut ws = Ws::connect(host.port, &[("Cookie", admin.as_str())]);
    let (status, _, _) = call(&host, "DELETE", &format!("/api/users/{admin_id}"), None, Some(&owner));
    assert_eq!(status, 200);
    let (status, _, _) = call(&host, "GET", "/api/auth/check", None, Some(&admin));
    assert_eq!(status, 401);
    assert!(ws.closed_within(WARM), "the removed person's socket was not closed");
    // Bad requests say what is wrong.
    for (body, want) in [
        (json!({ "name": "X", "role": "boss" }), 422),
        (json!({ "name": "", "role": "member" }), 422),
        (json!({ "name": "Y", "role": "member", "agents": ["ag-nope"] }), 422),
        (json!({ "name": "Z", "role": "member", "expiresInHours": 100000 }), 422),
        (json!({ "nom": "Z" }), 400),
    ] {
        let (status, resp, _) = call(&host, "POST", "/api/invites", Some(body.clone()), Some(&owner));
        assert_eq!(status, want, "{body}: {resp}");
        assert!(resp["error"].is_string());
    }
}

#[test]
fn trusted_proxy_identities_come_only_from_listed_addresses() {
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("WEBCHAT_TRUSTED_PROXY_IPS", "127.0.0.2, 127.0.0.8/30")]);
    let check = |source: &str, user: Option<&str>| {
        let mut s = connect_from(source, host.port);
        let extra = user
            .map(|u| format!("X-Forwarded-User: {u}\r\nX-Forwarded-For: 203.0.113.7\r\n"))
            .unwrap_or_default();
        let req =
            format!("GET /api/auth/check HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (out[9..12].parse::<u16>().unwrap(), serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    use std::io::Write;
    let (status, me) = check("127.0.0.2", Some("Alice@Example.org"));
    assert_eq!((status, me["userId"].as_str()), (200, Some("webchat:alice@example.org")), "{me}");
    assert_eq!(check("127.0.0.9", Some("bob")).0, 200, "inside the CIDR");
    assert_eq!(check("127.0.0.3", Some("mallory")).0, 401, "not a proxy: the header is ignored");
    assert_eq!(check("127.0.0.2", None).0, 401, "a proxy without the identity header");
    assert_eq!(check("127.0.0.1", None).0, 401, "no loopback auto-login once a method is set");
    // The first identity became the owner; the second is not.
    let (_, me) = check("127.0.0.9", Some("bob"));
    assert_eq!(me["owner"], false);
}

#[test]
fn tailscale_identities_from_whois_and_from_tailscale_serve() {
    let dirs = Dirs::new();
    // A fake `tailscale` printing the real `whois --json` shape for the address asked about.
    let fake = dirs.root().join("tailscale");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = whois ] && [ \"$2\" = --json ] || exit 2\n\
         echo \"{\\\"Node\\\":{\\\"Name\\\":\\\"phone.tail.ts.net.\\\",\\\"Addresses\\\":[\\\"$3/32\\\"],\\\"Hostinfo\\\":{\\\"Hostname\\\":\\\"phone\\\"}},\\\"UserProfile\\\":{\\\"ID\\\":7,\\\"LoginName\\\":\\\"ann@github\\\",\\\"DisplayName\\\":\\\"Ann\\\"}}\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A tailnet address on this machine, so a client can come from one.
    let addr = TailnetAddr::add("100.100.7.7");
    let host = Host::start_with(
        &dirs,
        &[
            ("WEBCHAT_TAILSCALE", "true"),
            ("WEBCHAT_TAILSCALE_BIN", fake.to_str().unwrap()),
            ("WEBCHAT_HOST", "0.0.0.0"),
        ],
    );
    let mut s = connect_from(&addr.0, host.port);
    use std::io::{Read, Write};
    s.write_all(b"GET /api/auth/check HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("webchat:tailscale:ann@github") && out.contains("\"Ann\""), "{out}");
    // `tailscale serve` forwards from the loopback with the user in headers.
    let (status, me) = http(
        host.port,
        "GET",
        "/api/auth/check",
        None,
        &[("Tailscale-User-Login", "bo@example.com"), ("Tailscale-User-Name", "Bo")],
    );
    assert_eq!((status, me["userId"].as_str()), (200, Some("webchat:tailscale:bo@example.com")), "{me}");
    // From elsewhere on the LAN, the header means nothing.
    let lan = TailnetAddr::add("192.0.2.10");
    let mut s = connect_from(&lan.0, host.port);
    s.write_all(b"GET /api/auth/check HTTP/1.1\r\nHost: h\r\nTailscale-User-Login: eve@x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
}

/// An address added to the loopback interface for the test's life.
struct TailnetAddr(String);

impl TailnetAddr {
    fn add(ip: &str) -> TailnetAddr {
        let out = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || err.contains("File exists"), "adding {ip} to lo (needs root): {err}");
        TailnetAddr(ip.to_string())
    }
}

impl Drop for TailnetAddr {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}
