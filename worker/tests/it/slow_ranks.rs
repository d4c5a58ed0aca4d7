//! "Slow" is not "dead": real rank processes on 127.0.0.1 with the default
//! timeouts (`resources.collective_timeout` 10 min, `connect_timeout` 2 min). A
//! rank held still for 40 s — before it has joined the group, or while rank 0
//! writes a checkpoint — only delays the job; a killed rank still ends the others
//! within seconds (see `ranks::killing_a_rank_ends_the_others_with_an_error_naming_it`).
//!
//! A rank is held with SIGSTOP and released with SIGCONT: to its peers that is
//! exactly a process that is alive but silent, with no test hook in the worker.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::ranks::{rendezvous, spawn_rank, tiny_spec};

/// Longer than any timeout the collectives had before they were configurable (20 s).
const HELD: Duration = Duration::from_secs(40);

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// A pretrain-only spec: 64 samples over 2 ranks in batches of 8 (4 steps each),
/// a checkpoint every 2 steps.
fn spec(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(tiny_spec(dir, 64, None))
        .unwrap()
        .replace("schedule: constant }", "schedule: constant, checkpoint_every_steps: 2 }");
    assert!(text.contains("checkpoint_every_steps: 2"), "{text}");
    let path = dir.join("slow.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_succeeded(rank: usize, out: &Output) {
    assert!(out.status.success(), "rank {rank} failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_rank_held_40_s_before_joining_does_not_fail_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path());
    let records = rendezvous(2);
    let late = spawn_rank(&spec, "pretrain", &records[1], None);
    // Held before it has listened, connected or made any collective call.
    signal(&late, Signal::SIGSTOP);
    let early = spawn_rank(&spec, "pretrain", &records[0], None);
    std::thread::sleep(HELD);
    signal(&late, Signal::SIGCONT);
    let (early, late) = (early.wait_with_output().unwrap(), late.wait_with_output().unwrap());
    assert_succeeded(0, &early);
    assert_succeeded(1, &late);
    let events = String::from_utf8_lossy(&early.stdout);
    assert!(events.contains(r#""type":"evaluated""#), "rank 0 did not finish its epoch: {events}");
}

#[test]
fn rank_0_held_40_s_at_a_checkpoint_write_does_not_fail_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path());
    let records = rendezvous(2);
    let mut writer = spawn_rank(&spec, "pretrain", &records[0], None);
    let waiter = spawn_rank(&spec, "pretrain", &records[1], None);

    // Rank 0 reports step 2's progress right before it writes step 2's checkpoint:
    // hold it there, while rank 1 goes on to step 3 and waits for it.
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    let reached = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains(r#""type":"progress""#) && l.contains(r#""step":2,"#));
    assert!(reached, "rank 0 never reported step 2");
    signal(&writer, Signal::SIGSTOP);
    let held_at = Instant::now();
    std::thread::sleep(HELD);
    signal(&writer, Signal::SIGCONT);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let (writer, waiter) = (writer.wait_with_output().unwrap(), waiter.wait_with_output().unwrap());
    assert!(held_at.elapsed() >= HELD);
    assert_succeeded(0, &writer);
    assert_succeeded(1, &waiter);
    assert!(
        rest.iter()
            .any(|l| l.contains(r#""type":"checkpoint_written""#) && l.contains("pretrain-step-00000002")),
        "rank 0 wrote no checkpoint at step 2: {rest:?}"
    );
}
