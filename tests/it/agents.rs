//! Agents talking to agents, end to end with real containers: an agent in a room asks another
//! agent (linked through the API) a question; the other agent's answer comes back to the
//! conversation that asked, and the asking agent tells the room. Unlinked agents cannot message
//! each other, and a ping-pong between two agents is stopped with a notice in the room.

use serde_json::{Value, json};

use crate::support::*;
use pincer::testing::{FakeModel, openai};

fn host(dirs: &Dirs, fake: &FakeModel) -> Host {
    let base = format!("{}/v1", fake.url());
    Host::start_with(
        dirs,
        &[("PINCER_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base), ("OPENAI_MODEL", "fake-model")],
    )
}

fn last_user(req: &Value) -> String {
    let msgs = req["messages"].as_array().unwrap();
    msgs.iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().map(str::to_string).unwrap_or_else(|| m["content"].to_string()))
        .unwrap_or_default()
}

fn send(to: &str, text: &str) -> String {
    json!({ "to": to, "text": text }).to_string()
}

/// Creates the helper agent (no room of its own); returns its id and the assistant's id.
fn helper(host: &Host) -> (String, String) {
    let (status, made) = host.post("/api/agents", json!({ "name": "Helper", "instructions": "You help." }));
    assert_eq!(status, 201, "{made}");
    let (_, agents) = host.get("/api/agents");
    let assistant = agents.as_array().unwrap().iter().find(|a| a["name"] == "Assistant").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (made["agentGroup"]["id"].as_str().unwrap().to_string(), assistant)
}

#[test]
fn an_agent_asks_another_and_the_answer_returns_to_the_room_that_asked() {
    let fake = FakeModel::start();
    let ask = send("helper", "What is 2+2?");
    fake.reply(openai::tool_calls(&[("call_1", "send_message", &[ask.as_str()])]));
    fake.reply(openai::text(&["I asked the helper."], "stop"));
    fake.reply(openai::text(&["It is 4."], "stop"));
    fake.reply(openai::text(&["<message to=\"assistant\">The helper says: 4.</message>"], "stop"));
    let dirs = Dirs::new();
    let host = host(&dirs, &fake);
    let (helper_id, assistant_id) = helper(&host);

    // Not linked yet: the API lists no agent destination.
    let (_, dests) = host.get(&format!("/api/agents/{assistant_id}/destinations"));
    assert!(dests.as_array().unwrap().iter().all(|d| d["type"] != "agent"), "{dests}");
    let (status, linked) = host.post(
        &format!("/api/agents/{assistant_id}/destinations"),
        json!({ "agentId": helper_id, "both": true }),
    );
    assert_eq!(status, 201, "{linked}");
    assert_eq!(
        (linked["name"].as_str(), linked["back"].as_str()),
        (Some("helper"), Some("assistant")),
        "{linked}"
    );

    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "ask the helper what 2+2 is");
    fake.next_request(COLD).expect("the assistant's first call");
    let after_tool = fake.next_request(COLD).expect("the assistant's call with the tool result");
    assert!(after_tool.raw_body.contains("call_1"), "the tool result went back");
    ws.agent_reply("assistant", "I asked the helper.", COLD);
    // The helper, in its own container, gets the question from the assistant.
    let helper_call = fake.next_request(COLD).expect("the helper was asked");
    let prompt = last_user(&helper_call.body);
    assert!(prompt.contains("What is 2+2?") && prompt.contains("sender=\"Assistant\""), "{prompt}");
    // Its answer goes back to the assistant's conversation in the room.
    let back = fake.next_request(COLD).expect("the assistant got the answer");
    let prompt = last_user(&back.body);
    assert!(prompt.contains("It is 4.") && prompt.contains("sender=\"Helper\""), "{prompt}");
    ws.agent_reply("assistant", "The helper says: 4.", COLD);
    // The helper's answer itself is not posted in the room (it went to the assistant).
    let (_, history) = host.get("/api/rooms/assistant/messages");
    let texts = texts(history["messages"].as_array().unwrap());
    assert!(!texts.iter().any(|t| t == "It is 4."), "{texts:?}");
}

#[test]
fn unlinked_agents_cannot_message_each_other_and_loops_are_stopped() {
    let fake = FakeModel::start();
    let dirs = Dirs::new();
    let host = host(&dirs, &fake);
    let (helper_id, assistant_id) = helper(&host);
    let mut ws = host.ws();
    ws.join("assistant", None);

    // No destination: the agent is told it has none by that name.
    let ask = send("helper", "hello?");
    fake.reply(openai::tool_calls(&[("call_1", "send_message", &[ask.as_str()])]));
    fake.reply(openai::text(&["Tried."], "stop"));
    ws.say("assistant", "say hello to the helper");
    fake.next_request(COLD).unwrap();
    let after = fake.next_request(COLD).unwrap();
    assert!(after.raw_body.contains("unknown destination"), "{}", after.raw_body);
    ws.agent_reply("assistant", "Tried.", COLD);

    // Linked both ways, two agents that always answer each other are stopped.
    let (status, _) = host.post(
        &format!("/api/agents/{assistant_id}/destinations"),
        json!({ "agentId": helper_id, "both": true }),
    );
    assert_eq!(status, 201);
    fake.reply(openai::text(&["<message to=\"helper\">ping</message>"], "stop"));
    for _ in 0..20 {
        fake.reply(openai::text(&["pong"], "stop"));
    }
    ws.say("assistant", "start a ping-pong");
    let notice = ws.notice("assistant", "possible loop", std::time::Duration::from_secs(120));
    assert!(notice["text"].as_str().unwrap().contains("8"), "{notice}");
}
