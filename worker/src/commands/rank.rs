//! One stage on one rank of a data-parallel job: `scop-worker rank`.
//!
//! The local launcher ([`crate::commands::launch`]) and the coordinator's worker agent start
//! one such process per rank. It joins the collective group described by its
//! rendezvous record, runs the stage with [`GroupReplicas`], and writes the stage's
//! events as JSON lines on stdout. Stages hand their results to each other through
//! files in the output directory, which rank 0 writes.

use std::path::PathBuf;
use std::time::Instant;

use scop_core::plan::Plan;
use scop_core::rendezvous::{BackendRendezvous, Rendezvous};
use scop_core::spec::JobSpec;
use scop_core::stage::Stage;

use crate::collective;
use crate::events::{Event, EventSink, JsonLinesStdout};
use crate::stages::context::device_for;
use crate::stages::ddp::GroupReplicas;
use crate::stages::{StageContext, export, finetune, knockoff, pretrain, score};

const DECIDE_ON_A_RANK: &str = "decide runs in the coordinator or `scop-worker run`, not on a rank";
const SWEEP_ON_A_RANK: &str =
    "sweep forks branch jobs in the coordinator or `scop-worker run`, not on a rank";

/// A stage a rank process can run: every stage but decide, which runs where the
/// plan is decided (the launching process or the coordinator).
pub fn rank_stage(name: &str) -> Result<Stage, String> {
    match name.parse::<Stage>()? {
        Stage::Decide => Err(DECIDE_ON_A_RANK.to_owned()),
        Stage::Sweep => Err(SWEEP_ON_A_RANK.to_owned()),
        stage => Ok(stage),
    }
}

/// The command line of `scop-worker rank`. These flags are a stable interface:
/// the worker agent builds them.
#[derive(Debug, Clone, clap::Args)]
pub struct RankArgs {
    /// The job spec (YAML or JSON); relative paths in it resolve against its directory.
    #[arg(long)]
    pub spec: PathBuf,
    /// The stage to run: pretrain, knockoff, score, finetune (prunes by the plan) or
    /// export (rank 0 exports, other ranks only join and leave).
    #[arg(long, value_parser = rank_stage)]
    pub stage: Stage,
    /// This process's rank, in 0..world; must match the rendezvous record.
    #[arg(long)]
    pub rank: u32,
    /// Number of ranks; must match the rendezvous record.
    #[arg(long)]
    pub world: u32,
    /// The rendezvous record (scop_core::rendezvous::Rendezvous): a JSON file
    /// (keep it private: it holds the job token), `-` for stdin, or the JSON
    /// text itself when it starts with `{` (visible to `ps`; for tests).
    #[arg(long)]
    pub rendezvous: String,
    /// Use this output directory instead of the spec's output.dir (shared by all ranks).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Continue the stage from its latest checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// The pruning plan (JSON) for finetune and export, as the coordinator
    /// handed it with the assignment; default: <output>/plan.json.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Intra-op CPU threads of this rank; 0 uses every core.
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    /// The local GPU of a CUDA rank whose record does not name one (a one-rank
    /// TCP group); an NCCL record's device must agree with it.
    #[arg(long)]
    pub device: Option<u32>,
    /// Write this rank's final parameter fingerprint (as JSON) to this file, so
    /// tests can compare the replicas of different ranks.
    #[arg(long, hide = true)]
    pub fingerprint_file: Option<PathBuf>,
}

/// Why a rank failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
    /// The plan given with `--plan`, which the message names.
    #[error("{0}")]
    Plan(String),
    #[error("rendezvous {source_name}: {message}")]
    Rendezvous { source_name: String, message: String },
    #[error("rank {rank} of {world}: joining the collective group: {source}")]
    Join {
        rank: u32,
        world: u32,
        #[source]
        source: collective::Error,
    },
    #[error("rank {rank}: {source}")]
    Stage {
        rank: u32,
        #[source]
        source: crate::stages::Error,
    },
}

impl Error {
    /// Whether no retry can fix this failure: the spec does not load, or the
    /// stage failed on its inputs (data, plan, init checkpoint), or the plan
    /// handed with the assignment does not read (a retry is handed the same
    /// plan). Joining the group, a bad rendezvous record and everything else
    /// may be transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Spec { .. } | Error::Plan(_) => true,
            Error::Stage { source, .. } => source.is_permanent(),
            Error::Rendezvous { .. } | Error::Join { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a rank leaves behind besides its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankOutcome {
    /// This rank's parameter fingerprint at the last replica check of the stage
    /// (none for export, or a stage with zero epochs).
    pub fingerprint: Option<u64>,
}

/// How errors name where the record came from: its file, `stdin`, or
/// `(inline JSON)`, never the record's text.
fn rendezvous_source_name(arg: &str) -> String {
    match arg {
        "-" => "stdin".to_owned(),
        inline if inline.trim_start().starts_with('{') => "(inline JSON)".to_owned(),
        path => path.to_owned(),
    }
}

/// Reads the rendezvous record from a file, stdin (`-`), or from the text itself if it is JSON.
pub fn read_rendezvous(arg: &str) -> Result<Rendezvous> {
    let (name, text) = if arg.trim_start().starts_with('{') {
        (rendezvous_source_name(arg), arg.to_owned())
    } else if arg == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Error::Rendezvous { source_name: "stdin".into(), message: e.to_string() })?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(arg)
            .map_err(|e| Error::Rendezvous { source_name: arg.to_owned(), message: e.to_string() })?;
        (arg.to_owned(), text)
    };
    let record: Rendezvous = serde_json::from_str(&text)
        .map_err(|e| Error::Rendezvous { source_name: name.clone(), message: e.to_string() })?;
    record.validate().map_err(|e| Error::Rendezvous { source_name: name, message: e.to_string() })?;
    Ok(record)
}

/// Runs `args.stage` as rank `args.rank`, with events on stdout.
pub fn run_rank(args: &RankArgs) -> Result<RankOutcome> {
    // SIGTERM from the agent (or Ctrl-C) ends the stage after a checkpoint.
    crate::interrupt::install();
    let mut spec = JobSpec::from_file(&args.spec)
        .map_err(|e| Error::Spec { path: args.spec.clone(), message: e.to_string() })?;
    if let Some(dir) = &args.output {
        spec.output.dir = dir.clone();
    }
    let plan = args.plan.as_deref().map(read_plan).transpose()?;
    let mut rendezvous = read_rendezvous(&args.rendezvous)?;
    // The spec's timeouts govern a job's ranks, whoever made the record (the local
    // launcher or the coordinator).
    rendezvous.timeout_ms = spec.resources.collective_timeout.as_millis();
    rendezvous.connect_timeout_ms = spec.resources.connect_timeout.as_millis();
    if (rendezvous.rank, rendezvous.world) != (args.rank, args.world) {
        return Err(Error::Rendezvous {
            // Never the inline record itself: it holds the job token.
            source_name: rendezvous_source_name(&args.rendezvous),
            message: format!(
                "the record is for rank {} of {}, but --rank {} --world {} was given",
                rendezvous.rank, rendezvous.world, args.rank, args.world
            ),
        });
    }
    if args.threads > 0 {
        tch::set_num_threads(args.threads as i32);
    }
    let local_device = match (&rendezvous.backend, args.device) {
        (BackendRendezvous::Nccl { device, .. }, Some(asked)) if *device != asked => {
            return Err(Error::Rendezvous {
                source_name: args.rendezvous.clone(),
                message: format!("the record is for GPU {device}, but --device {asked} was given"),
            });
        }
        (BackendRendezvous::Nccl { device, .. }, _) => *device as usize,
        (BackendRendezvous::Tcp { .. }, asked) => asked.unwrap_or(0) as usize,
    };
    let in_stage = |source| Error::Stage { rank: args.rank, source };
    let device = device_for(spec.resources.device, local_device).map_err(in_stage)?;
    let group = collective::connect(&rendezvous).map_err(|source| Error::Join {
        rank: args.rank,
        world: args.world,
        source,
    })?;
    let mut replicas = GroupReplicas::new(group);
    let mut sink = JsonLinesStdout;
    let started = Instant::now();
    run_stage(args.stage, &spec, device, &mut replicas, &mut sink, args.resume, plan).map_err(in_stage)?;
    sink.emit(&Event::StageFinished {
        stage: args.stage.as_str().to_owned(),
        seconds: started.elapsed().as_secs_f64(),
    });
    let outcome = RankOutcome { fingerprint: replicas.last_fingerprint() };
    if let Some(path) = &args.fingerprint_file {
        let record = serde_json::json!({
            "rank": args.rank,
            "stage": args.stage.as_str(),
            "fingerprint": outcome.fingerprint.map(|f| format!("{f:016x}")),
        });
        std::fs::write(path, record.to_string()).map_err(|e| in_stage(crate::stages::error::io(path)(e)))?;
    }
    Ok(outcome)
}

/// The plan handed to a rank (`--plan`), checked as the job directory's would be.
pub fn read_plan(path: &std::path::Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Plan(format!("{}: {e}", path.display())))?;
    Plan::from_json(&text, &path.display().to_string()).map_err(|e| Error::Plan(e.to_string()))
}

/// Runs one stage with the given replicas and sink; `plan` is the one handed
/// to the rank, if any (else the stages after decide read the job directory's).
pub fn run_stage(
    stage: Stage,
    spec: &JobSpec,
    device: tch::Device,
    replicas: &mut dyn crate::stages::parallel::Replicas,
    sink: &mut dyn EventSink,
    resume: bool,
    plan: Option<Plan>,
) -> crate::stages::Result<()> {
    let mut ctx = StageContext::new(spec, device, replicas, sink, resume);
    ctx.plan = plan;
    match stage {
        Stage::Pretrain => {
            pretrain::run(&mut ctx)?;
        }
        Stage::Knockoff => {
            knockoff::run(&mut ctx)?;
        }
        Stage::Score => {
            score::run(&mut ctx)?;
        }
        Stage::Decide => {
            return Err(crate::stages::Error::Input(DECIDE_ON_A_RANK.to_owned()));
        }
        Stage::Sweep => {
            return Err(crate::stages::Error::Input(SWEEP_ON_A_RANK.to_owned()));
        }
        Stage::Finetune => {
            let plan = ctx.plan()?;
            finetune::run(&mut ctx, &plan)?;
        }
        Stage::Export => {
            if ctx.replicas.rank() == 0 {
                export::run(&mut ctx)?;
            }
        }
    }
    Ok(())
}
