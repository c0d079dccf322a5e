//! Ids for new traces and spans: wyrand, one state per thread, each seeded
//! from the operating system when the thread first asks.
//!
//! Span and trace ids need to be unique and unpredictable enough that they
//! do not collide, not secret: a CSPRNG per span would cost a lock or a
//! system call on the request path for nothing. wyrand is a 64-bit counter
//! passed through one 128-bit multiply (a few nanoseconds), and a thread's
//! state is its own, so no two threads share a sequence and nothing is
//! locked. A trace id's 16 bytes are all random, so the W3C "random" flag
//! is set on traces the gateway starts and ratio sampling can read them.

use std::cell::Cell;

use super::context::{SpanId, TraceId};

const INCREMENT: u64 = 0xa076_1d64_78bd_642f;
const MIX: u64 = 0xe703_7ed1_a0b4_28db;

/// One wyrand step: advance `state`, return the next output.
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(INCREMENT);
    let t = u128::from(*state) * u128::from(*state ^ MIX);
    ((t >> 64) as u64) ^ (t as u64)
}

/// A seed from the operating system; if it cannot give one, the clock and
/// the thread's identity (ids then stay unique per thread, only weaker).
fn seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::thread::current().id().hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    h.finish()
}

thread_local! {
    static STATE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The next 64 random bits of this thread.
fn next_u64() -> u64 {
    STATE.with(|cell| {
        let mut s = cell.get().unwrap_or_else(seed);
        let out = wyrand(&mut s);
        cell.set(Some(s));
        out
    })
}

/// A new span id (never all zeros, which the spec forbids).
pub fn span_id() -> SpanId {
    loop {
        let v = next_u64();
        if v != 0 {
            return SpanId(v.to_be_bytes());
        }
    }
}

/// A new trace id, all 16 bytes random (never all zeros).
pub fn trace_id() -> TraceId {
    loop {
        let (hi, lo) = (next_u64(), next_u64());
        if hi | lo != 0 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&hi.to_be_bytes());
            b[8..].copy_from_slice(&lo.to_be_bytes());
            return TraceId(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wyrand_matches_the_reference_sequence() {
        // Computed apart from this code (Python, exact integers) from the
        // published algorithm.
        let mut s = 0;
        let got: Vec<u64> = (0..4).map(|_| wyrand(&mut s)).collect();
        assert_eq!(
            got,
            [
                0x111c_b3a7_8f59_a58e,
                0xceab_d938_ff4e_856d,
                0x61fb_5131_8f47_d2a4,
                0x78bd_03c4_9190_9760
            ]
        );
        let mut s = 0x0123_4567_89ab_cdef;
        let got: Vec<u64> = (0..3).map(|_| wyrand(&mut s)).collect();
        assert_eq!(
            got,
            [
                0x58b9_6221_7aaf_c627,
                0xd748_8e0f_880d_bd37,
                0xa175_b746_466e_ac63
            ]
        );
    }

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = span_id();
            assert_ne!(id.0, [0; 8]);
            assert!(seen.insert(id), "repeated span id");
        }
        let a = trace_id();
        assert_ne!(a, trace_id());
        assert_ne!(a.0, [0; 16]);
    }

    #[test]
    fn threads_do_not_share_a_sequence() {
        let ids = || (0..64).map(|_| span_id()).collect::<Vec<_>>();
        let a = std::thread::spawn(ids).join().unwrap();
        let b = std::thread::spawn(ids).join().unwrap();
        assert!(a.iter().all(|x| !b.contains(x)));
    }

    #[test]
    fn every_bit_varies() {
        // Each of the 64 bits is set in roughly half of 4,096 draws (a
        // stuck bit would be 0 or 4,096; the bound is > 10 sigma).
        let mut ones = [0u32; 64];
        for _ in 0..4096 {
            let v = next_u64();
            for (i, n) in ones.iter_mut().enumerate() {
                *n += ((v >> i) & 1) as u32;
            }
        }
        assert!(ones.iter().all(|n| (1700..2400).contains(n)), "{ones:?}");
    }
}
