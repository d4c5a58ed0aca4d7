//! Live progress bars for `scopctl watch` on a terminal: one per training
//! stage (epoch, step/total, loss, accuracy, samples/s, ETA), with the event
//! lines printed above them.

use std::collections::BTreeMap;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use scop_proto::v1 as pb;

use crate::format::{duration, percent};
use crate::records::stage_name;

/// The bars of one watch, drawn on stdout.
pub struct Bars {
    multi: MultiProgress,
    /// By stage number, so they stay in stage order.
    bars: BTreeMap<i32, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    pub fn new() -> Bars {
        let style =
            ProgressStyle::with_template("{prefix:>9.bold} [{bar:32.cyan/blue}] {pos:>6}/{len:<6} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: BTreeMap::new(),
            style,
        }
    }

    /// Prints a line above the bars.
    pub fn line(&self, text: &str) {
        if self.multi.println(text).is_err() {
            println!("{text}");
        }
    }

    fn bar(&mut self, stage: pb::Stage) -> &ProgressBar {
        let (multi, style) = (&self.multi, &self.style);
        self.bars.entry(stage as i32).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
            bar.set_prefix(stage_name(stage).unwrap_or("?").to_owned());
            bar
        })
    }

    /// A retried attempt starts its stage's bar over. (Bars appear with a
    /// stage's first progress, so decide and export, which report none, get none.)
    pub fn started(&mut self, started: &pb::StageStarted) {
        if let Some(bar) = self.bars.get(&started.stage).filter(|_| started.attempt > 1) {
            bar.reset();
            bar.set_message(format!("attempt {}: resuming from the last checkpoint", started.attempt));
        }
    }

    pub fn progress(&mut self, p: &pb::Progress) {
        let bar = self.bar(p.stage());
        bar.set_length(u64::from(p.epochs) * p.steps);
        bar.set_position(u64::from(p.epoch.saturating_sub(1)) * p.steps + p.step);
        bar.set_message(format!(
            "epoch {}/{} loss {:.4} acc {} {:.0} samples/s ETA {}",
            p.epoch,
            p.epochs,
            p.loss,
            percent(p.accuracy),
            p.samples_per_second,
            duration(p.eta_seconds)
        ));
    }

    pub fn finished(&mut self, finished: &pb::StageFinished) {
        if let Some(bar) = self.bars.get(&finished.stage) {
            if let Some(length) = bar.length() {
                bar.set_position(length);
            }
            bar.finish_with_message(format!("done in {}", duration(finished.seconds)));
        }
    }

    pub fn failed(&mut self, error: &pb::JobError) {
        if let Some(bar) = self.bars.get(&error.stage) {
            let what = if error.retrying { "failed, retrying" } else { "failed" };
            bar.abandon_with_message(format!("attempt {} {what}", error.attempt));
        }
    }

    /// Leaves every bar where it stopped.
    pub fn close(&mut self) {
        for bar in self.bars.values().filter(|b| !b.is_finished()) {
            bar.abandon();
        }
    }
}
