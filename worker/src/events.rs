//! What a training stage reports while it runs, and where those reports go.
//!
//! Stages emit [`Event`]s into an [`EventSink`]. `scop-worker run` prints
//! progress lines and appends every event to `metrics.jsonl`; a trainer started
//! by the agent writes them as JSON lines on stdout for the agent to relay.

use std::io::Write;
use std::path::{Path, PathBuf};

use scop_core::summary::duration;

pub use scop_core::event::Event;

/// Where events go.
pub trait EventSink {
    fn emit(&mut self, event: &Event);
}

/// Prints human-readable lines on stderr and appends JSON lines to a file.
#[derive(Debug)]
pub struct ConsoleAndJsonl {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl ConsoleAndJsonl {
    /// Appends to `path` (created if missing).
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file: Some(file), path: path.to_owned() })
    }
}

impl EventSink for ConsoleAndJsonl {
    fn emit(&mut self, event: &Event) {
        if let Some(line) = human_line(event) {
            eprintln!("{line}");
        }
        if let Some(file) = &mut self.file {
            let json = serde_json::to_string(event).expect("events serialise");
            if let Err(e) = writeln!(file, "{json}") {
                eprintln!(
                    "warning: cannot append to {}: {e}; metrics are no longer recorded",
                    self.path.display()
                );
                self.file = None;
            }
        }
    }
}

/// Writes one JSON object per line on stdout, for the worker agent.
#[derive(Debug, Default)]
pub struct JsonLinesStdout;

impl EventSink for JsonLinesStdout {
    fn emit(&mut self, event: &Event) {
        let json = serde_json::to_string(event).expect("events serialise");
        let mut out = std::io::stdout().lock();
        // If the agent has gone away there is no one to tell; the stage goes on.
        let _ = writeln!(out, "{json}");
        let _ = out.flush();
    }
}

/// Collects events in memory (tests, and the summary at the end of a run).
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<Event>,
}

impl EventSink for Recorder {
    fn emit(&mut self, event: &Event) {
        self.events.push(event.clone());
    }
}

/// Sends every event to two sinks.
pub struct Tee<'a>(pub &'a mut dyn EventSink, pub &'a mut dyn EventSink);

impl EventSink for Tee<'_> {
    fn emit(&mut self, event: &Event) {
        self.0.emit(event);
        self.1.emit(event);
    }
}

/// The progress line for people; `None` for events that only go to files.
pub fn human_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::StageStarted { stage, epochs, steps_per_epoch } => {
            format!("[{stage}] started: {epochs} epochs of {steps_per_epoch} steps")
        }
        Event::Progress {
            stage,
            epoch,
            epochs,
            step,
            steps,
            loss,
            accuracy,
            samples_per_second,
            eta_seconds,
            lr,
            ..
        } => {
            format!(
                "[{stage}] epoch {epoch}/{epochs} step {step}/{steps} loss {loss:.4} acc {:.2}% {samples_per_second:.0} samples/s lr {lr:.4} ETA {}",
                accuracy * 100.0,
                duration(*eta_seconds)
            )
        }
        Event::Evaluated { stage, epoch, loss, top1, top5 } => format!(
            "[{stage}] eval after epoch {epoch}: top-1 {:.2}% top-5 {:.2}% loss {loss:.4}",
            top1 * 100.0,
            top5 * 100.0
        ),
        Event::Statistics(stats) => {
            format!("[knockoff] score statistics of {} units (epoch {})", stats.units.len(), stats.epoch)
        }
        Event::PlanDecided { policy, params_before, params_after, flops_before, flops_after } => format!(
            "[decide] {policy} plan: params {params_before} -> {params_after} ({:.1}% fewer), FLOPs {flops_before} -> {flops_after} ({:.1}% fewer)",
            reduction(*params_before, *params_after),
            reduction(*flops_before, *flops_after)
        ),
        Event::CheckpointWritten { .. } => return None,
        Event::CheckpointFallback { stage, restored, skipped } => {
            format!("[{stage}] resuming from {}; skipped damaged: {}", restored.display(), skipped.join("; "))
        }
        Event::StageFinished { stage, seconds } => {
            format!("[{stage}] finished in {}", duration(*seconds))
        }
    })
}

fn reduction(before: u64, after: u64) -> f64 {
    100.0 * (1.0 - after as f64 / before.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_json() {
        let event =
            Event::Evaluated { stage: "finetune".into(), epoch: 3, loss: 0.25, top1: 0.91, top5: 0.998 };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.starts_with(r#"{"type":"evaluated""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        assert_eq!(
            human_line(&event).unwrap(),
            "[finetune] eval after epoch 3: top-1 91.00% top-5 99.80% loss 0.2500"
        );
    }

    #[test]
    fn jsonl_sink_appends_one_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut sink = ConsoleAndJsonl::new(&path).unwrap();
        sink.emit(&Event::StageStarted { stage: "pretrain".into(), epochs: 1, steps_per_epoch: 10 });
        sink.emit(&Event::StageFinished { stage: "pretrain".into(), seconds: 1.0 });
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<Event> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events.len(), 2);
    }
}
