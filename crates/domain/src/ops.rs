//! Domain rules for new and changed entities: server-assigned ids and timestamps, required
//! properties, and the rules Intune enforces on scripts.

use crate::model::{
    ALL_DEVICES_GROUP, ALL_USERS_GROUP, DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
    DEVICE_RUN_STATE, MANAGED_DEVICE,
};
use crate::write::Write;
use crate::{new_id, Instant, Record, Value};

/// A rule violated by a request; answered with 400 and this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

fn apply(record: &mut Record, fields: Vec<(usize, Value)>) {
    for (index, value) in fields {
        record.values[index] = value;
    }
}

fn check_script_fields(fields: &[(usize, Value)], creating: bool) -> Result<(), RuleError> {
    let detection = DEVICE_HEALTH_SCRIPT.index("detectionScriptContent");
    let global = DEVICE_HEALTH_SCRIPT.index("isGlobalScript");
    let content = fields.iter().find(|(i, _)| *i == detection).map(|(_, v)| v);
    match content {
        None if creating => {
            return Err(RuleError(
                "The property 'detectionScriptContent' is required and must not be null or empty."
                    .into(),
            ))
        }
        Some(Value::Null) => {
            return Err(RuleError(
                "The property 'detectionScriptContent' must not be null or empty.".into(),
            ))
        }
        Some(Value::Bin(b)) if b.is_empty() => {
            return Err(RuleError(
                "The property 'detectionScriptContent' must not be null or empty.".into(),
            ))
        }
        _ => {}
    }
    if fields
        .iter()
        .any(|(i, v)| *i == global && *v == Value::Bool(true))
    {
        return Err(RuleError(
            "The property 'isGlobalScript' cannot be set to true: global scripts are authored by Microsoft and remediate serves none."
                .into(),
        ));
    }
    Ok(())
}

pub fn create_script(fields: Vec<(usize, Value)>) -> Result<Write, RuleError> {
    check_script_fields(&fields, true)?;
    let mut record = Record::with_defaults(&DEVICE_HEALTH_SCRIPT);
    apply(&mut record, fields);
    let now = Instant::now();
    record.set("id", Value::Str(new_id()));
    record.set("version", Value::Str("1".into()));
    record.set("createdDateTime", Value::Time(now));
    record.set("lastModifiedDateTime", Value::Time(now));
    Ok(Write::CreateScript { record })
}

pub fn update_script(id: String, fields: Vec<(usize, Value)>) -> Result<Write, RuleError> {
    check_script_fields(&fields, false)?;
    Ok(Write::UpdateScript {
        id,
        changes: fields,
    })
}

/// A new run state of `script_id`; bound states get the id `{scriptId}:{managedDeviceId}`.
pub fn create_run_state(
    script_id: String,
    fields: Vec<(usize, Value)>,
    device_id: Option<String>,
) -> Write {
    let mut record = Record::with_defaults(&DEVICE_RUN_STATE);
    apply(&mut record, fields);
    let id = match &device_id {
        Some(device) => format!("{script_id}:{device}"),
        None => new_id(),
    };
    record.set("id", Value::Str(id));
    record.parent = Some(script_id);
    record.device_id = device_id;
    Write::CreateRunState { record }
}

pub fn create_device(fields: Vec<(usize, Value)>) -> Write {
    let mut record = Record::with_defaults(&MANAGED_DEVICE);
    apply(&mut record, fields);
    record.set("id", Value::Str(new_id()));
    Write::CreateDevice { record }
}

/// The group id an assignment target addresses (pseudo-groups for all devices and all users).
fn target_group(target: &Value) -> Result<String, RuleError> {
    let Value::Json(text) = target else {
        return Err(RuleError(
            "The property 'target' is required for a deviceHealthScriptAssignment.".into(),
        ));
    };
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| RuleError(format!("The assignment target is not valid JSON: {e}.")))?;
    let kind = json["@odata.type"].as_str().unwrap_or("");
    match kind {
        "#microsoft.graph.allDevicesAssignmentTarget" => Ok(ALL_DEVICES_GROUP.to_owned()),
        "#microsoft.graph.allLicensedUsersAssignmentTarget" => Ok(ALL_USERS_GROUP.to_owned()),
        _ => json["groupId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| RuleError("The assignment target needs a 'groupId'.".into())),
    }
}

/// A new assignment of `script_id`, with the id `{scriptId}:{groupId}` as Intune forms it.
pub fn assignment_record(
    script_id: &str,
    fields: Vec<(usize, Value)>,
) -> Result<Record, RuleError> {
    let mut record = Record::with_defaults(&DEVICE_HEALTH_SCRIPT_ASSIGNMENT);
    apply(&mut record, fields);
    let group = target_group(record.get("target"))?;
    record.set("id", Value::Str(format!("{script_id}:{group}")));
    record.parent = Some(script_id.to_owned());
    Ok(record)
}

pub fn create_assignment(script_id: &str, fields: Vec<(usize, Value)>) -> Result<Write, RuleError> {
    Ok(Write::CreateAssignment {
        record: assignment_record(script_id, fields)?,
    })
}

/// PATCH of an assignment: the target may change its filter but not its group (the group is the id).
pub fn update_assignment(
    script_id: String,
    id: String,
    fields: Vec<(usize, Value)>,
) -> Result<Write, RuleError> {
    let target = DEVICE_HEALTH_SCRIPT_ASSIGNMENT.index("target");
    if let Some((_, value)) = fields.iter().find(|(i, _)| *i == target) {
        let group = target_group(value)?;
        if format!("{script_id}:{group}") != id {
            return Err(RuleError(format!(
                "The target's group '{group}' differs from this assignment's ('{id}'); assign the new group with POST or the assign action."
            )));
        }
    }
    Ok(Write::UpdateAssignment {
        script_id,
        id,
        changes: fields,
    })
}

/// The `assign` action: the full new set; two assignments of the same group are a 400.
pub fn assign(script_id: &str, items: Vec<Vec<(usize, Value)>>) -> Result<Write, RuleError> {
    let mut records: Vec<Record> = Vec::with_capacity(items.len());
    for (i, fields) in items.into_iter().enumerate() {
        let record = assignment_record(script_id, fields)
            .map_err(|e| RuleError(format!("deviceHealthScriptAssignments[{i}]: {}", e.0)))?;
        if records.iter().any(|r| r.id() == record.id()) {
            return Err(RuleError(format!(
                "deviceHealthScriptAssignments[{i}] targets the same group as an earlier item ('{}').",
                record.id()
            )));
        }
        records.push(record);
    }
    Ok(Write::Assign {
        script_id: script_id.to_owned(),
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_need_detection_content_and_cannot_be_global() {
        assert!(create_script(vec![])
            .unwrap_err()
            .0
            .contains("detectionScriptContent"));
        let content = DEVICE_HEALTH_SCRIPT.index("detectionScriptContent");
        assert!(create_script(vec![(content, Value::Bin(vec![]))]).is_err());
        let global = DEVICE_HEALTH_SCRIPT.index("isGlobalScript");
        assert!(create_script(vec![
            (content, Value::Bin(b"x".to_vec())),
            (global, Value::Bool(true))
        ])
        .is_err());
        let Write::CreateScript { record } =
            create_script(vec![(content, Value::Bin(b"x".to_vec()))]).unwrap()
        else {
            panic!("expected a create")
        };
        assert_eq!(record.get("version"), &Value::Str("1".into()));
        assert_eq!(
            record.get("roleScopeTagIds"),
            &Value::StrList(vec!["0".into()])
        );
    }

    #[test]
    fn bound_run_states_get_composite_ids_and_defaults() {
        let Write::CreateRunState { record } =
            create_run_state("s1".into(), vec![], Some("d1".into()))
        else {
            panic!("expected a create")
        };
        assert_eq!(record.id(), "s1:d1");
        assert_eq!(record.get("detectionState"), &Value::Enum(0));
        assert_eq!(record.get("lastSyncDateTime"), &Value::Time(Instant::MIN));
        assert_eq!(record.get("expectedStateUpdateDateTime"), &Value::Null);
    }
}
