//! The agent's outbox of task events: each event gets its task's next
//! sequence number and is kept, in memory and in a file under the scratch
//! directory, until the coordinator acknowledges it. After a reconnect, or a
//! restart of the agent, the unacknowledged events are sent again in order;
//! the coordinator applies each number once.
//!
//! The file of a task holds its unacknowledged events, length-delimited
//! protobuf, appended as they come and rewritten on acknowledgement; it is
//! deleted once everything is acknowledged.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use scop_proto::v1 as pb;

/// Unacknowledged events kept per task at most; beyond it the oldest progress
/// reports (superseded by later ones) are dropped first.
const MAX_PENDING: usize = 4096;

/// Unacknowledged task events, by task.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    tasks: BTreeMap<String, Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// The number the next event gets.
    next: u64,
    events: VecDeque<pb::TaskEvent>,
}

impl Outbox {
    /// The outbox kept under `dir`, with the unacknowledged events a previous
    /// run of the agent left there. Unreadable files are reported and skipped.
    pub fn open(dir: &Path) -> Outbox {
        let mut outbox = Outbox { dir: dir.to_owned(), tasks: BTreeMap::new() };
        let Ok(entries) = std::fs::read_dir(dir) else { return outbox };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "events") {
                continue;
            }
            match read_events(&path) {
                Ok(events) if !events.is_empty() => {
                    let task_id = events[0].task_id.clone();
                    let next = events.iter().map(|e| e.sequence).max().unwrap_or(0) + 1;
                    tracing::info!(%task_id, count = events.len(), "unacknowledged events from before a restart");
                    outbox.tasks.insert(task_id, Pending { next, events: events.into() });
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(error) => tracing::warn!(path = %path.display(), %error, "outbox file skipped"),
            }
        }
        outbox
    }

    /// Numbers `event`, keeps it until acknowledged, and returns it to send.
    pub fn push(&mut self, mut event: pb::TaskEvent) -> pb::TaskEvent {
        let pending = self
            .tasks
            .entry(event.task_id.clone())
            .or_insert_with(|| Pending { next: 1, ..Default::default() });
        event.sequence = pending.next;
        pending.next += 1;
        pending.events.push_back(event.clone());
        if pending.events.len() > MAX_PENDING {
            let progress =
                pending.events.iter().position(|e| matches!(e.kind, Some(pb::task_event::Kind::Progress(_))));
            pending.events.remove(progress.unwrap_or(0));
            self.rewrite(&event.task_id);
        } else if let Err(error) = self.append(&event) {
            tracing::warn!(task_id = %event.task_id, %error, "outbox not persisted; kept in memory");
        }
        event
    }

    /// Forgets `task_id`'s events up to `sequence`.
    pub fn ack(&mut self, task_id: &str, sequence: u64) {
        let Some(pending) = self.tasks.get_mut(task_id) else { return };
        let before = pending.events.len();
        pending.events.retain(|e| e.sequence > sequence);
        if pending.events.len() != before {
            self.rewrite(task_id);
        }
    }

    /// Every unacknowledged event, each task's in order, to send after (re)connecting.
    pub fn unacknowledged(&self) -> Vec<pb::TaskEvent> {
        self.tasks.values().flat_map(|p| p.events.iter().cloned()).collect()
    }

    /// Forgets a task whose events the coordinator will never take (it no longer knows it).
    pub fn forget(&mut self, task_id: &str) {
        if self.tasks.remove(task_id).is_some() {
            let _ = std::fs::remove_file(self.file(task_id));
        }
    }

    fn file(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{}.events", task_id.replace(['/', '\\'], "-")))
    }

    fn append(&self, event: &pb::TaskEvent) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(self.file(&event.task_id))?;
        file.write_all(&event.encode_length_delimited_to_vec())?;
        // Finished and Failed decide a stage: they must survive a crash of the agent.
        if matches!(event.kind, Some(pb::task_event::Kind::Finished(_) | pb::task_event::Kind::Failed(_))) {
            file.sync_all()?;
        }
        Ok(())
    }

    fn rewrite(&mut self, task_id: &str) {
        let path = self.file(task_id);
        let Some(pending) = self.tasks.get(task_id) else { return };
        if pending.events.is_empty() {
            let _ = std::fs::remove_file(&path);
            // Keep the counter: later events of the task continue the numbering.
            return;
        }
        let bytes: Vec<u8> =
            pending.events.iter().flat_map(Message::encode_length_delimited_to_vec).collect();
        if let Err(error) = std::fs::create_dir_all(&self.dir)
            .map_err(|e| scop_core::durable::DurableError { path: self.dir.clone(), source: e })
            .and_then(|()| scop_core::durable::write_atomic(&path, &bytes))
        {
            tracing::warn!(%task_id, %error, "outbox not persisted; kept in memory");
        }
    }
}

fn read_events(path: &Path) -> Result<Vec<pb::TaskEvent>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut buffer = bytes.as_slice();
    let mut events = Vec::new();
    while !buffer.is_empty() {
        match pb::TaskEvent::decode_length_delimited(&mut buffer) {
            Ok(event) => events.push(event),
            // A torn last record (a crash mid-append): keep what came before it.
            Err(_) => break,
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(task: &str, kind: pb::task_event::Kind) -> pb::TaskEvent {
        pb::TaskEvent { task_id: task.into(), rank: 0, sequence: 0, kind: Some(kind), ..Default::default() }
    }

    fn sequences(events: &[pb::TaskEvent]) -> Vec<(String, u64)> {
        events.iter().map(|e| (e.task_id.clone(), e.sequence)).collect()
    }

    #[test]
    fn events_are_numbered_kept_until_acknowledged_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path());
        let checkpoint = |p: &str| pb::task_event::Kind::CheckpointWritten(p.into());
        assert_eq!(outbox.push(event("a/0", checkpoint("c1"))).sequence, 1);
        assert_eq!(outbox.push(event("a/0", checkpoint("c2"))).sequence, 2);
        assert_eq!(outbox.push(event("b/1", checkpoint("x"))).sequence, 1);
        outbox.ack("a/0", 1);
        let finished = pb::task_event::Kind::Finished(pb::TaskFinished::default());
        assert_eq!(outbox.push(event("a/0", finished)).sequence, 3);
        let expected = [("a/0".to_owned(), 2), ("a/0".to_owned(), 3), ("b/1".to_owned(), 1)];
        assert_eq!(sequences(&outbox.unacknowledged()), expected);

        // The agent restarts: the same events come back from the files, and numbering continues.
        drop(outbox);
        let mut again = Outbox::open(dir.path());
        assert_eq!(sequences(&again.unacknowledged()), expected);
        assert_eq!(again.push(event("b/1", checkpoint("y"))).sequence, 2);
        again.ack("a/0", 3);
        again.forget("b/1");
        assert!(again.unacknowledged().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no file left once all is acknowledged"
        );
    }

    #[test]
    fn a_torn_last_record_keeps_the_events_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path());
        outbox.push(event("a/0", pb::task_event::Kind::Failed("boom".into())));
        let file = outbox.file("a/0");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(&[0x40, 1, 2]);
        std::fs::write(&file, bytes).unwrap();
        let again = Outbox::open(dir.path());
        assert_eq!(sequences(&again.unacknowledged()), [("a/0".to_owned(), 1)]);
    }
}
