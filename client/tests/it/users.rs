//! Users as `scopctl` shows them, against a coordinator with a users file:
//! `whoami`, the OWNER column of `get jobs` and `get jobs --mine`.

use scop_proto::v1 as pb;
use scop_server::testing::{SPEC, TestServer};
use scop_server::users::{Role, add_to_file};

use crate::support::{bare, run};

#[tokio::test]
async fn whoami_names_the_user_and_jobs_show_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let sam = add_to_file(&users, "sam", Role::Submitter).unwrap();
    let sue = add_to_file(&users, "sue", Role::Submitter).unwrap();
    let path = users.clone();
    let server = TestServer::start_with(&dir, move |config| {
        config.token_file = None;
        config.users_file = Some(path);
    })
    .await;
    let home = dir.path().join("home");
    let scopctl = |token: &str| {
        let mut command = bare(&home);
        command.arg("--server").arg(server.public_url()).arg("--token").arg(token);
        command
    };
    let submit = async |token: &str| {
        let request = pb::SubmitJobRequest { spec_yaml: SPEC.into(), ..Default::default() };
        server.jobs_with(Some(token)).await.submit_job(request).await.unwrap().into_inner().id
    };
    let (sam_1, sue_1, sam_2) = (submit(&sam).await, submit(&sue).await, submit(&sam).await);

    let out = run(scopctl(&sam).arg("whoami")).await.expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["user:              sam", "role:              submitter"], "{}", out.stdout);
    assert!(out.stdout.contains("max priority:      0"), "{}", out.stdout);
    let me = run(scopctl(&sue).args(["whoami", "-o", "json"])).await.expect(0).json();
    assert_eq!((me["user"].as_str(), me["role"].as_str()), (Some("sue"), Some("submitter")));
    let out = run(scopctl("not-a-token").arg("whoami")).await.expect(6);
    assert!(out.stderr.contains("unknown or revoked token"), "{}", out.stderr);

    // Everyone's jobs, each with its owner, in the table and in JSON.
    let out = run(scopctl(&sue).args(["get", "jobs"])).await.expect(0);
    let header = out.stdout.lines().next().unwrap();
    assert!(header.split_whitespace().any(|c| c == "OWNER"), "{}", out.stdout);
    for (id, owner) in [(&sam_1, "sam"), (&sue_1, "sue"), (&sam_2, "sam")] {
        let row = out.stdout.lines().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("{id}"));
        assert_eq!(row.split_whitespace().nth(2), Some(owner), "{row}");
    }
    let owners = |json: serde_json::Value| -> Vec<(String, String)> {
        json.as_array()
            .unwrap()
            .iter()
            .map(|j| (j["id"].as_str().unwrap().to_owned(), j["owner"].as_str().unwrap().to_owned()))
            .collect()
    };
    let all = owners(run(scopctl(&sue).args(["get", "jobs", "-o", "json"])).await.expect(0).json());
    assert_eq!(all.len(), 3, "{all:?}");

    // --mine: only the caller's, newest first.
    let mine =
        owners(run(scopctl(&sam).args(["get", "jobs", "--mine", "-o", "json"])).await.expect(0).json());
    assert_eq!(mine, [(sam_2.clone(), "sam".to_owned()), (sam_1.clone(), "sam".to_owned())]);
    let mine =
        owners(run(scopctl(&sue).args(["get", "jobs", "--mine", "-o", "json"])).await.expect(0).json());
    assert_eq!(mine, [(sue_1.clone(), "sue".to_owned())]);
    server.stop().await;
}
