//! Client-side pacing per app and per API.
//!
//! DingTalk counts calls per app per API in 1-second windows (20/s on the
//! standard edition). A bucket that allows bursts of N trips such a window:
//! N calls at the end of one second plus N at the start of the next land in
//! the same server window if clocks or latencies differ a little. So the
//! bucket holds a single token and refills every `(1 s + guard) / qps`: calls
//! are evenly spaced, any 1-second window sees at most `qps` of them, and the
//! `guard` (default 50 ms) absorbs arrival jitter. A full sync then runs at
//! `qps / (1 + guard)` ≈ 95 % of the limit and does not trip it.
//!
//! Uses `tokio::time`, so tests run on a paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Pacing settings for one API of one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls per second the server allows (DingTalk standard edition: 20).
    pub per_second: u32,
    /// Added to each second when spacing calls, to absorb latency jitter.
    pub guard: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 20,
            guard: Duration::from_millis(50),
        }
    }
}

impl RateLimit {
    /// The spacing between two calls. `per_second == 0` disables pacing.
    pub fn interval(&self) -> Duration {
        if self.per_second == 0 {
            return Duration::ZERO;
        }
        (Duration::from_secs(1) + self.guard) / self.per_second
    }
}

/// A single-token bucket: hands out evenly spaced send times.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    /// The earliest instant the next call may go.
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            interval: limit.interval(),
            next: Mutex::new(None),
        }
    }

    /// Reserves the next send slot and returns it (pure bookkeeping, no waiting).
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match *next {
            Some(n) if n > now => n,
            _ => now,
        };
        *next = Some(slot + self.interval);
        slot
    }

    /// Waits for the next send slot.
    pub async fn acquire(&self) {
        let slot = self.reserve(Instant::now());
        tokio::time::sleep_until(slot).await;
    }

    /// Pushes the next slot to at least `now + pause`: after a throttle error
    /// the whole API pauses for the server's window instead of hammering it.
    pub fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if next.is_none_or(|n| n < until) {
            *next = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limit(per_second: u32) -> RateLimit {
        RateLimit {
            per_second,
            guard: Duration::from_millis(50),
        }
    }

    /// No guard: whole-millisecond slots, which tokio's timer hits exactly.
    fn exact(per_second: u32) -> RateLimit {
        RateLimit {
            per_second,
            guard: Duration::ZERO,
        }
    }

    #[test]
    fn reserved_slots_are_spaced_by_the_guarded_interval() {
        let pacer = Pacer::new(limit(20));
        let now = Instant::now();
        let slots: Vec<Duration> = (0..3).map(|_| pacer.reserve(now) - now).collect();
        assert_eq!(
            slots,
            vec![
                Duration::ZERO,
                Duration::from_micros(52_500),
                Duration::from_micros(105_000)
            ]
        );
    }

    #[test]
    fn interval_spreads_the_limit_over_a_guarded_second() {
        assert_eq!(limit(20).interval(), Duration::from_micros(52_500));
        assert_eq!(limit(0).interval(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn sequential_calls_are_spaced_by_the_interval() {
        let pacer = Pacer::new(exact(20));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..5 {
            pacer.acquire().await;
            times.push(Instant::now() - start);
        }
        let expected: Vec<Duration> = (0..5).map(|i| Duration::from_millis(50) * i).collect();
        assert_eq!(times, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_exceed_the_limit_in_any_second() {
        let pacer = Arc::new(Pacer::new(exact(20)));
        let start = Instant::now();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let p = pacer.clone();
                tokio::spawn(async move {
                    p.acquire().await;
                    Instant::now() - start
                })
            })
            .collect();
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 20,
                "{in_window} calls in the second after {t:?}"
            );
        }
        // And the limiter is not idle: 100 calls take exactly 99 intervals.
        assert_eq!(times.last().copied(), Some(Duration::from_millis(50) * 99));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_delays_the_next_slot_by_the_window() {
        let pacer = Pacer::new(limit(20));
        pacer.acquire().await;
        let start = Instant::now();
        pacer.pause(Duration::from_secs(1));
        pacer.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_pacer_lets_the_first_call_go_at_once() {
        let pacer = Pacer::new(limit(20));
        pacer.acquire().await;
        tokio::time::advance(Duration::from_secs(5)).await;
        let start = Instant::now();
        pacer.acquire().await;
        assert_eq!(Instant::now(), start);
    }
}
