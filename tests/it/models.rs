//! Real agents: a real container talking to a scripted model (the fake speaks the providers'
//! streaming wire formats) through the host's credential proxy. Streaming, tool rounds, stop,
//! errors, continuation across a container restart, and the key never reaching the container.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;
use pincer::testing::{FakeModel, Gate, Reply, anthropic, openai};

const KEY: &str = "sk-test-secret-key-0123456789abcdef";

fn openai_host(dirs: &Dirs, fake: &FakeModel) -> Host {
    let base = format!("{}/v1", fake.url());
    Host::start_with(
        dirs,
        &[
            ("PINCER_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &base),
            ("OPENAI_MODEL", "fake-model"),
            ("OPENAI_API_KEY", KEY),
        ],
    )
}

fn next_request(fake: &FakeModel) -> pincer::testing::Recorded {
    fake.next_request(COLD).expect("the model was called")
}

/// The text of every `tool` message in a Chat Completions request.
fn tool_results(req: &Value) -> Vec<String> {
    req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The last user message of a Chat Completions request.
fn last_user(req: &Value) -> String {
    let msgs = req["messages"].as_array().unwrap();
    msgs.iter().rev().find(|m| m["role"] == "user").map(|m| m["content"].to_string()).unwrap_or_default()
}

fn call(id: &str, name: &str, args: Value) -> (String, String, Vec<String>) {
    let json = args.to_string();
    // Split the arguments across chunks as real servers do.
    let mid = json.len() / 2;
    let mid = (mid..json.len()).find(|&i| json.is_char_boundary(i)).unwrap_or(json.len());
    (id.into(), name.into(), vec![json[..mid].to_string(), json[mid..].to_string()])
}

fn tool_reply(calls: &[(String, String, Vec<String>)]) -> Reply {
    let owned: Vec<(&str, &str, Vec<&str>)> = calls
        .iter()
        .map(|(i, n, f)| (i.as_str(), n.as_str(), f.iter().map(String::as_str).collect()))
        .collect();
    let refs: Vec<(&str, &str, &[&str])> = owned.iter().map(|(i, n, f)| (*i, *n, f.as_slice())).collect();
    openai::tool_calls(&refs)
}

#[test]
fn streaming_deltas_reach_the_browser_in_order_before_the_final_message() {
    let fake = FakeModel::start();
    fake.reply(openai::text(&["Hel", "lo, ", "**world**"], "stop"));
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "greet me");

    let mut deltas = String::new();
    let mut stream_id = None;
    let final_msg = loop {
        let f = ws
            .wait(|f| ["stream", "stream_end", "message"].contains(&f["type"].as_str().unwrap_or("")), COLD);
        match f["type"].as_str().unwrap() {
            "stream" => {
                assert_eq!(f["agent"], "Assistant");
                stream_id.get_or_insert(f["stream_id"].clone());
                assert_eq!(Some(&f["stream_id"]), stream_id.as_ref());
                deltas.push_str(f["delta"].as_str().unwrap());
            }
            "stream_end" => assert_eq!(Some(&f["stream_id"]), stream_id.as_ref()),
            _ if f["message"]["sender_type"] == "agent" => break f,
            _ => {}
        }
    };
    assert_eq!(deltas, "Hello, **world**", "every delta, in order, before the final message");
    assert_eq!(final_msg["message"]["text"], "Hello, **world**");
    assert_eq!(final_msg["message"]["html"], "<p>Hello, <strong>world</strong></p>\n");
    assert_eq!(
        Some(&final_msg["stream_id"]),
        stream_id.as_ref(),
        "the final message replaces the streamed one"
    );

    let req = next_request(&fake);
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str()),
        "the proxy injects the key"
    );
    assert_eq!(req.body["model"], "fake-model");
    assert_eq!(req.body["stream"], true);
    assert!(req.body["messages"][0]["content"].as_str().unwrap().contains("# You are Assistant"));
    let user = last_user(&req.body);
    assert!(user.contains("<context timezone=\\\"UTC\\\" />") && user.contains("greet me"), "{user}");
    assert!(req.body["tools"].as_array().is_some_and(|t| t.len() > 10), "tools are offered");
}

#[test]
fn a_scripted_model_writes_a_file_reads_it_back_and_replies_with_it() {
    let fake = FakeModel::start();
    fake.reply(tool_reply(&[call(
        "c1",
        "write_file",
        json!({"path": "notes/a.txt", "content": "file content 42"}),
    )]));
    fake.reply(tool_reply(&[call("c2", "read_file", json!({"path": "notes/a.txt"}))]));
    fake.reply(openai::text(&["The file says: file content 42"], "stop"));
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "write and read a note");

    for (name, state) in
        [("write_file", "start"), ("write_file", "end"), ("read_file", "start"), ("read_file", "end")]
    {
        let t = ws.wait(|f| f["type"] == "tool" && f["name"] == name && f["state"] == state, COLD);
        assert!(t["summary"].as_str().unwrap().contains("notes/a.txt"), "{t}");
        // The arguments as the model sent them; the output once the tool is done.
        let args: Value = serde_json::from_str(t["input"].as_str().unwrap_or_else(|| panic!("{t}"))).unwrap();
        assert_eq!(args["path"], "notes/a.txt", "{t}");
        match (name, state) {
            (_, "start") => assert!(t["output"].is_null(), "{t}"),
            ("read_file", _) => assert!(t["output"].as_str().unwrap().contains("file content 42"), "{t}"),
            _ => assert!(t["output"].as_str().unwrap().contains("15"), "write_file's report: {t}"),
        }
    }
    let reply = ws.agent_reply("assistant", "The file says", COLD);
    assert_eq!(reply["text"], "The file says: file content 42");
    // The tools it used stay with the reply, and go into the export.
    let tools: Vec<&str> = reply["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["write_file", "read_file"], "{reply}");
    assert!(reply["tools"][0]["summary"].as_str().unwrap().contains("notes/a.txt"));
    assert!(reply["tools"][1]["output"].as_str().unwrap().contains("file content 42"), "kept: {reply}");
    let (_, _, md) = http_raw(host.port, "GET", "/api/rooms/assistant/export", None, &[]);
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("- tool: write_file — ") && md.contains("- tool: read_file — "), "{md}");
    assert_eq!(
        std::fs::read_to_string(dirs.groups().join("assistant/notes/a.txt")).unwrap(),
        "file content 42"
    );

    let _first = next_request(&fake);
    let second = next_request(&fake);
    assert!(
        tool_results(&second.body)[0].contains("15"),
        "write_file reported the bytes: {:?}",
        tool_results(&second.body)
    );
    let third = next_request(&fake);
    let read_back = tool_results(&third.body);
    assert!(
        read_back[1].contains("file content 42"),
        "the real read_file result went back to the model: {read_back:?}"
    );
}

#[test]
fn the_key_never_reaches_the_container() {
    let fake = FakeModel::start();
    let probe = "env; echo ---; cat /proc/1/environ | tr '\\0' '\\n'; echo ---; ls -la /workspace; \
                 grep -rl -- 'sk-test-secret' /workspace /etc /tmp 2>/dev/null; echo END";
    fake.reply(tool_reply(&[call("c1", "bash", json!({"command": probe}))]));
    fake.reply(openai::text(&["checked"], "stop"));
    // An upstream that echoes the key in an error: the container must only ever see it redacted.
    fake.reply(openai::error_status(
        401,
        &format!("Incorrect API key provided: {KEY}"),
        "invalid_request_error",
        None,
        None,
    ));
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "inspect your environment");
    ws.agent_reply("assistant", "checked", COLD);
    let _ = next_request(&fake);
    let second = next_request(&fake);
    let seen = tool_results(&second.body).join("\n");
    assert!(seen.contains("PINCER_SESSION_ID=") && seen.contains("END"), "the probe ran: {seen}");
    assert!(!seen.contains("sk-test-secret"), "the key is visible inside the container:\n{seen}");
    assert!(seen.contains("model.sock"), "{seen}");
    assert_eq!(second.header("authorization"), Some(format!("Bearer {KEY}").as_str()));

    ws.say("assistant", "again");
    let notice = ws.notice("assistant", "model error: 401", COLD);
    let text = notice["text"].as_str().unwrap();
    assert!(text.contains("[redacted]") && !text.contains("sk-test-secret"), "{text}");
    assert!(text.contains("check OPENAI_API_KEY"), "{text}");
    assert!(!host.log_tail().contains("sk-test-secret"), "the key is in the host log");
}

#[test]
fn stop_aborts_a_long_tool_call_and_says_so() {
    let fake = FakeModel::start();
    fake.reply(tool_reply(&[call(
        "c1",
        "bash",
        json!({"command": "echo started; sleep 300", "timeout": 600}),
    )]));
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "run something long");
    ws.wait(|f| f["type"] == "tool" && f["name"] == "bash" && f["state"] == "start", COLD);
    ws.send(json!({ "type": "stop", "room_id": "assistant" }));
    let end = ws.wait(|f| f["type"] == "tool" && f["name"] == "bash" && f["state"] == "end", WARM);
    assert!(end["summary"].as_str().unwrap().contains("failed"), "{end}");
    let stopped = ws.agent_reply("assistant", "(stopped)", WARM);
    assert!(stopped["text"].as_str().unwrap().ends_with("_(stopped)_"), "{stopped}");
    // The sleep is gone, the container lives on and answers the next message.
    let container = containers_of(&dirs.install()).pop().expect("container still running");
    let ps = docker(&["exec", &container, "ps"]);
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains("sleep 300"),
        "{}",
        String::from_utf8_lossy(&ps.stdout)
    );
    fake.reply(openai::text(&["still here"], "stop"));
    ws.say("assistant", "are you there?");
    ws.agent_reply("assistant", "still here", WARM);
    assert_eq!(fake.pending_replies(), 0);
}

#[test]
fn stop_aborts_a_streaming_model_call() {
    let fake = FakeModel::start();
    let (first_gate, second_gate) = (Gate::new(), Gate::new());
    // Parts: role, "Once upon ", [hold 1], "a time", [hold 2], finish, done.
    fake.reply(
        openai::text(&["Once upon ", "a time"], "stop").hold_at(2, &first_gate).hold_at(4, &second_gate),
    );
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "tell me a long story");
    let first = ws.wait(|f| f["type"] == "stream", COLD);
    assert_eq!(first["delta"], "Once upon ");
    assert!(fake.wait_holding(WARM));
    ws.send(json!({ "type": "stop", "room_id": "assistant" }));
    // The turn ends at once, with what was said so far...
    let stopped = ws.agent_reply("assistant", "(stopped)", WARM);
    assert_eq!(stopped["text"], "Once upon\n\n_(stopped)_");
    // ...and the proxy drops the upstream connection as soon as the model sends anything more.
    first_gate.open();
    assert!(fake.wait_disconnect(WARM), "the upstream call was aborted");
    second_gate.open();
}

#[test]
fn model_errors_are_shown_in_the_room_not_swallowed() {
    let fake = FakeModel::start();
    fake.reply(Reply::json(
        404,
        r#"{"error": {"message": "model 'fake-model' not found", "type": "not_found_error"}}"#,
    ));
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "hello?");
    let notice = ws.notice("assistant", "model error: 404", COLD);
    let text = notice["text"].as_str().unwrap();
    assert!(text.contains("not found") && text.contains("check OPENAI_MODEL"), "{text}");
    assert_eq!(notice["sender"], "Assistant");
}

#[test]
fn a_missing_model_configuration_is_explained() {
    // openai chosen but no endpoint configured for the agent's protocol: the proxy says what to set.
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("PINCER_PROVIDER", "anthropic")]);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "hi");
    let notice = ws.notice("assistant", "model error: 503", COLD);
    assert!(notice["text"].as_str().unwrap().contains("ANTHROPIC_API_KEY"), "{notice}");
}

#[test]
fn the_conversation_survives_a_container_restart() {
    let fake = FakeModel::start();
    fake.reply(openai::text(&["I will remember kiwi."], "stop"));
    let dirs = Dirs::new();
    let mut host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "remember the word kiwi");
    ws.agent_reply("assistant", "kiwi", COLD);
    let _ = next_request(&fake);
    let container = containers_of(&dirs.install()).pop().unwrap();
    assert!(docker(&["kill", &container]).status.success());
    host.wait_for_line(|l| l.contains(&container) && l.contains("exited"), WARM).expect("exit noticed");

    fake.reply(openai::text(&["You said kiwi."], "stop"));
    ws.say("assistant", "what was the word?");
    ws.agent_reply("assistant", "You said kiwi", COLD);
    let req = next_request(&fake);
    let msgs = req.body["messages"].as_array().unwrap();
    let all: String = msgs.iter().map(|m| m["content"].to_string()).collect();
    assert!(
        all.contains("remember the word kiwi") && all.contains("I will remember kiwi."),
        "history resumed: {all}"
    );
    assert_ne!(containers_of(&dirs.install()).pop().unwrap(), container, "a new container answered");

    // /clear forgets it.
    ws.say("assistant", "/clear");
    ws.agent_reply("assistant", "Session cleared.", WARM);
    fake.reply(openai::text(&["Which word?"], "stop"));
    ws.say("assistant", "and now?");
    ws.agent_reply("assistant", "Which word?", WARM);
    let req = next_request(&fake);
    let all: String =
        req.body["messages"].as_array().unwrap().iter().map(|m| m["content"].to_string()).collect();
    assert!(!all.contains("kiwi"), "cleared: {all}");
}

#[test]
fn anthropic_protocol_end_to_end() {
    let fake = FakeModel::start();
    fake.reply(anthropic::text(&["Bon", "jour !"]));
    let dirs = Dirs::new();
    let host = Host::start_with(
        &dirs,
        &[
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", &fake.url()),
            ("ANTHROPIC_MODEL", "claude-test"),
        ],
    );
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "salut");
    let reply = ws.agent_reply("assistant", "Bonjour", COLD);
    assert_eq!(reply["text"], "Bonjour !");
    let req = next_request(&fake);
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.body["model"], "claude-test");
    assert!(req.body["system"].as_str().unwrap().contains("# You are Assistant"));
}

#[test]
fn files_edits_reactions_and_question_cards_reach_the_room() {
    let fake = FakeModel::start();
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    fake.reply(tool_reply(&[
        call("c1", "write_file", json!({"path": "out/report.txt", "content": "quarterly numbers"})),
        call("c2", "send_file", json!({"path": "out/report.txt", "text": "Here is the report."})),
        call("c3", "ask_user_question", json!({"question": "Tea or coffee?", "options": ["Tea", "Coffee"]})),
    ]));
    fake.reply(openai::text(&["Done."], "stop"));
    ws.say("assistant", "send me the report");
    let with_file = ws.agent_reply("assistant", "Here is the report.", COLD);
    let file = &with_file["files"][0];
    assert_eq!(file["name"], "report.txt");
    assert_eq!(file["mime"], "text/plain; charset=utf-8");
    assert_eq!(file["size"], 17);
    let (status, headers, body) = http_raw(host.port, "GET", file["url"].as_str().unwrap(), None, &[]);
    assert_eq!((status, body.as_slice()), (200, b"quarterly numbers".as_slice()));
    let h = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(h("content-security-policy").starts_with("sandbox") && h("x-content-type-options") == "nosniff");
    let card = ws.agent_reply("assistant", "Tea or coffee?", COLD);
    assert_eq!(
        card["card"]["options"],
        json!([{"label": "Tea", "value": "Tea"}, {"label": "Coffee", "value": "Coffee"}])
    );
    ws.agent_reply("assistant", "Done.", COLD);
    let _ = next_request(&fake);
    // The model learnt the id of the message it sent from the tool result.
    let results = tool_results(&next_request(&fake).body);
    let sent_id: i64 =
        results[1].trim_start_matches("Sent (message id ").trim_end_matches(").").parse().expect(&results[1]);

    // The answer comes back as the user's next message: by the even-seq rule it is message 4
    // (the first prompt was 2), which the prompt shows.
    fake.reply(tool_reply(&[
        call("c4", "add_reaction", json!({"message_id": 4, "emoji": "👍"})),
        call("c5", "edit_message", json!({"message_id": sent_id, "text": "Here is the **final** report."})),
    ]));
    fake.reply(openai::text(&["Enjoy!"], "stop"));
    ws.say("assistant", "Coffee");
    let req = next_request(&fake);
    assert!(last_user(&req.body).contains(r#"<message id=\"4\""#) && last_user(&req.body).contains("Coffee"));
    let reacted = ws.wait(|f| f["type"] == "update" && f["message"]["text"] == "Coffee", COLD);
    assert_eq!(
        reacted["message"]["reactions"],
        json!([{"emoji": "👍", "by": "Assistant", "by_type": "agent"}])
    );
    let edited = ws.wait(|f| f["type"] == "update" && f["message"]["id"] == with_file["id"], COLD);
    assert_eq!(edited["message"]["text"], "Here is the **final** report.");
    assert_eq!(edited["message"]["files"], with_file["files"], "files stay");
    assert!(edited["message"]["edited_at"].is_i64());
    ws.agent_reply("assistant", "Enjoy!", COLD);

    // An agent may only edit its own messages.
    fake.reply(tool_reply(&[call("c6", "edit_message", json!({"message_id": 4, "text": "tampered"}))]));
    fake.reply(openai::text(&["tried"], "stop"));
    ws.say("assistant", "edit my message");
    ws.notice("assistant", "an agent can only edit its own messages", COLD);
    let (_, all) = host.get("/api/rooms/assistant/messages");
    assert!(!all["messages"].to_string().contains("tampered"));
}

#[test]
fn retries_rate_limits_then_answers() {
    let fake = FakeModel::start();
    fake.reply(openai::error_status(429, "Rate limit reached", "rate_limit_error", None, Some(1)));
    fake.reply(openai::text(&["after the wait"], "stop"));
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "hi");
    let retry = ws.wait(|f| f["type"] == "tool" && f["name"] == "retry", COLD);
    assert!(retry["summary"].as_str().unwrap().contains("retry 1 in 1s"), "{retry}");
    ws.agent_reply("assistant", "after the wait", Duration::from_secs(30));
}

/// Two agents, each with its own model: one on the Anthropic endpoint, one on the
/// OpenAI-compatible one; the endpoints' model lists discovered through the host.
#[test]
fn each_agent_uses_its_own_model() {
    let claude = FakeModel::start();
    let local = FakeModel::start();
    let dirs = Dirs::new();
    let base = format!("{}/v1", local.url());
    let host = Host::start_with(
        &dirs,
        &[
            ("PINCER_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &base),
            ("OPENAI_MODEL", "qwen-local"),
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", &claude.url()),
            ("ANTHROPIC_MODEL", "claude-default"),
        ],
    );
    // Discovery: each endpoint's own list, asked by the host with the key it holds.
    local.reply(pincer::testing::Reply::json(
        200,
        r#"{"object":"list","data":[{"id":"qwen-local"},{"id":"llama-3b"}]}"#,
    ));
    claude.reply(pincer::testing::Reply::json(
        200,
        r#"{"data":[{"id":"claude-haiku-x","type":"model"}],"has_more":false}"#,
    ));
    let (status, models) = host.get("/api/models");
    assert_eq!(status, 200, "{models}");
    let by = |p: &str| {
        models["providers"].as_array().unwrap().iter().find(|e| e["provider"] == p).unwrap().clone()
    };
    assert_eq!(by("openai")["models"], json!(["qwen-local", "llama-3b"]), "{models}");
    assert_eq!(by("anthropic")["models"], json!(["claude-haiku-x"]), "{models}");
    let asked = claude.next_request(WARM).expect("the anthropic list was asked for");
    assert_eq!((asked.method.as_str(), asked.header("x-api-key")), ("GET", Some(KEY)));
    let asked = local.next_request(WARM).expect("the openai list was asked for");
    assert_eq!((asked.method.as_str(), asked.path.as_str()), ("GET", "/v1/models"));

    let (_, made) = host.post("/api/agents", json!({ "name": "Poet", "withRoom": true }));
    let poet = made["agentGroup"]["id"].as_str().unwrap().to_string();
    let patch = |body: Value| {
        http(
            host.port,
            "PATCH",
            &format!("/api/agents/{poet}"),
            Some(&body.to_string()),
            &[("X-Webchat-CSRF", "1")],
        )
    };
    let (status, body) = patch(json!({ "provider": "anthropic", "model": "claude-haiku-x" }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["agent"]["provider"].as_str(), body["agent"]["model"].as_str()),
        (Some("anthropic"), Some("claude-haiku-x"))
    );

    claude.reply(anthropic::text(&["A haiku."]));
    local.reply(openai::text(&["Local answer."], "stop"));
    let mut ws = host.ws();
    ws.join("poet", None);
    ws.join("assistant", None);
    ws.say("poet", "write a haiku");
    ws.agent_reply("poet", "A haiku.", COLD);
    ws.say("assistant", "and you?");
    ws.agent_reply("assistant", "Local answer.", COLD);
    assert_eq!(claude.next_request(COLD).unwrap().body["model"], "claude-haiku-x", "the poet's own model");
    assert_eq!(
        local.next_request(COLD).unwrap().body["model"],
        "qwen-local",
        "the assistant keeps the default"
    );

    // Back to the host's default; a provider that is not configured is refused with the fix.
    let (status, body) = patch(json!({ "provider": null, "model": null }));
    assert_eq!((status, body["agent"]["provider"].as_str()), (200, Some("openai")));
    let dirs2 = Dirs::new();
    let bare = Host::start(&dirs2);
    let (_, agents) = bare.get("/api/agents");
    let id = agents[0]["id"].as_str().unwrap();
    let (status, body) = http(
        bare.port,
        "PATCH",
        &format!("/api/agents/{id}"),
        Some(&json!({ "provider": "anthropic" }).to_string()),
        &[("X-Webchat-CSRF", "1")],
    );
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("ANTHROPIC_API_KEY"), "{body}");
}

/// ✨ The drafter asks the host's model for a name and instructions from one line, with the key
/// the host holds; only the owner may ask.
#[test]
fn the_drafter_proposes_a_name_and_instructions() {
    let fake = FakeModel::start();
    let dirs = Dirs::new();
    let host = openai_host(&dirs, &fake);
    let answer = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "fake-model",
        "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant",
            "content": "{\"name\": \"Garden Helper\", \"instructions\": \"You help with the garden.\"}" } }],
    });
    fake.reply(pincer::testing::Reply::json(200, &answer.to_string()));
    let (status, draft) =
        host.post("/api/agents/draft", json!({ "prompt": "someone to plan my vegetable garden" }));
    assert_eq!(status, 200, "{draft}");
    assert_eq!(draft, json!({ "name": "Garden Helper", "instructions": "You help with the garden." }));
    let asked = next_request(&fake);
    assert_eq!(asked.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert!(asked.body["messages"][1]["content"].as_str().unwrap().contains("vegetable garden"));

    fake.reply(pincer::testing::Reply::json(
        200,
        &json!({ "choices": [{ "message": { "content": "I cannot." } }] }).to_string(),
    ));
    let (status, body) = host.post("/api/agents/draft", json!({ "prompt": "anything" }));
    assert_eq!(status, 502, "{body}");
    assert!(body["error"].as_str().unwrap().contains("did not answer with a draft"));
    assert_eq!(host.post("/api/agents/draft", json!({ "prompt": " " })).0, 422);
}

/// Endpoints added in the app: a URL probed for what it serves (a llama.cpp-style list, an
/// Anthropic list, Ollama's tags), saved only once it answers and accepts the key, the key kept
/// on the host; an agent given the endpoint sends its calls there with that key; metadata
/// addresses refused; removal refused while an agent uses it.
#[test]
fn endpoints_added_in_the_app_serve_their_agents() {
    const BOX_KEY: &str = "sk-box-key-abcdefghijklmnop0123";
    let llama = FakeModel::start();
    let claude = FakeModel::start();
    let ollama = FakeModel::start();
    let dirs = Dirs::new();
    let host = Host::start(&dirs);

    llama.reply(pincer::testing::Reply::json(
        200,
        r#"{"object":"list","data":[{"id":"qwen3-4b","object":"model"}]}"#,
    ));
    let (status, p) = host.post("/api/models/probe", json!({ "url": llama.url() }));
    assert_eq!(status, 200, "{p}");
    assert_eq!((p["kind"].as_str(), p["models"].clone()), (Some("openai"), json!(["qwen3-4b"])));
    assert_eq!(p["endpoint"], format!("{}/v1", llama.url()));
    assert_eq!(llama.next_request(WARM).unwrap().path, "/v1/models");

    let refusal = r#"{"type":"error","error":{"type":"authentication_error","message":"x-api-key header is required"}}"#;
    claude.reply(pincer::testing::Reply::json(401, refusal));
    let (status, p) = host.post("/api/models/probe", json!({ "url": claude.url() }));
    assert_eq!(
        (status, p["kind"].as_str(), p["requires_credential"].as_bool()),
        (200, Some("anthropic"), Some(true))
    );
    claude.reply(pincer::testing::Reply::json(401, refusal));
    let (status, body) = host.post("/api/models", json!({ "name": "Claude box", "url": claude.url() }));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("needs a key"), "{body}");
    claude.reply(pincer::testing::Reply::json(
        200,
        r#"{"data":[{"id":"claude-x","type":"model"}],"has_more":false}"#,
    ));
    let (status, body) =
        host.post("/api/models", json!({ "name": "Claude box", "url": claude.url(), "api_key": BOX_KEY }));
    assert_eq!(status, 200, "{body}");
    let ep = body["endpoint"].clone();
    assert_eq!(
        (ep["kind"].as_str(), ep["default_model"].as_str(), ep["has_key"].as_bool()),
        (Some("anthropic"), Some("claude-x"), Some(true))
    );
    assert!(!body.to_string().contains(BOX_KEY), "the key is never shown: {body}");
    while let Some(r) = claude.next_request(Duration::from_millis(0)) {
        if r.path.starts_with("/v1/models") && r.header("x-api-key") == Some(BOX_KEY) {
            break;
        }
    }
    let id = ep["id"].as_str().unwrap().to_string();
    let (status, body) = host.post("/api/models", json!({ "name": "claude BOX", "url": claude.url() }));
    assert_eq!(status, 409, "names are unique: {body}");

    // Ollama: no OpenAI list at the root or /v1 here, its own tags list answers.
    ollama.reply(pincer::testing::Reply::json(404, r#"{"error":"not found"}"#));
    ollama.reply(pincer::testing::Reply::json(404, r#"{"error":"not found"}"#));
    ollama.reply(pincer::testing::Reply::json(200, r#"{"models":[{"name":"llama3.2:3b"}]}"#));
    let (status, p) = host.post("/api/models/probe", json!({ "url": ollama.url() }));
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        (p["server"].as_str(), p["endpoint"].clone()),
        (Some("Ollama"), json!(format!("{}/v1", ollama.url())))
    );
    let paths: Vec<String> = (0..3).map(|_| ollama.next_request(WARM).unwrap().path).collect();
    assert_eq!(paths, ["/v1/models", "/models", "/api/tags"]);

    for (url, says) in [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://metadata.google.internal/", "metadata"),
        ("file:///etc/passwd", "http"),
        ("http://user:pw@127.0.0.1:9/", "key field"),
    ] {
        let (status, body) = host.post("/api/models", json!({ "name": "Bad", "url": url }));
        assert_eq!(status, 422, "{url}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{url}: {body}");
    }

    // The assistant uses the box: its calls go there with the box's key and default model.
    let (_, agents) = host.get("/api/agents");
    let agent = agents[0]["id"].as_str().unwrap().to_string();
    let (status, body) = http(
        host.port,
        "PATCH",
        &format!("/api/agents/{agent}"),
        Some(&json!({ "provider": id }).to_string()),
        &[("X-Webchat-CSRF", "1")],
    );
    assert_eq!(status, 200, "{body}");
    claude.reply(pincer::testing::Reply::json(
        200,
        r#"{"data":[{"id":"claude-x","type":"model"}],"has_more":false}"#,
    ));
    let (_, models) = host.get("/api/models");
    let listed =
        models["providers"].as_array().unwrap().iter().find(|e| e["id"] == id.as_str()).unwrap().clone();
    assert_eq!(
        (listed["models"].clone(), listed["agents"].clone()),
        (json!(["claude-x"]), json!([agent])),
        "{models}"
    );
    assert!(!models.to_string().contains(BOX_KEY));
    claude.next_request(WARM).expect("the list was asked for");

    claude.reply(anthropic::text(&["From the box."]));
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "hello box");
    ws.agent_reply("assistant", "From the box.", COLD);
    let call = claude.next_request(COLD).expect("the agent's call reached its endpoint");
    assert_eq!((call.path.as_str(), call.header("x-api-key")), ("/v1/messages", Some(BOX_KEY)));
    assert_eq!(call.body["model"], "claude-x");

    let delete = |q: &str| {
        http(host.port, "DELETE", &format!("/api/models/{id}{q}"), None, &[("X-Webchat-CSRF", "1")])
    };
    let (status, body) = delete("");
    assert_eq!((status, body["agents"].clone()), (409, json!([agent])), "{body}");
    let (status, body) = delete("?force=1");
    assert_eq!((status, body["unassigned"].as_i64()), (200, Some(1)), "{body}");
    let (_, a) = host.get(&format!("/api/agents/{agent}"));
    assert_eq!(a["provider"], "mock", "back to the host's default");
    assert_eq!(delete("").0, 404);
}
