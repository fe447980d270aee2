//! Bound queries: what a list request asks of storage, after names and values were checked
//! against the model. Storage translates these to SQL; nothing here is text from the client.

use crate::collections::{self, Collection};
use crate::model::EntityType;
use crate::value::Value;

/// Which collection a list reads: a declared collection and the keys of the items it lies in
/// (outermost first). Storage places rows under those keys by the entity's parent links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub of: &'static Collection,
    pub parents: Vec<String>,
}

impl Scope {
    pub fn new(of: &'static Collection, parents: Vec<String>) -> Scope {
        Scope { of, parents }
    }

    pub fn entity(&self) -> &'static EntityType {
        self.of.entity
    }

    /// `(column, key)` pairs that place the rows under their parents (`scriptId`, `stateId`).
    pub fn conditions(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.of
            .entity
            .links
            .iter()
            .filter(|link| link.is_parent())
            .map(|link| link.column())
            .zip(self.parents.iter().map(String::as_str))
    }

    /// Every script of the tenant.
    pub fn scripts() -> Scope {
        Scope::new(&collections::SCRIPTS, Vec::new())
    }

    /// Every managed device of the tenant.
    pub fn devices() -> Scope {
        Scope::new(&collections::DEVICES, Vec::new())
    }

    /// The run states of a script.
    pub fn run_states(script_id: impl Into<String>) -> Scope {
        Scope::new(&collections::RUN_STATES, vec![script_id.into()])
    }

    /// The assignments of a script.
    pub fn assignments(script_id: impl Into<String>) -> Scope {
        Scope::new(&collections::ASSIGNMENTS, vec![script_id.into()])
    }

    /// The run records of a run state.
    pub fn history(script_id: impl Into<String>, state_id: impl Into<String>) -> Scope {
        Scope::new(
            &collections::HISTORY,
            vec![script_id.into(), state_id.into()],
        )
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

impl Page {
    /// No records, and no page after it; `count` when one was asked for.
    pub fn empty(count: Option<u64>) -> Page {
        Page {
            records: Vec::new(),
            devices: Vec::new(),
            next: None,
            count,
        }
    }
}
