//! Order statistics for benches: medians and percentiles of samples.

/// The `p` quantile (0.0 ..= 1.0) of `samples`, nearest rank: the sorted sample at
/// `round((n - 1) · p)`. `None` when there are no samples.
pub fn percentile<T: Copy + PartialOrd>(samples: &[T], p: f64) -> Option<T> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((s.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    Some(s[i])
}

/// The median of `samples` (the upper one of an even count: the sorted sample at `n / 2`).
/// `None` when there are no samples.
pub fn median<T: Copy + PartialOrd>(samples: &[T]) -> Option<T> {
    percentile(samples, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        assert_eq!(median::<f64>(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4, 1, 3, 2]), Some(3));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 0.1), Some(1));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 0.9), Some(5));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 0.0), Some(1));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 1.0), Some(5));
    }
}
