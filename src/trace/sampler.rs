//! The head sampler: is this request's trace recorded?
//!
//! Parent-based, with `tracing.sample_ratio` applied on top:
//!
//! | the client's `traceparent` | recorded when |
//! | --- | --- |
//! | none (or invalid: a new trace) | the trace id passes the ratio |
//! | sampled flag set | the trace id passes the ratio |
//! | sampled flag clear | never |
//!
//! So the client's flag can turn recording off, never on past the ratio.
//! A caller that did not record is followed (its trace would have a hole
//! where its own spans are; OTel's default `parentbased_*` samplers do the
//! same). A caller that did record is not obeyed blindly: the spec calls
//! the flags "recommendations given by the caller rather than strict
//! rules", and an untrusted client (or a browser SDK that samples
//! everything) must not be able to raise authgate's export volume past
//! what the operator set. With the default ratio of 1.0 this is plain
//! parent-based sampling.
//!
//! The ratio test reads the trace id, not a coin: the right-most 7 bytes
//! (random in any trace id that follows the W3C advice, and in every one
//! authgate makes) compared with a threshold, as OpenTelemetry's
//! consistent probability sampling does: sampled when `randomness >=
//! (1 - ratio) * 2^56`. Every participant that samples this way on the
//! same trace id agrees, and one with a smaller ratio records a subset of
//! the traces one with a larger ratio records.

use super::context::{TraceFlags, TraceId};

/// 2^56: the range of a trace id's randomness.
const RANGE: u64 = 1 << 56;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// Trace ids whose randomness is at least this are sampled; `RANGE`
    /// samples none, 0 samples all.
    threshold: u64,
}

impl Sampler {
    /// A sampler for `ratio` (clamped to `0.0..=1.0`; the config refuses
    /// anything else before it gets here).
    pub fn new(ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        // `ratio * 2^56` scales by a power of two: exact up to f64's 53 bits.
        let admitted = (ratio * RANGE as f64).round() as u64;
        Self {
            threshold: RANGE - admitted.min(RANGE),
        }
    }

    /// Is a trace with this id recorded, given the client's flags (`None`:
    /// the request had no valid `traceparent`)?
    pub fn sample(&self, parent: Option<TraceFlags>, trace_id: &TraceId) -> bool {
        parent.map_or(true, TraceFlags::sampled) && trace_id.randomness() >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(randomness: u64) -> TraceId {
        let mut b = [0xabu8; 16];
        b[8..].copy_from_slice(&randomness.to_be_bytes());
        TraceId(b)
    }

    const SAMPLED: Option<TraceFlags> = Some(TraceFlags::new(TraceFlags::SAMPLED));
    const UNSAMPLED: Option<TraceFlags> = Some(TraceFlags::new(0));

    #[test]
    fn parent_based() {
        let all = Sampler::new(1.0);
        let none = Sampler::new(0.0);
        let half = Sampler::new(0.5);
        let low = id(0);
        let high = id(RANGE - 1);
        // (sampler, parent flags, randomness, recorded)
        let table = [
            (all, None, low, true),
            (all, SAMPLED, low, true),
            (all, UNSAMPLED, high, false),
            (none, None, high, false),
            (none, SAMPLED, high, false),
            (half, None, id(RANGE / 2), true),
            (half, None, id(RANGE / 2 - 1), false),
            (half, SAMPLED, id(RANGE / 2), true),
            (half, SAMPLED, id(RANGE / 2 - 1), false),
            (half, UNSAMPLED, high, false),
        ];
        for (i, (s, parent, trace, want)) in table.into_iter().enumerate() {
            assert_eq!(s.sample(parent, &trace), want, "row {i}");
        }
        // The random flag has no say.
        let random = Some(TraceFlags::new(TraceFlags::RANDOM));
        assert!(!all.sample(random, &low));
    }

    #[test]
    fn only_the_right_most_seven_bytes_count() {
        let s = Sampler::new(0.5);
        let mut a = id(RANGE / 2);
        a.0[8] = 0xff; // the eighth byte from the right
        assert!(s.sample(None, &a));
        a.0[8] = 0x00;
        assert!(s.sample(None, &a));
        let mut b = id(0);
        b.0[..9].copy_from_slice(&[0xff; 9]);
        assert!(!s.sample(None, &b));
    }

    #[test]
    fn out_of_range_ratios_clamp() {
        assert_eq!(Sampler::new(2.0), Sampler::new(1.0));
        assert_eq!(Sampler::new(-1.0), Sampler::new(0.0));
        assert_eq!(Sampler::new(f64::NAN), Sampler::new(0.0));
    }

    #[test]
    fn the_share_sampled_is_the_ratio() {
        // 100,000 random trace ids at 1%: the count is binomial, mean
        // 1,000, sigma ~31.5; the bounds are 5 sigma.
        let s = Sampler::new(0.01);
        let n = (0..100_000)
            .filter(|_| s.sample(None, &crate::trace::rng::trace_id()))
            .count();
        assert!((843..=1157).contains(&n), "{n}");
    }

    proptest! {
        /// For ratios `n / 2^20` the threshold is exact: a trace is sampled
        /// exactly when `randomness + n * 2^36 >= 2^56`, in integers.
        #[test]
        fn ratio_test_is_exact_for_dyadic_ratios(n in 0u64..=(1 << 20), r in 0u64..RANGE) {
            let s = Sampler::new(n as f64 / (1u64 << 20) as f64);
            let reference = u128::from(r) + (u128::from(n) << 36) >= u128::from(RANGE);
            prop_assert_eq!(s.sample(None, &id(r)), reference);
        }

        /// A smaller ratio samples a subset of what a larger one samples.
        #[test]
        fn smaller_ratios_sample_subsets(a in 0.0f64..=1.0, b in 0.0f64..=1.0, r in 0u64..RANGE) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if Sampler::new(lo).sample(None, &id(r)) {
                prop_assert!(Sampler::new(hi).sample(None, &id(r)));
            }
        }
    }
}
