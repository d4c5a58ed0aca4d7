//! The audit log: one row per mutating call (submit, cancel, user changes)
//! and per refused worker report, with the user or worker that made it.

use rusqlite::params;

use super::{Store, now_ms};
use crate::error::Result;

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub time_ms: i64,
    pub user: String,
    /// `submit`, `cancel`, `user_add`, …
    pub action: String,
    /// What it acted on: a job id, a user name.
    pub target: String,
    pub detail: String,
}

impl Store {
    /// Records a call and logs it as a structured `audit` line.
    pub async fn audit(&self, user: &str, action: &str, target: &str, detail: String) -> Result<()> {
        tracing::info!(target: "audit", user, action, target_id = target, detail = %detail, "audit");
        let entry = AuditEntry {
            time_ms: now_ms(),
            user: user.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail,
        };
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit (time_ms, user, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                entry.time_ms,
                entry.user,
                entry.action,
                entry.target,
                entry.detail
            ])?;
            Ok(())
        })
        .await
    }

    /// The newest `limit` audit entries, oldest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT time_ms, user, action, target, detail FROM \
                 (SELECT * FROM audit ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
            )?;
            let rows = statement.query_map([limit], |r| {
                Ok(AuditEntry {
                    time_ms: r.get(0)?,
                    user: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    detail: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a tracing subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_audited_call_is_a_row_and_a_structured_log_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("scop.db")).await.unwrap();
        store.audit("ada", "drain", "worker-1", "hostname \"node-1\"".into()).await.unwrap();
        store.audit("sam", "submit", "job-1", "priority 0".into()).await.unwrap();
        let rows = store.audit_log(1).await.unwrap();
        assert_eq!(rows.len(), 1, "the newest only");
        assert_eq!(
            (rows[0].user.as_str(), rows[0].action.as_str(), rows[0].target.as_str()),
            ("sam", "submit", "job-1")
        );
        assert_eq!(store.audit_log(10).await.unwrap()[0].action, "drain");
        store.close().await;

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().find(|l| l.contains("action=\"drain\"")).unwrap_or_else(|| panic!("{text}"));
        for field in
            ["INFO audit: audit", "user=\"ada\"", "target_id=\"worker-1\"", "detail=hostname \"node-1\""]
        {
            assert!(line.contains(field), "{field} not in {line}");
        }
    }
}
