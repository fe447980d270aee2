//! Records out: Graph JSON in wire property order, enums as member names, times in UTC with `Z`,
//! binary as base64, complex values as stored (assignment targets of older rows with their
//! filter defaults, `wire::complex::normalize_stored`).
//!
//! Minimal metadata, as Graph answers: a value carries `@odata.type` only when its type is not
//! the type its context declares ([`entity_type_annotation`]). An entity of the declared type of
//! its collection carries none; items of a collection declared with a base type (group members
//! are `directoryObject`s) carry their own; complex values keep theirs, because their declared
//! types are abstract (assignment targets, run schedules, script parameters).

use base64::Engine;
use remediate_domain::model::{EntityType, Kind, Property};
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

/// The `@odata.type` an entity carries in an answer: `None` when `declared` (the type its
/// context declares, bare name; `None`: the entity's own) is the entity's type.
pub fn entity_type_annotation(entity: &EntityType, declared: Option<&str>) -> Option<String> {
    let declared = declared?;
    let bare = declared
        .trim_start_matches('#')
        .trim_start_matches("microsoft.graph.");
    (bare != entity.name).then(|| entity.type_annotation())
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
        Value::Time(t) => Json::String(t.iso().as_str().to_owned()),
        Value::Enum(v) => match property.kind {
            Kind::Enum(e) => e
                .name_of(*v)
                .map_or(Json::Null, |n| Json::String(n.to_owned())),
            _ => Json::from(*v),
        },
        Value::StrList(items) => Json::Array(items.iter().cloned().map(Json::String).collect()),
        Value::Json(text) => {
            let mut json = serde_json::from_str(text).unwrap_or(Json::Null);
            if let Kind::Complex(kind) = property.kind {
                crate::complex::normalize_stored(kind, &mut json);
            }
            json
        }
    }
}

/// A record serialized straight into the response (no intermediate JSON tree): its
/// `@odata.type` when it has one (see [`entity_type_annotation`]), then the same properties, order
/// and values as [`entity_object`], then `extra` members (expansions).
pub struct RecordJson<'a> {
    pub record: &'a Record,
    pub odata_type: Option<String>,
    pub select: Option<&'a [usize]>,
    pub shape: Shape,
    pub extra: Vec<(String, Json)>,
}

impl serde::Serialize for RecordJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if let Some(odata_type) = &self.odata_type {
            map.serialize_entry("@odata.type", odata_type)?;
        }
        for (index, property) in self.record.entity.properties.iter().enumerate() {
            if let Some(selected) = self.select {
                if index != 0 && !selected.contains(&index) {
                    continue;
                }
            }
            if self.shape == Shape::ListItem && !property.in_list {
                map.serialize_entry(property.name, &())?;
            } else {
                map.serialize_entry(
                    property.name,
                    &ValueJson {
                        property,
                        value: &self.record.values[index],
                    },
                )?;
            }
        }
        for (name, value) in &self.extra {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One property value, serialized as [`value_json`] would build it.
struct ValueJson<'a> {
    property: &'a Property,
    value: &'a Value,
}

impl serde::Serialize for ValueJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Null => serializer.serialize_unit(),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Time(t) => serializer.serialize_str(t.iso().as_str()),
            Value::Enum(v) => match self.property.kind {
                Kind::Enum(e) => match e.name_of(*v) {
                    Some(name) => serializer.serialize_str(name),
                    None => serializer.serialize_unit(),
                },
                _ => serializer.serialize_i64(*v),
            },
            Value::StrList(items) => serializer.collect_seq(items),
            Value::Bin(_) | Value::Json(_) => {
                value_json(self.property, self.value).serialize(serializer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remediate_domain::model::{DEVICE_HEALTH_SCRIPT, DEVICE_RUN_STATE, MANAGED_DEVICE};
    use remediate_domain::Instant;

    /// Every property set to a value of its kind (or left at its default), for each entity.
    fn samples() -> Vec<Record> {
        let mut out = Vec::new();
        for entity in [&DEVICE_RUN_STATE, &DEVICE_HEALTH_SCRIPT, &MANAGED_DEVICE] {
            out.push(Record::with_defaults(entity));
            let mut full = Record::with_defaults(entity);
            for (i, p) in entity.properties.iter().enumerate() {
                full.values[i] = match p.kind {
                    Kind::String => Value::Str(format!("{} \"quoted\" ü\n", p.name)),
                    Kind::Binary => Value::Bin(vec![0, 1, 2, 250]),
                    Kind::Boolean => Value::Bool(i % 2 == 0),
                    Kind::Int32 | Kind::Int64 => Value::Int(-(i as i64) * 1_000_003),
                    Kind::Enum(e) => Value::Enum(e.members.last().map_or(0, |m| m.1)),
                    Kind::DateTimeOffset => {
                        Value::Time(Instant::parse("2025-04-04T00:37:33.6892117Z").expect("time"))
                    }
                    Kind::StringCollection => Value::StrList(vec!["a".into(), "b\"c".into()]),
                    Kind::Complex(_) => Value::Json(r#"{"@odata.type":"x","n":[1,2]}"#.into()),
                };
            }
            out.push(full);
        }
        out
    }

    #[test]
    fn streamed_records_are_byte_identical_to_built_objects() {
        for record in samples() {
            for shape in [Shape::Item, Shape::ListItem] {
                let every: Vec<usize> = (0..record.entity.properties.len()).collect();
                let some: Vec<usize> = every.iter().copied().filter(|i| i % 3 == 1).collect();
                for select in [None, Some(&every[..]), Some(&some[..])] {
                    let mut built = Map::new();
                    built.insert("@odata.type".into(), Json::from("#t"));
                    built.extend(entity_object(&record, select, shape));
                    built.insert("extra".into(), Json::from(7));
                    let streamed = RecordJson {
                        record: &record,
                        odata_type: Some("#t".into()),
                        select,
                        shape,
                        extra: vec![("extra".into(), Json::from(7))],
                    };
                    assert_eq!(
                        serde_json::to_string(&streamed).expect("serialize"),
                        serde_json::to_string(&Json::Object(built)).expect("serialize"),
                        "{} {shape:?} {select:?}",
                        record.entity.name
                    );
                }
            }
        }
    }

    #[test]
    fn only_instances_of_a_derived_type_are_annotated() {
        assert_eq!(entity_type_annotation(&MANAGED_DEVICE, None), None);
        assert_eq!(
            entity_type_annotation(&MANAGED_DEVICE, Some("managedDevice")),
            None
        );
        assert_eq!(
            entity_type_annotation(&MANAGED_DEVICE, Some("microsoft.graph.managedDevice")),
            None
        );
        assert_eq!(
            entity_type_annotation(&MANAGED_DEVICE, Some("directoryObject")).as_deref(),
            Some("#microsoft.graph.managedDevice")
        );
    }
}
