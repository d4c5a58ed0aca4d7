//! The one error type of the client library, and the exit code each error
//! means for `scopctl`.

use scop_core::error::FieldError;

/// `scopctl`'s exit codes, documented in `scopctl --help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    /// Anything not listed below.
    Other = 1,
    /// A malformed command line (clap's own code).
    Usage = 2,
    /// The job failed or was cancelled.
    JobFailed = 3,
    /// No such job, file, plan or statistics.
    NotFound = 4,
    /// The coordinator cannot be reached.
    Unreachable = 5,
    /// The coordinator refused the token.
    Unauthenticated = 6,
    /// The job spec does not parse or validate.
    InvalidSpec = 7,
}

impl ExitCode {
    /// The text `scopctl --help` ends with.
    pub const HELP: &'static str = "Exit codes:\n  \
        0  success\n  \
        1  any other error\n  \
        2  invalid command line\n  \
        3  the job failed or was cancelled\n  \
        4  not found (job, plan, file)\n  \
        5  the coordinator is unreachable\n  \
        6  unauthenticated (missing or wrong token)\n  \
        7  invalid job spec";
}

/// Every error of the client library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("server {server} is unreachable: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("server {server} refused the request: {message} (check --token, --token-file or SCOP_TOKEN)")]
    Unauthenticated { server: String, message: String },
    /// The server's NOT_FOUND message, which names what is missing.
    #[error("{0}")]
    NotFound(String),
    /// Every problem of a spec, each with its field path.
    #[error("invalid job spec {source_name}:\n{}", render(.errors))]
    InvalidSpec { source_name: String, errors: Vec<FieldError> },
    /// The job ended without succeeding.
    #[error("job {job_id} {state}: {reason}")]
    JobEnded { job_id: String, state: &'static str, reason: String },
    /// A request the server (or the client itself) refused as malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Any other gRPC failure.
    #[error("server {server} answered {code:?}: {message}")]
    Rpc { server: String, code: tonic::Code, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection settings are inconsistent or unreadable.
    #[error("{0}")]
    Config(String),
    /// A chart of the report could not be drawn.
    #[error("report: {0}")]
    Report(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn render(errors: &[FieldError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    lines.join("\n")
}

impl Error {
    /// The exit code `scopctl` ends with for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Unreachable { .. } => ExitCode::Unreachable,
            Error::Unauthenticated { .. } => ExitCode::Unauthenticated,
            Error::NotFound(_) => ExitCode::NotFound,
            Error::InvalidSpec { .. } => ExitCode::InvalidSpec,
            Error::JobEnded { .. } => ExitCode::JobFailed,
            Error::InvalidArgument(_)
            | Error::Rpc { .. }
            | Error::Io { .. }
            | Error::Config(_)
            | Error::Report(_) => ExitCode::Other,
        }
    }

    pub(crate) fn io(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_string();
        move |source| Error::Io { path, source }
    }

    /// Maps a gRPC status to the error a user can act on. A rejected spec
    /// becomes `InvalidSpec` with the field paths the server listed.
    pub fn from_status(server: &str, status: tonic::Status) -> Error {
        use tonic::Code;
        let message = status.message().to_owned();
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => {
                Error::Unauthenticated { server: server.to_owned(), message }
            }
            Code::NotFound => Error::NotFound(message),
            Code::InvalidArgument => match spec_violations(&message) {
                Some(errors) => Error::InvalidSpec { source_name: "(as the server read it)".into(), errors },
                None => Error::InvalidArgument(message),
            },
            // A transport failure surfaces as UNAVAILABLE (or UNKNOWN with a
            // transport source) before any answer arrives. A connection that breaks
            // at the HTTP/2 level (plain text to a TLS port, say) is INTERNAL
            // "h2 protocol error": no server answered that either.
            Code::Unavailable | Code::Unknown | Code::Internal if is_transport(&status) => {
                Error::Unreachable { server: server.to_owned(), reason: transport_reason(&status) }
            }
            code => Error::Rpc { server: server.to_owned(), code, message },
        }
    }
}

/// The server answers a bad spec with "invalid job spec:" and one
/// `field.path: reason` per line.
fn spec_violations(message: &str) -> Option<Vec<FieldError>> {
    let rest = message.strip_prefix("invalid job spec:")?;
    let errors: Vec<FieldError> = rest
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| match line.trim().split_once(": ") {
            Some((path, reason)) => FieldError::new(path, reason),
            None => FieldError::new("spec", line.trim()),
        })
        .collect();
    Some(errors)
}

fn is_transport(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() || error.is::<std::io::Error>() {
            return true;
        }
        source = error.source();
    }
    // tonic says "tcp connect error" / "transport error" in the message of
    // statuses it made itself from a failed connection.
    let message = status.message();
    message.starts_with("h2 protocol error")
        || message.contains("transport error")
        || message.contains("connect error")
        || message.contains("Connection refused")
}

fn transport_reason(status: &tonic::Status) -> String {
    let mut reason = status.message().to_owned();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        let text = error.to_string();
        if !reason.contains(&text) {
            reason = format!("{reason}: {text}");
        }
        source = error.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_errors_users_act_on() {
        let check = |status: tonic::Status, code: ExitCode| {
            let error = Error::from_status("http://h:1", status);
            assert_eq!(error.exit_code(), code, "{error}");
            error.to_string()
        };
        let text = check(tonic::Status::unauthenticated("invalid token"), ExitCode::Unauthenticated);
        assert!(text.contains("http://h:1") && text.contains("invalid token"), "{text}");
        assert_eq!(
            check(tonic::Status::not_found("job \"x\" not found"), ExitCode::NotFound),
            "job \"x\" not found"
        );
        let spec = tonic::Status::invalid_argument(
            "invalid job spec:\nprune.rate: must be < 1, got 1.5\nmodel.arch: bad",
        );
        let text = check(spec, ExitCode::InvalidSpec);
        assert!(text.contains("\n  prune.rate: must be < 1, got 1.5\n  model.arch: bad"), "{text}");
        check(tonic::Status::invalid_argument("job_id: must not be empty"), ExitCode::Other);
        check(tonic::Status::internal("store: disk full"), ExitCode::Other);
        check(tonic::Status::unavailable("tcp connect error: Connection refused"), ExitCode::Unreachable);
        check(tonic::Status::unknown("transport error"), ExitCode::Unreachable);
        check(tonic::Status::unknown("the handler panicked"), ExitCode::Other);
        check(tonic::Status::internal("h2 protocol error: http2 error"), ExitCode::Unreachable);
        // The coordinator saying it shuts down is an answer, not an unreachable server.
        check(tonic::Status::unavailable("the coordinator is shutting down"), ExitCode::Other);
    }
}
