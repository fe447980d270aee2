//! The Entra token endpoint's `application/x-www-form-urlencoded` body parser
//! (`remediate_api::entra::parse_form`). Never panics; the pairs it reads, form-encoded again,
//! read back as the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remediate_api::entra::parse_form;

fn encode(text: &str, out: &mut String) {
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = parse_form(data) else {
        return;
    };
    let mut again = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            again.push('&');
        }
        encode(name, &mut again);
        again.push('=');
        encode(value, &mut again);
    }
    let reread = parse_form(again.as_bytes())
        .unwrap_or_else(|e| panic!("{again:?} (re-encoded {pairs:?}) does not parse: {e}"));
    assert_eq!(reread, pairs, "{again:?}");
});
