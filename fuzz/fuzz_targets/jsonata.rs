//! JSONata: evaluate any expression against a fixed `$states`. Bounded steps, depth and
//! sequence size: no panic, no hang, bounded memory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else { return };
    let _ = lightbox::asl::jsonata::check_syntax(expr);
    let states = serde_json::json!({"input": {"n": 9223372036854775807i64, "a": [1, 2, 3], "s": "text"}, "context": {}});
    let vars = serde_json::Map::new();
    let bindings = lightbox::asl::jsonata::Bindings { states: &states, variables: &vars };
    let mut seed = 1u64;
    let mut random = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        seed
    };
    let _ = lightbox::asl::jsonata::evaluate_at(expr, &bindings, &mut random, 0);
});
