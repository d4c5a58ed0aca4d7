//! Classification metrics: top-1/top-5 counts from logits, and running averages.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Sums over the batches of one pass, turned into averages at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub samples: u64,
    pub loss_sum: f64,
    pub top1: u64,
    pub top5: u64,
}

/// Averages over one pass (an epoch of training, or an evaluation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub samples: u64,
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
}

impl Tally {
    /// Adds a batch: `loss` is the batch's mean loss, `logits` are `[B, classes]`.
    pub fn add(&mut self, loss: f64, logits: &Tensor, labels: &Tensor) {
        let batch = labels.size()[0] as u64;
        let (top1, top5) = correct_top1_top5(logits, labels);
        self.samples += batch;
        self.loss_sum += loss * batch as f64;
        self.top1 += top1;
        self.top5 += top5;
    }

    pub fn summary(&self) -> Summary {
        let n = self.samples.max(1) as f64;
        Summary {
            samples: self.samples,
            loss: self.loss_sum / n,
            top1: self.top1 as f64 / n,
            top5: self.top5 as f64 / n,
        }
    }
}

/// How many samples have their label as the best class, and among the best five
/// (or among all classes when there are fewer than five).
pub fn correct_top1_top5(logits: &Tensor, labels: &Tensor) -> (u64, u64) {
    tch::no_grad(|| {
        let classes = logits.size()[1];
        let k = classes.min(5);
        let (_, best) = logits.topk(k, 1, true, true);
        let hits = best.eq_tensor(&labels.unsqueeze(1));
        let top1 = hits.narrow(1, 0, 1).sum(tch::Kind::Int64).int64_value(&[]);
        let top5 = hits.sum(tch::Kind::Int64).int64_value(&[]);
        (top1 as u64, top5 as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_and_top5_count_hits() {
        // Three samples, six classes. Sample 0: label is best. Sample 1: label is 3rd.
        // Sample 2: label is last.
        let logits = Tensor::from_slice(&[
            9.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, //
            1.0, 9.0, 8.0, 7.0, 0.0, 0.0, //
            5.0, 4.0, 3.0, 2.0, 1.0, 0.0,
        ])
        .view([3, 6]);
        let labels = Tensor::from_slice(&[0i64, 3, 5]);
        assert_eq!(correct_top1_top5(&logits, &labels), (1, 2));
        let mut tally = Tally::default();
        tally.add(0.5, &logits, &labels);
        tally.add(1.5, &logits, &labels);
        let s = tally.summary();
        assert_eq!(s.samples, 6);
        assert!((s.loss - 1.0).abs() < 1e-12);
        assert!((s.top1 - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.top5 - 2.0 / 3.0).abs() < 1e-12);
    }
}
