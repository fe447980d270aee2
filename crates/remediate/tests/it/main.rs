//! Integration tests: the real server over HTTP, each test on SQLite and on PostgreSQL (in this
//! process by default, as a child process where a test needs one; see `harness`).

mod harness;

/// The allocator of the binary (`src/main.rs`), so the in-process server allocates as it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod agent_signing;
mod batch_exact;
mod cli;
mod dashboard;
mod dashboard_edit;
mod dashboard_more;
mod differential;
mod directory;
mod disk_full;
mod durability;
mod entra;
mod errors;
mod exactness;
mod exports;
mod limits;
mod metrics;
mod oracle;
mod paging;
mod pg_cluster;
mod pg_failover;
mod pg_restart;
mod probe;
mod resilience;
mod run_states;
mod scale_out;
mod scripts_devices;
mod security;
mod security_tokens;
mod slow_clients;
mod status_plans;
mod surface;
mod tidy;
mod tls;
