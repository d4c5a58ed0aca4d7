//! The command line of `scopctl`, and what each command does with a
//! [`Client`]. `main.rs` only parses it and turns errors into exit codes.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use scop_proto::v1 as pb;

use crate::client::{Client, ServerStatus};
use crate::error::{Error, ExitCode, Result};
use crate::format::{OutputFormat, bytes, print};
use crate::records::{
    ArtifactsRecord, JobRecord, PlanRecord, WhoamiRecord, WorkerRecord, event_json, state_name,
};
use crate::settings::{ConnectionFlags, Settings};
use crate::submit::{SubmitOptions, parse_label};
use crate::{report, tables, watch};

const AFTER_HELP: &str = "Connection: --server, then $SCOP_SERVER, then the config file \
($SCOPCTL_CONFIG, else $XDG_CONFIG_HOME/scop/scopctl.yaml, else ~/.config/scop/scopctl.yaml, \
which `scopd standalone` writes), then http://127.0.0.1:7070. The token: --token or --token-file, \
then $SCOP_TOKEN, then the config file's token or token_file.";

/// The scop command-line client: submit SCOP pruning jobs to scopd, follow
/// them, and fetch their plans, reports and artifacts.
#[derive(Debug, Parser)]
#[command(name = "scopctl", version, after_help = format!("{AFTER_HELP}\n\n{}", ExitCode::HELP))]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the coordinator.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Address of scopd's public API, e.g. http://127.0.0.1:7070 [env: SCOP_SERVER].
    #[arg(long, global = true, value_name = "URL", help_heading = "Connection")]
    pub server: Option<String>,
    /// Bearer token [env: SCOP_TOKEN].
    #[arg(long, global = true, conflicts_with = "token_file", help_heading = "Connection")]
    pub token: Option<String>,
    /// File whose first non-comment line is the bearer token.
    #[arg(long, global = true, value_name = "FILE", help_heading = "Connection")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate (implies TLS).
    #[arg(long, global = true, value_name = "PEM", help_heading = "Connection")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate for a coordinator that accepts them (mTLS), with
    /// --client-key [env: SCOP_CLIENT_CERT].
    #[arg(long, global = true, value_name = "PEM", help_heading = "Connection")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert [env: SCOP_CLIENT_KEY].
    #[arg(long, global = true, value_name = "PEM", help_heading = "Connection")]
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the coordinator is up and serving.
    Status,
    /// Validate a job spec locally, submit it, and print the job's id.
    Submit {
        /// The job spec (YAML); its relative paths are resolved against its directory.
        spec: PathBuf,
        /// Follow the job until it ends, as `scopctl watch` does.
        #[arg(long)]
        watch: bool,
        /// A label to filter by later, `key=value`; repeatable.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Higher runs first; equal priorities run in submission order.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Idempotency key: submitting again with it returns the first job.
        #[arg(long)]
        request_id: Option<String>,
        /// `json`: the job as one JSON line (then, with --watch, one per event).
        #[arg(short, long, value_enum, default_value_t)]
        output: StreamFormat,
        /// With --watch: plain lines even on a terminal.
        #[arg(long)]
        plain: bool,
    },
    /// List jobs, or show one.
    #[command(subcommand)]
    Get(GetCommand),
    /// Follow a job until it ends: progress bars on a terminal, plain lines
    /// otherwise, the final table when it succeeds. Exits with the job's outcome.
    Watch {
        id: String,
        /// `json`: one JSON object per event, then one with the outcome.
        #[arg(short, long, value_enum, default_value_t)]
        output: StreamFormat,
        /// Plain lines even on a terminal.
        #[arg(long)]
        plain: bool,
    },
    /// Cancel a job: a queued one at once, a running one's ranks within seconds.
    Cancel {
        id: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// The pruning plan: channels per unit before and after, kept share,
    /// score summary, params and FLOPs.
    Plan {
        id: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// The worker agents, their devices and slots.
    Workers {
        /// Also list workers that were declared lost.
        #[arg(long)]
        all: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Admin: stop placing new ranks on a worker; its running ranks finish.
    /// It stays drained across reconnects until `scopctl undrain`.
    Drain {
        /// The worker's id, or a hostname that names exactly one worker.
        worker: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Admin: let the scheduler place ranks on a drained worker again.
    Undrain {
        /// The worker's id, or a hostname that names exactly one worker.
        worker: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// The files a job produced; --download fetches them.
    Artifacts {
        id: String,
        /// For a sweep: the files of this candidate's branch (its pruned,
        /// finetuned, exported network) instead of the sweep's own.
        #[arg(long, value_name = "NAME")]
        candidate: Option<String>,
        /// Download every listed file into DIR, keeping its relative path.
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Write a self-contained HTML report: curves, β per unit, channels kept, the summary.
    Report {
        id: String,
        /// Where to write it.
        #[arg(long, value_name = "FILE", default_value = "report.html")]
        out: PathBuf,
    },
    /// The user this client's token names, its role and quotas.
    Whoami {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Print a shell completion script, e.g. `scopctl completion bash > /etc/bash_completion.d/scopctl`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List jobs, newest first.
    Jobs {
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        state: Option<StateFilter>,
        /// Only the jobs this client's user submitted.
        #[arg(long)]
        mine: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show one job.
    Job {
        id: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

/// `-o` of the streaming commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum StreamFormat {
    #[default]
    Table,
    Json,
}

/// `--state` of `get jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<StateFilter> for pb::JobState {
    fn from(state: StateFilter) -> Self {
        match state {
            StateFilter::Queued => pb::JobState::Queued,
            StateFilter::Running => pb::JobState::Running,
            StateFilter::Succeeded => pb::JobState::Succeeded,
            StateFilter::Failed => pb::JobState::Failed,
            StateFilter::Cancelled => pb::JobState::Cancelled,
        }
    }
}

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<()> {
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "scopctl", &mut std::io::stdout());
        return Ok(());
    }
    let flags = ConnectionFlags {
        server: cli.connection.server,
        token: cli.connection.token,
        token_file: cli.connection.token_file,
        ca_cert: cli.connection.ca_cert,
        client_cert: cli.connection.client_cert,
        client_key: cli.connection.client_key,
    };
    let settings = Settings::resolve(&flags)?;
    // A spec is checked before anything is sent, or even connected.
    if let Command::Submit { spec, .. } = &cli.command {
        crate::submit::load_spec(spec)?;
    }
    let client = Client::connect(&settings).await?;
    match cli.command {
        Command::Completion { .. } => Ok(()),
        Command::Status => match client.health().await? {
            ServerStatus::Serving => {
                println!("{}: serving", client.server());
                Ok(())
            }
            ServerStatus::NotServing => Err(Error::Unreachable {
                server: client.server().to_owned(),
                reason: "its health service says NOT_SERVING".into(),
            }),
        },
        Command::Submit { spec, watch, labels, priority, request_id, output, plain } => {
            let options = SubmitOptions { labels, priority, request_id };
            let job = crate::submit::submit(&client, &spec, &options).await?;
            match output {
                StreamFormat::Table => println!("{}", job.id),
                StreamFormat::Json => println!("{}", compact(&JobRecord::from(&job))?),
            }
            if watch { watch_job(client, &job.id, output, plain).await } else { Ok(()) }
        }
        Command::Get(GetCommand::Jobs { state, mine, output }) => {
            let state = state.map_or(pb::JobState::Unspecified, pb::JobState::from);
            let owner = if mine { Some(client.whoami().await?.user) } else { None };
            let jobs: Vec<JobRecord> =
                client.list_jobs(state, owner.as_deref()).await?.iter().map(JobRecord::from).collect();
            print(output, &jobs, || tables::jobs(&jobs))
        }
        Command::Get(GetCommand::Job { id, output }) => {
            let job = client.get_job(&id).await?;
            let candidates = crate::sweep::candidates(&client, &job).await?;
            let job = JobRecord { candidates, ..JobRecord::from(&job) };
            print(output, &job, || tables::job(&job))
        }
        Command::Watch { id, output, plain } => watch_job(client, &id, output, plain).await,
        Command::Cancel { id, output } => {
            let before = client.get_job(&id).await?;
            let job = JobRecord::from(&client.cancel(&id).await?);
            print(output, &job, || match before.state() {
                pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled => {
                    format!("job {id} had already ended: {}", job.state)
                }
                _ => format!("job {id} {}", job.state),
            })
        }
        Command::Plan { id, output } => {
            let plan = PlanRecord::from(&client.plan(&id).await?);
            print(output, &plan, || tables::plan(&plan))
        }
        Command::Workers { all, output } => {
            let workers: Vec<WorkerRecord> =
                client.workers(all).await?.iter().map(WorkerRecord::from).collect();
            print(output, &workers, || tables::workers(&workers))
        }
        Command::Drain { worker, output } => set_drained(&client, &worker, true, output).await,
        Command::Undrain { worker, output } => set_drained(&client, &worker, false, output).await,
        Command::Artifacts { id, candidate, download, output } => {
            let id = match candidate {
                Some(name) => crate::sweep::branch_of(&client, &id, &name).await?,
                None => id,
            };
            let listed = ArtifactsRecord::new(&id, &client.artifacts(&id).await?);
            match download {
                None => print(output, &listed, || tables::artifacts(&listed)),
                Some(dir) => {
                    let mut total = 0;
                    for artifact in &listed.artifacts {
                        let dest = dir.join(&artifact.path);
                        let size = client.download(&id, &artifact.path, &dest).await?;
                        total += size;
                        if output == OutputFormat::Table {
                            println!("{} ({})", dest.display(), bytes(size));
                        }
                    }
                    print(output, &listed, || {
                        format!(
                            "downloaded {} files ({}) into {}",
                            listed.artifacts.len(),
                            bytes(total),
                            dir.display()
                        )
                    })
                }
            }
        }
        Command::Whoami { output } => {
            let me = WhoamiRecord::from(&client.whoami().await?);
            print(output, &me, || tables::whoami(&me))
        }
        Command::Report { id, out } => {
            report::write(&client, &id, &out).await?;
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            println!("wrote {} ({})", out.display(), bytes(size));
            Ok(())
        }
    }
}

/// Follows a job; prints the final table (or the JSON outcome) and fails
/// with `JobEnded` unless it succeeded.
async fn watch_job(client: Client, job_id: &str, output: StreamFormat, plain: bool) -> Result<()> {
    let outcome = match output {
        StreamFormat::Table => watch::follow(client.clone(), job_id, plain).await?,
        StreamFormat::Json => {
            watch::follow_json(client.clone(), job_id, |event| {
                println!("{}", event_json(event));
            })
            .await?
        }
    };
    let job = &outcome.job;
    let succeeded = job.state() == pb::JobState::Succeeded;
    let summary = crate::summary::from_events(job, &outcome.events);
    let artifacts =
        if succeeded { Some(ArtifactsRecord::new(job_id, &client.artifacts(job_id).await?)) } else { None };
    // A sweep's result is its candidates (its own line prunes nothing); they
    // are shown however it ended, since some branches may have succeeded.
    let candidates = crate::sweep::candidates(&client, job).await?;
    if let (StreamFormat::Table, Some(rows)) = (output, &candidates) {
        println!();
        println!("{}", crate::sweep::table_of(rows));
    }
    match output {
        StreamFormat::Table if candidates.is_some() => {}
        StreamFormat::Table if succeeded => {
            println!();
            println!("{}", summary.render());
            if let Some(listed) = &artifacts {
                println!();
                println!("artifacts:");
                for a in &listed.artifacts {
                    println!("  {:<12} {}", a.kind, a.location);
                }
            }
        }
        StreamFormat::Table => {}
        StreamFormat::Json => {
            let result = serde_json::json!({
                "type": "result",
                "job": JobRecord::from(job),
                "summary": summary,
                "artifacts": artifacts,
                "candidates": candidates,
            });
            println!("{result}");
        }
    }
    if succeeded {
        Ok(())
    } else {
        Err(Error::JobEnded {
            job_id: job_id.to_owned(),
            state: state_name(job.state()),
            reason: if job.error.is_empty() { "no reason given".into() } else { job.error.clone() },
        })
    }
}

fn compact<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// `drain` and `undrain`.
async fn set_drained(client: &Client, worker: &str, drain: bool, output: OutputFormat) -> Result<()> {
    let id = client.worker_id(worker).await?;
    let changed = WorkerRecord::from(&client.set_drained(&id, drain).await?);
    print(output, &changed, || {
        if drain {
            format!(
                "worker {} ({}) drained: no new ranks go to it; its {} running ranks finish",
                changed.id, changed.hostname, changed.slots_busy
            )
        } else {
            format!("worker {} ({}) undrained: it takes new ranks again", changed.id, changed.hostname)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent_and_documents_the_exit_codes() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("5  the coordinator is unreachable"), "{help}");
        assert!(help.contains("7  invalid job spec"), "{help}");
    }

    #[test]
    fn global_connection_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["scopctl", "get", "jobs", "--server", "h:1", "-o", "json"]).unwrap();
        assert_eq!(cli.connection.server.as_deref(), Some("h:1"));
        let error =
            Cli::try_parse_from(["scopctl", "--token", "a", "--token-file", "f", "status"]).unwrap_err();
        assert_eq!(error.exit_code(), ExitCode::Usage as i32);
    }
}
