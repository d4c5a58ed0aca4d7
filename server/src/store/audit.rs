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
