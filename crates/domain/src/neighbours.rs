//! The entity types around deviceHealthScripts that real Intune tooling touches: role scope tags,
//! Entra groups and devices, and assignment filters (model data, like `crate::model`).
//!
//! An Entra `device` is the directory object of a managed device: remediate serves it as a
//! read-only projection of the `managedDevice` row (same id; storage reads it through a view),
//! so it is created, changed and deleted with the managed device and never disagrees with it.

use crate::model::{
    limited, not_filterable, prop, read_only, DefaultValue as D, EntityType, EnumType, Kind as K,
    NavId, Navigation, DESCRIPTION_MAX, SHORT_STRING_MAX,
};

pub static DEVICE_PLATFORM_TYPE: EnumType = EnumType {
    name: "devicePlatformType",
    members: &[
        ("android", 0),
        ("androidForWork", 1),
        ("iOS", 2),
        ("macOS", 3),
        ("windowsPhone81", 4),
        ("windows81AndLater", 5),
        ("windows10AndLater", 6),
        ("androidWorkProfile", 7),
        ("unknown", 8),
        ("androidAOSP", 9),
        ("androidMobileApplicationManagement", 10),
        ("iOSMobileApplicationManagement", 11),
        ("unknownFutureValue", 12),
    ],
};

pub static ASSIGNMENT_FILTER_MANAGEMENT_TYPE: EnumType = EnumType {
    name: "assignmentFilterManagementType",
    members: &[("devices", 0), ("apps", 1), ("unknownFutureValue", 2)],
};

/// `roleScopeTag` (`/deviceManagement/roleScopeTags`). The built-in `Default` tag (id `"0"`) is
/// shared by every tenant (stored once, under the empty tenant).
pub static ROLE_SCOPE_TAG: EntityType = EntityType {
    name: "roleScopeTag",
    table: "role_scope_tags",
    accepted_types: &[],
    links: &[],
    navigations: &[],
    shared_builtins: true,
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        limited(
            prop("displayName", K::String, true, D::Null),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("description", K::String, true, D::Null),
            DESCRIPTION_MAX,
        ),
        read_only(prop("isBuiltIn", K::Boolean, false, D::Bool(false))),
    ],
};

/// Entra `group` (`/groups`): security groups, assigned or dynamic.
pub static GROUP: EntityType = EntityType {
    name: "group",
    table: "groups",
    accepted_types: &[],
    links: &[],
    navigations: &[Navigation {
        contained: false,
        ..crate::model::nav(NavId::Members, "members", &DIRECTORY_DEVICE, true)
    }],
    shared_builtins: false,
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        limited(
            prop("displayName", K::String, true, D::Null),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("description", K::String, true, D::Null),
            DESCRIPTION_MAX,
        ),
        prop("mailEnabled", K::Boolean, true, D::Bool(false)),
        limited(
            prop("mailNickname", K::String, true, D::Null),
            SHORT_STRING_MAX,
        ),
        prop("securityEnabled", K::Boolean, true, D::Bool(true)),
        not_filterable(prop(
            "groupTypes",
            K::StringCollection,
            false,
            D::StrList(&[]),
        )),
        not_filterable(limited(
            prop("membershipRule", K::String, true, D::Null),
            3072,
        )),
        limited(
            prop("membershipRuleProcessingState", K::String, true, D::Null),
            64,
        ),
        read_only(prop("createdDateTime", K::DateTimeOffset, true, D::Server)),
    ],
};

/// Entra `device` (`/devices`): the directory object of a managed device (read-only here).
pub static DIRECTORY_DEVICE: EntityType = EntityType {
    name: "device",
    table: "directory_devices",
    accepted_types: &[],
    links: &[],
    navigations: &[Navigation {
        contained: false,
        ..crate::model::nav(NavId::MemberOf, "memberOf", &GROUP, true)
    }],
    shared_builtins: false,
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        read_only(prop("accountEnabled", K::Boolean, true, D::Bool(true))),
        read_only(prop(
            "approximateLastSignInDateTime",
            K::DateTimeOffset,
            true,
            D::Null,
        )),
        read_only(prop("deviceId", K::String, true, D::Null)),
        read_only(prop("deviceOwnership", K::String, true, D::Null)),
        read_only(prop("displayName", K::String, true, D::Null)),
        read_only(prop("isManaged", K::Boolean, true, D::Bool(true))),
        read_only(prop("managementType", K::String, true, D::Null)),
        read_only(prop("manufacturer", K::String, true, D::Null)),
        read_only(prop("model", K::String, true, D::Null)),
        read_only(prop("operatingSystem", K::String, true, D::Null)),
        read_only(prop("operatingSystemVersion", K::String, true, D::Null)),
        read_only(prop(
            "registrationDateTime",
            K::DateTimeOffset,
            true,
            D::Null,
        )),
    ],
};

/// `deviceAndAppManagementAssignmentFilter` (`/deviceManagement/assignmentFilters`).
pub static ASSIGNMENT_FILTER: EntityType = EntityType {
    name: "deviceAndAppManagementAssignmentFilter",
    table: "assignment_filters",
    accepted_types: &[],
    links: &[],
    navigations: &[],
    shared_builtins: false,
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        read_only(prop("createdDateTime", K::DateTimeOffset, false, D::Server)),
        read_only(prop(
            "lastModifiedDateTime",
            K::DateTimeOffset,
            false,
            D::Server,
        )),
        limited(
            prop("displayName", K::String, true, D::Null),
            SHORT_STRING_MAX,
        ),
        limited(
            prop("description", K::String, true, D::Null),
            DESCRIPTION_MAX,
        ),
        prop(
            "platform",
            K::Enum(&DEVICE_PLATFORM_TYPE),
            false,
            D::Enum("unknown"),
        ),
        not_filterable(limited(prop("rule", K::String, true, D::Null), 3072)),
        not_filterable(prop(
            "roleScopeTags",
            K::StringCollection,
            true,
            D::StrList(&["0"]),
        )),
        prop(
            "assignmentFilterManagementType",
            K::Enum(&ASSIGNMENT_FILTER_MANAGEMENT_TYPE),
            false,
            D::Enum("devices"),
        ),
    ],
};

/// remediate's extension: an enrollment secret (`deviceManagement/agentEnrollmentSecrets`). The
/// secret itself is shown once, in the create answer; storage keeps only its hash.
pub static ENROLLMENT_SECRET: EntityType = EntityType {
    name: "agentEnrollmentSecret",
    table: "enrollment_secrets",
    accepted_types: &[],
    links: &[],
    navigations: &[],
    shared_builtins: false,
    properties: &[
        read_only(prop("id", K::String, false, D::Server)),
        limited(
            prop("displayName", K::String, true, D::Null),
            SHORT_STRING_MAX,
        ),
        not_filterable(prop(
            "groupIds",
            K::StringCollection,
            false,
            D::StrList(&[]),
        )),
        read_only(prop("createdDateTime", K::DateTimeOffset, false, D::Server)),
        prop("expirationDateTime", K::DateTimeOffset, true, D::Null),
        prop("usesRemaining", K::Int64, true, D::Null),
        read_only(prop("usesCount", K::Int64, false, D::Int(0))),
    ],
};
