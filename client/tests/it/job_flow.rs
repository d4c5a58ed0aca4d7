//! The main path, each step with `-o json` parsed: submit → watch → plan →
//! artifacts (and their download), then get, the plain watch of an ended
//! job with its final table, and cancel.

use scop_proto::v1 as pb;
use scop_server::testing::{FakeWorker, TestServer, script, wait_for_state};
use serde_json::Value;

use crate::support::{run, scopctl, spec_file};

#[tokio::test]
async fn submit_watch_plan_and_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");
    let spec = spec_file(dir.path(), "");

    let submitted = run(scopctl(&server, &home)
        .args(["submit", "-o", "json", "--label", "team=vision", "--priority", "3"])
        .arg(&spec))
    .await
    .expect(0);
    let job = submitted.json();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (job["state"].as_str(), job["name"].as_str(), job["priority"].as_i64()),
        (Some("queued"), Some("tiny"), Some(3))
    );
    assert_eq!(job["labels"], serde_json::json!({ "team": "vision" }));
    // The data root was resolved against the spec file's directory before sending.
    let sent = scop_core::spec::JobSpec::from_yaml(job["spec_yaml"].as_str().unwrap()).unwrap();
    assert_eq!(sent.data.root, dir.path().join("data/fashion-mnist"));

    // Watch while a scripted worker runs every stage.
    let watching = scopctl(&server, &home).args(["watch", &id, "-o", "json"]).spawn().unwrap();
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    worker.play_job().await;
    let output = watching.wait_with_output().await.unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (result, events) = lines.split_last().unwrap();
    let sequences: Vec<u64> = events.iter().map(|e| e["sequence"].as_u64().unwrap()).collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>());
    let of_kind = |kind: &str| events.iter().filter(|e| e["kind"] == kind).collect::<Vec<_>>();
    let states: Vec<&str> = of_kind("state_changed").iter().map(|e| e["to"].as_str().unwrap()).collect();
    assert_eq!(states, ["queued", "running", "running", "running", "running", "succeeded"]);
    let evaluations: Vec<(String, u64)> = of_kind("evaluated")
        .iter()
        .map(|e| (e["stage"].as_str().unwrap().to_owned(), e["epoch"].as_u64().unwrap()))
        .collect();
    assert_eq!(evaluations.len(), 2 * (script::EPOCHS as usize + 1), "{evaluations:?}");
    assert_eq!(of_kind("plan_decided")[0]["units"], 18);
    assert_eq!(of_kind("progress").len(), 2 * script::EPOCHS as usize * 5);
    assert_eq!(result["type"], "result");
    assert_eq!(result["job"]["state"], "succeeded");
    assert_eq!(result["summary"]["pruned"]["top1"].as_f64(), Some(script::TOP1_PRUNED));
    assert_eq!(result["summary"]["dense"]["params"].as_f64(), Some(script::PARAMS_DENSE as f64));
    let stage_names: Vec<&str> = result["summary"]["stage_seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(stage_names, ["knockoff", "decide", "finetune", "export"]);

    // The plan, per unit and in total.
    let plan = run(scopctl(&server, &home).args(["plan", &id, "-o", "json"])).await.expect(0).json();
    let units = plan["units"].as_array().unwrap();
    assert_eq!(units.len(), 18);
    assert_eq!(units[0]["unit"], "layer1.0.conv1");
    let (before, after) =
        (units[0]["channels_before"].as_f64().unwrap(), units[0]["channels_after"].as_f64().unwrap());
    assert!(after < before, "{plan}");
    assert_eq!(units[0]["kept"].as_f64(), Some(after / before));
    assert!(units[0]["score_median"].as_f64().is_some(), "{plan}");
    assert!(plan["params_after"].as_u64() < plan["params_before"].as_u64(), "{plan}");
    let table = run(scopctl(&server, &home).args(["plan", &id])).await.expect(0).stdout;
    assert!(
        table.contains("layer3.2.conv2") && table.contains("MEDIAN") && table.contains("params "),
        "{table}"
    );

    // The artifacts: listed, then downloaded byte for byte.
    let listed = run(scopctl(&server, &home).args(["artifacts", &id, "-o", "json"])).await.expect(0).json();
    let job_dir = server.job_dir(&id);
    assert_eq!(listed["job_dir"].as_str(), Some(job_dir.to_str().unwrap()));
    let paths: Vec<&str> =
        listed["artifacts"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "export/arch.json",
            "export/model-card.json",
            "export/model.pt",
            "export/model.safetensors",
            "plan.json"
        ]
    );
    let fetched = dir.path().join("fetched");
    let out =
        run(scopctl(&server, &home).args(["artifacts", &id, "--download"]).arg(&fetched)).await.expect(0);
    assert!(
        out.stdout.ends_with(&format!("downloaded 5 files (1.5 MiB) into {}\n", fetched.display())),
        "{}",
        out.stdout
    );
    for path in paths {
        assert_eq!(
            std::fs::read(fetched.join(path)).unwrap(),
            std::fs::read(job_dir.join(path)).unwrap(),
            "{path}"
        );
    }

    // get, in YAML and as a listing filtered by state.
    let yaml = run(scopctl(&server, &home).args(["get", "job", &id, "-o", "yaml"])).await.expect(0).stdout;
    let record: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!((record["state"].as_str(), record["stage"].as_str()), (Some("succeeded"), Some("export")));
    let done = run(scopctl(&server, &home).args(["get", "jobs", "--state", "succeeded", "-o", "json"]))
        .await
        .expect(0);
    assert_eq!(done.json().as_array().unwrap().len(), 1);
    let queued =
        run(scopctl(&server, &home).args(["get", "jobs", "--state", "queued", "-o", "json"])).await.expect(0);
    assert_eq!(queued.json(), serde_json::json!([]));

    // Watching the ended job again replays it as plain lines and ends with the table.
    let plain = run(scopctl(&server, &home).args(["watch", &id])).await.expect(0).stdout;
    for expected in [
        &format!("job {id} queued"),
        "[knockoff] eval before training: top-1 89.25 %",
        "[knockoff] epoch 1/2 step 2/10 loss",
        "[decide] plan decided: 18 units keep",
        "[finetune] eval after epoch 2: top-1 90.50 %",
        &format!("job {id} succeeded"),
        "| SCOP pruned ",
        "time per stage: knockoff ",
        &format!("torchscript  {}", job_dir.join("export/model.pt").display()),
    ] {
        assert!(plain.contains(expected), "{expected:?} missing from\n{plain}");
    }
    server.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_job_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");
    let spec = spec_file(dir.path(), "");
    let id = run(scopctl(&server, &home).arg("submit").arg(&spec)).await.expect(0).stdout.trim().to_owned();
    let out = run(scopctl(&server, &home).args(["cancel", &id])).await.expect(0);
    assert_eq!(out.stdout, format!("job {id} cancelled\n"));
    wait_for_state(&server, &id, pb::JobState::Cancelled).await;
    let again = run(scopctl(&server, &home).args(["cancel", &id, "-o", "json"])).await.expect(0).json();
    assert_eq!(again["error"], "cancelled by a client");
    server.stop().await;
}

/// A sweep through scopctl: `get job` lists every candidate with its branch's
/// figures, `watch` ends with that table, and `artifacts --candidate` lists
/// one candidate's exported files (an unknown name lists the ones there are).
#[tokio::test]
async fn a_sweep_shows_its_candidates_and_their_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");
    let spec = spec_file(
        dir.path(),
        "sweep: [{ rate: 0.3 }, { name: small, criterion: l1, rate: 0.6, residual: group }]\n",
    );
    let id =
        run(scopctl(&server, &home).args(["submit"]).arg(&spec)).await.expect(0).stdout.trim().to_owned();

    let watching = scopctl(&server, &home).args(["watch", &id, "--plain"]).spawn().unwrap();
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    // knockoff; then decide → finetune → export for scop-0.3, score → ... for small.
    for _ in 0..1 + 2 + 3 {
        let task = worker.assigned().await;
        worker.play(&task).await;
    }
    let output = watching.wait_with_output().await.unwrap();
    let watched = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{watched}");
    assert!(watched.contains("CANDIDATE") && watched.contains("small"), "{watched}");
    wait_for_state(&server, &id, pb::JobState::Succeeded).await;

    let job = run(scopctl(&server, &home).args(["get", "job", &id, "-o", "json"])).await.expect(0).json();
    let candidates = job["candidates"].as_array().unwrap();
    let names: Vec<&str> = candidates.iter().map(|c| c["candidate"].as_str().unwrap()).collect();
    assert_eq!(names, ["scop-0.3", "small"]);
    for c in candidates {
        assert_eq!(c["state"], "succeeded", "{c}");
        assert_eq!(c["latency_ms"].as_f64(), Some(script::LATENCY_MS), "{c}");
        assert_eq!(c["top1"].as_f64(), Some(script::TOP1_PRUNED), "{c}");
        assert_eq!(c["params"].as_u64(), Some(script::PARAMS_PRUNED), "{c}");
    }
    assert_eq!(
        (candidates[1]["criterion"].as_str(), candidates[1]["target"].as_str()),
        (Some("l1"), Some("layer 0.6"))
    );
    // A candidate's own residual mode, else the spec's; the branch is decided with it.
    assert_eq!(
        (candidates[0]["residual"].as_str(), candidates[1]["residual"].as_str()),
        (Some("scatter"), Some("group"))
    );
    let branch_spec = run(scopctl(&server, &home).args([
        "get",
        "job",
        candidates[1]["job_id"].as_str().unwrap(),
        "-o",
        "json",
    ]))
    .await
    .expect(0)
    .json();
    let yaml = branch_spec["spec_yaml"].as_str().unwrap_or_default();
    assert!(yaml.contains("residual: group"), "{branch_spec}");
    let table = run(scopctl(&server, &home).args(["get", "job", &id])).await.expect(0).stdout;
    assert!(
        table.contains("candidates:") && table.contains("1.25 ms") && table.contains("90.50 %"),
        "{table}"
    );

    let branch = candidates[1]["job_id"].as_str().unwrap();
    let listed = run(scopctl(&server, &home).args(["artifacts", &id, "--candidate", "small", "-o", "json"]))
        .await
        .expect(0)
        .json();
    assert_eq!(listed["job_id"], branch);
    assert!(
        listed["artifacts"].as_array().unwrap().iter().any(|a| a["path"] == "export/model-card.json"),
        "{listed}"
    );
    let unknown = run(scopctl(&server, &home).args(["artifacts", &id, "--candidate", "big"])).await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("has no such candidate; it has scop-0.3, small"), "{}", unknown.stderr);
    server.stop().await;
}
