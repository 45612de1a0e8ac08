//! One shiplog process per SQLite file.
//!
//! On SQLite every write goes through this process's one writer, and subscribers are
//! woken by it: a second process writing the same file would commit events the first
//! one's subscribers never hear of (they would see them only after a later local write
//! revealed the gap). So a second process refuses to start instead. Several instances
//! on one database are what PostgreSQL is for.
//!
//! The claim is an exclusive `flock` on a file beside the database
//! (`<database>-shiplog.lock`), taken before the database is migrated and held by the
//! writer until its connection is closed. The kernel drops it when the process ends,
//! however it ends (SIGKILL included), so a crash never leaves the file claimed. The
//! lock is on a file of its own, not on the database, so it cannot meet SQLite's own
//! locks; the holder writes its pid there for the error the next one shows.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StoreError;

/// How long a claim held by this very process (a store being closed while the next one
/// opens, as tests do) may take to be let go before the file counts as in use.
const GRACE: Duration = Duration::from_secs(2);
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// The claim on a database file. Let go when dropped.
#[derive(Debug)]
pub(super) struct Claim {
    _file: File,
}

/// The lock file for a database file: beside it, named after its canonical path, so
/// that `./a.db` and `/srv/x/a.db` claim the same one.
pub(super) fn lock_path(database: &Path) -> PathBuf {
    let absolute = match (database.parent(), database.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            match dir.canonicalize() {
                Ok(dir) => dir.join(name),
                Err(_) => database.to_path_buf(),
            }
        }
        _ => database.to_path_buf(),
    };
    let mut name = absolute.into_os_string();
    name.push("-shiplog.lock");
    PathBuf::from(name)
}

/// Claims the database file for this process, or says who holds it.
pub(super) async fn claim(database: &Path) -> Result<Claim, StoreError> {
    let path = lock_path(database);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|err| StoreError::Lock(format!("cannot open {}: {err}", path.display())))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                // A claim of this process is let go as soon as its old store closes
                // (which may need this very thread: wait without blocking it).
                if holder == Some(std::process::id()) && started.elapsed() < GRACE {
                    tokio::time::sleep(RETRY_EVERY).await;
                    continue;
                }
                return Err(StoreError::InUse {
                    database: database.display().to_string(),
                    pid: holder,
                });
            }
            Err(TryLockError::Error(err)) => {
                return Err(StoreError::Lock(format!(
                    "cannot lock {}: {err}",
                    path.display()
                )))
            }
        }
    }
    // Ours now: say so for whoever tries next.
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    if let Err(err) = written {
        // The claim holds without it; only the next one's message loses the pid.
        tracing::warn!(error = %err, path = %path.display(), "cannot record the pid in the lock file");
    }
    Ok(Claim { _file: file })
}

/// The pid the holder wrote, if it did.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_database_under_its_canonical_path() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("a.db");
        let canonical = dir.path().canonicalize().expect("canonical");
        assert_eq!(lock_path(&db), canonical.join("a.db-shiplog.lock"));
        let dotted = dir.path().join(".").join("a.db");
        assert_eq!(lock_path(&dotted), lock_path(&db));
    }

    #[tokio::test]
    async fn a_second_claim_of_this_process_waits_for_the_first_to_be_let_go() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("a.db");
        let first = claim(&db).await.expect("the first claim");
        let path = lock_path(&db);
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("the lock file")
                .trim(),
            std::process::id().to_string()
        );
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        claim(&db).await.expect("claimed once the first is let go");
        releaser.join().expect("the releaser");
    }
}
