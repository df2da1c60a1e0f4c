//! Table cells shared by every section of the report: latencies, ratios
//! with their intervals and noise flag, ranks. Sections render their
//! comparison rows with [`comparison_cells`] under [`COMPARISON_HEADER`] and
//! rank them with [`ranks`], so every ratio follows one rule
//! ([`super::stats::NOISE_RULE`]).

use super::stats::{Comparison, Summary};

/// Columns [`comparison_cells`] fills, for a markdown table header.
pub const COMPARISON_HEADER: &str =
    "n | median | p95 | baseline n | baseline median | baseline p95 | ratio | 95% CI | rank";
/// The alignment row under [`COMPARISON_HEADER`].
pub const COMPARISON_ALIGN: &str = "---|---|---|---|---|---|---|---|---";

/// The cells of a comparison row under [`COMPARISON_HEADER`] (no outer
/// pipes); `value` formats a median or p95 (e.g. [`ms`]), `rank` comes from
/// [`ranks`].
pub fn comparison_cells(
    c: &Comparison,
    rank: Option<usize>,
    value: fn(Option<f64>) -> String,
) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        summary_cells(Some(&c.subject), value),
        summary_cells(Some(&c.baseline), value),
        ratio_text(c),
        ci_text(c),
        rank.map_or_else(|| "-".into(), |r| r.to_string()),
    )
}

/// `n | median | p95` of a summary, `0 | - | -` without one.
pub fn summary_cells(s: Option<&Summary>, value: fn(Option<f64>) -> String) -> String {
    match s {
        Some(s) => format!(
            "{} | {} | {}",
            s.n,
            value(Some(s.median)),
            value(Some(s.p95))
        ),
        None => "0 | - | -".into(),
    }
}

/// `0.89×`, or `≈ (noisy) 1.02×` for a row [`super::stats::is_noisy`] flags.
pub fn ratio_text(c: &Comparison) -> String {
    if c.noisy {
        format!("≈ (noisy) {}", ratio(Some(c.ratio.ratio)))
    } else {
        ratio(Some(c.ratio.ratio))
    }
}

/// The ratio's 95% interval, `0.81–0.95×`.
pub fn ci_text(c: &Comparison) -> String {
    format!("{:.2}–{:.2}×", c.ratio.lo, c.ratio.hi)
}

/// Rank of each comparison by ratio, lowest first (1-based); noisy rows
/// and missing ones get none and take no place.
pub fn ranks(comparisons: &[Option<Comparison>]) -> Vec<Option<usize>> {
    let mut ranked: Vec<(usize, f64)> = comparisons
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.filter(|c| !c.noisy).map(|c| (i, c.ratio.ratio)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = vec![None; comparisons.len()];
    for (place, (i, _)) in ranked.into_iter().enumerate() {
        out[i] = Some(place + 1);
    }
    out
}

/// Nanoseconds as milliseconds with sensible precision.
pub fn ms(ns: Option<f64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) => {
            let ms = ns / 1e6;
            if ms >= 100.0 {
                format!("{ms:.0}")
            } else if ms >= 1.0 {
                format!("{ms:.2}")
            } else {
                format!("{ms:.3}")
            }
        }
    }
}

/// `2.00×`, `-` without a ratio.
pub fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}×"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison(ratio: f64, noisy: bool) -> Option<Comparison> {
        let s = Summary {
            n: 20,
            median: ratio,
            p95: ratio,
        };
        Some(Comparison {
            subject: s,
            baseline: Summary {
                median: 1.0,
                p95: 1.0,
                ..s
            },
            ratio: super::super::stats::RatioCi {
                ratio,
                lo: ratio,
                hi: ratio,
            },
            noisy,
        })
    }

    #[test]
    fn ranks_skip_noisy_and_missing_rows() {
        let rows = [
            comparison(3.0, false),
            comparison(0.5, true),
            None,
            comparison(0.8, false),
        ];
        assert_eq!(ranks(&rows), vec![Some(2), None, None, Some(1)]);
    }

    #[test]
    fn comparison_cells_show_n_median_p95_ratio_and_interval() {
        let c = comparison(2.0, false).unwrap();
        assert_eq!(
            comparison_cells(&c, Some(1), ms),
            "20 | 0.000 | 0.000 | 20 | 0.000 | 0.000 | 2.00× | 2.00–2.00× | 1"
        );
        let noisy = comparison(1.1, true).unwrap();
        assert!(comparison_cells(&noisy, None, ms).ends_with("≈ (noisy) 1.10× | 1.10–1.10× | -"));
    }
}
