//! `$batch` exactly as Microsoft Graph writes and reads it (issue 13, items 2 and 8): integer
//! request ids (answered as strings) and integer `dependsOn` references; item headers in Graph's
//! casing (`Content-Type`, `OData-Version`, `Cache-Control`, `Location`, …); request bodies given
//! as a base64 string (OData JSON batch: a non-text media type's body is its base64url value).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::both;
use crate::harness::{Reply, TestApp};

const GRAPH_CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;\
                                  IEEE754Compatible=false;charset=utf-8";
const SCRIPTS: &str = "/deviceManagement/deviceHealthScripts";
const DEVICES: &str = "/deviceManagement/managedDevices";

async fn post_batch(app: &TestApp, requests: Value) -> Reply {
    let body = json!({ "requests": requests }).to_string();
    app.post("$batch", &body).await
}

/// The item answers of a `$batch` (which must itself be a 200).
async fn batch(app: &TestApp, requests: Value) -> Vec<Value> {
    let reply = post_batch(app, requests).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["responses"].as_array().unwrap().clone()
}

/// The item answer whose id is the string `id`.
fn by_id<'a>(responses: &'a [Value], id: &str) -> &'a Value {
    let found = responses.iter().find(|r| r["id"] == id);
    found.unwrap_or_else(|| panic!("no answer with the string id {id:?}: {responses:?}"))
}

both!(integer_ids_are_answered_as_strings, |app| {
    let script = app.script("numeric-ids").await;
    let device = app.device("PC-numeric").await;
    let summary = format!("{SCRIPTS}/{script}/runSummary");
    let states = format!("{SCRIPTS}/{script}/deviceRunStates");
    let bind = format!("managedDevices('{device}')");
    // 2 is listed first but depends on 1 (an integer reference to an integer id); "3" depends on
    // 2 written as a string; 5 depends on a failing 4.
    let responses = batch(
        &app,
        json!([
            {"id": 2, "method": "GET", "url": summary, "dependsOn": [1]},
            {"id": 1, "method": "POST", "url": states,
             "headers": {"Content-Type": "application/json"},
             "body": {"managedDevice@odata.bind": bind, "detectionState": "fail"}},
            {"id": "3", "method": "GET", "url": format!("{SCRIPTS}/$count"), "dependsOn": ["2"]},
            {"id": 4, "method": "GET", "url": "/deviceManagement/nope"},
            {"id": 5, "method": "GET", "url": DEVICES, "dependsOn": [4]},
            {"id": -7, "method": "GET", "url": format!("{DEVICES}?$top=1")}
        ]),
    )
    .await;
    // Every id is written back as a string, in request order.
    let ids: Vec<&str> = responses.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ["2", "1", "3", "4", "5", "-7"], "{responses:?}");
    assert_eq!(by_id(&responses, "1")["status"], 201);
    assert_eq!(by_id(&responses, "2")["status"], 200);
    let detected = &by_id(&responses, "2")["body"]["issueDetectedDeviceCount"];
    assert_eq!(*detected, 1, "2 ran after 1");
    assert_eq!(by_id(&responses, "3")["status"], 200);
    assert_eq!(by_id(&responses, "4")["status"], 400);
    assert_eq!(by_id(&responses, "5")["status"], 424);
    assert_eq!(by_id(&responses, "-7")["status"], 200);
});

both!(integer_ids_are_checked_like_strings, |app| {
    // 1 and "1" are the same id.
    let duplicate = json!([
        {"id": 1, "method": "GET", "url": DEVICES},
        {"id": "1", "method": "GET", "url": DEVICES}
    ]);
    let reply = post_batch(&app, duplicate).await;
    reply.assert_error(400, "BadRequest", "more than once");
    // An integer reference to an id that is not there.
    let missing = json!([{"id": 1, "method": "GET", "url": DEVICES, "dependsOn": [9]}]);
    let reply = post_batch(&app, missing).await;
    reply.assert_error(400, "BadRequest", "'9'");
    // A cycle written with integers.
    let cycle = json!([
        {"id": 1, "method": "GET", "url": DEVICES, "dependsOn": ["2"]},
        {"id": 2, "method": "GET", "url": DEVICES, "dependsOn": [1]}
    ]);
    let reply = post_batch(&app, cycle).await;
    reply.assert_error(400, "BadRequest", "cycle");
    // Anything but a non-empty string or an integer stays a 400 that says so.
    let bad_ids = [
        json!(1.5),
        json!(1.0),
        json!(1e3),
        json!(true),
        json!(null),
        json!({"n": 1}),
        json!([1]),
        json!(""),
    ];
    for bad in bad_ids {
        let reply = post_batch(&app, json!([{"id": bad, "method": "GET", "url": DEVICES}])).await;
        reply.assert_error(400, "BadRequest", "requests[0].id");
        reply.assert_error(400, "BadRequest", "a non-empty string or an integer");
        let reference = json!([
            {"id": 1, "method": "GET", "url": DEVICES},
            {"id": 2, "method": "GET", "url": DEVICES, "dependsOn": [1, bad]}
        ]);
        let reply = post_batch(&app, reference).await;
        reply.assert_error(400, "BadRequest", "requests[1].dependsOn[1]");
    }
});

/// The header names of one item answer, exactly as written (JSON keys are case-sensitive).
fn header_names(response: &Value) -> Vec<String> {
    let headers = response["headers"].as_object();
    let headers = headers.unwrap_or_else(|| panic!("no headers object: {response}"));
    headers.keys().cloned().collect()
}

both!(item_headers_are_written_in_graph_casing, |app| {
    let script = app.script("casing").await;
    let created = json!({"displayName": "casing-2", "detectionScriptContent": "ZWNobyAx"});
    let responses = batch(
        &app,
        json!([
            {"id": "list", "method": "GET", "url": SCRIPTS},
            {"id": "create", "method": "POST", "url": SCRIPTS,
             "headers": {"content-type": "application/json"}, "body": created},
            {"id": "error", "method": "GET", "url": "/deviceManagement/nope"},
            {"id": "method", "method": "DELETE", "url": format!("{SCRIPTS}/$count")},
            {"id": "delete", "method": "DELETE", "url": format!("{SCRIPTS}/{script}")},
            {"id": "count", "method": "GET", "url": format!("{SCRIPTS}/$count")}
        ]),
    )
    .await;
    // The same GET outside a batch: the item carries the same values.
    let alone = app.get("deviceManagement/deviceHealthScripts").await;
    assert_eq!(alone.header("content-type"), GRAPH_CONTENT_TYPE);

    let list = by_id(&responses, "list");
    assert_eq!(list["status"], 200);
    let graph = ["Cache-Control", "OData-Version", "Content-Type"];
    assert_eq!(header_names(list), graph);
    let headers = &list["headers"];
    assert_eq!(headers["Content-Type"], alone.header("content-type"));
    assert_eq!(headers["OData-Version"], alone.header("odata-version"));
    assert_eq!(headers["Cache-Control"], alone.header("cache-control"));

    let create = by_id(&responses, "create");
    assert_eq!(create["status"], 201, "{create}");
    assert_eq!(header_names(create), [&graph[..], &["Location"]].concat());
    let location = create["headers"]["Location"].as_str().unwrap();
    let id = create["body"]["id"].as_str().unwrap();
    let expected = format!("/deviceHealthScripts/{id}");
    assert!(location.ends_with(&expected), "{location}");

    let error = by_id(&responses, "error");
    assert_eq!(error["status"], 400);
    assert_eq!(header_names(error), graph);
    assert_eq!(error["headers"]["Content-Type"], GRAPH_CONTENT_TYPE);

    let method = by_id(&responses, "method");
    assert_eq!(method["status"], 405, "{method}");
    assert_eq!(header_names(method), [&graph[..], &["Allow"]].concat());

    let delete = by_id(&responses, "delete");
    assert_eq!(delete["status"], 204, "{delete}");
    assert_eq!(header_names(delete), ["Cache-Control", "OData-Version"]);
    assert!(delete.get("body").is_none(), "{delete}");

    let count = by_id(&responses, "count");
    assert_eq!(count["status"], 200);
    assert_eq!(header_names(count), graph);
    assert_eq!(
        count["headers"]["Content-Type"],
        "text/plain; charset=utf-8"
    );
});

both!(base64_item_bodies_are_decoded, |app| {
    let script_body = |name: &str| {
        let description = "ÿ>>>???~~~";
        let body = json!({"displayName": name, "description": description,
            "detectionScriptContent": "ZWNobyAx"});
        body.to_string()
    };
    let standard = STANDARD.encode(script_body("b64-standard"));
    let url_safe = URL_SAFE_NO_PAD.encode(script_body("b64-url"));
    // The payloads hold what differs between the two alphabets, and padding.
    assert!(
        standard.contains(['+', '/']) && standard.ends_with('='),
        "{standard}"
    );
    assert!(url_safe.contains(['-', '_']), "{url_safe}");
    // As MIME encoders write it: lines of 76 characters.
    let wrapped = STANDARD.encode(script_body("b64-wrapped"));
    let wrapped: Vec<String> = wrapped
        .as_bytes()
        .chunks(76)
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    let wrapped = wrapped.join("\r\n");
    let post = |id: &str, content_type: &str, body: Value| {
        json!({"id": id, "method": "POST", "url": SCRIPTS,
            "headers": {"Content-Type": content_type}, "body": body})
    };
    let json = "application/json";
    let responses = batch(
        &app,
        json!([
            post("standard", json, json!(standard)),
            post("url", "application/json; charset=utf-8", json!(url_safe)),
            post("wrapped", json, json!(wrapped)),
            post("invalid", json, json!("not base64!")),
            post("json-text", json, json!(script_body("raw"))),
            post("not-json", json, json!(STANDARD.encode("displayName=x"))),
            {"id": "after", "method": "GET", "url": format!("{SCRIPTS}/$count"),
             "dependsOn": ["standard", "url", "wrapped"]}
        ]),
    )
    .await;
    let decoded = [
        ("standard", "b64-standard"),
        ("url", "b64-url"),
        ("wrapped", "b64-wrapped"),
    ];
    for (id, name) in decoded {
        let response = by_id(&responses, id);
        assert_eq!(response["status"], 201, "{response}");
        assert_eq!(response["body"]["displayName"], name);
        assert_eq!(response["body"]["description"], "ÿ>>>???~~~");
        let created = response["body"]["id"].as_str().unwrap();
        let stored = app
            .get(&format!("deviceManagement/deviceHealthScripts/{created}"))
            .await;
        assert_eq!(stored.json["displayName"], name);
    }
    assert_eq!(by_id(&responses, "after")["body"], "3");

    // Not base64 (a JSON text in a string is not either): a 400 for that item, which says why.
    for id in ["invalid", "json-text"] {
        let response = by_id(&responses, id);
        assert_eq!(response["status"], 400, "{response}");
        let error = &response["body"]["error"];
        assert_eq!(error["code"], "BadRequest");
        let message = error["message"].as_str().unwrap();
        let names_it = message.contains("base64") && message.contains(&format!("'{id}'"));
        assert!(names_it, "{message}");
    }
    // Valid base64 of something that is not JSON: the item's own body error.
    let response = by_id(&responses, "not-json");
    assert_eq!(response["status"], 400, "{response}");
    let message = response["body"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("JSON"), "{message}");
});
