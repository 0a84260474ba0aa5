//! The runner's read-only view of the session: `inbound.db` with `outbound.db` attached as
//! `outb`, so "pending and not yet claimed" is one query.
//!
//! Where the host says the container's bind mount is its own file (`PINCER_KEEP_VIEW=1`: one
//! kernel, one page cache) the view stays open between polls: SQLite re-reads the file's change
//! counter at the start of every read transaction and drops its cache when the host wrote, so a
//! kept view sees every row. Opening the two files, reading their schema and preparing the
//! queries again was the largest part of an idle poll's CPU. Over a VM's file share only a fresh
//! open revalidates the file, so there every read opens it again.

use std::path::PathBuf;

use super::config::AgentConfig;
use crate::db::{self, Connection};

pub struct View {
    kept: Option<Connection>,
    keep: bool,
    inbound: PathBuf,
    outbound: PathBuf,
}

impl View {
    pub fn new(cfg: &AgentConfig) -> View {
        View::at(cfg.inbound_db(), cfg.outbound_db(), cfg.keep_view)
    }

    pub fn at(inbound: PathBuf, outbound: PathBuf, keep: bool) -> View {
        View { kept: None, keep, inbound, outbound }
    }

    /// Runs `read` in one read transaction (one snapshot of both files). After an error the view
    /// is closed, so the next read opens the files again.
    pub fn read<T>(&mut self, read: impl FnOnce(&Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let conn = match self.kept.take() {
            Some(c) => c,
            None => db::open_agent_view(&self.inbound, &self.outbound)?,
        };
        let tx = conn.unchecked_transaction()?;
        let value = read(&tx)?;
        tx.commit()?;
        if self.keep {
            self.kept = Some(conn);
        }
        Ok(value)
    }

    /// Whether a view is open now (tests).
    pub fn is_open(&self) -> bool {
        self.kept.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Kind;
    use crate::db::inbound::{self, NewInbound};

    fn row(id: &str) -> NewInbound<'_> {
        NewInbound::chat_for_tests(id, true, None)
    }

    fn pending_ids(view: &mut View) -> anyhow::Result<Vec<String>> {
        view.read(|v| Ok(inbound::pending(v, 10, false, 10)?.into_iter().map(|r| r.id).collect()))
    }

    #[test]
    fn a_kept_view_sees_every_later_write_of_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (inb_path, out_path) = (dir.path().join("inbound.db"), dir.path().join("outbound.db"));
        let host = db::open(&inb_path, Kind::Inbound).unwrap();
        let out = db::open(&out_path, Kind::Outbound).unwrap();
        let mut view = View::at(inb_path, out_path, true);
        assert!(pending_ids(&mut view).unwrap().is_empty());
        assert!(view.is_open());
        // The host writes inbound.db: the open view sees the row.
        inbound::insert(&host, &row("m1")).unwrap();
        assert_eq!(pending_ids(&mut view).unwrap(), ["m1"]);
        // The runner claims it in outbound.db: the attached file's change is seen too.
        crate::db::outbound::set_ack(&out, &["m1"], "processing", 5).unwrap();
        assert!(pending_ids(&mut view).unwrap().is_empty());
        inbound::insert(&host, &row("m2")).unwrap();
        assert_eq!(pending_ids(&mut view).unwrap(), ["m2"]);
        assert!(view.is_open());
    }

    #[test]
    fn a_view_is_closed_after_an_error_and_never_kept_when_not_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let (inb_path, out_path) = (dir.path().join("inbound.db"), dir.path().join("outbound.db"));
        db::open(&inb_path, Kind::Inbound).unwrap();
        db::open(&out_path, Kind::Outbound).unwrap();
        let mut view = View::at(inb_path.clone(), out_path.clone(), true);
        pending_ids(&mut view).unwrap();
        assert!(view.is_open());
        let failed: anyhow::Result<()> = view.read(|v| Ok(v.execute_batch("SELECT * FROM no_such_table")?));
        assert!(failed.is_err());
        assert!(!view.is_open(), "a view that met an error is opened again next time");
        pending_ids(&mut view).unwrap();
        assert!(view.is_open());

        let mut fresh = View::at(inb_path, out_path, false);
        pending_ids(&mut fresh).unwrap();
        assert!(!fresh.is_open(), "over a file share every read opens the files");
    }
}
