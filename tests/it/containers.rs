//! Container lifecycle: exits are noticed, orphans removed at start-up, crash loops reported, and
//! what an agent writes is re-validated before delivery.

use std::time::Duration;

use serde_json::json;

use crate::support::*;
use pincer::db::{self, Kind, outbound};

#[test]
fn a_killed_container_is_noticed_and_replaced() {
    let dirs = Dirs::new();
    let mut host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "one");
    ws.agent_reply("assistant", "echo: one", COLD);
    let running = containers_of(&dirs.install());
    assert_eq!(running.len(), 1);
    assert!(docker(&["kill", &running[0]]).status.success());
    host.wait_for_line(|l| l.contains(&running[0]) && l.contains("exited"), WARM)
        .unwrap_or_else(|| panic!("exit not noticed:\n{}", host.log_tail()));
    ws.say("assistant", "two");
    ws.agent_reply("assistant", "echo: two", COLD);
    let now = containers_of(&dirs.install());
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], running[0]);
}

#[test]
fn orphans_of_a_crashed_run_are_removed_at_start() {
    let dirs = Dirs::new();
    let label = format!("pincer.install={}", dirs.install());
    let name = format!("pincer-orphan-{}", std::process::id());
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &label,
        "--entrypoint",
        "/bin/sleep",
        &image(),
        "300",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _host = Host::start(&dirs);
    let left = docker(&["ps", "-a", "--filter", &format!("name={name}"), "--format", "{{.Names}}"]);
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "orphan still there");
}

#[test]
fn a_container_that_cannot_start_is_reported_in_the_room() {
    // An image whose entrypoint fails at once, built FROM the real one (no registry needed).
    let broken = "pincer-test-broken:latest";
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {}\nENTRYPOINT [\"/bin/false\"]\n", image()))
        .unwrap();
    let out = docker(&["build", "-q", "-t", broken, ctx.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("PINCER_IMAGE", broken)]);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "anyone there?");
    let notice = ws.notice("assistant", "failed to start 3 times", Duration::from_secs(90));
    assert!(notice["text"].as_str().unwrap().contains("pincer doctor"), "{notice}");
    // The message is not silently retried forever: a new message starts a fresh attempt.
    assert!(containers_of(&dirs.install()).is_empty());
}

/// Writes a row into the session's outbound.db as if the agent had written it.
fn write_as_agent(dirs: &Dirs, content: serde_json::Value, kind: &str, room: &str) {
    let sessions = dirs.data().join("sessions");
    let agent_dir = std::fs::read_dir(&sessions).unwrap().next().unwrap().unwrap().path();
    let session_dir = std::fs::read_dir(agent_dir).unwrap().next().unwrap().unwrap().path();
    let out = db::open(&session_dir.join("outbound.db"), Kind::Outbound).unwrap();
    let inb = db::open_readonly(&session_dir.join("inbound.db"), Kind::Inbound).unwrap();
    let max_in = pincer::db::inbound::max_seq(&inb).unwrap();
    let id = pincer::ids::new_id("msg");
    let content = content.to_string();
    outbound::insert(
        &out,
        &outbound::NewOutbound {
            id: &id,
            kind,
            in_reply_to: None,
            timestamp: pincer::ids::now_ms(),
            deliver_after: None,
            channel_type: Some("webchat"),
            platform_id: Some(room),
            thread_id: None,
            content: &content,
        },
        max_in,
    )
    .unwrap();
}

#[test]
fn an_agent_cannot_post_to_a_room_it_is_not_allowed_in() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let other = host.agent_with_room("Other");
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.join(&other, None);
    ws.say("assistant", "hi");
    ws.agent_reply("assistant", "echo: hi", COLD);
    // The Assistant's container writes to the Other room: delivery re-checks and refuses.
    write_as_agent(&dirs, json!({ "text": "sneaky" }), "chat", &other);
    let notice = ws.notice("assistant", "may not send to room", WARM);
    assert!(notice["text"].as_str().unwrap().contains("could not be delivered"));
    let (_, msgs) = host.get(&format!("/api/rooms/{other}/messages"));
    assert_eq!(msgs["messages"], json!([]), "nothing reached the other room");
}

#[test]
fn unsupported_agent_actions_fail_visibly() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "hi");
    ws.agent_reply("assistant", "echo: hi", COLD);
    write_as_agent(&dirs, json!({ "action": "frobnicate" }), "system", "assistant");
    ws.notice("assistant", "\"frobnicate\" is not supported", WARM);
}
