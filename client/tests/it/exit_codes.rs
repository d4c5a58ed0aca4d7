//! Every exit code scopctl documents, each with its one-line reason on stderr
//! and no stack trace.

use scop_proto::v1 as pb;
use scop_server::testing::{FakeWorker, TestServer, wait_for_state};

use crate::support::{Output, bare, closed_port, run, scopctl, spec_file};

/// A user error: exactly one `error: …` line, nothing like a panic.
fn one_line(out: &Output, starts: &str) {
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with(starts), "expected {starts:?}, got {:?}", out.stderr);
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("backtrace"), "{}", out.stderr);
}

#[tokio::test]
async fn unreachable_unauthenticated_not_found_usage_and_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");

    let closed = format!("http://127.0.0.1:{}", closed_port());
    let out = run(bare(&home).args(["--server", &closed, "get", "jobs"])).await.expect(5);
    one_line(&out, &format!("error: server {closed} is unreachable: "));

    let out = run(bare(&home).args(["--server", &server.public_url(), "get", "jobs"])).await.expect(6);
    one_line(
        &out,
        &format!("error: server {} refused the request: missing authorization", server.public_url()),
    );
    let out = run(bare(&home).args(["--server", &server.public_url(), "--token", "wrong", "get", "jobs"]))
        .await
        .expect(6);
    assert!(out.stderr.contains("invalid token"), "{}", out.stderr);

    let unknown = "0190f0c4-0000-7000-8000-000000000000";
    for command in
        [["get", "job"], ["watch", unknown], ["plan", unknown], ["artifacts", unknown], ["cancel", unknown]]
    {
        let args: Vec<&str> =
            if command[0] == "get" { vec!["get", "job", unknown] } else { command.to_vec() };
        let out = run(scopctl(&server, &home).args(&args)).await.expect(4);
        one_line(&out, &format!("error: job {unknown:?} not found"));
    }
    let spec = spec_file(dir.path(), "");
    let id = run(scopctl(&server, &home).arg("submit").arg(&spec)).await.expect(0).stdout.trim().to_owned();
    let out = run(scopctl(&server, &home).args(["plan", &id])).await.expect(4);
    one_line(
        &out,
        &format!("error: job {id:?} has no plan yet: the plan is decided after the knockoff stage"),
    );
    let out = run(scopctl(&server, &home).args(["report", &id, "--out"]).arg(dir.path().join("r.html")))
        .await
        .expect(0);
    assert!(out.stdout.starts_with("wrote "), "a report of a queued job is fine: {}", out.stdout);

    let out = run(scopctl(&server, &home).args(["get"])).await.expect(2);
    assert!(out.stderr.contains("Usage:"), "{}", out.stderr);
    let out = run(scopctl(&server, &home).args(["submit", "--label", "novalue"]).arg(&spec)).await.expect(2);
    assert!(out.stderr.contains("expected key=value, got \"novalue\""), "{}", out.stderr);

    let missing = dir.path().join("no.token");
    let out =
        run(bare(&home).args(["--server", &server.public_url(), "--token-file"]).arg(&missing).arg("status"))
            .await
            .expect(1);
    one_line(&out, &format!("error: {}: No such file or directory", missing.display()));
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_spec_lists_every_field_path_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "model: { arch: resnet21, num_classes: 1 }\ndata: { format: idx, root: d }\nprune: { rate: 1.5 }\nfinetune: { lr: -0.1 }\n",
    )
    .unwrap();
    // Nothing listens there: the spec is refused before connecting.
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let out = run(bare(&home).args(["--server", &closed, "submit"]).arg(&bad)).await.expect(7);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines[0], format!("error: invalid job spec {}:", bad.display()));
    let paths: Vec<&str> = lines[1..].iter().map(|l| l.trim().split(':').next().unwrap()).collect();
    assert_eq!(paths, ["model.arch", "model.num_classes", "finetune.lr", "prune.rate"], "{}", out.stderr);
    assert_eq!(lines[3], "  finetune.lr: must be > 0, got -0.1");

    let unparsable = dir.path().join("typo.yaml");
    std::fs::write(
        &unparsable,
        "model: { arch: resnet20, num_classes: 10 }\ndata: { format: idx, root: d }\nfinetun: {}\n",
    )
    .unwrap();
    let out = run(bare(&home).args(["--server", &closed, "submit"]).arg(&unparsable)).await.expect(7);
    let expected = format!(
        "error: invalid job spec {}:\n  finetun: unknown field `finetun`, expected one of",
        unparsable.display()
    );
    assert!(out.stderr.starts_with(&expected), "{}", out.stderr);
}

#[tokio::test]
async fn a_failed_or_cancelled_job_ends_the_watch_with_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");
    let spec = spec_file(dir.path(), "max_restarts: 0\n");

    let id = run(scopctl(&server, &home).arg("submit").arg(&spec)).await.expect(0).stdout.trim().to_owned();
    let watching = scopctl(&server, &home).args(["watch", &id]).spawn().unwrap();
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let task = worker.assigned().await;
    worker.send(&task, pb::task_event::Kind::Failed("NaN loss at step 12".into())).await;
    let output = watching.wait_with_output().await.unwrap();
    let out = Output {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
    .expect(3);
    one_line(
        &out,
        &format!("error: job {id} failed: stage knockoff failed 1 times; last: rank 0: NaN loss at step 12"),
    );
    assert!(
        out.stdout.contains("[knockoff] attempt 1 failed: rank 0: NaN loss at step 12\n"),
        "{}",
        out.stdout
    );

    let id = run(scopctl(&server, &home).arg("submit").arg(&spec)).await.expect(0).stdout.trim().to_owned();
    run(scopctl(&server, &home).args(["cancel", &id])).await.expect(0);
    wait_for_state(&server, &id, pb::JobState::Cancelled).await;
    let out = run(scopctl(&server, &home).args(["watch", &id])).await.expect(3);
    one_line(&out, &format!("error: job {id} cancelled: cancelled by a client"));
    server.stop().await;
}
