//! A shared coordinator: users from a users file, every public call checked
//! against the caller's role, owners, quotas, capacity, SIGHUP reload, path
//! roots at submission, summaries in listings and the audit log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use scop_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

use scop_server::testing::{FakeWorker, Jobs, SPEC, TestServer};
use scop_server::users::{Role, add_to_file};

/// A users file with these users; returns their tokens in order.
fn users_file(path: &Path, users: &[(&str, Role)]) -> Vec<String> {
    users.iter().map(|(name, role)| add_to_file(path, name, *role).unwrap()).collect()
}

async fn start(dir: &Path, users: &Path, adjust: impl FnOnce(&mut scop_server::Config)) -> TestServer {
    let users = users.to_owned();
    TestServer::start_with(dir, move |config| {
        config.token_file = None;
        config.users_file = Some(users);
        adjust(config);
    })
    .await
}

async fn submit(jobs: &mut Jobs, spec: &str, priority: i32) -> Result<pb::Job, tonic::Status> {
    let request = pb::SubmitJobRequest { spec_yaml: spec.into(), priority, ..Default::default() };
    jobs.submit_job(request).await.map(tonic::Response::into_inner)
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.map_or_else(|status| status.code(), |_| Code::Ok)
}

/// Every RPC of the public API as one role, with the code each gives.
async fn every_call(
    jobs: &mut Jobs,
    own_job: &str,
    other_job: &str,
    worker: &str,
) -> Vec<(&'static str, Code)> {
    let id = |job: &str| job.to_owned();
    let mut codes = vec![("SubmitJob", code(submit(jobs, SPEC, 0).await))];
    codes.push(("SubmitJob priority 5", code(submit(jobs, SPEC, 5).await)));
    codes.push(("GetJob", code(jobs.get_job(pb::GetJobRequest { job_id: id(other_job) }).await)));
    codes.push(("ListJobs", code(jobs.list_jobs(pb::ListJobsRequest::default()).await)));
    let watch = pb::WatchJobRequest { job_id: id(other_job), from_sequence: 1 };
    let watched = match jobs.watch_job(watch).await {
        Ok(stream) => stream.into_inner().next().await.map_or(Code::Unknown, code),
        Err(status) => status.code(),
    };
    codes.push(("WatchJob", watched));
    codes.push(("GetPlan", code(jobs.get_plan(pb::GetPlanRequest { job_id: id(other_job) }).await)));
    codes.push(("ListWorkers", code(jobs.list_workers(pb::ListWorkersRequest::default()).await)));
    codes.push((
        "ListArtifacts",
        code(jobs.list_artifacts(pb::ListArtifactsRequest { job_id: id(other_job) }).await),
    ));
    let download = pb::DownloadArtifactRequest { job_id: id(other_job), path: "model_card.md".into() };
    codes.push(("DownloadArtifact", code(jobs.download_artifact(download).await)));
    let statistics = pb::GetScoreStatisticsRequest { job_id: id(other_job), epoch: 0 };
    codes.push(("GetScoreStatistics", code(jobs.get_score_statistics(statistics).await)));
    codes.push(("WhoAmI", code(jobs.who_am_i(pb::WhoAmIRequest {}).await)));
    let drain = pb::DrainWorkerRequest { worker_id: worker.into() };
    codes.push(("DrainWorker", code(jobs.drain_worker(drain).await)));
    let undrain = pb::UndrainWorkerRequest { worker_id: worker.into() };
    codes.push(("UndrainWorker", code(jobs.undrain_worker(undrain).await)));
    codes.push(("CancelJob own", code(jobs.cancel_job(pb::CancelJobRequest { job_id: id(own_job) }).await)));
    codes.push((
        "CancelJob other",
        code(jobs.cancel_job(pb::CancelJobRequest { job_id: id(other_job) }).await),
    ));
    codes
}

#[tokio::test]
async fn every_call_is_checked_against_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let tokens = users_file(
        &users,
        &[("vic", Role::Viewer), ("sam", Role::Submitter), ("sue", Role::Submitter), ("ada", Role::Admin)],
    );
    let server = start(dir.path(), &users, |_| {}).await;
    let client = |i: usize| server.jobs_with(Some(&tokens[i]));
    let (mut vic, mut sam, mut sue, mut ada) =
        (client(0).await, client(1).await, client(2).await, client(3).await);

    // Jobs of each submitter, to cancel as their owner and as someone else.
    let fresh = async |jobs: &mut Jobs| submit(jobs, SPEC, 0).await.unwrap().id;
    let (sam_job, sue_job) = (fresh(&mut sam).await, fresh(&mut sue).await);
    let (sam_job2, sue_job2, ada_job) = (fresh(&mut sam).await, fresh(&mut sue).await, fresh(&mut ada).await);
    // A worker to drain (it may take one of the jobs meanwhile; nothing below depends on it).
    let worker = FakeWorker::connect(&server, "drainable", 1, &[]).await;

    use Code::{NotFound, Ok, PermissionDenied, ResourceExhausted};
    let read = [
        ("GetJob", Ok),
        ("ListJobs", Ok),
        ("WatchJob", Ok),
        ("GetPlan", NotFound),
        ("ListWorkers", Ok),
        ("ListArtifacts", Ok),
        ("DownloadArtifact", NotFound),
        ("GetScoreStatistics", NotFound),
        ("WhoAmI", Ok),
    ];
    let expect = |submit: Code, priority: Code, drain: Code, own: Code, other: Code| {
        let mut all = vec![("SubmitJob", submit), ("SubmitJob priority 5", priority)];
        all.extend(read);
        all.extend([("DrainWorker", drain), ("UndrainWorker", drain)]);
        all.extend([("CancelJob own", own), ("CancelJob other", other)]);
        all
    };
    let w = worker.id.as_str();
    // A viewer reads everything and changes nothing (the "own" job is sam's).
    assert_eq!(
        every_call(&mut vic, &sam_job, &sue_job, w).await,
        expect(PermissionDenied, PermissionDenied, PermissionDenied, PermissionDenied, PermissionDenied)
    );
    // A submitter submits at priorities up to 0 and cancels only its own jobs.
    assert_eq!(
        every_call(&mut sam, &sam_job, &sue_job, w).await,
        expect(Ok, ResourceExhausted, PermissionDenied, Ok, PermissionDenied)
    );
    // An admin does everything, to anyone's jobs and to workers.
    assert_eq!(every_call(&mut ada, &ada_job, &sue_job2, w).await, expect(Ok, Ok, Ok, Ok, Ok));
    assert_eq!(
        code(sue.cancel_job(pb::CancelJobRequest { job_id: sam_job2.clone() }).await),
        PermissionDenied
    );
    let denied = sue.cancel_job(pb::CancelJobRequest { job_id: sam_job2 }).await.unwrap_err();
    assert!(denied.message().contains("belongs to \"sam\""), "{}", denied.message());
    let denied = vic.submit_job(pb::SubmitJobRequest { spec_yaml: SPEC.into(), ..Default::default() }).await;
    let denied = denied.unwrap_err();
    assert!(
        denied.message().contains("user \"vic\" (viewer) may not call SubmitJob"),
        "{}",
        denied.message()
    );

    // Jobs record their owner; --mine is the owner filter; whoami names the caller.
    let job = sam.get_job(pb::GetJobRequest { job_id: sam_job.clone() }).await.unwrap().into_inner();
    assert_eq!(job.owner, "sam");
    let mine = pb::ListJobsRequest { owner: "sue".into(), ..Default::default() };
    let listed = vic.list_jobs(mine).await.unwrap().into_inner().jobs;
    assert!(!listed.is_empty() && listed.iter().all(|j| j.owner == "sue"), "{listed:?}");
    let me = sam.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((me.user.as_str(), me.role.as_str(), me.max_priority), ("sam", "submitter", 0));

    // Every mutating call is in the audit log with its user.
    let log = server.store.audit_log(100).await.unwrap();
    let cancels: Vec<(&str, &str)> =
        log.iter().filter(|e| e.action == "cancel").map(|e| (e.user.as_str(), e.target.as_str())).collect();
    assert_eq!(
        cancels,
        vec![("sam", sam_job.as_str()), ("ada", ada_job.as_str()), ("ada", sue_job2.as_str())]
    );
    let submits = log.iter().filter(|e| e.action == "submit").count();
    assert_eq!(submits, 5 + 1 + 2, "five set-up jobs, sam's one, ada's two");
    let drains: Vec<(&str, &str, &str)> = log
        .iter()
        .filter(|e| e.action.contains("drain"))
        .map(|e| (e.user.as_str(), e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(drains, vec![("ada", "drain", w), ("ada", "undrain", w)], "refused calls are not audited");
    server.stop().await;
}

#[tokio::test]
async fn unknown_tokens_are_unauthenticated_and_sighup_revokes_a_removed_one() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let tokens = users_file(&users, &[("ada", Role::Admin), ("vic", Role::Viewer)]);
    let server = start(dir.path(), &users, |_| {}).await;
    for token in [None, Some("not-a-token"), Some(scop_server::testing::CLIENT_TOKEN)] {
        let mut jobs = server.jobs_with(token).await;
        let status = jobs.list_jobs(pb::ListJobsRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
    }
    let mut vic = server.jobs_with(Some(&tokens[1])).await;
    assert!(vic.who_am_i(pb::WhoAmIRequest {}).await.is_ok());

    // Rewrite the file without vic and tell scopd, as an operator would.
    let mut file = scop_server::users::UsersFile::read(&users).unwrap();
    file.users.retain(|u| u.name != "vic");
    file.write(&users).unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut last = Code::Ok;
    for _ in 0..600 {
        last = code(vic.who_am_i(pb::WhoAmIRequest {}).await);
        if last == Code::Unauthenticated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, Code::Unauthenticated, "the revoked token still works after SIGHUP");
    let status = vic.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err();
    assert!(status.message().contains("unknown or revoked token"), "{}", status.message());
    let mut ada = server.jobs_with(Some(&tokens[0])).await;
    assert_eq!(ada.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner().user, "ada");
    server.stop().await;
}

/// A `scopd` process, killed at the end of the test, pass or fail.
struct Scopd(std::process::Child);

impl Drop for Scopd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line of the log file containing `needle`, once scopd wrote it
/// (or panics with the log when it never does, or when scopd exits).
fn log_line(scopd: &mut Scopd, log: &Path, needle: &str) -> String {
    for _ in 0..600 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        if let Some(status) = scopd.0.try_wait().unwrap() {
            panic!("scopd exited ({status}) before logging {needle:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("scopd never logged {needle:?}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// A real `scopd` process with a users file: removing a user from the file
/// and sending the process SIGHUP revokes its token while the others keep
/// working; a file that no longer parses leaves the old users in force.
#[tokio::test]
async fn a_running_scopd_revokes_a_removed_user_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let tokens = users_file(&users, &[("ada", Role::Admin), ("vic", Role::Viewer)]);
    let worker_tokens = dir.path().join("worker.tokens");
    std::fs::write(&worker_tokens, format!("{}\n", scop_server::testing::WORKER_TOKEN)).unwrap();
    let log = dir.path().join("scopd.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_scopd"))
        .env_clear()
        .env("RUST_LOG", "info")
        .args(["--public-addr", "127.0.0.1:0", "--worker-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--users")
        .arg(&users)
        .arg("--worker-token-file")
        .arg(&worker_tokens)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut scopd = Scopd(child);
    let pid = nix::unistd::Pid::from_raw(scopd.0.id().try_into().unwrap());
    let line = log_line(&mut scopd, &log, "public gRPC API listening");
    let addr = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).expect(&line).to_owned();
    let connect = async |token: &str| {
        let channel =
            scop_connect::endpoint(&format!("http://{addr}"), None).unwrap().connect().await.unwrap();
        pb::job_service_client::JobServiceClient::with_interceptor(
            channel,
            scop_server::testing::bearer(Some(token)),
        )
    };
    let whoami =
        async |jobs: &mut Jobs| jobs.who_am_i(pb::WhoAmIRequest {}).await.map(|r| r.into_inner().user);
    let (mut ada, mut vic) = (connect(&tokens[0]).await, connect(&tokens[1]).await);
    // Once a call is answered, the SIGHUP handler is in place.
    assert_eq!(whoami(&mut vic).await.unwrap(), "vic");

    // A file that does not load is refused as a whole: vic keeps working.
    let good = std::fs::read_to_string(&users).unwrap();
    std::fs::write(&users, "users: [ { name: broken\n").unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    log_line(&mut scopd, &log, "users file not reloaded; the previous users stay in force");
    assert_eq!(whoami(&mut vic).await.unwrap(), "vic");
    std::fs::write(&users, good).unwrap();

    // Remove vic from the file, as an operator would, and tell the process.
    let mut file = scop_server::users::UsersFile::read(&users).unwrap();
    file.users.retain(|u| u.name != "vic");
    file.write(&users).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    log_line(&mut scopd, &log, "users file reloaded");
    let status = vic.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("unknown or revoked token"), "{}", status.message());
    assert_eq!(whoami(&mut ada).await.unwrap(), "ada");
    assert_eq!(
        code(connect(&tokens[1]).await.list_jobs(pb::ListJobsRequest::default()).await),
        Code::Unauthenticated
    );
    assert!(scopd.0.try_wait().unwrap().is_none(), "SIGHUP reloads; it does not stop scopd");
}

#[tokio::test]
async fn quotas_refuse_naming_the_quota_and_capacity_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let tokens = users_file(&users, &[("sam", Role::Submitter), ("ada", Role::Admin)]);
    let mut file = scop_server::users::UsersFile::read(&users).unwrap();
    file.users[0].quotas.max_queued_jobs = Some(2);
    file.users[0].quotas.max_rank_slots = Some(3);
    file.users[0].quotas.max_watch_streams = Some(1);
    file.users[0].quotas.max_downloads = Some(1);
    file.write(&users).unwrap();
    let server = start(dir.path(), &users, |_| {}).await;
    let mut sam = server.jobs_with(Some(&tokens[0])).await;

    let wide = format!("{SPEC}resources: {{ world_size: 4 }}\n");
    let status = submit(&mut sam, &wide, 0).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_rank_slots"), "{}", status.message());
    let first = submit(&mut sam, &format!("{SPEC}resources: {{ world_size: 2 }}\n"), 0).await.unwrap();
    let status = submit(&mut sam, &format!("{SPEC}resources: {{ world_size: 2 }}\n"), 0).await.unwrap_err();
    assert!(status.message().contains("max_rank_slots: 2 rank slots in use"), "{}", status.message());
    submit(&mut sam, SPEC, 0).await.unwrap();
    let status = submit(&mut sam, SPEC, 0).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_queued_jobs: 2 of 2"), "{}", status.message());
    // Another user's quota is its own; an admin's is unlimited.
    let mut ada = server.jobs_with(Some(&tokens[1])).await;
    let big = submit(&mut ada, &wide, 9).await.unwrap();

    // A queued job no registered worker can hold says why it waits.
    let _worker = FakeWorker::connect(&server, "small", 2, &[]).await;
    let got = ada.get_job(pb::GetJobRequest { job_id: big.id.clone() }).await.unwrap().into_inner();
    assert_eq!(
        got.queued_reason,
        "needs 4 cpu rank slots; the registered workers have 2 in all: it starts once enough workers join"
    );
    let fits = ada.get_job(pb::GetJobRequest { job_id: first.id.clone() }).await.unwrap().into_inner();
    assert_eq!(fits.queued_reason, "");

    // Concurrent WatchJob streams per user: one here.
    let watch = || pb::WatchJobRequest { job_id: first.id.clone(), from_sequence: 1 };
    let open = sam.watch_job(watch()).await.unwrap();
    let status = sam.watch_job(watch()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_watch_streams"), "{}", status.message());
    drop(open);
    let mut reopened = Code::ResourceExhausted;
    for _ in 0..600 {
        reopened = code(sam.watch_job(watch()).await);
        if reopened == Code::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reopened, Code::Ok, "a closed stream frees its place");

    // Concurrent downloads per user: one here. A download of 64 MiB that is
    // not read stays open: flow control holds it far before its end.
    let job_dir = server.job_dir(&first.id);
    std::fs::create_dir_all(&job_dir).unwrap();
    std::fs::write(job_dir.join("big.bin"), vec![0_u8; 64 << 20]).unwrap();
    let download = || pb::DownloadArtifactRequest { job_id: first.id.clone(), path: "big.bin".into() };
    let held = sam.download_artifact(download()).await.unwrap();
    let status = sam.download_artifact(download()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_downloads: user \"sam\""), "{}", status.message());
    // The limit is sam's own: the admin downloads meanwhile.
    let mut first_chunk = ada.download_artifact(download()).await.unwrap().into_inner();
    assert_eq!(first_chunk.message().await.unwrap().unwrap().total_bytes, 64 << 20);
    drop(first_chunk);
    drop(held);
    let mut reopened = Code::ResourceExhausted;
    for _ in 0..600 {
        reopened = code(sam.download_artifact(download()).await);
        if reopened == Code::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reopened, Code::Ok, "a closed download frees its place");
    server.stop().await;
}

#[tokio::test]
async fn spec_paths_must_stay_inside_the_roots() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let (data, models) = (base.join("data"), base.join("models"));
    for sub in [data.join("fmnist"), models.clone(), base.join("secret")] {
        std::fs::create_dir_all(sub).unwrap();
    }
    std::os::unix::fs::symlink(base.join("secret"), data.join("link")).unwrap();
    let users = dir.path().join("users.yaml");
    let tokens = users_file(&users, &[("ada", Role::Admin)]);
    let roots: (Vec<PathBuf>, Vec<PathBuf>) = (vec![data.clone()], vec![models.clone()]);
    let server = start(dir.path(), &users, move |config| {
        config.data_roots = roots.0;
        config.models_roots = roots.1;
    })
    .await;
    let mut jobs = server.jobs_with(Some(&tokens[0])).await;
    let spec = |extra: &str| format!("model: {{ arch: resnet20, num_classes: 10 }}\n{extra}");
    let root = |path: &Path| format!("data: {{ format: idx, root: {} }}\n", path.display());
    let check = async |jobs: &mut Jobs, yaml: String, field: &str, message: &str| {
        let status = submit(jobs, &yaml, 0).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{yaml}");
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1, "{yaml}: {violations:?}");
        assert_eq!(violations[0].field, field, "{yaml}");
        assert!(violations[0].description.contains(message), "{yaml}: {}", violations[0].description);
    };
    let ok = root(&data.join("fmnist"));
    submit(&mut jobs, &spec(&ok), 0).await.unwrap();
    check(
        &mut jobs,
        spec(&root(&data.join("../secret"))),
        "spec_yaml.data.root",
        "is outside the allowed roots",
    )
    .await;
    check(
        &mut jobs,
        spec("data: { format: idx, root: /etc }\n"),
        "spec_yaml.data.root",
        "outside the allowed roots",
    )
    .await;
    check(&mut jobs, spec(&root(&data.join("link"))), "spec_yaml.data.root", "resolved to").await;
    let generator = |path: &Path| {
        format!("{ok}knockoff: {{ source: {{ kind: generator, path: {} }} }}\n", path.display())
    };
    check(
        &mut jobs,
        spec(&generator(&data.join("gen.pt"))),
        "spec_yaml.knockoff.source.path",
        "models roots only",
    )
    .await;
    submit(&mut jobs, &spec(&generator(&models.join("gen.pt"))), 0).await.unwrap();
    let init = format!("model: {{ arch: resnet20, num_classes: 10, init_from: /etc/passwd }}\n{ok}");
    check(&mut jobs, init, "spec_yaml.model.init_from", "outside the allowed roots").await;
    server.stop().await;
}

#[tokio::test]
async fn padded_specs_do_not_break_listing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    // Five specs of 1.5 MiB each (a long data path: the stored spec is
    // normalised, so comments would not survive), under the 4 MiB request
    // limit each but far over it together.
    let padding = "x".repeat(1_500_000);
    for i in 0..5 {
        let spec = format!(
            "model: {{ arch: resnet20, num_classes: 10 }}\ndata: {{ format: idx, root: /{padding} }}\nname: padded-{i}\n"
        );
        submit(&mut jobs, &spec, 0).await.unwrap();
    }
    let listed = jobs.list_jobs(pb::ListJobsRequest::default()).await.unwrap().into_inner().jobs;
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|j| j.spec_yaml.is_empty()), "summaries carry no spec");
    let names: Vec<&str> = listed.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["padded-4", "padded-3", "padded-2", "padded-1", "padded-0"]);
    // The full view is what used to break: it is over the limit.
    let full = jobs.list_jobs(pb::ListJobsRequest { full_view: true, ..Default::default() }).await;
    assert!(full.is_err(), "7.5 MiB of specs in one 4 MiB response");
    // One job still has its spec.
    let job = jobs.get_job(pb::GetJobRequest { job_id: listed[0].id.clone() }).await.unwrap().into_inner();
    assert!(job.spec_yaml.len() > 1_500_000);
    server.stop().await;
}
