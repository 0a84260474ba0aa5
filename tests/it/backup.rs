//! Whole-install backups on a real install with real containers: a backup taken while pincer
//! runs, the install wiped and restored, and the same conversation going on with `after_seq`,
//! nothing lost or repeated; a backup taken while messages flow is consistent; a damaged backup,
//! one from a newer pincer, and a restore under a running host are refused with the reason.

use std::time::Instant;

use serde_json::{Value, json};

use crate::support::*;
use crate::uploads::{form, multipart, upload};

fn messages(host: &Host) -> Vec<Value> {
    let (_, page) = host.get("/api/rooms/assistant/messages?limit=1000");
    page["messages"].as_array().unwrap().clone()
}

fn summary(ms: &[Value]) -> Vec<(String, i64, String)> {
    ms.iter()
        .map(|m| {
            (m["id"].as_str().unwrap().into(), m["seq"].as_i64().unwrap(), m["text"].as_str().unwrap().into())
        })
        .collect()
}

#[test]
fn backup_wipe_restore_and_the_conversation_goes_on() {
    let dirs = Dirs::new();
    let mut host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "remember the tulips");
    ws.agent_reply("assistant", "echo: remember the tulips", COLD);
    let (status, up) =
        upload(&host, "assistant", &form(&[("file", Some("plan.txt"), b"plant in October")]), &multipart());
    assert_eq!(status, 200, "{up}");
    let file_url = up["message"]["files"][0]["url"].as_str().unwrap().to_string();
    ws.agent_reply("assistant", "echo:", COLD);
    let (status, other) = host.post("/api/agents", json!({ "name": "Gardener", "withRoom": true }));
    assert_eq!(status, 201, "{other}");

    let bk = dirs.root().join("bk");
    let (code, out) = dirs.cli(&["backup", bk.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{out}");
    let at_backup = summary(&messages(&host));

    // After the backup: not in it.
    ws.say("assistant", "after the backup");
    ws.agent_reply("assistant", "echo: after the backup", COLD);
    let (code, out) = dirs.cli(&["restore", bk.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "refused under a running host: {out}");
    assert!(out.contains("stopped") || out.contains("already running"), "{out}");

    drop(ws);
    host.stop();
    std::fs::remove_dir_all(dirs.data()).unwrap();
    std::fs::remove_dir_all(dirs.groups()).unwrap();
    let (code, out) = dirs.cli(&["restore", bk.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{out}");

    let host = Host::start(&dirs);
    let restored = messages(&host);
    assert_eq!(summary(&restored), at_backup, "the history as it was, with the same ids and seqs");
    let (status, _, bytes) = http_raw(host.port, "GET", &file_url, None, &[]);
    assert_eq!((status, bytes.as_slice()), (200, &b"plant in October"[..]));
    let (_, agents) = host.get("/api/agents");
    assert_eq!(agents.as_array().unwrap().len(), 2, "both agents: {agents}");
    assert!(dirs.groups().join("gardener/AGENT.md").is_file() || dirs.groups().join("gardener").is_dir());

    // The conversation goes on from where the backup was: nothing repeated, nothing missing.
    let last = restored.last().unwrap()["seq"].as_i64().unwrap();
    let mut ws = host.ws();
    let history = ws.join("assistant", Some(last));
    assert!(history.is_empty(), "nothing after the backup's last message: {history:?}");
    ws.say("assistant", "still there?");
    let reply = ws.agent_reply("assistant", "echo: still there?", COLD);
    assert!(reply["seq"].as_i64().unwrap() > last);
    let after = messages(&host);
    assert_eq!(after.len(), restored.len() + 2, "one message and one reply more");

    // Restored again over the install that is there: it is kept aside, the backup comes back.
    drop(ws);
    drop(host);
    let (code, out) = dirs.cli(&["restore", bk.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("kept at"), "{out}");
    let host = Host::start(&dirs);
    assert_eq!(summary(&messages(&host)), at_backup, "exactly the backup again");
    drop(host);

    // A damaged backup is refused and changes nothing.
    let agent_md = bk.join("groups/assistant/AGENT.md");
    let mut text = std::fs::read(&agent_md).unwrap();
    text.push(b'!');
    std::fs::write(&agent_md, text).unwrap();
    let (code, out) = dirs.cli(&["restore", bk.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("damaged") && out.contains("AGENT.md"), "{out}");
    assert!(dirs.data().join("pincer.db").is_file(), "the install stayed in place");
}

#[test]
fn a_backup_taken_while_messages_flow_is_consistent() {
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("WEBCHAT_SEND_RATE", "100000")]);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "warm up");
    ws.agent_reply("assistant", "echo: warm up", COLD);
    let port = host.port;
    let sender = std::thread::spawn(move || {
        for i in 0..200 {
            let body = json!({ "text": format!("flow {i}"), "client_id": format!("flow-{i}") }).to_string();
            let (status, _) =
                http(port, "POST", "/api/rooms/assistant/messages", Some(&body), &[("X-Webchat-CSRF", "1")]);
            assert_eq!(status, 200);
        }
    });
    let bk = dirs.root().join("bk");
    let started = Instant::now();
    let (code, out) = dirs.cli(&["backup", bk.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{out}");
    sender.join().unwrap();
    eprintln!("backup under load took {:?}", started.elapsed());

    let central = rusqlite::Connection::open(bk.join("data/pincer.db")).unwrap();
    let ok: String = central.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let mut stmt = central
        .prepare("SELECT id, seq, routed_at IS NOT NULL FROM room_messages WHERE room_id = 'assistant' ORDER BY seq")
        .unwrap();
    let rows: Vec<(String, i64, bool)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "seqs without a gap");
    // Every message the backup says was routed is in a session's inbound.db in the backup.
    let mut inbound_ids = Vec::new();
    for agent in std::fs::read_dir(bk.join("data/sessions")).unwrap().flatten() {
        for s in std::fs::read_dir(agent.path()).unwrap().flatten() {
            let db = s.path().join("inbound.db");
            if !db.is_file() {
                continue;
            }
            let c = rusqlite::Connection::open(&db).unwrap();
            let mut q = c.prepare("SELECT id FROM messages_in").unwrap();
            inbound_ids.extend(q.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap));
        }
    }
    let (_, users) = host.get("/api/rooms/assistant/messages?limit=1000");
    let user_ids: Vec<String> = users["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sender_type"] == "user")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    for (id, seq, routed) in rows {
        if routed && user_ids.contains(&id) {
            assert!(
                inbound_ids.iter().any(|i| i.starts_with(&format!("{id}:"))),
                "message {id} (seq {seq}) is routed in the backup but no session has it"
            );
        }
    }
    let (code, out) = dirs.cli(&["backup", bk.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "{out}");
}
