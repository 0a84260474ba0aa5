//! The spine end to end: a message sent over the WebSocket reaches an agent in a real container
//! and the reply comes back.

use serde_json::json;

use crate::support::*;

#[test]
fn first_run_has_an_assistant_with_a_room() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let (status, rooms) = host.get("/api/rooms");
    assert_eq!(status, 200);
    let room = rooms.as_array().unwrap().iter().find(|r| r["id"] == "assistant").expect("assistant room");
    assert_eq!(room["agents"][0]["name"], "Assistant");
    let (_, check) = host.get("/api/auth/check");
    assert_eq!(check["owner"], true, "{check}");
    assert_eq!(check["modelConfigured"], false, "{check}");
    assert_eq!(check["provider"], "mock");
    assert!(dirs.groups().join("assistant/AGENT.md").is_file());
}

#[test]
fn a_created_agent_answers_over_the_websocket() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let room = host.agent_with_room("Tester");
    assert_eq!(room, "tester");
    let mut ws = host.ws();
    assert_eq!(ws.ready["user"]["id"], "webchat:local-owner");
    assert!(ws.ready["rooms"].as_array().unwrap().iter().any(|r| r["id"] == "tester"));
    assert!(ws.join(&room, None).is_empty());

    let client_id = ws.say(&room, "hello container");
    let ack = ws.wait(|f| f["type"] == "ack", WARM);
    assert_eq!(ack["client_id"], client_id.as_str());
    assert_eq!(ack["message"]["seq"], 1);
    assert_eq!(ack["message"]["sender_type"], "user");
    let reply = ws.agent_reply(&room, "echo: hello container", COLD);
    assert_eq!(reply["seq"], 2);
    assert_eq!(reply["sender"], "Tester");
    assert_eq!(reply["html"], "<p>echo: hello container</p>\n");

    // Warm: the same container answers again.
    ws.say(&room, "second");
    ws.agent_reply(&room, "echo: second", WARM);
    assert_eq!(containers_of(&dirs.install()).len(), 1);

    // The room's history over HTTP has all four messages in order.
    let (status, body) = host.get(&format!("/api/rooms/{room}/messages"));
    assert_eq!(status, 200);
    let msgs = body["messages"].as_array().unwrap().clone();
    assert_eq!(texts(&msgs), ["hello container", "echo: hello container", "second", "echo: second"]);
    assert_eq!(seqs(&msgs), [1, 2, 3, 4]);
}

#[test]
fn sends_are_idempotent_by_client_id() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    let frame = json!({ "type": "send", "room_id": "assistant", "client_id": "same-id", "text": "once" });
    ws.send(frame.clone());
    let first = ws.wait(|f| f["type"] == "ack", WARM);
    ws.agent_reply("assistant", "echo: once", COLD);
    ws.send(frame);
    let second = ws.wait(|f| f["type"] == "ack", WARM);
    assert_eq!(first["message"]["id"], second["message"]["id"]);
    // The same id over HTTP also returns the stored message, not a new one.
    let (status, body) =
        host.post("/api/rooms/assistant/messages", json!({ "text": "different", "client_id": "same-id" }));
    assert_eq!(status, 200);
    assert_eq!(body["message"]["id"], first["message"]["id"]);
    let (_, all) = host.get("/api/rooms/assistant/messages");
    assert_eq!(texts(all["messages"].as_array().unwrap()), ["once", "echo: once"]);
}

#[test]
fn a_burst_of_messages_starts_one_container_and_every_message_is_answered() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let room = host.agent_with_room("Burst");
    let mut ws = host.ws();
    ws.join(&room, None);
    for i in 0..6 {
        ws.say(&room, &format!("burst {i}"));
    }
    // Replies may batch several messages; wait until every one has been echoed.
    let mut echoed = String::new();
    while (0..6).any(|i| !echoed.contains(&format!("echo: burst {i}"))) {
        let reply = ws.agent_reply(&room, "echo: burst", COLD);
        echoed.push_str(reply["text"].as_str().unwrap());
        echoed.push('\n');
    }
    let filter = format!("label=pincer.install={}", dirs.install());
    let all = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 1, "exactly one container was started");
}

#[test]
fn messages_over_http_reach_websocket_clients_live() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    let (status, body) =
        host.post("/api/rooms/assistant/messages", json!({ "text": "via http", "client_id": "h1" }));
    assert_eq!(status, 200, "{body}");
    let live = ws.wait(|f| f["type"] == "message" && f["message"]["text"] == "via http", WARM);
    assert_eq!(live["message"]["id"], body["message"]["id"]);
    ws.agent_reply("assistant", "echo: via http", COLD);
}
