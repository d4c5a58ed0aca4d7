//! The pruning criteria other than SCOP on a real ResNet-20: each unit's scores
//! against a computation written out here in plain loops (Taylor against a
//! separate autograd pass), and a whole `scop-worker run` job scored by `l1`,
//! which runs the score stage instead of knockoff.

use std::path::Path;
use std::process::Command;

use scop_core::plan::Plan;
use scop_core::spec::{Criterion, JobSpec};
use scop_core::stats::ScoreStatistics;
use scop_worker::criteria::weight_scores;
use scop_worker::events::Event;
use scop_worker::models::ResNet;
use scop_worker::stages::parallel::Single;
use scop_worker::stages::score;
use scop_worker::stages::weights;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::{fashion_mnist, run_stage, tiny_spec, tiny_yaml};

/// A dense ResNet-20 on one input channel with seeded random weights, and the
/// BN γ of `layer1.0.conv1` (`layer1.0.bn1`) set to values with signs and a zero.
fn network(seed: u64) -> (ResNet, VarStore) {
    let spec = tiny_spec(Path::new("unused"));
    let desc = weights::dense_desc(&spec).unwrap();
    let (model, vs) = weights::build(&desc, Device::Cpu, seed).unwrap();
    let gamma: Vec<f32> = (0..16).map(|c| (c as f32 - 5.0) * 0.25).collect();
    let mut bn = vs.variables()["layer1.0.bn1.weight"].shallow_clone();
    tch::no_grad(|| bn.copy_(&Tensor::from_slice(&gamma)));
    (model, vs)
}

/// A variable's values and its output-channel count.
fn filters(vs: &VarStore, name: &str) -> Vec<Vec<f64>> {
    let t = vs.variables()[name].detach().to_kind(Kind::Double).contiguous();
    let out = t.size()[0] as usize;
    let flat = Vec::<f64>::try_from(t.flatten(0, -1)).unwrap();
    flat.chunks(flat.len() / out).map(<[f64]>::to_vec).collect()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (c, (g, w)) in got.iter().zip(want).enumerate() {
        let tolerance = 1e-5 * w.abs().max(1.0);
        assert!((f64::from(*g) - w).abs() <= tolerance, "{what} channel {c}: got {g}, want {w}");
    }
}

#[test]
fn weight_criteria_score_each_unit_as_computed_by_hand() {
    let (model, vs) = network(3);
    for criterion in [Criterion::BnGamma, Criterion::L1, Criterion::L2, Criterion::Fpgm] {
        let scores = weight_scores(criterion, &model, 0).unwrap().expect("a weight criterion");
        let names: Vec<&str> = scores.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 18, "{criterion:?}: every unit of ResNet-20");
        assert_eq!((names[0], names[17]), ("layer1.0.conv1", "layer3.2.conv2"));
        for (unit, bn) in [("layer1.0.conv1", "layer1.0.bn1"), ("layer3.2.conv2", "layer3.2.bn2")] {
            let w = filters(&vs, &format!("{unit}.weight"));
            let want: Vec<f64> = match criterion {
                Criterion::BnGamma => {
                    filters(&vs, &format!("{bn}.weight")).iter().map(|g| g[0].abs()).collect()
                }
                Criterion::L1 => w.iter().map(|f| f.iter().map(|v| v.abs()).sum()).collect(),
                Criterion::L2 => w.iter().map(|f| f.iter().map(|v| v * v).sum::<f64>().sqrt()).collect(),
                _ => w
                    .iter()
                    .map(|a| {
                        w.iter()
                            .map(|b| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt())
                            .sum()
                    })
                    .collect(),
            };
            let got = &scores.iter().find(|(n, _)| n == unit).unwrap().1;
            assert_close(got, &want, &format!("{criterion:?} {unit}"));
        }
    }
    // The γ set above: |(c − 5)/4|.
    let gamma = &weight_scores(Criterion::BnGamma, &model, 0).unwrap().unwrap()[0].1;
    assert_eq!(gamma[..6], [1.25, 1.0, 0.75, 0.5, 0.25, 0.0]);
    assert_eq!(weight_scores(Criterion::Taylor, &model, 0).unwrap(), None);
}

#[test]
fn random_scores_follow_the_seed() {
    let (model, _vs) = network(3);
    let draw = |seed| weight_scores(Criterion::Random, &model, seed).unwrap().unwrap();
    assert_eq!(draw(7), draw(7));
    let (a, b) = (draw(7), draw(8));
    assert!(a.iter().zip(&b).all(|((_, x), (_, y))| x != y), "every unit changes with the seed");
    // Through the score stage, the spec's seed decides.
    let dir = tempfile::tempdir().unwrap();
    let stats = |seed: u64| {
        let mut spec = tiny_spec(dir.path());
        spec.prune.criterion = Criterion::Random;
        spec.seed = seed;
        let (model, vs) = network(3);
        let (stats, _) = run_stage(&spec, false, |ctx| score::statistics(ctx, &model, &vs));
        stats.unwrap()
    };
    let (seven, eight) = (stats(7), stats(8));
    assert_eq!(seven, stats(7));
    assert_ne!(seven.units[0].score, eight.units[0].score);
    assert_eq!(seven.units[0].score, a[0].1, "the stage draws what the criterion draws for seed 7");
}

#[test]
fn taylor_scores_match_a_separate_autograd_pass() {
    tch::manual_seed(11);
    let images = Tensor::randn([8, 1, 32, 32], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(10, [8], (Kind::Int64, Device::Cpu));
    let (model, vs) = network(5);
    // Two batches of four, as the stage takes them from the loader.
    let batches = (0..2).map(|i| Ok((images.narrow(0, 4 * i, 4), labels.narrow(0, 4 * i, 4))));
    let scores = score::taylor(&model, &vs, batches, &mut Single).unwrap();
    assert_eq!(scores.len(), 18);

    // The same weights; one pass over all eight images. With equal batches the
    // mean of the two batch losses is the mean over the eight, so G is this
    // pass's gradient.
    let (twin, twin_vs) = network(5);
    let loss = twin.f_forward_t(&images, false).unwrap().cross_entropy_for_logits(&labels);
    loss.backward();
    for unit in ["layer1.0.conv1", "layer2.1.conv2", "layer3.2.conv1"] {
        let w = filters(&twin_vs, &format!("{unit}.weight"));
        let g = twin_vs.variables()[&format!("{unit}.weight")].grad().to_kind(Kind::Double).contiguous();
        let g = Vec::<f64>::try_from(g.flatten(0, -1)).unwrap();
        let k = w[0].len();
        let want: Vec<f64> = w
            .iter()
            .enumerate()
            .map(|(c, f)| f.iter().zip(&g[c * k..(c + 1) * k]).map(|(a, b)| a * b).sum::<f64>().abs())
            .collect();
        assert!(want.iter().any(|v| *v > 1e-6), "{unit}: the loss depends on the unit");
        let got = &scores.iter().find(|(n, _)| n == unit).unwrap().1;
        for (c, (g, w)) in got.iter().zip(&want).enumerate() {
            let tolerance = 1e-3 * w.abs() + 1e-7;
            assert!((f64::from(*g) - w).abs() <= tolerance, "{unit} channel {c}: got {g}, want {w}");
        }
    }
}

/// `prune.criterion: l1` through the real `scop-worker run`: pretrain → score →
/// decide → finetune → export, no knockoff; the plan keeps each unit's
/// highest-L1 filters of the weights the score stage scored.
#[test]
fn an_l1_job_runs_the_score_stage_instead_of_knockoff() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = tiny_yaml(&fashion_mnist(), &out).replace("policy: layer,", "policy: layer, criterion: l1,");
    assert!(yaml.contains("criterion: l1"), "{yaml}");
    let spec_path = dir.path().join("job.yaml");
    std::fs::write(&spec_path, &yaml).unwrap();
    let spec = JobSpec::from_file(&spec_path).unwrap();
    assert_eq!(spec.stages().to_stored(), "pretrain,score,decide,finetune,export");
    let output = Command::new(env!("CARGO_BIN_EXE_scop-worker")).arg("run").arg(&spec_path).output().unwrap();
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));

    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let events: Vec<Event> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let finished: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageFinished { stage, .. } => Some(stage.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["pretrain", "score", "finetune", "export"]);
    assert!(!out.join("knockoff").exists(), "the knockoff stage was skipped");
    let sent: Vec<&ScoreStatistics> = events
        .iter()
        .filter_map(|e| match e {
            Event::Statistics(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "one set of statistics, as rank 0 streams them");
    assert_eq!(sent[0].epoch, 1);

    // The scores are the L1 norms of the weights the score stage left for finetune.
    let scored = std::fs::read_to_string(out.join("score/statistics.jsonl")).unwrap();
    let stats: ScoreStatistics = serde_json::from_str(scored.trim()).unwrap();
    assert_eq!(&stats, sent[0]);
    let desc = weights::dense_desc(&spec).unwrap();
    let (_, vs) = weights::load(&desc, &out.join("score/model.safetensors"), Device::Cpu).unwrap();
    let (_, pretrained) = weights::load(&desc, &out.join("pretrain/model.safetensors"), Device::Cpu).unwrap();
    let plan: Plan = serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan.units.len(), 18);
    for (unit, planned) in stats.units.iter().zip(&plan.units) {
        assert_eq!(unit.unit, planned.name);
        let name = format!("{}.weight", unit.unit);
        assert!(vs.variables()[&name].equal(&pretrained.variables()[&name]), "{name}: scored as pretrained");
        let l1: Vec<f64> = filters(&vs, &name).iter().map(|f| f.iter().map(|v| v.abs()).sum()).collect();
        assert_close(&unit.score, &l1, &unit.unit);
        // Kept: the channels of the highest L1, C − floor(0.45 C) of them.
        let mut order: Vec<usize> = (0..l1.len()).collect();
        order.sort_by(|a, b| l1[*b].total_cmp(&l1[*a]));
        let mut want: Vec<u32> = order[..planned.kept.len()].iter().map(|c| *c as u32).collect();
        want.sort_unstable();
        assert_eq!(planned.kept.len(), l1.len() - (0.45 * l1.len() as f64).floor() as usize);
        assert_eq!(planned.kept, want, "{}", unit.unit);
    }

    // Finetune and export ran on the pruned network; the card has the dense baseline.
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("export/model-card.json")).unwrap()).unwrap();
    for key in ["top1_dense", "top1_pruned_before_finetune", "top1_pruned"] {
        let v = card["metrics"][key].as_f64().unwrap_or_else(|| panic!("card lacks metrics.{key}: {card}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    let pruned = weights::read_arch(&out.join("export/arch.json")).unwrap();
    assert!(pruned.params() < desc.params(), "the export is the pruned network");
}
