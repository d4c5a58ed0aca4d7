//! `scopctl watch`: follows a job's events until it ends, with progress bars
//! on a terminal and plain lines otherwise. A dropped connection is resumed
//! from the last event seen, with backoff, so nothing is shown twice or
//! missed. The outcome is the job's.

mod bars;
pub mod lines;

use std::io::IsTerminal;
use std::time::Duration;

use scop_proto::v1 as pb;

use crate::client::Client;
use crate::error::{Error, Result};

/// Reconnection attempts in a row before the coordinator counts as gone.
const MAX_RECONNECTS: u32 = 20;
/// Backoff between them: doubling from the first, capped at the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How a watch shows what happens.
trait Show {
    /// One event, in order.
    fn event(&mut self, job_id: &str, event: &pb::JobEvent);
    /// A note about the watch itself (a dropped connection).
    fn note(&mut self, text: &str);
}

impl Show for bars::Bars {
    fn event(&mut self, job_id: &str, event: &pb::JobEvent) {
        use pb::job_event::Kind;
        match &event.kind {
            Some(Kind::Progress(p)) => self.progress(p),
            Some(Kind::StageStarted(s)) => self.started(s),
            Some(Kind::StageFinished(f)) => self.finished(f),
            Some(Kind::Error(e)) => self.failed(e),
            _ => {}
        }
        if let Some(text) = lines::describe(job_id, event) {
            self.line(&text);
        }
    }

    fn note(&mut self, text: &str) {
        self.line(text);
    }
}

/// Plain lines on stdout, progress included.
struct Lines;

impl Show for Lines {
    fn event(&mut self, job_id: &str, event: &pb::JobEvent) {
        let text = match &event.kind {
            Some(pb::job_event::Kind::Progress(p)) => Some(lines::progress(p)),
            _ => lines::describe(job_id, event),
        };
        if let Some(text) = text {
            println!("{text}");
        }
    }

    fn note(&mut self, text: &str) {
        println!("{text}");
    }
}

/// Every event to a callback; notes go to stderr, keeping stdout parseable.
struct Callback<F>(F);

impl<F: FnMut(&pb::JobEvent) + Send> Show for Callback<F> {
    fn event(&mut self, _job_id: &str, event: &pb::JobEvent) {
        (self.0)(event);
    }

    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// How a watch ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The job as it ended.
    pub job: pb::Job,
    /// Every event seen, in order (progress included).
    pub events: Vec<pb::JobEvent>,
}

/// Follows `job_id` from its first event until the job ends, with bars on a
/// terminal (unless `plain`) and lines otherwise. Returns the outcome
/// whatever the final state; the caller decides what a failure means.
pub async fn follow(client: Client, job_id: &str, plain: bool) -> Result<Outcome> {
    if !plain && std::io::stdout().is_terminal() {
        let mut bars = bars::Bars::new();
        let result = follow_with(client, job_id, &mut bars).await;
        bars.close();
        result
    } else {
        follow_with(client, job_id, &mut Lines).await
    }
}

/// [`follow`], handing every event to `on_event` instead of showing it.
pub async fn follow_json(
    client: Client,
    job_id: &str,
    on_event: impl FnMut(&pb::JobEvent) + Send,
) -> Result<Outcome> {
    follow_with(client, job_id, &mut Callback(on_event)).await
}

async fn follow_with(mut client: Client, job_id: &str, view: &mut dyn Show) -> Result<Outcome> {
    let mut events: Vec<pb::JobEvent> = Vec::new();
    let mut reconnects = 0u32;
    loop {
        let next = events.last().map_or(1, |e| e.sequence + 1);
        let dropped = match client.watch(job_id, next).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(event)) => {
                        reconnects = 0;
                        view.event(job_id, &event);
                        let terminal = is_terminal(&event);
                        events.push(event);
                        if terminal {
                            let job = client.get_job(job_id).await?;
                            return Ok(Outcome { job, events });
                        }
                    }
                    Ok(None) => {
                        // The server ended the stream without a terminal event:
                        // either the job ended and we saw everything, or it is
                        // going away. Ask.
                        match client.get_job(job_id).await {
                            Ok(job) if is_ended(job.state()) => return Ok(Outcome { job, events }),
                            Ok(_) => break "the stream ended".to_owned(),
                            Err(error) => break transient(error)?,
                        }
                    }
                    Err(status) => break transient(Error::from_status(client.server(), status))?,
                }
            },
            Err(error) => transient(error)?,
        };
        reconnects += 1;
        if reconnects > MAX_RECONNECTS {
            return Err(Error::Unreachable {
                server: client.server().to_owned(),
                reason: format!("gave up after {MAX_RECONNECTS} reconnection attempts; last: {dropped}"),
            });
        }
        let delay = backoff(reconnects);
        let next = events.last().map_or(1, |e| e.sequence + 1);
        view.note(&format!(
            "connection to {} lost ({dropped}); resuming from event {next} in {:.1}s",
            client.server(),
            delay.as_secs_f64()
        ));
        tokio::time::sleep(delay).await;
        match Client::connect(client.settings()).await {
            Ok(fresh) => client = fresh,
            // Counted on the next round, which finds it unreachable again.
            Err(Error::Unreachable { .. }) => {}
            Err(error) => return Err(error),
        }
    }
}

/// Doubling from [`BACKOFF_FIRST`], capped at [`BACKOFF_MAX`].
fn backoff(attempt: u32) -> Duration {
    BACKOFF_FIRST.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(BACKOFF_MAX)
}

fn is_terminal(event: &pb::JobEvent) -> bool {
    matches!(&event.kind, Some(pb::job_event::Kind::StateChanged(c)) if is_ended(c.to()))
}

fn is_ended(state: pb::JobState) -> bool {
    matches!(state, pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
}

/// The reason to reconnect for errors after which the same watch can go on
/// from where it was (the coordinator going away, the connection breaking);
/// any other error ends the watch.
fn transient(error: Error) -> Result<String> {
    use tonic::Code;
    match error {
        Error::Unreachable { reason, .. } => Ok(reason),
        Error::Rpc {
            code: Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted,
            message,
            ..
        } => Ok(message),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let delays: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }
}
