//! Real `scop-worker rank` processes on 127.0.0.1 with a tiny Fashion-MNIST job:
//! replicas stay bit-identical through knockoff and finetune, a killed rank ends
//! its peers with an error naming it, and `run --world-size 2` completes a job.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scop_core::rendezvous::Rendezvous;
use scop_core::spec::{DeviceKind, JobSpec};
use scop_core::stats::ScoreStatistics;
use scop_worker::commands::launch::Launcher;
use scop_worker::events::{Event, Recorder};
use scop_worker::stages::parallel::Single;
use scop_worker::stages::trainer::evaluate;
use scop_worker::stages::{StageContext, decide, weights};

const WORKER: &str = env!("CARGO_BIN_EXE_scop-worker");

fn data_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fashion-mnist")
}

/// A job small enough to train in seconds; `train_subset` sets the steps per epoch.
/// With `init_from` it starts from those weights instead of a pretrain stage.
pub(crate) fn tiny_spec(dir: &Path, train_subset: usize, init_from: Option<&Path>) -> PathBuf {
    let init = init_from.map_or(String::new(), |p| format!("  init_from: {}\n", p.display()));
    let pretrain = match init_from {
        Some(_) => "",
        None => "pretrain: { epochs: 1, batch_size: 8, lr: 0.05, schedule: constant }\n",
    };
    let text = format!(
        "name: tiny
model:
  arch: resnet20
  num_classes: 10
  in_channels: 1
  input_size: 32
{init}data:
  format: idx
  root: {root}
  train_subset: {train_subset}
  test_subset: 64
  augment: false
  loader_workers: 1
{pretrain}knockoff: {{ epochs: 1, batch_size: 8, source: {{ kind: permute }} }}
prune: {{ rate: 0.45, policy: layer, residual: scatter }}
finetune: {{ epochs: 1, batch_size: 8, lr: 0.02, schedule: constant, bn_recalibration_batches: 2 }}
resources: {{ device: cpu, world_size: 1, threads: 1 }}
output: {{ dir: {out}, log_every_steps: 1 }}
seed: 3
",
        root = data_root().display(),
        out = dir.join("out").display(),
    );
    let path = dir.join("tiny.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn rendezvous(world: usize) -> Vec<Rendezvous> {
    Launcher::new("-".into(), "-".into(), world, DeviceKind::Cpu, 1).rendezvous().unwrap()
}

pub(crate) fn spawn_rank(spec: &Path, stage: &str, record: &Rendezvous, fingerprint: Option<&Path>) -> Child {
    rank_command(spec, stage, record, fingerprint).spawn().unwrap()
}

fn rank_command(spec: &Path, stage: &str, record: &Rendezvous, fingerprint: Option<&Path>) -> Command {
    let mut cmd = Command::new(WORKER);
    cmd.args(["rank", "--stage", stage, "--threads", "1"])
        .arg("--spec")
        .arg(spec)
        .args(["--rank", &record.rank.to_string(), "--world", &record.world.to_string()])
        .arg("--rendezvous")
        .arg(serde_json::to_string(record).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = fingerprint {
        cmd.arg("--fingerprint-file").arg(path);
    }
    cmd
}

/// Runs `stage` on `world` ranks, handing them `plan` (`--plan`) if given;
/// returns each rank's fingerprint.
fn run_ranks(spec: &Path, dir: &Path, stage: &str, world: usize, plan: Option<&Path>) -> Vec<String> {
    let children: Vec<(Child, PathBuf)> = rendezvous(world)
        .iter()
        .map(|r| {
            let path = dir.join(format!("{stage}-rank{}.json", r.rank));
            let mut cmd = rank_command(spec, stage, r, Some(&path));
            if let Some(plan) = plan {
                cmd.arg("--plan").arg(plan);
            }
            (cmd.spawn().unwrap(), path)
        })
        .collect();
    children
        .into_iter()
        .map(|(child, path)| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{stage}: {}", String::from_utf8_lossy(&out.stderr));
            let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            record["fingerprint"].as_str().expect("a fingerprint").to_owned()
        })
        .collect()
}

/// Dense starting weights, so knockoff can run without a pretrain stage.
fn init_weights(dir: &Path) -> PathBuf {
    let spec = JobSpec::from_file(&tiny_spec(dir, 64, None)).unwrap();
    let desc = weights::dense_desc(&spec).unwrap();
    let (_, vs) = weights::build(&desc, tch::Device::Cpu, 11).unwrap();
    let path = dir.join("init.safetensors");
    weights::save(&vs, &desc, &path, &dir.join("init-arch.json")).unwrap();
    path
}

#[test]
fn replicas_are_bit_identical_after_knockoff_and_finetune() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init_weights(tmp.path());
    let spec_path = tiny_spec(tmp.path(), 64, Some(&init));

    let knockoff = run_ranks(&spec_path, tmp.path(), "knockoff", 2, None);
    assert_eq!(knockoff[0], knockoff[1], "knockoff replicas differ");

    let spec = JobSpec::from_file(&spec_path).unwrap();
    let (mut single, mut quiet) = (Single, Recorder::default());
    decide::run(&StageContext::new(&spec, tch::Device::Cpu, &mut single, &mut quiet, false)).unwrap();

    // The ranks prune by the plan they are handed, as the agent hands the
    // assignment's: the job directory has none left.
    let layout = scop_core::job_dir::JobDir::new(&spec.output.dir);
    let handed = tmp.path().join("handed-plan.json");
    std::fs::rename(layout.plan(), &handed).unwrap();
    let finetune = run_ranks(&spec_path, tmp.path(), "finetune", 2, Some(&handed));
    assert_eq!(finetune[0], finetune[1], "finetune replicas differ");
    assert_ne!(finetune[0], knockoff[0]);
}

#[test]
fn a_rank_handed_an_unreadable_plan_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tiny_spec(tmp.path(), 64, None);
    let record = &rendezvous(1)[0];
    let bad = tmp.path().join("bad-plan.json");
    std::fs::write(&bad, "{\"policy\": 3}").unwrap();
    for plan in [tmp.path().join("missing-plan.json"), bad] {
        let out = rank_command(&spec, "finetune", record, None).arg("--plan").arg(&plan).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(&plan.display().to_string()), "the error does not name the plan: {stderr}");
    }
}

#[test]
fn killing_a_rank_ends_the_others_with_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    // 1024 samples over 2 ranks in batches of 8: 64 steps, far more than the kill needs.
    let spec = tiny_spec(tmp.path(), 1024, None);
    let records = rendezvous(2);
    let mut survivor = spawn_rank(&spec, "pretrain", &records[0], None);
    let mut victim = spawn_rank(&spec, "pretrain", &records[1], None);

    // Wait until the victim has trained a step (its first progress event), then kill it.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(victim.stdout.take().unwrap()));
    let progressed = lines.by_ref().map_while(Result::ok).any(|l| l.contains(r#""type":"progress""#));
    assert!(progressed, "rank 1 never reported progress");
    victim.kill().unwrap();
    let killed_at = Instant::now();
    victim.wait().unwrap();

    let status = loop {
        if let Some(status) = survivor.try_wait().unwrap() {
            break status;
        }
        // A crash closes the victim's sockets: no timeout is involved, however long
        // `resources.collective_timeout` is (10 min by default).
        assert!(killed_at.elapsed() < Duration::from_secs(10), "rank 0 still running 10 s after the kill");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut survivor.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "rank 0 exited successfully after losing rank 1");
    // A lost peer may not recur: a retry is worth it, so not the permanent status.
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lost rank 1"), "rank 0's error does not name rank 1: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "expected one line: {stderr}");
}

/// `scop-worker run` at `world` ranks completes the tiny job and writes the export.
fn run_job_and_check_export(world: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tiny_spec(tmp.path(), 64, None);
    let out = Command::new(WORKER)
        .arg("run")
        .arg(&spec)
        .args(["--world-size", &world.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let export = tmp.path().join("out/export");
    for file in ["model.safetensors", "arch.json", "model.pt", "model-card.json"] {
        assert!(export.join(file).is_file(), "missing {file}; stderr: {stderr}");
    }
    // Every stage finished once in the log (at world 2: rank 0's events, relayed).
    let log = std::fs::read_to_string(tmp.path().join("out/metrics.jsonl")).unwrap();
    let finished = log.lines().filter(|l| l.contains(r#""type":"stage_finished""#)).count();
    assert_eq!(finished, 4, "{log}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("artifacts:"));

    // What the ranks reported, each on its shard, is the model they saved: evaluated
    // here in one process on the whole test set, it has the same top-1 and loss.
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("model-card.json")).unwrap()).unwrap();
    let reported = card["metrics"]["top1_pruned"].as_f64().expect("metrics.top1_pruned");
    let last_eval: serde_json::Value = log
        .lines()
        .rfind(|l| l.contains(r#""type":"evaluated""#) && l.contains(r#""stage":"finetune""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("a finetune evaluation in metrics.jsonl");
    let reported_loss = last_eval["loss"].as_f64().unwrap();
    let job = JobSpec::from_file(&spec).unwrap();
    let desc = weights::read_arch(&export.join("arch.json")).unwrap();
    let (model, _vs) = weights::load(&desc, &export.join("model.safetensors"), tch::Device::Cpu).unwrap();
    let (mut single, mut quiet) = (Single, Recorder::default());
    let mut ctx = StageContext::new(&job, tch::Device::Cpu, &mut single, &mut quiet, false);
    let test = ctx.test_loader(256).unwrap();
    let here = evaluate(&mut ctx, "check", &model, &test).unwrap();
    assert_eq!(here.samples, 64);
    assert_eq!(
        here.top1, reported,
        "the exported model scores {} here, the job reported {reported}",
        here.top1
    );
    // Summed in another order over other batches: equal up to rounding. Ranks that
    // evaluated with their own BN statistics would be off by far more.
    let gap = (here.loss - reported_loss).abs();
    assert!(gap < 1e-5 * reported_loss.max(1.0), "loss {} here, {reported_loss} reported", here.loss);
}

#[test]
fn launcher_runs_a_job_on_two_ranks_and_exports() {
    run_job_and_check_export(2);
}

#[test]
fn one_rank_runs_in_process_with_the_same_orchestration() {
    run_job_and_check_export(1);
}

#[test]
fn launcher_names_the_rank_that_failed_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = std::fs::read_to_string(tiny_spec(tmp.path(), 64, None)).unwrap();
    // No pretrain and no init_from: knockoff fails on every rank with an input error.
    spec = spec.lines().filter(|l| !l.starts_with("pretrain:")).collect::<Vec<_>>().join("\n");
    let path = tmp.path().join("broken.yaml");
    std::fs::write(&path, spec).unwrap();
    let out = Command::new(WORKER).arg("run").arg(&path).args(["--world-size", "2"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.contains("knockoff: rank "), "{stderr}");
    // An input error: no retry can fix it, and the exit status says so.
    assert!(last.contains("failed first (exit code 65)"), "{stderr}");
    assert!(last.contains("knockoff needs trained weights"), "{stderr}");
}

/// SIGTERM (what the agent sends when it stops) makes a rank finish its step,
/// write a checkpoint and exit naming where it stopped; `--resume` then goes on
/// from the very next step.
#[test]
fn sigterm_checkpoints_and_resume_continues_from_the_next_step() {
    let tmp = tempfile::tempdir().unwrap();
    // 1024 samples in batches of 8: 128 steps, far more than the stop needs.
    let spec = tiny_spec(tmp.path(), 1024, None);
    let record = &rendezvous(1)[0];
    let mut rank = spawn_rank(&spec, "pretrain", record, None);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(rank.stdout.take().unwrap()));
    let progressed = lines.by_ref().map_while(Result::ok).any(|l| l.contains(r#""type":"progress""#));
    assert!(progressed, "the rank never reported progress");
    let pid = nix::unistd::Pid::from_raw(rank.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = rank.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut rank.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "an interrupted stage must not look finished");
    let (_, after) =
        stderr.split_once("interrupted after epoch 1, step ").unwrap_or_else(|| panic!("{stderr}"));
    let step: u64 = after.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    assert!(step > 0 && step < 128, "stopped at step {step}");
    let checkpoint = rest
        .iter()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).ok().filter(|v| v["type"] == "checkpoint_written")
        })
        .expect("a checkpoint event before the exit");
    let path = PathBuf::from(checkpoint["path"].as_str().unwrap());
    assert!(path.ends_with(format!("pretrain-step-{step:08}")), "{}", path.display());

    let resumed = Command::new(WORKER)
        .args(["rank", "--stage", "pretrain", "--threads", "1", "--resume"])
        .arg("--spec")
        .arg(&spec)
        .args(["--rank", "0", "--world", "1", "--rendezvous", &serde_json::to_string(record).unwrap()])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let first = String::from_utf8_lossy(&resumed.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "progress")
        .expect("progress after resuming");
    assert_eq!(first["step"].as_u64(), Some(step + 1), "{first}");
}

/// Runs one `rank` process of `stage` to its end; returns its exit code and stderr.
fn rank_once(spec: &Path, stage: &str) -> (Option<i32>, String) {
    let out = spawn_rank(spec, stage, &rendezvous(1)[0], None).wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A failure no retry can fix exits with the permanent status (65), which the
/// agent reports so that the coordinator fails the job at once: missing data,
/// a spec the worker rejects, a plan for another network.
#[test]
fn failures_no_retry_can_fix_exit_with_the_permanent_status() {
    let permanent = scop_core::event::PERMANENT_FAILURE_EXIT_CODE;
    let tmp = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(tiny_spec(tmp.path(), 64, None)).unwrap();

    // Missing data: an empty folder as data.root.
    let empty = tmp.path().join("no-data");
    std::fs::create_dir_all(&empty).unwrap();
    let root = format!("  root: {}", data_root().display());
    let missing = tmp.path().join("missing.yaml");
    std::fs::write(&missing, spec.replace(&root, &format!("  root: {}", empty.display()))).unwrap();
    let (code, stderr) = rank_once(&missing, "pretrain");
    assert_eq!(code, Some(permanent), "{stderr}");
    assert!(stderr.contains(&format!("{}/train-images-idx3-ubyte", empty.display())), "{stderr}");

    // A spec the worker rejects.
    let rejected = tmp.path().join("rejected.yaml");
    std::fs::write(&rejected, spec.replace("world_size: 1", "world_size: 0")).unwrap();
    let (code, stderr) = rank_once(&rejected, "pretrain");
    assert_eq!(code, Some(permanent), "{stderr}");
    assert!(stderr.contains("world_size"), "{stderr}");

    // A plan for another network: the knockoff stage's resnet20 weights are
    // there, the plan beside them was decided for resnet56.
    let good = tmp.path().join("tiny.yaml");
    let job = JobSpec::from_file(&good).unwrap();
    let layout = scop_core::job_dir::JobDir::new(tmp.path().join("out"));
    let desc = weights::dense_desc(&job).unwrap();
    let (_, vs) = weights::build(&desc, tch::Device::Cpu, 11).unwrap();
    weights::save(&vs, &desc, &layout.model("knockoff"), &layout.arch("knockoff")).unwrap();
    let other = scop_core::arch::ArchDesc::new("resnet56", 10, 1).unwrap();
    let units = other
        .units()
        .map(|u| scop_core::plan::UnitPlan {
            name: u.name.clone(),
            channels: u.out_channels,
            kept: (0..u.out_channels / 2).collect(),
        })
        .collect();
    let plan = scop_core::plan::Plan::from_units(&other, units, job.prune.clone(), 32).unwrap();
    std::fs::write(layout.plan(), plan.to_json()).unwrap();
    let (code, stderr) = rank_once(&good, "finetune");
    assert_eq!(code, Some(permanent), "{stderr}");
    assert!(stderr.contains("plan.arch"), "{stderr}");
}

/// `prune.criterion: taylor` on two `scop-worker rank` processes, the path the
/// agent takes: the score stage averages its gradients over the ranks (through
/// the checked collective), rank 0 alone streams the scores, and decide plans
/// from the file it wrote.
#[test]
fn two_ranks_score_by_taylor_and_rank_zero_streams_the_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init_weights(tmp.path());
    let plain = std::fs::read_to_string(tiny_spec(tmp.path(), 64, Some(&init))).unwrap();
    let yaml = plain.replace(
        "residual: scatter }",
        "residual: scatter, criterion: taylor, taylor_batches: 2, taylor_batch_size: 8 }",
    );
    assert!(yaml.contains("criterion: taylor"), "{yaml}");
    let spec_path = tmp.path().join("taylor.yaml");
    std::fs::write(&spec_path, &yaml).unwrap();

    let children: Vec<Child> =
        rendezvous(2).iter().map(|r| spawn_rank(&spec_path, "score", r, None)).collect();
    let mut sent = Vec::new();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {rank}: {}", String::from_utf8_lossy(&out.stderr));
        let statistics: Vec<ScoreStatistics> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| match serde_json::from_str::<Event>(l) {
                Ok(Event::Statistics(s)) => Some(s),
                _ => None,
            })
            .collect();
        sent.push(statistics);
    }
    assert_eq!((sent[0].len(), sent[1].len()), (1, 0), "rank 0 alone streams the scores");
    let stats = &sent[0][0];
    assert_eq!((stats.epoch, stats.units.len()), (1, 18));
    for unit in &stats.units {
        assert!(unit.beta.is_empty() && unit.score.len() == unit.gamma_abs.len(), "{}", unit.unit);
        assert!(unit.score.iter().all(|s| s.is_finite() && *s >= 0.0), "{}: {:?}", unit.unit, unit.score);
    }
    assert!(stats.units.iter().any(|u| u.score.iter().any(|s| *s > 0.0)), "every score is 0");

    let spec = JobSpec::from_file(&spec_path).unwrap();
    let (mut single, mut quiet) = (Single, Recorder::default());
    let plan =
        decide::run(&StageContext::new(&spec, tch::Device::Cpu, &mut single, &mut quiet, false)).unwrap();
    assert_eq!(plan.units.len(), 18);
    assert!(plan.summary.params_after < plan.summary.params_before);
}
