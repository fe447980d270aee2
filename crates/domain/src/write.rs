//! Write commands: every change to stored data is one of these, validated before storage sees it.
//! Storage executes each command in one transaction; a command either happens completely or not at all.

use crate::collections::Collection;
use crate::value::{Record, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    CreateScript {
        record: Record,
    },
    /// A change of either script content bumps `version` (storage compares old and new content).
    UpdateScript {
        id: String,
        changes: Vec<(usize, Value)>,
    },
    /// Also removes the script's run states (and their history) and assignments.
    DeleteScript {
        id: String,
    },
    /// The record's `parent` is the script id; `device_id` the bound device (checked to exist).
    CreateRunState {
        record: Record,
    },
    UpdateRunState {
        script_id: String,
        id: String,
        changes: Vec<(usize, Value)>,
        bind_device: Option<String>,
    },
    DeleteRunState {
        script_id: String,
        id: String,
    },
    /// An assignment of a script (`parent` is the script id).
    CreateAssignment {
        record: Record,
    },
    UpdateAssignment {
        script_id: String,
        id: String,
        changes: Vec<(usize, Value)>,
    },
    DeleteAssignment {
        script_id: String,
        id: String,
    },
    /// The `assign` action: replace the script's whole assignment set.
    Assign {
        script_id: String,
        records: Vec<Record>,
    },
    /// `initiateOnDemandProactiveRemediation`: queue a run of `script_id` on `device_id`.
    RequestOnDemand {
        device_id: String,
        script_id: String,
    },
    /// `enableGlobalScripts`: record the tenant's global-scripts state.
    SetGlobalScriptsState {
        state: i64,
    },
    CreateDevice {
        record: Record,
    },
    UpdateDevice {
        id: String,
        changes: Vec<(usize, Value)>,
    },
    DeleteDevice {
        id: String,
    },
    /// A create in a collection whose storage needs no statements of its own (role scope tags,
    /// groups, assignment filters): the record is inserted, then the collection's checks run
    /// (references, dynamic membership) in the same transaction.
    Create {
        of: &'static Collection,
        record: Record,
    },
    /// A change of an item of such a collection (keys outermost first).
    Update {
        of: &'static Collection,
        keys: Vec<String>,
        changes: Vec<(usize, Value)>,
    },
    /// A deletion of an item of such a collection (refused while something still uses it).
    Delete {
        of: &'static Collection,
        keys: Vec<String>,
    },
    /// `POST …/{collection}/$ref`: relate `item` to the parent item (a device to a group).
    AddReference {
        of: &'static Collection,
        parent: String,
        item: String,
    },
    /// A new enrollment secret: the record and the hash of the secret, which storage keeps; the
    /// secret itself travels only to the answer of the create (storage ignores it).
    CreateEnrollmentSecret {
        record: Record,
        secret: String,
        secret_hash: String,
    },
    /// An agent enrolls with a secret (found by its hash in this tenant): a new managed device
    /// (`device`, with its id) and its credential's hash — or, when `existing` names a device whose
    /// credential hash matches, that device updated with `device`'s properties. The secret's use is
    /// counted; the device joins the secret's groups.
    Enroll {
        secret_hash: String,
        device: Record,
        credential_hash: String,
        existing: Option<(String, String)>,
    },
    /// An agent's check-in: the device's `lastSyncDateTime` becomes `at`, in one statement and
    /// nothing else (no rule re-evaluation: rules do not read it). With `credential`, only while
    /// the device still has its enrollment credential (an agent's token): the device missing or
    /// its credential revoked is the same `NotFound`.
    CheckIn {
        device_id: String,
        at: crate::Instant,
        credential: bool,
    },
    /// A new export job (`crate::exports::create_job`) and the base URL its download link will
    /// start with.
    CreateExportJob {
        record: Record,
        origin: String,
    },
    /// A change of an export job by the runner that holds it (`crate::exports::JobChange`).
    UpdateExportJob {
        id: String,
        change: crate::exports::JobChange,
    },
    /// `DELETE …/{collection}/{item}/$ref`.
    RemoveReference {
        of: &'static Collection,
        parent: String,
        item: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Created(Record),
    Updated,
    Deleted,
}
