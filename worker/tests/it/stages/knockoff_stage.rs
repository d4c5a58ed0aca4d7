//! The knockoff stage trains only β: every other parameter keeps its bits, β
//! moves and stays in [0, 1]; the `both` loss and the Gaussian source run too.

use scop_core::spec::{KnockoffLoss, KnockoffSource};
use scop_worker::models::is_kfscale;
use scop_worker::stages::trainer::{is_bn_buffer, sorted_variables};
use scop_worker::stages::{knockoff, weights};
use tch::Device;

use super::{identical, run_stage, step_losses, tiny_spec};

/// Trains β for one epoch of `steps` steps with `edit` applied to the spec;
/// checks that nothing but β (and BN running statistics) changed; returns the final β values.
fn knockoff_changes_only_beta(steps: usize, edit: impl FnOnce(&mut scop_core::spec::JobSpec)) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = tiny_spec(dir.path());
    spec.pretrain = None;
    spec.data.train_subset = Some(32 * steps);
    edit(&mut spec);
    let desc = weights::dense_desc(&spec).unwrap();
    let (mut model, vs) = weights::build(&desc, Device::Cpu, 11).unwrap();
    let before: Vec<(String, tch::Tensor)> =
        sorted_variables(&vs).into_iter().map(|(n, t)| (n, t.detach().copy())).collect();

    let (result, events) = run_stage(&spec, false, |ctx| knockoff::train(ctx, &mut model, &vs));
    result.unwrap();
    let losses = step_losses(&events);
    assert_eq!(losses.len(), steps);
    assert!(losses.iter().all(|(_, _, l)| l.is_finite() && *l > 0.0), "{losses:?}");

    let after = sorted_variables(&vs);
    let mut betas = Vec::new();
    let mut compared = 0;
    for (name, tensor) in &after {
        if is_kfscale(name) {
            betas.extend(Vec::<f64>::try_from(tensor.flatten(0, -1).to_kind(tch::Kind::Double)).unwrap());
            continue;
        }
        let (_, old) = before.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} is new"));
        if is_bn_buffer(name) {
            // Batches go through BN in training mode, as in the reference; its running statistics move.
            continue;
        }
        assert!(identical(old, tensor), "{name} changed during the knockoff stage");
        compared += 1;
    }
    assert_eq!(compared, before.iter().filter(|(n, _)| !is_bn_buffer(n)).count());
    assert_eq!(betas.len(), model.knockoff_state().unwrap().iter().map(|u| u.beta.len()).sum::<usize>());
    assert!(betas.iter().all(|b| (0.0..=1.0).contains(b)), "β is clamped to [0, 1]");
    betas
}

/// β starts at 0.5 everywhere; after training a good share of it has moved.
fn assert_moved(betas: &[f64]) {
    let moved = betas.iter().filter(|b| (**b - 0.5).abs() > 1e-4).count();
    assert!(moved * 2 > betas.len(), "only {moved} of {} β moved", betas.len());
}

#[test]
fn knockoff_trains_beta_and_nothing_else() {
    assert_moved(&knockoff_changes_only_beta(4, |_| {}));
}

#[test]
fn knockoff_with_loss_on_both_halves_trains_beta_and_nothing_else() {
    assert_moved(&knockoff_changes_only_beta(3, |spec| spec.knockoff.loss = KnockoffLoss::Both));
}

#[test]
fn knockoff_with_gaussian_knockoffs_trains_beta_and_nothing_else() {
    assert_moved(&knockoff_changes_only_beta(3, |spec| spec.knockoff.source = KnockoffSource::Gaussian));
}
