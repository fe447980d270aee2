//! The neighbours Intune tooling touches: role scope tags, Entra groups and devices with
//! membership (by hand and dynamic), assignment filters, and targeting evaluated on the server
//! (which scripts each device token sees).

#![allow(clippy::cloned_ref_to_slice_refs)] // `[id.clone()]` reads better in assertions.

use serde_json::{json, Value};

use crate::both;
use crate::harness::TestApp;

const TAGS: &str = "deviceManagement/roleScopeTags";
const FILTERS: &str = "deviceManagement/assignmentFilters";

async fn created(app: &TestApp, path: &str, body: Value) -> String {
    let reply = app.post(path, &body.to_string()).await;
    assert_eq!(reply.status, 201, "POST {path}: {}", reply.text);
    reply.json["id"].as_str().unwrap().to_owned()
}

async fn group(app: &TestApp, name: &str, rule: Option<&str>) -> String {
    let mut body = json!({
        "displayName": name, "mailEnabled": false, "mailNickname": name.replace(' ', ""),
        "securityEnabled": true,
    });
    if let Some(rule) = rule {
        body["groupTypes"] = json!(["DynamicMembership"]);
        body["membershipRule"] = json!(rule);
        body["membershipRuleProcessingState"] = json!("On");
    }
    created(app, "groups", body).await
}

async fn device(app: &TestApp, name: &str, os: &str, manufacturer: &str) -> String {
    created(
        app,
        "deviceManagement/managedDevices",
        json!({"deviceName": name, "operatingSystem": os, "manufacturer": manufacturer, "osVersion": "10.0.22631"}),
    )
    .await
}

async fn add_member(app: &TestApp, group: &str, device: &str) -> u16 {
    app.post(
        &format!("groups/{group}/members/$ref"),
        &json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{device}")})
            .to_string(),
    )
    .await
    .status
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["value"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

both!(
    role_scope_tags_have_a_builtin_default_and_guard_their_users,
    |app| {
        let list = app.get(TAGS).await;
        assert_eq!(list.status, 200, "{}", list.text);
        assert_eq!(list.json["value"][0]["id"], "0");
        assert_eq!(list.json["value"][0]["displayName"], "Default");
        assert_eq!(list.json["value"][0]["isBuiltIn"], true);
        let tag = created(
            &app,
            TAGS,
            json!({"displayName": "Paris", "description": "Paris office"}),
        )
        .await;
        let found = app
            .get(&format!(
                "{TAGS}?$filter=displayName eq 'paris'&$select=id,displayName"
            ))
            .await;
        assert_eq!(
            found.json["value"],
            json!([{"id": tag, "displayName": "Paris"}])
        );
        // Another tenant sees the built-in tag, not this one.
        let other = app.mint("tenant-b", &["DeviceManagementRBAC.Read.All"], &[]);
        let theirs = app.send("GET", TAGS, Some(&other), None).await;
        assert_eq!(ids(&theirs.json), ["0"]);
        // Scripts name existing tags only; the default is ["0"].
        let bad = app
        .post(
            "deviceManagement/deviceHealthScripts",
            r#"{"displayName":"x","detectionScriptContent":"ZXhpdCAw","roleScopeTagIds":["0","nope"]}"#,
        )
        .await;
        bad.assert_error(400, "BadRequest", "'nope'");
        let script = created(
        &app,
        "deviceManagement/deviceHealthScripts",
        json!({"displayName": "x", "detectionScriptContent": "ZXhpdCAw", "roleScopeTagIds": ["0", tag]}),
    )
    .await;
        let plain = app.script("plain").await;
        let item = app
            .get(&format!("deviceManagement/deviceHealthScripts/{plain}"))
            .await;
        assert_eq!(item.json["roleScopeTagIds"], json!(["0"]));
        // A tag in use cannot be deleted; the message names its user. The built-in one never.
        app.delete(&format!("{TAGS}/{tag}"))
            .await
            .assert_error(400, "BadRequest", &script);
        app.delete(&format!("{TAGS}/0"))
            .await
            .assert_error(400, "BadRequest", "built-in");
        let patch = app
            .patch(&format!("{TAGS}('0')"), r#"{"displayName":"Mine"}"#)
            .await;
        assert_eq!(patch.status, 400, "{}", patch.text);
        assert_eq!(
            app.delete(&format!("deviceManagement/deviceHealthScripts/{script}"))
                .await
                .status,
            204
        );
        assert_eq!(app.delete(&format!("{TAGS}/{tag}")).await.status, 204);
        assert_eq!(app.get(&format!("{TAGS}/{tag}")).await.status, 404);
        // Permissions are Graph's: RBAC for tags.
        let scripts_only = app.mint("tenant-a", &["DeviceManagementScripts.ReadWrite.All"], &[]);
        app.send("GET", TAGS, Some(&scripts_only), None)
            .await
            .assert_error(403, "Forbidden", "DeviceManagementRBAC.Read.All");
    }
);

both!(groups_are_served_with_filters_count_and_members, |app| {
    let lab = group(&app, "Lab devices", None).await;
    let _other = group(&app, "Office", None).await;
    let item = app.get(&format!("groups/{lab}")).await;
    assert_eq!(item.status, 200, "{}", item.text);
    assert_eq!(item.json["displayName"], "Lab devices");
    assert_eq!(item.json["securityEnabled"], true);
    assert_eq!(item.json["groupTypes"], json!([]));
    assert!(item.json["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("$metadata#groups/$entity"));
    let by_name = app
        .get("groups?$filter=displayName eq 'Lab devices'&$count=true")
        .await;
    assert_eq!(ids(&by_name.json), [lab.clone()]);
    assert_eq!(by_name.json["@odata.count"], 1);
    let starts = app
        .get("groups?$filter=startswith(displayName,'Off')&$select=id,displayName")
        .await;
    assert_eq!(
        starts.json["value"],
        json!([{"id": _other, "displayName": "Office"}])
    );
    let ordered = app.get("groups?$orderby=displayName desc&$top=1").await;
    assert_eq!(ordered.json["value"][0]["displayName"], "Office");
    assert!(ordered.json["@odata.nextLink"].is_string());
    assert_eq!(app.get("groups/$count").await.text, "2");
    // Required properties and group kinds.
    app.post(
        "groups",
        r#"{"displayName":"x","mailEnabled":false,"securityEnabled":true}"#,
    )
    .await
    .assert_error(400, "BadRequest", "mailNickname");

    // Members by reference; Entra devices mirror managed devices.
    let pc = device(&app, "PC-1", "Windows", "Dell").await;
    let mac = device(&app, "MAC-1", "macOS", "Apple").await;
    let devices = app.get("devices?$filter=displayName eq 'PC-1'").await;
    assert_eq!(devices.status, 200, "{}", devices.text);
    assert_eq!(devices.json["value"][0]["id"], pc.as_str());
    assert_eq!(devices.json["value"][0]["operatingSystem"], "Windows");
    assert_eq!(add_member(&app, &lab, &pc).await, 204);
    assert_eq!(add_member(&app, &lab, &pc).await, 400, "already a member");
    assert_eq!(add_member(&app, &lab, "missing").await, 400);
    let members = app.get(&format!("groups/{lab}/members")).await;
    assert_eq!(members.status, 200, "{}", members.text);
    assert_eq!(ids(&members.json), [pc.clone()]);
    assert_eq!(
        members.json["value"][0]["@odata.type"],
        "#microsoft.graph.device"
    );
    let member_of = app.get(&format!("devices/{pc}/memberOf")).await;
    assert_eq!(ids(&member_of.json), [lab.clone()]);
    assert_eq!(
        app.get(&format!("devices/{mac}/memberOf")).await.json["value"],
        json!([])
    );
    assert_eq!(
        app.delete(&format!("groups/{lab}/members/{pc}/$ref"))
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete(&format!("groups/{lab}/members/{pc}/$ref"))
            .await
            .status,
        404
    );
    assert_eq!(
        ids(&app.get(&format!("groups/{lab}/members")).await.json),
        Vec::<String>::new()
    );
    // Deleting a managed device deletes its directory object and memberships.
    assert_eq!(add_member(&app, &lab, &mac).await, 204);
    assert_eq!(
        app.delete(&format!("deviceManagement/managedDevices/{mac}"))
            .await
            .status,
        204
    );
    assert_eq!(app.get(&format!("devices/{mac}")).await.status, 404);
    assert_eq!(
        ids(&app.get(&format!("groups/{lab}/members")).await.json),
        Vec::<String>::new()
    );
    assert_eq!(app.delete(&format!("groups/{lab}")).await.status, 204);
    assert_eq!(app.get(&format!("groups/{lab}")).await.status, 404);
    // Graph's permissions.
    let no_groups = app.mint("tenant-a", &["DeviceManagementScripts.ReadWrite.All"], &[]);
    app.send("GET", "groups", Some(&no_groups), None)
        .await
        .assert_error(403, "Forbidden", "Group.Read.All");
    app.send("GET", "devices", Some(&no_groups), None)
        .await
        .assert_error(403, "Forbidden", "Device.Read.All");
});

both!(dynamic_groups_follow_their_rule_and_the_devices, |app| {
    app.post(
        "groups",
        &json!({"displayName": "bad", "mailEnabled": false, "mailNickname": "bad", "securityEnabled": true,
                "groupTypes": ["DynamicMembership"], "membershipRule": "(device.colour -eq \"red\")"})
        .to_string(),
    )
    .await
    .assert_error(400, "BadRequest", "device.colour");
    app.post(
        "groups",
        &json!({"displayName": "bad", "mailEnabled": false, "mailNickname": "bad", "securityEnabled": true,
                "groupTypes": ["DynamicMembership"], "membershipRule": "device.displayName -like \"x\""})
        .to_string(),
    )
    .await
    .assert_error(400, "BadRequest", "-like");
    let dell = device(&app, "LAB-01", "Windows", "Dell").await;
    let hp = device(&app, "LAB-02", "Windows", "HP").await;
    let _office = device(&app, "OFFICE-1", "Windows", "Dell").await;
    let lab = group(
        &app,
        "Lab",
        Some(r#"(device.displayName -startsWith "lab-") -and (device.deviceManufacturer -in ["Dell","HP"])"#),
    )
    .await;
    let members = app.get(&format!("groups/{lab}/members")).await;
    let mut expected = vec![dell.clone(), hp.clone()];
    expected.sort();
    assert_eq!(ids(&members.json), expected);
    // A device changing its name leaves; a new device matching joins.
    assert_eq!(
        app.patch(
            &format!("deviceManagement/managedDevices/{hp}"),
            r#"{"deviceName":"DESK-02"}"#
        )
        .await
        .status
            / 100,
        2
    );
    let late = device(&app, "lab-03", "Windows", "HP").await;
    let mut expected = vec![dell.clone(), late.clone()];
    expected.sort();
    assert_eq!(
        ids(&app.get(&format!("groups/{lab}/members")).await.json),
        expected
    );
    // Members of a dynamic group are computed, never added by hand.
    assert_eq!(add_member(&app, &lab, &hp).await, 400);
    // Changing the rule recomputes the members.
    let patched = app
        .patch(
            &format!("groups/{lab}"),
            r#"{"membershipRule":"device.deviceManufacturer -eq \"HP\""}"#,
        )
        .await;
    assert_eq!(patched.status / 100, 2, "{}", patched.text);
    let mut expected = vec![hp.clone(), late.clone()];
    expected.sort();
    assert_eq!(
        ids(&app.get(&format!("groups/{lab}/members")).await.json),
        expected
    );
    let bad = app
        .patch(
            &format!("groups/{lab}"),
            r#"{"membershipRule":"device.nope -eq 1"}"#,
        )
        .await;
    bad.assert_error(400, "BadRequest", "device.nope");
});

both!(assignment_filters_are_validated_and_guarded, |app| {
    let filter = created(
        &app,
        FILTERS,
        json!({"displayName": "Dell only", "platform": "windows10AndLater",
               "rule": "(device.manufacturer -eq \"Dell\")"}),
    )
    .await;
    let item = app.get(&format!("{FILTERS}/{filter}")).await;
    assert_eq!(item.json["platform"], "windows10AndLater");
    assert_eq!(item.json["assignmentFilterManagementType"], "devices");
    assert_eq!(item.json["roleScopeTags"], json!(["0"]));
    app.post(
        FILTERS,
        &json!({"displayName": "bad", "platform": "windows10AndLater", "rule": "(device.colour -eq \"x\")"})
            .to_string(),
    )
    .await
    .assert_error(400, "BadRequest", "device.colour");
    let valid = app
        .post(
            &format!("{FILTERS}/validateFilter"),
            r#"{"deviceAndAppManagementAssignmentFilter":{"rule":"(device.model -startsWith \"Surface\")","platform":"windows10AndLater"}}"#,
        )
        .await;
    assert_eq!(valid.status, 200, "{}", valid.text);
    assert_eq!(valid.json["isValidRule"], true);
    let invalid = app
        .post(
            &format!("{FILTERS}/validateFilter"),
            r#"{"deviceAndAppManagementAssignmentFilter":{"rule":"(device.model -eq"}}"#,
        )
        .await;
    assert_eq!(invalid.json["isValidRule"], false);
    for body in [
        r#"{"deviceAndAppManagementAssignmentFilter":{"rule":{}}}"#,
        r#"{"deviceAndAppManagementAssignmentFilter":{"rule":null}}"#,
        r#"{"deviceAndAppManagementAssignmentFilter":{"displayName":"no rule"}}"#,
        r#"{"deviceAndAppManagementAssignmentFilter":{"rule":"x","colour":"red"}}"#,
    ] {
        let reply = app.post(&format!("{FILTERS}/validateFilter"), body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
    }
    // An assignment names an existing filter; a filter in use cannot be deleted.
    let script = app.script("s").await;
    let assign = |filter_id: &str| {
        json!({"deviceHealthScriptAssignments": [{
            "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget",
                       "deviceAndAppManagementAssignmentFilterId": filter_id,
                       "deviceAndAppManagementAssignmentFilterType": "include"},
            "runRemediationScript": true}]})
        .to_string()
    };
    app.post(
        &format!("deviceManagement/deviceHealthScripts/{script}/assign"),
        &assign("5f9a3a3c-0000-4000-8000-000000000000"),
    )
    .await
    .assert_error(400, "BadRequest", "5f9a3a3c");
    let done = app
        .post(
            &format!("deviceManagement/deviceHealthScripts/{script}/assign"),
            &assign(&filter),
        )
        .await;
    assert_eq!(done.status / 100, 2, "{}", done.text);
    app.delete(&format!("{FILTERS}/{filter}"))
        .await
        .assert_error(400, "BadRequest", &script);
    let no_config = app.mint("tenant-a", &["DeviceManagementScripts.ReadWrite.All"], &[]);
    app.send("GET", FILTERS, Some(&no_config), None)
        .await
        .assert_error(403, "Forbidden", "DeviceManagementConfiguration.Read.All");
});

// Devices × groups (static, dynamic) × exclusions × filters → the scripts each device token sees.
both!(targeting_is_evaluated_on_the_server, |app| {
    let d1 = device(&app, "LAB-01", "Windows", "Dell").await; // static + dynamic, Dell
    let d2 = device(&app, "LAB-02", "Windows", "HP").await; // dynamic only, HP
    let d3 = device(&app, "OFFICE-1", "Windows", "Dell").await; // static only, excluded
    let d4 = device(&app, "KIOSK-1", "Windows", "Lenovo").await; // nothing
    let static_group = group(&app, "Pilot", None).await;
    let dynamic = group(
        &app,
        "Lab",
        Some(r#"device.displayName -startsWith "LAB-""#),
    )
    .await;
    let excluded = group(&app, "Excluded", None).await;
    for d in [&d1, &d3] {
        assert_eq!(add_member(&app, &static_group, d).await, 204);
    }
    assert_eq!(add_member(&app, &excluded, &d3).await, 204);
    let dell = created(
        &app,
        FILTERS,
        json!({"displayName": "Dell", "platform": "windows10AndLater", "rule": "device.manufacturer -eq \"Dell\""}),
    )
    .await;
    let target = |kind: &str, group: Option<&str>, filter: Option<(&str, &str)>| {
        let mut t = json!({"@odata.type": format!("#microsoft.graph.{kind}")});
        if let Some(g) = group {
            t["groupId"] = json!(g);
        }
        if let Some((id, mode)) = filter {
            t["deviceAndAppManagementAssignmentFilterId"] = json!(id);
            t["deviceAndAppManagementAssignmentFilterType"] = json!(mode);
        }
        json!({"target": t, "runRemediationScript": false})
    };
    let scripts = [
        (
            "pilot",
            vec![target("groupAssignmentTarget", Some(&static_group), None)],
        ),
        (
            "lab",
            vec![target("groupAssignmentTarget", Some(&dynamic), None)],
        ),
        (
            "all-but-excluded",
            vec![
                target("allDevicesAssignmentTarget", None, None),
                target("exclusionGroupAssignmentTarget", Some(&excluded), None),
            ],
        ),
        (
            "dell-in-pilot",
            vec![target(
                "groupAssignmentTarget",
                Some(&static_group),
                Some((&dell, "include")),
            )],
        ),
        (
            "lab-not-dell",
            vec![target(
                "groupAssignmentTarget",
                Some(&dynamic),
                Some((&dell, "exclude")),
            )],
        ),
        ("unassigned", vec![]),
    ];
    let mut by_name = std::collections::HashMap::new();
    for (name, assignments) in &scripts {
        let id = app.script(name).await;
        let reply = app
            .post(
                &format!("deviceManagement/deviceHealthScripts/{id}/assign"),
                &json!({"deviceHealthScriptAssignments": assignments}).to_string(),
            )
            .await;
        assert_eq!(reply.status / 100, 2, "{}", reply.text);
        by_name.insert(id, *name);
    }
    let expected: [(&str, &[&str]); 4] = [
        (&d1, &["all-but-excluded", "dell-in-pilot", "lab", "pilot"]),
        (&d2, &["all-but-excluded", "lab", "lab-not-dell"]),
        (&d3, &["dell-in-pilot", "pilot"]),
        (&d4, &["all-but-excluded"]),
    ];
    for (device, names) in expected {
        let token = app.mint_device("tenant-a", device, &[]);
        let seen = app
            .send(
                "GET",
                "deviceManagement/deviceHealthScripts",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(seen.status, 200, "{}", seen.text);
        let mut seen: Vec<&str> = ids(&seen.json)
            .iter()
            .map(|id| by_name[id.as_str()])
            .collect();
        seen.sort();
        assert_eq!(seen, names, "device {device}");
    }
});

// Graph's permissions for every new route, one row each: a token with `allowed` gets `ok`; a
// token with `denied` (a plausible but wrong permission) gets 403 naming what is needed.
both!(permissions_of_the_neighbours_are_graphs, |app| {
    let group_id = group(&app, "Perm", None).await;
    let device_id = device(&app, "PERM-1", "Windows", "Dell").await;
    let reference =
        json!({"@odata.id": format!("https://graph.microsoft.com/beta/devices/{device_id}")})
            .to_string();
    let tag = json!({"displayName": "t"}).to_string();
    let filter = json!({"displayName": "f", "platform": "windows10AndLater", "rule": "device.model -eq \"x\""}).to_string();
    let new_group = json!({"displayName": "g", "mailEnabled": false, "mailNickname": "g", "securityEnabled": true}).to_string();
    let members = format!("groups/{group_id}/members");
    let member_ref = format!("groups/{group_id}/members/$ref");
    let member_of = format!("devices/{device_id}/memberOf");
    // (method, path, body, allowed permission, its status, denied permission, named in the 403)
    type Row<'a> = (
        &'a str,
        String,
        Option<String>,
        &'a str,
        u16,
        &'a str,
        &'a str,
    );
    let rows: Vec<Row> = vec![
        (
            "GET",
            TAGS.into(),
            None,
            "DeviceManagementRBAC.Read.All",
            200,
            "DeviceManagementConfiguration.ReadWrite.All",
            "DeviceManagementRBAC.Read.All",
        ),
        (
            "POST",
            TAGS.into(),
            Some(tag),
            "DeviceManagementRBAC.ReadWrite.All",
            201,
            "DeviceManagementRBAC.Read.All",
            "DeviceManagementRBAC.ReadWrite.All",
        ),
        (
            "GET",
            FILTERS.into(),
            None,
            "DeviceManagementConfiguration.Read.All",
            200,
            "DeviceManagementRBAC.ReadWrite.All",
            "DeviceManagementConfiguration.Read.All",
        ),
        (
            "POST",
            FILTERS.into(),
            Some(filter),
            "DeviceManagementConfiguration.ReadWrite.All",
            201,
            "DeviceManagementConfiguration.Read.All",
            "DeviceManagementConfiguration.ReadWrite.All",
        ),
        (
            "GET",
            "groups".into(),
            None,
            "Group.Read.All",
            200,
            "Device.Read.All",
            "Group.Read.All",
        ),
        (
            "GET",
            "groups".into(),
            None,
            "Directory.Read.All",
            200,
            "GroupMember.Read.All",
            "Group.Read.All",
        ),
        (
            "POST",
            "groups".into(),
            Some(new_group),
            "Group.ReadWrite.All",
            201,
            "Group.Read.All",
            "Group.ReadWrite.All",
        ),
        (
            "GET",
            members.clone(),
            None,
            "GroupMember.Read.All",
            200,
            "Device.Read.All",
            "GroupMember.Read.All",
        ),
        (
            "POST",
            member_ref,
            Some(reference),
            "GroupMember.ReadWrite.All",
            204,
            "GroupMember.Read.All",
            "GroupMember.ReadWrite.All",
        ),
        (
            "GET",
            "devices".into(),
            None,
            "Device.Read.All",
            200,
            "Group.Read.All",
            "Device.Read.All",
        ),
        (
            "GET",
            member_of,
            None,
            "Device.Read.All",
            200,
            "GroupMember.Read.All",
            "Device.Read.All",
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, allowed, ok, denied, named) in rows {
        let denied_token = app.mint("tenant-a", &[denied], &[]);
        let reply = app
            .send(method, &path, Some(&denied_token), body.as_deref())
            .await;
        if reply.status != 403 || !reply.text.contains(named) {
            wrong.push(format!(
                "{method} {path} with {denied}: {} {}",
                reply.status, reply.text
            ));
        }
        let token = app.mint("tenant-a", &[allowed], &[]);
        let reply = app.send(method, &path, Some(&token), body.as_deref()).await;
        if reply.status != ok {
            wrong.push(format!(
                "{method} {path} with {allowed}: {} {}",
                reply.status, reply.text
            ));
        }
    }
    // Device agents' tokens touch none of them.
    let agent = app.mint_device("tenant-a", &device_id, &[]);
    for path in [TAGS, FILTERS, "groups", "devices", members.as_str()] {
        let reply = app.send("GET", path, Some(&agent), None).await;
        if reply.status != 403 {
            wrong.push(format!("device token GET {path}: {}", reply.status));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
});

both!(another_tenants_neighbours_are_not_found, |app| {
    let group_id = group(&app, "Secret group", None).await;
    let device_id = device(&app, "SECRET-1", "Windows", "Dell").await;
    assert_eq!(add_member(&app, &group_id, &device_id).await, 204);
    let filter = created(
        &app,
        FILTERS,
        json!({"displayName": "Secret filter", "platform": "windows10AndLater", "rule": "device.model -eq \"x\""}),
    )
    .await;
    let b = app.mint("tenant-b", crate::harness::WRITE_SCOPES, &[]);
    for path in [
        format!("groups/{group_id}"),
        format!("groups/{group_id}/members"),
        format!("devices/{device_id}"),
        format!("devices/{device_id}/memberOf"),
        format!("{FILTERS}/{filter}"),
    ] {
        let reply = app.send("GET", &path, Some(&b), None).await;
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.text);
        assert!(!reply.text.contains("Secret"), "{}", reply.text);
    }
    for path in ["groups", "devices", FILTERS] {
        let reply = app.send("GET", path, Some(&b), None).await;
        assert_eq!(reply.json["value"], json!([]), "GET {path}: {}", reply.text);
    }
    // B's own group cannot take A's device; A's group cannot be changed by B.
    let theirs = app
        .send(
            "POST",
            "groups",
            Some(&b),
            Some(r#"{"displayName":"B","mailEnabled":false,"mailNickname":"b","securityEnabled":true}"#),
        )
        .await;
    let theirs = theirs.json["id"].as_str().unwrap().to_owned();
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/beta/directoryObjects/{device_id}")}).to_string();
    let reply = app
        .send(
            "POST",
            &format!("groups/{theirs}/members/$ref"),
            Some(&b),
            Some(&reference),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let reply = app
        .send(
            "DELETE",
            &format!("groups/{group_id}/members/{device_id}/$ref"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(
        ids(&app.get(&format!("groups/{group_id}/members")).await.json),
        vec![device_id.clone()]
    );
    // Through $batch too.
    let batch =
        json!({"requests": [{"id": 1, "method": "GET", "url": format!("/groups/{group_id}")}]})
            .to_string();
    let reply = app.send("POST", "$batch", Some(&b), Some(&batch)).await;
    assert_eq!(reply.json["responses"][0]["status"], 404, "{}", reply.text);
});
