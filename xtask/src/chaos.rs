//! `cargo xtask chaos`: faults injected into a real cluster, one scenario at
//! a time — `scopd standalone` and real `scop-worker agent`s running a small
//! two-rank Fashion-MNIST job — each ending in a checked table row: outcome,
//! restarts, steps recomputed, wall time lost against a fault-free run, and
//! anything lost. Exits non-zero when any row breaks a guarantee: the job
//! ends as it must (SUCCEEDED, or FAILED with a one-line reason for a
//! permanent fault), a retry recomputes at most one checkpoint interval, the
//! job never goes silent for more than twice the heartbeat timeout, the plan
//! comes from the final knockoff epoch, and no event or artifact is missing.
//! Scenarios that need network namespaces fail loudly where none can be made.

mod cluster;
mod job;
mod netns;
mod relay;
mod report;
mod scenarios;
mod spec;

use std::time::Instant;

use anyhow::bail;

use crate::{data, setup, shell};

pub fn run(only: Option<&str>, list: bool, build: bool) -> anyhow::Result<()> {
    if list {
        for (name, what, _) in scenarios::ALL {
            println!("{name:22} {what}");
        }
        return Ok(());
    }
    let chosen: Vec<_> = match only {
        Some(name) => {
            let Some(found) = scenarios::ALL.iter().find(|(n, _, _)| *n == name) else {
                let names: Vec<_> = scenarios::ALL.iter().map(|(n, _, _)| *n).collect();
                bail!("--only {name}: no such scenario; there are {}", names.join(", "));
            };
            vec![found]
        }
        None => scenarios::ALL.iter().collect(),
    };
    let started = Instant::now();
    setup::run()?;
    data::fashion_mnist()?;
    let bin = if build { shell::debug_binaries()? } else { shell::target_dir().join("debug") };
    let no_netns = netns::unavailable();
    let netem = no_netns.is_none() && netns::has_netem();
    match &no_netns {
        Some(why) => eprintln!("chaos: NO NETWORK NAMESPACES ({why}): the several-hosts scenarios will FAIL"),
        None => eprintln!(
            "chaos: network namespaces available; netem {}",
            if netem { "available" } else { "missing (delay and loss come from a userspace relay)" }
        ),
    }
    let ctx = scenarios::Ctx { bin, base: shell::target_dir().join("chaos"), no_netns, netem };
    let mut rows = Vec::new();
    let mut baseline_ms = None;
    for (name, what, scenario) in chosen {
        eprintln!("chaos: {name}: {what}");
        let began = Instant::now();
        let row = match scenario(&ctx, name) {
            Ok(row) => row,
            Err(error) => report::Row::error(name, &error),
        };
        eprintln!(
            "chaos: {name}: {} in {:.0?} ({})",
            if row.passed() { "ok" } else { "FAILED" },
            began.elapsed(),
            row.outcome
        );
        if *name == "baseline" && row.passed() {
            baseline_ms = Some(row.wall_ms);
        }
        rows.push(row);
    }
    report::print(&rows, baseline_ms);
    println!(
        "chaos: {} scenario(s) in {:.0?}; logs under {}",
        rows.len(),
        started.elapsed(),
        ctx.base.display()
    );
    let failed: Vec<_> = rows.iter().filter(|r| !r.passed()).map(|r| r.scenario.as_str()).collect();
    if !failed.is_empty() {
        bail!("chaos: {} scenario(s) broke a guarantee: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}
