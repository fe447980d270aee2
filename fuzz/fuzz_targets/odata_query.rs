//! OData system query options: the raw query string parser and each option parser on its own.
//! Never panics on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remediate_odata::{parse_expand, parse_filter, parse_orderby, parse_query, parse_select, Limits};

fn exercise(text: &str, limits: &Limits) {
    // Raw, still percent-encoded query string ("$filter=...&$top=5").
    let _ = std::hint::black_box(parse_query(text, limits));
    // The same text as an already-decoded option value.
    let _ = std::hint::black_box(parse_filter(text, limits));
    let _ = std::hint::black_box(parse_orderby(text, limits));
    let _ = std::hint::black_box(parse_select(text, limits));
    let _ = std::hint::black_box(parse_expand(text, limits));
}

fuzz_target!(|data: &[u8]| {
    let defaults = Limits::default();
    // Tight limits reach the TooLong / TooDeep paths with short inputs.
    let tight = Limits {
        max_option_length: 64,
        max_depth: 3,
        max_in_items: 3,
        max_orderby_keys: 3,
    };
    match std::str::from_utf8(data) {
        Ok(text) => {
            exercise(text, &defaults);
            exercise(text, &tight);
        }
        Err(_) => {
            let text = String::from_utf8_lossy(data);
            exercise(&text, &defaults);
            exercise(&text, &tight);
        }
    }
});
