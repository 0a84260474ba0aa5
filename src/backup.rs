//! Whole-install backups: `pincer backup DIR` and `pincer restore DIR`, and the copy of the
//! central DB kept before a schema upgrade.
//!
//! A backup holds `data/` (the central DB, every session's `inbound.db` and `outbound.db`,
//! uploads, the push and TLS keys) and `groups/` (the agents' folders), plus `manifest.json`
//! with each file's size and SHA-256. It is taken online: the SQLite files are copied with
//! `VACUUM INTO` (a consistent snapshot of each, read without writing to it) while a write
//! transaction on the central DB holds the host's central writes back, so no message is marked
//! routed or delivered between the central snapshot and the session snapshots. Whatever the
//! sessions did meanwhile is idempotent to redo (routing and delivery are keyed), so a restored
//! install resumes without losing or repeating a stored message.
//!
//! A restore needs the host stopped (the data directory's lock), verifies every file against
//! the manifest, refuses a backup from a newer pincer, and only then puts the files in place;
//! an install already there is moved aside, never deleted.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::db::{self, Connection, migrate};

pub const MANIFEST: &str = "manifest.json";
/// The layout of a backup directory this pincer writes and reads.
pub const FORMAT: u32 = 1;
/// Central DB copies kept before upgrades (the newest ones).
const UPGRADE_COPIES_KEPT: usize = 3;
/// Where those copies live, under the data directory (not part of a backup).
pub const UPGRADE_COPIES_DIR: &str = "backups";

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub pincer: String,
    pub created_at: i64,
    pub schema: Schema,
    pub files: Vec<Entry>,
}

/// Schema versions of the SQLite files in the backup (the newest of each kind).
#[derive(Debug, Serialize, Deserialize)]
pub struct Schema {
    pub central: usize,
    pub inbound: usize,
    pub outbound: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Files of the data directory that are not copied as files: databases (snapshotted), sockets,
/// the lock, journals, heartbeats, and the upgrade copies.
fn skipped(name: &str) -> bool {
    name == crate::host::lock::LOCK_FILE
        || name == ".heartbeat"
        || name == UPGRADE_COPIES_DIR
        || name.ends_with(".db")
        || name.ends_with(".db-wal")
        || name.ends_with(".db-shm")
        || name.ends_with(".db-journal")
        || name.ends_with(".sock")
}

/// Takes a backup of the install into `dest` (which must not exist or be empty).
pub fn backup(cfg: &Config, dest: &Path) -> anyhow::Result<Manifest> {
    let central = cfg.data_dir.join("pincer.db");
    if !central.is_file() {
        bail!("there is no pincer install at {} (no pincer.db): nothing to back up", cfg.data_dir.display());
    }
    if dest.exists() && std::fs::read_dir(dest)?.next().is_some() {
        bail!("{} is not empty: back up into a new directory", dest.display());
    }
    let data_out = dest.join("data");
    std::fs::create_dir_all(&data_out).with_context(|| format!("creating {}", data_out.display()))?;

    // The databases, under a write transaction on the central DB.
    let hold = Connection::open(&central)?;
    hold.busy_timeout(std::time::Duration::from_millis(db::BUSY_TIMEOUT_MS))?;
    hold.execute_batch("BEGIN IMMEDIATE").context("holding the central DB's writes for the snapshot")?;
    let snap = (|| -> anyhow::Result<()> {
        vacuum_into(&central, &data_out.join("pincer.db"), false)?;
        for db_file in session_dbs(&cfg.data_dir)? {
            let rel = db_file.strip_prefix(&cfg.data_dir)?;
            let out = data_out.join(rel);
            std::fs::create_dir_all(out.parent().unwrap_or(&data_out))?;
            vacuum_into(&db_file, &out, true)?;
        }
        Ok(())
    })();
    let _ = hold.execute_batch("ROLLBACK");
    snap?;

    copy_tree(&cfg.data_dir, &data_out, &skipped)?;
    if cfg.groups_dir.is_dir() {
        copy_tree(&cfg.groups_dir, &dest.join("groups"), &|_| false)?;
    }

    let mut schema = Schema { central: 0, inbound: 0, outbound: 0 };
    schema.central = version_of(&data_out.join("pincer.db"))?;
    for f in session_dbs(&data_out)? {
        let v = version_of(&f)?;
        match f.file_name().and_then(|n| n.to_str()) {
            Some("inbound.db") => schema.inbound = schema.inbound.max(v),
            _ => schema.outbound = schema.outbound.max(v),
        }
    }
    let mut files = Vec::new();
    for path in walk(dest)? {
        let rel = relative(dest, &path)?;
        let (size, sha256) = digest(&path)?;
        files.push(Entry { path: rel, size, sha256 });
    }
    let manifest = Manifest {
        format: FORMAT,
        pincer: env!("CARGO_PKG_VERSION").into(),
        created_at: crate::ids::now_ms(),
        schema,
        files,
    };
    let tmp = dest.join(".manifest.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dest.join(MANIFEST))?;
    Ok(manifest)
}

/// Brings an install back from `src`. The host must be stopped. An install already there is
/// moved aside (`<dir>.replaced-<ms>`), never deleted.
pub fn restore(cfg: &Config, src: &Path) -> anyhow::Result<(Manifest, Vec<PathBuf>)> {
    let manifest = verify(src)?;
    let data_taken = cfg.data_dir.is_dir() && std::fs::read_dir(&cfg.data_dir)?.next().is_some();
    let groups_taken = cfg.groups_dir.is_dir() && std::fs::read_dir(&cfg.groups_dir)?.next().is_some();
    if cfg.data_dir.is_dir() {
        // Held by a running host: refused before anything moves.
        drop(crate::host::lock::acquire(&cfg.data_dir).context("restoring needs pincer stopped")?);
    }
    let stamp = crate::ids::now_ms();
    let mut kept = Vec::new();
    for (dir, taken) in [(&cfg.data_dir, data_taken), (&cfg.groups_dir, groups_taken)] {
        if taken {
            let aside = PathBuf::from(format!("{}.replaced-{stamp}", dir.display()));
            std::fs::rename(dir, &aside)
                .with_context(|| format!("moving {} aside to {}", dir.display(), aside.display()))?;
            kept.push(aside);
        }
    }
    for e in &manifest.files {
        let from = src.join(&e.path);
        let to = match e.path.split_once('/') {
            Some(("data", rest)) => cfg.data_dir.join(rest),
            Some(("groups", rest)) => cfg.groups_dir.join(rest),
            _ => continue,
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::copy(&from, &to).with_context(|| format!("restoring {}", to.display()))?;
    }
    std::fs::create_dir_all(&cfg.groups_dir)?;
    Ok((manifest, kept))
}

/// Reads and checks a backup: format, schema not newer than this pincer, every file whole.
pub fn verify(src: &Path) -> anyhow::Result<Manifest> {
    let path = src.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}: is {} a pincer backup?", path.display(), src.display()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid manifest", path.display()))?;
    if manifest.format != FORMAT {
        bail!("this backup has format {} but this pincer reads format {FORMAT}", manifest.format);
    }
    let known = [
        ("central", manifest.schema.central, migrate::CENTRAL.len()),
        ("inbound", manifest.schema.inbound, migrate::INBOUND.len()),
        ("outbound", manifest.schema.outbound, migrate::OUTBOUND.len()),
    ];
    for (kind, have, know) in known {
        if have > know {
            bail!(
                "this backup was made by a newer pincer ({}): its {kind} database has schema version {have}, \
                 this pincer knows up to {know}; restore it with that version or newer",
                manifest.pincer
            );
        }
    }
    for e in &manifest.files {
        let rel = Path::new(&e.path);
        if rel.components().any(|c| !matches!(c, Component::Normal(_)))
            || !(e.path.starts_with("data/") || e.path.starts_with("groups/"))
        {
            bail!("the manifest names {:?}, which is outside the backup", e.path);
        }
        let file = src.join(rel);
        let (size, sha256) =
            digest(&file).with_context(|| format!("the backup is incomplete: {} is missing", e.path))?;
        if size != e.size || sha256 != e.sha256 {
            bail!("the backup is damaged: {} does not match its checksum in the manifest", e.path);
        }
    }
    if !manifest.files.iter().any(|e| e.path == "data/pincer.db") {
        bail!("the backup has no central database (data/pincer.db)");
    }
    Ok(manifest)
}

/// Before the host migrates the central DB to a newer schema: a copy it can be rolled back to
/// (`data/backups/pincer.db.v<old version>.<ms>`); the newest few are kept. Returns the copy.
pub fn before_upgrade(data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let central = data_dir.join("pincer.db");
    if !central.is_file() {
        return Ok(None);
    }
    let v = version_of(&central)?;
    if v == 0 || v >= migrate::CENTRAL.len() {
        return Ok(None);
    }
    let dir = data_dir.join(UPGRADE_COPIES_DIR);
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join(format!("pincer.db.v{v}.{}", crate::ids::now_ms()));
    vacuum_into(&central, &copy, false)?;
    let mut old: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("pincer.db.v")))
        .collect();
    old.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    while old.len() > UPGRADE_COPIES_KEPT {
        let _ = std::fs::remove_file(old.remove(0));
    }
    Ok(Some(copy))
}

/// A consistent copy of one SQLite file (read without writing to it when `read_only`).
fn vacuum_into(from: &Path, to: &Path, read_only: bool) -> anyhow::Result<()> {
    use rusqlite::OpenFlags;
    let flags = if read_only { OpenFlags::SQLITE_OPEN_READ_ONLY } else { OpenFlags::SQLITE_OPEN_READ_WRITE };
    let conn = Connection::open_with_flags(from, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening {}", from.display()))?;
    conn.busy_timeout(std::time::Duration::from_millis(db::BUSY_TIMEOUT_MS))?;
    let to_str = to.to_str().context("backup path is not UTF-8")?;
    conn.execute("VACUUM INTO ?1", [to_str]).with_context(|| format!("copying {}", from.display()))?;
    Ok(())
}

fn version_of(file: &Path) -> anyhow::Result<usize> {
    let conn = Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    migrate::version(&conn)
}

/// Every session's `inbound.db` and `outbound.db` under a data directory.
fn session_dbs(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let root = data_dir.join("sessions");
    let Ok(agents) = std::fs::read_dir(&root) else { return Ok(out) };
    for agent in agents.flatten() {
        let Ok(sessions) = std::fs::read_dir(agent.path()) else { continue };
        for s in sessions.flatten() {
            for name in ["inbound.db", "outbound.db"] {
                let f = s.path().join(name);
                if f.is_file() {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies a directory tree (files and symlinks; `skip` by name) into `to`.
fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if skip(&name.to_string_lossy()) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst, skip)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
        // Sockets, links and the like are not data.
    }
    Ok(())
}

/// Every regular file under `dir`, sorted (the manifest is not listed).
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && e.file_name() != MANIFEST {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> anyhow::Result<String> {
    let rel = path.strip_prefix(root)?;
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    Ok(parts.join("/"))
}

/// Size and SHA-256 (hex) of a file.
fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
    let hex = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Kind;

    fn cfg(root: &Path) -> Config {
        let mut env = std::collections::BTreeMap::new();
        env.insert("PINCER_DATA_DIR".to_string(), root.join("data").to_string_lossy().into_owned());
        env.insert("PINCER_GROUPS_DIR".to_string(), root.join("groups").to_string_lossy().into_owned());
        Config::from_map(root, &env).unwrap()
    }

    #[test]
    fn a_backup_restores_byte_for_byte_and_refuses_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path());
        std::fs::create_dir_all(c.data_dir.join("sessions/ag-1/s-1")).unwrap();
        let central = db::open(&c.data_dir.join("pincer.db"), Kind::Central).unwrap();
        central.execute_batch("CREATE TABLE probe(x); INSERT INTO probe VALUES (42);").unwrap();
        drop(db::open(&c.data_dir.join("sessions/ag-1/s-1/inbound.db"), Kind::Inbound).unwrap());
        std::fs::create_dir_all(c.data_dir.join("push")).unwrap();
        std::fs::write(c.data_dir.join("push/vapid-private.key"), b"key").unwrap();
        std::fs::write(c.data_dir.join("sessions/ag-1/s-1/link.sock"), b"").unwrap();
        std::fs::create_dir_all(c.groups_dir.join("assistant")).unwrap();
        std::fs::write(c.groups_dir.join("assistant/AGENT.md"), b"Be kind.").unwrap();

        let out = tmp.path().join("bk");
        let m = backup(&c, &out).unwrap();
        assert_eq!(m.schema.central, migrate::CENTRAL.len(), "VACUUM INTO keeps the schema version");
        assert_eq!(m.schema.inbound, migrate::INBOUND.len());
        let paths: Vec<&str> = m.files.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "data/pincer.db",
            "data/push/vapid-private.key",
            "data/sessions/ag-1/s-1/inbound.db",
            "groups/assistant/AGENT.md",
        ] {
            assert!(paths.contains(&want), "{want} in {paths:?}");
        }
        assert!(!paths.iter().any(|p| p.ends_with(".sock")), "{paths:?}");
        assert!(backup(&c, &out).unwrap_err().to_string().contains("not empty"));

        // Over the install that is there: it is kept aside.
        drop(central);
        let (_, kept) = restore(&c, &out).unwrap();
        assert_eq!(kept.len(), 2, "data and groups kept: {kept:?}");
        let back = db::open(&c.data_dir.join("pincer.db"), Kind::Central).unwrap();
        assert_eq!(back.query_row("SELECT x FROM probe", [], |r| r.get::<_, i64>(0)).unwrap(), 42);
        assert_eq!(std::fs::read(c.groups_dir.join("assistant/AGENT.md")).unwrap(), b"Be kind.");
        let aside: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("data.replaced-"))
            .collect();
        assert_eq!(aside.len(), 1, "the replaced install is kept");

        // Damage and a newer schema are refused before anything moves.
        let key = out.join("data/push/vapid-private.key");
        std::fs::write(&key, b"kex").unwrap();
        let e = verify(&out).unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("vapid-private.key"), "{e}");
        std::fs::write(&key, b"key").unwrap();
        let text = std::fs::read_to_string(out.join(MANIFEST)).unwrap();
        let newer = text.replacen(
            &format!("\"central\": {}", migrate::CENTRAL.len()),
            &format!("\"central\": {}", migrate::CENTRAL.len() + 1),
            1,
        );
        std::fs::write(out.join(MANIFEST), newer).unwrap();
        assert!(verify(&out).unwrap_err().to_string().contains("newer pincer"));
    }

    #[test]
    fn an_upgrade_keeps_a_copy_of_the_older_schema() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pincer.db");
        let conn = Connection::open(&path).unwrap();
        migrate::migrate_to(&conn, Kind::Central, 3).unwrap();
        drop(conn);
        let copy = before_upgrade(tmp.path()).unwrap().expect("a copy");
        assert!(copy.file_name().unwrap().to_string_lossy().starts_with("pincer.db.v3."), "{copy:?}");
        assert_eq!(version_of(&copy).unwrap(), 3);
        drop(db::open(&path, Kind::Central).unwrap());
        assert_eq!(before_upgrade(tmp.path()).unwrap(), None, "nothing to keep at the newest schema");
    }
}
