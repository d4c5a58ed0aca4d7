//! Optimisers written plainly on tch tensors, so that their state (momentum
//! buffers, Adam moments) can be checkpointed and restored exactly.
//!
//! The update rules are PyTorch's: `torch.optim.SGD` (momentum buffer starts as
//! the first gradient; Nesterov uses `g + m·buf`) and `torch.optim.Adam`.

use tch::Tensor;

/// A trainable tensor with the optimiser state that belongs to it.
#[derive(Debug)]
struct Slot {
    name: String,
    var: Tensor,
    decay: bool,
    /// SGD: the momentum buffer. Adam: the first moment.
    first: Option<Tensor>,
    /// Adam: the second moment.
    second: Option<Tensor>,
}

/// Which update rule, with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    Sgd { momentum: f64, nesterov: bool, weight_decay: f64 },
    Adam { beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
}

/// An optimiser over named variables.
#[derive(Debug)]
pub struct Optimizer {
    rule: Rule,
    slots: Vec<Slot>,
    steps: u64,
}

impl Optimizer {
    /// `vars` are `(name, tensor, apply_weight_decay)`; the tensors are shallow
    /// clones of the model's variables and are updated in place.
    pub fn new(rule: Rule, vars: Vec<(String, Tensor, bool)>) -> Self {
        let slots = vars
            .into_iter()
            .map(|(name, var, decay)| Slot { name, var, decay, first: None, second: None })
            .collect();
        Self { rule, slots, steps: 0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            slot.var.zero_grad();
        }
    }

    /// Scales gradients so that their global L2 norm is at most `max_norm`;
    /// returns the norm before clipping.
    pub fn clip_grad_norm(&self, max_norm: f64) -> Result<f64, tch::TchError> {
        tch::no_grad(|| {
            let grads: Vec<Tensor> =
                self.slots.iter().map(|s| s.var.grad()).filter(Tensor::defined).collect();
            let mut total = 0.0;
            for g in &grads {
                total += g.f_square()?.f_sum(tch::Kind::Double)?.f_double_value(&[])?;
            }
            let norm = total.sqrt();
            if norm > max_norm {
                let scale = max_norm / (norm + 1e-6);
                for mut g in grads {
                    let _ = g.f_mul_scalar_(scale)?;
                }
            }
            Ok(norm)
        })
    }

    /// One update with learning rate `lr`; variables without a gradient are skipped.
    pub fn step(&mut self, lr: f64) -> Result<(), tch::TchError> {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.var.grad();
                if !grad.defined() {
                    continue;
                }
                match self.rule {
                    Rule::Sgd { momentum, nesterov, weight_decay } => {
                        let mut g = if slot.decay && weight_decay != 0.0 {
                            grad.f_add(&(&slot.var * weight_decay))?
                        } else {
                            grad
                        };
                        if momentum != 0.0 {
                            let buf = match slot.first.take() {
                                None => g.f_detach_copy()?,
                                Some(mut buf) => {
                                    let _ = buf.f_mul_scalar_(momentum)?;
                                    let _ = buf.f_add_(&g)?;
                                    buf
                                }
                            };
                            g = if nesterov { g.f_add(&(&buf * momentum))? } else { buf.shallow_clone() };
                            slot.first = Some(buf);
                        }
                        let _ = slot.var.f_sub_(&(g * lr))?;
                    }
                    Rule::Adam { beta1, beta2, eps, weight_decay } => {
                        let g = if slot.decay && weight_decay != 0.0 {
                            grad.f_add(&(&slot.var * weight_decay))?
                        } else {
                            grad
                        };
                        let m = slot.first.get_or_insert_with(|| g.zeros_like());
                        let _ = m.f_mul_scalar_(beta1)?;
                        let _ = m.f_add_(&(&g * (1.0 - beta1)))?;
                        let v = slot.second.get_or_insert_with(|| g.zeros_like());
                        let _ = v.f_mul_scalar_(beta2)?;
                        let _ = v.f_add_(&(g.square() * (1.0 - beta2)))?;
                        let m_hat = &*m / (1.0 - beta1.powf(t));
                        let v_hat = &*v / (1.0 - beta2.powf(t));
                        let update = m_hat / (v_hat.sqrt() + eps);
                        let _ = slot.var.f_sub_(&(update * lr))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The optimiser state as named tensors, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for slot in &self.slots {
            if let Some(first) = &slot.first {
                out.push((format!("optim.{}.first", slot.name), first.shallow_clone()));
            }
            if let Some(second) = &slot.second {
                out.push((format!("optim.{}.second", slot.name), second.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`Optimizer::state`] saved; `steps` comes from the checkpoint's metadata.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], steps: u64) -> Result<(), String> {
        let lookup: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for slot in &mut self.slots {
            for (suffix, target) in [("first", &mut slot.first), ("second", &mut slot.second)] {
                let key = format!("optim.{}.{suffix}", slot.name);
                *target = match lookup.get(key.as_str()) {
                    Some(t) if t.size() != slot.var.size() => {
                        return Err(format!(
                            "{key}: shape {:?} does not match the variable's {:?}",
                            t.size(),
                            slot.var.size()
                        ));
                    }
                    Some(t) => Some(t.to_device(slot.var.device()).copy()),
                    None => None,
                };
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Minimises `sum((x - 3)^2)` and checks the trajectory against PyTorch's rules by hand.
    #[test]
    fn sgd_nesterov_matches_the_torch_rule() {
        let x = Tensor::from_slice(&[0.0f64]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            Rule::Sgd { momentum: 0.9, nesterov: true, weight_decay: 0.0 },
            vec![("x".into(), x.shallow_clone(), true)],
        );
        // By hand: g0 = -6, buf = -6, step g = -6 + 0.9·-6 = -11.4, x = 1.14.
        let loss = (&x - 3.0).square().sum(Kind::Double);
        opt.zero_grad();
        loss.backward();
        opt.step(0.1).unwrap();
        assert!((x.double_value(&[0]) - 1.14).abs() < 1e-12);
        // g1 = 2·(1.14−3) = −3.72, buf = 0.9·−6 − 3.72 = −9.12, g = −3.72 + 0.9·−9.12 = −11.928.
        let loss = (&x - 3.0).square().sum(Kind::Double);
        opt.zero_grad();
        loss.backward();
        opt.step(0.1).unwrap();
        assert!((x.double_value(&[0]) - (1.14 + 1.1928)).abs() < 1e-12);
    }

    #[test]
    fn adam_state_round_trips() {
        let x = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let rule = Rule::Adam { beta1: 0.5, beta2: 0.9, eps: 1e-8, weight_decay: 0.0 };
        let mut opt = Optimizer::new(rule, vec![("x".into(), x.shallow_clone(), false)]);
        x.sum(Kind::Float).backward();
        opt.step(0.004).unwrap();
        // The first Adam step moves every coordinate by lr (bias-corrected m/sqrt(v) = 1).
        let moved = 1.0 - x.double_value(&[0]);
        assert!((moved - 0.004).abs() < 1e-6, "moved {moved}");
        let saved = opt.state();
        assert_eq!(saved.len(), 2);
        let mut restored = Optimizer::new(rule, vec![("x".into(), x.shallow_clone(), false)]);
        restored.load_state(&saved, opt.steps()).unwrap();
        assert_eq!(restored.state()[0].1, saved[0].1);
        let bad = vec![("optim.x.first".to_owned(), Tensor::zeros([4], (Kind::Float, Device::Cpu)))];
        let err = restored.load_state(&bad, 1).unwrap_err();
        assert!(err.contains("optim.x.first: shape [4]"), "{err}");
    }
}
