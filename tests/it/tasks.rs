//! Scheduled tasks end to end: an agent (a real container, its model scripted) schedules a task
//! with its tool; the host stores it, its timer fires, and the run's answer reaches the room
//! over the WebSocket. Recurring tasks fire again on their schedule, a pre-task script decides
//! whether the agent is woken, and people see and control tasks through the API and the CLI.
//! Every wait is on an event with a deadline; nothing sleeps for a schedule.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;
use pincer::testing::{FakeModel, Reply, openai};

/// A task scheduled a few seconds ahead fires within this (its timer plus a warm turn).
const FIRE: Duration = Duration::from_secs(30);
/// A task repeating every minute fires again within this.
const NEXT_MINUTE: Duration = Duration::from_secs(90);

fn host(dirs: &Dirs, fake: &FakeModel) -> Host {
    let base = format!("{}/v1", fake.url());
    Host::start_with(
        dirs,
        &[("PINCER_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base), ("OPENAI_MODEL", "fake-model")],
    )
}

fn schedule_call(args: Value) -> Reply {
    let json = args.to_string();
    openai::tool_calls(&[("call_1", "schedule_task", &[json.as_str()])])
}

/// The text of the last user message of a model request.
fn last_user(req: &Value) -> String {
    let msgs = req["messages"].as_array().unwrap();
    msgs.iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().map(str::to_string).unwrap_or_else(|| m["content"].to_string()))
        .unwrap_or_default()
}

fn tool_result(req: &Value) -> String {
    let msgs = req["messages"].as_array().unwrap();
    msgs.iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

fn agent_id(host: &Host) -> String {
    let (_, agents) = host.get("/api/agents");
    agents[0]["id"].as_str().unwrap().to_string()
}

fn tasks(host: &Host, agent: &str) -> Vec<Value> {
    let (status, list) = host.get(&format!("/api/agents/{agent}/tasks"));
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().clone()
}

#[test]
fn a_task_scheduled_in_seconds_fires_and_its_answer_reaches_the_room() {
    let fake = FakeModel::start();
    fake.reply(schedule_call(
        json!({ "prompt": "tell them the tea is ready", "process_after": "in 2 seconds" }),
    ));
    fake.reply(openai::text(&["I will remind you."], "stop"));
    fake.reply(openai::text(&["Your tea is ready."], "stop"));
    let dirs = Dirs::new();
    let host = host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "remind me about the tea in 2 seconds");
    fake.next_request(COLD).expect("the first model call");
    let after_tool = fake.next_request(COLD).expect("the model call with the tool's result");
    let result = tool_result(&after_tool.body);
    assert!(!result.contains("not supported") && !result.to_lowercase().contains("error"), "{result}");
    ws.agent_reply("assistant", "I will remind you.", COLD);

    // The host has it, as people see it.
    let agent = agent_id(&host);
    let list = tasks(&host, &agent);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["prompt"], "tell them the tea is ready");
    assert_eq!(list[0]["status"], "pending");
    assert_eq!(list[0]["room_id"], "assistant");
    assert!(list[0]["next_run"].as_i64().is_some());

    // The timer fires: the agent gets the task and its answer arrives in the room.
    let run = fake.next_request(FIRE).expect("the task's run called the model");
    let prompt = last_user(&run.body);
    assert!(prompt.contains("<task") && prompt.contains("tell them the tea is ready"), "{prompt}");
    ws.agent_reply("assistant", "Your tea is ready.", WARM);
    // The run is recorded as done in the same pass that delivered its answer.
    let done = eventually("the run recorded as completed", WARM, || {
        let t = tasks(&host, &agent);
        (t[0]["status"] == "completed").then_some(t)
    });
    assert_eq!(done[0]["next_run"], Value::Null, "{done:?}");
}

#[test]
fn a_recurring_task_fires_again_and_people_can_pause_and_cancel_it() {
    let fake = FakeModel::start();
    fake.reply(schedule_call(
        json!({ "prompt": "say tick", "process_after": "in 1 second", "recurrence": "* * * * *" }),
    ));
    fake.reply(openai::text(&["Ticking every minute."], "stop"));
    fake.reply(openai::text(&["tick 1"], "stop"));
    fake.reply(openai::text(&["tick 2"], "stop"));
    let dirs = Dirs::new();
    let host = host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "say tick every minute");
    ws.agent_reply("assistant", "Ticking every minute.", COLD);
    ws.agent_reply("assistant", "tick 1", FIRE);
    // The next run follows the schedule: the next minute boundary.
    let agent = agent_id(&host);
    let list = eventually("the next run scheduled on a minute boundary", WARM, || {
        let t = tasks(&host, &agent);
        (t[0]["next_run"].as_i64().is_some_and(|n| n % 60_000 == 0)).then_some(t)
    });
    assert_eq!(
        (list.len(), list[0]["status"].as_str()),
        (1, Some("pending")),
        "one series, pending again: {list:?}"
    );
    ws.agent_reply("assistant", "tick 2", NEXT_MINUTE);

    // People control it: pause, resume, cancel (the CSRF header is required for changes).
    let series = tasks(&host, &agent)[0]["series_id"].as_str().unwrap().to_string();
    let path = |action: &str| format!("/api/agents/{agent}/tasks/{series}/{action}");
    let (status, _) = http(host.port, "POST", &path("pause"), None, &[]);
    assert_eq!(status, 403, "no CSRF header, no change");
    let (status, body) = host.post(&path("pause"), json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(tasks(&host, &agent)[0]["status"], "paused");
    let (status, body) = host.post(&path("pause"), json!({}));
    assert_eq!(status, 200, "pausing again changes nothing: {body}");
    let (status, body) = host.post(&path("resume"), json!({}));
    assert_eq!((status, body["next_run"].is_i64()), (200, true), "{body}");
    let (status, _) = host.post(&path("cancel"), json!({}));
    assert_eq!(status, 200);
    let last = tasks(&host, &agent);
    assert_eq!((last[0]["status"].as_str(), last[0]["next_run"].as_i64()), (Some("cancelled"), None));
    let (status, body) = host.post(&path("resume"), json!({}));
    assert_eq!(status, 409, "a cancelled task stays cancelled: {body}");
    let (status, _) = host.post(&format!("/api/agents/{agent}/tasks/task-nope/cancel"), json!({}));
    assert_eq!(status, 404);
    // The CLI sees the same.
    let out = dirs.command(&["task", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with(&series) && l.contains("cancelled")), "{text}");
    assert_eq!(fake.pending_replies(), 0, "no run after the second");
}

#[test]
fn a_pre_task_script_decides_whether_the_agent_is_woken() {
    let fake = FakeModel::start();
    // Two tasks: one whose script finds nothing to do, one whose script hands the agent data.
    let quiet = json!({
        "prompt": "only if there is mail", "process_after": "in 1 second",
        "script": "echo checking; echo '{\"wakeAgent\": false}'"
    });
    let loud = json!({
        "prompt": "report the count", "process_after": "in 3 seconds",
        "script": "echo '{\"wakeAgent\": true, \"data\": {\"count\": 7}}'"
    });
    let calls = [quiet.to_string(), loud.to_string()];
    fake.reply(openai::tool_calls(&[
        ("call_q", "schedule_task", &[calls[0].as_str()]),
        ("call_l", "schedule_task", &[calls[1].as_str()]),
    ]));
    fake.reply(openai::text(&["Both scheduled."], "stop"));
    fake.reply(openai::text(&["There are 7."], "stop"));
    let dirs = Dirs::new();
    let host = host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "watch the mail");
    ws.agent_reply("assistant", "Both scheduled.", COLD);
    fake.next_request(COLD).unwrap();
    fake.next_request(COLD).unwrap();
    // The next model call is the loud task's: the quiet one never reached the model.
    let run = fake.next_request(FIRE).expect("the woken task called the model");
    let prompt = last_user(&run.body);
    assert!(
        prompt.contains("report the count")
            && prompt.contains("Script output")
            && prompt.contains("count&quot;: 7"),
        "{prompt}"
    );
    assert!(!prompt.contains("only if there is mail"), "{prompt}");
    ws.agent_reply("assistant", "There are 7.", WARM);
    let agent = agent_id(&host);
    eventually("both runs recorded as completed", WARM, || {
        tasks(&host, &agent).iter().all(|t| t["status"] == "completed").then_some(())
    });
}

#[test]
fn task_requests_the_host_refuses_are_explained_to_the_agent_and_the_room() {
    let fake = FakeModel::start();
    fake.reply(schedule_call(
        json!({ "prompt": "x", "process_after": "in 1 minute", "recurrence": "0 0 30 2 *" }),
    ));
    fake.reply(openai::text(&["Noted."], "stop"));
    let dirs = Dirs::new();
    let host = host(&dirs, &fake);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "every 30th of February");
    fake.next_request(COLD).unwrap();
    let after = fake.next_request(COLD).unwrap();
    // The runner checks the cron grammar; the host checks what needs a calendar.
    let _ = tool_result(&after.body);
    let notice = ws.notice("assistant", "schedule_task", COLD);
    assert!(notice["text"].as_str().unwrap().contains("never runs"), "{notice}");
    assert!(tasks(&host, &agent_id(&host)).is_empty());
}
