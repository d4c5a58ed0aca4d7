//! Mutual TLS on the public port: a client certificate signed by the client
//! CA names the user whose `cert_subjects` lists its subject CN, so the
//! client needs no token; tokens keep working beside it. The certificates
//! are real ones made with `openssl`, over real sockets.

use std::net::SocketAddr;
use std::path::Path;

use scop_proto::v1 as pb;
use tonic::Code;

use scop_connect::ClientIdentity;
use scop_server::config::TlsFiles;
use scop_server::testing::{Jobs, SPEC, TestServer, bearer, certificates, client_certificate};
use scop_server::users::{Role, UsersFile, add_to_file};

/// A client of `addr` over TLS that trusts the test CA, presenting `identity`
/// (a client certificate) and `token` when given.
async fn client(
    dir: &Path,
    addr: SocketAddr,
    identity: Option<&TlsFiles>,
    token: Option<&str>,
) -> Result<Jobs, tonic::transport::Error> {
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let identity = identity.map(|files| ClientIdentity {
        cert_pem: std::fs::read(&files.cert).unwrap(),
        key_pem: std::fs::read(&files.key).unwrap(),
    });
    let channel =
        scop_connect::endpoint_with_identity(&format!("https://{addr}"), Some(&ca), identity.as_ref())
            .unwrap()
            .connect()
            .await?;
    Ok(pb::job_service_client::JobServiceClient::with_interceptor(channel, bearer(token)))
}

async fn whoami(jobs: &mut Jobs) -> Result<(String, String), tonic::Status> {
    let me = jobs.who_am_i(pb::WhoAmIRequest {}).await?.into_inner();
    Ok((me.user, me.role))
}

#[tokio::test]
async fn a_client_certificate_names_its_user_and_tokens_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let server_tls = certificates(dir.path());
    let pipeline = client_certificate(dir.path(), "pipeline", "pipeline.example.org", false);
    let viewer = client_certificate(dir.path(), "viewer", "viewer-bot", false);
    let stranger = client_certificate(dir.path(), "stranger", "nobody.example.org", false);
    let forged = client_certificate(dir.path(), "forged", "pipeline.example.org", true);

    let users = dir.path().join("users.yaml");
    let ada = add_to_file(&users, "ada", Role::Admin).unwrap();
    let mut file = UsersFile::read(&users).unwrap();
    for (name, role, subject) in
        [("pipe", Role::Submitter, "pipeline.example.org"), ("vic", Role::Viewer, "viewer-bot")]
    {
        file.users.push(scop_server::users::UserEntry {
            name: name.into(),
            role,
            tokens: Vec::new(),
            cert_subjects: vec![subject.into()],
            quotas: Default::default(),
        });
    }
    file.write(&users).unwrap();
    let ca = dir.path().join("ca.pem");
    let server = TestServer::start_with(&dir, |config| {
        config.token_file = None;
        config.users_file = Some(users);
        config.public_tls = Some(server_tls);
        config.client_ca = Some(ca);
    })
    .await;
    let connect = async |identity: Option<&TlsFiles>, token: Option<&str>| {
        client(dir.path(), server.public, identity, token).await.unwrap()
    };

    // A certificate alone: its user, with that user's role.
    let mut pipe = connect(Some(&pipeline), None).await;
    assert_eq!(whoami(&mut pipe).await.unwrap(), ("pipe".into(), "submitter".into()));
    let request = pb::SubmitJobRequest { spec_yaml: SPEC.into(), ..Default::default() };
    let job = pipe.submit_job(request.clone()).await.unwrap().into_inner();
    assert_eq!(job.owner, "pipe");
    let drain = pipe.drain_worker(pb::DrainWorkerRequest { worker_id: "w".into() }).await.unwrap_err();
    assert_eq!(drain.code(), Code::PermissionDenied);
    let mut vic = connect(Some(&viewer), None).await;
    assert_eq!(whoami(&mut vic).await.unwrap(), ("vic".into(), "viewer".into()));
    assert_eq!(vic.submit_job(request.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(vic.list_jobs(pb::ListJobsRequest::default()).await.unwrap().into_inner().jobs.len(), 1);

    // A valid certificate whose subject no user lists names nobody.
    let mut nobody = connect(Some(&stranger), None).await;
    let status = whoami(&mut nobody).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("CN=\"nobody.example.org\" names no user"), "{}", status.message());

    // The same subject from a CA the server does not trust is refused at the handshake.
    let refused = match client(dir.path(), server.public, Some(&forged), None).await {
        Err(error) => format!("connect: {error}"),
        Ok(mut jobs) => match whoami(&mut jobs).await {
            Ok(me) => panic!("a certificate from another CA was accepted as {me:?}"),
            Err(status) => {
                assert_ne!(status.code(), Code::Ok);
                format!("call: {status}")
            }
        },
    };
    assert!(!refused.contains("pipe"), "{refused}");

    // Tokens keep working, with or without a certificate; a sent token decides.
    let mut admin = connect(None, Some(&ada)).await;
    assert_eq!(whoami(&mut admin).await.unwrap(), ("ada".into(), "admin".into()));
    let mut both = connect(Some(&viewer), Some(&ada)).await;
    assert_eq!(whoami(&mut both).await.unwrap(), ("ada".into(), "admin".into()));
    let mut bad_token = connect(Some(&viewer), Some("not-a-token")).await;
    assert_eq!(whoami(&mut bad_token).await.unwrap_err().code(), Code::Unauthenticated);
    let mut neither = connect(None, None).await;
    assert_eq!(whoami(&mut neither).await.unwrap_err().code(), Code::Unauthenticated);

    // What the certificate's user did is audited under its name.
    let log = server.store.audit_log(10).await.unwrap();
    let submits: Vec<(&str, &str)> =
        log.iter().filter(|e| e.action == "submit").map(|e| (e.user.as_str(), e.target.as_str())).collect();
    assert_eq!(submits, vec![("pipe", job.id.as_str())]);
    server.stop().await;
}
