//! Tests of the DB layer: seq rules, migrations (fresh equals stepped, newer refused, failures
//! roll back), pragmas per kind, the queries of each file, and how failures are recognised.

use super::*;
use crate::db::central::{self, NewMessage};
use crate::db::inbound::{self, NewInbound};
use crate::db::outbound::{self, NewOutbound};
use crate::db::pins;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn pragma(conn: &Connection, name: &str) -> String {
    conn.pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .unwrap()
}

#[test]
fn even_seq_rule() {
    let cases =
        [(None, 2), (Some(0), 2), (Some(1), 2), (Some(2), 4), (Some(3), 4), (Some(7), 8), (Some(10), 12)];
    for (max, want) in cases {
        assert_eq!(inbound::next_even_seq(max), want, "max {max:?}");
    }
}

#[test]
fn odd_seq_rule() {
    let cases = [
        ((None, None), 1),
        ((None, Some(2)), 3),
        ((Some(3), Some(2)), 5),
        ((Some(3), Some(8)), 9),
        ((Some(9), Some(4)), 11),
        ((Some(1), None), 3),
    ];
    for ((out, inn), want) in cases {
        assert_eq!(outbound::next_odd_seq(out, inn), want, "out {out:?} in {inn:?}");
    }
}

#[test]
fn pragmas_on_every_kind() {
    let dir = tmp();
    for (kind, journal) in [(Kind::Central, "wal"), (Kind::Inbound, "delete"), (Kind::Outbound, "delete")] {
        let conn = open(&dir.path().join(format!("{kind:?}.db")), kind).unwrap();
        assert_eq!(pragma(&conn, "journal_mode"), journal, "{kind:?}");
        assert_eq!(pragma(&conn, "foreign_keys"), "1", "{kind:?}");
        assert_eq!(pragma(&conn, "synchronous"), "2", "{kind:?} synchronous=FULL");
        assert_eq!(migrate::version(&conn).unwrap(), migrate::migrations(kind).len());
        drop(conn);
        let ro = open_readonly(&dir.path().join(format!("{kind:?}.db")), kind).unwrap();
        assert_eq!(pragma(&ro, "mmap_size"), "0");
        assert_eq!(pragma(&ro, "query_only"), "1");
        assert!(ro.execute("CREATE TABLE x (y)", []).is_err(), "{kind:?} read-only handle wrote");
    }
}

#[test]
fn a_redoable_write_skips_the_disk_wait_on_wal_only_and_leaves_full_after() {
    let dir = tmp();
    for (kind, during) in [(Kind::Central, "1"), (Kind::Inbound, "2")] {
        let mut conn = open(&dir.path().join(format!("redo-{kind:?}.db")), kind).unwrap();
        let seen = write_tx_redoable(&mut conn, |tx| Ok(pragma(tx, "synchronous"))).unwrap();
        assert_eq!(seen, during, "{kind:?}: NORMAL (1) on WAL only, FULL (2) on a rollback journal");
        assert_eq!(pragma(&conn, "synchronous"), "2", "{kind:?}: FULL again after");
        // A failed transaction also leaves FULL behind.
        let failed: anyhow::Result<()> = write_tx_redoable(&mut conn, |_| anyhow::bail!("no"));
        assert!(failed.is_err());
        assert_eq!(pragma(&conn, "synchronous"), "2", "{kind:?}: FULL after a failure");
    }
}

#[test]
fn a_write_transaction_commits_on_ok_and_rolls_back_on_error_or_panic() {
    let dir = tmp();
    let mut conn = open(&dir.path().join("tx.db"), Kind::Inbound).unwrap();
    conn.execute("CREATE TABLE t (v INTEGER)", []).unwrap();
    let count = |c: &Connection| -> i64 { c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap() };
    for round in 0..2 {
        write_tx(&mut conn, |tx| Ok(tx.execute("INSERT INTO t VALUES (1)", [])?)).unwrap();
        assert_eq!(count(&conn), 1 + round, "committed (round {round})");
        let failed: anyhow::Result<()> = write_tx(&mut conn, |tx| {
            tx.execute("INSERT INTO t VALUES (2)", [])?;
            anyhow::bail!("no")
        });
        assert!(failed.is_err());
        assert!(conn.is_autocommit(), "no transaction is left open after an error");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = write_tx(&mut conn, |tx| -> anyhow::Result<()> {
                tx.execute("INSERT INTO t VALUES (3)", [])?;
                panic!("mid-transaction")
            });
        }));
        assert!(panicked.is_err());
        assert!(conn.is_autocommit(), "no transaction is left open after a panic");
        assert_eq!(count(&conn), 1 + round, "neither the failed nor the panicked insert is kept");
    }
}

#[test]
fn busy_retries_start_small() {
    let steps: Vec<u128> = (0..8).map(|n| busy_step(n).as_micros()).collect();
    assert_eq!(steps, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
}

#[test]
fn migrate_twice_is_a_no_op() {
    let dir = tmp();
    for kind in [Kind::Central, Kind::Inbound, Kind::Outbound] {
        let path = dir.path().join(format!("{kind:?}.db"));
        let conn = open(&path, kind).unwrap();
        let before = migrate::schema_dump(&conn).unwrap();
        migrate::migrate(&conn, kind).unwrap();
        drop(conn);
        let conn = open(&path, kind).unwrap();
        assert_eq!(migrate::schema_dump(&conn).unwrap(), before);
        assert!(before.contains("CREATE TABLE"), "{before}");
    }
}

#[test]
fn step_by_step_equals_fresh_install() {
    let dir = tmp();
    for kind in [Kind::Central, Kind::Inbound, Kind::Outbound] {
        let fresh = open(&dir.path().join(format!("fresh-{kind:?}.db")), kind).unwrap();
        let stepped = Connection::open(dir.path().join(format!("step-{kind:?}.db"))).unwrap();
        for n in 0..=migrate::migrations(kind).len() {
            migrate::migrate_to(&stepped, kind, n).unwrap();
            assert_eq!(migrate::version(&stepped).unwrap(), n);
        }
        assert_eq!(migrate::schema_dump(&stepped).unwrap(), migrate::schema_dump(&fresh).unwrap());
    }
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tmp();
    let path = dir.path().join("pincer.db");
    let conn = open(&path, Kind::Central).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let err = format!("{:#}", open(&path, Kind::Central).unwrap_err());
    assert!(err.contains("999") && err.contains("newer pincer"), "{err}");
}

#[test]
fn a_failed_migration_leaves_the_old_version() {
    let dir = tmp();
    let conn = Connection::open(dir.path().join("x.db")).unwrap();
    // A table that the first migration also creates makes it fail half-way.
    conn.execute_batch("CREATE TABLE delivered (x)").unwrap();
    assert!(migrate::migrate(&conn, Kind::Inbound).is_err());
    assert_eq!(migrate::version(&conn).unwrap(), 0);
    let tables: i64 =
        conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 1, "the failed migration was rolled back");
}

fn central_with_room() -> (tempfile::TempDir, Connection) {
    let dir = tmp();
    let conn = open(&dir.path().join("pincer.db"), Kind::Central).unwrap();
    central::insert_room(&conn, &central::Room::webchat_for_tests("r1")).unwrap();
    (dir, conn)
}

fn user_msg<'a>(text: &'a str, client_id: Option<&'a str>, files: &'a serde_json::Value) -> NewMessage<'a> {
    NewMessage {
        room_id: "r1",
        sender: "Ann",
        sender_id: Some("webchat:ann"),
        sender_type: "user",
        text,
        html: text,
        files,
        client_id,
        source_id: None,
        card: None,
        needs_routing: true,
        now: 10,
    }
}

#[test]
fn room_seq_is_gap_free_and_client_ids_are_idempotent() {
    let (_dir, conn) = central_with_room();
    let files = serde_json::json!([]);
    let (a, created) = central::insert_message(&conn, &user_msg("a", Some("c1"), &files)).unwrap();
    assert!(created);
    let (b, _) = central::insert_message(&conn, &user_msg("b", Some("c2"), &files)).unwrap();
    let (again, created) =
        central::insert_message(&conn, &user_msg("a changed", Some("c1"), &files)).unwrap();
    assert!(!created);
    assert_eq!(again, a);
    let (c, _) = central::insert_message(&conn, &user_msg("c", None, &files)).unwrap();
    assert_eq!((a.seq, b.seq, c.seq), (1, 2, 3));
    let all = central::messages_after(&conn, "r1", 0, 100).unwrap();
    assert_eq!(all.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(central::messages_after(&conn, "r1", 2, 100).unwrap(), vec![c.clone()]);
    assert_eq!(central::latest_messages(&conn, "r1", 2).unwrap(), vec![b, c]);
    assert_eq!(central::unrouted_messages(&conn, 10).unwrap().len(), 3);
    central::mark_routed(&conn, &a.id, 11).unwrap();
    assert_eq!(central::unrouted_messages(&conn, 10).unwrap().len(), 2);
}

#[test]
fn a_byte_bounded_read_stops_after_the_message_that_fills_it_and_says_more_follow() {
    let (_dir, conn) = central_with_room();
    let files = serde_json::json!([]);
    let big = "x".repeat(1000);
    for _ in 0..5 {
        central::insert_message(&conn, &user_msg(&big, None, &files)).unwrap();
    }
    // Text and HTML are 2 000 bytes a message: the third one reaches 5 000.
    let (some, more) = central::messages_after_within(&conn, "r1", 0, 100, 5000).unwrap();
    assert_eq!((some.iter().map(|m| m.seq).collect::<Vec<_>>(), more), (vec![1, 2, 3], true));
    // A budget smaller than one message still returns it.
    let (one, more) = central::messages_after_within(&conn, "r1", 3, 100, 10).unwrap();
    assert_eq!((one.iter().map(|m| m.seq).collect::<Vec<_>>(), more), (vec![4], true));
    // The rest fits: no more follow.
    let (rest, more) = central::messages_after_within(&conn, "r1", 3, 100, 1 << 20).unwrap();
    assert_eq!((rest.len(), more), (2, false));
    // A full count says more may follow.
    let (two, more) = central::messages_after_within(&conn, "r1", 0, 2, 1 << 20).unwrap();
    assert_eq!((two.len(), more), (2, true));
}

#[test]
fn agent_replies_are_stored_once_per_source() {
    let (_dir, conn) = central_with_room();
    let files = serde_json::json!([]);
    let mut m = user_msg("hi", None, &files);
    m.sender_type = "agent";
    m.source_id = Some("sess-1/msg-1");
    m.needs_routing = false;
    let (first, created) = central::insert_message(&conn, &m).unwrap();
    assert!(created);
    let (second, created) = central::insert_message(&conn, &m).unwrap();
    assert!(!created);
    assert_eq!(first, second);
    assert!(central::unrouted_messages(&conn, 10).unwrap().is_empty());
}

#[test]
fn pins_are_bounded_per_room_and_leave_with_their_message() {
    let (_dir, conn) = central_with_room();
    let files = serde_json::json!([]);
    let ids: Vec<String> = (0..3)
        .map(|i| central::insert_message(&conn, &user_msg(&format!("m{i}"), None, &files)).unwrap().0.id)
        .collect();
    assert!(pins::pin(&conn, "r1", &ids[0], "webchat:ann", 1, 2).unwrap());
    assert!(pins::pin(&conn, "r1", &ids[0], "webchat:ann", 2, 2).unwrap(), "pinned again: still one");
    assert!(pins::pin(&conn, "r1", &ids[1], "webchat:ann", 3, 2).unwrap());
    assert!(!pins::pin(&conn, "r1", &ids[2], "webchat:ann", 4, 2).unwrap(), "over the bound");
    assert!(pins::pin(&conn, "r1", &ids[1], "webchat:ann", 5, 2).unwrap(), "a pin there stays at the bound");
    let listed: Vec<String> = pins::list(&conn, "r1").unwrap().into_iter().map(|p| p.message_id).collect();
    assert_eq!(listed, [ids[1].clone(), ids[0].clone()], "newest first");
    assert_eq!(pins::forget(&conn, &ids[0]).unwrap(), 1);
    assert_eq!(pins::unpin(&conn, "r1", &ids[1]).unwrap(), 1);
    assert!(pins::list(&conn, "r1").unwrap().is_empty());
}

#[test]
fn owner_bootstrap_is_first_come() {
    let dir = tmp();
    let conn = open(&dir.path().join("pincer.db"), Kind::Central).unwrap();
    for u in ["webchat:a", "webchat:b"] {
        central::upsert_user(&conn, u, "webchat", u, 1).unwrap();
    }
    assert!(central::bootstrap_owner(&conn, "webchat:a", 1).unwrap());
    assert!(!central::bootstrap_owner(&conn, "webchat:b", 2).unwrap());
    assert!(central::is_owner(&conn, "webchat:a").unwrap());
    assert!(!central::is_owner(&conn, "webchat:b").unwrap());
}

fn session_dbs() -> (tempfile::TempDir, Connection, Connection) {
    let dir = tmp();
    let inb = open(&dir.path().join("inbound.db"), Kind::Inbound).unwrap();
    let out = open(&dir.path().join("outbound.db"), Kind::Outbound).unwrap();
    (dir, inb, out)
}

fn chat(id: &str, trigger: bool, process_after: Option<i64>) -> NewInbound<'_> {
    NewInbound::chat_for_tests(id, trigger, process_after)
}

#[test]
fn inbound_insert_is_idempotent_and_even() {
    let (_dir, inb, _out) = session_dbs();
    assert_eq!(inbound::insert(&inb, &chat("a", true, None)).unwrap(), (2, true));
    assert_eq!(inbound::insert(&inb, &chat("b", true, None)).unwrap(), (4, true));
    assert_eq!(inbound::insert(&inb, &chat("a", true, None)).unwrap(), (2, false));
    assert_eq!(inbound::max_seq(&inb).unwrap(), Some(4));
}

#[test]
fn agent_view_sees_pending_unclaimed_due_rows() {
    let (dir, inb, out) = session_dbs();
    inbound::insert(&inb, &chat("a", true, None)).unwrap();
    inbound::insert(&inb, &chat("b", false, None)).unwrap();
    inbound::insert(&inb, &chat("later", true, Some(500))).unwrap();
    inbound::insert(&inb, &chat("c", true, None)).unwrap();
    let view = open_agent_view(&dir.path().join("inbound.db"), &dir.path().join("outbound.db")).unwrap();
    let ids = |rows: Vec<inbound::InboundRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(inbound::pending(&view, 100, false, 10).unwrap()), ["a", "b", "c"]);
    assert_eq!(ids(inbound::pending(&view, 100, false, 2).unwrap()), ["b", "c"], "newest two, oldest first");
    assert_eq!(ids(inbound::pending(&view, 500, false, 10).unwrap()), ["a", "b", "later", "c"]);
    outbound::set_ack(&out, &["a", "c"], "processing", 5).unwrap();
    assert_eq!(ids(inbound::pending(&view, 100, false, 10).unwrap()), ["b"]);
    assert!(view.execute("DELETE FROM outb.processing_ack", []).is_err(), "the view is read-only");
}

#[test]
fn acks_complete_inbound_rows() {
    let (_dir, inb, out) = session_dbs();
    inbound::insert(&inb, &chat("a", true, None)).unwrap();
    inbound::insert(&inb, &chat("b", true, None)).unwrap();
    assert_eq!(inbound::due_count(&inb, 10).unwrap(), 2);
    outbound::set_ack(&out, &["a"], "completed", 7).unwrap();
    outbound::set_ack(&out, &["b"], "processing", 7).unwrap();
    assert_eq!(inbound::pending_rows(&inb).unwrap(), vec!["a".to_string(), "b".to_string()]);
    let acks = outbound::finished_acks_of(&out, &inbound::pending_rows(&inb).unwrap()).unwrap();
    assert_eq!(acks, vec![("a".to_string(), "completed".to_string())]);
    assert_eq!(inbound::apply_acks(&inb, &acks).unwrap(), 1);
    assert_eq!(inbound::due_count(&inb, 10).unwrap(), 1);
    assert_eq!(inbound::pending_rows(&inb).unwrap(), vec!["b".to_string()]);
    assert!(
        outbound::finished_acks_of(&out, &inbound::pending_rows(&inb).unwrap()).unwrap().is_empty(),
        "a row finished here is not asked about again"
    );
}

#[test]
fn outbound_rows_and_outcomes() {
    let (_dir, inb, out) = session_dbs();
    inbound::insert(&inb, &chat("a", true, None)).unwrap();
    let max_in = inbound::max_seq(&inb).unwrap();
    let row = |id| NewOutbound {
        id,
        kind: "chat",
        in_reply_to: Some("a"),
        timestamp: 3,
        deliver_after: None,
        channel_type: Some("webchat"),
        platform_id: Some("r1"),
        thread_id: None,
        content: r#"{"text":"echo"}"#,
    };
    assert_eq!(outbound::insert(&out, &row("o1"), max_in).unwrap(), 3);
    assert_eq!(outbound::insert(&out, &row("o2"), max_in).unwrap(), 5);
    let rows = outbound::rows_after(&out, 3, 10).unwrap();
    assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["o2"]);
    assert!(inbound::record_outcome(&inb, "o1", inbound::Outcome::Delivered, Some("m1"), None, 4).unwrap());
    assert!(!inbound::record_outcome(&inb, "o1", inbound::Outcome::Failed, None, Some("x"), 5).unwrap());
    assert!(inbound::has_outcome(&inb, "o1").unwrap());
    assert!(!inbound::has_outcome(&inb, "o2").unwrap());
}

#[test]
fn damaged_files_and_full_disks_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbound.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = open(&path, Kind::Inbound).unwrap_err();
    assert!(is_corrupt(&err), "{err:#}");
    assert!(!is_disk_full(&err));
    let full = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull)).context("writing");
    assert!(is_disk_full(&full) && !is_corrupt(&full));
}

#[test]
fn push_subscriptions_keep_the_newest_per_person() {
    use crate::db::people::{self, PushSub};
    let (_dir, conn) = central_with_room();
    central::upsert_user(&conn, "webchat:a", "webchat", "A", 1).unwrap();
    central::upsert_user(&conn, "webchat:b", "webchat", "B", 1).unwrap();
    let sub = |endpoint: &str, user: &str, at: i64| PushSub {
        endpoint: endpoint.into(),
        user_id: user.into(),
        session_id: None,
        p256dh: "k".into(),
        auth: "a".into(),
        created_at: at,
    };
    for i in 0..5 {
        people::upsert_push(&conn, &sub(&format!("https://p/{i}"), "webchat:a", i), 3).unwrap();
    }
    people::upsert_push(&conn, &sub("https://p/b", "webchat:b", 9), 3).unwrap();
    let of =
        |user| people::push_subs_of(&conn, user).unwrap().into_iter().map(|s| s.endpoint).collect::<Vec<_>>();
    assert_eq!(of("webchat:a"), ["https://p/2", "https://p/3", "https://p/4"], "the newest 3 kept");
    assert_eq!(of("webchat:b"), ["https://p/b"], "another person's are not touched");
    // A browser that signs in as someone else moves its endpoint to them.
    people::upsert_push(&conn, &sub("https://p/4", "webchat:b", 10), 3).unwrap();
    assert_eq!(of("webchat:a"), ["https://p/2", "https://p/3"]);
    assert_eq!(of("webchat:b"), ["https://p/b", "https://p/4"]);
}

#[test]
fn stored_messages_wait_for_their_batch_and_edits_and_deletes_keep_the_index_exact() {
    let (_dir, conn) = central_with_room();
    let files = serde_json::json!([]);
    let (a, _) = central::insert_message(&conn, &user_msg("otter one", None, &files)).unwrap();
    let (b, _) = central::insert_message(&conn, &user_msg("otter two", None, &files)).unwrap();
    assert!(central::indexed_texts(&conn, "otter").is_empty(), "not indexed yet");
    assert!(central::unindexed_left(&conn).unwrap());
    // Edited and taken back while waiting: the batch reads what the rows hold then.
    central::edit_message(&conn, &a.id, "otter one, edited", "", 11).unwrap();
    assert!(central::delete_message(&conn, &b.id, 12).unwrap());
    assert_eq!(central::index_batch(&conn, 1).unwrap(), 1, "one at a time when asked");
    assert_eq!(central::index_batch(&conn, 100).unwrap(), 1);
    assert_eq!(central::index_batch(&conn, 100).unwrap(), 0);
    assert!(!central::unindexed_left(&conn).unwrap());
    assert_eq!(central::indexed_texts(&conn, "otter"), ["otter one, edited"]);
    assert_eq!(central::indexed_texts(&conn, "edited"), ["otter one, edited"]);

    // Indexed, then edited: the old words leave the index, the new ones enter it.
    central::edit_message(&conn, &a.id, "badger", "", 13).unwrap();
    assert!(central::indexed_texts(&conn, "otter").is_empty());
    assert_eq!(central::indexed_texts(&conn, "badger"), ["badger"]);
    assert!(!central::unindexed_left(&conn).unwrap(), "an edit of an indexed message is indexed at once");
    conn.execute("INSERT INTO message_search (message_search, rank) VALUES ('integrity-check', 1)", [])
        .expect("the index matches the messages");
}

#[test]
fn deleting_a_room_takes_its_messages_out_and_a_reused_rowid_is_indexed_at_once() {
    let (_dir, conn) = central_with_room();
    let files = serde_json::json!([]);
    central::insert_message(&conn, &user_msg("heron indexed", None, &files)).unwrap();
    central::index_batch(&conn, 100).unwrap();
    central::insert_message(&conn, &user_msg("heron waiting", None, &files)).unwrap();
    assert!(central::delete_room(&conn, "r1").unwrap());
    assert!(!central::unindexed_left(&conn).unwrap(), "the waiting one is gone too");
    assert!(central::indexed_texts(&conn, "heron").is_empty());
    // The table is empty again: the next message gets the rowid an indexed one had, below the
    // batches' mark, so it is indexed as it is stored.
    central::insert_room(&conn, &central::Room::webchat_for_tests("r1")).unwrap();
    central::insert_message(&conn, &user_msg("heron again", None, &files)).unwrap();
    assert_eq!(central::indexed_texts(&conn, "heron"), ["heron again"]);
    assert!(!central::unindexed_left(&conn).unwrap());
    assert_eq!(central::index_batch(&conn, 100).unwrap(), 0);
    conn.execute("INSERT INTO message_search (message_search, rank) VALUES ('integrity-check', 1)", [])
        .expect("the index matches the messages");
}

#[test]
fn messages_indexed_before_the_batches_stay_indexed_once_and_new_ones_wait() {
    let dir = tmp();
    let conn = Connection::open(dir.path().join("pincer.db")).unwrap();
    conn.pragma_update(None, "foreign_keys", true).unwrap();
    let before = migrate::CENTRAL.iter().position(|(f, _)| *f == "0015_search_batches.sql").unwrap();
    migrate::migrate_to(&conn, Kind::Central, before).unwrap();
    conn.execute(
        "INSERT INTO rooms (id, channel_type, platform_id, name, is_group, created_at) VALUES ('r1', 'webchat', 'r1', 'Room', 1, 1)",
        [],
    )
    .unwrap();
    let files = serde_json::json!([]);
    central::insert_message(&conn, &user_msg("gannet old", None, &files)).unwrap();
    migrate::migrate(&conn, Kind::Central).unwrap();
    assert!(!central::unindexed_left(&conn).unwrap(), "indexed by the old trigger, not again");
    central::insert_message(&conn, &user_msg("gannet new", None, &files)).unwrap();
    assert_eq!(central::indexed_texts(&conn, "gannet"), ["gannet old"]);
    assert_eq!(central::index_batch(&conn, 100).unwrap(), 1);
    assert_eq!(central::indexed_texts(&conn, "gannet"), ["gannet old", "gannet new"]);
    conn.execute("INSERT INTO message_search (message_search, rank) VALUES ('integrity-check', 1)", [])
        .expect("the index matches the messages");
}
