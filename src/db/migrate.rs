//! Schema migrations: append-only numbered files in `sql/<kind>/`, embedded at compile time.
//!
//! The applied count is `PRAGMA user_version`. Each pending file runs in its own exclusive
//! transaction together with the `user_version` bump, so a crash leaves the file at a whole
//! version. Never edit, reorder or delete an applied file: add a new one. A file whose version is
//! newer than this binary is refused (it was written by a newer pincer).

use anyhow::{Context, bail};
use rusqlite::Connection;

use super::Kind;

/// `(file name, SQL)` in order; the index + 1 is the schema version after applying it.
pub type Migration = (&'static str, &'static str);

pub const CENTRAL: &[Migration] = &[
    ("0001_init.sql", include_str!("../../sql/central/0001_init.sql")),
    ("0002_message_extras.sql", include_str!("../../sql/central/0002_message_extras.sql")),
    ("0003_container_generation.sql", include_str!("../../sql/central/0003_container_generation.sql")),
    ("0004_sign_in.sql", include_str!("../../sql/central/0004_sign_in.sql")),
    ("0005_push.sql", include_str!("../../sql/central/0005_push.sql")),
    ("0006_approvals.sql", include_str!("../../sql/central/0006_approvals.sql")),
    ("0007_sender_policy.sql", include_str!("../../sql/central/0007_sender_policy.sql")),
    ("0008_search.sql", include_str!("../../sql/central/0008_search.sql")),
    ("0009_room_engagement.sql", include_str!("../../sql/central/0009_room_engagement.sql")),
    ("0010_message_deleted.sql", include_str!("../../sql/central/0010_message_deleted.sql")),
    ("0011_room_pins.sql", include_str!("../../sql/central/0011_room_pins.sql")),
    ("0012_message_tools.sql", include_str!("../../sql/central/0012_message_tools.sql")),
    ("0013_model_endpoints.sql", include_str!("../../sql/central/0013_model_endpoints.sql")),
    ("0014_message_pins.sql", include_str!("../../sql/central/0014_message_pins.sql")),
    ("0015_search_batches.sql", include_str!("../../sql/central/0015_search_batches.sql")),
];
pub const INBOUND: &[Migration] = &[
    ("0001_init.sql", include_str!("../../sql/inbound/0001_init.sql")),
    ("0002_task_states.sql", include_str!("../../sql/inbound/0002_task_states.sql")),
];
pub const OUTBOUND: &[Migration] = &[
    ("0001_init.sql", include_str!("../../sql/outbound/0001_init.sql")),
    ("0002_conversation_rows.sql", include_str!("../../sql/outbound/0002_conversation_rows.sql")),
];

pub fn migrations(kind: Kind) -> &'static [Migration] {
    match kind {
        Kind::Central => CENTRAL,
        Kind::Inbound => INBOUND,
        Kind::Outbound => OUTBOUND,
    }
}

/// Brings the schema to the newest version this binary knows.
pub fn migrate(conn: &Connection, kind: Kind) -> anyhow::Result<()> {
    migrate_to(conn, kind, migrations(kind).len())
}

/// Applies migrations up to `target` (a prefix of the list); used by tests to upgrade step by step.
pub fn migrate_to(conn: &Connection, kind: Kind, target: usize) -> anyhow::Result<()> {
    let list = migrations(kind);
    assert!(target <= list.len());
    let current = version(conn)?;
    if current > list.len() {
        bail!(
            "the {kind:?} database has schema version {current} but this pincer knows only up to {}: \
             it was written by a newer pincer; run that version or restore a backup",
            list.len()
        );
    }
    for (idx, (name, sql)) in list.iter().enumerate().take(target).skip(current) {
        // Exclusive: no other connection may read a half-migrated schema.
        conn.execute_batch("BEGIN EXCLUSIVE")?;
        let res =
            conn.execute_batch(sql).and_then(|()| conn.pragma_update(None, "user_version", (idx + 1) as i64));
        match res {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e).with_context(|| format!("applying sql/{}/{name}", dir(kind)));
            }
        }
    }
    Ok(())
}

/// The schema version recorded in the file.
pub fn version(conn: &Connection) -> anyhow::Result<usize> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(v.max(0) as usize)
}

fn dir(kind: Kind) -> &'static str {
    match kind {
        Kind::Central => "central",
        Kind::Inbound => "inbound",
        Kind::Outbound => "outbound",
    }
}

/// The schema as text (`sqlite_master` sorted), for comparing two databases in tests.
pub fn schema_dump(conn: &Connection) -> anyhow::Result<String> {
    let mut stmt = conn.prepare(
        "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master \
         WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(format!(
            "{} {} on {}: {}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?
        ))
    })?;
    let mut out = String::new();
    for row in rows {
        out.push_str(&row?);
        out.push('\n');
    }
    Ok(out)
}
