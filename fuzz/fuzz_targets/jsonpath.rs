//! JSONPath: parse any text, then select it from a fixed document. No panic, no hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = lightbox::asl::path::JsonPath::parse(text) {
        let doc = serde_json::json!({"a": [1, 2, {"b": "c"}], "n": 9223372036854775807i64, "s": "x", "o": {"p": null}});
        let _ = p.select(&doc);
        let _ = p.canonical();
    }
});
