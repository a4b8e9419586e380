//! `switchboard_fuzzing::socketio`: see that crate's docs for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzzing::socketio(data));
