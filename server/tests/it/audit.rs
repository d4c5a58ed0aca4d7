//! The audit log: every mutating call (submit, cancel, drain, undrain, a
//! user added with `scopd user add`, a SIGHUP reload that changed users) is a
//! row of the store's `audit` table with the user that made it, read back
//! here, and a structured `audit` log line.

use std::time::Duration;

use scop_proto::v1 as pb;

use scop_server::testing::{FakeWorker, SPEC, TestServer};
use scop_server::users::{Role, add_to_file};

#[tokio::test]
async fn every_mutating_call_is_an_audit_row_with_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let ada = add_to_file(&users, "ada", Role::Admin).unwrap();
    let users_for_server = users.clone();
    let server = TestServer::start_with(&dir, move |config| {
        config.token_file = None;
        config.users_file = Some(users_for_server);
    })
    .await;
    // Once the port answers, SIGHUP reloads rather than terminates.
    let mut admin = server.jobs_with(Some(&ada)).await;
    admin.who_am_i(pb::WhoAmIRequest {}).await.unwrap();

    // An operator adds a user against the running coordinator's data dir.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scopd"))
        .args(["user", "add", "carol", "--role", "submitter", "--users"])
        .arg(&users)
        .arg("--data-dir")
        .arg(&server.config.data_dir)
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("audit") && stderr.contains("user_add") && stderr.contains("carol"), "{stderr}");
    let carol = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let actor = scop_server::users::local_account();

    // The coordinator loads it on SIGHUP, and records that the users changed.
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut jobs = server.jobs_with(Some(&carol)).await;
    let mut reloaded = false;
    for _ in 0..600 {
        if jobs.who_am_i(pb::WhoAmIRequest {}).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "carol's token was not accepted after SIGHUP");
    // A reload that changes nobody is not an event.
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();

    let request = pb::SubmitJobRequest { spec_yaml: SPEC.into(), ..Default::default() };
    let job = jobs.submit_job(request).await.unwrap().into_inner();
    jobs.cancel_job(pb::CancelJobRequest { job_id: job.id.clone() }).await.unwrap();
    let worker = FakeWorker::connect(&server, "node-1", 1, &[]).await;
    admin.drain_worker(pb::DrainWorkerRequest { worker_id: worker.id.clone() }).await.unwrap();
    admin.undrain_worker(pb::UndrainWorkerRequest { worker_id: worker.id.clone() }).await.unwrap();
    // Refused calls change nothing and are not audited.
    let refused = jobs.drain_worker(pb::DrainWorkerRequest { worker_id: worker.id.clone() }).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);

    // A last user and a last SIGHUP: once dave's token works, every reload
    // before it (the one that changed nobody included) has been handled.
    let dave = add_to_file(&users, "dave", Role::Viewer).unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut daves = server.jobs_with(Some(&dave)).await;
    let mut loaded = false;
    for _ in 0..600 {
        if daves.who_am_i(pb::WhoAmIRequest {}).await.is_ok() {
            loaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(loaded, "dave's token was not accepted after SIGHUP");
    // The reload's audit row is written just after the new users take effect:
    // wait for it rather than race it.
    let mut log = server.store.audit_log(100).await.unwrap();
    for _ in 0..600 {
        if log.len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = server.store.audit_log(100).await.unwrap();
    }
    let rows: Vec<(String, String, String)> = log.into_iter().map(|e| (e.user, e.action, e.target)).collect();
    let row =
        |user: &str, action: &str, target: &str| (user.to_owned(), action.to_owned(), target.to_owned());
    assert_eq!(
        rows,
        vec![
            row(&actor, "user_add", "carol"),
            row("SIGHUP", "users_reload", &users.display().to_string()),
            row("carol", "submit", &job.id),
            row("carol", "cancel", &job.id),
            row("ada", "drain", &worker.id),
            row("ada", "undrain", &worker.id),
            row("SIGHUP", "users_reload", &users.display().to_string()),
        ]
    );
    let log = server.store.audit_log(100).await.unwrap();
    assert_eq!(log[1].detail, "added [\"carol\"], removed [], changed []");
    assert_eq!(log[6].detail, "added [\"dave\"], removed [], changed []");
    assert!(log[0].detail.starts_with("role submitter, a new token"), "{}", log[0].detail);
    server.stop().await;
}
