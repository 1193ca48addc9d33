//! Background work at a lower CPU priority than the HTTP workers.
//!
//! The system arbiter runs the stream consumers, the usage and audit recorders, the sweeps
//! and webhook dispatch; the HTTP workers run on threads of their own. On a saturated core
//! the kernel shares time equally between runnable threads of the same priority, so a
//! once-a-second audit flush or a ledger batch would stall every request behind it. With the
//! background threads niced (`server.background_nice`, Linux), requests go first and the
//! background work takes the idle time: it lags under overload (consumer lag, a later
//! flush) instead of the requests.

/// Sets the nice value of the calling thread to `nice` (at most 19) unless it is already
/// that low (Linux: niceness is per thread, and threads started by it inherit it). 0 does
/// nothing; failures are logged, never fatal.
pub fn lower_current_thread(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let tid = Some(rustix::thread::gettid());
        let nice = nice.min(19);
        if current_thread_nice() >= nice {
            return;
        }
        if let Err(e) = rustix::process::setpriority_process(tid, nice) {
            tracing::warn!(nice, error = %e, "cannot lower the background threads' priority");
        }
    }
}

/// The nice value of the calling thread (Linux; 0 elsewhere).
pub fn current_thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_and_its_children_are_lowered() {
        let before = current_thread_nice();
        let (lowered, child, other) = std::thread::scope(|s| {
            let niced = s.spawn(|| {
                lower_current_thread(7);
                let child = std::thread::spawn(current_thread_nice).join().unwrap();
                (current_thread_nice(), child)
            });
            let other = s.spawn(current_thread_nice);
            let (lowered, child) = niced.join().unwrap();
            (lowered, child, other.join().unwrap())
        });
        assert_eq!((lowered, child), (before.max(7), before.max(7)));
        assert_eq!(other, before);
        assert_eq!(current_thread_nice(), before);
    }
}
