#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| skein_node::relay::wire::fuzz_decoder(data));
