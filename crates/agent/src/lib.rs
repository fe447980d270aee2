//! The device agent (`remediate-agent`, SPEC §7): enrolls a machine, learns the scripts assigned
//! to it, runs detection and remediation on schedule, and reports every result to the server
//! through the Graph surface — queued on disk so that nothing is lost while the server is away.
//!
//! Modules, one job each:
//! - `schedule`: when a script runs next (pure; run-once, hourly, daily; UTC or local time, DST);
//! - `exec`: running one script file (interpreter, process group, timeout, bounded output);
//! - `outcome`: detect → remediate → detect again, mapped to Graph's states and output fields;
//! - `queue`: reports on disk (fsync'd) until the server acknowledged them;
//! - `state`: the state directory (identity, credential, what was downloaded and run);
//! - `client`: the server's API as the agent uses it (token exchange, check-in, reports);
//! - `signature`: signed scripts (`enforceSignatureCheck`): Ed25519 signature lines and keys;
//! - `install`: the service definition (systemd unit, launchd plist) `install` writes;
//! - `simulate`: the fleet simulator (N virtual devices over real HTTP, for capacity figures);
//! - `agent`: the loop that ties them together; `cli`: the command line.

pub mod agent;
pub mod cli;
pub mod client;
pub mod exec;
pub mod install;
pub mod outcome;
pub mod queue;
pub mod schedule;
pub mod signature;
pub mod simulate;
pub mod state;
