//! The agent's state directory (SPEC §7): who this device is (identity and credential), what the
//! server last assigned (script cache), what ran last (run log), where scripts are written to run
//! (work dir), the report queue (`queue/`, see `crate::queue`) and the lock that keeps a second
//! agent away.
//!
//! Layout of DIR (mode 0700, owned by the agent's user; 0711 while scripts run as another user,
//! see `StateDir::set_traversable`):
//! - `identity.json`, `scripts.json`, `runs.json`: mode 0600, each replaced atomically (temporary
//!   file, fsync, rename, fsync of the directory), so a crash leaves the old or the new version;
//! - `work/`: mode 0700 (0711 while scripts run as another user), scripts written here to run;
//! - `queue/`: mode 0700, one file per report not yet acknowledged;
//! - `agent.lock`: mode 0600, held (an advisory `flock`) by the running agent, holding its pid.
//!
//! A file that cannot be parsed is an error naming it: state is never silently reset.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::queue::Queue;

const IDENTITY_FILE: &str = "identity.json";
const SCRIPTS_FILE: &str = "scripts.json";
const RUNS_FILE: &str = "runs.json";
const LOCK_FILE: &str = "agent.lock";
const WORK_DIR: &str = "work";

/// What marks a temporary file: `.<final name>.tmp-<pid>-<nanos>-<n>`.
const TEMP_MARKER: &str = ".tmp-";

/// The agent's state directory, checked to be private when opened.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// Who this device is, as enrollment left it.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct Identity {
    /// The server's base URL, including `/beta`.
    pub server: String,
    pub tenant: String,
    pub device_id: String,
    /// Secret: never printed (the `Debug` output redacts it).
    pub credential: String,
    pub enrolled_at: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("server", &self.server)
            .field("tenant", &self.tenant)
            .field("device_id", &self.device_id)
            .field("credential", &"<redacted>")
            .field("enrolled_at", &self.enrolled_at)
            .finish()
    }
}

/// The scripts last assigned to this device, with the check-in's ETag.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ScriptCache {
    pub etag: Option<String>,
    pub scripts: Vec<CachedScript>,
}

/// One assigned script, as downloaded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CachedScript {
    pub id: String,
    pub version: String,
    pub last_modified: String,
    pub display_name: Option<String>,
    /// Base64, as Graph carries it.
    pub detection: String,
    /// Base64, as Graph carries it.
    pub remediation: Option<String>,
    pub run_remediation: bool,
    pub run_schedule: Option<serde_json::Value>,
    pub run_as_account: String,
    pub enforce_signature_check: bool,
    pub detection_args: Vec<String>,
    pub remediation_args: Vec<String>,
    pub assigned_at: String,
}

/// The last run of each script, by script id.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RunLog {
    pub runs: BTreeMap<String, LastRun>,
}

/// How a script's last run ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LastRun {
    /// RFC 3339, UTC.
    pub finished_at: String,
    pub detection_state: String,
    pub remediation_state: String,
    pub reported: bool,
}

/// The state directory's lock, held while this value lives (released on drop, and by the kernel
/// if the process dies).
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Forget our pid (best effort); the file stays, so that nobody can end up holding a lock
        // on an unlinked file while another process creates a new one. Closing releases it.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

impl StateDir {
    /// Create (mode 0700, with any missing parents) or open DIR; refuse a directory that is
    /// group/world-accessible or owned by another user. Creates `work/` (0700) and removes
    /// temporary files left by a crashed process.
    pub fn open(path: &Path) -> anyhow::Result<StateDir> {
        match fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .with_context(|| format!("creating state directory {}", path.display()))?,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading state directory {}", path.display()))
            }
        }
        let path = fs::canonicalize(path)
            .with_context(|| format!("resolving state directory {}", path.display()))?;
        check_private_dir(&path, current_uid()?, "state directory")?;
        ensure_private_subdir(&path.join(WORK_DIR))?;
        clean_stale_temps(&path)?;
        Ok(StateDir { path })
    }

    /// The directory (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device's identity; `None` before enrollment.
    pub fn identity(&self) -> anyhow::Result<Option<Identity>> {
        read_json(&self.path.join(IDENTITY_FILE))
    }

    /// Replace the identity (atomically, mode 0600).
    pub fn save_identity(&self, id: &Identity) -> anyhow::Result<()> {
        write_json(&self.path.join(IDENTITY_FILE), id)
    }

    /// The script cache; empty before the first check-in.
    pub fn scripts(&self) -> anyhow::Result<ScriptCache> {
        Ok(read_json(&self.path.join(SCRIPTS_FILE))?.unwrap_or_default())
    }

    /// Replace the script cache (atomically, mode 0600).
    pub fn save_scripts(&self, c: &ScriptCache) -> anyhow::Result<()> {
        write_json(&self.path.join(SCRIPTS_FILE), c)
    }

    /// The run log; empty before the first run.
    pub fn runs(&self) -> anyhow::Result<RunLog> {
        Ok(read_json(&self.path.join(RUNS_FILE))?.unwrap_or_default())
    }

    /// Replace the run log (atomically, mode 0600).
    pub fn save_runs(&self, r: &RunLog) -> anyhow::Result<()> {
        write_json(&self.path.join(RUNS_FILE), r)
    }

    /// The private directory (0700, created by `open`) where scripts are written to run.
    pub fn work_dir(&self) -> PathBuf {
        self.path.join(WORK_DIR)
    }

    /// Scripts that run as another user (`--run-as-user`) must pass through DIR to reach their
    /// file under `work/`: `true` sets DIR to mode 0711 (others may pass, but neither list nor
    /// read it: every file in it is 0600 and every other subdirectory 0700), `false` back to
    /// 0700. `open` accepts both modes.
    pub fn set_traversable(&self, traversable: bool) -> anyhow::Result<()> {
        let mode = if traversable { 0o711 } else { 0o700 };
        fs::set_permissions(&self.path, fs::Permissions::from_mode(mode)).with_context(|| {
            format!(
                "setting the mode of state directory {} to {mode:04o}",
                self.path.display()
            )
        })
    }

    /// The report queue, in `DIR/queue/` (same as `Queue::open(self.path())`).
    pub fn queue(&self) -> anyhow::Result<Queue> {
        Queue::open(&self.path)
    }

    /// One running agent per state directory: take the exclusive lock on `agent.lock` (an
    /// advisory `flock`, which the kernel releases when the holder dies, so a lock left by a
    /// crash is never stale) and write our pid in it. Fails at once, naming the holder's pid,
    /// if another process (or another guard of this one) holds it.
    pub fn lock(&self) -> anyhow::Result<LockGuard> {
        let path = self.path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        // A lock file made by someone else (or an older version) is narrowed to 0600.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making lock file {} private", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another agent".to_string()
                } else {
                    format!("another agent (pid {holder})")
                };
                bail!(
                    "{who} is already running with state directory {} (lock file {} is held)",
                    self.path.display(),
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        // A pid left by a process that died is simply overwritten.
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing lock file {}", path.display()))?;
        Ok(LockGuard { file, path })
    }
}

/// Now, in RFC 3339 UTC with second precision (`2024-05-01T12:00:00Z`).
pub fn now_rfc3339() -> String {
    rfc3339_utc(SystemTime::now())
}

/// A time in RFC 3339 UTC with second precision (`2024-05-01T12:00:00Z`); times before 1970 are
/// given as 1970-01-01T00:00:00Z.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Read a JSON file; `None` if it does not exist; an error naming the file if it is corrupt.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        anyhow!(
            "{} is corrupt ({e}); it was left in place: repair or move it aside",
            path.display()
        )
    })
}

/// Write a value as JSON, atomically, mode 0600.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .with_context(|| format!("serializing {}", path.display()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Replace `path` with `bytes` so that a crash leaves either the old or the new content: write a
/// fresh temporary file (mode 0600) in the same directory, fsync it, rename it over `path`, fsync
/// the directory. Durable when it returns.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => (dir, name),
        _ => bail!("cannot write {}: not a file path", path.display()),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(
        ".{name}{TEMP_MARKER}{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Make a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create a private subdirectory of the (already checked) state directory, or check an existing
/// one: it must be ours; its mode is narrowed to 0700 if it was wider.
pub(crate) fn ensure_private_subdir(path: &Path) -> anyhow::Result<()> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                sync_dir(parent).with_context(|| format!("syncing {}", parent.display()))?;
            }
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    let meta = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_dir() {
        bail!("{} exists but is not a directory", path.display());
    }
    let uid = current_uid()?;
    if meta.uid() != uid {
        bail!(
            "{} is owned by uid {}, but the agent runs as uid {uid}; refusing to use it",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o7777 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", path.display()))?;
    }
    Ok(())
}

/// Refuse a directory that is not a directory, not owned by `uid`, or group/world-accessible
/// (beyond search permission for both, mode 0711).
fn check_private_dir(path: &Path, uid: u32, what: &str) -> anyhow::Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("reading {what} {}", path.display()))?;
    if !meta.is_dir() {
        bail!("{what} {} exists but is not a directory", path.display());
    }
    if meta.uid() != uid {
        bail!(
            "{what} {} is owned by uid {}, but the agent runs as uid {uid}: refusing to use it \
             (it holds the device's credential); chown it or choose another directory",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.mode() & 0o7777;
    // 0711 (`StateDir::set_traversable`): others may pass through, but not list or read.
    if mode & 0o077 != 0 && mode & 0o077 != 0o011 {
        bail!(
            "{what} {} has mode {mode:04o}, which lets other users in: refusing to use it (it \
             holds the device's credential); run `chmod 700 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// The effective uid of this process (from `/proc/self/status`, or else the owner of a file we
/// create).
fn current_uid() -> anyhow::Result<u32> {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok());
        if let Some(uid) = euid {
            return Ok(uid);
        }
    }
    let probe = std::env::temp_dir().join(format!(
        ".remediate-agent-uid-probe-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .context("determining the agent's uid")?;
    let uid = file.metadata().map(|m| m.uid());
    let _ = fs::remove_file(&probe);
    uid.context("determining the agent's uid")
}

/// Whether a process exists, if that can be known (`/proc` mounted).
fn process_alive(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new(&format!("/proc/{pid}")).exists())
}

/// Whether a file name is one of `write_atomic`'s temporary files.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Remove temporary files left in `dir` by processes that no longer exist (a crash between write
/// and rename); those of live processes (possibly being written right now) are left alone.
pub(crate) fn clean_stale_temps(dir: &Path) -> anyhow::Result<()> {
    let mut removed = false;
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_temp_name(name) {
            continue;
        }
        let pid = name
            .rsplit_once(TEMP_MARKER)
            .and_then(|(_, rest)| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let stale = match pid {
            Some(pid) => process_alive(pid) == Some(false),
            None => true,
        };
        if stale {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("removing {}", entry.path().display()))
                }
            }
        }
    }
    if removed {
        sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}

/// Test helpers shared with `crate::queue`'s tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A unique directory name under the system temp dir (not created), removed on drop.
    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new(tag: &str) -> TestDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            TestDir(std::env::temp_dir().join(format!(
                "remediate-agent-test-{tag}-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            )))
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A file's or directory's permission bits.
    pub(crate) fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{mode, TestDir};
    use super::*;

    fn identity() -> Identity {
        Identity {
            server: "https://remediate.example/beta".into(),
            tenant: "contoso".into(),
            device_id: "d-1".into(),
            credential: "s3cret".into(),
            enrolled_at: "2024-05-01T12:00:00Z".into(),
        }
    }

    fn script(id: &str) -> CachedScript {
        CachedScript {
            id: id.into(),
            version: "1".into(),
            last_modified: "2024-05-01T12:00:00Z".into(),
            display_name: Some("Check disk".into()),
            detection: "ZXhpdCAw".into(),
            remediation: None,
            run_remediation: false,
            run_schedule: Some(serde_json::json!({"interval": 1})),
            run_as_account: "system".into(),
            enforce_signature_check: false,
            detection_args: vec!["-q".into()],
            remediation_args: vec![],
            assigned_at: "2024-05-01T12:00:00Z".into(),
        }
    }

    #[test]
    fn state_open_creates_private_dirs_and_files_are_0600() {
        let t = TestDir::new("perm");
        let dir = t.path().join("nested/state");
        let s = StateDir::open(&dir).unwrap();
        assert!(s.path().is_absolute());
        assert_eq!(mode(s.path()), 0o700);
        assert_eq!(mode(&s.work_dir()), 0o700);
        s.save_identity(&identity()).unwrap();
        s.save_scripts(&ScriptCache::default()).unwrap();
        s.save_runs(&RunLog::default()).unwrap();
        for f in [IDENTITY_FILE, SCRIPTS_FILE, RUNS_FILE] {
            assert_eq!(mode(&s.path().join(f)), 0o600, "{f}");
        }
        // Reopening an existing private dir is fine; a widened work dir is narrowed again.
        fs::set_permissions(s.work_dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let s = StateDir::open(&dir).unwrap();
        assert_eq!(mode(&s.work_dir()), 0o700);
    }

    #[test]
    fn state_refuses_group_or_world_accessible_dir() {
        let t = TestDir::new("wide");
        fs::create_dir_all(t.path()).unwrap();
        for m in [0o750, 0o701, 0o777] {
            fs::set_permissions(t.path(), fs::Permissions::from_mode(m)).unwrap();
            let err = StateDir::open(t.path()).unwrap_err().to_string();
            assert!(
                err.contains("other users") && err.contains("chmod 700"),
                "{err}"
            );
        }
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
        StateDir::open(t.path()).unwrap();
    }

    #[test]
    fn state_dir_can_be_made_traversable_for_run_as_scripts() {
        let t = TestDir::new("traverse");
        let s = StateDir::open(t.path()).unwrap();
        s.save_identity(&identity()).unwrap();
        s.set_traversable(true).unwrap();
        assert_eq!(mode(s.path()), 0o711);
        // Accepted when opened again; the files stay private.
        let s = StateDir::open(t.path()).unwrap();
        assert_eq!(mode(s.path()), 0o711);
        assert_eq!(mode(&s.path().join(IDENTITY_FILE)), 0o600);
        assert_eq!(mode(&s.work_dir()), 0o700);
        s.set_traversable(false).unwrap();
        assert_eq!(mode(s.path()), 0o700);
    }

    #[test]
    fn state_refuses_dir_owned_by_another_user() {
        let t = TestDir::new("owner");
        let s = StateDir::open(t.path()).unwrap();
        let me = current_uid().unwrap();
        check_private_dir(s.path(), me, "state directory").unwrap();
        let err = check_private_dir(s.path(), me + 1, "state directory")
            .unwrap_err()
            .to_string();
        assert!(err.contains("owned by uid"), "{err}");
    }

    #[test]
    fn state_identity_round_trip() {
        let t = TestDir::new("identity");
        let s = StateDir::open(t.path()).unwrap();
        assert_eq!(s.identity().unwrap(), None);
        s.save_identity(&identity()).unwrap();
        assert_eq!(s.identity().unwrap(), Some(identity()));
        let s = StateDir::open(t.path()).unwrap();
        assert_eq!(s.identity().unwrap(), Some(identity()));
        assert!(!format!("{:?}", identity()).contains("s3cret"));
    }

    #[test]
    fn state_scripts_and_runs_round_trip() {
        let t = TestDir::new("cache");
        let s = StateDir::open(t.path()).unwrap();
        assert_eq!(s.scripts().unwrap(), ScriptCache::default());
        assert_eq!(s.runs().unwrap(), RunLog::default());
        let cache = ScriptCache {
            etag: Some("W/\"7\"".into()),
            scripts: vec![script("a"), script("b")],
        };
        s.save_scripts(&cache).unwrap();
        let mut runs = RunLog::default();
        runs.runs.insert(
            "a".into(),
            LastRun {
                finished_at: now_rfc3339(),
                detection_state: "success".into(),
                remediation_state: "skipped".into(),
                reported: false,
            },
        );
        s.save_runs(&runs).unwrap();
        let s = StateDir::open(t.path()).unwrap();
        assert_eq!(s.scripts().unwrap(), cache);
        assert_eq!(s.runs().unwrap(), runs);
    }

    #[test]
    fn state_corrupt_file_is_an_error_naming_it() {
        let t = TestDir::new("corrupt");
        let s = StateDir::open(t.path()).unwrap();
        fs::write(s.path().join(SCRIPTS_FILE), b"{\"etag\": ").unwrap();
        let err = s.scripts().unwrap_err().to_string();
        assert!(
            err.contains(SCRIPTS_FILE) && err.contains("corrupt"),
            "{err}"
        );
        // Left in place, not reset.
        assert_eq!(
            fs::read(s.path().join(SCRIPTS_FILE)).unwrap(),
            b"{\"etag\": "
        );
        fs::write(s.path().join(IDENTITY_FILE), b"").unwrap();
        let err = s.identity().unwrap_err().to_string();
        assert!(err.contains(IDENTITY_FILE), "{err}");
    }

    #[test]
    fn state_atomic_write_survives_leftover_temp_files() {
        let t = TestDir::new("leftover");
        let s = StateDir::open(t.path()).unwrap();
        s.save_identity(&identity()).unwrap();
        // A crash mid-write by a dead process, and a half-written file of a live one (us).
        let dead = s
            .path()
            .join(format!(".{IDENTITY_FILE}{TEMP_MARKER}999999999-1-0"));
        let live = s.path().join(format!(
            ".{IDENTITY_FILE}{TEMP_MARKER}{}-1-0",
            std::process::id()
        ));
        fs::write(&dead, b"{\"server\": \"half").unwrap();
        fs::write(&live, b"{\"server\": \"half").unwrap();
        let s = StateDir::open(t.path()).unwrap();
        assert!(
            !dead.exists(),
            "a dead process's temp file is cleaned on open"
        );
        assert!(live.exists(), "a live process's temp file is left alone");
        assert_eq!(s.identity().unwrap(), Some(identity()));
        let mut other = identity();
        other.credential = "rotated".into();
        s.save_identity(&other).unwrap();
        assert_eq!(s.identity().unwrap(), Some(other));
        let names: Vec<String> = fs::read_dir(s.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| is_temp_name(n))
            .collect();
        assert_eq!(names.len(), 1, "only the live leftover remains: {names:?}");
    }

    #[test]
    fn state_lock_refuses_a_second_holder_and_recovers_a_stale_lock() {
        let t = TestDir::new("lock");
        let s = StateDir::open(t.path()).unwrap();
        // A lock file left by a crashed agent (its pid no longer exists, no flock held).
        fs::write(s.path().join(LOCK_FILE), b"999999999\n").unwrap();
        let guard = s.lock().unwrap();
        assert_eq!(
            fs::read_to_string(guard.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        let err = s.lock().unwrap_err().to_string();
        assert!(
            err.contains("already running") && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        // Also through a second handle on the same directory.
        let err = StateDir::open(t.path()).unwrap().lock().unwrap_err();
        assert!(err.to_string().contains("already running"));
        assert_eq!(mode(guard.path()), 0o600);
        drop(guard);
        let again = s.lock().unwrap();
        drop(again);
    }

    #[test]
    fn state_rfc3339() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096); // leap day 2024
        assert_eq!(rfc3339_utc(t), "2024-02-29T12:34:56Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(t), "2000-02-29T00:00:00Z");
        assert_eq!(now_rfc3339().len(), 20);
    }
}
