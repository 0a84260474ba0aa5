//! Durability across host restarts: nothing lost, nothing repeated, and a second host on the same
//! data directory is refused.

use std::time::Duration;

use crate::support::*;

#[test]
fn resume_with_after_seq_across_a_restart() {
    let dirs = Dirs::new();
    let mut host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    for i in 0..3 {
        ws.say("assistant", &format!("before {i}"));
        ws.agent_reply("assistant", &format!("echo: before {i}"), COLD);
    }
    drop(ws);
    assert!(host.stop().success(), "clean exit on SIGTERM");
    assert!(containers_of(&dirs.install()).is_empty(), "containers stopped with the host");

    let host = Host::start(&dirs);
    let mut ws = host.ws();
    // A client that saw up to seq 2 gets exactly 3..=6, in order.
    let missed = ws.join("assistant", Some(2));
    assert_eq!(seqs(&missed), [3, 4, 5, 6]);
    assert_eq!(texts(&missed), ["before 1", "echo: before 1", "before 2", "echo: before 2"]);
    // A client that saw everything gets nothing.
    assert!(ws.join("assistant", Some(6)).is_empty());
    // The conversation goes on with a new container.
    ws.say("assistant", "after");
    let reply = ws.agent_reply("assistant", "echo: after", COLD);
    assert_eq!(reply["seq"], 8);
    let (_, body) = host.get("/api/rooms/assistant/messages?after=0&limit=1000");
    let all = body["messages"].as_array().unwrap().clone();
    assert_eq!(seqs(&all), (1..=8).collect::<Vec<_>>(), "gap-free, no repeats");
}

#[test]
fn a_message_in_flight_at_shutdown_is_answered_after_restart() {
    let dirs = Dirs::new();
    let mut host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "warm up");
    ws.agent_reply("assistant", "echo: warm up", COLD);
    // Send and stop at once: whatever stage the message reached, it must be answered exactly once.
    ws.say("assistant", "racing the shutdown");
    ws.wait(|f| f["type"] == "ack", WARM);
    drop(ws);
    assert!(host.stop().success());

    let host = Host::start(&dirs);
    let mut ws = host.ws();
    let history = ws.join("assistant", None);
    if !texts(&history).iter().any(|t| t == "echo: racing the shutdown") {
        ws.agent_reply("assistant", "echo: racing the shutdown", COLD);
    }
    let (_, body) = host.get("/api/rooms/assistant/messages");
    let all = texts(body["messages"].as_array().unwrap());
    assert_eq!(all.iter().filter(|t| *t == "echo: racing the shutdown").count(), 1, "{all:?}");
    assert_eq!(all.iter().filter(|t| *t == "racing the shutdown").count(), 1, "{all:?}");
}

#[test]
fn a_second_host_on_the_same_data_dir_is_refused() {
    let dirs = Dirs::new();
    let first = Host::start(&dirs);
    let mut second = Host::spawn(dirs.command(&["run"]));
    let status = second.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let log = second.log_tail();
    assert!(log.contains("already running") && log.contains(&first.pid().to_string()), "{log}");
    // The first host is unaffected.
    assert_eq!(first.get("/health").0, 200);
}
