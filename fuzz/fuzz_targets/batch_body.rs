//! `$batch` bodies: decoding, validation (size, ids — strings or integers —, dependsOn references
//! and cycles, inner URLs and headers) and the inner-request construction never panic, and a
//! decoded batch respects its own dependencies: every request runs once, after every request it
//! depends on, with `1` and `"1"` naming the same request.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;

/// The id a request id or dependsOn entry names, as the batch keys it (integers in decimal).
fn id_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(order) = remediate_api::batch::decode(data, 20) else {
        return;
    };
    assert!(!order.is_empty() && order.len() <= 20);
    let mut position = HashMap::new();
    for (i, id) in order.iter().enumerate() {
        assert!(
            position.insert(id.clone(), i).is_none(),
            "the id {id:?} runs twice"
        );
    }
    // An independent reading of the same body: each request runs after what it depends on.
    let Ok(body) = serde_json::from_slice::<Json>(data) else {
        return;
    };
    let Some(requests) = body.get("requests").and_then(Json::as_array) else {
        return;
    };
    assert_eq!(requests.len(), order.len(), "not every request runs");
    for request in requests {
        let Some(me) = request.get("id").and_then(id_text) else {
            continue;
        };
        let mine = *position
            .get(&me)
            .unwrap_or_else(|| panic!("request {me:?} is not in the order {order:?}"));
        for key in ["dependsOn", "depends_on"] {
            for dep in request
                .get(key)
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let Some(dep) = id_text(dep) else { continue };
                let theirs = position[&dep];
                assert!(
                    theirs < mine,
                    "{me:?} runs before its dependency {dep:?}: {order:?}"
                );
            }
        }
    }
});
