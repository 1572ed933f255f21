//! Arbitrary bytes through the whole query path (parse, lookup, ECS, answer, truncation) of
//! both UDP engines, which must agree wherever the strict parser accepts the query.
//! Run: `cargo +nightly fuzz run query fuzz/corpus/query` from `dns/`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skein_dns::{Harness, Scratch};

static HARNESS: OnceLock<Harness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(Harness::default);
    let mut scratch = Scratch::new(7);
    harness.query_path(&mut scratch, data);
});
