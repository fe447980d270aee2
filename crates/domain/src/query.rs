//! Bound queries: what a list request asks of storage, after names and values were checked
//! against the model. Storage translates these to SQL; nothing here is text from the client.

use crate::model::EntityType;
use crate::value::Value;

/// Which collection a list reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Scripts,
    RunStates { script_id: String },
    Devices,
    Assignments { script_id: String },
    History { script_id: String, state_id: String },
}

impl Scope {
    pub fn entity(&self) -> &'static EntityType {
        match self {
            Scope::Scripts => &crate::model::DEVICE_HEALTH_SCRIPT,
            Scope::RunStates { .. } => &crate::model::DEVICE_RUN_STATE,
            Scope::Devices => &crate::model::MANAGED_DEVICE,
            Scope::Assignments { .. } => &crate::model::DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
            Scope::History { .. } => &crate::model::RUN_RECORD,
        }
    }
}

/// `getRemediationHistory`: one entry per UTC day with records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationHistory {
    pub last_modified: Option<crate::Instant>,
    pub days: Vec<HistoryDay>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub remediated: i64,
    pub no_issue: i64,
    pub detect_failed: i64,
}

/// A property reference: a property of the listed entity, or of the device a run state is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub entity: &'static EntityType,
    pub index: usize,
    /// Reached through the run state's `managedDevice` navigation.
    pub via_device: bool,
}

impl Column {
    pub fn property(&self) -> &'static crate::model::Property {
        &self.entity.properties[self.index]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFunction {
    StartsWith,
    EndsWith,
    Contains,
}

/// A `$filter` bound to the model. Strings compare case-insensitively (Unicode lower case) as
/// Microsoft's services do; storage keeps lower-cased shadow columns for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare {
        column: Column,
        op: CompareOp,
        value: Value,
    },
    In {
        column: Column,
        values: Vec<Value>,
    },
    Function {
        function: StringFunction,
        column: Column,
        text: String,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// A boolean constant (e.g. `true`, or a boolean property compared to itself).
    Const(bool),
}

/// One `$orderby` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub column: Column,
    pub descending: bool,
}

/// Keyset position: the sort values of the last row of the previous page, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub values: Vec<Value>,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub scope: Scope,
    pub filter: Option<Filter>,
    /// Sort keys before the final `id` tie-breaker (which follows the last key's direction).
    pub order: Vec<SortKey>,
    /// Page size (already capped).
    pub top: usize,
    pub skip: u64,
    pub after: Option<After>,
    /// Also count every row matching the filter.
    pub count: bool,
    /// Load the bound device of each run state (`$expand=managedDevice`).
    pub expand_device: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<crate::value::Record>,
    /// For `expand_device`: the bound device of each record, in the same order.
    pub devices: Vec<Option<crate::value::Record>>,
    /// `Some` when another page follows: the keyset position after the last record.
    pub next: Option<After>,
    pub count: Option<u64>,
}
