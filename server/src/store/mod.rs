//! The embedded SQLite store: jobs, stages, attempts, events, score statistics,
//! plans, workers and artifacts.
//!
//! **Threading.** One dedicated OS thread (`scop-store`) owns the writing
//! `rusqlite::Connection`, and [`READERS`] more threads (`scop-store-read`)
//! own read-only ones. Async callers send them closures over bounded channels
//! and await the answer on a oneshot, so no SQLite call ever runs on a tokio
//! worker thread, writes are serialised the way SQLite wants them, and reads
//! (clients polling jobs, watchers, the scheduler's passes) run beside the
//! writes, as WAL allows, each in one read transaction so it sees one
//! snapshot. The threads end, closing the database cleanly, when the last
//! [`Store`] handle is dropped.
//!
//! **Events.** Every job state change is one transaction together with its
//! event row. Methods that append events notify the [`EventHub`] after the
//! commit, so `WatchJob` followers wake up without polling.

mod attempts;
mod audit;
pub use attempts::AttemptOutcome;
pub use audit::AuditEntry;
mod events;
mod hub;
mod jobs;
mod plans;
mod schema;
mod task_events;
pub use task_events::{Applied, TaskEffect};
mod tracking;
pub use tracking::{TRACKING_PAGE, TrackedRun};
mod workers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};

pub use events::EVENT_PAGE;
pub use hub::EventHub;
pub use jobs::{JobCounts, JobFilter, JobPage, NewBranch};

/// Closures the store thread runs; each answers on its own oneshot.
type Call = Box<dyn FnOnce(&mut Connection) + Send>;
/// Closures a reader thread runs.
type ReadCall = Box<dyn FnOnce(&Connection) + Send>;

/// Threads with a read-only connection.
pub const READERS: usize = 2;

/// How many calls may wait for the store thread before callers wait to send.
const QUEUE_CAPACITY: usize = 1024;

/// A cheap, cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    calls: mpsc::Sender<Call>,
    reads: mpsc::Sender<ReadCall>,
    hub: Arc<EventHub>,
    path: Arc<PathBuf>,
    /// How many of the store's threads have closed their connection.
    closed: watch::Receiver<usize>,
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
        let (closed_tx, closed) = watch::channel(0usize);
        let closed_tx = Arc::new(closed_tx);
        let writer_closed = closed_tx.clone();
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
                writer_closed.send_modify(|n| *n += 1);
                tracing::debug!(path = %db_path.display(), "store closed");
            })
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        opened_rx.await.map_err(|_| Error::StoreClosed)??;

        // Readers open once the writer has migrated the schema.
        let (reads, read_queue) = mpsc::channel::<ReadCall>(QUEUE_CAPACITY);
        let read_queue = Arc::new(std::sync::Mutex::new(read_queue));
        for _ in 0..READERS {
            let (opened, opened_rx) = oneshot::channel::<Result<()>>();
            let (queue, closed_tx, db_path) = (read_queue.clone(), closed_tx.clone(), path.to_owned());
            std::thread::Builder::new()
                .name("scop-store-read".into())
                .spawn(move || {
                    match open_reader(&db_path) {
                        Ok(conn) => {
                            let _ = opened.send(Ok(()));
                            // One reader waits on the queue at a time; the others run calls.
                            while let Some(call) = next_call(&queue) {
                                call(&conn);
                            }
                            if let Err((_, error)) = conn.close() {
                                tracing::error!(path = %db_path.display(), %error, "closing a store reader failed");
                            }
                        }
                        Err(e) => {
                            let _ = opened.send(Err(e));
                        }
                    }
                    closed_tx.send_modify(|n| *n += 1);
                })
                .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
            opened_rx.await.map_err(|_| Error::StoreClosed)??;
        }
        Ok(Store {
            calls,
            reads,
            hub: Arc::new(EventHub::default()),
            path: Arc::new(path.to_owned()),
            closed,
        })
    }

    /// Drops this handle and waits until the database is closed, which happens
    /// once every other handle is gone too.
    pub async fn close(self) {
        let mut closed = self.closed.clone();
        drop(self);
        // An error means the threads are gone, which also means closed.
        let _ = closed.wait_for(|done| *done == 1 + READERS).await;
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

    /// Runs the read-only `f` on a reader thread, inside one read transaction.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call: ReadCall = Box::new(move |conn| {
            let result = conn.unchecked_transaction().map_err(Error::from).and_then(|tx| f(&tx));
            let _ = reply.send(result);
        });
        self.reads.send(call).await.map_err(|_| Error::StoreClosed)?;
        answer.await.map_err(|_| Error::StoreClosed)?
    }
}

/// The next read call, or `None` once every [`Store`] handle is gone.
fn next_call(queue: &std::sync::Mutex<mpsc::Receiver<ReadCall>>) -> Option<ReadCall> {
    // A panicking call never holds this lock, so a poisoned lock is still a fine queue.
    queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).blocking_recv()
}

/// A read-only connection to the database the writer has opened and migrated.
fn open_reader(path: &Path) -> Result<Connection> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Distinct SQL statements the store keeps prepared.
const STATEMENT_CACHE: usize = 128;

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
    // Every query is prepared through the cache; room for all of them, so the
    // scheduler's passes and the heartbeats never re-parse SQL.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

#[cfg(test)]
impl Store {
    /// Keeps the writing thread busy for `how_long`, as a slow write would.
    pub(crate) async fn stall_writer_for_test(&self, how_long: std::time::Duration) {
        let _ = self
            .call(move |_| {
                std::thread::sleep(how_long);
                Ok(())
            })
            .await;
    }
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
