//! Failure logging that says what changed, not every retry: [`LogRate`] logs the first
//! failure of a run of failures, then at most one reminder per interval (default 60 s) with
//! how many failures it kept quiet since the last line, and `recovered` (INFO) at the first
//! success after failures. The failures it keeps quiet go to DEBUG, so
//! `RUST_LOG=hissaback_topics::lograte=debug` still shows each one.
//!
//! A broker or store outage makes every retry loop fail several times a second; logged one
//! line per attempt, the outage would be hundreds of ERROR lines a minute that hide the
//! moment it began and ended.
//!
//! Cheap on the success path: one atomic load when nothing failed. Shared by reference
//! (`&self`, `Send + Sync`): put one in an `Arc` for loops on several tasks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How loud the first failure and the reminders are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loudness {
    Warn,
    Error,
}

/// What a failure came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The first failure after a success (or ever): logged.
    First,
    /// A failure within the interval of the last line: not logged (DEBUG only).
    Suppressed,
    /// A failure an interval or more after the last line: logged with the failures kept
    /// quiet since that line and how long the run of failures has lasted.
    Reminder { suppressed: u64, failing_for: Duration },
}

/// The end of a run of failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Failures in the run, logged or not.
    pub failures: u64,
    pub failing_for: Duration,
}

#[derive(Debug, Default)]
struct Run {
    since: Option<Instant>,
    last_line: Option<Instant>,
    failures: u64,
    suppressed: u64,
}

/// A rate-limited failure logger for one retry loop (see the module documentation).
#[derive(Debug)]
pub struct LogRate {
    subject: String,
    interval: Duration,
    loudness: Loudness,
    failing: AtomicBool,
    run: Mutex<Run>,
}

/// Reminders of a run of failures come at most this often.
pub const REMINDER_EVERY: Duration = Duration::from_secs(60);

impl LogRate {
    /// A logger whose lines name `subject` (e.g. `consumer ledger`, `usage flush`), ERROR loud.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            interval: REMINDER_EVERY,
            loudness: Loudness::Error,
            failing: AtomicBool::new(false),
            run: Mutex::new(Run::default()),
        }
    }

    /// The first failure and the reminders at WARN rather than ERROR.
    pub fn warn(mut self) -> Self {
        self.loudness = Loudness::Warn;
        self
    }

    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Whether the last outcome was a failure.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    fn run(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a failure at `now` and says whether to log it; logs nothing itself.
    pub fn failure_at(&self, now: Instant) -> Failure {
        let mut run = self.run();
        self.failing.store(true, Ordering::Relaxed);
        run.failures += 1;
        let (Some(since), Some(last)) = (run.since, run.last_line) else {
            *run = Run { since: Some(now), last_line: Some(now), failures: 1, suppressed: 0 };
            return Failure::First;
        };
        if now.saturating_duration_since(last) >= self.interval {
            let suppressed = std::mem::take(&mut run.suppressed);
            run.last_line = Some(now);
            Failure::Reminder { suppressed, failing_for: now.saturating_duration_since(since) }
        } else {
            run.suppressed += 1;
            Failure::Suppressed
        }
    }

    /// Counts a success at `now`: the end of a run of failures, if there was one.
    pub fn success_at(&self, now: Instant) -> Option<Recovery> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        let mut run = self.run();
        self.failing.store(false, Ordering::Relaxed);
        let ended = std::mem::take(&mut *run);
        let since = ended.since?;
        Some(Recovery { failures: ended.failures, failing_for: now.saturating_duration_since(since) })
    }

    /// Counts a failure now and logs it if it is the first of a run or a reminder is due.
    pub fn failure(&self, error: &dyn std::fmt::Display) -> Failure {
        let verdict = self.failure_at(Instant::now());
        let subject = self.subject.as_str();
        match (verdict, self.loudness) {
            (Failure::First, Loudness::Error) => tracing::error!(subject, error = %error, "{subject}: failing (repeats are logged once a minute until it recovers)"),
            (Failure::First, Loudness::Warn) => tracing::warn!(subject, error = %error, "{subject}: failing (repeats are logged once a minute until it recovers)"),
            (Failure::Reminder { suppressed, failing_for }, loudness) => {
                let failing_for_s = failing_for.as_secs();
                match loudness {
                    Loudness::Error => tracing::error!(subject, error = %error, suppressed, failing_for_s, "{subject}: still failing"),
                    Loudness::Warn => tracing::warn!(subject, error = %error, suppressed, failing_for_s, "{subject}: still failing"),
                }
            }
            (Failure::Suppressed, _) => tracing::debug!(subject, error = %error, "{subject}: failed again"),
        }
        verdict
    }

    /// Counts a success now and logs `recovered` (INFO) if it ends a run of failures.
    pub fn success(&self) -> Option<Recovery> {
        let recovery = self.success_at(Instant::now())?;
        let subject = self.subject.as_str();
        tracing::info!(subject, failures = recovery.failures, failing_for_s = recovery.failing_for.as_secs(), "{subject}: recovered");
        Some(recovery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_failure_then_quiet_then_a_reminder_with_the_count_then_recovery() {
        let log = LogRate::new("test").with_interval(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(log.success_at(t0), None, "a success with no failure before is not a recovery");
        assert_eq!(log.failure_at(t0), Failure::First);
        assert!(log.is_failing());
        for s in 1..=10 {
            assert_eq!(log.failure_at(t0 + Duration::from_secs(s * 5)), Failure::Suppressed);
        }
        assert_eq!(
            log.failure_at(t0 + Duration::from_secs(60)),
            Failure::Reminder { suppressed: 10, failing_for: Duration::from_secs(60) }
        );
        // The next reminder counts from the last line, not from the first failure.
        assert_eq!(log.failure_at(t0 + Duration::from_secs(61)), Failure::Suppressed);
        assert_eq!(log.failure_at(t0 + Duration::from_secs(119)), Failure::Suppressed);
        assert_eq!(
            log.failure_at(t0 + Duration::from_secs(120)),
            Failure::Reminder { suppressed: 2, failing_for: Duration::from_secs(120) }
        );
        assert_eq!(
            log.success_at(t0 + Duration::from_secs(125)),
            Some(Recovery { failures: 15, failing_for: Duration::from_secs(125) })
        );
        assert!(!log.is_failing());
        assert_eq!(log.success_at(t0 + Duration::from_secs(126)), None, "recovered once");
        // A new run starts with a logged failure again.
        assert_eq!(log.failure_at(t0 + Duration::from_secs(127)), Failure::First);
    }

    /// Records the level and message of every event.
    struct Lines(Arc<Mutex<Vec<(tracing::Level, String)>>>);

    struct Message<'a>(&'a mut String);

    impl tracing::field::Visit for Message<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            use std::fmt::Write;
            if field.name() == "message" {
                let _ = write!(self.0, "{value:?}");
            } else {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
    }

    impl tracing::Subscriber for Lines {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            self.0.lock().unwrap().push((*event.metadata().level(), text));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn an_outage_is_one_error_line_and_one_recovery_line() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(Lines(lines.clone()), || {
            let log = LogRate::new("consumer ledger");
            for _ in 0..640 {
                log.failure(&"broker down");
            }
            log.success();
            log.success();
        });
        let lines = lines.lock().unwrap();
        let loud: Vec<_> = lines.iter().filter(|(l, _)| *l != tracing::Level::DEBUG).collect();
        assert_eq!(loud.len(), 2, "{loud:?}");
        assert_eq!(loud[0].0, tracing::Level::ERROR);
        assert!(loud[0].1.contains("consumer ledger: failing") && loud[0].1.contains("broker down"), "{}", loud[0].1);
        assert_eq!(loud[1].0, tracing::Level::INFO);
        assert!(loud[1].1.contains("recovered") && loud[1].1.contains("failures=640"), "{}", loud[1].1);
        assert_eq!(lines.iter().filter(|(l, _)| *l == tracing::Level::DEBUG).count(), 639);
    }

    #[test]
    fn a_due_reminder_is_logged_with_the_suppressed_count_at_the_chosen_level() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(Lines(lines.clone()), || {
            let log = LogRate::new("usage flush").warn().with_interval(Duration::ZERO);
            log.failure(&"store down");
            // An interval of zero: every later failure is a reminder, of none suppressed.
            assert!(matches!(log.failure(&"store down"), Failure::Reminder { suppressed: 0, .. }));
        });
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|(l, _)| *l == tracing::Level::WARN));
        assert!(lines[1].1.contains("still failing") && lines[1].1.contains("suppressed=0"), "{}", lines[1].1);
    }
}
