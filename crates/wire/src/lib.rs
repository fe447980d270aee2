//! The wire format: Graph JSON in and out, and the Graph error envelope with its code table.
//!
//! `domain` types are not serializable on purpose; this crate is the only place that decides what
//! a client sees, so the JSON contract is reviewable in one place.

pub mod complex;
pub mod decode;
pub mod encode;
pub mod error;

pub use decode::{decode_entity, decode_entity_with, DecodeError, EntityBody, Limits};
pub use encode::{entity_object, entity_type_annotation, RecordJson, Shape};
pub use error::ErrorKind;

/// The `Content-Type` of every JSON response (Graph's exact value).
pub const JSON_CONTENT_TYPE: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
