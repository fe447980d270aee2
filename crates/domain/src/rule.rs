//! One rule engine for two dialects over the properties of a device: Entra dynamic membership
//! rules of device groups (`group.membershipRule`) and Intune assignment filter rules
//! (`deviceAndAppManagementAssignmentFilter.rule`).
//!
//! [`parse`] checks a rule completely (properties, operators, value types, regular expressions,
//! length and nesting limits) and returns a [`Rule`] that [`Rule::matches`] evaluates against the
//! [`DeviceFacts`] of one device without further failure. The grammar, the operators and
//! properties of each dialect and what evaluates as null are documented in `docs/rules.md`.

use std::fmt;

use crate::model::Kind;
use crate::value::{Record, Value};
use parser::Node;

mod eval;
mod lexer;
mod parser;
mod properties;
#[cfg(test)]
mod tests;

/// The longest rule accepted, in characters (Entra's limit for a membership rule).
pub const MAX_RULE_CHARS: usize = 3072;
/// The deepest nesting of parentheses, `-not` and `-any`/`-all` conditions accepted.
pub const MAX_DEPTH: usize = 64;
/// `deviceManagementAppId` of a device managed by Intune.
const INTUNE_APP_ID: &str = "0000000a-0000-0000-c000-000000000000";
/// `deviceManagementAppId` of a device co-managed by Configuration Manager.
const CONFIGMGR_APP_ID: &str = "54b943f8-d761-4f8d-951e-9cea1846db5a";

/// Which rule language a text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Entra dynamic membership rule of a device group (`device.displayName -startsWith "LAB-"`).
    Membership,
    /// Intune assignment filter rule for managed devices (`(device.deviceName -startsWith "LAB")`).
    Filter,
}

/// A rule that cannot be parsed: `message` is one complete sentence naming what is wrong and
/// where; `position` is the 0-based character offset it refers to, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSyntaxError {
    pub message: String,
    pub position: Option<usize>,
}

impl fmt::Display for RuleSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleSyntaxError {}

fn error(position: usize, message: String) -> RuleSyntaxError {
    RuleSyntaxError {
        message,
        position: Some(position),
    }
}

/// A parsed, fully checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    dialect: Dialect,
    root: Node,
}

impl Rule {
    /// Whether `device` satisfies the rule.
    pub fn matches(&self, device: &DeviceFacts) -> bool {
        eval::eval(&self.root, device)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Everything a rule may read of a device, in canonical form.
///
/// Text is kept as stored (comparisons ignore case); `None` is null. Two fields hold the member
/// names of `managedDevice` enums and each dialect spells them its own way: see [`ownership`]
/// and [`join_type`].
///
/// [`ownership`]: DeviceFacts::ownership
/// [`join_type`]: DeviceFacts::join_type
#[derive(Debug, Clone, Default)]
pub struct DeviceFacts {
    /// `managedDevice.deviceName`: Entra `displayName`, filter `deviceName`.
    pub device_name: Option<String>,
    /// The Entra device id (`managedDevice.azureADDeviceId`): Entra `deviceId`.
    pub device_id: Option<String>,
    /// The object id of the Entra `device`: Entra `objectId`.
    pub object_id: Option<String>,
    /// `managedDevice.operatingSystem` ("Windows", "macOS", "iOS", "Android", "Linux"): Entra
    /// `deviceOSType`, which reads "macOS" as "MacMDM" (the type Entra records for Intune Macs).
    pub operating_system: Option<String>,
    /// `managedDevice.osVersion`: Entra `deviceOSVersion`, filter `osVersion` and (compared as a
    /// version) filter `operatingSystemVersion`.
    pub os_version: Option<String>,
    /// `managedDevice.manufacturer`: Entra `deviceManufacturer`, filter `manufacturer`.
    pub manufacturer: Option<String>,
    /// `managedDevice.model`: Entra `deviceModel`, filter `model`.
    pub model: Option<String>,
    /// `managedDevice.ownerType` member name ("company", "personal", "unknown"): `deviceOwnership`,
    /// which Entra reads as Company/Personal/Unknown and filters as Corporate/Personal/Unknown.
    pub ownership: Option<String>,
    /// `managedDevice.joinType` member name ("azureADJoined", "azureADRegistered",
    /// "hybridAzureADJoined", "unknown"): `deviceTrustType`, which Entra reads as
    /// AzureAD/Workplace/ServerAD (unknown: null) and filters as "Azure AD joined",
    /// "Azure AD registered", "Hybrid Azure AD joined", "Unknown".
    pub join_type: Option<String>,
    /// Entra `managementType` ("MDM" for a managed device).
    pub management_type: Option<String>,
    /// Entra `deviceManagementAppId`.
    pub device_management_app_id: Option<String>,
    /// Entra and filter `enrollmentProfileName`.
    pub enrollment_profile_name: Option<String>,
    /// Entra and filter `deviceCategory`.
    pub device_category: Option<String>,
    /// Entra `accountEnabled`.
    pub account_enabled: Option<bool>,
    /// Entra and filter `isRooted`.
    pub is_rooted: Option<bool>,
    /// Entra `profileType`.
    pub profile_type: Option<String>,
    /// Entra `systemLabels`.
    pub system_labels: Option<String>,
    /// Entra `extensionAttribute1` … `extensionAttribute15` (index 0 is `extensionAttribute1`).
    pub extension_attributes: [Option<String>; 15],
    /// Filter `cpuArchitecture`.
    pub cpu_architecture: Option<String>,
    /// Filter `operatingSystemSKU`.
    pub operating_system_sku: Option<String>,
    /// Filter `deviceManagementType`.
    pub device_management_type: Option<String>,
    /// Entra `devicePhysicalIds` (read only through `-any`/`-all`).
    pub physical_ids: Vec<String>,
    /// Object ids of the groups the device is a direct member of: Entra `memberOf`.
    pub member_of: Vec<String>,
}

/// The managedDevice properties [`DeviceFacts::of_managed_device`] reads: a change of any other
/// property cannot change what a rule says of the device.
pub const MANAGED_DEVICE_RULE_INPUTS: &[&str] = &[
    "deviceName",
    "azureADDeviceId",
    "operatingSystem",
    "osVersion",
    "manufacturer",
    "model",
    "ownerType",
    "managedDeviceOwnerType",
    "joinType",
    "managementAgent",
];

impl DeviceFacts {
    /// From a stored managedDevice record (entity `crate::model::MANAGED_DEVICE`) and the object id of its Entra `device`.
    ///
    /// Empty strings are null; what a managedDevice does not hold is null (or empty).
    pub fn of_managed_device(device: &Record, object_id: &str) -> DeviceFacts {
        let owner = enum_member(device, "ownerType")
            .filter(|m| !is_unknown(m))
            .or_else(|| enum_member(device, "managedDeviceOwnerType").filter(|m| !is_unknown(m)))
            .unwrap_or("unknown");
        let co_managed = enum_member(device, "managementAgent")
            .is_some_and(|agent| agent.starts_with("configurationManagerClient"));
        DeviceFacts {
            device_name: text(device, "deviceName"),
            device_id: text(device, "azureADDeviceId"),
            object_id: Some(object_id.to_owned()).filter(|id| !id.is_empty()),
            operating_system: text(device, "operatingSystem"),
            os_version: text(device, "osVersion"),
            manufacturer: text(device, "manufacturer"),
            model: text(device, "model"),
            ownership: Some(owner.to_owned()),
            join_type: enum_member(device, "joinType").map(str::to_owned),
            management_type: Some("MDM".to_owned()),
            device_management_app_id: Some(
                if co_managed {
                    CONFIGMGR_APP_ID
                } else {
                    INTUNE_APP_ID
                }
                .to_owned(),
            ),
            account_enabled: Some(true),
            ..DeviceFacts::default()
        }
    }
}

fn is_unknown(member: &str) -> bool {
    member == "unknown" || member == "unknownFutureValue"
}

/// A property value of a record of any entity; `None` when the entity has no such property.
fn field<'a>(record: &'a Record, name: &str) -> Option<&'a Value> {
    let (index, _) = record.entity.property(name)?;
    record.values.get(index)
}

fn text(record: &Record, name: &str) -> Option<String> {
    match field(record, name)? {
        Value::Str(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn enum_member(record: &Record, name: &str) -> Option<&'static str> {
    let (index, property) = record.entity.property(name)?;
    match (property.kind, record.values.get(index)?) {
        (Kind::Enum(e), Value::Enum(v)) => e.name_of(*v),
        _ => None,
    }
}

/// Parses and checks `text` as a rule of `dialect`.
pub fn parse(text: &str, dialect: Dialect) -> Result<Rule, RuleSyntaxError> {
    let chars = text.chars().count();
    if chars > MAX_RULE_CHARS {
        return Err(RuleSyntaxError {
            message: format!(
                "The rule is {chars} characters long; the maximum is {MAX_RULE_CHARS}."
            ),
            position: Some(MAX_RULE_CHARS),
        });
    }
    if text.trim().is_empty() {
        return Err(RuleSyntaxError {
            message: "The rule is empty.".to_owned(),
            position: None,
        });
    }
    let root = parser::parse(text, dialect)?;
    Ok(Rule { dialect, root })
}
