//! The entity model: every entity type, property, type and enum that remediate serves, in one place.
//!
//! Validation, JSON encoding, `$select`/`$filter` binding and the SQL schema are all driven by these
//! tables, so a property added here is accepted, stored, filtered and emitted the same way everywhere.
//! Property order is Graph's wire order.

/// An OData enum type: member names with their declared values (CSDL order).
#[derive(Debug, PartialEq, Eq)]
pub struct EnumType {
    pub name: &'static str,
    pub members: &'static [(&'static str, i64)],
}

impl EnumType {
    /// Member value by exact (case-sensitive) name.
    pub fn value_of(&self, name: &str) -> Option<i64> {
        self.members
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    pub fn name_of(&self, value: i64) -> Option<&'static str> {
        self.members
            .iter()
            .find(|(_, v)| *v == value)
            .map(|(n, _)| *n)
    }

    pub fn member_list(&self) -> String {
        self.members
            .iter()
            .map(|(n, _)| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

macro_rules! enum_type {
    ($ident:ident, $name:literal, [$(($m:literal, $v:literal)),* $(,)?]) => {
        pub static $ident: EnumType = EnumType { name: $name, members: &[$(($m, $v)),*] };
    };
}

enum_type!(
    RUN_STATE,
    "runState",
    [
        ("unknown", 0),
        ("success", 1),
        ("fail", 2),
        ("scriptError", 3),
        ("pending", 4),
        ("notApplicable", 5)
    ]
);
enum_type!(
    REMEDIATION_STATE,
    "remediationState",
    [
        ("unknown", 0),
        ("skipped", 1),
        ("success", 2),
        ("remediationFailed", 3),
        ("scriptError", 4),
        ("unknownFutureValue", 5)
    ]
);
enum_type!(
    RUN_AS_ACCOUNT,
    "runAsAccountType",
    [("system", 0), ("user", 1)]
);
enum_type!(
    SCRIPT_TYPE,
    "deviceHealthScriptType",
    [("deviceHealthScript", 0), ("managedInstallerScript", 1)]
);
enum_type!(
    COMPLIANCE_STATE,
    "complianceState",
    [
        ("unknown", 0),
        ("compliant", 1),
        ("noncompliant", 2),
        ("conflict", 3),
        ("error", 4),
        ("inGracePeriod", 254),
        ("configManager", 255)
    ]
);
enum_type!(
    MANAGEMENT_AGENT,
    "managementAgentType",
    [
        ("eas", 1),
        ("mdm", 2),
        ("easMdm", 3),
        ("intuneClient", 4),
        ("easIntuneClient", 5),
        ("configurationManagerClient", 8),
        ("configurationManagerClientMdm", 10),
        ("configurationManagerClientMdmEas", 11),
        ("unknown", 16),
        ("jamf", 32),
        ("googleCloudDevicePolicyController", 64),
        ("microsoft365ManagedMdm", 258),
        ("msSense", 1024),
        ("intuneAosp", 2048),
        ("google", 8192),
        ("unknownFutureValue", 8193)
    ]
);
enum_type!(
    MANAGED_DEVICE_OWNER_TYPE,
    "managedDeviceOwnerType",
    [
        ("unknown", 0),
        ("company", 1),
        ("personal", 2),
        ("unknownFutureValue", 3)
    ]
);
enum_type!(
    OWNER_TYPE,
    "ownerType",
    [("unknown", 0), ("company", 1), ("personal", 2)]
);
enum_type!(
    DEVICE_ENROLLMENT_TYPE,
    "deviceEnrollmentType",
    [
        ("unknown", 0),
        ("userEnrollment", 1),
        ("deviceEnrollmentManager", 2),
        ("appleBulkWithUser", 3),
        ("appleBulkWithoutUser", 4),
        ("windowsAzureADJoin", 5),
        ("windowsBulkUserless", 6),
        ("windowsAutoEnrollment", 7),
        ("windowsBulkAzureDomainJoin", 8),
        ("windowsCoManagement", 9),
        ("windowsAzureADJoinUsingDeviceAuth", 10),
        ("appleUserEnrollment", 11),
        ("appleUserEnrollmentWithServiceAccount", 12),
        ("azureAdJoinUsingAzureVmExtension", 14),
        ("androidEnterpriseDedicatedDevice", 15),
        ("androidEnterpriseFullyManaged", 16),
        ("androidEnterpriseCorporateWorkProfile", 17),
        ("androidAOSPUserOwnedDeviceEnrollment", 18),
        ("androidAOSPUserlessDeviceEnrollment", 19),
        ("appleAccountDrivenUserEnrollment", 25),
        ("unknownFutureValue", 26)
    ]
);
enum_type!(
    FILTER_TYPE,
    "deviceAndAppManagementAssignmentFilterType",
    [("none", 0), ("include", 1), ("exclude", 2)]
);
enum_type!(
    GLOBAL_SCRIPT_STATE,
    "globalDeviceHealthScriptState",
    [("notConfigured", 0), ("pending", 1), ("enabled", 2)]
);
enum_type!(
    JOIN_TYPE,
    "joinType",
    [
        ("unknown", 0),
        ("azureADJoined", 1),
        ("azureADRegistered", 2),
        ("hybridAzureADJoined", 3)
    ]
);

/// The EDM type of a property, as remediate stores and validates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    /// `Edm.Binary`: base64 on the wire, bytes in storage.
    Binary,
    Boolean,
    Int32,
    Int64,
    DateTimeOffset,
    Enum(&'static EnumType),
    /// `Collection(Edm.String)`.
    StringCollection,
    /// A structured (complex or collection of complex) value with its own validator.
    Complex(ComplexKind),
}

/// Complex values validated by hand-written rules in `wire::complex` and stored as JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComplexKind {
    /// `Collection(graph.deviceHealthScriptParameter)` (polymorphic: string/integer/boolean).
    ScriptParameters,
    /// `graph.deviceAndAppManagementAssignmentTarget` (polymorphic: all devices, all users, group, exclusion group).
    AssignmentTarget,
    /// `graph.deviceHealthScriptRunSchedule` (polymorphic: once, hourly, daily).
    RunSchedule,
}

/// A key column that places a stored row in the hierarchy, besides its own `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `scriptId`: the script a run state, assignment or history record belongs to (`Record::parent`).
    Script,
    /// `stateId`: the run state a history record belongs to (`Record::state_id`).
    State,
    /// `managedDeviceId`: the device a run state is bound to (`Record::device_id`).
    Device,
}

impl Link {
    /// Does the link place the row under a parent item (so its key is one of the parents' keys
    /// in the URL)? `managedDeviceId` is a reference, not a parent.
    pub fn is_parent(self) -> bool {
        match self {
            Link::Script | Link::State => true,
            Link::Device => false,
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Link::Script => "scriptId",
            Link::State => "stateId",
            Link::Device => "managedDeviceId",
        }
    }
}

/// Whether a client may write a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// Server-set; a supplied value is ignored (Graph's behaviour for read-only properties).
    ReadOnly,
}

/// Value a property takes when a create omits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    Null,
    Str(&'static str),
    Bool(bool),
    Int(i64),
    Enum(&'static str),
    /// `0001-01-01T00:00:00Z`.
    MinDate,
    /// `Edm.Binary` of zero bytes (`""`).
    EmptyBinary,
    StrList(&'static [&'static str]),
    /// JSON text, e.g. `[]`.
    Json(&'static str),
    /// Set by the server (ids, timestamps, versions).
    Server,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Property {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    pub access: Access,
    pub default: DefaultValue,
    /// May appear in `$filter` and `$orderby`.
    pub filterable: bool,
    /// Emitted in collection responses (script contents are not, as in Intune).
    pub in_list: bool,
    /// Maximum length in characters for strings (bytes for binary), `None` for the global body limit.
    pub max_len: Option<usize>,
}

pub(crate) const fn prop(
    name: &'static str,
    kind: Kind,
    nullable: bool,
    default: DefaultValue,
) -> Property {
    Property {
        name,
        kind,
        nullable,
        access: Access::ReadWrite,
        default,
        filterable: true,
        in_list: true,
        max_len: None,
    }
}

pub(crate) const fn read_only(mut p: Property) -> Property {
    p.access = Access::ReadOnly;
    p
}

pub(crate) const fn limited(mut p: Property, max: usize) -> Property {
    p.max_len = Some(max);
    p
}

pub(crate) const fn not_filterable(mut p: Property) -> Property {
    p.filterable = false;
    p
}

pub(crate) const fn detail_only(mut p: Property) -> Property {
    p.in_list = false;
    p.filterable = false;
    p
}

/// Default maximum length of a run state's output and error fields (64 KiB), SPEC §3.2.
pub const OUTPUT_FIELD_MAX: usize = 64 * 1024;
/// Maximum length of a script's description (not configurable, unlike the output fields).
pub const DESCRIPTION_MAX: usize = 64 * 1024 - 1;
/// Maximum length of ordinary short strings (names, versions, ids).
pub const SHORT_STRING_MAX: usize = 4 * 1024;

/// Which navigation property (for exhaustive matches where each is served differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NavId {
    /// `deviceHealthScript/deviceRunStates`.
    DeviceRunStates,
    /// `deviceHealthScript/assignments`.
    Assignments,
    /// `deviceHealthScript/runSummary` (computed).
    RunSummary,
    /// `deviceHealthScriptDeviceState/managedDevice` (joined from the device table).
    ManagedDevice,
    /// `deviceHealthScriptDeviceState/history` (remediate's extension).
    History,
    /// `managedDevice/deviceHealthScriptStates` (computed).
    DeviceScriptStates,
    /// `group/members` (references to directory objects: devices).
    Members,
    /// `device/memberOf` (the groups a device is a member of).
    MemberOf,
}

/// A navigation property: from an entity to one or many others.
pub struct Navigation {
    pub id: NavId,
    pub name: &'static str,
    pub target: &'static EntityType,
    /// Collection-valued.
    pub many: bool,
    /// The targets live under this entity in the URL tree (`ContainsTarget` in `$metadata`).
    pub contained: bool,
    /// `$expand` may name it (with a nested `$select` only).
    pub expand: bool,
    /// `$filter` and `$orderby` paths may go through it (`managedDevice/deviceName`): storage
    /// joins the target's row.
    pub paths: bool,
    /// A write may set it with `<name>@odata.bind`.
    pub bind: bool,
}

/// Shown by name: navigation graphs may have cycles (groups and their members).
impl std::fmt::Debug for Navigation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.name, self.target.name)
    }
}

impl PartialEq for Navigation {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Navigation {}

pub(crate) const fn nav(
    id: NavId,
    name: &'static str,
    target: &'static EntityType,
    many: bool,
) -> Navigation {
    Navigation {
        id,
        name,
        target,
        many,
        contained: true,
        expand: false,
        paths: false,
        bind: false,
    }
}

pub(crate) const fn expandable(mut n: Navigation) -> Navigation {
    n.expand = true;
    n
}

/// An entity type and where it lives.
#[derive(Debug, PartialEq, Eq)]
pub struct EntityType {
    /// Unqualified type name, e.g. `deviceHealthScriptDeviceState`.
    pub name: &'static str,
    /// Storage table.
    pub table: &'static str,
    /// Properties in wire order; index 0 is always `id`.
    pub properties: &'static [Property],
    /// Other `@odata.type` values accepted on input besides `#microsoft.graph.{name}`.
    pub accepted_types: &'static [&'static str],
    /// Key columns besides `id` (storage order).
    pub links: &'static [Link],
    /// Navigation properties (`$expand`, paths, binds, `$metadata`).
    pub navigations: &'static [Navigation],
    /// Rows stored under the empty tenant are built-ins every tenant reads (the `Default` role
    /// scope tag); writes never reach them (the domain rules refuse changing a built-in).
    pub shared_builtins: bool,
}

impl EntityType {
    pub fn property(&self, name: &str) -> Option<(usize, &'static Property)> {
        self.properties
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)
    }

    /// Index of a property that must exist (a programming error otherwise).
    pub fn index(&self, name: &str) -> usize {
        match self.property(name) {
            Some((i, _)) => i,
            None => panic!("entity {} has no property {name}", self.name),
        }
    }

    pub fn navigation(&self, name: &str) -> Option<&'static Navigation> {
        self.navigations.iter().find(|n| n.name == name)
    }

    pub fn qualified_name(&self) -> String {
        format!("microsoft.graph.{}", self.name)
    }

    pub fn type_annotation(&self) -> String {
        format!("#microsoft.graph.{}", self.name)
    }

    /// Is `value` an acceptable `@odata.type` for this entity (with or without `#`)?
    pub fn accepts_type(&self, value: &str) -> bool {
        let bare = value.strip_prefix('#').unwrap_or(value);
        bare == self.qualified_name() || self.accepted_types.contains(&bare)
    }
}

pub use crate::exports::{EXPORT_JOB, EXPORT_LOCALIZATION_TYPE, REPORT_FILE_FORMAT, REPORT_STATUS};
pub use crate::neighbours::{
    ASSIGNMENT_FILTER, ASSIGNMENT_FILTER_MANAGEMENT_TYPE, DEVICE_PLATFORM_TYPE, DIRECTORY_DEVICE,
    ENROLLMENT_SECRET, GROUP, ROLE_SCOPE_TAG,
};

use DefaultValue as D;
use Kind as K;

pub static DEVICE_HEALTH_SCRIPT: EntityType = EntityType {
    name: "deviceHealthScript",
    table: "device_health_scripts",
    accepted_types: &["microsoft.management.services.api.deviceHealthScript"],
    links: &[],
    shared_builtins: false,
    navigations: &[
        expandable(nav(
            NavId::Assignments,
            "assignments",
            &DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
            true,
        )),
        nav(
            NavId::DeviceRunStates,
            "deviceRunStates",
            &DEVICE_RUN_STATE,
            true,
        ),
        expandable(nav(NavId::RunSummary, "runSummary", &RUN_SUMMARY, false)),
    ],
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        limited(
            prop("publisher", K::String, true, D::Null),
            SHORT_STRING_MAX,
        ),
        read_only(prop("version", K::String, true, D::Server)),
        limited(
            prop("displayName", K::String, true, D::Null),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("description", K::String, true, D::Null),
            DESCRIPTION_MAX,
        ),
        detail_only(prop("detectionScriptContent", K::Binary, true, D::Null)),
        detail_only(prop(
            "remediationScriptContent",
            K::Binary,
            true,
            D::EmptyBinary,
        )),
        read_only(prop("createdDateTime", K::DateTimeOffset, false, D::Server)),
        read_only(prop(
            "lastModifiedDateTime",
            K::DateTimeOffset,
            false,
            D::Server,
        )),
        prop(
            "runAsAccount",
            K::Enum(&RUN_AS_ACCOUNT),
            false,
            D::Enum("system"),
        ),
        prop("enforceSignatureCheck", K::Boolean, false, D::Bool(false)),
        prop("runAs32Bit", K::Boolean, false, D::Bool(false)),
        not_filterable(prop(
            "roleScopeTagIds",
            K::StringCollection,
            true,
            D::StrList(&["0"]),
        )),
        prop("isGlobalScript", K::Boolean, false, D::Bool(false)),
        read_only(prop("highestAvailableVersion", K::String, true, D::Null)),
        prop(
            "deviceHealthScriptType",
            K::Enum(&SCRIPT_TYPE),
            false,
            D::Enum("deviceHealthScript"),
        ),
        not_filterable(prop(
            "detectionScriptParameters",
            K::Complex(ComplexKind::ScriptParameters),
            true,
            D::Json("[]"),
        )),
        not_filterable(prop(
            "remediationScriptParameters",
            K::Complex(ComplexKind::ScriptParameters),
            true,
            D::Json("[]"),
        )),
    ],
};

pub static DEVICE_RUN_STATE: EntityType = EntityType {
    name: "deviceHealthScriptDeviceState",
    table: "device_run_states",
    accepted_types: &["microsoft.management.services.api.deviceHealthScriptDeviceState"],
    links: &[Link::Script, Link::Device],
    shared_builtins: false,
    navigations: &[
        Navigation {
            contained: false,
            expand: true,
            paths: true,
            bind: true,
            ..nav(
                NavId::ManagedDevice,
                "managedDevice",
                &MANAGED_DEVICE,
                false,
            )
        },
        nav(NavId::History, "history", &RUN_RECORD, true),
    ],
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        prop(
            "detectionState",
            K::Enum(&RUN_STATE),
            false,
            D::Enum("unknown"),
        ),
        prop(
            "lastStateUpdateDateTime",
            K::DateTimeOffset,
            false,
            D::MinDate,
        ),
        prop(
            "expectedStateUpdateDateTime",
            K::DateTimeOffset,
            true,
            D::Null,
        ),
        prop("lastSyncDateTime", K::DateTimeOffset, false, D::MinDate),
        limited(
            prop(
                "preRemediationDetectionScriptOutput",
                K::String,
                true,
                D::Null,
            ),
            OUTPUT_FIELD_MAX,
        ),
        limited(
            prop(
                "preRemediationDetectionScriptError",
                K::String,
                true,
                D::Null,
            ),
            OUTPUT_FIELD_MAX,
        ),
        limited(
            prop("remediationScriptError", K::String, true, D::Null),
            OUTPUT_FIELD_MAX,
        ),
        limited(
            prop(
                "postRemediationDetectionScriptOutput",
                K::String,
                true,
                D::Null,
            ),
            OUTPUT_FIELD_MAX,
        ),
        limited(
            prop(
                "postRemediationDetectionScriptError",
                K::String,
                true,
                D::Null,
            ),
            OUTPUT_FIELD_MAX,
        ),
        prop(
            "remediationState",
            K::Enum(&REMEDIATION_STATE),
            false,
            D::Enum("unknown"),
        ),
        not_filterable(prop(
            "assignmentFilterIds",
            K::StringCollection,
            true,
            D::StrList(&[]),
        )),
    ],
};

pub static MANAGED_DEVICE: EntityType = EntityType {
    name: "managedDevice",
    table: "managed_devices",
    accepted_types: &[],
    links: &[],
    shared_builtins: false,
    navigations: &[Navigation {
        contained: false,
        ..nav(
            NavId::DeviceScriptStates,
            "deviceHealthScriptStates",
            &POLICY_STATE,
            true,
        )
    }],
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        limited(
            prop("userId", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("deviceName", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("managedDeviceName", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        prop(
            "managedDeviceOwnerType",
            K::Enum(&MANAGED_DEVICE_OWNER_TYPE),
            false,
            D::Enum("unknown"),
        ),
        prop("ownerType", K::Enum(&OWNER_TYPE), false, D::Enum("unknown")),
        prop("enrolledDateTime", K::DateTimeOffset, false, D::MinDate),
        prop("lastSyncDateTime", K::DateTimeOffset, false, D::MinDate),
        limited(
            prop("operatingSystem", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        prop(
            "complianceState",
            K::Enum(&COMPLIANCE_STATE),
            false,
            D::Enum("unknown"),
        ),
        prop(
            "managementAgent",
            K::Enum(&MANAGEMENT_AGENT),
            false,
            D::Enum("unknown"),
        ),
        limited(
            prop("osVersion", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("azureADDeviceId", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        prop(
            "deviceEnrollmentType",
            K::Enum(&DEVICE_ENROLLMENT_TYPE),
            false,
            D::Enum("unknown"),
        ),
        limited(
            prop("emailAddress", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        limited(prop("model", K::String, true, D::Str("")), SHORT_STRING_MAX),
        limited(
            prop("manufacturer", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("serialNumber", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("userPrincipalName", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("userDisplayName", K::String, true, D::Str("")),
            SHORT_STRING_MAX,
        ),
        prop("isEncrypted", K::Boolean, false, D::Bool(false)),
        prop("isSupervised", K::Boolean, false, D::Bool(false)),
        prop("totalStorageSpaceInBytes", K::Int64, false, D::Int(0)),
        prop("freeStorageSpaceInBytes", K::Int64, false, D::Int(0)),
        prop("physicalMemoryInBytes", K::Int64, false, D::Int(0)),
        prop("joinType", K::Enum(&JOIN_TYPE), false, D::Enum("unknown")),
        not_filterable(prop(
            "roleScopeTagIds",
            K::StringCollection,
            true,
            D::StrList(&[]),
        )),
    ],
};

pub static DEVICE_HEALTH_SCRIPT_ASSIGNMENT: EntityType = EntityType {
    name: "deviceHealthScriptAssignment",
    table: "device_health_script_assignments",
    accepted_types: &[],
    links: &[Link::Script],
    shared_builtins: false,
    navigations: &[],
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        not_filterable(prop(
            "target",
            K::Complex(ComplexKind::AssignmentTarget),
            true,
            D::Null,
        )),
        prop("runRemediationScript", K::Boolean, false, D::Bool(false)),
        not_filterable(prop(
            "runSchedule",
            K::Complex(ComplexKind::RunSchedule),
            true,
            D::Null,
        )),
    ],
};

/// One appended run record (SPEC §3.2 "History"), served at `…/deviceRunStates/{id}/history`.
/// An extension of remediate: Graph has no such entity.
pub static RUN_RECORD: EntityType = EntityType {
    name: "deviceHealthScriptRunRecord",
    table: "run_history",
    accepted_types: &[],
    links: &[Link::Script, Link::State],
    shared_builtins: false,
    navigations: &[],
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        read_only(prop(
            "recordedDateTime",
            K::DateTimeOffset,
            false,
            D::Server,
        )),
        read_only(prop("managedDeviceId", K::String, true, D::Null)),
        read_only(prop(
            "detectionState",
            K::Enum(&RUN_STATE),
            false,
            D::Enum("unknown"),
        )),
        read_only(prop(
            "remediationState",
            K::Enum(&REMEDIATION_STATE),
            false,
            D::Enum("unknown"),
        )),
        read_only(prop(
            "lastStateUpdateDateTime",
            K::DateTimeOffset,
            false,
            D::MinDate,
        )),
        read_only(limited(
            prop(
                "preRemediationDetectionScriptOutput",
                K::String,
                true,
                D::Null,
            ),
            OUTPUT_FIELD_MAX,
        )),
        read_only(limited(
            prop(
                "preRemediationDetectionScriptError",
                K::String,
                true,
                D::Null,
            ),
            OUTPUT_FIELD_MAX,
        )),
        read_only(limited(
            prop("remediationScriptError", K::String, true, D::Null),
            OUTPUT_FIELD_MAX,
        )),
        read_only(limited(
            prop(
                "postRemediationDetectionScriptOutput",
                K::String,
                true,
                D::Null,
            ),
            OUTPUT_FIELD_MAX,
        )),
        read_only(limited(
            prop(
                "postRemediationDetectionScriptError",
                K::String,
                true,
                D::Null,
            ),
            OUTPUT_FIELD_MAX,
        )),
    ],
};

/// `runSummary`: computed from a script's run states (SPEC §3.4), never stored.
pub static RUN_SUMMARY: EntityType = EntityType {
    name: "deviceHealthScriptRunSummary",
    table: "",
    accepted_types: &[],
    links: &[],
    shared_builtins: false,
    navigations: &[],
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        read_only(prop(
            "noIssueDetectedDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
        read_only(prop("issueDetectedDeviceCount", K::Int32, false, D::Int(0))),
        read_only(prop(
            "detectionScriptErrorDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
        read_only(prop(
            "detectionScriptPendingDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
        read_only(prop(
            "detectionScriptNotApplicableDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
        read_only(prop(
            "issueRemediatedDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
        read_only(prop(
            "remediationSkippedDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
        read_only(prop(
            "issueReoccurredDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
        read_only(prop(
            "remediationScriptErrorDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
        read_only(prop(
            "lastScriptRunDateTime",
            K::DateTimeOffset,
            true,
            D::Null,
        )),
        read_only(prop(
            "issueRemediatedCumulativeDeviceCount",
            K::Int32,
            false,
            D::Int(0),
        )),
    ],
};

/// `managedDevices/{id}/deviceHealthScriptStates`: one device's state in every script, computed.
pub static POLICY_STATE: EntityType = EntityType {
    name: "deviceHealthScriptPolicyState",
    table: "",
    accepted_types: &[],
    links: &[],
    shared_builtins: false,
    navigations: &[],
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        read_only(prop("deviceId", K::String, false, D::Server)),
        read_only(prop("policyId", K::String, false, D::Server)),
        read_only(prop("userName", K::String, true, D::Null)),
        read_only(prop("deviceName", K::String, true, D::Null)),
        read_only(prop("policyName", K::String, true, D::Null)),
        read_only(prop("osVersion", K::String, true, D::Null)),
        read_only(prop(
            "lastStateUpdateDateTime",
            K::DateTimeOffset,
            false,
            D::MinDate,
        )),
        read_only(prop(
            "expectedStateUpdateDateTime",
            K::DateTimeOffset,
            true,
            D::Null,
        )),
        read_only(prop(
            "lastSyncDateTime",
            K::DateTimeOffset,
            false,
            D::MinDate,
        )),
        read_only(prop(
            "preRemediationDetectionScriptOutput",
            K::String,
            true,
            D::Null,
        )),
        read_only(prop(
            "preRemediationDetectionScriptError",
            K::String,
            true,
            D::Null,
        )),
        read_only(prop("remediationScriptError", K::String, true, D::Null)),
        read_only(prop(
            "postRemediationDetectionScriptOutput",
            K::String,
            true,
            D::Null,
        )),
        read_only(prop(
            "postRemediationDetectionScriptError",
            K::String,
            true,
            D::Null,
        )),
        read_only(prop(
            "detectionState",
            K::Enum(&RUN_STATE),
            false,
            D::Enum("unknown"),
        )),
        read_only(prop(
            "remediationState",
            K::Enum(&REMEDIATION_STATE),
            false,
            D::Enum("unknown"),
        )),
        not_filterable(read_only(prop(
            "assignmentFilterIds",
            K::StringCollection,
            true,
            D::StrList(&[]),
        ))),
    ],
};

/// Every entity type served, for `$metadata` and model-wide checks.
pub static ALL_ENTITIES: [&EntityType; 13] = [
    &DEVICE_HEALTH_SCRIPT,
    &DEVICE_RUN_STATE,
    &MANAGED_DEVICE,
    &DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
    &RUN_SUMMARY,
    &POLICY_STATE,
    &RUN_RECORD,
    &ROLE_SCOPE_TAG,
    &GROUP,
    &DIRECTORY_DEVICE,
    &ASSIGNMENT_FILTER,
    &ENROLLMENT_SECRET,
    &EXPORT_JOB,
];

/// Every enum type served.
pub static ALL_ENUMS: [&EnumType; 17] = [
    &RUN_STATE,
    &REMEDIATION_STATE,
    &RUN_AS_ACCOUNT,
    &SCRIPT_TYPE,
    &COMPLIANCE_STATE,
    &MANAGEMENT_AGENT,
    &MANAGED_DEVICE_OWNER_TYPE,
    &OWNER_TYPE,
    &DEVICE_ENROLLMENT_TYPE,
    &JOIN_TYPE,
    &FILTER_TYPE,
    &GLOBAL_SCRIPT_STATE,
    &DEVICE_PLATFORM_TYPE,
    &ASSIGNMENT_FILTER_MANAGEMENT_TYPE,
    &REPORT_STATUS,
    &REPORT_FILE_FORMAT,
    &EXPORT_LOCALIZATION_TYPE,
];

/// The well-known pseudo-group ids Intune uses in assignment ids.
pub const ALL_DEVICES_GROUP: &str = "adadadad-808e-44e2-905a-0b7873a8a531";
pub const ALL_USERS_GROUP: &str = "acacacac-9df4-4c7d-9d50-4ef0226f57a9";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entity_starts_with_its_key_and_has_unique_names() {
        for entity in ALL_ENTITIES {
            assert_eq!(entity.properties[0].name, "id");
            let mut names: Vec<_> = entity
                .properties
                .iter()
                .map(|p| p.name.to_ascii_lowercase())
                .collect();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                entity.properties.len(),
                "{} has duplicate names",
                entity.name
            );
        }
    }

    #[test]
    fn run_state_has_the_twelve_graph_properties_in_wire_order() {
        let names: Vec<_> = DEVICE_RUN_STATE.properties.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "id",
                "detectionState",
                "lastStateUpdateDateTime",
                "expectedStateUpdateDateTime",
                "lastSyncDateTime",
                "preRemediationDetectionScriptOutput",
                "preRemediationDetectionScriptError",
                "remediationScriptError",
                "postRemediationDetectionScriptOutput",
                "postRemediationDetectionScriptError",
                "remediationState",
                "assignmentFilterIds",
            ]
        );
    }

    #[test]
    fn enum_defaults_are_members() {
        for entity in ALL_ENTITIES {
            for p in entity.properties {
                if let (Kind::Enum(e), DefaultValue::Enum(m)) = (p.kind, p.default) {
                    assert!(
                        e.value_of(m).is_some(),
                        "{}.{} default {m}",
                        entity.name,
                        p.name
                    );
                }
            }
        }
    }

    #[test]
    fn seed_type_is_accepted_with_or_without_hash() {
        assert!(DEVICE_RUN_STATE
            .accepts_type("#microsoft.management.services.api.deviceHealthScriptDeviceState"));
        assert!(DEVICE_RUN_STATE.accepts_type("microsoft.graph.deviceHealthScriptDeviceState"));
        assert!(!DEVICE_RUN_STATE.accepts_type("#microsoft.graph.deviceHealthScript"));
    }
}
