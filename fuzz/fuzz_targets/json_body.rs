//! Graph JSON request bodies -> validated values, and DateTimeOffset parsing.
//! Never panics; a parsed instant survives format -> parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remediate_domain::model::{DEVICE_HEALTH_SCRIPT, DEVICE_RUN_STATE, MANAGED_DEVICE};
use remediate_domain::Instant;
use remediate_wire::decode_entity;

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box(decode_entity(&DEVICE_RUN_STATE, data));
    let _ = std::hint::black_box(decode_entity(&DEVICE_HEALTH_SCRIPT, data));
    let _ = std::hint::black_box(decode_entity(&MANAGED_DEVICE, data));

    let text = String::from_utf8_lossy(data);
    for candidate in [text.as_ref(), text.trim()] {
        if let Ok(instant) = Instant::parse(candidate) {
            let formatted = instant.to_string();
            let again = Instant::parse(&formatted).unwrap_or_else(|e| {
                panic!("{candidate:?} parsed to {instant:?}, formatted as {formatted:?}, which does not parse: {e:?}")
            });
            assert_eq!(
                instant, again,
                "{candidate:?} -> {formatted:?} -> a different instant"
            );
        }
    }
});
