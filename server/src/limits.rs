//! Abuse limits: concurrent streaming connections (in total and per token
//! subject) with RAII guards, and a token bucket for client frames.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;

/// Connection counters.
#[derive(Debug)]
pub struct Limits {
    total: AtomicUsize,
    per_subject: DashMap<String, usize>,
    max_total: usize,
    max_per_subject: usize,
}

/// Holds one connection slot until dropped.
#[derive(Debug)]
pub struct ConnGuard {
    limits: Arc<Limits>,
    subject: String,
}

impl Limits {
    /// Limits of `max_total` connections and `max_per_subject` per token subject.
    pub fn new(max_total: usize, max_per_subject: usize) -> Self {
        Limits {
            total: AtomicUsize::new(0),
            per_subject: DashMap::new(),
            max_total,
            max_per_subject,
        }
    }

    /// Takes a slot for `subject`, or says which limit is reached.
    pub fn acquire(self: &Arc<Self>, subject: &str) -> Result<ConnGuard, &'static str> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("too many connections");
        }
        let mut n = self.per_subject.entry(subject.to_string()).or_insert(0);
        if *n >= self.max_per_subject {
            drop(n);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("too many connections for this token");
        }
        *n += 1;
        Ok(ConnGuard {
            limits: self.clone(),
            subject: subject.to_string(),
        })
    }

    /// Connections held now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
        let remove = match self.limits.per_subject.get_mut(&self.subject) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if remove {
            self.limits
                .per_subject
                .remove_if(&self.subject, |_, n| *n == 0);
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        Bucket {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: Instant::now(),
        }
    }

    /// Takes one token at `now`; false when empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_are_enforced_and_released() {
        let l = Arc::new(Limits::new(3, 2));
        let a = l.acquire("a").expect("1");
        let _b = l.acquire("a").expect("2");
        assert!(l.acquire("a").is_err());
        let _c = l.acquire("b").expect("3");
        assert!(l.acquire("c").is_err());
        drop(a);
        assert!(l.acquire("a").is_ok());
    }

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, 2);
        assert!(b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(150)));
    }
}
