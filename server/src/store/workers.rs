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
                    .prepare_cached("SELECT id FROM workers WHERE id = ?1")?
                    .query_row([id], |r| r.get::<_, String>(0))
                    .optional()?,
                None => None,
            };
            let id = known.unwrap_or_else(new_id);
            let devices_json =
                serde_json::to_string(&hello.devices).map_err(|e| Error::corrupt("workers", &id, e))?;
            conn.prepare_cached(
                "INSERT INTO workers (id, hostname, agent_version, state, devices_json, cpu_cores, \
                 connected_at_ms, last_seen_ms) VALUES (?1, ?2, ?3, 'connected', ?4, ?5, ?6, ?6) \
                 ON CONFLICT (id) DO UPDATE SET hostname = ?2, agent_version = ?3, state = 'connected', \
                 devices_json = ?4, cpu_cores = ?5, connected_at_ms = ?6, last_seen_ms = ?6",
            )?
            .execute(params![
                id,
                hello.hostname,
                hello.agent_version,
                devices_json,
                hello.cpu_cores,
                now
            ])?;
            load_worker(conn, &id)
        })
        .await
    }

    /// Records when workers were last heard from, in one transaction. A lost
    /// worker that is heard from again (its stream survived) is connected again.
    pub async fn touch_workers(&self, seen: Vec<(String, i64)>) -> Result<()> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE workers SET last_seen_ms = max(last_seen_ms, ?2), \
                     state = CASE state WHEN 'lost' THEN 'connected' ELSE state END WHERE id = ?1",
                )?;
                for (id, at) in &seen {
                    update.execute(params![id, at])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Notes that a worker's stream closed; it stays schedulable-later until
    /// the sweep declares it lost.
    pub async fn disconnect_worker(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE workers SET state = 'disconnected' WHERE id = ?1 AND state = 'connected'",
            )?
            .execute([&id])?;
            Ok(())
        })
        .await
    }

    /// Declares lost every worker not heard from since `silent_since_ms`,
    /// except those in `alive` (the coordinator's memory heard from them since,
    /// or is handling their message), and returns their ids (the scheduler fails
    /// their ranks' attempts).
    pub async fn mark_lost_workers(&self, silent_since_ms: i64, alive: Vec<String>) -> Result<Vec<String>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let ids = {
                let mut statement = tx.prepare_cached(
                    "SELECT id FROM workers WHERE state != 'lost' AND last_seen_ms < ?1 ORDER BY id",
                )?;
                let rows = statement.query_map([silent_since_ms], |r| r.get::<_, String>(0))?;
                let silent = rows.collect::<rusqlite::Result<Vec<String>>>()?;
                silent.into_iter().filter(|id| !alive.contains(id)).collect::<Vec<_>>()
            };
            for id in &ids {
                tx.prepare_cached("UPDATE workers SET state = 'lost' WHERE id = ?1")?.execute([id])?;
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// Drains (`true`) or undrains a worker and returns it; the flag survives
    /// reconnects (a Hello does not touch it) and restarts.
    pub async fn set_worker_drained(&self, id: &str, drained: bool) -> Result<Worker> {
        let id = id.to_owned();
        self.call(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE workers SET drained = ?2 WHERE id = ?1")?
                .execute(params![id, drained])?;
            if changed == 0 {
                return Err(Error::WorkerNotFound(id));
            }
            load_worker(conn, &id)
        })
        .await
    }

    /// One worker by id.
    pub async fn get_worker(&self, id: &str) -> Result<Worker> {
        let id = id.to_owned();
        self.read(move |conn| load_worker(conn, &id)).await
    }

    /// Workers by hostname, then id; lost ones only when asked for. One
    /// statement, whatever the number of workers (the scheduler asks every pass).
    pub async fn list_workers(&self, include_lost: bool) -> Result<Vec<Worker>> {
        self.read(move |conn| {
            let sql = format!("{WORKER_SELECT} WHERE ?1 OR state != 'lost' ORDER BY hostname, id");
            let mut statement = conn.prepare_cached(&sql)?;
            let raws = statement.query_map([include_lost], RawWorker::from_row)?;
            raws.map(|raw| raw?.into_worker()).collect()
        })
        .await
    }
}

/// A worker with its busy slots: ranks of live attempts placed on it.
const WORKER_SELECT: &str = "SELECT id, hostname, agent_version, state, devices_json, cpu_cores, connected_at_ms, \
     last_seen_ms, drained, (SELECT count(*) FROM attempt_ranks r JOIN attempts a ON a.id = r.attempt_id \
     WHERE r.worker_id = w.id AND a.state IN ('pending', 'running')) FROM workers w";

/// A `WORKER_SELECT` row before its state and devices are parsed.
struct RawWorker {
    id: String,
    hostname: String,
    agent_version: String,
    state: String,
    devices_json: String,
    cpu_cores: u32,
    connected_at_ms: i64,
    last_seen_ms: i64,
    drained: bool,
    slots_busy: u32,
}

impl RawWorker {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawWorker> {
        Ok(RawWorker {
            id: r.get(0)?,
            hostname: r.get(1)?,
            agent_version: r.get(2)?,
            state: r.get(3)?,
            devices_json: r.get(4)?,
            cpu_cores: r.get(5)?,
            connected_at_ms: r.get(6)?,
            last_seen_ms: r.get(7)?,
            drained: r.get(8)?,
            slots_busy: r.get(9)?,
        })
    }

    fn into_worker(self) -> Result<Worker> {
        let state = WorkerState::parse(&self.state)
            .ok_or_else(|| Error::corrupt("workers", &self.id, format!("state {:?}", self.state)))?;
        let devices: Vec<Device> =
            serde_json::from_str(&self.devices_json).map_err(|e| Error::corrupt("workers", &self.id, e))?;
        Ok(Worker {
            id: self.id,
            hostname: self.hostname,
            agent_version: self.agent_version,
            state,
            devices,
            cpu_cores: self.cpu_cores,
            slots_busy: self.slots_busy,
            connected_at_ms: self.connected_at_ms,
            last_seen_ms: self.last_seen_ms,
            drained: self.drained,
        })
    }
}

/// Reads one worker with its busy slots.
fn load_worker(conn: &Connection, id: &str) -> Result<Worker> {
    let sql = format!("{WORKER_SELECT} WHERE id = ?1");
    let raw = conn.prepare_cached(&sql)?.query_row([id], RawWorker::from_row).optional()?;
    raw.ok_or_else(|| Error::WorkerNotFound(id.to_owned()))?.into_worker()
}
