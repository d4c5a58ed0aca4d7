//! The NCCL side of a group in the agent: whether a task's group talks over
//! NCCL at all (the spec's `resources.backend`), and its unique id, created by
//! rank 0's agent: NCCL's bootstrap root then lives in the agent, which
//! outlives the group's ranks. The id needs the `nccl` feature (on by default;
//! cudarc opens libnccl at run time, so nothing is linked).

use scop_proto::v1 as pb;

/// Whether the task's group talks over NCCL: the coordinator's rule
/// ([`ResourcesSpec::stage_uses_nccl`](scop_core::spec::ResourcesSpec::stage_uses_nccl)),
/// read from the spec it sent. `auto` picks NCCL for a CUDA group of two or
/// more; `tcp` never does, even on GPUs; `nccl` does even for one rank.
pub fn uses_nccl(task: &pb::AssignTask) -> Result<bool, String> {
    let spec = scop_core::spec::JobSpec::from_yaml(&task.spec_yaml)
        .map_err(|e| format!("task {}: its spec: {e}", task.task_id))?;
    let stage = task.stage().domain().ok_or_else(|| format!("task {}: no stage", task.task_id))?;
    Ok(spec.resources.stage_uses_nccl(stage, task.world_size))
}

/// A new NCCL unique id, as the 256 hex digits a rendezvous record carries.
#[cfg(feature = "nccl")]
pub fn nccl_unique_id() -> Result<String, String> {
    // cudarc panics if it cannot open libnccl; find out first.
    let candidates = cudarc::get_lib_name_candidates("nccl");
    // SAFETY: loading NCCL runs only its own library initialisers.
    #[allow(unsafe_code)]
    let loadable = candidates.iter().any(|name| unsafe { libloading::Library::new(name) }.is_ok());
    if !loadable {
        return Err(format!(
            "creating the NCCL unique id: cannot load libnccl under any of the names {candidates:?}"
        ));
    }
    let id =
        cudarc::nccl::result::get_uniqueid().map_err(|e| format!("creating the NCCL unique id: {e:?}"))?;
    Ok(scop_core::rendezvous::encode_unique_id(&id.internal.map(|c| c as u8)))
}

#[cfg(not(feature = "nccl"))]
pub fn nccl_unique_id() -> Result<String, String> {
    Err("this agent was built without the `nccl` cargo feature (a default one), which NCCL groups need \
         (resources.backend)"
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(resources: &str, stage: pb::Stage, world_size: u32) -> pb::AssignTask {
        pb::AssignTask {
            task_id: "t".into(),
            stage: stage as i32,
            world_size,
            spec_yaml: format!(
                "model: {{ arch: resnet20, num_classes: 10 }}\ndata: {{ format: idx, root: d }}\nresources: {resources}\n"
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_spec_backend_decides_between_the_ring_and_nccl() {
        let knockoff = pb::Stage::Knockoff;
        assert!(!uses_nccl(&task("{ world_size: 2 }", knockoff, 2)).unwrap());
        assert!(uses_nccl(&task("{ device: cuda, world_size: 2 }", knockoff, 2)).unwrap());
        assert!(!uses_nccl(&task("{ device: cuda, world_size: 2, backend: tcp }", knockoff, 2)).unwrap());
        assert!(uses_nccl(&task("{ device: cuda, backend: nccl }", pb::Stage::Finetune, 1)).unwrap());
        assert!(!uses_nccl(&task("{ device: cuda, backend: nccl }", pb::Stage::Export, 1)).unwrap());
        let bad = uses_nccl(&task("{ backend: gloo }", knockoff, 1)).unwrap_err();
        assert!(bad.contains("task t: its spec: ") && bad.contains("resources.backend"), "{bad}");
    }
}
