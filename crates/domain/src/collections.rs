//! Every collection remediate serves, declared once: its entity type, where it lives in the URL
//! tree, the methods it answers, the permissions that read and write it, and what a device
//! agent's token may do with it. Routing, `Allow`/405, `$count`, `@odata.context`, `Location`,
//! authorization and the device-token rules are all derived from these declarations (in `api`),
//! and the domain rules for creating, changing and deleting its entities ([`rules`]) follow
//! from its [`CollectionId`] by exhaustive matches — so a new collection that is declared but
//! not given rules does not compile.

use crate::directory;
use crate::model::{
    EntityType, Navigation, ASSIGNMENT_FILTER, DEVICE_HEALTH_SCRIPT,
    DEVICE_HEALTH_SCRIPT_ASSIGNMENT, DEVICE_RUN_STATE, DIRECTORY_DEVICE, ENROLLMENT_SECRET,
    EXPORT_JOB, GROUP, MANAGED_DEVICE, ROLE_SCOPE_TAG, RUN_RECORD,
};
use crate::ops::{self, RuleError};
use crate::query::Scope;
use crate::value::Value;
use crate::write::Write;

/// The permission sets of Microsoft Graph that the declarations name (any one of a set allows).
pub mod permissions {
    pub const SCRIPTS_READ: &[&str] = &[
        "DeviceManagementScripts.Read.All",
        "DeviceManagementScripts.ReadWrite.All",
        "DeviceManagementConfiguration.Read.All",
        "DeviceManagementConfiguration.ReadWrite.All",
    ];
    pub const SCRIPTS_WRITE: &[&str] = &[
        "DeviceManagementScripts.ReadWrite.All",
        "DeviceManagementConfiguration.ReadWrite.All",
    ];
    pub const DEVICES_READ: &[&str] = &[
        "DeviceManagementManagedDevices.Read.All",
        "DeviceManagementManagedDevices.ReadWrite.All",
    ];
    pub const DEVICES_WRITE: &[&str] = &["DeviceManagementManagedDevices.ReadWrite.All"];
    /// `initiateOnDemandProactiveRemediation` (what practitioners grant; SPEC §6).
    pub const PRIVILEGED_OPERATIONS: &[&str] =
        &["DeviceManagementManagedDevices.PrivilegedOperations.All"];
    /// `…/deviceRunStates/{id}/managedDevice` and a device's script states: a script reader
    /// or a device reader.
    pub const TAGS_READ: &[&str] = &[
        "DeviceManagementRBAC.Read.All",
        "DeviceManagementRBAC.ReadWrite.All",
    ];
    pub const TAGS_WRITE: &[&str] = &["DeviceManagementRBAC.ReadWrite.All"];
    pub const FILTERS_READ: &[&str] = &[
        "DeviceManagementConfiguration.Read.All",
        "DeviceManagementConfiguration.ReadWrite.All",
    ];
    pub const FILTERS_WRITE: &[&str] = &["DeviceManagementConfiguration.ReadWrite.All"];
    pub const GROUPS_READ: &[&str] = &[
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const GROUPS_WRITE: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
    /// `groups/{id}/members` and its `$ref` (Graph's least privileged: `GroupMember.*`).
    pub const MEMBERS_READ: &[&str] = &[
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const MEMBERS_WRITE: &[&str] = &[
        "GroupMember.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    pub const DIRECTORY_DEVICES_READ: &[&str] = &[
        "Device.Read.All",
        "Device.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    /// `deviceManagement/reports/exportJobs`: Graph's pages for list and get, and for create
    /// and delete.
    pub const EXPORTS_READ: &[&str] = &[
        "DeviceManagementConfiguration.Read.All",
        "DeviceManagementConfiguration.ReadWrite.All",
        "DeviceManagementApps.Read.All",
        "DeviceManagementApps.ReadWrite.All",
        "DeviceManagementManagedDevices.Read.All",
        "DeviceManagementManagedDevices.ReadWrite.All",
    ];
    pub const EXPORTS_WRITE: &[&str] = &[
        "DeviceManagementConfiguration.ReadWrite.All",
        "DeviceManagementApps.ReadWrite.All",
        "DeviceManagementManagedDevices.ReadWrite.All",
    ];
    pub const RUN_STATE_DEVICE_READ: &[&str] = &[
        "DeviceManagementScripts.Read.All",
        "DeviceManagementScripts.ReadWrite.All",
        "DeviceManagementConfiguration.Read.All",
        "DeviceManagementConfiguration.ReadWrite.All",
        "DeviceManagementManagedDevices.Read.All",
        "DeviceManagementManagedDevices.ReadWrite.All",
    ];
}

/// Which collection (for exhaustive matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionId {
    Scripts,
    RunStates,
    Assignments,
    History,
    Devices,
    RoleScopeTags,
    AssignmentFilters,
    Groups,
    DirectoryDevices,
    GroupMembers,
    DeviceMemberOf,
    EnrollmentSecrets,
    ExportJobs,
}

/// A collection of references (`groups/{id}/members`): its items are entities of another
/// collection, related to the parent item by rows of a link table rather than contained in it.
#[derive(Debug)]
pub struct Via {
    /// The link table (`group_members`).
    pub table: &'static str,
    /// Its column holding the parent item's key, and the one holding the item's key.
    pub parent_column: &'static str,
    pub item_column: &'static str,
    /// The collection the items belong to (where `$ref` targets are looked up).
    pub items: &'static Collection,
}

/// Where a collection hangs in the URL tree.
#[derive(Debug)]
pub enum Parent {
    /// Under a fixed path: `deviceManagement` (a navigation of the singleton).
    Root(&'static str),
    /// Contained in the items of another collection (`deviceHealthScripts/{id}/deviceRunStates`).
    Item(&'static Collection),
}

/// What a device agent's token may do with a collection (SPEC §6). A device never sees another
/// device's data: it is answered as missing (404); anything not listed here is 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAccess {
    /// Nothing: 403.
    None,
    /// Only the scripts assigned to the device (the collection is scripts or lives under one):
    /// reads and, where declared writable for devices, nothing else.
    AssignedScripts,
    /// Run states: under an assigned script, only the device's own (lists narrowed, items 404,
    /// creates must bind the device itself).
    OwnRunStates,
    /// The device's own record (lists narrowed to it; a create registers it under its own id).
    OwnDevice,
}

/// One collection.
#[derive(Debug)]
pub struct Collection {
    pub id: CollectionId,
    pub entity: &'static EntityType,
    /// The URL segment that names it (the navigation property of its parent).
    pub segment: &'static str,
    pub parent: Parent,
    /// GET of the collection.
    pub list: bool,
    /// POST to the collection.
    pub create: bool,
    /// GET, PATCH and DELETE of an item.
    pub read: bool,
    pub update: bool,
    pub delete: bool,
    /// Any one of these permissions reads it.
    pub read_permissions: &'static [&'static str],
    /// Any one of these permissions writes it.
    pub write_permissions: &'static [&'static str],
    /// Device tokens: which reads they may make, which writes (a write not allowed is 403).
    pub device_reads: DeviceAccess,
    pub device_writes: DeviceAccess,
    /// How an item is named in messages (`The deviceRunState '…' does not exist.`).
    pub item_name: &'static str,
    /// The name of its key in URL templates (`{scriptId}`) and the singular and plural words of
    /// its operation ids (`getScript`, `listScripts`) in the OpenAPI document.
    pub key_param: &'static str,
    pub names: (&'static str, &'static str),
    /// A collection of references (see [`Via`]); `None` for stored or contained collections.
    pub via: Option<Via>,
    /// The type Graph declares for its items when it differs from the entity's own (members
    /// are `directoryObject`s: each item then carries its `@odata.type`).
    pub declared_type: Option<&'static str>,
}

pub static SCRIPTS: Collection = Collection {
    id: CollectionId::Scripts,
    entity: &DEVICE_HEALTH_SCRIPT,
    segment: "deviceHealthScripts",
    parent: Parent::Root("deviceManagement"),
    list: true,
    create: true,
    read: true,
    update: true,
    delete: true,
    read_permissions: permissions::SCRIPTS_READ,
    write_permissions: permissions::SCRIPTS_WRITE,
    device_reads: DeviceAccess::AssignedScripts,
    device_writes: DeviceAccess::None,
    item_name: "deviceHealthScript",
    key_param: "scriptId",
    names: ("Script", "Scripts"),
    via: None,
    declared_type: None,
};

pub static RUN_STATES: Collection = Collection {
    id: CollectionId::RunStates,
    entity: &DEVICE_RUN_STATE,
    segment: "deviceRunStates",
    parent: Parent::Item(&SCRIPTS),
    list: true,
    create: true,
    read: true,
    update: true,
    delete: true,
    read_permissions: permissions::SCRIPTS_READ,
    write_permissions: permissions::SCRIPTS_WRITE,
    device_reads: DeviceAccess::OwnRunStates,
    device_writes: DeviceAccess::OwnRunStates,
    item_name: "deviceRunState",
    key_param: "stateId",
    names: ("RunState", "RunStates"),
    via: None,
    declared_type: None,
};

pub static ASSIGNMENTS: Collection = Collection {
    id: CollectionId::Assignments,
    entity: &DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
    segment: "assignments",
    parent: Parent::Item(&SCRIPTS),
    list: true,
    create: true,
    read: true,
    update: true,
    delete: true,
    read_permissions: permissions::SCRIPTS_READ,
    write_permissions: permissions::SCRIPTS_WRITE,
    device_reads: DeviceAccess::AssignedScripts,
    device_writes: DeviceAccess::None,
    item_name: "deviceHealthScriptAssignment",
    key_param: "assignmentId",
    names: ("Assignment", "Assignments"),
    via: None,
    declared_type: None,
};

/// remediate's extension: the run records of a run state (read-only).
pub static HISTORY: Collection = Collection {
    id: CollectionId::History,
    entity: &RUN_RECORD,
    segment: "history",
    parent: Parent::Item(&RUN_STATES),
    list: true,
    create: false,
    read: false,
    update: false,
    delete: false,
    read_permissions: permissions::SCRIPTS_READ,
    write_permissions: &[],
    device_reads: DeviceAccess::OwnRunStates,
    device_writes: DeviceAccess::None,
    item_name: "deviceHealthScriptRunRecord",
    key_param: "recordId",
    names: ("RunStateHistoryRecord", "RunStateHistory"),
    via: None,
    declared_type: None,
};

pub static DEVICES: Collection = Collection {
    id: CollectionId::Devices,
    entity: &MANAGED_DEVICE,
    segment: "managedDevices",
    parent: Parent::Root("deviceManagement"),
    list: true,
    create: true,
    read: true,
    update: true,
    delete: true,
    read_permissions: permissions::DEVICES_READ,
    write_permissions: permissions::DEVICES_WRITE,
    device_reads: DeviceAccess::OwnDevice,
    device_writes: DeviceAccess::OwnDevice,
    item_name: "managedDevice",
    key_param: "deviceId",
    names: ("Device", "Devices"),
    via: None,
    declared_type: None,
};

pub static ROLE_SCOPE_TAGS: Collection = Collection {
    id: CollectionId::RoleScopeTags,
    entity: &ROLE_SCOPE_TAG,
    segment: "roleScopeTags",
    parent: Parent::Root("deviceManagement"),
    list: true,
    create: true,
    read: true,
    update: true,
    delete: true,
    read_permissions: permissions::TAGS_READ,
    write_permissions: permissions::TAGS_WRITE,
    device_reads: DeviceAccess::None,
    device_writes: DeviceAccess::None,
    item_name: "roleScopeTag",
    key_param: "roleScopeTagId",
    names: ("RoleScopeTag", "RoleScopeTags"),
    via: None,
    declared_type: None,
};

pub static ASSIGNMENT_FILTERS: Collection = Collection {
    id: CollectionId::AssignmentFilters,
    entity: &ASSIGNMENT_FILTER,
    segment: "assignmentFilters",
    parent: Parent::Root("deviceManagement"),
    list: true,
    create: true,
    read: true,
    update: true,
    delete: true,
    read_permissions: permissions::FILTERS_READ,
    write_permissions: permissions::FILTERS_WRITE,
    device_reads: DeviceAccess::None,
    device_writes: DeviceAccess::None,
    item_name: "deviceAndAppManagementAssignmentFilter",
    key_param: "filterId",
    names: ("AssignmentFilter", "AssignmentFilters"),
    via: None,
    declared_type: None,
};

pub static GROUPS: Collection = Collection {
    id: CollectionId::Groups,
    entity: &GROUP,
    segment: "groups",
    parent: Parent::Root(""),
    list: true,
    create: true,
    read: true,
    update: true,
    delete: true,
    read_permissions: permissions::GROUPS_READ,
    write_permissions: permissions::GROUPS_WRITE,
    device_reads: DeviceAccess::None,
    device_writes: DeviceAccess::None,
    item_name: "group",
    key_param: "groupId",
    names: ("Group", "Groups"),
    via: None,
    declared_type: None,
};

/// Entra devices: the directory objects of the managed devices (read-only).
pub static DIRECTORY_DEVICES: Collection = Collection {
    id: CollectionId::DirectoryDevices,
    entity: &DIRECTORY_DEVICE,
    segment: "devices",
    parent: Parent::Root(""),
    list: true,
    create: false,
    read: true,
    update: false,
    delete: false,
    read_permissions: permissions::DIRECTORY_DEVICES_READ,
    write_permissions: &[],
    device_reads: DeviceAccess::None,
    device_writes: DeviceAccess::None,
    item_name: "device",
    key_param: "deviceObjectId",
    names: ("DirectoryDevice", "DirectoryDevices"),
    via: None,
    declared_type: None,
};

/// `groups/{id}/members`: read here, changed through `members/$ref`.
pub static GROUP_MEMBERS: Collection = Collection {
    id: CollectionId::GroupMembers,
    entity: &DIRECTORY_DEVICE,
    segment: "members",
    parent: Parent::Item(&GROUPS),
    list: true,
    create: false,
    read: false,
    update: false,
    delete: false,
    read_permissions: permissions::MEMBERS_READ,
    write_permissions: permissions::MEMBERS_WRITE,
    device_reads: DeviceAccess::None,
    device_writes: DeviceAccess::None,
    item_name: "member",
    key_param: "memberId",
    names: ("GroupMember", "GroupMembers"),
    via: Some(Via {
        table: "group_members",
        parent_column: "groupId",
        item_column: "memberId",
        items: &DIRECTORY_DEVICES,
    }),
    declared_type: Some("directoryObject"),
};

/// `devices/{id}/memberOf`: the groups (static and dynamic) a device is a member of.
pub static DEVICE_MEMBER_OF: Collection = Collection {
    id: CollectionId::DeviceMemberOf,
    entity: &GROUP,
    segment: "memberOf",
    parent: Parent::Item(&DIRECTORY_DEVICES),
    list: true,
    create: false,
    read: false,
    update: false,
    delete: false,
    read_permissions: permissions::DIRECTORY_DEVICES_READ,
    write_permissions: &[],
    device_reads: DeviceAccess::None,
    device_writes: DeviceAccess::None,
    item_name: "group",
    key_param: "groupId",
    names: ("DeviceMemberOf", "DeviceMemberOf"),
    via: Some(Via {
        table: "group_members",
        parent_column: "memberId",
        item_column: "groupId",
        items: &GROUPS,
    }),
    declared_type: Some("directoryObject"),
};

/// remediate's extension: enrollment secrets for device agents (SPEC §7), managed by whoever may
/// write managed devices. Created through its own command (the secret's hash is stored, never the
/// secret); deleting one revokes it.
pub static ENROLLMENT_SECRETS: Collection = Collection {
    id: CollectionId::EnrollmentSecrets,
    entity: &ENROLLMENT_SECRET,
    segment: "agentEnrollmentSecrets",
    parent: Parent::Root("deviceManagement"),
    list: true,
    create: true,
    read: true,
    update: false,
    delete: true,
    read_permissions: permissions::DEVICES_WRITE,
    write_permissions: permissions::DEVICES_WRITE,
    device_reads: DeviceAccess::None,
    device_writes: DeviceAccess::None,
    item_name: "agentEnrollmentSecret",
    key_param: "secretId",
    names: ("EnrollmentSecret", "EnrollmentSecrets"),
    via: None,
    declared_type: None,
};

/// Graph's export jobs (`deviceManagement/reports/exportJobs`, `crate::exports`): created by
/// their own command, run in the background by the server, deleted with their file. No PATCH
/// (a job's request cannot change once it runs).
pub static EXPORT_JOBS: Collection = Collection {
    id: CollectionId::ExportJobs,
    entity: &EXPORT_JOB,
    segment: "exportJobs",
    parent: Parent::Root("deviceManagement/reports"),
    list: true,
    create: true,
    read: true,
    update: false,
    delete: true,
    read_permissions: permissions::EXPORTS_READ,
    write_permissions: permissions::EXPORTS_WRITE,
    device_reads: DeviceAccess::None,
    device_writes: DeviceAccess::None,
    item_name: "deviceManagementExportJob",
    key_param: "exportJobId",
    names: ("ExportJob", "ExportJobs"),
    via: None,
    declared_type: None,
};

/// Collections are compared by identity (each is one static declaration).
impl PartialEq for Collection {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Collection {}

/// Every collection, in the order `$metadata` and the OpenAPI document list them.
pub static ALL_COLLECTIONS: [&Collection; 13] = [
    &SCRIPTS,
    &RUN_STATES,
    &ASSIGNMENTS,
    &HISTORY,
    &DEVICES,
    &ROLE_SCOPE_TAGS,
    &ASSIGNMENT_FILTERS,
    &GROUPS,
    &DIRECTORY_DEVICES,
    &GROUP_MEMBERS,
    &DEVICE_MEMBER_OF,
    &ENROLLMENT_SECRETS,
    &EXPORT_JOBS,
];

impl Collection {
    /// The collections contained in this one's items.
    pub fn children(&'static self) -> impl Iterator<Item = &'static Collection> {
        ALL_COLLECTIONS
            .into_iter()
            .filter(move |c| matches!(c.parent, Parent::Item(p) if std::ptr::eq(p, self)))
    }

    /// How many keys address one of its items (its ancestors' and its own).
    pub fn depth(&self) -> usize {
        match self.parent {
            Parent::Root(_) => 1,
            Parent::Item(parent) => parent.depth() + 1,
        }
    }

    /// The navigation property of the parent's entity that this collection is.
    pub fn navigation(&self) -> Option<&'static Navigation> {
        match self.parent {
            Parent::Root(_) => None,
            Parent::Item(parent) => parent.entity.navigation(self.segment),
        }
    }

    /// The context path of the collection for the given ancestor keys (OData key syntax):
    /// `deviceManagement/deviceHealthScripts('1')/deviceRunStates`.
    pub fn context_path(&self, parents: &[String]) -> String {
        match self.parent {
            Parent::Root("") => self.segment.to_owned(),
            Parent::Root(root) => format!("{root}/{}", self.segment),
            Parent::Item(parent) => {
                let (last, rest) = parents.split_last().map_or(("", &[][..]), |(l, r)| (l, r));
                format!(
                    "{}('{}')/{}",
                    parent.context_path(rest),
                    odata_key(last),
                    self.segment
                )
            }
        }
    }

    /// The URL path of an item relative to `/beta` (path-segment keys, percent-encoded by
    /// `encode`): `deviceManagement/deviceHealthScripts/1/deviceRunStates/1:2`.
    pub fn item_path(&self, keys: &[String], encode: impl Fn(&str) -> String + Copy) -> String {
        let (last, rest) = keys.split_last().map_or(("", &[][..]), |(l, r)| (l, r));
        match self.parent {
            Parent::Root("") => format!("{}/{}", self.segment, encode(last)),
            Parent::Root(root) => format!("{root}/{}/{}", self.segment, encode(last)),
            Parent::Item(parent) => format!(
                "{}/{}/{}",
                parent.item_path(rest, encode),
                self.segment,
                encode(last)
            ),
        }
    }

    /// The storage scope of the collection under the given ancestor keys.
    pub fn scope(&'static self, parents: &[String]) -> Scope {
        Scope::new(self, parents.to_vec())
    }
}

/// A key inside OData key syntax `('…')`.
pub fn odata_key(key: &str) -> String {
    key.replace('\'', "''")
}

/// The domain rules of each collection's writes: which command a create, an update or a delete
/// becomes. `keys` are the ancestor keys (and, for items, the item's own key last).
pub mod rules {
    use super::*;

    /// A create in the collection. `device` is the bound `managedDevice` (run states only).
    pub fn create(
        of: &'static Collection,
        parents: &[String],
        fields: Vec<(usize, Value)>,
        device: Option<String>,
    ) -> Result<Write, RuleError> {
        let parent = || parents.first().cloned().unwrap_or_default();
        match of.id {
            CollectionId::Scripts => ops::create_script(fields),
            CollectionId::RunStates => Ok(ops::create_run_state(parent(), fields, device)),
            CollectionId::Assignments => ops::create_assignment(&parent(), fields),
            CollectionId::Devices => Ok(ops::create_device(fields)),
            CollectionId::RoleScopeTags
            | CollectionId::AssignmentFilters
            | CollectionId::Groups => directory::create(of, fields),
            CollectionId::EnrollmentSecrets => crate::agents::create_secret(fields),
            // The API adds the base URL the request reached (`api::exports`).
            CollectionId::ExportJobs => crate::exports::create_job(fields, String::new()),
            CollectionId::History
            | CollectionId::DirectoryDevices
            | CollectionId::GroupMembers
            | CollectionId::DeviceMemberOf => Err(not_writable(of)),
        }
    }

    /// An update of an item. `device`: a `managedDevice` bound by the update (run states only).
    pub fn update(
        of: &'static Collection,
        keys: &[String],
        fields: Vec<(usize, Value)>,
        device: Option<String>,
    ) -> Result<Write, RuleError> {
        let (id, parent) = split(keys);
        match of.id {
            CollectionId::Scripts => ops::update_script(id, fields),
            CollectionId::RunStates => Ok(Write::UpdateRunState {
                script_id: parent,
                id,
                changes: fields,
                bind_device: device,
            }),
            CollectionId::Assignments => ops::update_assignment(parent, id, fields),
            CollectionId::Devices => Ok(Write::UpdateDevice {
                id,
                changes: fields,
            }),
            CollectionId::RoleScopeTags
            | CollectionId::AssignmentFilters
            | CollectionId::Groups => directory::update(of, keys, fields),
            CollectionId::History
            | CollectionId::EnrollmentSecrets
            | CollectionId::ExportJobs
            | CollectionId::DirectoryDevices
            | CollectionId::GroupMembers
            | CollectionId::DeviceMemberOf => Err(not_writable(of)),
        }
    }

    /// A delete of an item.
    pub fn delete(of: &'static Collection, keys: &[String]) -> Result<Write, RuleError> {
        let (id, parent) = split(keys);
        match of.id {
            CollectionId::Scripts => Ok(Write::DeleteScript { id }),
            CollectionId::RunStates => Ok(Write::DeleteRunState {
                script_id: parent,
                id,
            }),
            CollectionId::Assignments => Ok(Write::DeleteAssignment {
                script_id: parent,
                id,
            }),
            CollectionId::Devices => Ok(Write::DeleteDevice { id }),
            CollectionId::RoleScopeTags
            | CollectionId::AssignmentFilters
            | CollectionId::Groups => directory::delete(of, keys),
            // Deleting a secret revokes it; deleting an export job drops it (the API removes
            // its file).
            CollectionId::EnrollmentSecrets | CollectionId::ExportJobs => Ok(Write::Delete {
                of,
                keys: keys.to_vec(),
            }),
            CollectionId::History
            | CollectionId::DirectoryDevices
            | CollectionId::GroupMembers
            | CollectionId::DeviceMemberOf => Err(not_writable(of)),
        }
    }

    /// (own key, first ancestor key).
    fn split(keys: &[String]) -> (String, String) {
        let id = keys.last().cloned().unwrap_or_default();
        let parent = if keys.len() > 1 {
            keys[0].clone()
        } else {
            String::new()
        };
        (id, parent)
    }

    fn not_writable(of: &Collection) -> RuleError {
        RuleError(format!("The collection '{}' is read-only.", of.segment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_collections_are_navigations_of_their_parents() {
        for c in ALL_COLLECTIONS {
            match c.parent {
                Parent::Root(_) => assert!(c.navigation().is_none()),
                Parent::Item(parent) => {
                    let nav = c.navigation().unwrap_or_else(|| {
                        panic!("{} has no navigation {}", parent.entity.name, c.segment)
                    });
                    // Contained collections are contained navigations; reference collections
                    // (members) are not, and name the collection their items belong to.
                    assert_eq!(nav.contained, c.via.is_none(), "{}", c.segment);
                    assert!(nav.many, "{}", c.segment);
                    if let Some(via) = &c.via {
                        assert!(std::ptr::eq(via.items.entity, c.entity), "{}", c.segment);
                    }
                    assert!(std::ptr::eq(nav.target, c.entity), "{}", c.segment);
                    assert!(parent.children().any(|child| std::ptr::eq(child, c)));
                }
            }
            // Every collection can be read, and a writable one names who may write it.
            assert!(c.list && !c.read_permissions.is_empty(), "{}", c.segment);
            if c.create || c.update || c.delete {
                assert!(!c.write_permissions.is_empty(), "{}", c.segment);
            }
        }
    }

    #[test]
    fn context_and_item_paths_follow_the_tree() {
        let keys = ["s'1".to_owned(), "s'1:d".to_owned()];
        assert_eq!(
            HISTORY.context_path(&keys),
            "deviceManagement/deviceHealthScripts('s''1')/deviceRunStates('s''1:d')/history"
        );
        assert_eq!(
            SCRIPTS.context_path(&[]),
            "deviceManagement/deviceHealthScripts"
        );
        assert_eq!(
            RUN_STATES.item_path(&keys, |k| k.replace('\'', "%27")),
            "deviceManagement/deviceHealthScripts/s%271/deviceRunStates/s%271:d"
        );
        assert_eq!(RUN_STATES.depth(), 2);
        assert_eq!(HISTORY.depth(), 3);
    }
}
