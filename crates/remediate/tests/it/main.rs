//! Integration tests: the real server over HTTP, each test on SQLite and on PostgreSQL.

mod harness;

mod differential;
mod durability;
mod errors;
mod limits;
mod paging;
mod probe;
mod resilience;
mod run_states;
mod scale_out;
mod scripts_devices;
mod security;
mod security_tokens;
mod slow_clients;
mod surface;
