//! `/openapi.json`: an OpenAPI 3.0 description of the served API, generated from the same model as
//! `$metadata` (entity types, properties, enums) and the same collection declarations as routing
//! (every collection's list, create, count and item operations). Used by schemathesis in
//! CI; every operation documents every status the server can answer.

use std::sync::OnceLock;

use remediate_domain::collections::{Collection, Parent, ALL_COLLECTIONS};
use remediate_domain::model::{
    ComplexKind, EntityType, Kind, Property, ALL_ENUMS, POLICY_STATE, RUN_SUMMARY,
};
use serde_json::{json, Map, Value as Json};

use crate::respond::ApiResponse;

fn property_schema(p: &Property, for_write: bool) -> Json {
    let mut schema = match p.kind {
        Kind::String => {
            let mut s = json!({"type": "string"});
            if let (Some(max), true) = (p.max_len, for_write) {
                s["maxLength"] = json!(max);
            }
            s
        }
        Kind::Binary => json!({"type": "string", "format": "byte"}),
        Kind::Boolean => json!({"type": "boolean"}),
        Kind::Int32 => json!({"type": "integer", "format": "int32"}),
        Kind::Int64 => json!({"type": "integer", "format": "int64"}),
        Kind::DateTimeOffset => json!({
            "type": "string",
            "format": "date-time",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,7})?)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        }),
        Kind::Enum(e) => {
            json!({"$ref": format!("#/components/schemas/microsoft.graph.{}", e.name)})
        }
        Kind::StringCollection => json!({"type": "array", "items": {"type": "string"}}),
        Kind::Complex(ComplexKind::ScriptParameters) => {
            json!({"type": "array", "items": {"$ref": "#/components/schemas/microsoft.graph.deviceHealthScriptParameter"}})
        }
        Kind::Complex(ComplexKind::AssignmentTarget) => {
            json!({"$ref": "#/components/schemas/microsoft.graph.deviceAndAppManagementAssignmentTarget"})
        }
        Kind::Complex(ComplexKind::RunSchedule) => {
            json!({"$ref": "#/components/schemas/microsoft.graph.deviceHealthScriptRunSchedule"})
        }
    };
    if p.nullable {
        if schema.get("$ref").is_some() {
            schema = json!({"allOf": [schema], "nullable": true});
        } else {
            schema["nullable"] = json!(true);
        }
    }
    schema
}

fn entity_schema(entity: &EntityType) -> Json {
    let mut properties = Map::new();
    properties.insert("@odata.context".into(), json!({"type": "string"}));
    properties.insert("@odata.type".into(), json!({"type": "string"}));
    for p in entity.properties {
        properties.insert(p.name.into(), property_schema(p, false));
    }
    json!({"type": "object", "properties": properties})
}

/// The body a create or update accepts: writable properties, no others.
fn write_schema(entity: &EntityType) -> Json {
    let mut properties = Map::new();
    let mut accepted = vec![entity.type_annotation(), entity.qualified_name()];
    for other in entity.accepted_types {
        accepted.push(format!("#{other}"));
        accepted.push((*other).to_owned());
    }
    properties.insert(
        "@odata.type".into(),
        json!({"type": "string", "enum": accepted}),
    );
    for p in entity
        .properties
        .iter()
        .filter(|p| p.access == remediate_domain::model::Access::ReadWrite)
    {
        properties.insert(p.name.into(), property_schema(p, true));
    }
    for nav in entity.navigations.iter().filter(|n| n.bind) {
        properties.insert(
            format!("{}@odata.bind", nav.name),
            json!({"type": "string"}),
        );
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn collection_schema(item: &str) -> Json {
    json!({
        "type": "object",
        "required": ["value"],
        "properties": {
            "@odata.context": {"type": "string"},
            "@odata.count": {"type": "integer"},
            "@odata.nextLink": {"type": "string"},
            "value": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}
        }
    })
}

const ERROR_STATUSES: [&str; 14] = [
    "400", "401", "403", "404", "405", "408", "409", "413", "414", "415", "429", "503", "504",
    "507",
];

fn responses(success: &str, schema: Option<Json>, content_type: &str) -> Json {
    let mut map = Map::new();
    let mut ok = json!({"description": "Success"});
    if let Some(schema) = schema {
        ok["content"] = json!({content_type: {"schema": schema}});
    }
    map.insert(success.into(), ok);
    for status in ERROR_STATUSES {
        map.insert(
            status.into(),
            json!({"$ref": "#/components/responses/Error"}),
        );
    }
    map.insert(
        "431".into(),
        json!({"$ref": "#/components/responses/Error"}),
    );
    map.insert(
        "424".into(),
        json!({"$ref": "#/components/responses/Error"}),
    );
    Json::Object(map)
}

fn schema_ref(name: &str) -> Json {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn query_parameters(list: bool) -> Vec<Json> {
    let mut names = vec!["$select", "$expand"];
    if list {
        names.extend([
            "$filter",
            "$orderby",
            "$top",
            "$skip",
            "$count",
            "$skiptoken",
        ]);
    }
    names
        .into_iter()
        .map(|name| {
            let schema = match name {
                "$top" | "$skip" => json!({"type": "integer", "minimum": 0}),
                "$count" => json!({"type": "boolean"}),
                _ => json!({"type": "string"}),
            };
            json!({"name": name, "in": "query", "required": false, "schema": schema})
        })
        .collect()
}

fn path_parameter(name: &str) -> Json {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}})
}

fn operation(id: &str, params: Vec<Json>, body: Option<Json>, responses: Json) -> Json {
    let mut op = json!({"operationId": id, "parameters": params, "responses": responses});
    if let Some(body) = body {
        op["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": body}}});
    }
    op
}

/// The URL template of a collection and its path parameters (its ancestors' keys).
fn collection_path(c: &Collection) -> (String, Vec<Json>) {
    match c.parent {
        Parent::Root("") => (format!("/{}", c.segment), Vec::new()),
        Parent::Root(root) => (format!("/{root}/{}", c.segment), Vec::new()),
        Parent::Item(parent) => {
            let (path, mut params) = collection_path(parent);
            params.push(path_parameter(parent.key_param));
            (
                format!("{path}/{{{}}}/{}", parent.key_param, c.segment),
                params,
            )
        }
    }
}

fn generate() -> Json {
    let device = "microsoft.graph.managedDevice";
    let assignment = "microsoft.graph.deviceHealthScriptAssignment";
    let entity = |name: &str| Some(schema_ref(name));
    let list = |name: &str| Some(collection_schema(name));
    let write = |name: &str| Some(schema_ref(&format!("{name}.write")));
    let sid = || path_parameter("scriptId");
    let stid = || path_parameter("stateId");
    let did = || path_parameter("deviceId");
    let with = |mut base: Vec<Json>, extra: Vec<Json>| {
        base.extend(extra);
        base
    };
    let count = || {
        responses(
            "200",
            Some(json!({"type": "string", "pattern": "^[0-9]+$"})),
            "text/plain",
        )
    };
    let mut paths = Map::new();
    let mut add = |path: &str, method: &str, op: Json| {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = op;
    };
    let scripts = "/deviceManagement/deviceHealthScripts";
    // Every collection's list, create, count, get, update and delete, from its declaration.
    for c in ALL_COLLECTIONS {
        let (path, params) = collection_path(c);
        let (one, many) = c.names;
        let name = c.entity.qualified_name();
        let item = format!("{path}/{{{}}}", c.key_param);
        let mut item_params = params.clone();
        item_params.push(path_parameter(c.key_param));
        if c.list {
            add(
                &path,
                "get",
                operation(
                    &format!("list{many}"),
                    with(params.clone(), query_parameters(true)),
                    None,
                    responses("200", list(&name), "application/json"),
                ),
            );
            let filter = json!({"name": "$filter", "in": "query", "schema": {"type": "string"}});
            add(
                &format!("{path}/$count"),
                "get",
                operation(
                    &format!("count{many}"),
                    with(params.clone(), vec![filter]),
                    None,
                    count(),
                ),
            );
        }
        if c.create {
            add(
                &path,
                "post",
                operation(
                    &format!("create{one}"),
                    params.clone(),
                    write(&name),
                    responses("201", entity(&name), "application/json"),
                ),
            );
        }
        if c.read {
            add(
                &item,
                "get",
                operation(
                    &format!("get{one}"),
                    with(item_params.clone(), query_parameters(false)),
                    None,
                    responses("200", entity(&name), "application/json"),
                ),
            );
        }
        if c.update {
            add(
                &item,
                "patch",
                operation(
                    &format!("update{one}"),
                    item_params.clone(),
                    write(&name),
                    responses("200", entity(&name), "application/json"),
                ),
            );
        }
        if c.via.is_some() {
            // Collections of references change through `$ref`.
            let reference = json!({
                "type": "object", "required": ["@odata.id"], "additionalProperties": false,
                "properties": {"@odata.id": {"type": "string"}}
            });
            add(
                &format!("{path}/$ref"),
                "post",
                operation(
                    &format!("add{one}Ref"),
                    params.clone(),
                    Some(reference),
                    responses("204", None, ""),
                ),
            );
            add(
                &format!("{item}/$ref"),
                "delete",
                operation(
                    &format!("remove{one}Ref"),
                    item_params.clone(),
                    None,
                    responses("204", None, ""),
                ),
            );
        }
        if c.delete {
            add(
                &item,
                "delete",
                operation(
                    &format!("delete{one}"),
                    item_params,
                    None,
                    responses("204", None, ""),
                ),
            );
        }
    }
    let item = format!("{scripts}/{{scriptId}}");
    let states = format!("{item}/deviceRunStates");
    let state_item = format!("{states}/{{stateId}}");
    add(
        &format!("{state_item}/managedDevice"),
        "get",
        operation(
            "getRunStateDevice",
            with(vec![sid(), stid()], query_parameters(false)),
            None,
            responses("200", entity(device), "application/json"),
        ),
    );
    add(
        &format!("{item}/assign"),
        "post",
        operation(
            "assign",
            vec![sid()],
            Some(
                json!({"type": "object", "required": ["deviceHealthScriptAssignments"], "additionalProperties": false, "properties": {"deviceHealthScriptAssignments": {"type": "array", "items": schema_ref(&format!("{assignment}.write"))}}}),
            ),
            responses("200", list(assignment), "application/json"),
        ),
    );
    add(
        &format!("{item}/runSummary"),
        "get",
        operation(
            "getRunSummary",
            with(
                vec![sid()],
                vec![json!({"name": "$select", "in": "query", "schema": {"type": "string"}})],
            ),
            None,
            responses(
                "200",
                entity("microsoft.graph.deviceHealthScriptRunSummary"),
                "application/json",
            ),
        ),
    );
    add(
        &format!("{item}/getRemediationHistory()"),
        "get",
        operation(
            "getRemediationHistory",
            vec![sid()],
            None,
            responses("200", Some(json!({"type": "object"})), "application/json"),
        ),
    );
    add(
        &format!("{scripts}/getRemediationSummary()"),
        "get",
        operation(
            "getRemediationSummary",
            vec![],
            None,
            responses("200", Some(json!({"type": "object"})), "application/json"),
        ),
    );
    add(
        &format!("{scripts}/areGlobalScriptsAvailable()"),
        "get",
        operation(
            "areGlobalScriptsAvailable",
            vec![],
            None,
            responses(
                "200",
                Some(
                    json!({"type": "object", "properties": {"value": schema_ref("microsoft.graph.globalDeviceHealthScriptState")}}),
                ),
                "application/json",
            ),
        ),
    );
    add(
        &format!("{scripts}/enableGlobalScripts"),
        "post",
        operation(
            "enableGlobalScripts",
            vec![],
            None,
            responses("204", None, ""),
        ),
    );
    add(
        &format!("{item}/getGlobalScriptHighestAvailableVersion"),
        "post",
        operation(
            "getGlobalScriptHighestAvailableVersion",
            vec![sid()],
            None,
            responses(
                "200",
                Some(
                    json!({"type": "object", "properties": {"value": {"type": "string", "nullable": true}}}),
                ),
                "application/json",
            ),
        ),
    );
    add(
        &format!("{item}/updateGlobalScript"),
        "post",
        operation(
            "updateGlobalScript",
            vec![sid()],
            Some(
                json!({"type": "object", "required": ["version"], "additionalProperties": false, "properties": {"version": {"type": "string"}}}),
            ),
            responses("200", Some(json!({"type": "object"})), "application/json"),
        ),
    );
    let devices = "/deviceManagement/managedDevices";
    let device_item = format!("{devices}/{{deviceId}}");
    add(
        &format!("{device_item}/deviceHealthScriptStates"),
        "get",
        operation(
            "listDeviceScriptStates",
            vec![did()],
            None,
            responses(
                "200",
                list("microsoft.graph.deviceHealthScriptPolicyState"),
                "application/json",
            ),
        ),
    );
    add(
        &format!("{device_item}/initiateOnDemandProactiveRemediation"),
        "post",
        operation(
            "initiateOnDemandProactiveRemediation",
            vec![did()],
            Some(
                json!({"type": "object", "required": ["scriptPolicyId"], "additionalProperties": false, "properties": {"scriptPolicyId": {"type": "string", "minLength": 1}}}),
            ),
            responses("204", None, ""),
        ),
    );
    add(
        "/deviceManagement/assignmentFilters/validateFilter",
        "post",
        operation(
            "validateFilter",
            Vec::new(),
            Some(json!({
                "type": "object", "required": ["deviceAndAppManagementAssignmentFilter"],
                "additionalProperties": false,
                "properties": {"deviceAndAppManagementAssignmentFilter": {
                    "type": "object", "required": ["rule"], "properties": {"rule": {"type": "string"}}}}
            })),
            responses(
                "200",
                Some(json!({"type": "object", "required": ["isValidRule"],
                            "properties": {"isValidRule": {"type": "boolean"}}})),
                "application/json",
            ),
        ),
    );
    add(
        &format!("{device_item}/pendingOnDemandRemediations"),
        "get",
        operation(
            "listPendingOnDemandRemediations",
            vec![did()],
            None,
            responses(
                "200",
                Some(json!({"type": "object", "properties": {"value": {"type": "array"}}})),
                "application/json",
            ),
        ),
    );
    add(
        "/$batch",
        "post",
        operation(
            "batch",
            vec![],
            Some(
                json!({"type": "object", "required": ["requests"], "additionalProperties": false, "properties": {"requests": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "object", "required": ["id", "method", "url"], "properties": {"id": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}, "method": {"type": "string", "enum": ["GET", "POST", "PATCH", "PUT", "DELETE"]}, "url": {"type": "string", "minLength": 1, "pattern": "^/"}, "headers": {"type": "object", "additionalProperties": {"type": "string"}}, "body": {}, "dependsOn": {"type": "array", "items": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}}}}}}}),
            ),
            responses(
                "200",
                Some(
                    json!({"type": "object", "required": ["responses"], "properties": {"responses": {"type": "array"}}}),
                ),
                "application/json",
            ),
        ),
    );

    let mut schemas = Map::new();
    for e in ALL_ENUMS {
        let members: Vec<&str> = e.members.iter().map(|(n, _)| *n).collect();
        schemas.insert(
            format!("microsoft.graph.{}", e.name),
            json!({"type": "string", "enum": members}),
        );
    }
    for c in ALL_COLLECTIONS {
        schemas.insert(c.entity.qualified_name(), entity_schema(c.entity));
        if c.create || c.update {
            schemas.insert(
                format!("{}.write", c.entity.qualified_name()),
                write_schema(c.entity),
            );
        }
    }
    for entity in [&RUN_SUMMARY, &POLICY_STATE] {
        schemas.insert(entity.qualified_name(), entity_schema(entity));
    }
    schemas.insert("microsoft.graph.deviceAndAppManagementAssignmentTarget".into(), json!({
        "type": "object", "required": ["@odata.type"],
        "properties": {
            "@odata.type": {"type": "string", "enum": ["#microsoft.graph.allDevicesAssignmentTarget", "#microsoft.graph.allLicensedUsersAssignmentTarget", "#microsoft.graph.groupAssignmentTarget", "#microsoft.graph.exclusionGroupAssignmentTarget"]},
            "deviceAndAppManagementAssignmentFilterId": {"type": "string", "nullable": true},
            "deviceAndAppManagementAssignmentFilterType": schema_ref("microsoft.graph.deviceAndAppManagementAssignmentFilterType"),
            "groupId": {"type": "string"}
        }
    }));
    schemas.insert("microsoft.graph.deviceHealthScriptRunSchedule".into(), json!({
        "type": "object", "required": ["@odata.type"],
        "properties": {
            "@odata.type": {"type": "string", "enum": ["#microsoft.graph.deviceHealthScriptRunOnceSchedule", "#microsoft.graph.deviceHealthScriptHourlySchedule", "#microsoft.graph.deviceHealthScriptDailySchedule"]},
            "interval": {"type": "integer", "format": "int32"},
            "time": {"type": "string", "nullable": true},
            "useUtc": {"type": "boolean"},
            "date": {"type": "string", "format": "date", "nullable": true}
        }
    }));
    schemas.insert("microsoft.graph.deviceHealthScriptParameter".into(), json!({
        "type": "object", "required": ["@odata.type"],
        "properties": {
            "@odata.type": {"type": "string", "enum": ["#microsoft.graph.deviceHealthScriptStringParameter", "#microsoft.graph.deviceHealthScriptIntegerParameter", "#microsoft.graph.deviceHealthScriptBooleanParameter"]},
            "name": {"type": "string", "nullable": true},
            "description": {"type": "string", "nullable": true},
            "isRequired": {"type": "boolean"},
            "applyDefaultValueWhenNotAssigned": {"type": "boolean"},
            "defaultValue": {"nullable": true}
        }
    }));
    schemas.insert("microsoft.graph.ODataError".into(), json!({
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message", "innerError"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "innerError": {"type": "object", "required": ["date", "request-id", "client-request-id"], "properties": {
                "date": {"type": "string"}, "request-id": {"type": "string"}, "client-request-id": {"type": "string"}}}}}}
    }));
    json!({
        "openapi": "3.0.3",
        "info": {"title": "remediate: Microsoft Graph (beta) for Intune Remediations", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/beta"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas,
            "responses": {"Error": {"description": "A Graph error", "content": {"application/json": {"schema": schema_ref("microsoft.graph.ODataError")}}}}
        }
    })
}

pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_string_pretty(&generate()).unwrap_or_default())
}

pub fn response() -> ApiResponse {
    ApiResponse {
        status: http::StatusCode::OK,
        headers: Vec::new(),
        body: crate::respond::Body::Json(document().as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_documents_the_error_statuses() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 20);
        for (path, methods) in paths {
            for (method, op) in methods.as_object().unwrap() {
                for status in ["400", "401", "403", "404", "503"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }
}
