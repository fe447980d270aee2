//! Binding parsed OData query options (from `remediate-odata`) to the entity model: property
//! names, types, enum members and navigation paths are checked here, producing the typed
//! [`ListQuery`] storage executes. Errors name the offending property or option.

use remediate_domain::model::{EntityType, Kind, NavId};
use remediate_domain::query::{Column, CompareOp, Filter, Scope, SortKey, StringFunction};
use remediate_domain::{Instant, Value};
use remediate_odata::{self as odata, Expr, Literal, QueryOptions};

use crate::error::ApiError;

/// Graph's default page size (the largest page is `guard::ServerLimits::max_page_size`).
pub const DEFAULT_TOP: usize = 100;

/// What a GET of a collection or entity asks for, after binding.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub filter: Option<Filter>,
    pub order: Vec<SortKey>,
    pub top: Option<u64>,
    pub skip: u64,
    pub count: bool,
    pub skiptoken: Option<String>,
    /// Selected property indexes of the main entity (`None`: all).
    pub select: Option<Vec<usize>>,
    /// `$expand=managedDevice`, with its nested `$select`.
    pub expand_device: Option<Option<Vec<usize>>>,
    /// `$expand=assignments` on scripts, with its nested `$select`.
    pub expand_assignments: Option<Option<Vec<usize>>>,
    /// `$expand=runSummary` on scripts, with its nested `$select`.
    pub expand_run_summary: Option<Option<Vec<usize>>>,
}

pub fn parse(raw: &str, limits: &odata::Limits) -> Result<QueryOptions, ApiError> {
    Ok(odata::parse_query(raw, limits)?)
}

/// Reject every system query option on requests that take none (writes).
pub fn expect_none(options: &QueryOptions, what: &str) -> Result<(), ApiError> {
    let present = [
        ("$filter", options.filter.is_some()),
        ("$orderby", options.orderby.is_some()),
        ("$select", options.select.is_some()),
        ("$expand", options.expand.is_some()),
        ("$top", options.top.is_some()),
        ("$skip", options.skip.is_some()),
        ("$count", options.count.is_some()),
        ("$skiptoken", options.skiptoken.is_some()),
    ];
    match present.iter().find(|(_, p)| *p) {
        Some((name, _)) => Err(ApiError::bad_request(format!(
            "The query option '{name}' is not supported on {what}."
        ))),
        None => Ok(()),
    }
}

/// Bind options for a single entity (GET by id): only `$select` and `$expand`.
pub fn bind_item(entity: &'static EntityType, options: &QueryOptions) -> Result<Bound, ApiError> {
    let item_only = QueryOptions {
        select: None,
        expand: None,
        ..options.clone()
    };
    expect_none(&item_only, "a single entity")?;
    let mut bound = Bound::default();
    bind_projection(entity, options, &mut bound)?;
    Ok(bound)
}

/// Bind options for a collection.
pub fn bind_list(scope: &Scope, options: &QueryOptions) -> Result<Bound, ApiError> {
    let entity = scope.entity();
    let mut bound = Bound {
        top: options.top,
        skip: options.skip.unwrap_or(0),
        count: options.count.unwrap_or(false),
        skiptoken: options.skiptoken.clone(),
        ..Bound::default()
    };
    if let Some(expr) = &options.filter {
        bound.filter = Some(bind_filter(entity, expr)?);
    }
    if let Some(items) = &options.orderby {
        for item in items {
            let column = resolve(entity, &item.path, "$orderby")?;
            bound.order.push(SortKey {
                column,
                descending: item.descending,
            });
        }
    }
    bind_projection(entity, options, &mut bound)?;
    Ok(bound)
}

fn bind_projection(
    entity: &'static EntityType,
    options: &QueryOptions,
    bound: &mut Bound,
) -> Result<(), ApiError> {
    if let Some(items) = &options.select {
        bound.select = select_indexes(entity, items)?;
    }
    for item in options.expand.iter().flatten() {
        let name = item.path.join("/");
        let Some(nav) = entity.navigation(&name).filter(|n| n.expand) else {
            let expandable: Vec<&str> = entity
                .navigations
                .iter()
                .filter(|n| n.expand)
                .map(|n| n.name)
                .collect();
            return Err(ApiError::bad_request(format!(
                "The navigation property '{name}' cannot be expanded on '{}'.{}",
                entity.qualified_name(),
                if expandable.is_empty() {
                    String::new()
                } else {
                    format!(" Expandable: {}.", expandable.join(", "))
                }
            )));
        };
        let nested = &item.options;
        let unsupported = QueryOptions {
            select: None,
            ..nested.clone()
        };
        expect_none(
            &unsupported,
            &format!("$expand={name} (only a nested $select is)"),
        )?;
        let select = match &nested.select {
            Some(items) => select_indexes(nav.target, items)?,
            None => None,
        };
        let slot = match nav.id {
            NavId::ManagedDevice => &mut bound.expand_device,
            NavId::Assignments => &mut bound.expand_assignments,
            NavId::RunSummary => &mut bound.expand_run_summary,
            NavId::DeviceRunStates
            | NavId::History
            | NavId::DeviceScriptStates
            | NavId::Members
            | NavId::MemberOf => {
                return Err(ApiError::bad_request(format!(
                    "The navigation property '{name}' is declared expandable but has no expansion."
                )))
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(format!(
                "'{name}' is expanded more than once."
            )));
        }
        *slot = Some(select);
    }
    Ok(())
}

fn select_indexes(
    entity: &'static EntityType,
    items: &[odata::SelectItem],
) -> Result<Option<Vec<usize>>, ApiError> {
    let mut indexes = Vec::new();
    for item in items {
        if item.path.len() == 1 && item.path[0] == "*" {
            return Ok(None);
        }
        let name = item.path.join("/");
        match (item.path.len(), entity.property(&name)) {
            (1, Some((index, _))) => indexes.push(index),
            _ => match entity.navigation(&name) {
                Some(nav) if nav.expand => {
                    return Err(ApiError::bad_request(format!(
                        "'{name}' is a navigation property: use $expand={name}."
                    )))
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "Could not find a property named '{name}' on type '{}' in $select.",
                        entity.qualified_name()
                    )))
                }
            },
        }
    }
    Ok(Some(indexes))
}

/// Resolve a member path to a filterable, sortable column.
fn resolve(entity: &'static EntityType, path: &[String], option: &str) -> Result<Column, ApiError> {
    let joined = path.join("/");
    // A path through a single-valued navigation that storage joins (`managedDevice/deviceName`).
    let through = |nav: &str| entity.navigation(nav).filter(|n| n.paths && !n.many);
    let (target, name, via_device) = match path {
        [name] => (entity, name.as_str(), false),
        [nav, name] => match through(nav) {
            Some(n) => (n.target, name.as_str(), true),
            None => {
                return Err(ApiError::bad_request(format!(
                    "The path '{joined}' in {option} is not a property of '{}'.",
                    entity.qualified_name()
                )))
            }
        },
        _ => {
            return Err(ApiError::bad_request(format!(
                "The path '{joined}' in {option} is not a property of '{}'.",
                entity.qualified_name()
            )))
        }
    };
    let Some((index, property)) = target.property(name) else {
        return Err(ApiError::bad_request(format!(
            "Could not find a property named '{name}' on type '{}' in {option}.",
            target.qualified_name()
        )));
    };
    if !property.filterable {
        return Err(ApiError::bad_request(format!(
            "The property '{joined}' cannot be used in {option}: filtering and sorting are not supported on it."
        )));
    }
    Ok(Column {
        entity: target,
        index,
        via_device,
    })
}

fn bind_filter(entity: &'static EntityType, expr: &Expr) -> Result<Filter, ApiError> {
    match expr {
        Expr::And(a, b, _) => Ok(Filter::And(
            Box::new(bind_filter(entity, a)?),
            Box::new(bind_filter(entity, b)?),
        )),
        Expr::Or(a, b, _) => Ok(Filter::Or(
            Box::new(bind_filter(entity, a)?),
            Box::new(bind_filter(entity, b)?),
        )),
        Expr::Not(a, _) => Ok(Filter::Not(Box::new(bind_filter(entity, a)?))),
        Expr::Literal(Literal::Bool(b), _) => Ok(Filter::Const(*b)),
        Expr::Path(path, _) => {
            let column = resolve(entity, path, "$filter")?;
            if column.property().kind != Kind::Boolean {
                return Err(ApiError::bad_request(format!(
                    "The property '{}' is not a boolean and cannot be used alone as a $filter condition.",
                    path.join("/")
                )));
            }
            Ok(Filter::Compare {
                column,
                op: CompareOp::Eq,
                value: Value::Bool(true),
            })
        }
        Expr::Compare {
            op, left, right, ..
        } => {
            let op = match op {
                odata::CompareOp::Eq => CompareOp::Eq,
                odata::CompareOp::Ne => CompareOp::Ne,
                odata::CompareOp::Gt => CompareOp::Gt,
                odata::CompareOp::Ge => CompareOp::Ge,
                odata::CompareOp::Lt => CompareOp::Lt,
                odata::CompareOp::Le => CompareOp::Le,
            };
            let (path, literal, op) = match (&**left, &**right) {
                (Expr::Path(p, _), Expr::Literal(l, _)) => (p, l, op),
                (Expr::Literal(l, _), Expr::Path(p, _)) => (p, l, flip(op)),
                _ => {
                    return Err(ApiError::bad_request(
                        "A $filter comparison must compare a property with a literal value (e.g. detectionState eq 'fail').",
                    ))
                }
            };
            let column = resolve(entity, path, "$filter")?;
            let value = literal_value(&column, literal, path)?;
            if value == Value::Null && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                // OData: an ordering comparison with null is false for every row.
                return Ok(Filter::Const(false));
            }
            Ok(Filter::Compare { column, op, value })
        }
        Expr::In { expr, list, .. } => {
            let Expr::Path(path, _) = &**expr else {
                return Err(ApiError::bad_request(
                    "The left side of 'in' must be a property.",
                ));
            };
            let column = resolve(entity, path, "$filter")?;
            let mut values = Vec::with_capacity(list.len());
            for item in list {
                let Expr::Literal(l, _) = item else {
                    return Err(ApiError::bad_request(
                        "The list of 'in' must contain only literal values.",
                    ));
                };
                values.push(literal_value(&column, l, path)?);
            }
            Ok(Filter::In { column, values })
        }
        Expr::Call { func, args, .. } => {
            let function = match func {
                odata::Function::StartsWith => StringFunction::StartsWith,
                odata::Function::EndsWith => StringFunction::EndsWith,
                odata::Function::Contains => StringFunction::Contains,
            };
            let name = format!("{func:?}").to_ascii_lowercase();
            let (path, text) = match args.as_slice() {
                [Expr::Path(p, _), Expr::Literal(Literal::String(s), _)] => (p, s.clone()),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{name}() takes a string property and a quoted string, e.g. {name}(deviceName,'abc')."
                    )))
                }
            };
            let column = resolve(entity, path, "$filter")?;
            if column.property().kind != Kind::String {
                return Err(ApiError::bad_request(format!(
                    "{name}() needs a string property; '{}' is not a string.",
                    path.join("/")
                )));
            }
            Ok(Filter::Function {
                function,
                column,
                text,
            })
        }
        Expr::Literal(..) => Err(ApiError::bad_request(
            "A $filter must be a condition, not a bare value.",
        )),
    }
}

fn flip(op: CompareOp) -> CompareOp {
    match op {
        CompareOp::Gt => CompareOp::Lt,
        CompareOp::Ge => CompareOp::Le,
        CompareOp::Lt => CompareOp::Gt,
        CompareOp::Le => CompareOp::Ge,
        other => other,
    }
}

fn literal_value(column: &Column, literal: &Literal, path: &[String]) -> Result<Value, ApiError> {
    let property = column.property();
    let name = path.join("/");
    if *literal == Literal::Null {
        return Ok(Value::Null);
    }
    let mismatch = |expected: &str| {
        ApiError::bad_request(format!(
            "The property '{name}' is compared with {}, but it needs {expected}.",
            describe(literal)
        ))
    };
    match property.kind {
        Kind::String => match literal {
            Literal::String(s) | Literal::Guid(s) => Ok(Value::Str(s.clone())),
            _ => Err(mismatch("a quoted string")),
        },
        Kind::Boolean => match literal {
            Literal::Bool(b) => Ok(Value::Bool(*b)),
            _ => Err(mismatch("true or false")),
        },
        Kind::Int32 | Kind::Int64 => match literal {
            Literal::Int(i) => Ok(Value::Int(*i)),
            _ => Err(mismatch("an integer")),
        },
        Kind::DateTimeOffset => match literal {
            Literal::DateTimeOffset(text) => Instant::parse(text)
                .map(Value::Time)
                .map_err(|e| ApiError::bad_request(format!("In $filter on '{name}': {e}."))),
            Literal::Date(text) => Instant::parse(&format!("{text}T00:00:00Z"))
                .map(Value::Time)
                .map_err(|e| ApiError::bad_request(format!("In $filter on '{name}': {e}."))),
            _ => Err(mismatch(
                "an unquoted date and time such as 2025-01-01T00:00:00Z",
            )),
        },
        Kind::Enum(e) => {
            let member = match literal {
                Literal::String(s) => s,
                Literal::Enum { type_name, member } => {
                    let bare = type_name
                        .strip_prefix("microsoft.graph.")
                        .unwrap_or(type_name);
                    if bare != e.name {
                        return Err(ApiError::bad_request(format!(
                            "The property '{name}' is of type microsoft.graph.{}, not {type_name}.",
                            e.name
                        )));
                    }
                    member
                }
                _ => {
                    return Err(mismatch(&format!(
                        "a member of microsoft.graph.{} in quotes",
                        e.name
                    )))
                }
            };
            e.value_of(member).map(Value::Enum).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "'{member}' is not a member of microsoft.graph.{} (in $filter on '{name}'); expected one of {}.",
                    e.name,
                    e.member_list()
                ))
            })
        }
        Kind::Binary | Kind::StringCollection | Kind::Complex(_) => Err(ApiError::bad_request(
            format!("The property '{name}' cannot be used in $filter."),
        )),
    }
}

fn describe(literal: &Literal) -> String {
    match literal {
        Literal::Null => "null".into(),
        Literal::Bool(b) => b.to_string(),
        Literal::String(s) => format!("the string '{s}'"),
        Literal::Int(i) => format!("the number {i}"),
        Literal::Decimal(d) => format!("the number {d}"),
        Literal::Date(d) => format!("the date {d}"),
        Literal::DateTimeOffset(d) => format!("the date and time {d}"),
        Literal::Enum { type_name, member } => format!("{type_name}'{member}'"),
        Literal::Guid(g) => format!("the GUID {g}"),
    }
}
