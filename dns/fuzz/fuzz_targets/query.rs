//! Arbitrary bytes through the whole query path (parse, lookup, ECS, answer, truncation).
//! Run: `cargo +nightly fuzz run query fuzz/corpus/query` from `dns/`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skein_dns::answer::{Scratch, Snapshot};
use skein_dns::fuzzing;

static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let snap = SNAPSHOT.get_or_init(fuzzing::snapshot);
    let mut scratch = Scratch::new(7);
    fuzzing::query_path(snap, &mut scratch, data);
});
