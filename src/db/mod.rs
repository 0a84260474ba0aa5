//! All SQL lives under this module: opening files with their pragmas, migrations, and the typed
//! queries of the central DB ([`central`]), the session inbound DB ([`inbound`]) and the session
//! outbound DB ([`outbound`]).
//!
//! Every SQLite file is opened through [`open`], which sets the pragmas for its [`Kind`]: the
//! central DB is host-only and uses WAL; session DBs cross a Docker bind mount and therefore use
//! `journal_mode=DELETE` (never WAL: its shared-memory index is not coherent across the mount).

pub mod approvals;
pub mod central;
pub mod endpoints;
pub mod inbound;
pub mod kept;
pub mod migrate;
pub mod outbound;
pub mod people;
pub mod pins;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
pub use rusqlite::Connection;
use rusqlite::OpenFlags;

/// Prepared statements a connection keeps (queries use `prepare_cached`: parsing SQL was a
/// sixth of the router's time). Enough for the queries one thread runs in a loop.
pub const STATEMENTS_KEPT: usize = 48;

/// How long a connection waits for another connection's lock before failing with SQLITE_BUSY.
pub const BUSY_TIMEOUT_MS: u64 = 5000;

/// The kinds of SQLite files pincer opens; each has its own pragmas and migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `data/pincer.db`: WAL, foreign keys, host only.
    Central,
    /// A session's `inbound.db`: the host writes, the container reads.
    Inbound,
    /// A session's `outbound.db`: the container writes, the host reads.
    Outbound,
}

impl Kind {
    fn journal_mode(self) -> &'static str {
        match self {
            Kind::Central => "wal",
            Kind::Inbound | Kind::Outbound => "delete",
        }
    }
}

/// Opens (creating if needed) a file read-write, sets its pragmas and migrates it to the newest
/// schema this binary knows. Refuses a file whose schema is newer than the binary.
pub fn open(path: &Path, kind: Kind) -> anyhow::Result<Connection> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", path.display()))?;
    wait_for_locks(&mut conn)?;
    keep_plans(&conn)?;
    set_pragmas(&conn, kind).with_context(|| format!("setting pragmas on {}", path.display()))?;
    migrate::migrate(&conn, kind).with_context(|| format!("migrating {}", path.display()))?;
    Ok(conn)
}

/// Opens an existing file read-only without migrating it. Used for the other side's session DB:
/// the container reads `inbound.db`, the host reads `outbound.db`. `mmap_size=0` so every read goes
/// through the file (the page cache of a bind mount may lag otherwise).
pub fn open_readonly(path: &Path, kind: Kind) -> anyhow::Result<Connection> {
    let mut conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("opening {} read-only", path.display()))?;
    wait_for_locks(&mut conn)?;
    keep_plans(&conn)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.pragma_update(None, "query_only", true)?;
    if kind == Kind::Central {
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    Ok(conn)
}

/// The container's view for one poll: `inbound.db` read-only with `outbound.db` attached as
/// `outb`, so "pending and not yet claimed" is one query.
pub fn open_agent_view(inbound: &Path, outbound: &Path) -> anyhow::Result<Connection> {
    let conn = open_readonly(inbound, Kind::Inbound)?;
    let outbound_str = outbound.to_str().context("outbound.db path is not UTF-8")?;
    conn.execute("ATTACH DATABASE ?1 AS outb", [outbound_str])
        .with_context(|| format!("attaching {}", outbound.display()))?;
    Ok(conn)
}

/// Statements are prepared once and kept ([`STATEMENTS_KEPT`] per connection). The query
/// planner's stability guarantee stops SQLite from preparing a kept statement again whenever
/// a bound value might change its plan (it did for a LIMIT or a compared column: re-parsing was
/// a tenth of the router's time even with every statement cached).
fn keep_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// The busy handler of every connection: a connection that finds the file locked by the other
/// side retries for up to [`BUSY_TIMEOUT_MS`] in total, like `busy_timeout=5000`, but in steps of
/// 50 µs doubling to 1 ms instead of SQLite's 1, 2, 5, 10... ms (session DB locks are held for
/// well under a millisecond, so the stock steps would add whole milliseconds to every reply).
fn wait_for_locks(conn: &mut Connection) -> rusqlite::Result<()> {
    let mut started = Instant::now();
    conn.busy_handler(Some(move |count: i32| {
        if count == 0 {
            started = Instant::now();
        }
        if started.elapsed() >= Duration::from_millis(BUSY_TIMEOUT_MS) {
            return false;
        }
        std::thread::sleep(busy_step(count));
        true
    }))
}

/// The pause before busy retry number `count` (0-based): 50, 100, 200, 400, 800 µs, then 1 ms.
pub fn busy_step(count: i32) -> Duration {
    Duration::from_micros((50u64 << count.clamp(0, 5)).min(1000))
}

/// The one place pragmas are chosen. Options are explicit rather than SQLite's defaults.
fn set_pragmas(conn: &Connection, kind: Kind) -> anyhow::Result<()> {
    // Setting the journal mode takes a lock even when nothing changes, and the other side of a
    // session DB may hold one (the busy handler would then sleep): read first, set only if needed.
    let mut mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case(kind.journal_mode()) {
        mode = conn.pragma_update_and_check(None, "journal_mode", kind.journal_mode(), |r| r.get(0))?;
    }
    anyhow::ensure!(
        mode.eq_ignore_ascii_case(kind.journal_mode()),
        "journal_mode is {mode}, expected {} (is the file on a filesystem that supports it?)",
        kind.journal_mode()
    );
    // FULL: a message acknowledged to its sender survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    if kind != Kind::Central {
        conn.pragma_update(None, "mmap_size", 0)?;
    }
    Ok(())
}

/// Runs `f` inside a `BEGIN IMMEDIATE` transaction, so lock contention shows up at the start and
/// not half-way through; commits on `Ok`, rolls back on `Err` (and if `f` panics). `BEGIN`,
/// `COMMIT` and `ROLLBACK` are kept statements: preparing them afresh for every transaction was
/// a fiftieth of the host's time per message.
pub fn write_tx<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let open = Open(conn);
    let value = f(open.0)?;
    open.0.prepare_cached("COMMIT")?.execute([])?;
    Ok(value)
}

/// A transaction in progress: rolled back when dropped still open (`f` failed or panicked, or
/// `COMMIT` failed and left it open).
struct Open<'a>(&'a Connection);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit()
            && let Err(e) = self.0.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]))
        {
            log::warn!("rolling back a transaction: {e}");
        }
    }
}

/// A write transaction whose loss at a power failure only means doing idempotent work again
/// (the router's "routed" mark: routing a message twice is a no-op). On a WAL file it commits
/// without waiting for the disk (`synchronous=NORMAL`: consistent, never corrupt; durable at the
/// next full commit of any connection, which syncs the whole log, or at the checkpoint). Anything
/// acknowledged or counted as delivered never goes through here. On a rollback-journal file it is
/// [`write_tx`].
pub fn write_tx_redoable<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mode: String = conn.prepare_cached("PRAGMA journal_mode")?.query_row([], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return write_tx(conn, f);
    }
    conn.prepare_cached("PRAGMA synchronous = NORMAL")?.execute([])?;
    let res = write_tx(conn, f);
    let back = conn.prepare_cached("PRAGMA synchronous = FULL").and_then(|mut s| s.execute([]));
    let value = res?;
    back?;
    Ok(value)
}

#[cfg(test)]
mod tests;

/// The SQLite result code somewhere in an error's chain, if any.
fn sqlite_code(e: &anyhow::Error) -> Option<rusqlite::ErrorCode> {
    e.chain().find_map(|c| match c.downcast_ref::<rusqlite::Error>() {
        Some(rusqlite::Error::SqliteFailure(f, _)) => Some(f.code),
        _ => None,
    })
}

/// The file is damaged or not a database at all: retrying cannot help.
pub fn is_corrupt(e: &anyhow::Error) -> bool {
    matches!(sqlite_code(e), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

/// A read-only connection met a hot journal (a writer crashed mid-transaction) that only a
/// read-write connection can roll back.
pub fn needs_rollback(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _)) if f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK)
    })
}

/// The disk (or the file system's quota) is full.
pub fn is_disk_full(e: &anyhow::Error) -> bool {
    matches!(sqlite_code(e), Some(rusqlite::ErrorCode::DiskFull))
        || e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
        })
}
