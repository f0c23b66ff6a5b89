//! A whole execution: the first line is the input, the rest the definition. Any valid
//! definition runs to a terminal status under virtual time with no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (input, def) = text.split_once('\n').unwrap_or(("{}", text));
    if lightbox::asl::model::Definition::parse_str(def).is_err() || serde_json::from_str::<serde_json::Value>(input).is_err() {
        return;
    }
    let _ = lightbox::engine::ephemeral::run(def, input, Default::default());
});
