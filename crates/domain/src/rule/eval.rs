//! Evaluation of a checked syntax tree over the [`DeviceFacts`] of one device: comparisons,
//! `-any`/`-all`, null semantics, versions, and each dialect's spelling of enum values.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::parser::{parse_version, Node, Operand};
use super::properties::{Op, Prop};
use super::DeviceFacts;
use Op::*;

/// Whether `device` satisfies the rule whose syntax tree is `node`.
pub(super) fn eval(node: &Node, device: &DeviceFacts) -> bool {
    match node {
        Node::And(items) => items.iter().all(|n| eval(n, device)),
        Node::Or(items) => items.iter().any(|n| eval(n, device)),
        Node::Not(inner) => !eval(inner, device),
        Node::Cmp { prop, op, operand } => test(*op, operand, read(*prop, device).as_deref()),
        Node::Quant {
            prop,
            all,
            op,
            operand,
        } => {
            let items: &[String] = match prop {
                Prop::PhysicalIds => &device.physical_ids,
                Prop::MemberOf => &device.member_of,
                _ => &[],
            };
            let mut results = items.iter().map(|item| test(*op, operand, Some(item)));
            if *all {
                results.all(|r| r)
            } else {
                results.any(|r| r)
            }
        }
    }
}

/// One comparison: negated operators are the exact negation of their positive form (so a null
/// value satisfies `-ne "x"`, `-notContains "x"`, `-notIn [...]`).
fn test(op: Op, operand: &Operand, value: Option<&str>) -> bool {
    if let Some(positive) = op.negates() {
        return !test(positive, operand, value);
    }
    let Some(value) = value else {
        return op == Eq && matches!(operand, Operand::Null);
    };
    match operand {
        Operand::Null => false,
        Operand::Text(want) => {
            let have = value.to_lowercase();
            match op {
                Eq => have == *want,
                StartsWith => have.starts_with(want.as_str()),
                EndsWith => have.ends_with(want.as_str()),
                Contains => have.contains(want.as_str()),
                _ => false,
            }
        }
        Operand::List(items) => {
            let have = value.to_lowercase();
            op == In && items.contains(&have)
        }
        Operand::Regex(re) => op == Match && re.is_match(value),
        Operand::Version(want) => {
            let Some(have) = device_version(value) else {
                return false;
            };
            let order = compare_versions(&have, want);
            match op {
                Eq => order.is_eq(),
                Gt => order.is_gt(),
                Ge => order.is_ge(),
                Lt => order.is_lt(),
                Le => order.is_le(),
                _ => false,
            }
        }
    }
}

/// The value a property reads, in the spelling of its dialect.
fn read(prop: Prop, d: &DeviceFacts) -> Option<Cow<'_, str>> {
    fn text(value: &Option<String>) -> Option<Cow<'_, str>> {
        value.as_deref().map(Cow::Borrowed)
    }
    fn flag(value: Option<bool>) -> Option<Cow<'static, str>> {
        value.map(|b| Cow::Borrowed(if b { "true" } else { "false" }))
    }
    let renamed = |value: &Option<String>, names: &[(&str, Option<&'static str>)]| {
        let v = value.as_deref()?;
        match names
            .iter()
            .find(|(member, _)| member.eq_ignore_ascii_case(v))
        {
            Some((_, spelled)) => spelled.map(Cow::Borrowed),
            None => Some(Cow::Owned(v.to_owned())),
        }
    };
    match prop {
        Prop::DeviceName => text(&d.device_name),
        Prop::DeviceId => text(&d.device_id),
        Prop::ObjectId => text(&d.object_id),
        Prop::EntraOsType => renamed(&d.operating_system, &[("macOS", Some("MacMDM"))]),
        Prop::OsVersion => text(&d.os_version),
        Prop::Manufacturer => text(&d.manufacturer),
        Prop::Model => text(&d.model),
        Prop::EntraOwnership => renamed(
            &d.ownership,
            &[
                ("company", Some("Company")),
                ("personal", Some("Personal")),
                ("unknown", Some("Unknown")),
                ("unknownFutureValue", Some("Unknown")),
            ],
        ),
        Prop::FilterOwnership => renamed(
            &d.ownership,
            &[
                ("company", Some("Corporate")),
                ("personal", Some("Personal")),
                ("unknown", Some("Unknown")),
                ("unknownFutureValue", Some("Unknown")),
            ],
        ),
        Prop::EntraTrustType => renamed(
            &d.join_type,
            &[
                ("azureADJoined", Some("AzureAD")),
                ("hybridAzureADJoined", Some("ServerAD")),
                ("azureADRegistered", Some("Workplace")),
                ("unknown", None),
            ],
        ),
        Prop::FilterTrustType => renamed(
            &d.join_type,
            &[
                ("azureADJoined", Some("Azure AD joined")),
                ("hybridAzureADJoined", Some("Hybrid Azure AD joined")),
                ("azureADRegistered", Some("Azure AD registered")),
                ("unknown", Some("Unknown")),
            ],
        ),
        Prop::ManagementType => text(&d.management_type),
        Prop::ManagementAppId => text(&d.device_management_app_id),
        Prop::EnrollmentProfileName => text(&d.enrollment_profile_name),
        Prop::DeviceCategory => text(&d.device_category),
        Prop::AccountEnabled => flag(d.account_enabled),
        Prop::IsRooted => flag(d.is_rooted),
        Prop::ProfileType => text(&d.profile_type),
        Prop::SystemLabels => text(&d.system_labels),
        Prop::ExtensionAttribute(i) => d.extension_attributes.get(i).and_then(text),
        Prop::CpuArchitecture => text(&d.cpu_architecture),
        Prop::OperatingSystemSku => text(&d.operating_system_sku),
        Prop::DeviceManagementType => text(&d.device_management_type),
        Prop::PhysicalIds | Prop::MemberOf => None,
    }
}

/// A device's version: the dotted numbers before any space or parenthesis ("14.2.1 (23C71)").
fn device_version(text: &str) -> Option<Vec<u64>> {
    let head = text
        .trim()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    parse_version(head)
}

fn compare_versions(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            x.cmp(&y)
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}
