//! Storage: one narrow interface ([`Store`]) and its SQL implementation for SQLite and PostgreSQL.
//!
//! This crate is the only place that contains SQL. It speaks domain types: validated
//! [`Write`] commands, each executed in one transaction, and bound [`ListQuery`]s, translated to
//! parameterized SQL (client values only ever travel as bound parameters; names come from the
//! model). A successful return means the transaction is committed and durable.
//!
//! Modules, one job each:
//! - `connect`: options, connecting to either database, the pools, statement timeouts and
//!   where reads run ([`SqlStore`]);
//! - `writer`: where writes run: the SQLite group-commit writer thread and checkpointer, the
//!   PostgreSQL write transaction with its retry loop, and maintenance transactions;
//! - `commands`: the write-command executor (one [`Write`] inside an open transaction);
//! - `reads`: single entities and pages of collections;
//! - `directory`: role scope tags, assignment filters and groups (generic writes with their
//!   checks), group membership (`$ref`, dynamic rules) and what targeting reads of a device;
//! - `exports`: export jobs (creating, the runner's changes, the sweep) and the paged read of
//!   exported rows;
//! - `agents`: enrollment secrets, enrolling devices, device credentials;
//! - `apps`: registered applications of the Entra-shaped token endpoint;
//! - `sessions`: the dashboard's login links and sessions;
//! - `views`: computed views; `counters`: the summary counters; `plans`: the run-state list's
//!   plans chosen from the counters at scale;
//! - `codec`: rows ↔ records; `translate`: filters, orderings and values → SQL;
//! - `db`: the two drivers behind one `Conn` interface; `migrate`: the schema;
//! - `error`: the one internal error type of commands and reads;
//! - `store`: [`Store`] for [`SqlStore`], forwarding to the modules above.

mod agents;
mod apps;
mod codec;
mod commands;
mod connect;
mod counters;
mod db;
mod directory;
mod error;
mod exports;
mod migrate;
mod plans;
mod reads;
mod report;
mod sessions;
mod store;
mod translate;
mod views;
mod writer;

use async_trait::async_trait;
use remediate_domain::collections::{Collection, CollectionId};
use remediate_domain::query::{ListQuery, Page, RemediationHistory};
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::Record;

pub use apps::RegisteredApp;
pub use connect::{PoolUse, ScrapeCounts, SqlStore, StoreOptions};
pub use plans::set_list_plan_min_rows;
pub use sessions::{LoginLink, Session, SessionClock};
pub use writer::WriteObserver;

/// Why a storage call failed. Mapped to HTTP statuses by the API layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The addressed entity (or its parent) does not exist in the tenant.
    #[error("{0}")]
    NotFound(String),
    /// A unique key is taken; the message names the existing entity.
    #[error("{0}")]
    Conflict(String),
    /// The request refers to another entity that does not exist (a bind to a missing device).
    #[error("{0}")]
    InvalidReference(String),
    /// The change breaks a rule about the stored entity as a whole (checked once merged).
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be reached or is overloaded; the client should retry.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A read ran longer than the statement timeout and was stopped.
    #[error("{0}")]
    Timeout(String),
    /// The disk holding the database is full: the write was not stored (reads still work).
    #[error("the database's disk is full: {0}")]
    InsufficientStorage(String),
    /// Anything else; a bug or corrupt data.
    #[error("storage failure: {0}")]
    Internal(String),
}

/// What a single-entity read addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityRef {
    Script(String),
    RunState {
        script_id: String,
        id: String,
    },
    Device(String),
    Assignment {
        script_id: String,
        id: String,
    },
    /// An item of any other declared collection: its ancestors' keys, then its own.
    Item {
        of: &'static Collection,
        keys: Vec<String>,
    },
}

impl EntityRef {
    /// The key of an item of a declared collection (keys outermost first); `None` for
    /// collections whose items are not addressable one by one (a run state's history).
    pub fn of(collection: &'static Collection, keys: &[String]) -> Option<EntityRef> {
        let key = |i: usize| keys.get(i).cloned().unwrap_or_default();
        match collection.id {
            CollectionId::Scripts => Some(EntityRef::Script(key(0))),
            CollectionId::Devices => Some(EntityRef::Device(key(0))),
            CollectionId::RunStates => Some(EntityRef::RunState {
                script_id: key(0),
                id: key(1),
            }),
            CollectionId::Assignments => Some(EntityRef::Assignment {
                script_id: key(0),
                id: key(1),
            }),
            CollectionId::RoleScopeTags
            | CollectionId::AssignmentFilters
            | CollectionId::Groups
            | CollectionId::DirectoryDevices
            | CollectionId::EnrollmentSecrets
            | CollectionId::ExportJobs => Some(EntityRef::Item {
                of: collection,
                keys: keys.to_vec(),
            }),
            // Rows of reference collections are items of another collection.
            CollectionId::GroupMembers | CollectionId::DeviceMemberOf => {
                let via = collection.via.as_ref()?;
                Some(EntityRef::Item {
                    of: via.items,
                    keys: vec![keys.last()?.clone()],
                })
            }
            CollectionId::History => None,
        }
    }
}

/// Everything the API, the binary's maintenance commands and the history retention ask of
/// storage. Every method is scoped to one tenant except the maintenance ones (`prune_history`,
/// `recount`, `check_counters`), which cover every tenant.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Execute one write command in one transaction.
    async fn write(&self, tenant: &str, write: Write) -> Result<WriteOutcome, StoreError>;
    /// Read one entity; `Ok(None)` when it does not exist in the tenant.
    async fn get(&self, tenant: &str, entity: &EntityRef) -> Result<Option<Record>, StoreError>;
    /// Read one page of a collection.
    async fn list(&self, tenant: &str, query: &ListQuery) -> Result<Page, StoreError>;
    /// `runSummary` of a script (SPEC §3.4); `None` when the script does not exist.
    async fn run_summary(
        &self,
        tenant: &str,
        script_id: &str,
    ) -> Result<Option<Record>, StoreError>;
    /// `getRemediationHistory` of a script; `None` when the script does not exist.
    async fn remediation_history(
        &self,
        tenant: &str,
        script_id: &str,
    ) -> Result<Option<RemediationHistory>, StoreError>;
    /// `getRemediationSummary`: (number of scripts, devices with remediationState `success` in any script).
    async fn remediation_summary(&self, tenant: &str) -> Result<(i64, i64), StoreError>;
    /// `deviceHealthScriptStates` of a device; `None` when the device does not exist.
    async fn device_script_states(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<Vec<Record>>, StoreError>;
    /// On-demand runs queued for a device: (script id, requested at); `None` when the device does not exist.
    async fn pending_on_demand(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<Vec<(String, remediate_domain::Instant)>>, StoreError>;
    /// The tenant's global-scripts state (member value of globalDeviceHealthScriptState).
    async fn global_scripts_state(&self, tenant: &str) -> Result<i64, StoreError>;
    /// Delete history records older than `cutoff` (retention); returns how many were deleted.
    /// Also drops the deleted devices no run state is bound to any more (`deleted_devices`).
    async fn prune_history(&self, cutoff: remediate_domain::Instant) -> Result<u64, StoreError>;
    /// What targeting reads of a device: its group memberships (static and dynamic), its
    /// properties for filter rules, and the tenant's filters. A device that does not exist has
    /// no memberships.
    async fn device_targeting(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<remediate_domain::directory::DeviceTargeting, StoreError>;
    /// What an agent's check-in reads of a device, on one connection (`None`: no such device).
    async fn check_in_view(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<remediate_domain::agents::CheckInView>, StoreError>;
    /// Register an application of the token endpoint; `Conflict` when its client id is taken
    /// in the tenant.
    async fn create_app(&self, app: &RegisteredApp) -> Result<(), StoreError>;
    /// An application of a tenant, revoked or not (`None`: not registered there).
    async fn app(&self, tenant: &str, client_id: &str)
        -> Result<Option<RegisteredApp>, StoreError>;
    /// Every application of a tenant, oldest first.
    async fn apps(&self, tenant: &str) -> Result<Vec<RegisteredApp>, StoreError>;
    /// Revoke an application (no more tokens); the app as it is now, `None` when unknown.
    async fn revoke_app(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<RegisteredApp>, StoreError>;
    /// The tenant an enrollment secret belongs to, by the secret's hash (`None`: unknown).
    async fn secret_tenant(&self, secret_hash: &str) -> Result<Option<String>, StoreError>;
    /// The credential hash of an enrolled device (`None`: not enrolled, or deleted since).
    async fn credential_hash(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// [`Store::assignment_targets`] and [`Store::device_targeting`] together, read in one
    /// statement: what a device token's request needs to know which scripts it may see.
    async fn device_visibility(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<
        (
            Vec<(String, String)>,
            remediate_domain::directory::DeviceTargeting,
        ),
        StoreError,
    >;
    /// Every assignment of the tenant as (script id, target JSON), for device visibility.
    async fn assignment_targets(&self, tenant: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Rebuild every counter from the rows (after rows were changed outside the server).
    async fn recount(&self) -> Result<(), StoreError>;
    /// Every difference between the counters and the rows, in words; empty when they agree.
    async fn check_counters(&self) -> Result<Vec<String>, StoreError>;
    /// One page of an export's rows in `(scriptId, id)` order: at most `limit` rows of `tenant`
    /// matching `filter`, after the row `after` (`(scriptId, id)` of the previous page's last).
    async fn export_rows(
        &self,
        tenant: &str,
        filter: &remediate_domain::exports::ExportFilter,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<remediate_domain::exports::ExportRow>, StoreError>;
    /// Export jobs a runner should take, across tenants, as (tenant, id): not started, or in
    /// progress with a runner silent since before `stale_before`.
    async fn export_jobs_to_run(
        &self,
        stale_before: remediate_domain::Instant,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// What storage keeps of an export job besides its record; `None` when it does not exist.
    async fn export_job_state(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<remediate_domain::exports::JobState>, StoreError>;
    /// Store a dashboard login link (only its token's hash).
    async fn create_login_link(&self, link: &LoginLink) -> Result<(), StoreError>;
    /// Redeem a login link by its token's hash and open session `session_hash` with its tenant
    /// and permissions, in one transaction; `None` when the link is unknown, used or expired.
    async fn open_session(
        &self,
        token_hash: &str,
        session_hash: &str,
        clock: SessionClock,
    ) -> Result<Option<Session>, StoreError>;
    /// A dashboard session by its id's hash (`None`: unknown or ended).
    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;
    /// Mark a session as used at `now`.
    async fn touch_session(
        &self,
        id_hash: &str,
        now: remediate_domain::Instant,
    ) -> Result<(), StoreError>;
    /// End a session; `true` when it existed.
    async fn end_session(&self, id_hash: &str) -> Result<bool, StoreError>;
    /// Is the database reachable?
    async fn ping(&self) -> Result<(), StoreError>;
    /// The secret that signs paging tokens, shared by every process on the same database.
    fn paging_secret(&self) -> &[u8];
}
