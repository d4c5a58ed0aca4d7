//! Freezing for the knockoff stage: only β stays trainable.

use tch::nn::VarStore;

use super::unit::KFSCALE;

/// Whether a VarStore name is a knockoff β.
pub fn is_kfscale(name: &str) -> bool {
    name.rsplit('.').next() == Some(KFSCALE)
}

/// Sets `requires_grad` to false on every variable except the β ("kfscale") ones,
/// so that backward computes no weight gradients at all. Returns how many
/// variables stay trainable.
pub fn freeze_all_but_kfscale(vs: &VarStore) -> usize {
    let mut trainable = 0;
    for (name, var) in vs.variables() {
        let keep = is_kfscale(&name);
        // `variables()` hands out shallow clones: the flag is set on the shared tensor.
        let _ = var.set_requires_grad(keep);
        trainable += usize::from(keep);
    }
    trainable
}

/// Makes every trainable variable trainable again (BN running stats stay buffers).
pub fn unfreeze(vs: &mut VarStore) {
    vs.unfreeze();
}
