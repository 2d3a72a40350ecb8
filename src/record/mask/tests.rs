//! Masker tests: every detector, every split point, escapes, false positives, hold bound,
//! counts and flush semantics.

use std::sync::Arc;

use super::*;

fn rules() -> Arc<MaskRules> {
    Arc::new(MaskRules::builtin())
}

fn mask_all(input: &[u8]) -> Vec<u8> {
    let mut m = Masker::new(rules(), MaskMode::Tag);
    let mut out = Vec::new();
    m.push(input, &mut out);
    m.flush(&mut out);
    out
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn smoke() {
    let out = mask_all(b"key AKIAIOSFODNN7EXAMPLE end\n");
    assert_eq!(s(&out), "key [MASKED:aws-access-key] end\n");
}
