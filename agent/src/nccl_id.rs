//! The NCCL unique id of a CUDA group, created by rank 0's agent: NCCL's
//! bootstrap root then lives in the agent, which outlives the group's ranks.
//! Only with the `nccl` feature (cudarc, libnccl opened at run time).

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
    Err("this agent was built without the `nccl` cargo feature, which CUDA jobs need".to_owned())
}
