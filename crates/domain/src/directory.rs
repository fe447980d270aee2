//! Domain rules of the neighbours of deviceHealthScripts (role scope tags, groups, assignment
//! filters) and targeting: which scripts apply to a device, from its group memberships (static
//! and dynamic), the assignment targets and exclusions, and each assignment's filter evaluated
//! against the device's properties (`crate::rule`, one engine for groups and filters).

use std::collections::HashMap;

use crate::collections::{Collection, CollectionId};
use crate::model::{ALL_DEVICES_GROUP, ASSIGNMENT_FILTER, GROUP, ROLE_SCOPE_TAG};
use crate::ops::RuleError;
use crate::rule::{self, DeviceFacts, Dialect, Rule};
use crate::write::Write;
use crate::{new_id, Instant, Record, Value};

/// The id of the built-in `Default` role scope tag, which every tenant has.
pub const DEFAULT_SCOPE_TAG: &str = "0";
/// `groupTypes` member that makes a group's membership computed from its rule.
pub const DYNAMIC_MEMBERSHIP: &str = "DynamicMembership";
/// The all-zero filter id the real service writes for "no filter".
pub const NO_FILTER: &str = "00000000-0000-0000-0000-000000000000";

/// A create in one of the collections without statements of their own.
pub fn create(of: &'static Collection, fields: Vec<(usize, Value)>) -> Result<Write, RuleError> {
    let mut record = Record::with_defaults(of.entity);
    for (index, value) in fields {
        record.values[index] = value;
    }
    record.set("id", Value::Str(new_id()));
    let now = Value::Time(Instant::now());
    for name in ["createdDateTime", "lastModifiedDateTime"] {
        if of.entity.property(name).is_some() {
            record.set(name, now.clone());
        }
    }
    if of.id == CollectionId::Groups && is_dynamic(&record) {
        if let Value::Null = record.get("membershipRuleProcessingState") {
            record.set("membershipRuleProcessingState", Value::Str("On".into()));
        }
    }
    check(&record)?;
    Ok(Write::Create { of, record })
}

/// A change of an item; the whole record is checked again by storage ([`check`]) once merged.
pub fn update(
    of: &'static Collection,
    keys: &[String],
    changes: Vec<(usize, Value)>,
) -> Result<Write, RuleError> {
    refuse_builtin(of, keys, "changed")?;
    Ok(Write::Update {
        of,
        keys: keys.to_vec(),
        changes,
    })
}

pub fn delete(of: &'static Collection, keys: &[String]) -> Result<Write, RuleError> {
    refuse_builtin(of, keys, "deleted")?;
    Ok(Write::Delete {
        of,
        keys: keys.to_vec(),
    })
}

fn refuse_builtin(of: &Collection, keys: &[String], what: &str) -> Result<(), RuleError> {
    if of.id == CollectionId::RoleScopeTags
        && keys.last().map(String::as_str) == Some(DEFAULT_SCOPE_TAG)
    {
        return Err(RuleError(format!(
            "The built-in roleScopeTag 'Default' (id '0') cannot be {what}."
        )));
    }
    Ok(())
}

fn text(record: &Record, name: &str) -> Option<String> {
    match record.get(name) {
        Value::Str(s) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn required(record: &Record, name: &str) -> Result<String, RuleError> {
    text(record, name).ok_or_else(|| {
        RuleError(format!(
            "The property '{name}' is required for a {} and must not be empty.",
            record.entity.name
        ))
    })
}

/// Is the group's membership computed from its rule?
pub fn is_dynamic(group: &Record) -> bool {
    matches!(group.get("groupTypes"), Value::StrList(types) if types.iter().any(|t| t.eq_ignore_ascii_case(DYNAMIC_MEMBERSHIP)))
}

/// The rules of a whole record (after a create, or a change merged into the stored record).
pub fn check(record: &Record) -> Result<(), RuleError> {
    let entity = record.entity;
    if std::ptr::eq(entity, &ROLE_SCOPE_TAG) {
        required(record, "displayName")?;
    } else if std::ptr::eq(entity, &ASSIGNMENT_FILTER) {
        required(record, "displayName")?;
        let rule = required(record, "rule")?;
        parse_rule(&rule, Dialect::Filter, "rule")?;
    } else if std::ptr::eq(entity, &GROUP) {
        check_group(record)?;
    }
    Ok(())
}

fn check_group(record: &Record) -> Result<(), RuleError> {
    required(record, "displayName")?;
    required(record, "mailNickname")?;
    if record.get("mailEnabled") == &Value::Bool(true) {
        return Err(RuleError(
            "Mail-enabled groups cannot be created or changed here: 'mailEnabled' must be false (remediate serves security groups)."
                .into(),
        ));
    }
    if let Value::StrList(types) = record.get("groupTypes") {
        if let Some(bad) = types
            .iter()
            .find(|t| !t.eq_ignore_ascii_case(DYNAMIC_MEMBERSHIP) && t.as_str() != "Unified")
        {
            return Err(RuleError(format!(
                "The groupTypes value '{bad}' is not supported; use 'DynamicMembership' or 'Unified'."
            )));
        }
    }
    let rule = text(record, "membershipRule");
    let state = text(record, "membershipRuleProcessingState");
    if is_dynamic(record) {
        let Some(rule) = rule else {
            return Err(RuleError(
                "A group whose groupTypes include 'DynamicMembership' needs a 'membershipRule'."
                    .into(),
            ));
        };
        parse_rule(&rule, Dialect::Membership, "membershipRule")?;
        if let Some(state) = state {
            if state != "On" && state != "Paused" {
                return Err(RuleError(format!(
                    "The membershipRuleProcessingState '{state}' is not valid; use 'On' or 'Paused'."
                )));
            }
        }
    } else if rule.is_some() {
        return Err(RuleError(
            "'membershipRule' may only be set on a group whose groupTypes include 'DynamicMembership'."
                .into(),
        ));
    }
    Ok(())
}

/// Parse a rule, naming the property that holds it in the message.
pub fn parse_rule(text: &str, dialect: Dialect, property: &str) -> Result<Rule, RuleError> {
    rule::parse(text, dialect)
        .map_err(|e| RuleError(format!("The '{property}' is not valid: {}", e.message)))
}

/// Is the device a member of the dynamic group? (A paused or non-dynamic group: no.)
pub fn dynamic_member(group: &Record, facts: &DeviceFacts) -> bool {
    if !is_dynamic(group)
        || text(group, "membershipRuleProcessingState").as_deref() == Some("Paused")
    {
        return false;
    }
    let Some(text) = text(group, "membershipRule") else {
        return false;
    };
    rule::parse(&text, Dialect::Membership).is_ok_and(|r| r.matches(facts))
}

/// The filter id and mode an assignment target names (`None` without a filter).
pub fn target_filter(target: &serde_json::Value) -> Option<(String, bool)> {
    let id = target["deviceAndAppManagementAssignmentFilterId"].as_str()?;
    if id.is_empty() || id == NO_FILTER {
        return None;
    }
    match target["deviceAndAppManagementAssignmentFilterType"].as_str() {
        Some("include") => Some((id.to_owned(), true)),
        Some("exclude") => Some((id.to_owned(), false)),
        _ => None,
    }
}

/// Everything targeting reads of one device.
#[derive(Debug, Clone, Default)]
pub struct DeviceTargeting {
    /// The groups the device is a member of (static and dynamic).
    pub groups: Vec<String>,
    pub facts: DeviceFacts,
    /// Has the device a primary user (`userPrincipalName`)?
    pub has_user: bool,
    /// Rules of the assignment filters of the tenant, by id (unparseable ones are absent).
    pub filters: HashMap<String, Rule>,
}

/// The scripts that apply to a device: some assignment includes it (all devices, or a group it
/// is a member of, and the assignment's filter — if any — lets it through) and no exclusion
/// assignment of the same script names a group it is a member of. `assignments` are
/// (script id, target JSON). An include filter naming a filter that no longer exists lets no
/// device through; an exclude filter naming one lets every device through.
pub fn visible_scripts(assignments: &[(String, String)], device: &DeviceTargeting) -> Vec<String> {
    let member = |group: &str| device.groups.iter().any(|g| g == group);
    let passes = |target: &serde_json::Value| match target_filter(target) {
        None => true,
        Some((id, include)) => match device.filters.get(&id) {
            Some(rule) => rule.matches(&device.facts) == include,
            None => !include,
        },
    };
    let mut included: Vec<String> = Vec::new();
    let mut excluded: Vec<&str> = Vec::new();
    for (script, target) in assignments {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(target) else {
            continue;
        };
        let group = json["groupId"].as_str().unwrap_or("");
        match json["@odata.type"].as_str().unwrap_or("") {
            "#microsoft.graph.allDevicesAssignmentTarget" if passes(&json) => {
                included.push(script.clone())
            }
            // remediate has no users: a device is "licensed" when it has a primary user.
            "#microsoft.graph.allLicensedUsersAssignmentTarget"
                if device.has_user && passes(&json) =>
            {
                included.push(script.clone())
            }
            "#microsoft.graph.groupAssignmentTarget"
                if (member(group) || group == ALL_DEVICES_GROUP) && passes(&json) =>
            {
                included.push(script.clone())
            }
            "#microsoft.graph.exclusionGroupAssignmentTarget" if member(group) => {
                excluded.push(script)
            }
            _ => {}
        }
    }
    included.retain(|s| !excluded.contains(&s.as_str()));
    included.sort();
    included.dedup();
    included
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_see_scripts_assigned_to_them_minus_exclusions_and_filtered() {
        let all = r##"{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}"##.to_owned();
        let target = |kind: &str, id: &str| {
            format!(r##"{{"@odata.type":"#microsoft.graph.{kind}","groupId":"{id}"}}"##)
        };
        let filtered = |mode: &str| {
            format!(
                r##"{{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget","deviceAndAppManagementAssignmentFilterId":"f","deviceAndAppManagementAssignmentFilterType":"{mode}"}}"##
            )
        };
        let assignments = vec![
            ("a".to_owned(), all.clone()),
            ("b".to_owned(), target("groupAssignmentTarget", "g1")),
            ("c".to_owned(), target("groupAssignmentTarget", "g2")),
            ("d".to_owned(), all),
            (
                "d".to_owned(),
                target("exclusionGroupAssignmentTarget", "g1"),
            ),
            ("e".to_owned(), filtered("include")),
            ("f".to_owned(), filtered("exclude")),
            (
                "g".to_owned(),
                r##"{"@odata.type":"#microsoft.graph.allLicensedUsersAssignmentTarget"}"##
                    .to_owned(),
            ),
        ];
        let rule =
            parse_rule(r#"device.manufacturer -eq "Dell""#, Dialect::Filter, "rule").unwrap();
        let dell = DeviceTargeting {
            groups: vec!["g1".into()],
            facts: DeviceFacts {
                manufacturer: Some("Dell".into()),
                ..DeviceFacts::default()
            },
            has_user: true,
            filters: HashMap::from([("f".to_owned(), rule)]),
        };
        assert_eq!(visible_scripts(&assignments, &dell), ["a", "b", "e", "g"]);
        let other = DeviceTargeting {
            filters: dell.filters.clone(),
            ..DeviceTargeting::default()
        };
        assert_eq!(visible_scripts(&assignments, &other), ["a", "d", "f"]);
        // A filter that no longer exists: includes nobody, excludes nobody.
        let orphan = DeviceTargeting::default();
        assert_eq!(visible_scripts(&assignments, &orphan), ["a", "d", "f"]);
    }

    #[test]
    fn groups_need_consistent_dynamic_settings() {
        let group = |fields: Vec<(&str, Value)>| {
            let mut record = Record::with_defaults(&GROUP);
            record.set("displayName", Value::Str("g".into()));
            record.set("mailNickname", Value::Str("g".into()));
            for (name, value) in fields {
                record.set(name, value);
            }
            record
        };
        let dynamic = Value::StrList(vec![DYNAMIC_MEMBERSHIP.into()]);
        assert!(check(&group(vec![])).is_ok());
        let no_rule = check(&group(vec![("groupTypes", dynamic.clone())])).unwrap_err();
        assert!(no_rule.0.contains("membershipRule"), "{}", no_rule.0);
        let stray = check(&group(vec![(
            "membershipRule",
            Value::Str("device.displayName -eq \"x\"".into()),
        )]));
        assert!(stray.unwrap_err().0.contains("DynamicMembership"));
        let bad = check(&group(vec![
            ("groupTypes", dynamic),
            (
                "membershipRule",
                Value::Str("device.colour -eq \"x\"".into()),
            ),
        ]));
        assert!(bad.unwrap_err().0.contains("device.colour"));
        let mail = check(&group(vec![("mailEnabled", Value::Bool(true))]));
        assert!(mail.unwrap_err().0.contains("mailEnabled"));
    }

    /// Storage skips re-evaluating memberships when no rule input changed: the list must name
    /// every property the facts read.
    #[test]
    fn rule_inputs_name_every_property_the_facts_read() {
        use crate::model::MANAGED_DEVICE;
        let base = Record::with_defaults(&MANAGED_DEVICE);
        let facts = |r: &Record| format!("{:?}", DeviceFacts::of_managed_device(r, "x"));
        for (i, p) in MANAGED_DEVICE.properties.iter().enumerate() {
            let mut changed = base.clone();
            changed.values[i] = match (&p.kind, &base.values[i]) {
                (crate::model::Kind::String, _) => Value::Str("changed".into()),
                (crate::model::Kind::Enum(e), _) => {
                    Value::Enum(e.members.last().map_or(1, |(_, v)| *v))
                }
                _ => continue,
            };
            if facts(&changed) != facts(&base) {
                assert!(
                    crate::rule::MANAGED_DEVICE_RULE_INPUTS.contains(&p.name),
                    "{} changes the facts but is not a rule input",
                    p.name
                );
            }
        }
    }
}
