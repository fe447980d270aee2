//! A full disk (issue 17): the server's data directory (SQLite) on a small tmpfs that concurrent
//! writers fill. Once it is full every write is answered 507 `InsufficientStorage` with a message
//! saying the disk is full (never a 500); reads keep answering 200; every acknowledged write is
//! stored; the database is intact (`PRAGMA integrity_check`, while full and after the stop);
//! when the tmpfs grows, writes succeed again without restarting the server, and the counters
//! agree with the rows (`recount --check`). The same on PostgreSQL with the database in a
//! tablespace on a small tmpfs (`disk_full`, 53100).
//!
//! Mounting needs root (as here and in CI); otherwise the test says so and does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Backend, Mode, TestApp, WRITE_SCOPES};
use crate::pg_cluster::{
    all_ids, assert_none_lost, assert_remediated, database_name, device_with_run_state, is_root,
    run_state_devices, serve_from, stop_writers, Cluster,
};

/// A size-limited tmpfs mounted on a new temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("remediate-full-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let tmpfs = Tmpfs { dir };
        tmpfs.mount_command(&format!("size={size}"), &["-t", "tmpfs"]);
        tmpfs
    }

    /// Change the size of the mounted tmpfs (its files stay).
    fn resize(&self, size: &str) {
        self.mount_command(&format!("remount,size={size}"), &[]);
    }

    fn mount_command(&self, options: &str, extra: &[&str]) {
        let output = Command::new("mount")
            .args(extra)
            .args(["-o", options, "tmpfs"])
            .arg(&self.dir)
            .output()
            .expect("mount");
        assert!(
            output.status.success(),
            "mount -o {options}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `PRAGMA integrity_check` on a read-only connection (the server may be running).
fn integrity(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database read-only");
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.join("\n")
}

/// What the writers saw.
#[derive(Default)]
struct Seen {
    /// Devices whose create was acknowledged.
    devices: Vec<String>,
    /// Devices whose run state was acknowledged.
    run_states: Vec<String>,
    /// Answers other than 201 or a well-formed 507.
    other: Vec<String>,
}

/// Four writers create devices and run states until 40 writes were refused with a well-formed
/// 507; then reads are checked while the disk is still full and the writers stopped. What they
/// saw, and how long the disk took to fill.
async fn fill(app: &Arc<TestApp>, script: &str, on_full: impl FnOnce()) -> (Seen, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let full = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let output = "x".repeat(1500);
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, stop, full, seen, script, output) = (
            app.clone(),
            stop.clone(),
            full.clone(),
            seen.clone(),
            script.to_owned(),
            output.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let reply = match device_with_run_state(
                    &app,
                    &script,
                    &format!("w{w}-{n}"),
                    &format!(
                        r#""detectionState":"fail","remediationState":"success","preRemediationDetectionScriptOutput":"{output}""#
                    ),
                    |id| seen.lock().unwrap().devices.push(id.to_owned()),
                )
                .await
                {
                    Ok(id) => {
                        seen.lock().unwrap().run_states.push(id);
                        continue;
                    }
                    Err(reply) => reply,
                };
                let message = reply.json["error"]["message"].as_str().unwrap_or("");
                if reply.status == 507
                    && reply.json["error"]["code"] == "InsufficientStorage"
                    && message.contains("disk is full")
                {
                    full.fetch_add(1, Ordering::SeqCst);
                    // The disk stays full until the test grows it: no need to spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                } else {
                    seen.lock()
                        .unwrap()
                        .other
                        .push(format!("{} {}", reply.status, reply.text));
                }
            }
        }));
    }

    // Fill the disk: wait for the refusals.
    let started = Instant::now();
    while full.load(Ordering::SeqCst) < 40 {
        assert!(
            seen.lock().unwrap().other.is_empty(),
            "answers other than 201 or 507: {:?}",
            seen.lock().unwrap().other
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the disk did not fill within 60 s ({} writes refused)",
            full.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let filled_in = started.elapsed();

    // While it is full, and the writers keep trying: reads answer.
    let some_device = seen.lock().unwrap().devices[0].clone();
    for url in [
        "deviceManagement/managedDevices?$top=10".to_owned(),
        format!("deviceManagement/managedDevices/{some_device}"),
        format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$top=10"),
        format!("deviceManagement/deviceHealthScripts/{script}/runSummary"),
    ] {
        let read = app.get(&url).await;
        assert_eq!(
            read.status, 200,
            "{url} while the disk is full: {}",
            read.text
        );
    }
    on_full();
    let seen = stop_writers(&stop, writers, &seen).await;
    assert!(
        seen.other.is_empty(),
        "answers other than 201 or 507 InsufficientStorage: {:?}",
        seen.other
    );
    // Still full: a write is refused with the whole Graph error and a Retry-After. A small row
    // may still fit in a page's free space (PostgreSQL), so a few more writes may be stored
    // first; within 50 the disk must refuse one.
    let mut refused = None;
    for i in 0..50 {
        let answer = app
            .post(
                "deviceManagement/managedDevices",
                &format!(r#"{{"deviceName":"refused-{i}"}}"#),
            )
            .await;
        match answer.status {
            201 => continue,
            _ => {
                refused = Some(answer);
                break;
            }
        }
    }
    let refused = refused.expect("the disk stayed full: 50 more small writes were all stored");
    refused.assert_error(507, "InsufficientStorage", "disk is full");
    assert!(!refused.header("retry-after").is_empty());
    (seen, filled_in)
}

/// Every acknowledged device and run state is stored (read while the disk is still full); the
/// number of run states stored.
async fn nothing_lost(app: &TestApp, script: &str, seen: &Seen) -> usize {
    const WHAT: &str = "a read while the disk is full";
    let devices: std::collections::HashSet<String> = all_ids(
        app,
        "deviceManagement/managedDevices?$select=id&$top=500",
        WHAT,
        |d| d["id"].as_str().unwrap().to_owned(),
    )
    .await
    .into_iter()
    .collect();
    assert_none_lost(&seen.devices, &devices, "acknowledged devices lost");
    let states = run_state_devices(app, script, WHAT).await;
    assert_none_lost(&seen.run_states, &states, "acknowledged run states lost");
    states.len()
}

/// Once space has returned: 20 devices and run states are created, and `runSummary` counts
/// every stored run state.
async fn writes_resume(app: &TestApp, script: &str, stored: usize) {
    for i in 0..20 {
        let device = app
            .post(
                "deviceManagement/managedDevices",
                &format!(r#"{{"deviceName":"after-{i}"}}"#),
            )
            .await;
        assert_eq!(
            device.status, 201,
            "a write once space returned: {}",
            device.text
        );
        let id = device.json["id"].as_str().unwrap();
        let state = app
            .run_state(
                script,
                id,
                r#""detectionState":"fail","remediationState":"success""#,
            )
            .await;
        assert_eq!(
            state.status, 201,
            "a run state once space returned: {}",
            state.text
        );
    }
    assert_remediated(app, script, stored + 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_keeps_reads_and_loses_nothing_and_writes_resume() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a size-limited tmpfs needs root (CI runs as root)");
        return;
    }
    // The database after its migrations takes ~0.7 MB (file and WAL): 6 MB fill within seconds.
    let tmpfs = Tmpfs::mount("6m");
    let mut app = TestApp::start_in(Backend::Sqlite, Mode::Process)
        .await
        .unwrap();
    app.stop();
    let _ = std::fs::remove_dir_all(&app.data_dir);
    app.data_dir = tmpfs.dir.join("data");
    app.spawn();
    app.token = app.mint("tenant-a", WRITE_SCOPES, &[]);
    let script = app.script("full").await;
    let app = Arc::new(app);
    let db = app.data_dir.join("remediate.db");
    let (seen, filled_in) = fill(&app, &script, || {
        assert_eq!(integrity(&db), "ok", "the database while the disk is full");
    })
    .await;
    let stored = nothing_lost(&app, &script, &seen).await;

    // Space returns: writes succeed again, without a restart.
    tmpfs.resize("64m");
    writes_resume(&app, &script, stored).await;
    eprintln!(
        "disk full (SQLite): filled in {filled_in:?}; {} devices and {} run states acknowledged before, all stored; 20 + 20 writes after the resize",
        seen.devices.len(),
        seen.run_states.len()
    );

    let mut app = Arc::into_inner(app).expect("the writers are done");
    app.stop();
    let (agrees, output) = app.recount_check();
    assert!(agrees, "recount --check: {output}");
    assert_eq!(integrity(&db), "ok");
    drop(app);
    drop(tmpfs);
}

/// The same on PostgreSQL: the test's own cluster (`crate::pg_cluster`) with the database in a
/// tablespace on a small tmpfs (`CREATE DATABASE … TABLESPACE`; the WAL stays on the large
/// disk, since a full `pg_wal` stops PostgreSQL itself). A relation that cannot grow fails with
/// `disk_full` (53100): 507, reads 200, nothing acknowledged lost, writes back once it grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_postgres_tablespace_answers_507_keeps_reads_and_writes_resume() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a size-limited tmpfs needs root (CI runs as root)");
        return;
    }
    let Some(mut app) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    let cluster = Cluster::init();
    let tmpfs = Tmpfs::mount("64m");
    let chowned = Command::new("chown")
        .arg("postgres:postgres")
        .arg(&tmpfs.dir)
        .status()
        .unwrap();
    assert!(chowned.success());
    cluster.psql(
        "postgres",
        &format!("CREATE TABLESPACE small LOCATION '{}'", tmpfs.dir.display()),
    );
    let database = database_name(&app);
    cluster.psql(
        "postgres",
        &format!("CREATE DATABASE {database} TABLESPACE small"),
    );
    serve_from(&mut app, cluster.address());
    let script = app.script("full").await;
    // Leave 2 MB beside what the migrated database takes.
    tmpfs.resize(&format!("{}k", used_kib(&tmpfs.dir) + 2048));
    let app = Arc::new(app);
    let (seen, filled_in) = fill(&app, &script, || {}).await;
    let stored = nothing_lost(&app, &script, &seen).await;
    tmpfs.resize("64m");
    writes_resume(&app, &script, stored).await;
    eprintln!(
        "disk full (PostgreSQL tablespace): filled in {filled_in:?}; {} devices and {} run states acknowledged before, all stored; 20 + 20 writes after the resize",
        seen.devices.len(),
        seen.run_states.len()
    );
    let (agrees, output) = app.recount_check();
    assert!(agrees, "recount --check: {output}");
    let mut app = Arc::into_inner(app).expect("the writers are done");
    app.stop();
    drop(app);
    drop(cluster);
    drop(tmpfs);
}

/// KiB in use on the file system of `dir`.
fn used_kib(dir: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=used", "-k"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's used KiB")
}
