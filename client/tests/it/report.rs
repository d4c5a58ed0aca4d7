//! `scopctl report` writes one self-contained HTML file with the curves, the
//! β distribution, the channels kept per unit and the summary table.

use scop_server::testing::{FakeWorker, TestServer, wait_for_state};

use crate::support::{run, scopctl, spec_file};

#[tokio::test]
async fn the_report_holds_every_chart_and_the_table_and_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let home = dir.path().join("home");
    let spec = spec_file(dir.path(), "");
    let id = run(scopctl(&server, &home).arg("submit").arg(&spec)).await.expect(0).stdout.trim().to_owned();
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    worker.play_job().await;
    wait_for_state(&server, &id, scop_proto::v1::JobState::Succeeded).await;

    let out = dir.path().join("report.html");
    let printed = run(scopctl(&server, &home).args(["report", &id, "--out"]).arg(&out)).await.expect(0);
    assert!(printed.stdout.starts_with(&format!("wrote {}", out.display())), "{}", printed.stdout);
    let html = std::fs::read_to_string(&out).unwrap();
    if let Some(keep) = std::env::var_os("SCOP_KEEP_REPORT") {
        std::fs::copy(&out, keep).unwrap();
    }

    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    // Self-contained: no scripts, stylesheets, images or anything else to fetch.
    for banned in ["<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(banned), "the report contains {banned:?}");
    }
    // Two curves per training stage, then the channels and β charts.
    assert_eq!(html.matches("<svg").count(), 2 * 2 + 2);
    for expected in [
        "<h3>knockoff</h3>",
        "<h3>finetune</h3>",
        "knockoff: loss",
        "finetune: accuracy (%)",
        "channels kept per unit",
        "β per channel, by unit",
        "layer1.0.conv1",
        "layer3.2.conv2",
        "<td>SCOP pruned</td>",
        "90.50 %",
        "91.25 %",
        "export/model.pt",
        "time per stage: knockoff",
    ] {
        assert!(html.contains(expected), "{expected:?} missing from the report");
    }
    server.stop().await;
}
