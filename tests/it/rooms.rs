//! Rooms with several agents, end to end with real containers (the mock agents echo what they
//! get): a room made with an existing and a new agent, mention-only until a prime is chosen,
//! `@mentions` taking a message from the prime, a sticky agent keeping the conversation, agents
//! added and removed, rename, per-person archive and delete — with the API's refusals.

use serde_json::{Value, json};

use crate::support::*;

fn agent_texts(host: &Host, room: &str, agent: &str) -> Vec<String> {
    let (_, body) = host.get(&format!("/api/rooms/{room}/messages?limit=1000"));
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sender_type"] == "agent" && m["sender"] == agent)
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

fn room_info(host: &Host, id: &str) -> Value {
    let (_, rooms) = host.get("/api/rooms");
    rooms.as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap_or(Value::Null)
}

#[test]
fn a_room_of_two_agents_answers_by_mention_prime_and_stickiness() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let (_, agents) = host.get("/api/agents");
    let assistant = agents[0]["id"].as_str().unwrap().to_string();

    // Made room-first: the existing assistant and a new critic.
    let (status, made) = host.post(
        "/api/rooms",
        json!({ "name": "Team", "agents": [
            { "kind": "existing", "id": assistant },
            { "kind": "new", "name": "Critic", "instructions": "You criticise." }
        ]}),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["room"]["id"], "team");
    let critic = made["agents"][1]["id"].as_str().unwrap().to_string();
    assert_eq!(made["agents"][1]["folder"], "critic");
    let info = room_info(&host, "team");
    assert_eq!(
        (info["engage_default"].as_str(), info["prime_agent_id"].is_null()),
        (Some("mention-only"), true),
        "{info}"
    );
    for (body, status) in [
        (json!({ "name": "x", "agents": [{ "kind": "existing", "id": "ag-nope" }] }), 422),
        (json!({ "name": "", "agents": [] }), 422),
        (json!({ "name": "x", "agents": [{ "kind": "other" }] }), 400),
    ] {
        assert_eq!(host.post("/api/rooms", body.clone()).0, status, "{body}");
    }

    let mut ws = host.ws();
    ws.join("team", None);
    // Mention-only: a message for nobody is answered by nobody; a mention by that agent only.
    ws.say("team", "hello everyone");
    let mut ask = |text: &str| {
        ws.say("team", text);
        ws.agent_reply("team", &format!("echo: {text}"), COLD);
    };
    ask("@critic what do you think?");
    ask("@assistant and you?");

    // A prime answers what mentions nobody; a mention still goes to the one mentioned.
    let (status, _) = host.put("/api/rooms/team/prime", json!({ "agentId": "ag-nope" }));
    assert_eq!(status, 422, "only an agent of the room");
    let (status, _) = host.put("/api/rooms/team/prime", json!({ "agentId": assistant }));
    assert_eq!(status, 200);
    ask("plain question");
    ask("@critic only you");

    // Sticky: once mentioned, the critic keeps the conversation until someone else is named.
    let (status, body) =
        host.put(&format!("/api/rooms/team/agents/{critic}"), json!({ "engageMode": "mention-sticky" }));
    assert_eq!(status, 200, "{body}");
    let (status, _) = host.put(&format!("/api/rooms/team/agents/{critic}"), json!({ "engageMode": "shout" }));
    assert_eq!(status, 422);
    ask("@critic let us talk");
    ask("and another thing");
    ask("@assistant back to you");
    ask("after the sticky");
    // Each agent answered exactly what it was meant to, in order.
    let echo = |texts: &[&str]| texts.iter().map(|t| format!("echo: {t}")).collect::<Vec<_>>();
    assert_eq!(
        agent_texts(&host, "team", "Critic"),
        echo(&["@critic what do you think?", "@critic only you", "@critic let us talk", "and another thing"])
    );
    assert_eq!(
        agent_texts(&host, "team", "Assistant"),
        echo(&["@assistant and you?", "plain question", "@assistant back to you", "after the sticky"])
    );

    // Out of the room: its mention is just text, and the prime answers.
    let (status, _) = host.delete(&format!("/api/rooms/team/agents/{critic}"));
    assert_eq!(status, 200);
    let (status, _) = host.delete(&format!("/api/rooms/team/agents/{critic}"));
    assert_eq!(status, 404);
    ws.say("team", "@critic are you there?");
    ws.agent_reply("team", "echo: @critic are you there?", COLD);
    assert_eq!(room_info(&host, "team")["agents"].as_array().unwrap().len(), 1);
    let (status, _) = host.post("/api/rooms/team/agents", json!({ "agentId": critic }));
    assert_eq!(status, 200, "and back in");
    let (status, _) = host.delete("/api/rooms/team/prime");
    assert_eq!(status, 200);
    assert!(room_info(&host, "team")["prime_agent_id"].is_null(), "no prime any more");

    // Rename, archive (per person), delete.
    let (status, _) = http(
        host.port,
        "PATCH",
        "/api/rooms/team",
        Some(&json!({ "name": "The Team", "archived": true }).to_string()),
        &[("X-Webchat-CSRF", "1")],
    );
    assert_eq!(status, 200);
    let info = room_info(&host, "team");
    assert_eq!((info["name"].as_str(), info["archived"].as_bool()), (Some("The Team"), Some(true)));
    assert_eq!(info["pinned"], false);
    let (status, _) = http(
        host.port,
        "PATCH",
        "/api/rooms/team",
        Some(&json!({ "pinned": true }).to_string()),
        &[("X-Webchat-CSRF", "1")],
    );
    assert_eq!(status, 200);
    assert_eq!(room_info(&host, "team")["pinned"], true, "kept at the top, for this person");
    let (status, _) = http(
        host.port,
        "PATCH",
        "/api/rooms/team",
        Some(&json!({ "engageDefault": "everyone" }).to_string()),
        &[("X-Webchat-CSRF", "1")],
    );
    assert_eq!(status, 422);
    let (status, _) = host.delete("/api/rooms/team");
    assert_eq!(status, 200);
    assert_eq!(room_info(&host, "team"), Value::Null);
    let (_, agents) = host.get("/api/agents");
    assert_eq!(agents.as_array().unwrap().len(), 2, "the agents stay");
}

/// An agent renamed and re-instructed through the API: the next turn's system prompt has the
/// new instructions; refusals say why.
#[test]
fn an_agent_is_renamed_and_reinstructed() {
    use pincer::testing::{FakeModel, openai};
    let fake = FakeModel::start();
    fake.reply(openai::text(&["first"], "stop"));
    fake.reply(openai::text(&["second"], "stop"));
    let dirs = Dirs::new();
    let base = format!("{}/v1", fake.url());
    let host = Host::start_with(
        &dirs,
        &[
            ("PINCER_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &base),
            ("OPENAI_MODEL", "m"),
            ("OPENAI_API_KEY", "k"),
        ],
    );
    let (_, agents) = host.get("/api/agents");
    let id = agents[0]["id"].as_str().unwrap().to_string();
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "hello");
    ws.agent_reply("assistant", "first", COLD);
    fake.next_request(COLD).expect("first call");

    let (status, got) = host.get(&format!("/api/agents/{id}"));
    assert_eq!(status, 200);
    assert!(got["instructions"].as_str().unwrap().contains("helpful personal assistant"), "{got}");
    let patch = |body: Value| {
        http(
            host.port,
            "PATCH",
            &format!("/api/agents/{id}"),
            Some(&body.to_string()),
            &[("X-Webchat-CSRF", "1")],
        )
    };
    let (status, body) = patch(json!({ "name": "Ada", "instructions": "Speak like a pirate." }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["agent"]["name"].as_str(), body["agent"]["folder"].as_str()),
        (Some("Ada"), Some("assistant"))
    );
    assert_eq!(
        std::fs::read_to_string(dirs.groups().join("assistant/AGENT.md")).unwrap(),
        "Speak like a pirate."
    );
    ws.say("assistant", "again");
    ws.agent_reply("assistant", "second", COLD);
    let req = fake.next_request(COLD).expect("second call");
    let system = req.body["messages"][0]["content"].as_str().unwrap_or_default().to_string();
    assert!(system.contains("Speak like a pirate."), "the next turn has the new instructions: {system}");

    let (_, made) = host.post("/api/agents", json!({ "name": "Other" }));
    let other = made["agentGroup"]["id"].as_str().unwrap();
    let (status, body) = http(
        host.port,
        "PATCH",
        &format!("/api/agents/{other}"),
        Some(&json!({ "name": "ada" }).to_string()),
        &[("X-Webchat-CSRF", "1")],
    );
    assert_eq!(status, 422, "names are unique ignoring case: {body}");
    assert!(body["error"].as_str().unwrap().contains("already exists"));
    let (status, _) = patch(json!({ "instructions": "x".repeat(64 * 1024 + 1) }));
    assert_eq!(status, 422);
    assert_eq!(host.get("/api/agents/ag-nope").0, 404);
}

/// An agent deleted by the owner: its container stops, it leaves its rooms and the agents that
/// could message it, and its folder and conversations are kept in an archive.
#[test]
fn a_deleted_agent_is_archived_and_stopped() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let (_, agents) = host.get("/api/agents");
    let assistant = agents[0]["id"].as_str().unwrap().to_string();
    let (status, made) = host.post("/api/agents", json!({ "name": "Helper", "withRoom": true }));
    assert_eq!(status, 201, "{made}");
    let helper = made["agentGroup"]["id"].as_str().unwrap().to_string();
    let (status, _) =
        host.post(&format!("/api/agents/{assistant}/destinations"), json!({ "agentId": helper }));
    assert_eq!(status, 201);
    let mut ws = host.ws();
    ws.join("helper", None);
    ws.say("helper", "hello helper");
    ws.agent_reply("helper", "echo: hello helper", COLD);
    let running = containers_of(&dirs.install());
    assert_eq!(running.len(), 1, "{running:?}");

    let (status, gone) = host.delete(&format!("/api/agents/{helper}"));
    assert_eq!(status, 200, "{gone}");
    let archived = gone["archived"].as_str().unwrap();
    assert!(archived.starts_with("groups/.archived/helper."), "{archived}");
    assert!(dirs.root().join(archived).join("AGENT.md").is_file() && !dirs.groups().join("helper").exists());
    assert!(
        std::fs::read_dir(dirs.data().join(".archived/sessions")).unwrap().count() == 1,
        "conversations kept"
    );
    eventually("the helper's container to stop", COLD, || {
        containers_of(&dirs.install()).is_empty().then_some(())
    });
    let (_, agents) = host.get("/api/agents");
    assert_eq!(agents.as_array().unwrap().len(), 1, "{agents}");
    let (_, dests) = host.get(&format!("/api/agents/{assistant}/destinations"));
    assert!(!dests.as_array().unwrap().iter().any(|d| d["agent_id"] == helper.as_str()), "{dests}");
    let (_, rooms) = host.get("/api/rooms");
    let room = rooms.as_array().unwrap().iter().find(|r| r["id"] == "helper").unwrap().clone();
    assert_eq!(room["agents"], json!([]), "the room and its history stay, without the agent");
    assert_eq!(host.delete(&format!("/api/agents/{helper}")).0, 404);
    // The assistant still answers.
    ws.join("assistant", None);
    ws.say("assistant", "still here?");
    ws.agent_reply("assistant", "echo: still here?", COLD);
}
