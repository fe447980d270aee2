//! The domain of remediate: the entity model, validated values, bound queries and write commands.
//!
//! Nothing here knows about HTTP, JSON envelopes or SQL. Values in these types are already valid:
//! the wire layer produces them from request bodies, storage persists them.

pub mod agents;
pub mod collections;
pub mod directory;
pub mod exports;
pub mod model;
pub mod neighbours;
pub mod ops;
pub mod query;
pub mod rule;
pub mod time;
pub mod value;
pub mod write;

pub use time::Instant;
pub use value::{Record, Value};

/// A new server-assigned id (a GUID string, as Intune assigns).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
