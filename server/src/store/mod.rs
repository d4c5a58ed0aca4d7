//! The embedded SQLite store: jobs, stages, attempts, events, score statistics,
//! plans, workers and artifacts.
//!
//! **Threading.** One dedicated OS thread (`scop-store`) owns the only
//! `rusqlite::Connection`. Async callers send it closures over a bounded
//! channel and await the answer on a oneshot, so no SQLite call ever runs on a
//! tokio worker thread, and writes are serialised the way SQLite wants them.
//! The thread ends, closing the database cleanly, when the last [`Store`]
//! handle is dropped.
//!
//! **Events.** Every job state change is one transaction together with its
//! event row. Methods that append events notify the [`EventHub`] after the
//! commit, so `WatchJob` followers wake up without polling.

mod attempts;
pub use attempts::AttemptOutcome;
mod events;
mod hub;
mod jobs;
mod plans;
mod schema;
mod workers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};

pub use events::EVENT_PAGE;
pub use hub::EventHub;
pub use jobs::{JobCounts, JobFilter, JobPage};

/// Closures the store thread runs; each answers on its own oneshot.
type Call = Box<dyn FnOnce(&mut Connection) + Send>;

/// How many calls may wait for the store thread before callers wait to send.
const QUEUE_CAPACITY: usize = 1024;

/// A cheap, cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    calls: mpsc::Sender<Call>,
    hub: Arc<EventHub>,
    path: Arc<PathBuf>,
    /// Turns true once the store thread has closed the database.
    closed: watch::Receiver<bool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, switches it to WAL and
    /// applies pending migrations, all on the store thread.
    pub async fn open(path: &Path) -> Result<Store> {
        let (calls, mut queue) = mpsc::channel::<Call>(QUEUE_CAPACITY);
        let (opened, opened_rx) = oneshot::channel::<Result<()>>();
        let (closed_tx, closed) = watch::channel(false);
        let db_path = path.to_owned();
        std::thread::Builder::new()
            .name("scop-store".into())
            .spawn(move || {
                let mut conn = match open_connection(&db_path) {
                    Ok(conn) => {
                        let _ = opened.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                while let Some(call) = queue.blocking_recv() {
                    call(&mut conn);
                }
                if let Err((_, error)) = conn.close() {
                    tracing::error!(path = %db_path.display(), %error, "closing the store failed");
                }
                closed_tx.send_replace(true);
                tracing::debug!(path = %db_path.display(), "store closed");
            })
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        opened_rx.await.map_err(|_| Error::StoreClosed)??;
        Ok(Store { calls, hub: Arc::new(EventHub::default()), path: Arc::new(path.to_owned()), closed })
    }

    /// Drops this handle and waits until the database is closed, which happens
    /// once every other handle is gone too.
    pub async fn close(self) {
        let mut closed = self.closed.clone();
        drop(self);
        // An error means the thread is gone, which also means closed.
        let _ = closed.wait_for(|done| *done).await;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The notifier `WatchJob` subscribes to.
    pub fn hub(&self) -> &EventHub {
        &self.hub
    }

    /// Runs `f` on the store thread and returns its result.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call: Call = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.calls.send(call).await.map_err(|_| Error::StoreClosed)?;
        answer.await.map_err(|_| Error::StoreClosed)?
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
    }
    let mut conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Config(format!("{}: SQLite refused WAL mode (got {mode})", path.display())));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// A fresh, time-ordered id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::Store;

    /// A store in a fresh temporary directory, kept alive with it.
    pub async fn temp_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("scop.db")).await.unwrap();
        (store, dir)
    }
}

#[cfg(test)]
mod tests;
