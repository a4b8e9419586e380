//! Rate-limited log lines for refusals, with the time as an input (no clock read).

use std::collections::HashMap;
use std::time::Duration;

use turn_server_proto::types::Instant;

/// At most one log line per reason per second, with a count of what was left out.
#[derive(Default)]
pub(crate) struct LogLimiter {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimiter {
    /// A refusal caused by a client (bad or expired credentials, quotas, forbidden peers):
    /// info, at most once a second per reason.
    pub(crate) fn refused(
        &mut self,
        now: Instant,
        reason: &'static str,
        line: std::fmt::Arguments<'_>,
    ) {
        self.write(false, now, reason, line);
    }

    /// The server at a limit (state table, relay ports, allocations, TCP connections): an
    /// operator should look. Warn, at most once a second per reason.
    pub(crate) fn warn(
        &mut self,
        now: Instant,
        reason: &'static str,
        line: std::fmt::Arguments<'_>,
    ) {
        self.write(true, now, reason, line);
    }

    fn write(
        &mut self,
        warn: bool,
        now: Instant,
        reason: &'static str,
        line: std::fmt::Arguments<'_>,
    ) {
        let Some(more) = self.admit(now, reason) else {
            return;
        };
        let left_out = if more > 0 {
            format!(" (and {more} more like it in the last second)")
        } else {
            String::new()
        };
        if warn {
            tracing::warn!("{line}{left_out}");
        } else {
            tracing::info!("{line}{left_out}");
        }
    }

    /// `Some(lines left out since the last one)` when a line for `reason` may be written now.
    fn admit(&mut self, now: Instant, reason: &'static str) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((at, more)) if now.saturating_duration_since(*at) < Duration::from_secs(1) => {
                *more += 1;
                None
            }
            Some(entry) => {
                let more = entry.1;
                *entry = (now, 0);
                Some(more)
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_second_and_a_count_of_the_rest() {
        let mut log = LogLimiter::default();
        let t = |ms: i64| Instant::from_nanos(ms * 1_000_000);
        assert_eq!(log.admit(t(0), "a"), Some(0));
        assert_eq!(log.admit(t(10), "a"), None);
        assert_eq!(log.admit(t(20), "b"), Some(0));
        assert_eq!(log.admit(t(999), "a"), None);
        assert_eq!(log.admit(t(1000), "a"), Some(2));
        assert_eq!(log.admit(t(1500), "a"), None);
        assert_eq!(log.admit(t(2100), "a"), Some(1));
    }
}
