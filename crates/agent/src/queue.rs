//! Reports on disk until the server acknowledged them (SPEC §7).
//!
//! Every report is written here, durably, before it is sent, and removed only after the server
//! answered 2xx; delivery is in order (oldest first) and nothing is coalesced: each run is a row
//! of history on the server.
//!
//! Layout: `DIR/queue/` (mode 0700) holds one file per report, named by its sequence number
//! zero-padded to 20 digits (`00000000000000000042.json`, mode 0600), each written atomically
//! (temporary file, fsync, rename, fsync of the directory). `DIR/queue/next-seq` holds the next
//! sequence number, so numbers keep increasing across restarts even when the queue was emptied.
//! Temporary files left by a crash are removed on open; a report file that cannot be parsed is an
//! error naming it (it is never dropped).
//!
//! `backoff` computes the delay between delivery attempts.

use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::state::{
    clean_stale_temps, ensure_private_subdir, now_rfc3339, read_json, sync_dir, write_json,
};

const QUEUE_DIR: &str = "queue";
const SEQ_FILE: &str = "next-seq";
const SEQ_DIGITS: usize = 20;

/// The first retry's ceiling; each attempt doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The largest delay `backoff` chooses by itself.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The longest server `Retry-After` honoured (a larger one is clamped to this).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// The durable report queue of one state directory.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    /// The next sequence number; held while pushing, so pushes are numbered in order.
    next: Mutex<u64>,
}

/// One report waiting for the server's acknowledgement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QueuedReport {
    pub seq: u64,
    pub script_id: String,
    /// The run-state JSON to send.
    pub body: serde_json::Value,
    /// RFC 3339, UTC.
    pub queued_at: String,
}

impl Queue {
    /// Open (creating it, mode 0700) the queue of the state directory `dir`, i.e. `dir/queue/`.
    /// Removes temporary files left by a crashed process; the next sequence number is the larger
    /// of the stored counter and the largest queued number + 1.
    pub fn open(dir: &Path) -> anyhow::Result<Queue> {
        let qdir = dir.join(QUEUE_DIR);
        ensure_private_subdir(&qdir)?;
        clean_stale_temps(&qdir)?;
        let stored: Option<u64> = read_json(&qdir.join(SEQ_FILE))?;
        let after_queued = match scan(&qdir)?.last() {
            Some(&max) => max
                .checked_add(1)
                .context("queue sequence number overflow")?,
            None => 0,
        };
        let next = stored.unwrap_or(0).max(after_queued);
        Ok(Queue {
            dir: qdir,
            next: Mutex::new(next),
        })
    }

    /// The queue's directory (`DIR/queue`).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Queue a report (the next sequence number, stamped now). Durable when it returns.
    pub fn push(&self, script_id: &str, body: serde_json::Value) -> anyhow::Result<QueuedReport> {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = *next;
        let after = seq
            .checked_add(1)
            .context("queue sequence number overflow")?;
        // The counter first: a crash in between skips a number, never reuses one.
        write_json(&self.dir.join(SEQ_FILE), &after)?;
        *next = after;
        let report = QueuedReport {
            seq,
            script_id: script_id.to_string(),
            body,
            queued_at: now_rfc3339(),
        };
        write_json(&self.report_path(seq), &report)?;
        Ok(report)
    }

    /// The oldest queued report, if any.
    pub fn peek(&self) -> anyhow::Result<Option<QueuedReport>> {
        loop {
            let Some(&seq) = scan(&self.dir)?.first() else {
                return Ok(None);
            };
            let path = self.report_path(seq);
            match read_json::<QueuedReport>(&path)? {
                // Removed between listing and reading: look again.
                None => continue,
                Some(report) if report.seq != seq => bail!(
                    "{} is corrupt: it holds report number {}, not {seq}; it was left in place: \
                     repair or move it aside",
                    path.display(),
                    report.seq
                ),
                Some(report) => return Ok(Some(report)),
            }
        }
    }

    /// Remove a report (after the server answered 2xx). Durable when it returns; removing a
    /// report that is not queued (any more) is not an error.
    pub fn remove(&self, seq: u64) -> anyhow::Result<()> {
        let path = self.report_path(seq);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        sync_dir(&self.dir).with_context(|| format!("syncing {}", self.dir.display()))
    }

    /// How many reports are queued.
    pub fn len(&self) -> anyhow::Result<usize> {
        Ok(scan(&self.dir)?.len())
    }

    /// Whether no report is queued.
    pub fn is_empty(&self) -> anyhow::Result<bool> {
        Ok(self.len()? == 0)
    }

    fn report_path(&self, seq: u64) -> PathBuf {
        self.dir
            .join(format!("{seq:0width$}.json", width = SEQ_DIGITS))
    }
}

/// The sequence numbers of the queued reports, ascending. Other files (temporary files, the
/// counter) are not reports.
fn scan(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if let Some(seq) = entry.file_name().to_str().and_then(report_seq) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// `00000000000000000042.json` → 42.
fn report_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The delay before delivery attempt `attempt + 1` after `attempt + 1` failures (0 after the
/// first failure): capped exponential backoff with full jitter, i.e. uniform in
/// `[0, min(BACKOFF_CAP, BACKOFF_BASE · 2^attempt)]`, `random` choosing the point (0 → none,
/// `u64::MAX` → the ceiling). A server's `Retry-After` is honoured when it is longer (clamped to
/// `RETRY_AFTER_MAX`). Pure: pass `random_u64()` in the agent, fixed values in tests.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, random: u64) -> Duration {
    let cap = BACKOFF_CAP.as_millis() as u64;
    let base = BACKOFF_BASE.as_millis() as u64;
    let ceiling = if attempt >= 32 {
        cap
    } else {
        base.saturating_mul(1u64 << attempt).min(cap)
    };
    let jittered = (u128::from(ceiling) * u128::from(random) / u128::from(u64::MAX)) as u64;
    let delay = Duration::from_millis(jittered);
    match retry_after {
        Some(ra) => delay.max(ra.min(RETRY_AFTER_MAX)),
        None => delay,
    }
}

/// A random `u64` for `backoff`'s jitter (from std's per-process random hash keys and the clock;
/// not for cryptography).
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish()
}

impl QueuedReport {
    /// The report's file name in the queue directory.
    pub fn file_name(&self) -> String {
        format!("{:0width$}.json", self.seq, width = SEQ_DIGITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_support::{mode, TestDir};
    use crate::state::StateDir;
    use serde_json::json;

    fn open(t: &TestDir) -> Queue {
        StateDir::open(t.path()).unwrap().queue().unwrap()
    }

    #[test]
    fn queue_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Queue>();
    }

    #[test]
    fn queue_files_are_private_and_named_by_sequence() {
        let t = TestDir::new("qperm");
        let q = open(&t);
        assert_eq!(mode(q.path()), 0o700);
        let r = q.push("s1", json!({"detectionState": "success"})).unwrap();
        assert_eq!(r.seq, 0);
        assert_eq!(r.file_name(), "00000000000000000000.json");
        let file = q.path().join(r.file_name());
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&q.path().join(SEQ_FILE)), 0o600);
        assert_eq!(report_seq("00000000000000000042.json"), Some(42));
        assert_eq!(report_seq("42.json"), None);
        assert_eq!(report_seq("0000000000000000004x.json"), None);
        assert_eq!(report_seq(".00000000000000000042.json.tmp-1-2-3"), None);
    }

    #[test]
    fn queue_push_reopen_peek_gives_the_same() {
        let t = TestDir::new("qpeek");
        let q = open(&t);
        assert_eq!(q.peek().unwrap(), None);
        assert!(q.is_empty().unwrap());
        let body = json!({"detectionState": "fail", "preRemediationDetectionScriptOutput": "x"});
        let pushed = q.push("script-a", body.clone()).unwrap();
        assert_eq!(pushed.script_id, "script-a");
        assert_eq!(pushed.body, body);
        assert_eq!(pushed.queued_at.len(), 20);
        drop(q);
        let q = open(&t);
        assert_eq!(q.peek().unwrap(), Some(pushed.clone()));
        assert_eq!(q.peek().unwrap(), Some(pushed), "peek does not consume");
        assert_eq!(q.len().unwrap(), 1);
    }

    #[test]
    fn queue_order_across_reopen_and_no_coalescing() {
        let t = TestDir::new("qorder");
        let q = open(&t);
        for i in 0..3 {
            q.push("same-script", json!({ "run": i })).unwrap();
        }
        drop(q);
        let q = open(&t);
        q.push("same-script", json!({ "run": 3 })).unwrap();
        assert_eq!(q.len().unwrap(), 4, "every run is kept");
        let mut seen = Vec::new();
        while let Some(r) = q.peek().unwrap() {
            seen.push((r.seq, r.body["run"].as_u64().unwrap()));
            q.remove(r.seq).unwrap();
            // Reopen between deliveries, as a restart would.
            let reopened = open(&t);
            assert_eq!(reopened.len().unwrap(), q.len().unwrap());
        }
        assert_eq!(seen, vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
    }

    #[test]
    fn queue_remove_then_reopen() {
        let t = TestDir::new("qremove");
        let q = open(&t);
        let a = q.push("a", json!(1)).unwrap();
        let b = q.push("b", json!(2)).unwrap();
        q.remove(a.seq).unwrap();
        q.remove(a.seq).unwrap(); // idempotent
        drop(q);
        let q = open(&t);
        assert_eq!(q.len().unwrap(), 1);
        assert_eq!(q.peek().unwrap(), Some(b.clone()));
        q.remove(b.seq).unwrap();
        let q = open(&t);
        assert_eq!(q.peek().unwrap(), None);
        assert_eq!(q.len().unwrap(), 0);
    }

    #[test]
    fn queue_sequence_continues_after_restart() {
        let t = TestDir::new("qseq");
        let q = open(&t);
        for _ in 0..3 {
            q.push("s", json!(null)).unwrap();
        }
        drop(q);
        let q = open(&t);
        assert_eq!(q.push("s", json!(null)).unwrap().seq, 3);
        // Even when the queue was emptied before the restart.
        for seq in 0..4 {
            q.remove(seq).unwrap();
        }
        drop(q);
        let q = open(&t);
        assert_eq!(q.push("s", json!(null)).unwrap().seq, 4);
        // And when the counter is behind the files (e.g. files restored from elsewhere).
        fs::write(q.path().join(SEQ_FILE), b"1\n").unwrap();
        let q = open(&t);
        assert_eq!(q.push("s", json!(null)).unwrap().seq, 5);
    }

    #[test]
    fn queue_ignores_and_cleans_crash_leftovers() {
        let t = TestDir::new("qtemp");
        let q = open(&t);
        let r = q.push("s", json!({"a": 1})).unwrap();
        // A report being written when a (now dead) process crashed.
        let tmp = q
            .path()
            .join(".00000000000000000001.json.tmp-999999999-1-0");
        fs::write(&tmp, b"{\"seq\": 1, \"scr").unwrap();
        assert_eq!(q.len().unwrap(), 1, "a temp file is not a report");
        let q = open(&t);
        assert!(!tmp.exists(), "cleaned on open");
        assert_eq!(q.peek().unwrap(), Some(r));
    }

    #[test]
    fn queue_corrupt_report_is_an_error_naming_it() {
        let t = TestDir::new("qcorrupt");
        let q = open(&t);
        q.push("s", json!(1)).unwrap();
        let bad = q.path().join("00000000000000000000.json");
        fs::write(&bad, b"{not json").unwrap();
        let err = q.peek().unwrap_err().to_string();
        assert!(err.contains("00000000000000000000.json"), "{err}");
        assert!(bad.exists(), "never dropped");
        // A file whose content disagrees with its name.
        let q2 = q.push("s", json!(2)).unwrap();
        fs::remove_file(&bad).unwrap();
        let mut wrong = q2.clone();
        wrong.seq = 7;
        fs::write(
            q.path().join(q2.file_name()),
            serde_json::to_vec(&wrong).unwrap(),
        )
        .unwrap();
        let err = q.peek().unwrap_err().to_string();
        assert!(err.contains(&q2.file_name()), "{err}");
        // A corrupt counter is an error too.
        fs::write(q.path().join(SEQ_FILE), b"x").unwrap();
        let err = Queue::open(t.path()).unwrap_err().to_string();
        assert!(err.contains(SEQ_FILE), "{err}");
    }

    #[test]
    fn backoff_bounds() {
        let max = u64::MAX;
        // Never above the cap; zero jitter is zero.
        for attempt in [0, 1, 5, 8, 9, 10, 31, 32, 63, 64, 1000, u32::MAX] {
            for random in [0, 1, max / 3, max / 2, max - 1, max] {
                assert!(backoff(attempt, None, random) <= BACKOFF_CAP);
            }
            assert_eq!(backoff(attempt, None, 0), Duration::ZERO);
        }
        // The ceiling grows (doubling from the base) until the cap.
        let ceilings: Vec<Duration> = (0..12).map(|a| backoff(a, None, max)).collect();
        assert_eq!(ceilings[0], BACKOFF_BASE);
        assert_eq!(ceilings[1], BACKOFF_BASE * 2);
        assert_eq!(ceilings[3], BACKOFF_BASE * 8);
        assert!(ceilings.windows(2).all(|w| w[0] <= w[1]));
        assert!(ceilings[..8].windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ceilings[11], BACKOFF_CAP);
        assert_eq!(backoff(1000, None, max), BACKOFF_CAP);
        // Full jitter: the middle of the range.
        assert_eq!(backoff(2, None, max / 2), Duration::from_millis(1999));
        // Retry-After: the larger wins, clamped to RETRY_AFTER_MAX.
        let ra = Duration::from_secs(120);
        assert_eq!(backoff(0, Some(ra), max), ra);
        assert_eq!(backoff(20, Some(ra), max), BACKOFF_CAP);
        assert_eq!(
            backoff(0, Some(Duration::from_secs(600)), 0),
            Duration::from_secs(600)
        );
        assert_eq!(
            backoff(3, Some(Duration::from_secs(86_400)), 0),
            RETRY_AFTER_MAX
        );
        assert_eq!(backoff(3, Some(Duration::ZERO), max), BACKOFF_BASE * 8);
        // The agent's random source varies.
        let r: Vec<u64> = (0..8).map(|_| random_u64()).collect();
        assert!(r.windows(2).any(|w| w[0] != w[1]));
    }
}
