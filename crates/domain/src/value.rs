//! Validated property values and records.

use crate::model::{DefaultValue as Default, EntityType, Kind, Property};
use crate::time::Instant;

/// One validated property value. Which variant a property holds follows from its [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Str(String),
    Bin(Vec<u8>),
    Bool(bool),
    /// `Edm.Int32` and `Edm.Int64`.
    Int(i64),
    Time(Instant),
    /// An enum member's declared value.
    Enum(i64),
    StrList(Vec<String>),
    /// A complex value as canonical JSON text.
    Json(String),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The value a create gives a property it omits.
pub fn default_value(p: &Property) -> Value {
    match p.default {
        Default::Null | Default::Server => Value::Null,
        Default::Str(s) => Value::Str(s.to_owned()),
        Default::Bool(b) => Value::Bool(b),
        Default::Int(i) => Value::Int(i),
        Default::Enum(member) => match p.kind {
            Kind::Enum(e) => Value::Enum(e.value_of(member).unwrap_or(0)),
            _ => Value::Null,
        },
        Default::MinDate => Value::Time(Instant::MIN),
        Default::EmptyBinary => Value::Bin(Vec::new()),
        Default::StrList(items) => Value::StrList(items.iter().map(|s| (*s).to_owned()).collect()),
        Default::Json(text) => Value::Json(text.to_owned()),
    }
}

/// A stored entity: its property values in the entity's property order, plus its place in the
/// hierarchy (the parent script of a run state) and the device a run state is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub entity: &'static EntityType,
    pub values: Vec<Value>,
    /// Parent key for contained entities (the script of a run state or assignment).
    pub parent: Option<String>,
    /// Target of the `managedDevice` navigation of a run state.
    pub device_id: Option<String>,
    /// The run state a history record belongs to.
    pub state_id: Option<String>,
}

impl Record {
    /// A record with every property at its create default.
    pub fn with_defaults(entity: &'static EntityType) -> Record {
        Record {
            entity,
            values: entity.properties.iter().map(default_value).collect(),
            parent: None,
            device_id: None,
            state_id: None,
        }
    }

    /// The value of a link column (`scriptId`, `stateId`, `managedDeviceId`).
    pub fn link(&self, link: crate::model::Link) -> Option<&str> {
        match link {
            crate::model::Link::Script => self.parent.as_deref(),
            crate::model::Link::State => self.state_id.as_deref(),
            crate::model::Link::Device => self.device_id.as_deref(),
        }
    }

    pub fn set_link(&mut self, link: crate::model::Link, value: Option<String>) {
        match link {
            crate::model::Link::Script => self.parent = value,
            crate::model::Link::State => self.state_id = value,
            crate::model::Link::Device => self.device_id = value,
        }
    }

    pub fn id(&self) -> &str {
        self.values.first().and_then(Value::as_str).unwrap_or("")
    }

    pub fn get(&self, name: &str) -> &Value {
        &self.values[self.entity.index(name)]
    }

    pub fn set(&mut self, name: &str, value: Value) {
        let index = self.entity.index(name);
        self.values[index] = value;
    }
}
