//! Summary statistics of samples, and the comparison of two sets of samples
//! that every ratio row of the report shows: the ratio of medians with a
//! 95% bootstrap confidence interval, and whether the row is too noisy to
//! rank (see [`Comparison::noisy`]).

use serde::Serialize;

/// Bootstrap resamples per ratio.
pub const RESAMPLES: usize = 2_000;
/// Seed of the bootstrap's generator: the same samples give the same interval.
pub const SEED: u64 = 0x5EED_0F57_A7A5;

/// Median of `samples` (None when empty).
pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 50.0)
}

/// 95th percentile of `samples` (None when empty).
pub fn p95(samples: &[f64]) -> Option<f64> {
    percentile(samples, 95.0)
}

/// The `p`th percentile with linear interpolation between closest ranks.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(sorted_percentile(&v, p))
}

/// [`percentile`] of already sorted, finite, non-empty `v`.
fn sorted_percentile(v: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0) * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Count, median and p95 of one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
}

impl Summary {
    /// Summarises the finite values of `samples` (None when there are none).
    pub fn of(samples: &[f64]) -> Option<Self> {
        let n = samples.iter().filter(|x| x.is_finite()).count();
        Some(Self {
            n,
            median: median(samples)?,
            p95: p95(samples)?,
        })
    }

    /// Relative spread: `p95 / median - 1` (0 for a zero median).
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 {
            self.p95 / self.median - 1.0
        } else {
            0.0
        }
    }
}

/// A ratio of medians with its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatioCi {
    /// Median of the subject / median of the baseline.
    pub ratio: f64,
    /// 2.5th percentile of the bootstrapped ratios.
    pub lo: f64,
    /// 97.5th percentile of the bootstrapped ratios.
    pub hi: f64,
}

impl RatioCi {
    /// Whether the interval contains `x`.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// The median of one resample of `sorted` with replacement, drawn with
/// `rng` (fastrand's wyrand, seeded by the caller).
fn resample_median(rng: &mut fastrand::Rng, sorted: &[f64], buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend((0..sorted.len()).map(|_| sorted[rng.usize(..sorted.len())]));
    buf.sort_by(f64::total_cmp);
    sorted_percentile(buf, 50.0)
}

/// Ratio of the medians of `subject` and `baseline` with a percentile
/// bootstrap interval: `resamples` times, each side is resampled with
/// replacement independently and the ratio of the resampled medians kept;
/// the interval is the 2.5th to 97.5th percentile of those. Deterministic
/// for a given `seed`. None when a side has no finite sample or the
/// baseline median is not positive.
pub fn bootstrap_ratio(
    subject: &[f64],
    baseline: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<RatioCi> {
    let clean = |s: &[f64]| {
        let mut v: Vec<f64> = s.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (s, b) = (clean(subject), clean(baseline));
    if s.is_empty() || b.is_empty() {
        return None;
    }
    let base = sorted_percentile(&b, 50.0);
    if base <= 0.0 {
        return None;
    }
    let ratio = sorted_percentile(&s, 50.0) / base;
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut sb, mut bb) = (Vec::with_capacity(s.len()), Vec::with_capacity(b.len()));
    let mut ratios: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let num = resample_median(&mut rng, &s, &mut sb);
            let den = resample_median(&mut rng, &b, &mut bb);
            if den > 0.0 {
                num / den
            } else {
                f64::INFINITY
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some(RatioCi {
        ratio,
        lo: sorted_percentile(&ratios, 2.5),
        hi: sorted_percentile(&ratios, 97.5),
    })
}

/// A subject's samples against a baseline's: both summaries, the ratio of
/// medians with its interval, and the noise flag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// The driver (or whatever is compared).
    pub subject: Summary,
    /// What it is compared with (a volume write, containerd's snapshotter).
    pub baseline: Summary,
    /// Ratio of medians, subject / baseline, with its 95% interval.
    pub ratio: RatioCi,
    /// Set by [`is_noisy`]: the row is marked and not ranked.
    pub noisy: bool,
}

impl Comparison {
    /// Compares `subject` with `baseline` ([`RESAMPLES`] resamples, [`SEED`]);
    /// None when either has no sample.
    pub fn new(subject: &[f64], baseline: &[f64]) -> Option<Self> {
        let s = Summary::of(subject)?;
        let b = Summary::of(baseline)?;
        let ratio = bootstrap_ratio(subject, baseline, RESAMPLES, SEED)?;
        Some(Self {
            subject: s,
            baseline: b,
            ratio,
            noisy: is_noisy(&ratio, &b),
        })
    }
}

/// The flag rule, as the report states it: a ratio is noisy when its 95%
/// interval contains 1.0, or when the baseline's spread (p95 / median − 1)
/// is larger than the difference shown (|ratio − 1|), or when either side
/// has fewer than 2 samples (no interval to speak of).
pub fn is_noisy(ratio: &RatioCi, baseline: &Summary) -> bool {
    ratio.contains(1.0) || baseline.spread() > (ratio.ratio - 1.0).abs() || baseline.n < 2
}

/// The noise rule in words, for report headers.
pub const NOISE_RULE: &str = "A ratio is marked `≈ (noisy)` and left unranked when its 95% \
     confidence interval contains 1.0, or when the baseline's own spread (its p95 / median − 1) \
     is larger than the difference the ratio shows (|ratio − 1|), or when the baseline has fewer \
     than 2 samples.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let v: Vec<f64> = (0..=100).map(f64::from).collect();
        assert_eq!(p95(&v), Some(95.0));
        assert_eq!(p95(&[7.0]), Some(7.0));
    }

    /// `n` samples spread evenly around `centre` by ±`spread` (fraction).
    fn around(centre: f64, spread: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| centre * (1.0 + spread * (2.0 * i as f64 / (n - 1) as f64 - 1.0)))
            .collect()
    }

    #[test]
    fn bootstrap_is_deterministic_for_a_seed() {
        let (s, b) = (around(30.0, 0.3, 20), around(10.0, 0.2, 20));
        let a = bootstrap_ratio(&s, &b, RESAMPLES, 7).unwrap();
        assert_eq!(a, bootstrap_ratio(&s, &b, RESAMPLES, 7).unwrap());
        assert_ne!(a, bootstrap_ratio(&s, &b, RESAMPLES, 8).unwrap());
    }

    #[test]
    fn bootstrap_interval_contains_the_true_ratio() {
        let (s, b) = (around(30.0, 0.3, 21), around(10.0, 0.2, 21));
        let ci = bootstrap_ratio(&s, &b, RESAMPLES, SEED).unwrap();
        assert!((ci.ratio - 3.0).abs() < 1e-9, "{ci:?}");
        assert!(ci.contains(3.0), "{ci:?}");
        assert!(ci.lo < 3.0 && ci.hi > 3.0 && ci.hi - ci.lo < 1.5, "{ci:?}");
    }

    #[test]
    fn bootstrap_interval_is_a_point_for_identical_samples() {
        let ci = bootstrap_ratio(&[4.0; 10], &[2.0; 10], RESAMPLES, SEED).unwrap();
        assert_eq!((ci.ratio, ci.lo, ci.hi), (2.0, 2.0, 2.0));
    }

    #[test]
    fn bootstrap_needs_samples_and_a_positive_baseline() {
        assert_eq!(bootstrap_ratio(&[], &[1.0], 10, SEED), None);
        assert_eq!(bootstrap_ratio(&[1.0], &[0.0, 0.0], 10, SEED), None);
    }

    #[test]
    fn a_clear_difference_is_ranked() {
        let c = Comparison::new(&around(30.0, 0.1, 20), &around(10.0, 0.1, 20)).unwrap();
        assert!(!c.noisy, "{c:?}");
        assert_eq!((c.subject.n, c.baseline.n), (20, 20));
    }

    #[test]
    fn an_interval_across_one_is_noisy() {
        let c = Comparison::new(&around(10.5, 0.5, 20), &around(10.0, 0.5, 20)).unwrap();
        assert!(c.ratio.contains(1.0), "{c:?}");
        assert!(c.noisy);
    }

    #[test]
    fn a_baseline_spread_wider_than_the_difference_is_noisy() {
        let ratio = RatioCi {
            ratio: 1.2,
            lo: 1.1,
            hi: 1.3,
        };
        let tight = Summary {
            n: 20,
            median: 10.0,
            p95: 11.0,
        };
        let loose = Summary { p95: 13.0, ..tight };
        assert!(!is_noisy(&ratio, &tight));
        assert!(is_noisy(&ratio, &loose));
        assert!(is_noisy(&ratio, &Summary { n: 1, ..tight }));
    }
}
