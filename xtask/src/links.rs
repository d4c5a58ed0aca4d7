//! `cargo xtask check-links`: only scop-worker may link libtorch.
//!
//! The coordinator image and the CLI must stay small, so `scopd` and `scopctl`
//! must not depend on any libtorch library, and the agent (`scop-agent`) must not
//! either: it only supervises trainer processes. `ldd` on the built binaries tells.

use anyhow::bail;

use crate::shell;

pub fn run() -> anyhow::Result<()> {
    let target = shell::debug_binaries()?;
    let mut problems = Vec::new();
    for (binary, may_link) in
        [("scopd", false), ("scopctl", false), ("scop-agent", false), ("scop-worker", true)]
    {
        let path = target.join(binary);
        let ldd = shell::output(std::process::Command::new("ldd").arg(&path))?;
        let torch: Vec<&str> =
            ldd.lines().filter(|l| l.contains("libtorch") || l.contains("libc10")).collect();
        match (may_link, torch.is_empty()) {
            (false, false) => problems.push(format!("{binary} links libtorch:\n  {}", torch.join("\n  "))),
            (true, true) => problems.push(format!("{binary} should link libtorch but ldd shows none")),
            (true, false) if torch.iter().any(|l| l.contains("not found")) => {
                problems.push(format!("{binary} cannot find libtorch at run time:\n  {}", torch.join("\n  ")))
            }
            _ => eprintln!("check-links: {binary}: ok ({} libtorch libraries)", torch.len()),
        }
    }
    if !problems.is_empty() {
        bail!("link check failed:\n{}", problems.join("\n"));
    }
    Ok(())
}
