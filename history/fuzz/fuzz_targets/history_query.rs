#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| skein_history::query::fuzz_query(data));
