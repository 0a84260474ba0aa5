//! Requests that need a person, end to end with real containers: an agent asks for an MCP
//! server, a card appears in the room, the owner approves, and on its next turn the agent has
//! the server's tools (a bash MCP server in the agent's folder) and uses them; a denied request
//! is reported to the agent. `create_agent` asked for on behalf of a member needs approval, and
//! only the owner or an admin may give it (the server checks who clicks).

use serde_json::{Value, json};

use crate::support::*;
use pincer::testing::{FakeModel, openai};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_echo.sh");

fn model_env(fake: &FakeModel) -> Vec<(&'static str, String)> {
    vec![
        ("PINCER_PROVIDER", "openai".into()),
        ("OPENAI_BASE_URL", format!("{}/v1", fake.url())),
        ("OPENAI_MODEL", "fake-model".into()),
    ]
}

fn start(dirs: &Dirs, fake: &FakeModel, extra: &[(&str, &str)]) -> Host {
    let env = model_env(fake);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    Host::start_with(dirs, &all)
}

fn call(name: &str, args: Value) -> pincer::testing::Reply {
    let a = args.to_string();
    openai::tool_calls(&[("call_1", name, &[a.as_str()])])
}

fn tool_names(req: &Value) -> Vec<String> {
    req["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect()
}

fn approval_card(ws: &mut Ws) -> Value {
    let f = ws.wait(|f| f["type"] == "message" && f["message"]["card"]["type"] == "approval", COLD);
    f["message"].clone()
}

#[test]
fn an_approved_mcp_server_gives_the_agent_its_tools_and_a_denied_one_is_reported() {
    let fake = FakeModel::start();
    let dirs = Dirs::new();
    let host = start(&dirs, &fake, &[]);
    std::fs::copy(FIXTURE, dirs.groups().join("assistant").join("mcp-echo.sh")).unwrap();
    let mut ws = host.ws();
    ws.join("assistant", None);

    // Asked for, not yet there: a card in the room, listed for the owner.
    fake.reply(call(
        "add_mcp_server",
        json!({ "name": "fixture", "command": "/bin/bash", "args": ["/workspace/agent/mcp-echo.sh"] }),
    ));
    fake.reply(openai::text(&["I asked for it."], "stop"));
    ws.say("assistant", "add the fixture server");
    let first = fake.next_request(COLD).unwrap();
    assert!(tool_names(&first.body).iter().any(|t| t == "add_mcp_server"), "the tool is offered");
    let card = approval_card(&mut ws);
    assert!(
        card["card"]["question"].as_str().unwrap().contains("/bin/bash /workspace/agent/mcp-echo.sh"),
        "{card}"
    );
    fake.next_request(COLD).unwrap();
    let (_, pending) = host.get("/api/approvals");
    let pending = pending.as_array().unwrap().clone();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = card["card"]["approval_id"].as_str().unwrap();
    assert_eq!(pending[0]["id"], id);

    // Approved: the card says so, and the agent's next turn has the server's tool and uses it.
    fake.reply(call("mcp__fixture__echo", json!({ "text": "hello" })));
    fake.reply(openai::text(&["The fixture works."], "stop"));
    let (status, body) = host.post(&format!("/api/approvals/{id}"), json!({ "decision": "approve" }));
    assert_eq!(status, 200, "{body}");
    let update = ws.wait(|f| f["type"] == "update" && f["message"]["card"]["state"].is_string(), WARM);
    assert_eq!(update["message"]["card"]["state"], "approved", "{update}");
    let next = fake.next_request(COLD).expect("the agent was woken with the outcome");
    assert!(tool_names(&next.body).iter().any(|t| t == "mcp__fixture__echo"), "{:?}", tool_names(&next.body));
    let used = fake.next_request(COLD).expect("the call with the MCP tool's result");
    assert!(used.raw_body.contains("fixture says: hello"), "{}", used.raw_body);
    ws.agent_reply("assistant", "The fixture works.", COLD);
    let (status, _) = host.post(&format!("/api/approvals/{id}"), json!({ "decision": "deny" }));
    assert_eq!(status, 409, "decided once");

    // Denied: the agent is told.
    fake.reply(call("add_mcp_server", json!({ "name": "other", "command": "/bin/true" })));
    fake.reply(openai::text(&["Asked again."], "stop"));
    fake.reply(openai::text(&["Understood."], "stop"));
    ws.say("assistant", "add another");
    let card = approval_card(&mut ws);
    let id = card["card"]["approval_id"].as_str().unwrap();
    fake.next_request(COLD).unwrap();
    fake.next_request(COLD).unwrap();
    let (status, _) = host.post(&format!("/api/approvals/{id}"), json!({ "decision": "deny" }));
    assert_eq!(status, 200);
    let told = fake.next_request(COLD).expect("the agent heard the outcome");
    assert!(told.raw_body.contains("denied the request"), "{}", told.raw_body);
    let (_, agents) = host.get("/api/agents");
    assert!(!agents.to_string().contains("\"other\""));
}

#[test]
fn create_agent_for_a_member_needs_the_owners_approval() {
    let fake = FakeModel::start();
    let dirs = Dirs::new();
    let host = start(&dirs, &fake, &[("WEBCHAT_TRUSTED_PROXY_IPS", "127.0.0.1")]);
    let as_user = |who: &'static str| [("X-Webchat-CSRF", "1"), ("X-Forwarded-User", who)];
    // Alice (first) is the owner; Bob a member of the assistant.
    let (status, me) = http(host.port, "GET", "/api/auth/check", None, &as_user("alice"));
    assert_eq!((status, me["owner"].as_bool()), (200, Some(true)), "{me}");
    http(host.port, "GET", "/api/auth/check", None, &as_user("bob"));
    let (_, agents) = http(host.port, "GET", "/api/agents", None, &as_user("alice"));
    let assistant = agents[0]["id"].as_str().unwrap().to_string();
    let grant = json!({ "role": "member", "agentId": assistant }).to_string();
    let (status, body) =
        http(host.port, "POST", "/api/users/webchat:bob/grant", Some(&grant), &as_user("alice"));
    assert_eq!(status, 200, "{body}");

    fake.reply(call("create_agent", json!({ "name": "Researcher", "instructions": "You research." })));
    fake.reply(openai::text(&["I asked for a researcher."], "stop"));
    fake.reply(openai::text(&["Thanks."], "stop"));
    let mut ws = Ws::connect(host.port, &[("X-Forwarded-User", "bob")]);
    ws.join("assistant", None);
    ws.say("assistant", "make a researcher agent");
    let card = approval_card(&mut ws);
    let id = card["card"]["approval_id"].as_str().unwrap().to_string();
    fake.next_request(COLD).unwrap();
    fake.next_request(COLD).unwrap();
    // Bob may not decide it, and does not even see it listed.
    let (_, listed) = http(host.port, "GET", "/api/approvals", None, &as_user("bob"));
    assert_eq!(listed, json!([]));
    let decision = json!({ "decision": "approve" }).to_string();
    let (status, body) =
        http(host.port, "POST", &format!("/api/approvals/{id}"), Some(&decision), &as_user("bob"));
    assert_eq!(status, 403, "{body}");
    // Alice approves: the agent exists, linked with its creator both ways.
    let (status, body) =
        http(host.port, "POST", &format!("/api/approvals/{id}"), Some(&decision), &as_user("alice"));
    assert_eq!(status, 200, "{body}");
    let (_, agents) = http(host.port, "GET", "/api/agents", None, &as_user("alice"));
    let researcher =
        agents.as_array().unwrap().iter().find(|a| a["name"] == "Researcher").expect("created").clone();
    let (_, dests) =
        http(host.port, "GET", &format!("/api/agents/{assistant}/destinations"), None, &as_user("alice"));
    assert!(dests.as_array().unwrap().iter().any(|d| d["agent_id"] == researcher["id"]), "{dests}");
    let told = fake.next_request(COLD).expect("the assistant heard the outcome");
    assert!(
        told.raw_body.contains("Researcher") && told.raw_body.contains("was created"),
        "{}",
        told.raw_body
    );
}
