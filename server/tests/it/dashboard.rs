//! Every metric, label and label value the Grafana dashboard
//! (`deploy/monitoring/grafana-dashboard.json`) queries exists in a scrape of
//! a running coordinator, after a scripted worker has run a job far enough
//! to report progress with step and all-reduce times.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use scop_proto::v1 as pb;

use crate::metrics::get;
use scop_server::testing::FakeWorker;
use scop_server::testing::TestServer;

const DASHBOARD: &str = include_str!("../../../deploy/monitoring/grafana-dashboard.json");

/// The panels issue-level users asked for; renaming one is a decision, not an accident.
const PANELS: [&str; 9] = [
    "Jobs by state",
    "Workers by state",
    "Devices",
    "Loss",
    "Accuracy",
    "Samples per second",
    "Step time",
    "All-reduce time",
    "gRPC error rate",
];

/// One `metric{label op "value", ...}` of a query.
#[derive(Debug, PartialEq)]
struct Selector {
    metric: String,
    matchers: Vec<(String, String, String)>,
}

/// Selectors, and the labels of `by (...)`/`without (...)` groupings.
#[derive(Debug, Default, PartialEq)]
struct Query {
    selectors: Vec<Selector>,
    grouping: Vec<String>,
}

const KEYWORDS: [&str; 12] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
];

/// Aggregation operators, which may put `by (…)` between their name and `(`.
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Reads the selectors of a PromQL expression: identifiers followed by `(` are
/// functions, those in braces are label matchers, those after a grouping
/// keyword are labels; `[…]` ranges, strings and Grafana's `$variables` are skipped.
fn parse_query(expr: &str) -> Query {
    let chars: Vec<char> = expr.chars().collect();
    let mut query = Query::default();
    let mut i = 0;
    let mut grouping_next = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' {
            i += chars[i..].iter().position(|&c| c == ']').unwrap_or(chars.len() - i) + 1;
        } else if c == '"' {
            i += 1 + string_end(&chars[i + 1..]);
        } else if c == '$' {
            i += 1 + chars[i + 1..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').count();
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            i += chars[i..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '.').count();
        } else if c.is_alphabetic() || c == '_' || c == ':' {
            let len =
                chars[i..].iter().take_while(|c| c.is_alphanumeric() || **c == '_' || **c == ':').count();
            let word: String = chars[i..i + len].iter().collect();
            i += len;
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if KEYWORDS.contains(&word.as_str()) {
                grouping_next =
                    ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&word.as_str());
            } else if grouping_next {
                query.grouping.push(word);
            } else if next == Some('(') || AGGREGATIONS.contains(&word.as_str()) {
                // A function or aggregation.
            } else {
                let mut selector = Selector { metric: word, matchers: Vec::new() };
                if next == Some('{') {
                    let open = i + chars[i..].iter().position(|&c| c == '{').unwrap_or(0);
                    let (matchers, used) = parse_matchers(&chars[open + 1..]);
                    selector.matchers = matchers;
                    i = open + 1 + used;
                }
                query.selectors.push(selector);
            }
        } else if c == ')' && grouping_next {
            grouping_next = false;
            i += 1;
        } else if c == '{' {
            // A selector without a metric name: `{job_id="x"}`.
            let (_, used) = parse_matchers(&chars[i + 1..]);
            i += 1 + used;
        } else {
            i += 1;
        }
    }
    query
}

/// `label op "value", …}`: the matchers and the characters used, with the brace.
fn parse_matchers(chars: &[char]) -> (Vec<(String, String, String)>, usize) {
    let mut matchers = Vec::new();
    let mut i = 0;
    while i < chars.len() && chars[i] != '}' {
        let label: String = chars[i..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect();
        if label.is_empty() {
            i += 1;
            continue;
        }
        i += label.len();
        let op: String =
            chars[i..].iter().skip_while(|c| c.is_whitespace()).take_while(|c| "=!~".contains(**c)).collect();
        i += chars[i..].iter().position(|&c| c == '"').unwrap_or(0) + 1;
        let len = string_end(&chars[i..]);
        matchers.push((label, op, chars[i..i + len].iter().collect()));
        i += len + 1;
    }
    (matchers, i + 1)
}

/// Characters up to (not including) the closing quote of a string.
fn string_end(chars: &[char]) -> usize {
    let mut i = 0;
    while i < chars.len() && chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i.min(chars.len())
}

/// Series of a text exposition: name → label sets.
fn series(scrape: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut found: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let mut labels = BTreeMap::new();
        if line[name_end..].starts_with('{') {
            let chars: Vec<char> = line[name_end + 1..].chars().collect();
            for (label, _, value) in parse_matchers(&chars).0 {
                labels.insert(label, value);
            }
        }
        found.entry(line[..name_end].to_owned()).or_default().push(labels);
    }
    found
}

/// What in `expr` the scrape does not have.
fn problems(scraped: &BTreeMap<String, Vec<BTreeMap<String, String>>>, expr: &str) -> Vec<String> {
    let query = parse_query(expr);
    let mut problems = Vec::new();
    if query.selectors.is_empty() {
        problems.push(format!("{expr}: no metric found in it"));
    }
    let mut labels_seen = BTreeSet::new();
    for selector in &query.selectors {
        let Some(sets) = scraped.get(&selector.metric) else {
            problems.push(format!("{expr}: metric {} is not in the scrape", selector.metric));
            continue;
        };
        labels_seen.extend(sets.iter().flat_map(|s| s.keys().cloned()));
        for (label, op, value) in &selector.matchers {
            let ok = if op == "=" {
                sets.iter().any(|s| s.get(label) == Some(value))
            } else {
                sets.iter().any(|s| s.contains_key(label))
            };
            if !ok {
                problems.push(format!("{expr}: no {} series has {label}{op}{value:?}", selector.metric));
            }
        }
    }
    for label in query.grouping.iter().filter(|l| !labels_seen.contains(*l)) {
        problems.push(format!("{expr}: groups by {label}, which none of its metrics has"));
    }
    problems
}

/// Every PromQL expression of the dashboard: panel targets and template queries.
fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("expr", Some(expr)) => out.push(expr.to_owned()),
                    ("definition", Some(def)) => out.push(label_values(def)),
                    _ => expressions(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// Grafana's `label_values(metric, label)` as the selector `metric{label=~".+"}`.
fn label_values(definition: &str) -> String {
    let inner = definition.trim().trim_start_matches("label_values(").trim_end_matches(')');
    match inner.rsplit_once(',') {
        Some((metric, label)) => format!("{}{{{}=~\".+\"}}", metric.trim(), label.trim()),
        None => inner.to_owned(),
    }
}

#[test]
fn queries_are_read_as_selectors_labels_and_groupings() {
    let check = |expr: &str, metrics: &[&str], matchers: &[(&str, &str, &str)], grouping: &[&str]| {
        let query = parse_query(expr);
        let names: Vec<&str> = query.selectors.iter().map(|s| s.metric.as_str()).collect();
        let found: Vec<(&str, &str, &str)> = query
            .selectors
            .iter()
            .flat_map(|s| &s.matchers)
            .map(|(l, o, v)| (l.as_str(), o.as_str(), v.as_str()))
            .collect();
        assert_eq!((names.as_slice(), found.as_slice()), (metrics, matchers), "{expr}");
        assert_eq!(query.grouping, grouping, "{expr}");
    };
    check("sum by (state) (scop_jobs)", &["scop_jobs"], &[], &["state"]);
    check(
        r#"histogram_quantile(0.99, sum by (le, job_id) (rate(scop_job_step_seconds_bucket{job_id=~"$job"}[$__rate_interval])))"#,
        &["scop_job_step_seconds_bucket"],
        &[("job_id", "=~", "$job")],
        &["le", "job_id"],
    );
    check(
        r#"sum(rate(a_total{code!="OK"}[5m])) / sum without (x) (rate(a_total[1m])) > 0.5"#,
        &["a_total", "a_total"],
        &[("code", "!=", "OK")],
        &["x"],
    );
    assert_eq!(label_values("label_values(scop_job_progress, job_id)"), r#"scop_job_progress{job_id=~".+"}"#);
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_scraped_from_a_running_scopd() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let titles: Vec<&str> =
        dashboard["panels"].as_array().unwrap().iter().filter_map(|p| p["title"].as_str()).collect();
    for panel in PANELS {
        assert!(titles.contains(&panel), "no panel {panel:?} in {titles:?}");
    }
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= PANELS.len(), "{exprs:?}");

    // A job running on a scripted worker that reports progress with step and
    // all-reduce times; a failed call gives the error series their labels.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir).await;
    let mut worker = FakeWorker::connect(&server, "w", 1, &[]).await;
    let mut jobs = server.jobs().await;
    server.submit(&mut jobs, "", &[]).await;
    let task = worker.assigned().await;
    let progress = pb::TaskProgress {
        epoch: 1,
        step: 10,
        steps: 100,
        loss: 1.25,
        accuracy: 0.5,
        samples_per_second: 900.0,
        epochs: 2,
        step_seconds: 0.12,
        allreduce_seconds: 0.03,
        eta_seconds: 22.0,
    };
    worker.send(&task, pb::task_event::Kind::Progress(progress)).await;
    let _ = jobs.get_job(pb::GetJobRequest { job_id: "missing".into() }).await.unwrap_err();

    let mut scraped = BTreeMap::new();
    for _ in 0..100 {
        scraped = series(&get(server.metrics, "/metrics").await.1);
        if scraped.contains_key("scop_job_allreduce_seconds_bucket") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut found: Vec<String> = exprs.iter().flat_map(|e| problems(&scraped, e)).collect();
    assert!(found.is_empty(), "the dashboard queries what scopd does not export:\n{}", found.join("\n"));

    // The check itself notices a misspelt metric, label value and grouping.
    found = ["rate(scop_jobs_total[5m])", r#"scop_job_progress{figure="los"}"#, "sum by (stage) (scop_jobs)"]
        .iter()
        .flat_map(|e| problems(&scraped, e))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    drop(worker);
    server.stop().await;
}
