//! Intrinsic functions (`States.*`): parse and evaluate any text. No panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lightbox::asl::intrinsics::{IntrinsicContext, evaluate};
use serde_json::Value;

struct Ctx(u64);

impl IntrinsicContext for Ctx {
    fn resolve_path(&self, path: &str) -> Result<Option<Value>, String> {
        let doc = serde_json::json!({"a": [1, 2, 3], "s": "a,b,c", "n": 9223372036854775807i64, "o": {"k": "v"}});
        match lightbox::asl::path::JsonPath::parse(path) {
            Ok(p) => Ok(p.select(&doc)),
            Err(e) => Err(e.to_string()),
        }
    }
    fn next_random_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.0
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = evaluate(text, &mut Ctx(7));
    }
});
