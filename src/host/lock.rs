//! Single-instance lock on the data directory.
//!
//! Two hosts on one data dir would race each other's delivery and lose replies, so the second one
//! refuses to start. The lock is an advisory file lock held for the life of the process (the OS
//! releases it if the process dies), with the holder's pid written for the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, bail};

pub const LOCK_FILE: &str = ".pincer.lock";

/// Holds the lock until dropped.
pub struct DataDirLock {
    _file: File,
}

pub fn acquire(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
            bail!(
                "another pincer{who} is already running on the data directory {}; stop it first \
                 (two hosts on one data directory would steal each other's replies)",
                data_dir.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        let err = format!("{:#}", acquire(dir.path()).err().unwrap());
        assert!(err.contains("already running") && err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        acquire(dir.path()).unwrap();
    }
}
