//! A bad spec is INVALID_ARGUMENT, listing every field path and reason in the
//! message and in the google.rpc.BadRequest detail.

use scop_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use scop_server::testing::{Jobs, SPEC, TestServer};

/// Submits `spec` and checks the field violations, in order.
async fn check(jobs: &mut Jobs, spec: &str, expected: &[(&str, &str)]) {
    let status = jobs
        .submit_job(pb::SubmitJobRequest { spec_yaml: spec.into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{spec}");
    let violations = status.get_details_bad_request().expect("a BadRequest detail").field_violations;
    let got: Vec<(String, String)> = violations.into_iter().map(|v| (v.field, v.description)).collect();
    assert_eq!(got.len(), expected.len(), "{spec}\n{got:#?}");
    for ((field, description), (want_field, want_start)) in got.iter().zip(expected) {
        assert_eq!(field, want_field, "{spec}");
        assert!(description.starts_with(want_start), "{field}: expected {want_start:?}, got {description:?}");
        let line = format!("{}: {description}", field.trim_start_matches("spec_yaml."));
        assert!(status.message().contains(&line), "message lacks {line:?}: {}", status.message());
    }
}

#[tokio::test]
async fn every_invalid_field_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut jobs = server.jobs().await;
    check(&mut jobs, "", &[("spec_yaml", "must not be empty")]).await;
    check(
        &mut jobs,
        &format!("{SPEC}finetune: {{ lr: -0.1 }}\n"),
        &[("spec_yaml.finetune.lr", "must be > 0, got -0.1")],
    )
    .await;
    check(
        &mut jobs,
        &format!("{SPEC}prune: {{ rate: 1.5, round_to: 0 }}\nresources: {{ world_size: 0 }}\n"),
        &[
            ("spec_yaml.prune.rate", "must be in [0, 1), got 1.5"),
            ("spec_yaml.prune.round_to", "must be >= 1, got 0"),
            ("spec_yaml.resources.world_size", "must be >= 1, got 0"),
        ],
    )
    .await;
    check(
        &mut jobs,
        "model: { arch: vgg16, num_classes: 1 }\ndata: { format: idx, root: d }\n",
        &[
            ("spec_yaml.model.arch", "must be one of resnet20"),
            ("spec_yaml.model.num_classes", "must be >= 2, got 1"),
        ],
    )
    .await;
    check(
        &mut jobs,
        &format!("{SPEC}finetune: {{ lr: fast }}\n"),
        &[("spec_yaml.finetune.lr", "invalid type")],
    )
    .await;
    check(&mut jobs, &format!("{SPEC}colour: blue\n"), &[("spec_yaml.colour", "unknown field `colour`")])
        .await;
    check(&mut jobs, "model: [unclosed", &[("spec_yaml.model", "")]).await;
    let bad_label = jobs
        .submit_job(pb::SubmitJobRequest {
            spec_yaml: SPEC.into(),
            labels: [("bad key".to_owned(), "v".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_label.code(), Code::InvalidArgument);
    assert!(bad_label.message().starts_with("labels[\"bad key\"]: keys must be"), "{}", bad_label.message());
    assert!(jobs.list_jobs(pb::ListJobsRequest::default()).await.unwrap().into_inner().jobs.is_empty());
    server.stop().await;
}
