//! Retry backoff: how long a leased job that failed (or whose lease ran out) waits
//! before it is ready again, as a queue's `/settings/NAME` or the server's `[retry]`
//! default says.
//!
//! The policy is kept in whole milliseconds and millionths so that settings, log
//! records and snapshots compare exactly. The delay, jitter included, is worked out
//! once, by the queue's actor when it makes the change; the change records the due
//! time it came to, so replaying the log never rolls the dice again.

use std::hash::{BuildHasher, Hasher};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

/// Longest delay or cap a policy may name, in seconds (ten years, as `delay`).
pub const MAX_BACKOFF_SECS: f64 = 315_360_000.0;

/// Largest exponential `factor`.
pub const MAX_FACTOR: f64 = 100.0;

const MILLION: f64 = 1_000_000.0;

/// A retry backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Backoff {
    /// Ready again at once (the behaviour before backoff existed).
    #[default]
    None,
    /// Always the same delay.
    Fixed { delay_ms: u64 },
    /// `base × factor^(attempt − 1)`, at most `max`, less up to `jitter` of it at
    /// random.
    Exponential {
        base_ms: u64,
        /// The factor in millionths (2.0 is 2,000,000).
        factor_ppm: u64,
        max_ms: u64,
        /// The jitter fraction in millionths (0 to 1,000,000).
        jitter_ppm: u32,
    },
}

impl Backoff {
    /// The delay before attempt `attempt + 1`, after `attempt` failed deliveries (1 for
    /// the first failure); `unit` is a random number in `[0, 1)` that only the jitter
    /// uses. `None`: no backoff, the job is ready at once.
    pub fn delay_ms(&self, attempt: u32, unit: f64) -> Option<u64> {
        match *self {
            Backoff::None => None,
            Backoff::Fixed { delay_ms } => Some(delay_ms),
            Backoff::Exponential {
                base_ms,
                factor_ppm,
                max_ms,
                jitter_ppm,
            } => {
                let factor = factor_ppm as f64 / MILLION;
                let exponent = attempt.saturating_sub(1).min(i32::MAX as u32) as i32;
                // Grows to infinity rather than overflowing; the cap brings it back.
                let full = (base_ms as f64 * factor.powi(exponent)).min(max_ms as f64);
                let jitter = f64::from(jitter_ppm) / MILLION;
                let unit = unit.clamp(0.0, 1.0);
                let delay = (full * (1.0 - jitter * unit)).ceil();
                Some((delay as u64).clamp(1, max_ms.max(1)))
            }
        }
    }

    /// The policy as `/settings/NAME` shows it.
    pub fn to_json(&self) -> Value {
        let secs = |ms: u64| ms as f64 / 1000.0;
        match *self {
            Backoff::None => json!({"kind": "none"}),
            Backoff::Fixed { delay_ms } => json!({"kind": "fixed", "delay_secs": secs(delay_ms)}),
            Backoff::Exponential {
                base_ms,
                factor_ppm,
                max_ms,
                jitter_ppm,
            } => json!({
                "kind": "exponential",
                "base_secs": secs(base_ms),
                "factor": factor_ppm as f64 / MILLION,
                "max_secs": secs(max_ms),
                "jitter": f64::from(jitter_ppm) / MILLION,
            }),
        }
    }

    /// Reads a policy as clients write it (`{"kind": "fixed", "delay_secs": 5}`),
    /// checking every value; the error says what is wrong.
    pub fn from_json(value: &Value) -> Result<Backoff, String> {
        let spec = Spec::deserialize(value).map_err(|e| format!("backoff: {e}"))?;
        spec.check()
    }
}

/// A policy as written in JSON or TOML, in seconds and fractions.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Spec {
    // Braces, so that unknown fields are refused here too.
    None {},
    Fixed {
        delay_secs: f64,
    },
    Exponential {
        base_secs: f64,
        #[serde(default = "two")]
        factor: f64,
        max_secs: f64,
        #[serde(default)]
        jitter: f64,
    },
}

fn two() -> f64 {
    2.0
}

/// `secs` (above 0, at most [`MAX_BACKOFF_SECS`]) in whole milliseconds, rounded up.
fn millis(secs: f64, what: &str) -> Result<u64, String> {
    if secs.is_finite() && secs > 0.0 && secs <= MAX_BACKOFF_SECS {
        Ok(((secs * 1000.0).ceil() as u64).max(1))
    } else {
        Err(format!(
            "backoff {what} must be a number of seconds above 0 and at most {MAX_BACKOFF_SECS}, not {secs}"
        ))
    }
}

impl Spec {
    fn check(self) -> Result<Backoff, String> {
        match self {
            Spec::None {} => Ok(Backoff::None),
            Spec::Fixed { delay_secs } => Ok(Backoff::Fixed {
                delay_ms: millis(delay_secs, "delay_secs")?,
            }),
            Spec::Exponential {
                base_secs,
                factor,
                max_secs,
                jitter,
            } => {
                let base_ms = millis(base_secs, "base_secs")?;
                let max_ms = millis(max_secs, "max_secs")?;
                if max_ms < base_ms {
                    return Err(format!(
                        "backoff max_secs ({max_secs}) must be at least base_secs ({base_secs})"
                    ));
                }
                if !(factor.is_finite() && (1.0..=MAX_FACTOR).contains(&factor)) {
                    return Err(format!(
                        "backoff factor must be a number from 1 to {MAX_FACTOR}, not {factor}"
                    ));
                }
                if !(jitter.is_finite() && (0.0..=1.0).contains(&jitter)) {
                    return Err(format!(
                        "backoff jitter must be a fraction from 0 to 1, not {jitter}"
                    ));
                }
                Ok(Backoff::Exponential {
                    base_ms,
                    factor_ppm: (factor * MILLION).round() as u64,
                    max_ms,
                    jitter_ppm: (jitter * MILLION).round() as u32,
                })
            }
        }
    }
}

/// Reads `[retry] backoff` from the config file, checked as `/settings/NAME` checks it.
pub fn deserialize_spec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Backoff, D::Error> {
    Spec::deserialize(deserializer)?
        .check()
        .map_err(serde::de::Error::custom)
}

/// Random numbers for jitter: not for secrets, only spread (splitmix64, seeded from
/// the process's hash keys).
#[derive(Debug)]
pub struct Dice(u64);

impl Default for Dice {
    fn default() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0);
        Dice(hasher.finish())
    }
}

impl Dice {
    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: Value) -> Result<Backoff, String> {
        Backoff::from_json(&value)
    }

    #[test]
    fn none_and_fixed() {
        assert_eq!(read(json!({"kind": "none"})), Ok(Backoff::None));
        assert_eq!(Backoff::None.delay_ms(3, 0.5), None);
        let fixed = read(json!({"kind": "fixed", "delay_secs": 0.25}));
        assert_eq!(fixed, Ok(Backoff::Fixed { delay_ms: 250 }));
        assert_eq!(Backoff::Fixed { delay_ms: 250 }.delay_ms(9, 0.9), Some(250));
    }

    #[test]
    fn exponential_grows_by_the_factor_up_to_the_cap() {
        let policy = read(json!({"kind": "exponential", "base_secs": 1, "max_secs": 10}));
        assert_eq!(
            policy,
            Ok(Backoff::Exponential {
                base_ms: 1000,
                factor_ppm: 2_000_000,
                max_ms: 10_000,
                jitter_ppm: 0
            })
        );
        let policy = policy.unwrap_or_default();
        let delays: Vec<_> = (1..=6).map(|n| policy.delay_ms(n, 0.7)).collect();
        assert_eq!(
            delays,
            [1000, 2000, 4000, 8000, 10_000, 10_000].map(Some).to_vec()
        );
        // Huge attempts neither overflow nor pass the cap.
        assert_eq!(policy.delay_ms(u32::MAX, 0.0), Some(10_000));
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let policy = read(json!({
            "kind": "exponential", "base_secs": 2, "factor": 3, "max_secs": 100, "jitter": 0.25
        }))
        .unwrap_or_default();
        let mut dice = Dice::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let unit = dice.unit();
            assert!((0.0..1.0).contains(&unit));
            let delay = policy.delay_ms(2, unit).unwrap_or(0);
            assert!((4500..=6000).contains(&delay), "{delay}");
            seen.insert(delay);
        }
        assert!(seen.len() > 100, "jitter spreads: {} values", seen.len());
        assert_eq!(policy.delay_ms(2, 0.0), Some(6000));
        // Capped first, then jittered: never above the cap.
        assert!(policy.delay_ms(10, 0.99).is_some_and(|d| d <= 100_000));
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        for (bad, says) in [
            (json!({"kind": "sometimes"}), "unknown variant"),
            (json!({"delay_secs": 1}), "kind"),
            (json!({"kind": "fixed"}), "delay_secs"),
            (json!({"kind": "fixed", "delay_secs": 0}), "above 0"),
            (json!({"kind": "fixed", "delay_secs": -1}), "above 0"),
            (json!({"kind": "fixed", "delay_secs": 4e8}), "at most"),
            (
                json!({"kind": "fixed", "delay_secs": 1, "x": 1}),
                "unknown field",
            ),
            (json!({"kind": "exponential", "base_secs": 1}), "max_secs"),
            (
                json!({"kind": "exponential", "base_secs": 5, "max_secs": 1}),
                "at least base_secs",
            ),
            (
                json!({"kind": "exponential", "base_secs": 1, "max_secs": 9, "factor": 0.5}),
                "factor",
            ),
            (
                json!({"kind": "exponential", "base_secs": 1, "max_secs": 9, "jitter": 1.5}),
                "jitter",
            ),
            (json!("fixed"), "backoff"),
        ] {
            let error = read(bad.clone()).err().unwrap_or_default();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn shown_as_written() {
        let written = json!({
            "kind": "exponential", "base_secs": 0.5, "factor": 1.5, "max_secs": 60.0, "jitter": 0.1
        });
        let policy = read(written.clone()).unwrap_or_default();
        assert_eq!(policy.to_json(), written);
        assert_eq!(read(policy.to_json()), Ok(policy));
    }
}
