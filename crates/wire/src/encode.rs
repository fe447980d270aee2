//! Records out: Graph JSON in wire property order, enums as member names, times in UTC with `Z`,
//! binary as base64.

use base64::Engine;
use remediate_domain::model::{Kind, Property};
use remediate_domain::{Record, Value};
use serde_json::{Map, Value as Json};

/// How a record is being shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// GET by id or a create response: every property.
    Item,
    /// An item of a collection: properties that Intune leaves out of lists are `null`.
    ListItem,
}

/// The JSON object of a record. `select` limits the properties (by index; `id` is always kept).
pub fn entity_object(record: &Record, select: Option<&[usize]>, shape: Shape) -> Map<String, Json> {
    let mut map = Map::new();
    for (index, property) in record.entity.properties.iter().enumerate() {
        if let Some(selected) = select {
            if index != 0 && !selected.contains(&index) {
                continue;
            }
        }
        let value = if shape == Shape::ListItem && !property.in_list {
            Json::Null
        } else {
            value_json(property, &record.values[index])
        };
        map.insert(property.name.to_owned(), value);
    }
    map
}

/// One property value as JSON.
pub fn value_json(property: &Property, value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Str(s) => Json::String(s.clone()),
        Value::Bin(bytes) => Json::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Time(t) => Json::String(t.to_string()),
        Value::Enum(v) => match property.kind {
            Kind::Enum(e) => e
                .name_of(*v)
                .map_or(Json::Null, |n| Json::String(n.to_owned())),
            _ => Json::from(*v),
        },
        Value::StrList(items) => Json::Array(items.iter().cloned().map(Json::String).collect()),
        Value::Json(text) => serde_json::from_str(text).unwrap_or(Json::Null),
    }
}
