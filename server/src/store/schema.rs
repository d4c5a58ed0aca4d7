//! Schema migrations, applied in order and tracked with SQLite's `user_version`.
//!
//! Never edit a migration that has shipped; append a new one.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Migration `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "
    CREATE TABLE jobs (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT, -- submission order, for paging
        id             TEXT NOT NULL UNIQUE,
        request_id     TEXT UNIQUE,
        state          TEXT NOT NULL,                     -- queued|running|succeeded|failed|cancelled
        stage          TEXT,                              -- current or last stage
        stages         TEXT NOT NULL,                     -- the stage plan, comma-separated
        spec_yaml      TEXT NOT NULL,
        labels_json    TEXT NOT NULL,
        priority       INTEGER NOT NULL,
        created_at_ms  INTEGER NOT NULL,
        updated_at_ms  INTEGER NOT NULL,
        error          TEXT,
        attempt        INTEGER NOT NULL DEFAULT 0,        -- attempt number of the current stage
        last_sequence  INTEGER NOT NULL DEFAULT 0         -- latest event's sequence
    );
    CREATE INDEX jobs_by_state ON jobs (state, priority DESC, seq);

    CREATE TABLE job_labels (
        job_id TEXT NOT NULL REFERENCES jobs (id),
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (job_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX job_labels_by_pair ON job_labels (key, value);

    CREATE TABLE events (
        job_id    TEXT NOT NULL REFERENCES jobs (id),
        sequence  INTEGER NOT NULL,
        time_ms   INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        body      TEXT NOT NULL,                          -- JSON of domain::EventKind
        PRIMARY KEY (job_id, sequence)
    ) WITHOUT ROWID;

    CREATE TABLE stages (
        job_id         TEXT NOT NULL REFERENCES jobs (id),
        stage          TEXT NOT NULL,
        position       INTEGER NOT NULL,
        state          TEXT NOT NULL,                     -- pending|running|succeeded|failed|cancelled
        attempts       INTEGER NOT NULL DEFAULT 0,
        started_at_ms  INTEGER,
        finished_at_ms INTEGER,
        PRIMARY KEY (job_id, stage)
    ) WITHOUT ROWID;

    CREATE TABLE attempts (
        id              TEXT PRIMARY KEY,
        job_id          TEXT NOT NULL REFERENCES jobs (id),
        stage           TEXT NOT NULL,
        number          INTEGER NOT NULL,
        state           TEXT NOT NULL,                    -- pending|running|succeeded|failed|cancelled
        world_size      INTEGER NOT NULL,
        resume_from     TEXT,
        last_checkpoint TEXT,
        rendezvous_json TEXT,
        created_at_ms   INTEGER NOT NULL,
        finished_at_ms  INTEGER,
        error           TEXT,
        UNIQUE (job_id, stage, number)
    );
    CREATE INDEX attempts_by_state ON attempts (state);

    CREATE TABLE attempt_ranks (
        attempt_id   TEXT NOT NULL REFERENCES attempts (id),
        rank         INTEGER NOT NULL,
        worker_id    TEXT NOT NULL REFERENCES workers (id),
        device_index INTEGER NOT NULL,
        task_id      TEXT NOT NULL UNIQUE,
        PRIMARY KEY (attempt_id, rank)
    ) WITHOUT ROWID;
    CREATE INDEX attempt_ranks_by_worker ON attempt_ranks (worker_id);

    CREATE TABLE score_statistics (
        job_id         TEXT NOT NULL REFERENCES jobs (id),
        epoch          INTEGER NOT NULL,
        unit_index     INTEGER NOT NULL,
        unit           TEXT NOT NULL,
        beta           BLOB NOT NULL,                     -- little-endian f32
        gamma_abs      BLOB NOT NULL,                     -- little-endian f32
        attempt_id     TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        PRIMARY KEY (job_id, epoch, unit_index)
    ) WITHOUT ROWID;

    CREATE TABLE plans (
        job_id        TEXT PRIMARY KEY REFERENCES jobs (id),
        decided_at_ms INTEGER NOT NULL,
        body          TEXT NOT NULL                       -- JSON of domain::Plan
    );

    CREATE TABLE workers (
        id              TEXT PRIMARY KEY,
        hostname        TEXT NOT NULL,
        agent_version   TEXT NOT NULL,
        state           TEXT NOT NULL,                    -- connected|disconnected|lost
        devices_json    TEXT NOT NULL,
        cpu_cores       INTEGER NOT NULL,
        connected_at_ms INTEGER NOT NULL,
        last_seen_ms    INTEGER NOT NULL
    );

    CREATE TABLE artifacts (
        job_id        TEXT NOT NULL REFERENCES jobs (id),
        path          TEXT NOT NULL,
        kind          TEXT NOT NULL,
        stage         TEXT NOT NULL,
        size_bytes    INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (job_id, path)
    ) WITHOUT ROWID;
    ",
    // 2: who submitted each job and how many ranks it asks for (quotas), and
    // the audit log of mutating calls.
    "
    ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN world_size INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN name TEXT NOT NULL DEFAULT '';
    CREATE INDEX jobs_by_owner ON jobs (owner, state);

    CREATE TABLE audit (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms  INTEGER NOT NULL,
        user     TEXT NOT NULL,
        action   TEXT NOT NULL,                           -- submit|cancel|user_add|...
        target   TEXT NOT NULL,                           -- a job id, a user name
        detail   TEXT NOT NULL
    );
    ",
    // 3: the highest sequence number of each rank's task events applied, so a
    // resent event is applied once.
    "
    ALTER TABLE attempt_ranks ADD COLUMN events_applied INTEGER NOT NULL DEFAULT 0;
    ",
    // 4: the MLflow run of each tracked job and how far its events were logged,
    // so a restarted coordinator goes on with the same run.
    "
    CREATE TABLE tracking_runs (
        job_id          TEXT PRIMARY KEY REFERENCES jobs (id),
        run_id          TEXT NOT NULL,
        experiment_id   TEXT NOT NULL,
        artifact_path   TEXT NOT NULL,                    -- the run's folder under the artifact proxy
        logged_sequence INTEGER NOT NULL DEFAULT 0,       -- the last event logged to the run
        ended           INTEGER NOT NULL DEFAULT 0        -- 1 once the run got its final status
    ) WITHOUT ROWID;
    ",
    // 5: workers an admin drained (no new ranks placed on them).
    "
    ALTER TABLE workers ADD COLUMN drained INTEGER NOT NULL DEFAULT 0;
    ",
    // 6: the channel scores of a criterion other than SCOP (`prune.criterion`),
    // sent by the score stage; empty for SCOP's β and |γ|.
    "
    ALTER TABLE score_statistics ADD COLUMN score BLOB NOT NULL DEFAULT x'';  -- little-endian f32
    ",
    // 7: the branches of a sweep: each is a job of its own, pointing at the
    // sweep job and naming its candidate (unique within the sweep).
    "
    ALTER TABLE jobs ADD COLUMN parent_id TEXT REFERENCES jobs (id);
    ALTER TABLE jobs ADD COLUMN candidate TEXT NOT NULL DEFAULT '';
    CREATE UNIQUE INDEX jobs_by_parent ON jobs (parent_id, candidate) WHERE parent_id IS NOT NULL;
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies every migration the database has not seen, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "the database has schema version {current}, newer than this scopd's {SCHEMA_VERSION}; \
             run a newer scopd"
        )));
    }
    if current == 2 && has_column(conn, "attempt_ranks", "events_applied")? && !has_table(conn, "audit")? {
        // A version 2 written by a build whose migration 2 was today's 3 (task
        // event numbering, before users and quotas took number 2): it lacks
        // today's 2 and already has today's 3.
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATIONS[1])?;
        tx.pragma_update(None, "user_version", 3u32)?;
        tx.commit()?;
        tracing::info!(version = 3, "applied store migration 2 to a database that already had 3");
        return migrate(conn);
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as u32 + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "applied store migration");
    }
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    let n: u32 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |row| row.get(0),
    )?;
    Ok(n > 0)
}

fn has_table(conn: &Connection, table: &str) -> Result<bool> {
    let n: u32 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |row| row.get(0),
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op_and_newer_schemas_are_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let tables: u32 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 12);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer than this scopd"), "{err}");
    }

    /// A database as an older build left it after applying `migrations`.
    fn old_database(migrations: &[&str]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for sql in migrations {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", migrations.len() as u32).unwrap();
        conn
    }

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)").unwrap();
        stmt.query_map([table], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn scop_statistics_stored_before_criteria_existed_read_as_having_no_scores() {
        let mut conn = old_database(&MIGRATIONS[..5]);
        // Only the statistics row matters here, not the job it belongs to.
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        conn.execute(
            "INSERT INTO score_statistics (job_id, epoch, unit_index, unit, beta, gamma_abs, attempt_id, \
             received_at_ms) VALUES ('j', 3, 0, 'layer1.0.conv1', x'0000003f', x'0000803f', 'a', 0)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let score: Vec<u8> = conn
            .query_row("SELECT score FROM score_statistics WHERE job_id = 'j'", [], |r| r.get(0))
            .unwrap();
        assert!(score.is_empty(), "{score:?}");
    }

    #[test]
    fn a_version_2_database_of_either_lineage_reaches_the_current_schema() {
        let branch_v2 = "ALTER TABLE attempt_ranks ADD COLUMN events_applied INTEGER NOT NULL DEFAULT 0;";
        for (name, mut conn) in [
            ("users and quotas at 2", old_database(&MIGRATIONS[..2])),
            ("event numbering at 2", old_database(&[MIGRATIONS[0], branch_v2])),
        ] {
            migrate(&mut conn).unwrap_or_else(|e| panic!("{name}: {e}"));
            let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(version, SCHEMA_VERSION, "{name}");
            assert!(columns(&conn, "attempt_ranks").contains(&"events_applied".to_owned()), "{name}");
            let jobs = columns(&conn, "jobs");
            for column in ["owner", "world_size", "name"] {
                assert!(jobs.contains(&column.to_owned()), "{name}: jobs lacks {column}");
            }
            assert!(has_table(&conn, "audit").unwrap(), "{name}");
            migrate(&mut conn).unwrap_or_else(|e| panic!("{name}, again: {e}"));
        }
    }
}
