//! NCCL backend tests; they need a CUDA GPU and run only with the `cuda-tests` feature:
//!
//! ```text
//! cargo test -p scop-worker --features cuda-tests --test it collective_nccl
//! ```
//!
//! (`cargo nextest run -p scop-worker --features cuda-tests collective_nccl` works
//! too.) If cudarc cannot open libnccl by itself — the pip wheel ships only
//! `libnccl.so.2` — each test re-runs itself in a child process whose
//! `LD_LIBRARY_PATH` starts with a directory holding a `libnccl.so` link, which is
//! exactly what a launcher does for its rank processes. With one GPU the group has
//! one rank; with more, one rank (thread) per GPU.

use std::process::Command;

use scop_core::rendezvous::{BackendRendezvous, Rendezvous, encode_unique_id};
use scop_worker::collective::{
    Collective, Error, NcclComm, ReduceOp, ensure_nccl_loadable, find_libnccl, nccl_link_dir, new_unique_id,
};
use tch::{Cuda, Device, Kind, Tensor};

/// Runs `body` here if NCCL loads, else in a child test process that can load it.
fn with_nccl(test_name: &str, body: impl FnOnce()) {
    if ensure_nccl_loadable().is_ok() {
        return body();
    }
    assert!(
        std::env::var_os("SCOP_NCCL_REEXEC").is_none(),
        "libnccl still not loadable in the child process"
    );
    let library =
        find_libnccl().expect("libnccl.so.2 found on LD_LIBRARY_PATH, beside libtorch or in the system");
    let dir =
        nccl_link_dir(&std::env::temp_dir().join(format!("scop-nccl-{}", std::process::id())), &library)
            .unwrap();
    let mut path = std::ffi::OsString::from(dir);
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        path.push(":");
        path.push(old);
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
        .env("LD_LIBRARY_PATH", path)
        .env("SCOP_NCCL_REEXEC", "1")
        .status()
        .unwrap();
    assert!(status.success(), "{test_name} failed in the child process: {status}");
}

fn record(rank: usize, world: usize, unique_id: &str) -> Rendezvous {
    Rendezvous {
        rank: rank as u32,
        world: world as u32,
        job_token: "gpu-test".into(),
        timeout_ms: 60_000,
        connect_timeout_ms: 60_000,
        backend: BackendRendezvous::Nccl { unique_id: unique_id.to_owned(), device: rank as u32 },
    }
}

fn rank_data(rank: usize, len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7 + rank * 13) % 101) as f32 - 50.0).collect()
}

#[test]
fn nccl_all_reduce_and_broadcast_match_a_cpu_reference() {
    with_nccl("collective_nccl::nccl_all_reduce_and_broadcast_match_a_cpu_reference", || {
        let world = usize::try_from(Cuda::device_count()).unwrap();
        assert!(world >= 1, "this test needs a CUDA device");
        let id = encode_unique_id(&new_unique_id().unwrap());
        let lens = [0usize, 1, 7, (1 << 20) + 3];
        std::thread::scope(|scope| {
            let ranks: Vec<_> = (0..world)
                .map(|rank| {
                    let id = id.clone();
                    scope.spawn(move || {
                        let mut comm = NcclComm::connect(&record(rank, world, &id)).unwrap();
                        let device = Device::Cuda(rank);
                        for len in lens {
                            let reference: Vec<f32> =
                                (0..len).map(|i| (0..world).map(|r| rank_data(r, len)[i]).sum()).collect();
                            let mut t = Tensor::from_slice(&rank_data(rank, len)).to_device(device);
                            comm.all_reduce(&mut t, ReduceOp::Sum).unwrap();
                            assert_eq!(
                                Vec::<f32>::try_from(t.to_device(Device::Cpu)).unwrap(),
                                reference,
                                "sum of {len}"
                            );

                            let mut a = Tensor::from_slice(&rank_data(rank, len)).to_device(device);
                            comm.all_reduce(&mut a, ReduceOp::Avg).unwrap();
                            let expected = Tensor::from_slice(&reference) / world as f64;
                            assert!(
                                a.to_device(Device::Cpu).allclose(&expected, 1e-6, 1e-6, false),
                                "avg of {len}"
                            );

                            let mut b = Tensor::from_slice(&rank_data(rank, len)).to_device(device);
                            comm.broadcast(&mut b, 0).unwrap();
                            assert_eq!(
                                Vec::<f32>::try_from(b.to_device(Device::Cpu)).unwrap(),
                                rank_data(0, len)
                            );
                        }
                        comm.barrier().unwrap();
                        let gathered = comm.all_gather_f64(&[rank as f64, 0.5]).unwrap();
                        assert_eq!(gathered, (0..world).map(|r| vec![r as f64, 0.5]).collect::<Vec<_>>());
                    })
                })
                .collect();
            for r in ranks {
                r.join().expect("an NCCL rank failed");
            }
        });
    });
}

#[test]
fn nccl_world_of_one_smoke() {
    with_nccl("collective_nccl::nccl_world_of_one_smoke", || {
        let id = encode_unique_id(&new_unique_id().unwrap());
        let mut group = scop_worker::collective::connect(&record(0, 1, &id)).unwrap();
        assert_eq!((group.rank(), group.world(), group.device()), (0, 1, Device::Cuda(0)));
        let mut t = Tensor::arange(1000, (Kind::Float, Device::Cuda(0)));
        group.all_reduce(&mut t, ReduceOp::Avg).unwrap();
        assert!(t.equal(&Tensor::arange(1000, (Kind::Float, Device::Cuda(0)))));
        let mut on_cpu = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let err = group.all_reduce(&mut on_cpu, ReduceOp::Sum).unwrap_err();
        assert!(matches!(err, Error::Tensor(_)) && err.to_string().contains("cuda:0"), "{err}");
    });
}
