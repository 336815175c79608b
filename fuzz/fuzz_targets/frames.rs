//! Raw bytes as a peer's stream of length-prefixed frames: codec, decode,
//! validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_node::fuzzing::frames(data));
