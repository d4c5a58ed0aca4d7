//! `scopctl workers`, `drain` and `undrain` against scripted workers: a
//! drained worker shows as such in the list, by hostname or id.

use scop_server::testing::{FakeWorker, TestServer};

use crate::support::{run, scopctl};

#[tokio::test]
async fn drain_and_undrain_show_in_the_worker_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");
    let node = FakeWorker::connect(&server, "node-1", 2, &[]).await;
    let twin_a = FakeWorker::connect(&server, "twin", 1, &[]).await;
    let _twin_b = FakeWorker::connect(&server, "twin", 1, &[]).await;

    // By hostname when it names one worker.
    let out = run(scopctl(&server, &home).args(["drain", "node-1"])).await.expect(0);
    assert_eq!(
        out.stdout.trim(),
        format!("worker {} (node-1) drained: no new ranks go to it; its 0 running ranks finish", node.id)
    );
    let out = run(scopctl(&server, &home).arg("workers")).await.expect(0);
    let row = out.stdout.lines().find(|l| l.contains("node-1")).unwrap();
    assert!(row.contains("connected, drained"), "{}", out.stdout);
    let twin_rows: Vec<&str> = out.stdout.lines().filter(|l| l.contains("twin")).collect();
    assert!(twin_rows.iter().all(|l| !l.contains("drained")), "{}", out.stdout);
    let listed = run(scopctl(&server, &home).args(["workers", "-o", "json"])).await.expect(0).json();
    let drained: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["drained"] == true)
        .map(|w| w["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(drained, ["node-1"]);

    // A hostname of two workers is ambiguous; the id is not.
    let out = run(scopctl(&server, &home).args(["drain", "twin"])).await.expect(1);
    assert!(out.stderr.contains("hostname \"twin\" names 2 workers"), "{}", out.stderr);
    let out = run(scopctl(&server, &home).args(["drain", &twin_a.id, "-o", "json"])).await.expect(0);
    assert_eq!(out.json()["drained"], true);

    let out = run(scopctl(&server, &home).args(["undrain", &node.id])).await.expect(0);
    assert_eq!(out.stdout.trim(), format!("worker {} (node-1) undrained: it takes new ranks again", node.id));
    let out = run(scopctl(&server, &home).args(["drain", "no-such-worker"])).await.expect(4);
    assert!(out.stderr.contains("no-such-worker"), "{}", out.stderr);
    server.stop().await;
}
