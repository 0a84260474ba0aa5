//! Session DB connections kept open between operations by one thread (the router, delivery).
//!
//! Opening a session DB costs more than the work done with it: the open, the pragmas, reading
//! the schema and, read-write, the migration check. A kept connection still sees every write of
//! the other side: SQLite re-reads the file's change counter at the start of every read
//! transaction and drops its page cache when the file changed, and with `mmap_size=0` every read
//! goes through the file. That holds where both sides share one kernel's page cache — on Linux a
//! container's bind mount is the host's own file. Elsewhere (a container in a VM reaching the file
//! over virtiofs) only a fresh open revalidates the file, so there every operation opens again.
//!
//! A connection is kept per path and checked against the file's device and inode on every use,
//! so a session set aside (its folder renamed) or removed is never written through a connection
//! to the old file. At most [`KEPT_MAX`] are kept per thread; the least recently used one closes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Connection, Kind};

/// Connections kept per thread (two per busy session for delivery).
pub const KEPT_MAX: usize = 64;

/// Whether kept connections see the other side's writes here (see the module header).
pub const SHARED_PAGE_CACHE: bool = cfg!(target_os = "linux");

/// How a kept file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// [`super::open`]: read-write, pragmas set, migrated.
    Write,
    /// [`super::open_readonly`].
    Read,
}

/// A connection taken from [`Kept`]: give it back with [`Kept::put`] when the work with it went
/// well; dropping it closes it (after an error the next use opens the file again).
pub struct Taken {
    conn: Connection,
    key: (PathBuf, Mode),
    file: (u64, u64),
}

impl std::ops::Deref for Taken {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Taken {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// One thread's kept connections.
pub struct Kept {
    map: HashMap<(PathBuf, Mode), (Taken, u64)>,
    max: usize,
    clock: u64,
    keep: bool,
}

impl Default for Kept {
    fn default() -> Kept {
        Kept::new(KEPT_MAX, SHARED_PAGE_CACHE)
    }
}

impl Kept {
    /// `keep = false` opens the file for every use and closes it after.
    pub fn new(max: usize, keep: bool) -> Kept {
        Kept { map: HashMap::new(), max: max.max(1), clock: 0, keep }
    }

    /// The connection to `path`: the kept one if the file at `path` is still the one it was
    /// opened on, else a new one. Never creates the file.
    pub fn take(&mut self, path: &Path, kind: Kind, mode: Mode) -> anyhow::Result<Taken> {
        let file = identity(path)?;
        let key = (path.to_path_buf(), mode);
        if let Some((kept, _)) = self.map.remove(&key)
            && kept.file == file
        {
            return Ok(kept);
        }
        let conn = match mode {
            Mode::Write => super::open(path, kind)?,
            Mode::Read => super::open_readonly(path, kind)?,
        };
        Ok(Taken { conn, key, file })
    }

    /// Keeps `taken` for the next [`Kept::take`] of its file (closing the least recently used
    /// connection when [`KEPT_MAX`] are kept).
    pub fn put(&mut self, taken: Taken) {
        if !self.keep {
            return;
        }
        self.clock += 1;
        if self.map.len() >= self.max
            && !self.map.contains_key(&taken.key)
            && let Some(oldest) = self.map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
        self.map.insert(taken.key.clone(), (taken, self.clock));
    }

    /// Closes every kept connection to a file whose path has `part` as one of its components
    /// (a session id: the session ended or was set aside).
    pub fn forget_part(&mut self, part: &str) {
        self.map.retain(|(p, _), _| !p.components().any(|c| c.as_os_str() == part));
    }

    /// How many connections are kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The file's device and inode (an error if it does not exist: kept files are never created).
fn identity(path: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    Ok((m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(path: &Path) {
        drop(super::super::open(path, Kind::Inbound).unwrap());
    }

    fn cache_size(c: &Connection) -> i64 {
        c.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap()
    }

    /// Takes `path`, marks the connection (a connection-level setting) and puts it back.
    fn take_marked(kept: &mut Kept, path: &Path, mark: i64) {
        let c = kept.take(path, Kind::Inbound, Mode::Write).unwrap();
        c.pragma_update(None, "cache_size", mark).unwrap();
        kept.put(c);
    }

    fn mark_of(kept: &mut Kept, path: &Path) -> i64 {
        let c = kept.take(path, Kind::Inbound, Mode::Write).unwrap();
        let m = cache_size(&c);
        kept.put(c);
        m
    }

    #[test]
    fn a_kept_connection_sees_writes_of_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbound.db");
        make(&path);
        let other = super::super::open(&path, Kind::Inbound).unwrap();
        other.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let mut kept = Kept::new(4, true);
        let mut n = || -> i64 {
            let c = kept.take(&path, Kind::Inbound, Mode::Read).unwrap();
            let n = c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
            kept.put(c);
            n
        };
        assert_eq!(n(), 0);
        other.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert_eq!(n(), 1);
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn a_connection_is_kept_until_its_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let session = dir.path().join("s");
        let path = session.join("inbound.db");
        std::fs::create_dir_all(&session).unwrap();
        make(&path);
        let mut kept = Kept::new(4, true);
        take_marked(&mut kept, &path, -77);
        assert_eq!(mark_of(&mut kept, &path), -77, "the same connection again");
        // The session is set aside (its folder renamed) and a fresh one made at the same path.
        std::fs::rename(&session, dir.path().join("aside")).unwrap();
        assert!(kept.take(&path, Kind::Inbound, Mode::Write).is_err(), "a missing file is not created");
        assert!(!path.exists());
        std::fs::create_dir_all(&session).unwrap();
        make(&path);
        assert_ne!(mark_of(&mut kept, &path), -77, "the connection to the renamed file was not used");
    }

    #[test]
    fn a_connection_not_put_back_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbound.db");
        make(&path);
        let mut kept = Kept::new(4, true);
        take_marked(&mut kept, &path, -77);
        drop(kept.take(&path, Kind::Inbound, Mode::Write).unwrap());
        assert_ne!(mark_of(&mut kept, &path), -77);
    }

    #[test]
    fn at_most_max_are_kept_and_the_least_recent_closes() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("{i}.db"))).collect();
        paths.iter().for_each(|p| make(p));
        let mut kept = Kept::new(2, true);
        take_marked(&mut kept, &paths[0], -70);
        take_marked(&mut kept, &paths[1], -71);
        take_marked(&mut kept, &paths[0], -70);
        take_marked(&mut kept, &paths[2], -72);
        assert_eq!(kept.len(), 2);
        assert_eq!(mark_of(&mut kept, &paths[0]), -70, "used last but one: kept");
        assert_ne!(mark_of(&mut kept, &paths[1]), -71, "least recently used: closed");
        kept.forget_part("1.db");
        kept.forget_part(dir.path().file_name().unwrap().to_str().unwrap());
        assert!(kept.is_empty());
    }

    #[test]
    fn not_keeping_opens_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbound.db");
        make(&path);
        let mut kept = Kept::new(4, false);
        take_marked(&mut kept, &path, -77);
        assert_ne!(mark_of(&mut kept, &path), -77);
        assert!(kept.is_empty());
    }
}
