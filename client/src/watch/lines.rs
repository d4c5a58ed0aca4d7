//! The line `scopctl watch` prints for each event: state changes, stage
//! starts and finishes, evaluations, the plan decision, artifacts, errors,
//! and (without a terminal) progress.

use scop_proto::v1 as pb;

use crate::format::{duration, millions, percent};
use crate::records::{stage_name, state_name};

/// `[knockoff]`, or `[job]` for events not tied to a stage.
fn tag(stage: pb::Stage) -> String {
    format!("[{}]", stage_name(stage).unwrap_or("job"))
}

/// The line for a progress event, as printed without a terminal.
pub fn progress(p: &pb::Progress) -> String {
    format!(
        "{} epoch {}/{} step {}/{} loss {:.4} acc {} {:.0} samples/s ETA {}",
        tag(p.stage()),
        p.epoch,
        p.epochs,
        p.step,
        p.steps,
        p.loss,
        percent(p.accuracy),
        p.samples_per_second,
        duration(p.eta_seconds)
    )
}

/// The line for any other event; `None` for progress.
pub fn describe(job_id: &str, event: &pb::JobEvent) -> Option<String> {
    use pb::job_event::Kind;
    Some(match event.kind.as_ref()? {
        Kind::Progress(_) => return None,
        Kind::StateChanged(change) => match change.to() {
            pb::JobState::Queued => format!("job {job_id} queued"),
            pb::JobState::Running => {
                format!("job {job_id} running {}", stage_name(change.stage()).unwrap_or(""))
            }
            pb::JobState::Succeeded => format!("job {job_id} succeeded"),
            state @ (pb::JobState::Failed | pb::JobState::Cancelled) => {
                format!("job {job_id} {}: {}", state_name(state), change.reason)
            }
            pb::JobState::Unspecified => return None,
        },
        Kind::StageStarted(started) if started.world_size == 0 => {
            format!("{} deciding the plan in the coordinator", tag(started.stage()))
        }
        Kind::StageStarted(started) => format!(
            "{} attempt {} started on {} rank{}",
            tag(started.stage()),
            started.attempt,
            started.world_size,
            if started.world_size == 1 { "" } else { "s" }
        ),
        Kind::StageFinished(finished) => finished_line(finished),
        Kind::Evaluated(e) => {
            let when =
                if e.epoch == 0 { "before training".to_owned() } else { format!("after epoch {}", e.epoch) };
            format!(
                "{} eval {when}: top-1 {} top-5 {} loss {:.4}",
                tag(e.stage()),
                percent(e.top1),
                percent(e.top5),
                e.loss
            )
        }
        Kind::StatisticsReceived(s) => {
            format!("{} score statistics of {} units (epoch {})", tag(s.stage()), s.units, s.epoch)
        }
        Kind::PlanDecided(plan) => format!(
            "[decide] plan decided: {} units keep {} of {} channels ({})",
            plan.units,
            plan.channels_after,
            plan.channels_before,
            percent(plan.channels_after as f64 / plan.channels_before.max(1) as f64)
        ),
        Kind::ArtifactsReady(ready) => {
            let paths: Vec<&str> = ready.artifacts.iter().map(|a| a.path.as_str()).collect();
            format!("{} artifacts ready: {}", tag(ready.stage()), paths.join(", "))
        }
        // Attempt 0: about the stage, not one attempt of it (a sweep's branches).
        Kind::Notice(notice) if notice.attempt == 0 => format!("{} {}", tag(notice.stage()), notice.message),
        Kind::Notice(notice) => {
            format!("{} attempt {}: {}", tag(notice.stage()), notice.attempt, notice.message)
        }
        Kind::Error(error) => format!(
            "{} attempt {} failed: {}{}",
            tag(error.stage()),
            error.attempt,
            error.message,
            if error.retrying { " (retrying from the last checkpoint)" } else { "" }
        ),
    })
}

fn finished_line(finished: &pb::StageFinished) -> String {
    let metric = |key: &str| finished.metrics.get(key).copied();
    let mut line = format!("{} finished in {}", tag(finished.stage()), duration(finished.seconds));
    let change = |before: f64, after: f64| {
        format!(
            "{} -> {} ({:.1} % fewer)",
            millions(before),
            millions(after),
            100.0 * (1.0 - after / before.max(1.0))
        )
    };
    match finished.stage() {
        pb::Stage::Decide => {
            if let (Some(before), Some(after)) = (metric("params_before"), metric("params_after")) {
                line.push_str(&format!(": params {}", change(before, after)));
            }
            if let (Some(before), Some(after)) = (metric("flops_before"), metric("flops_after")) {
                line.push_str(&format!(", FLOPs {}", change(before, after)));
            }
        }
        pb::Stage::Export => {
            if let (Some(dense), Some(pruned)) = (metric("top1_dense"), metric("top1_pruned")) {
                line.push_str(&format!(": top-1 dense {} pruned {}", percent(dense), percent(pruned)));
            }
        }
        _ => {
            if let Some(top1) = metric("top1") {
                line.push_str(&format!(": top-1 {}", percent(top1)));
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::job_event::Kind;

    fn check(kind: Kind, expected: &str) {
        let event = pb::JobEvent { job_id: "j1".into(), sequence: 1, time_ms: 0, kind: Some(kind) };
        assert_eq!(describe("j1", &event).as_deref(), Some(expected));
    }

    #[test]
    fn every_event_reads_as_one_line() {
        let running = pb::StateChanged {
            from: pb::JobState::Queued as i32,
            to: pb::JobState::Running as i32,
            stage: pb::Stage::Knockoff as i32,
            reason: String::new(),
        };
        check(Kind::StateChanged(running), "job j1 running knockoff");
        let failed = pb::StateChanged {
            to: pb::JobState::Failed as i32,
            reason: "stage knockoff failed 4 times".into(),
            ..Default::default()
        };
        check(Kind::StateChanged(failed), "job j1 failed: stage knockoff failed 4 times");
        let started = pb::StageStarted { stage: pb::Stage::Finetune as i32, attempt: 2, world_size: 2 };
        check(Kind::StageStarted(started), "[finetune] attempt 2 started on 2 ranks");
        let eval = pb::Evaluated {
            stage: pb::Stage::Finetune as i32,
            epoch: 3,
            loss: 0.25,
            top1: 0.91,
            top5: 0.998,
        };
        check(
            Kind::Evaluated(eval),
            "[finetune] eval after epoch 3: top-1 91.00 % top-5 99.80 % loss 0.2500",
        );
        let plan = pb::PlanDecided { units: 18, channels_before: 688, channels_after: 384 };
        check(Kind::PlanDecided(plan), "[decide] plan decided: 18 units keep 384 of 688 channels (55.81 %)");
        let decide = pb::StageFinished {
            stage: pb::Stage::Decide as i32,
            seconds: 0.01,
            attempt: 1,
            metrics: [("params_before".to_owned(), 272_474.0), ("params_after".to_owned(), 150_066.0)].into(),
        };
        check(
            Kind::StageFinished(decide),
            "[decide] finished in 0.0s: params 0.27 M -> 0.15 M (44.9 % fewer)",
        );
        let error = pb::JobError {
            stage: pb::Stage::Knockoff as i32,
            attempt: 1,
            message: "rank 1: trainer exited with code 134".into(),
            retrying: true,
        };
        check(
            Kind::Error(error),
            "[knockoff] attempt 1 failed: rank 1: trainer exited with code 134 (retrying from the last checkpoint)",
        );
    }

    #[test]
    fn progress_lines_carry_every_figure() {
        let p = pb::Progress {
            stage: pb::Stage::Knockoff as i32,
            epoch: 1,
            epochs: 2,
            step: 50,
            steps: 469,
            loss: 0.41234,
            accuracy: 0.8512,
            samples_per_second: 480.4,
            eta_seconds: 62.0,
        };
        assert_eq!(
            progress(&p),
            "[knockoff] epoch 1/2 step 50/469 loss 0.4123 acc 85.12 % 480 samples/s ETA 1m02s"
        );
    }
}
