//! The fuzz targets' entry points (`rampart_node::fuzzing`, driven by
//! libFuzzer in `fuzz/`) over a fixed set of generated inputs, on stable
//! Rust, so that CI runs them on every change: none may panic.

use rampart_node::fuzzing::{self, MAX_FRAME};

/// xorshift64*: a fixed-seed stream of pseudo-random bytes.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn frames_never_panic() {
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15);
    for i in 0..3000 {
        let len = (rng.next() % 400) as usize;
        let mut data = rng.take(len);
        // Some inputs start with a plausible length prefix, so the codec
        // hands a frame to the decoder instead of refusing it.
        if i % 2 == 0 && data.len() >= 4 {
            let frame = (data.len() as u32 - 4).min(MAX_FRAME as u32);
            data[..4].copy_from_slice(&frame.to_le_bytes());
            if data.len() > 4 {
                data[4] = rampart_node::WIRE_VERSION;
            }
        }
        fuzzing::frames(&data);
    }
    // An oversized length prefix is refused before anything is allocated.
    fuzzing::frames(&u32::MAX.to_le_bytes());
}

#[test]
fn mutated_messages_never_panic() {
    let mut rng = Bytes(0x5851_f42d_4c95_7f2d);
    for which in 0..=255u8 {
        fuzzing::mutated(&[which]);
        for _ in 0..8 {
            let mut data = vec![which];
            let n = (rng.next() % 9) as usize;
            data.extend(rng.take(n));
            fuzzing::mutated(&data);
        }
    }
}
