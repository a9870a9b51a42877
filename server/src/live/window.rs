//! The rolling windows (1m, 5m, 1h, 24h) and the exact `[from, to)` interval
//! each covers at a given `now`. Short windows are second-aligned, long ones
//! minute-aligned; `to` is the end of the bucket holding `now`, so the
//! interval always contains `now` and its bounds are exact bucket edges.

use serde::Serialize;

/// A rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub enum Window {
    /// Last minute (1-second buckets).
    #[serde(rename = "1m")]
    M1,
    /// Last 5 minutes (1-second buckets).
    #[serde(rename = "5m")]
    M5,
    /// Last hour (1-minute buckets).
    #[serde(rename = "1h")]
    H1,
    /// Last 24 hours (1-minute buckets).
    #[serde(rename = "24h")]
    H24,
}

/// Bucket granularity of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// 1-second buckets.
    Second,
    /// 1-minute buckets.
    Minute,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 4] = [Window::M1, Window::M5, Window::H1, Window::H24];

    /// Its position in [`Window::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its name as used in the API (`1m`, `5m`, `1h`, `24h`).
    pub fn name(self) -> &'static str {
        match self {
            Window::M1 => "1m",
            Window::M5 => "5m",
            Window::H1 => "1h",
            Window::H24 => "24h",
        }
    }

    /// Parses a window name.
    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.name() == s)
    }

    /// The `window` request parameter: `5m` when absent; otherwise a window
    /// name, or the message saying which names there are (the name echoed cut
    /// to 20 characters).
    pub fn from_param(name: Option<&str>) -> Result<Window, String> {
        let name = name.unwrap_or("5m");
        Window::parse(name).ok_or_else(|| {
            format!(
                "unknown window {:?}; use 1m, 5m, 1h or 24h",
                name.chars().take(20).collect::<String>()
            )
        })
    }

    /// Length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Window::M1 => 60,
            Window::M5 => 300,
            Window::H1 => 3_600,
            Window::H24 => 86_400,
        }
    }

    /// Bucket granularity.
    pub fn granularity(self) -> Granularity {
        match self {
            Window::M1 | Window::M5 => Granularity::Second,
            Window::H1 | Window::H24 => Granularity::Minute,
        }
    }

    /// `[from, to)` in epoch seconds for `now_ms` (epoch milliseconds).
    pub fn bounds(self, now_ms: i64) -> (i64, i64) {
        let now_sec = now_ms.div_euclid(1000);
        let to = match self.granularity() {
            Granularity::Second => now_sec + 1,
            Granularity::Minute => now_sec.div_euclid(60) * 60 + 60,
        };
        (to - self.seconds(), to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_aligned_and_contain_now() {
        let now_ms = 1_700_000_123_456;
        for w in Window::ALL {
            let (from, to) = w.bounds(now_ms);
            assert_eq!(to - from, w.seconds());
            assert!(from * 1000 <= now_ms && now_ms < to * 1000);
            if w.granularity() == Granularity::Minute {
                assert_eq!(from % 60, 0);
            }
            assert_eq!(Window::parse(w.name()), Some(w));
        }
        assert_eq!(Window::parse("2m"), None);
    }
}
