//! Progress on stderr while images move: a bar per image in flight and a
//! total with speed and ETA, drawn only on a terminal; and what the
//! registry clients report (retries, redirects), above the bars on a
//! terminal, one line each otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_client::{NoReporter, RedirectEvent, Reporter, RetryEvent};
use wharf_transfer::{Events, ImageReport};

pub struct Progress {
    multi: MultiProgress,
    total: ProgressBar,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Progress {
    pub fn new() -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        // A spinner until the first size is known: a bar of 0 B/0 B would
        // look finished before anything started.
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template("{prefix:>8} {spinner} {msg}").expect("valid template"),
        );
        total.set_message("planning");
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
        if self.total.length() == Some(0) {
            self.total.set_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
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

impl Reporter for Progress {
    fn trying(&self, registry: &str, _url: &str) {
        if self.total.length() == Some(0) {
            self.total.set_message(format!("trying {registry}"));
        }
    }

    fn retrying(&self, event: &RetryEvent<'_>) {
        self.println(&retry_line(event));
    }
}

/// Where the clients report retries and redirects: above the progress bars
/// on a terminal, one line each on stderr otherwise, nowhere with --quiet.
pub fn client_reporter(progress: Option<&Arc<Progress>>, quiet: bool) -> Arc<dyn Reporter> {
    match (progress, quiet) {
        (_, true) => Arc::new(NoReporter),
        (Some(p), false) => p.clone(),
        (None, false) => Arc::new(LineReporter),
    }
}

/// Retries and redirects, one line each on stderr (no terminal to draw in).
struct LineReporter;

impl Reporter for LineReporter {
    fn retrying(&self, event: &RetryEvent<'_>) {
        eprintln!("{}", retry_line(event));
    }

    fn redirected(&self, event: &RedirectEvent<'_>) {
        eprintln!("{}", redirect_line(event));
    }
}

/// `retry: get manifest HOST: attempt 1/5 failed (cannot connect: …); next in 0.4s`
fn retry_line(e: &RetryEvent<'_>) -> String {
    let why = if e.from_retry_after {
        " as the registry asked"
    } else {
        ""
    };
    format!(
        "retry: {} {}: attempt {}/{} failed ({}); next in {:.1}s{why}",
        e.operation,
        e.registry,
        e.attempt,
        e.max_attempts,
        e.error,
        e.delay.as_secs_f64()
    )
}

/// `redirect: get blob HOST: 307 to http://other:9000`
fn redirect_line(e: &RedirectEvent<'_>) -> String {
    format!(
        "redirect: {} {}: {} to {}",
        e.operation,
        e.registry,
        e.status.as_u16(),
        e.to_origin
    )
}

fn shrink(bar: &ProgressBar, bytes: u64) {
    if let Some(length) = bar.length() {
        bar.set_length(length.saturating_sub(bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_client::RetryReason;

    #[test]
    fn retry_and_redirect_lines_say_what_where_and_when() {
        let event = RetryEvent {
            operation: "get manifest",
            registry: "registry.k8s.io",
            attempt: 2,
            max_attempts: 5,
            reason: RetryReason::Network,
            error: "cannot connect: Connection refused".into(),
            delay: Duration::from_millis(1500),
            from_retry_after: false,
        };
        assert_eq!(
            retry_line(&event),
            "retry: get manifest registry.k8s.io: attempt 2/5 failed \
             (cannot connect: Connection refused); next in 1.5s"
        );
        let asked = RetryEvent {
            from_retry_after: true,
            ..event
        };
        assert!(retry_line(&asked).ends_with("next in 1.5s as the registry asked"));
        let redirect = RedirectEvent {
            operation: "get blob",
            registry: "127.0.0.1:5000",
            status: http::StatusCode::TEMPORARY_REDIRECT,
            to_origin: "http://127.0.0.1:9000".into(),
        };
        assert_eq!(
            redirect_line(&redirect),
            "redirect: get blob 127.0.0.1:5000: 307 to http://127.0.0.1:9000"
        );
    }
}
