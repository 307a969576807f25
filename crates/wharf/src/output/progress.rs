//! Progress on stderr while images move: a bar per image in flight and a
//! total with speed and ETA, drawn only on a terminal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_transfer::{Events, ImageReport};

pub struct Progress {
    multi: MultiProgress,
    total: ProgressBar,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Progress {
    pub fn new() -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(200));
        Progress {
            multi,
            total,
            bars: Mutex::new(HashMap::new()),
        }
    }

    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    pub fn finish(&self) {
        self.total.finish_and_clear();
    }
}

/// A line on stderr above the bars when they are drawn.
pub fn print_line(progress: Option<&Progress>, line: &str) {
    match progress {
        Some(p) => p.println(line),
        None => eprintln!("{line}"),
    }
}

impl Events for Progress {
    fn image_planned(&self, index: usize, source: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.total.inc_length(bytes);
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:40!} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(source.to_string());
        self.bars.lock().expect("bars").insert(index, bar);
    }

    fn bytes_sent(&self, index: usize, bytes: u64) {
        self.total.inc(bytes);
        if let Some(bar) = self.bars.lock().expect("bars").get(&index) {
            bar.inc(bytes);
        }
    }

    fn bytes_not_needed(&self, index: usize, bytes: u64) {
        // Shrinking the lengths, rather than advancing the positions, keeps
        // the speed and ETA about bytes that really move.
        shrink(&self.total, bytes);
        if let Some(bar) = self.bars.lock().expect("bars").get(&index) {
            shrink(bar, bytes);
        }
    }

    fn image_finished(&self, index: usize, report: &ImageReport) {
        if let Some(bar) = self.bars.lock().expect("bars").remove(&index) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let mark = if report.is_failed() {
            "failed"
        } else {
            report.status.as_str()
        };
        self.println(&format!("{mark:>10}  {}", report.source));
    }
}

fn shrink(bar: &ProgressBar, bytes: u64) {
    if let Some(length) = bar.length() {
        bar.set_length(length.saturating_sub(bytes));
    }
}
