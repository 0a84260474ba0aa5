//! Who a room's agents answer (`unknown_sender_policy`), end to end with real containers and
//! identities from a trusted proxy header (Alice, the first, is the owner): a strict room is
//! invisible to people without access; a room that asks shows a card, holds the person's message
//! and passes it on once the owner lets them in; a public room answers everyone. `/clear` is
//! only for the owner and the agent's admins. Every message an agent did not get is recorded.

use serde_json::{Value, json};

use crate::support::*;

fn as_user(who: &'static str) -> [(&'static str, &'static str); 2] {
    [("X-Webchat-CSRF", "1"), ("X-Forwarded-User", who)]
}

fn call(host: &Host, who: &'static str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    http(host.port, method, path, body.as_deref(), &as_user(who))
}

fn room_ids(host: &Host, who: &'static str) -> Vec<String> {
    let (status, rooms) = call(host, who, "GET", "/api/rooms", None);
    assert_eq!(status, 200, "{rooms}");
    rooms.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

fn start(dirs: &Dirs) -> Host {
    let host = Host::start_with(dirs, &[("WEBCHAT_TRUSTED_PROXY_IPS", "127.0.0.1")]);
    let (_, me) = call(&host, "alice", "GET", "/api/auth/check", None);
    assert_eq!(me["owner"], true, "the first person is the owner: {me}");
    host
}

#[test]
fn a_room_that_asks_holds_a_strangers_message_until_the_owner_lets_them_in() {
    let dirs = Dirs::new();
    let host = start(&dirs);
    // Strict (the default): Bob, with no access, does not see the room and cannot post in it.
    assert_eq!(room_ids(&host, "bob"), Vec::<String>::new());
    let (status, _) =
        call(&host, "bob", "POST", "/api/rooms/assistant/messages", Some(json!({ "text": "hi" })));
    assert_eq!(status, 404);
    let (status, _) =
        call(&host, "bob", "PUT", "/api/rooms/assistant/policy", Some(json!({ "unknownSenders": "public" })));
    assert_eq!(status, 404, "a room Bob cannot see is not his to change");
    let (status, body) = call(
        &host,
        "alice",
        "PUT",
        "/api/rooms/assistant/policy",
        Some(json!({ "unknownSenders": "sometimes" })),
    );
    assert_eq!(status, 422, "{body}");

    // The room asks: Bob sees it; what he writes is held and the owner gets a card.
    let (status, _) = call(
        &host,
        "alice",
        "PUT",
        "/api/rooms/assistant/policy",
        Some(json!({ "unknownSenders": "request_approval" })),
    );
    assert_eq!(status, 200);
    assert_eq!(room_ids(&host, "bob"), ["assistant"]);
    let mut bob = Ws::connect(host.port, &[("X-Forwarded-User", "bob")]);
    bob.join("assistant", None);
    bob.say("assistant", "hello from bob");
    let card = bob.wait(|f| f["type"] == "message" && f["message"]["card"]["type"] == "approval", COLD);
    assert_eq!(card["message"]["card"]["title"], "New person");
    let id = card["message"]["card"]["approval_id"].as_str().unwrap().to_string();
    let (_, dropped) = call(&host, "alice", "GET", "/api/rooms/assistant/dropped", None);
    assert_eq!(dropped[0]["reason"], "awaiting_approval", "{dropped}");
    assert_eq!(dropped[0]["sender_id"], "webchat:bob");
    let (status, _) = call(&host, "bob", "GET", "/api/rooms/assistant/dropped", None);
    assert_eq!(status, 403, "only the owner or an admin audits");
    let (status, _) =
        call(&host, "bob", "POST", &format!("/api/approvals/{id}"), Some(json!({ "decision": "approve" })));
    assert_eq!(status, 403, "Bob cannot let himself in");

    // Let in: the held message reaches the agent, which answers it.
    let (status, body) =
        call(&host, "alice", "POST", &format!("/api/approvals/{id}"), Some(json!({ "decision": "approve" })));
    assert_eq!(status, 200, "{body}");
    bob.agent_reply("assistant", "echo: hello from bob", COLD);
    let (_, dropped) = call(&host, "alice", "GET", "/api/rooms/assistant/dropped", None);
    assert!(dropped[0]["replayed_at"].is_i64(), "{dropped}");

    // A member may not clear the agent's conversation; the owner may.
    bob.say("assistant", "/clear");
    let notice = bob.notice("assistant", "can clear", WARM);
    assert!(notice["text"].as_str().unwrap().contains("Only the owner or an admin"), "{notice}");
    let (_, dropped) = call(&host, "alice", "GET", "/api/rooms/assistant/dropped", None);
    assert_eq!(dropped[0]["reason"], "command_not_allowed", "{dropped}");
    let mut alice = Ws::connect(host.port, &[("X-Forwarded-User", "alice")]);
    alice.join("assistant", None);
    alice.say("assistant", "/clear");
    alice.agent_reply("assistant", "Session cleared.", WARM);
}

#[test]
fn a_denied_stranger_stays_out_and_a_public_room_answers_everyone() {
    let dirs = Dirs::new();
    let host = start(&dirs);
    call(
        &host,
        "alice",
        "PUT",
        "/api/rooms/assistant/policy",
        Some(json!({ "unknownSenders": "request_approval" })),
    );
    let mut carol = Ws::connect(host.port, &[("X-Forwarded-User", "carol")]);
    carol.join("assistant", None);
    carol.say("assistant", "let me in");
    let card = carol.wait(|f| f["type"] == "message" && f["message"]["card"]["type"] == "approval", COLD);
    let id = card["message"]["card"]["approval_id"].as_str().unwrap().to_string();
    let (status, _) =
        call(&host, "alice", "POST", &format!("/api/approvals/{id}"), Some(json!({ "decision": "deny" })));
    assert_eq!(status, 200);
    carol.wait(|f| f["type"] == "update" && f["message"]["card"]["state"] == "denied", WARM);
    // Later messages are recorded as denied, without another card.
    carol.say("assistant", "please?");
    eventually("the second message recorded as denied", WARM, || {
        let (_, d) = call(&host, "alice", "GET", "/api/rooms/assistant/dropped", None);
        (d[0]["reason"] == "sender_denied").then_some(())
    });
    let (_, pending) = call(&host, "alice", "GET", "/api/approvals", None);
    assert_eq!(pending, json!([]), "no second card");

    // Public: everyone signed in is answered.
    call(&host, "alice", "PUT", "/api/rooms/assistant/policy", Some(json!({ "unknownSenders": "public" })));
    let mut dave = Ws::connect(host.port, &[("X-Forwarded-User", "dave")]);
    dave.join("assistant", None);
    dave.say("assistant", "anyone there?");
    dave.agent_reply("assistant", "echo: anyone there?", COLD);
}
