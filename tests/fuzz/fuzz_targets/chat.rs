#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| onepoll_fuzz::chat::check(data));
