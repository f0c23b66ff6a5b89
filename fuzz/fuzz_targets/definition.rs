//! Definition parsing and validation: any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lightbox::asl::model::Definition::parse_str(text);
    }
});
