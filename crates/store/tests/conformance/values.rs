//! Domain values built the way `crates/api` builds them (creates through `domain::ops`, the
//! other writes as `Write` variants, lists as `ListQuery` over bound `Column`s), and the reads the
//! tests repeat.

use remediate_domain::model::{
    EntityType, DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT, DEVICE_RUN_STATE,
    MANAGED_DEVICE,
};
use remediate_domain::ops;
use remediate_domain::query::{Column, CompareOp, Filter, ListQuery, Scope, SortKey};
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Instant, Record, Value};
use remediate_store::{EntityRef, SqlStore, Store, StoreError};

pub const A: &str = "tenant-a";
pub const B: &str = "tenant-b";

/// `detectionState` members (`runState`).
pub mod det {
    pub const SUCCESS: i64 = 1;
    pub const FAIL: i64 = 2;
    pub const SCRIPT_ERROR: i64 = 3;
    pub const PENDING: i64 = 4;
    pub const NOT_APPLICABLE: i64 = 5;
}

/// `remediationState` members.
pub mod rem {
    pub const UNKNOWN: i64 = 0;
    pub const SKIPPED: i64 = 1;
    pub const SUCCESS: i64 = 2;
    pub const FAILED: i64 = 3;
    pub const SCRIPT_ERROR: i64 = 4;
}

/// One decoded body field: (property index, value).
pub fn field(entity: &'static EntityType, name: &str, value: Value) -> (usize, Value) {
    (entity.index(name), value)
}

pub fn text(s: &str) -> Value {
    Value::Str(s.to_owned())
}

pub fn time(iso: &str) -> Instant {
    Instant::parse(iso).unwrap()
}

pub async fn created(store: &SqlStore, tenant: &str, write: Write) -> Record {
    match store.write(tenant, write).await {
        Ok(WriteOutcome::Created(record)) => record,
        Ok(other) => panic!("expected a create, got {other:?}"),
        Err(e) => panic!("expected a create, got {e:?}"),
    }
}

pub async fn ok(store: &SqlStore, tenant: &str, write: Write) -> WriteOutcome {
    match store.write(tenant, write.clone()).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("{} failed: {e:?}", label(&write)),
    }
}

pub fn script_fields(name: &str) -> Vec<(usize, Value)> {
    vec![
        field(&DEVICE_HEALTH_SCRIPT, "displayName", text(name)),
        field(
            &DEVICE_HEALTH_SCRIPT,
            "detectionScriptContent",
            Value::Bin(b"Write-Output 'ok'".to_vec()),
        ),
    ]
}

/// A new script (`POST deviceHealthScripts`); its id.
pub async fn new_script(store: &SqlStore, tenant: &str, name: &str) -> String {
    let write = ops::create_script(script_fields(name)).unwrap();
    created(store, tenant, write).await.id().to_owned()
}

/// A new device (`POST managedDevices`) with these fields; its id.
pub async fn new_device_with(
    store: &SqlStore,
    tenant: &str,
    fields: Vec<(usize, Value)>,
) -> String {
    created(store, tenant, ops::create_device(fields))
        .await
        .id()
        .to_owned()
}

/// A new device named `name` (`None`: a null deviceName); its id.
pub async fn new_device(store: &SqlStore, tenant: &str, name: Option<&str>) -> String {
    let name = name.map_or(Value::Null, text);
    new_device_with(
        store,
        tenant,
        vec![field(&MANAGED_DEVICE, "deviceName", name)],
    )
    .await
}

/// A device registering itself with the id its token names (as `api::device` does).
pub async fn register_device(store: &SqlStore, tenant: &str, id: &str, name: &str) -> Record {
    let Write::CreateDevice { mut record } =
        ops::create_device(vec![field(&MANAGED_DEVICE, "deviceName", text(name))])
    else {
        panic!("create_device builds a CreateDevice")
    };
    record.set("id", text(id));
    created(store, tenant, Write::CreateDevice { record }).await
}

/// Run-state fields: detection and remediation state.
pub fn states(detection: i64, remediation: i64) -> Vec<(usize, Value)> {
    vec![
        field(&DEVICE_RUN_STATE, "detectionState", Value::Enum(detection)),
        field(
            &DEVICE_RUN_STATE,
            "remediationState",
            Value::Enum(remediation),
        ),
    ]
}

/// A device report creating its run state (`POST …/deviceRunStates`, bound with
/// `managedDevice@odata.bind` when `device` is given); the new run state.
pub async fn report(
    store: &SqlStore,
    tenant: &str,
    script: &str,
    device: Option<&str>,
    fields: Vec<(usize, Value)>,
) -> Record {
    let write = ops::create_run_state(script.to_owned(), fields, device.map(str::to_owned));
    created(store, tenant, write).await
}

/// `PATCH …/deviceRunStates/{id}`.
pub async fn update_state(
    store: &SqlStore,
    tenant: &str,
    script: &str,
    id: &str,
    fields: Vec<(usize, Value)>,
    bind: Option<&str>,
) -> Result<WriteOutcome, StoreError> {
    store
        .write(
            tenant,
            Write::UpdateRunState {
                script_id: script.to_owned(),
                id: id.to_owned(),
                changes: fields,
                bind_device: bind.map(str::to_owned),
            },
        )
        .await
}

pub fn group_target(group: &str) -> Value {
    Value::Json(format!(
        r##"{{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"{group}"}}"##
    ))
}

pub fn all_devices_target() -> Value {
    Value::Json(r##"{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}"##.into())
}

pub fn assignment_fields(target: Value) -> Vec<(usize, Value)> {
    vec![field(&DEVICE_HEALTH_SCRIPT_ASSIGNMENT, "target", target)]
}

/// A property of the listed entity.
pub fn col(entity: &'static EntityType, name: &str) -> Column {
    Column {
        entity,
        index: entity.index(name),
        via_device: false,
    }
}

/// A property of a run state's bound device (`managedDevice/<name>`).
pub fn device_col(name: &str) -> Column {
    Column {
        entity: &MANAGED_DEVICE,
        index: MANAGED_DEVICE.index(name),
        via_device: true,
    }
}

pub fn cmp(column: Column, op: CompareOp, value: Value) -> Filter {
    Filter::Compare { column, op, value }
}

pub fn not(f: Filter) -> Filter {
    Filter::Not(Box::new(f))
}

pub fn and(a: Filter, b: Filter) -> Filter {
    Filter::And(Box::new(a), Box::new(b))
}

pub fn or(a: Filter, b: Filter) -> Filter {
    Filter::Or(Box::new(a), Box::new(b))
}

pub fn asc(column: Column) -> SortKey {
    SortKey {
        column,
        descending: false,
    }
}

pub fn desc(column: Column) -> SortKey {
    SortKey {
        column,
        descending: true,
    }
}

/// A list of `scope` with no options (as an unadorned GET, with a large page).
pub fn list(scope: Scope) -> ListQuery {
    ListQuery {
        scope,
        filter: None,
        order: Vec::new(),
        top: 1000,
        skip: 0,
        after: None,
        count: false,
        expand_device: false,
    }
}

pub fn filtered(scope: Scope, filter: Filter) -> ListQuery {
    ListQuery {
        filter: Some(filter),
        ..list(scope)
    }
}

/// Every row of one list (one page; panics if more would follow).
pub async fn rows(store: &SqlStore, tenant: &str, query: &ListQuery) -> Vec<Record> {
    let page = store.list(tenant, query).await.unwrap();
    assert!(page.next.is_none(), "expected a single page");
    page.records
}

pub async fn ids(store: &SqlStore, tenant: &str, query: &ListQuery) -> Vec<String> {
    let mut ids: Vec<String> = rows(store, tenant, query)
        .await
        .iter()
        .map(|r| r.id().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `$count` of a query (as `/$count`: top 0).
pub async fn count(store: &SqlStore, tenant: &str, scope: Scope, filter: Option<Filter>) -> u64 {
    let query = ListQuery {
        scope,
        filter,
        order: Vec::new(),
        top: 0,
        skip: 0,
        after: None,
        count: true,
        expand_device: false,
    };
    let page = store.list(tenant, &query).await.unwrap();
    assert!(page.records.is_empty());
    page.count.unwrap()
}

/// Every run state of a script.
pub async fn run_states(store: &SqlStore, tenant: &str, script: &str) -> Vec<Record> {
    let scope = Scope::run_states(script.to_owned());
    rows(store, tenant, &list(scope)).await
}

pub fn enum_of(record: &Record, name: &str) -> i64 {
    match record.get(name) {
        Value::Enum(v) => *v,
        other => panic!("{name} is {other:?}"),
    }
}

pub async fn assert_counters_agree(store: &SqlStore) {
    let differences = store.check_counters().await.unwrap();
    assert!(
        differences.is_empty(),
        "counters differ from the rows: {differences:#?}"
    );
}

/// A record in a failure message: its type, values and links (without the model it points to).
pub fn brief(record: &Record) -> String {
    format!(
        "{} {:?} parent={:?} device={:?} state={:?}",
        record.entity.name, record.values, record.parent, record.device_id, record.state_id
    )
}

fn column_name(column: &Column) -> String {
    let via = if column.via_device {
        "managedDevice/"
    } else {
        ""
    };
    format!("{via}{}", column.property().name)
}

/// A filter in a failure message, in OData-like words.
pub fn describe(filter: &Filter) -> String {
    match filter {
        Filter::Compare { column, op, value } => {
            format!("{} {op:?} {value:?}", column_name(column))
        }
        Filter::In { column, values } => format!("{} in {values:?}", column_name(column)),
        Filter::Function {
            function,
            column,
            text,
        } => format!("{function:?}({}, {text:?})", column_name(column)),
        Filter::And(a, b) => format!("({} and {})", describe(a), describe(b)),
        Filter::Or(a, b) => format!("({} or {})", describe(a), describe(b)),
        Filter::Not(a) => format!("not {}", describe(a)),
        Filter::Const(b) => b.to_string(),
    }
}

/// An ordering in a failure message.
pub fn describe_order(order: &[SortKey]) -> String {
    let keys: Vec<String> = order
        .iter()
        .map(|k| {
            let direction = if k.descending { "desc" } else { "asc" };
            format!("{} {direction}", column_name(&k.column))
        })
        .collect();
    format!("$orderby={}", keys.join(","))
}

/// A write command in a failure message: its variant and the ids it names.
pub fn label(write: &Write) -> String {
    let variant = format!("{write:?}");
    let variant = variant.split([' ', '{', '(']).next().unwrap_or_default();
    let ids = match write {
        Write::CreateScript { record }
        | Write::CreateRunState { record }
        | Write::CreateAssignment { record }
        | Write::CreateDevice { record } => format!("{} in {:?}", record.id(), record.parent),
        Write::UpdateScript { id, .. }
        | Write::DeleteScript { id }
        | Write::UpdateDevice { id, .. }
        | Write::DeleteDevice { id } => id.clone(),
        Write::UpdateRunState { script_id, id, .. }
        | Write::DeleteRunState { script_id, id }
        | Write::UpdateAssignment { script_id, id, .. }
        | Write::DeleteAssignment { script_id, id } => format!("{script_id}/{id}"),
        Write::Assign { script_id, records } => format!("{script_id} ({} records)", records.len()),
        Write::RequestOnDemand {
            device_id,
            script_id,
        } => format!("{device_id}/{script_id}"),
        Write::SetGlobalScriptsState { state } => state.to_string(),
        Write::Create { record, .. } | Write::CreateEnrollmentSecret { record, .. } => {
            record.id().to_owned()
        }
        Write::Enroll { device, .. } => device.id().to_owned(),
        Write::CheckIn { device_id, .. } => device_id.clone(),
        Write::CreateExportJob { record, .. } => record.id().to_owned(),
        Write::UpdateExportJob { id, .. } => id.clone(),
        Write::Update { keys, .. } | Write::Delete { keys, .. } => keys.join("/"),
        Write::AddReference { parent, item, .. } | Write::RemoveReference { parent, item, .. } => {
            format!("{parent}/{item}")
        }
    };
    format!("{variant} {ids}")
}

/// The refusal of a taken key (a database unique violation).
pub fn taken_key() -> StoreError {
    StoreError::Conflict("An entity with the same key already exists.".into())
}

pub fn script_missing(id: &str) -> StoreError {
    StoreError::NotFound(format!("The deviceHealthScript '{id}' does not exist."))
}

pub async fn get_script(s: &SqlStore, tenant: &str, id: &str) -> Option<Record> {
    s.get(tenant, &EntityRef::Script(id.to_owned()))
        .await
        .unwrap()
}
