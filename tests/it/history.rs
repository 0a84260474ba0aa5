//! A room's history beyond reading it: a person takes back a message they sent (its row and seq
//! stay, its text and file go, every page is told, search forgets it), and the room exported as
//! Markdown and JSON downloads.

use serde_json::Value;

use crate::support::*;
use crate::uploads::{form, multipart, upload};

#[test]
fn a_sent_message_is_taken_back_and_the_room_exported() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "the zebra crossing is blue");
    ws.agent_reply("assistant", "echo: the zebra crossing is blue", COLD);
    let (status, up) = upload(
        &host,
        "assistant",
        &form(&[("file", Some("zebra.txt"), b"stripes"), ("caption", None, b"zebra file")]),
        &multipart(),
    );
    assert_eq!(status, 200, "{up}");
    ws.agent_reply("assistant", "echo: zebra file", COLD);
    let (_, page) = host.get("/api/rooms/assistant/messages");
    let msgs = page["messages"].as_array().unwrap().clone();
    let said = msgs.iter().find(|m| m["text"] == "the zebra crossing is blue").unwrap().clone();
    let reply = msgs.iter().find(|m| m["sender_type"] == "agent").unwrap().clone();
    let file_msg = &up["message"];
    let file_url = file_msg["files"][0]["url"].as_str().unwrap().to_string();

    // Export first: Markdown and JSON, as downloads.
    let (status, headers, body) = http_raw(host.port, "GET", "/api/rooms/assistant/export", None, &[]);
    assert_eq!(status, 200);
    let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(h("content-disposition").starts_with("attachment; filename=\"assistant-"), "{headers:?}");
    assert!(h("content-type").starts_with("text/markdown"));
    let md = String::from_utf8(body).unwrap();
    assert!(md.starts_with("# Assistant\n") && md.contains("the zebra crossing is blue"), "{md}");
    assert!(md.contains("**Assistant**") && md.contains(&format!("- file: [zebra.txt]({file_url})")), "{md}");
    let (status, doc) = host.get("/api/rooms/assistant/export?format=json");
    assert_eq!(status, 200);
    assert_eq!(doc["messages"].as_array().unwrap().len(), msgs.len(), "{doc}");
    assert_eq!(doc["room"]["id"], "assistant");
    assert_eq!(host.get("/api/rooms/assistant/export?format=pdf").0, 400);
    assert_eq!(host.get("/api/rooms/nowhere/export").0, 404);

    // Taking back: own messages only, once; the row and seq stay.
    let (status, _) =
        host.delete(&format!("/api/rooms/assistant/messages/{}", reply["id"].as_str().unwrap()));
    assert_eq!(status, 403, "an agent's message is not the person's to delete");
    assert_eq!(host.delete("/api/rooms/assistant/messages/msg-nope").0, 404);
    let (status, gone) =
        host.delete(&format!("/api/rooms/assistant/messages/{}", said["id"].as_str().unwrap()));
    assert_eq!(status, 200, "{gone}");
    assert_eq!(
        (gone["message"]["text"].as_str(), gone["message"]["seq"].as_i64()),
        (Some(""), said["seq"].as_i64())
    );
    assert!(gone["message"]["deleted_at"].as_i64().is_some());
    let update = ws.wait(|f| f["type"] == "update" && f["message"]["id"] == said["id"], WARM);
    assert_eq!(update["message"]["text"], "", "pages are told");
    assert_eq!(
        host.delete(&format!("/api/rooms/assistant/messages/{}", said["id"].as_str().unwrap())).0,
        409
    );
    let (_, found) = host.get("/api/search?q=zebra%20crossing");
    let hits: Vec<&Value> =
        found["results"].as_array().unwrap().iter().filter(|r| r["message"]["id"] == said["id"]).collect();
    assert!(hits.is_empty(), "search forgot it: {found}");

    let (status, _) =
        host.delete(&format!("/api/rooms/assistant/messages/{}", file_msg["id"].as_str().unwrap()));
    assert_eq!(status, 200);
    assert_eq!(http_raw(host.port, "GET", &file_url, None, &[]).0, 404, "its file left the room");
    let (_, after) = host.get("/api/rooms/assistant/messages");
    let seqs: Vec<i64> =
        after["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=msgs.len() as i64).collect::<Vec<_>>(), "seqs stay gap-free");
}

/// A pinned message: listed for the room, announced to every page in it, gone from the pins
/// when it is deleted; what does not exist or is not in the room is refused.
#[test]
fn messages_are_pinned_for_the_room() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "remember the gate code");
    let reply = ws.agent_reply("assistant", "echo: remember the gate code", COLD);
    let (_, page) = host.get("/api/rooms/assistant/messages");
    let said =
        page["messages"].as_array().unwrap().iter().find(|m| m["sender_type"] == "user").unwrap().clone();
    let pin = |id: &str, method: &str| {
        http(host.port, method, &format!("/api/rooms/assistant/pins/{id}"), None, &[("X-Webchat-CSRF", "1")])
    };
    for m in [&reply, &said] {
        let (status, body) = pin(m["id"].as_str().unwrap(), "PUT");
        assert_eq!(status, 200, "{body}");
    }
    let (status, again) = pin(said["id"].as_str().unwrap(), "PUT");
    assert_eq!((status, again["pins"].as_array().unwrap().len()), (200, 2), "pinning twice keeps one pin");
    let frame = ws.wait(|f| f["type"] == "pins" && f["pins"].as_array().is_some_and(|p| p.len() == 2), WARM);
    assert_eq!(frame["room_id"], "assistant");
    let (_, listed) = host.get("/api/rooms/assistant/pins");
    let ids: Vec<&str> =
        listed["pins"].as_array().unwrap().iter().map(|p| p["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&reply["id"].as_str().unwrap()) && ids.contains(&said["id"].as_str().unwrap()));
    let first = &listed["pins"][0];
    assert_eq!(first["message"]["id"], first["message_id"]);
    assert!(first["seq"].as_i64().unwrap() > 0 && first["pinned_by"].as_str().is_some(), "{first}");

    assert_eq!(pin("no-such-message", "PUT").0, 404);
    assert_eq!(
        http(
            host.port,
            "PUT",
            &format!("/api/rooms/elsewhere/pins/{}", said["id"].as_str().unwrap()),
            None,
            &[("X-Webchat-CSRF", "1")]
        )
        .0,
        404
    );
    assert_eq!(
        http(host.port, "PUT", "/api/rooms/assistant/pins/x", None, &[]).0,
        403,
        "CSRF header required"
    );

    // Deleting a pinned message unpins it for everyone.
    let (status, _) = http(
        host.port,
        "DELETE",
        &format!("/api/rooms/assistant/messages/{}", said["id"].as_str().unwrap()),
        None,
        &[("X-Webchat-CSRF", "1")],
    );
    assert_eq!(status, 200);
    ws.wait(|f| f["type"] == "pins" && f["pins"].as_array().is_some_and(|p| p.len() == 1), WARM);
    let (status, body) = pin(reply["id"].as_str().unwrap(), "DELETE");
    assert_eq!((status, body["pins"].as_array().unwrap().len()), (200, 0), "{body}");
    assert_eq!(pin(said["id"].as_str().unwrap(), "PUT").0, 409, "a deleted message cannot be pinned");
}

#[test]
fn a_join_sends_history_a_frame_at_a_time_before_the_next_request() {
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("WEBCHAT_SEND_RATE", "100000")]);
    // About 1.2 MB of history: more than one history frame (256 KiB) holds.
    let big = "y".repeat(60 * 1024);
    let mut said = Vec::new();
    for i in 0..20 {
        let body = serde_json::json!({ "text": format!("part {i} {big}"), "client_id": format!("h-{i}") });
        let (status, resp) = host.post("/api/rooms/assistant/messages", body);
        assert_eq!(status, 200, "{resp}");
        said.push(
            resp["message"]["id"].as_str().unwrap_or_else(|| panic!("no message id: {resp}")).to_string(),
        );
    }
    let mut ws = host.ws();
    // Two joins at once: the second is answered only after the first's history is complete.
    ws.send(serde_json::json!({ "type": "join", "room_id": "assistant", "after_seq": 0 }));
    ws.send(serde_json::json!({ "type": "join", "room_id": "assistant", "after_seq": 1_000_000 }));
    let mut frames = Vec::new();
    loop {
        let f = ws.wait(|f| f["type"] == "history", WARM);
        let done = f["complete"] == true;
        frames.push(f);
        if done {
            break;
        }
    }
    assert!(frames.len() >= 4, "1.2 MB came in {} frame(s)", frames.len());
    let messages: Vec<&Value> = frames.iter().flat_map(|f| f["messages"].as_array().unwrap()).collect();
    let seqs: Vec<i64> = messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "history out of order: {seqs:?}");
    let ids: Vec<&str> = messages.iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(said.iter().all(|id| ids.contains(&id.as_str())), "a message is missing from the history");
    for f in &frames {
        let bytes = f["messages"].to_string().len();
        assert!(bytes <= 256 * 1024 + 64 * 1024, "a history frame holds {bytes} bytes of messages");
    }
    let second = ws.wait(|f| f["type"] == "history", WARM);
    assert_eq!(second["complete"], true);
    assert_eq!(second["messages"].as_array().map(Vec::len), Some(0), "{second}");
}
