//! `cargo xtask check-links`: only scop-worker may link libtorch, and no binary
//! links NCCL or the CUDA driver.
//!
//! The coordinator image and the CLI must stay small, so `scopd` and `scopctl`
//! must not depend on any libtorch library, and the agent (`scop-agent`) must not
//! either: it only supervises trainer processes. NCCL support is a default
//! feature whose libraries cudarc opens at run time, only for a group that uses
//! NCCL, so every binary still starts on a machine without them. `ldd` on the
//! built binaries tells for libtorch; for NCCL and the driver only the binary's
//! own `NEEDED` entries (`readelf -d`) count, since a CUDA build of libtorch
//! links libnccl itself.

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
        let needed = shell::output(std::process::Command::new("readelf").arg("-d").arg(&path))?;
        let gpu: Vec<&str> = needed.lines().filter(|l| needs_nccl_or_cuda_driver(l)).collect();
        if !gpu.is_empty() {
            problems.push(format!(
                "{binary} links NCCL or the CUDA driver, which cudarc should open at run time:\n  {}",
                gpu.join("\n  ")
            ));
        }
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

/// Whether a `readelf -d` line is a `NEEDED` entry for libnccl or the CUDA
/// driver (`libcuda.so`; not the runtime or libtorch's `libtorch_cuda`).
fn needs_nccl_or_cuda_driver(line: &str) -> bool {
    let Some((_, rest)) = line.split_once("(NEEDED)") else { return false };
    let name = rest.rsplit_once('[').map_or("", |(_, n)| n.trim_end_matches(']').trim());
    name.starts_with("libnccl.so") || name.starts_with("libcuda.so")
}

#[cfg(test)]
mod tests {
    use super::needs_nccl_or_cuda_driver;

    #[test]
    fn only_needed_nccl_and_cuda_driver_entries_count() {
        let check = |line: &str, want: bool| assert_eq!(needs_nccl_or_cuda_driver(line), want, "{line}");
        let needed = |lib: &str| format!(" 0x0000000000000001 (NEEDED)             Shared library: [{lib}]");
        check(&needed("libnccl.so.2"), true);
        check(&needed("libcuda.so.1"), true);
        check(&needed("libtorch_cuda.so"), false);
        check(&needed("libc10_cuda.so"), false);
        check(&needed("libcudart.so.13"), false);
        check(&needed("libc.so.6"), false);
        check(" 0x000000000000000f (RPATH)              Library rpath: [/opt/nccl/libnccl.so.2]", false);
    }
}
