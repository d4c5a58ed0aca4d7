//! Workers: registration on Hello, heartbeats, disconnects and the lost-worker sweep.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, new_id, now_ms};
use crate::domain::{Device, Worker, WorkerHello, WorkerState};
use crate::error::{Error, Result};

impl Store {
    /// Records a worker that said Hello and returns it connected. A known
    /// `worker_id` is reused (a reconnect); an unknown or absent one gets a new id.
    pub async fn register_worker(&self, hello: WorkerHello) -> Result<Worker> {
        self.call(move |conn| {
            let now = now_ms();
            let known = match &hello.worker_id {
                Some(id) => conn
                    .query_row("SELECT id FROM workers WHERE id = ?1", [id], |r| r.get::<_, String>(0))
                    .optional()?,
                None => None,
            };
            let id = known.unwrap_or_else(new_id);
            let devices_json =
                serde_json::to_string(&hello.devices).map_err(|e| Error::corrupt("workers", &id, e))?;
            conn.execute(
                "INSERT INTO workers (id, hostname, agent_version, state, devices_json, cpu_cores, \
                 connected_at_ms, last_seen_ms) VALUES (?1, ?2, ?3, 'connected', ?4, ?5, ?6, ?6) \
                 ON CONFLICT (id) DO UPDATE SET hostname = ?2, agent_version = ?3, state = 'connected', \
                 devices_json = ?4, cpu_cores = ?5, connected_at_ms = ?6, last_seen_ms = ?6",
                params![id, hello.hostname, hello.agent_version, devices_json, hello.cpu_cores, now],
            )?;
            load_worker(conn, &id)
        })
        .await
    }

    /// Notes that a connected worker was heard from now.
    pub async fn touch_worker(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.call(move |conn| {
            let changed = conn.execute(
                "UPDATE workers SET last_seen_ms = ?2, state = 'connected' WHERE id = ?1",
                params![id, now_ms()],
            )?;
            if changed == 0 { Err(Error::WorkerNotFound(id)) } else { Ok(()) }
        })
        .await
    }

    /// Notes that a worker's stream closed; it stays schedulable-later until
    /// the sweep declares it lost.
    pub async fn disconnect_worker(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE workers SET state = 'disconnected' WHERE id = ?1 AND state = 'connected'",
                [&id],
            )?;
            Ok(())
        })
        .await
    }

    /// Declares lost every worker not heard from since `silent_since_ms`, and
    /// returns their ids (the scheduler fails their ranks' attempts).
    pub async fn mark_lost_workers(&self, silent_since_ms: i64) -> Result<Vec<String>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let ids = {
                let mut statement = tx.prepare(
                    "SELECT id FROM workers WHERE state != 'lost' AND last_seen_ms < ?1 ORDER BY id",
                )?;
                let rows = statement.query_map([silent_since_ms], |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()?
            };
            for id in &ids {
                tx.execute("UPDATE workers SET state = 'lost' WHERE id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// One worker by id.
    pub async fn get_worker(&self, id: &str) -> Result<Worker> {
        let id = id.to_owned();
        self.call(move |conn| load_worker(conn, &id)).await
    }

    /// Workers by hostname, then id; lost ones only when asked for.
    pub async fn list_workers(&self, include_lost: bool) -> Result<Vec<Worker>> {
        self.call(move |conn| {
            let ids = {
                let mut statement =
                    conn.prepare("SELECT id FROM workers WHERE ?1 OR state != 'lost' ORDER BY hostname, id")?;
                let rows = statement.query_map([include_lost], |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()?
            };
            ids.iter().map(|id| load_worker(conn, id)).collect()
        })
        .await
    }
}

/// Reads one worker with its busy slots: ranks of live attempts placed on it.
fn load_worker(conn: &Connection, id: &str) -> Result<Worker> {
    let row = conn
        .query_row(
            "SELECT hostname, agent_version, state, devices_json, cpu_cores, connected_at_ms, last_seen_ms, \
             (SELECT count(*) FROM attempt_ranks r JOIN attempts a ON a.id = r.attempt_id \
              WHERE r.worker_id = w.id AND a.state IN ('pending', 'running')) \
             FROM workers w WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, u32>(7)?,
                ))
            },
        )
        .optional()?;
    let (hostname, agent_version, state, devices_json, cpu_cores, connected_at_ms, last_seen_ms, slots_busy) =
        row.ok_or_else(|| Error::WorkerNotFound(id.to_owned()))?;
    let state = WorkerState::parse(&state)
        .ok_or_else(|| Error::corrupt("workers", id, format!("state {state:?}")))?;
    let devices: Vec<Device> =
        serde_json::from_str(&devices_json).map_err(|e| Error::corrupt("workers", id, e))?;
    Ok(Worker {
        id: id.to_owned(),
        hostname,
        agent_version,
        state,
        devices,
        cpu_cores,
        slots_busy,
        connected_at_ms,
        last_seen_ms,
    })
}
