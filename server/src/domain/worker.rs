//! Worker agents as the coordinator sees them: devices (one slot each) and liveness.

use serde::{Deserialize, Serialize};

/// The liveness of a worker agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerState {
    /// Its Connect stream is open.
    Connected,
    /// Its stream closed; it may reconnect before the heartbeat timeout.
    Disconnected,
    /// Silent for longer than the heartbeat timeout; its ranks are failed.
    Lost,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Connected => "connected",
            WorkerState::Disconnected => "disconnected",
            WorkerState::Lost => "lost",
        }
    }

    pub fn parse(name: &str) -> Option<WorkerState> {
        [WorkerState::Connected, WorkerState::Disconnected, WorkerState::Lost]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// One device of a worker; every device is one scheduling slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// `cuda` or `cpu`.
    pub kind: String,
    pub index: u32,
    pub name: String,
    pub memory_bytes: u64,
}

/// What a worker says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHello {
    /// The id it was given before, when reconnecting.
    pub worker_id: Option<String>,
    pub hostname: String,
    pub agent_version: String,
    pub devices: Vec<Device>,
    pub cpu_cores: u32,
}

/// A worker as stored, with its slot usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub id: String,
    pub hostname: String,
    pub agent_version: String,
    pub state: WorkerState,
    pub devices: Vec<Device>,
    pub cpu_cores: u32,
    /// Ranks of running attempts placed on it.
    pub slots_busy: u32,
    pub connected_at_ms: i64,
    pub last_seen_ms: i64,
    /// Drained by an admin: no new ranks go to it; its running ones finish.
    pub drained: bool,
}

impl Worker {
    pub fn slots_total(&self) -> u32 {
        u32::try_from(self.devices.len()).unwrap_or(u32::MAX)
    }

    /// Slots a new rank may take: none unless connected and not drained.
    pub fn slots_free(&self) -> u32 {
        if self.drained {
            return 0;
        }
        match self.state {
            WorkerState::Connected => self.slots_total().saturating_sub(self.slots_busy),
            WorkerState::Disconnected | WorkerState::Lost => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(state: WorkerState, devices: usize, busy: u32) -> Worker {
        let device = Device { kind: "cpu".into(), index: 0, name: "cpu".into(), memory_bytes: 0 };
        Worker {
            id: "w".into(),
            hostname: "h".into(),
            agent_version: "0.1.0".into(),
            state,
            devices: vec![device; devices],
            cpu_cores: 2,
            slots_busy: busy,
            connected_at_ms: 0,
            last_seen_ms: 0,
            drained: false,
        }
    }

    #[test]
    fn only_connected_workers_have_free_slots() {
        assert_eq!(worker(WorkerState::Connected, 4, 1).slots_free(), 3);
        assert_eq!(worker(WorkerState::Connected, 2, 3).slots_free(), 0);
        assert_eq!(worker(WorkerState::Disconnected, 4, 0).slots_free(), 0);
        assert_eq!(worker(WorkerState::Lost, 4, 0).slots_free(), 0);
        let drained = Worker { drained: true, ..worker(WorkerState::Connected, 4, 1) };
        assert_eq!((drained.slots_total(), drained.slots_free()), (4, 0));
    }
}
