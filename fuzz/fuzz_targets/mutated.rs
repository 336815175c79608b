//! Valid signed messages with bytes flipped and cut: decode and validation
//! behind the signature check.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_node::fuzzing::mutated(data));
