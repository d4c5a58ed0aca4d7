//! `cargo xtask bench control-plane`: submit/get latency with 1,000 requests in
//! flight, then 1,000 simulated workers heartbeating at 1 Hz plus 500
//! `WatchJob` streams, against a real release `scopd` process. The load
//! generator is `server/benches/control_plane.rs`; it prints p50/p99
//! latencies and the coordinator's CPU use. The goal is p99 < 10 ms.

use crate::shell;

pub fn run() -> anyhow::Result<()> {
    let scopd = shell::release_binaries()?.join("scopd");
    shell::run(
        shell::cargo()
            .args(["bench", "-p", "scop-server", "--bench", "control_plane", "--", "--scopd"])
            .arg(&scopd),
    )
}
