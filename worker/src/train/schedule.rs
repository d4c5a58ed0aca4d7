//! Learning-rate schedules: linear warmup, then constant, cosine or poly decay.
//!
//! The learning rate is a pure function of the global step, so a stage resumed
//! from a checkpoint continues on exactly the same curve.

use scop_core::spec::Schedule;

/// Exponent of the `poly` schedule: `lr · (1 − progress)²`.
pub const POLY_POWER: f64 = 2.0;

/// A learning-rate curve over a whole stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub kind: Schedule,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    pub fn new(base_lr: f64, kind: Schedule, warmup_epochs: f64, steps_per_epoch: u64, epochs: u32) -> Self {
        let total_steps = steps_per_epoch * u64::from(epochs);
        // Rounded to whole steps; never the whole stage, so decay always has a step.
        let warmup_steps = ((warmup_epochs * steps_per_epoch as f64).round() as u64).min(total_steps);
        Self { base_lr, kind, warmup_steps, total_steps }
    }

    /// The learning rate for the step with index `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).clamp(0.0, 1.0);
        match self.kind {
            Schedule::Constant => self.base_lr,
            Schedule::Cosine => self.base_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Schedule::Poly => self.base_lr * (1.0 - progress).powf(POLY_POWER),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(schedule: LrSchedule, step: u64, expected: f64) {
        let got = schedule.lr_at(step);
        assert!((got - expected).abs() < 1e-12, "step {step}: expected {expected}, got {got}");
    }

    #[test]
    fn cosine_with_warmup() {
        let s = LrSchedule::new(0.1, Schedule::Cosine, 1.0, 10, 3);
        assert_eq!((s.warmup_steps, s.total_steps), (10, 30));
        check(s, 0, 0.01);
        check(s, 9, 0.1);
        check(s, 10, 0.1);
        check(s, 20, 0.05);
        check(s, 30, 0.0);
    }

    #[test]
    fn poly_and_constant() {
        let poly = LrSchedule::new(1.0, Schedule::Poly, 0.0, 10, 1);
        check(poly, 0, 1.0);
        check(poly, 5, 0.25);
        let constant = LrSchedule::new(0.3, Schedule::Constant, 0.0, 10, 1);
        check(constant, 7, 0.3);
    }
}
