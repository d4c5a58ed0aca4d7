//! Data-parallel training equals single-process training on the combined batch:
//! two ranks (threads with a real TCP ring on 127.0.0.1) training a BN-free net
//! with `GroupReplicas` end with the parameters of one process that saw both
//! halves of every batch at once.

use scop_worker::collective::TcpRing;
use scop_worker::commands::launch::Launcher;
use scop_worker::stages::ddp::GroupReplicas;
use scop_worker::stages::parallel::Replicas;
use scop_worker::train::optim::{Optimizer, Rule};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

const STEPS: usize = 6;
const BATCH: i64 = 8;

/// A two-layer MLP plus a frozen offset (a variable without gradient).
struct Net {
    vs: VarStore,
    l1: nn::Linear,
    l2: nn::Linear,
    frozen: Tensor,
}

impl Net {
    fn new(seed: i64) -> Self {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let l1 = nn::linear(&root / "l1", 12, 16, Default::default());
        let l2 = nn::linear(&root / "l2", 16, 5, Default::default());
        let frozen =
            root.var("frozen", &[5], nn::Init::Uniform { lo: -1.0, up: 1.0 }).set_requires_grad(false);
        Self { vs, l1, l2, frozen }
    }

    fn loss(&self, x: &Tensor, y: &Tensor) -> Tensor {
        let logits = self.l2.forward(&self.l1.forward(x).tanh()) + &self.frozen;
        logits.cross_entropy_for_logits(y)
    }

    /// Every variable, sorted by name (frozen included, so its gradient is undefined).
    fn variables(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    fn optimizer(&self) -> Optimizer {
        let vars = self.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n, t, true));
        Optimizer::new(Rule::Sgd { momentum: 0.9, nesterov: false, weight_decay: 1e-3 }, vars.collect())
    }
}

/// The combined batches of every step (made before any thread starts: the RNG is global).
fn batches() -> Vec<(Tensor, Tensor)> {
    tch::manual_seed(1000);
    (0..STEPS)
        .map(|_| {
            let x = Tensor::randn([BATCH, 12], (Kind::Float, Device::Cpu));
            let y = Tensor::randint(5, [BATCH], (Kind::Int64, Device::Cpu));
            (x, y)
        })
        .collect()
}

/// Trains `net` for STEPS steps on its shard of every batch, synchronising through `replicas`.
fn train(net: &Net, batches: &[(Tensor, Tensor)], replicas: &mut dyn Replicas) -> Vec<Tensor> {
    let all: Vec<Tensor> = net.variables().into_iter().map(|(_, t)| t).collect();
    replicas.broadcast_from_root(&all).unwrap();
    let mut opt = net.optimizer();
    let per_rank = BATCH / replicas.world() as i64;
    for (x, y) in batches {
        let start = per_rank * replicas.rank() as i64;
        opt.zero_grad();
        net.loss(&x.narrow(0, start, per_rank), &y.narrow(0, start, per_rank)).backward();
        let grads: Vec<Tensor> = all.iter().map(Tensor::grad).collect();
        replicas.average_gradients(&grads).unwrap();
        opt.step(0.1).unwrap();
    }
    let params: Vec<Tensor> = all.iter().filter(|t| t.requires_grad()).map(Tensor::shallow_clone).collect();
    replicas.check_in_sync(&params).unwrap();
    all.iter().map(Tensor::copy).collect()
}

#[test]
fn two_ranks_train_like_one_process_on_the_combined_batch() {
    let data = batches();
    let reference = train(&Net::new(7), &data, &mut scop_worker::stages::parallel::Single);

    let launcher =
        Launcher::new("unused.yaml".into(), "unused".into(), 2, scop_core::spec::DeviceKind::Cpu, 1);
    let records = launcher.rendezvous().unwrap();
    let ranks: Vec<_> = records
        .into_iter()
        .map(|record| {
            // Rank 1 starts from other weights: the broadcast must replace them.
            let net = Net::new(7 + i64::from(record.rank) * 100);
            let data: Vec<(Tensor, Tensor)> = data.iter().map(|(x, y)| (x.copy(), y.copy())).collect();
            std::thread::spawn(move || {
                let group = TcpRing::connect(&record).unwrap();
                // 64-byte buckets: several collectives per step.
                let mut replicas = GroupReplicas::with_bucket_bytes(Box::new(group), 64);
                let mut sums = [1.0, f64::from(record.rank)];
                replicas.sum_scalars(&mut sums).unwrap();
                assert_eq!(sums, [2.0, 1.0]);
                let trained = train(&net, &data, &mut replicas);
                (trained, replicas.last_fingerprint().unwrap())
            })
        })
        .collect();
    let results: Vec<(Vec<Tensor>, u64)> = ranks.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results[0].1, results[1].1, "replica fingerprints differ");
    for (rank, (trained, _)) in results.iter().enumerate() {
        assert_eq!(trained.len(), reference.len());
        for (got, want) in trained.iter().zip(&reference) {
            let diff = (got - want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "rank {rank}: max difference {diff} from the 1-process run");
        }
    }
    // The run moved every trained weight (so this is not a comparison of two initial
    // states) and left the frozen one alone.
    for ((name, initial), trained) in Net::new(7).variables().iter().zip(&reference) {
        let moved = (trained - initial).abs().max().double_value(&[]);
        if name == "frozen" {
            assert_eq!(moved, 0.0, "the frozen variable changed");
        } else {
            assert!(moved > 1e-4, "training did not change {name}: {moved}");
        }
    }
}
