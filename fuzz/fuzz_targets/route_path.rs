//! Graph URL paths -> typed routes, and `managedDevice@odata.bind` URLs -> device ids.
//! Never panics on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remediate_api::route::{bound_device_id, parse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = std::hint::black_box(parse(&text));
    let _ = std::hint::black_box(bound_device_id(&text));
});
