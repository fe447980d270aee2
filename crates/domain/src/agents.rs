//! Domain rules of device agents' enrollment (SPEC §7): enrollment secrets (created with an
//! expiry, a use count and groups to join) and what an enrolling agent may tell of its machine.

use crate::directory::DeviceTargeting;
use crate::model::{ENROLLMENT_SECRET, MANAGED_DEVICE};
use crate::ops::RuleError;
use crate::time::Instant;
use crate::write::Write;
use crate::{new_id, Record, Value};

/// What an agent's check-in reads, in one go: the device's targeting (memberships, facts, the
/// tenant's filters), every assignment of the tenant with its script as (assignment, script) in
/// (script id, assignment id) order (the script's list form: no content), and the scripts of the
/// device's pending on-demand runs.
#[derive(Debug, Clone)]
pub struct CheckInView {
    pub targeting: DeviceTargeting,
    pub assignments: Vec<(Record, Record)>,
    pub pending_on_demand: Vec<String>,
}

/// Default lifetime of an enrollment secret without an explicit expiry.
pub const DEFAULT_SECRET_LIFETIME_SECS: i64 = 7 * 24 * 3600;

/// A new random secret (two v4 UUIDs' worth of randomness, 244 bits) with a recognisable prefix.
pub fn new_secret() -> String {
    format!(
        "rmd_{}{}",
        new_id().replace('-', ""),
        new_id().replace('-', "")
    )
}

/// The hash storage keeps of a secret or credential (SHA-256, hex).
pub fn hash_secret(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The create of an enrollment secret from the decoded body: a new secret, shown once (in the
/// create's answer), and its hash, which storage keeps.
pub fn create_secret(fields: Vec<(usize, Value)>) -> Result<Write, RuleError> {
    let mut record = Record::with_defaults(&ENROLLMENT_SECRET);
    for (index, value) in fields {
        record.values[index] = value;
    }
    let now = Instant::now();
    record.set("id", Value::Str(new_id()));
    record.set("createdDateTime", Value::Time(now));
    match record.get("expirationDateTime") {
        Value::Null => {
            let ticks = now.ticks() + DEFAULT_SECRET_LIFETIME_SECS * 10_000_000;
            let expiry = Instant::from_ticks(ticks).unwrap_or(now);
            record.set("expirationDateTime", Value::Time(expiry));
        }
        Value::Time(t) if *t <= now => {
            return Err(RuleError(
                "'expirationDateTime' must be in the future.".into(),
            ))
        }
        _ => {}
    }
    if let Value::Int(n) = record.get("usesRemaining") {
        if *n < 1 {
            return Err(RuleError(
                "'usesRemaining' must be at least 1 (leave it out for no limit).".into(),
            ));
        }
    }
    let secret = new_secret();
    let secret_hash = hash_secret(&secret);
    Ok(Write::CreateEnrollmentSecret {
        record,
        secret,
        secret_hash,
    })
}

/// The managed device an enrolling agent describes (its decoded `device` object), with a new id.
pub fn enrolled_device(fields: Vec<(usize, Value)>) -> Record {
    let mut record = Record::with_defaults(&MANAGED_DEVICE);
    for (index, value) in fields {
        record.values[index] = value;
    }
    let now = Value::Time(Instant::now());
    record.set("id", Value::Str(new_id()));
    record.set("enrolledDateTime", now.clone());
    record.set("lastSyncDateTime", now);
    record
}
