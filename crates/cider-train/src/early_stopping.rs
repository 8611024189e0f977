//! Early stopping with patience (docs/method.md §6.3), driven by the selection metric of
//! every epoch (§6.4).

use serde::{Deserialize, Serialize};

/// Early stopping with patience (docs/method.md §6.3): the counter starts at `patience`, is reset to
/// `patience` when the metric strictly improves on the best so far, and is decremented
/// otherwise; training stops when it reaches 0. A NaN metric never improves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// Epochs left before stopping.
    pub left: usize,
    /// Best metric so far.
    pub best: Option<f64>,
    /// Epoch of `best`.
    pub best_epoch: Option<usize>,
}

impl EarlyStopping {
    /// A fresh counter.
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            left: patience,
            best: None,
            best_epoch: None,
        }
    }

    /// Records the metric of `epoch`; returns whether it strictly improved on the best.
    pub fn update(&mut self, epoch: usize, metric: f64) -> bool {
        let improved = !metric.is_nan() && self.best.is_none_or(|best| metric > best);
        if improved {
            self.best = Some(metric);
            self.best_epoch = Some(epoch);
            self.left = self.patience;
        } else {
            self.left = self.left.saturating_sub(1);
        }
        improved
    }

    /// True once the patience is used up.
    pub fn should_stop(&self) -> bool {
        self.left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_follows_a_scripted_metric_sequence() {
        // Patience 2: strict improvements at 1 and 2; 0.6 again is no improvement.
        let mut stop = EarlyStopping::new(2);
        let verdicts: Vec<(bool, usize)> = [0.5, 0.6, 0.6, 0.55]
            .iter()
            .enumerate()
            .map(|(i, &m)| (stop.update(i + 1, m), stop.left))
            .collect();
        assert_eq!(verdicts, [(true, 2), (true, 2), (false, 1), (false, 0)]);
        assert!(stop.should_stop());
        assert_eq!((stop.best, stop.best_epoch), (Some(0.6), Some(2)));

        // Patience 3: an improvement at epoch 4 resets the counter; NaN never improves.
        let mut stop = EarlyStopping::new(3);
        let mut stopped_after = None;
        for (i, m) in [0.5, 0.4, 0.45, 0.7, f64::NAN, 0.65, 0.7, 0.9]
            .into_iter()
            .enumerate()
        {
            stop.update(i + 1, m);
            if stop.should_stop() {
                stopped_after = Some(i + 1);
                break;
            }
        }
        assert_eq!(stopped_after, Some(7));
        assert_eq!((stop.best, stop.best_epoch), (Some(0.7), Some(4)));
    }
}
