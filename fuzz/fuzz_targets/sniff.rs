//! The container sniffer sees the first bytes of every upload: it must never panic or read
//! past what it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = reel::upload::sniff::sniff(data);
});
