//! Throwaway PostgreSQL clusters for the fault tests (issue 17): `initdb` and `pg_ctl` on a free
//! port in a temporary directory, a hot standby made with `pg_basebackup`, its promotion; and
//! the one loop that waits for the server to accept writes again after a fault. The shared
//! server on 127.0.0.1:5432 is never touched. Also what the fault tests share: the concurrent
//! writers ([`Writers`], [`device_with_run_state`], [`stop_writers`]) and the checks that nothing
//! acknowledged was lost ([`run_state_devices`], [`assert_none_lost`], [`assert_remediated`]).
//!
//! `initdb` and `postgres` refuse to run as root: as root (here and in CI) the cluster belongs
//! to the `postgres` user and its commands run as that user (`runuser`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::harness::{free_port, Reply, TestApp};

/// The directory of the PostgreSQL server binaries (`initdb`, `pg_ctl`, `pg_basebackup`).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("pg_ctl under /usr/lib/postgresql/*/bin")
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A new temporary directory, owned by `postgres` when running as root.
fn cluster_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("remediate-pg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    if is_root() {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    dir
}

/// A throwaway cluster in a temporary directory, stopped (immediately) and removed when dropped.
pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        let path = pg_bin().join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// `initdb` a new cluster (trust authentication, user `postgres`) and start it.
    pub fn init() -> Cluster {
        Cluster::init_with(&[])
    }

    /// [`Cluster::init`], started with these server settings (`name=value`, given as `-c` on
    /// the command line, so a standby copied from it does not inherit them).
    pub fn init_with(settings: &[&str]) -> Cluster {
        let cluster = Cluster {
            dir: cluster_dir(),
            port: free_port(),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        );
        cluster.start_with(settings);
        cluster
    }

    /// A hot standby of `primary` (`pg_basebackup -R`: it streams from the primary), started.
    pub fn standby_of(primary: &Cluster) -> Cluster {
        let cluster = Cluster {
            dir: cluster_dir(),
            port: free_port(),
        };
        cluster.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &cluster.data(),
                "-R",
                "-X",
                "stream",
            ],
        );
        cluster.start();
        cluster
    }

    pub fn start(&self) {
        self.start_with(&[]);
    }

    fn start_with(&self, settings: &[&str]) {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.display()
        );
        for setting in settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let log = self.dir.join("log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// `pg_ctl stop` with this shutdown mode (`fast`, `immediate`).
    pub fn stop(&self, mode: &str) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"]);
    }

    /// Promote a standby to a primary and wait until it accepts writes.
    pub fn promote(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-w", "promote"]);
    }

    /// Run SQL with `psql` on database `db` and return its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-X", "-A", "-t", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Post a device every 100 ms until one is created (201): every answer meanwhile must be a 503
/// (the database is coming back), and the server must recover within `within`.
pub async fn wait_for_a_write(app: &TestApp, what: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let reply = app
            .post(
                "deviceManagement/managedDevices",
                r#"{"deviceName":"probe"}"#,
            )
            .await;
        if reply.status == 201 {
            return;
        }
        assert_eq!(reply.status, 503, "{what}: {}", reply.text);
        assert!(
            started.elapsed() < within,
            "{what}: the server did not recover within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stop the writers, wait for them (a panic in one fails the test), and take what they saw.
pub async fn stop_writers<T: Default>(
    stop: &AtomicBool,
    writers: Vec<JoinHandle<()>>,
    seen: &Mutex<T>,
) -> T {
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    std::mem::take(&mut *seen.lock().unwrap())
}

/// Create a device named `name` (`created` is told its id) and a run state of `script` for it
/// with these `fields`: the device's id once the run state is acknowledged, or the answer that
/// refused the device or the run state.
pub async fn device_with_run_state(
    app: &TestApp,
    script: &str,
    name: &str,
    fields: &str,
    created: impl FnOnce(&str),
) -> Result<String, Reply> {
    let device = app
        .post(
            "deviceManagement/managedDevices",
            &format!(r#"{{"deviceName":"{name}"}}"#),
        )
        .await;
    if device.status != 201 {
        return Err(device);
    }
    let id = device.json["id"].as_str().unwrap().to_owned();
    created(&id);
    let state = app.run_state(script, &id, fields).await;
    if state.status == 201 {
        Ok(id)
    } else {
        Err(state)
    }
}

/// The name of the application's database (the last part of its URL).
pub fn database_name(app: &TestApp) -> String {
    app.database_url()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// Restart the application on the database server(s) at `address`.
pub fn serve_from(app: &mut TestApp, address: String) {
    app.stop();
    app.db_address = address;
    app.spawn();
}

/// A read while no server accepts writes: 503 with `Retry-After`.
pub async fn assert_read_unavailable(app: &TestApp, what: &str) {
    let read = app.get("deviceManagement/managedDevices?$top=1").await;
    assert_eq!(read.status, 503, "{what}: {}", read.text);
    assert!(!read.header("retry-after").is_empty());
}

/// What the writers saw: run states acknowledged (device ids), answers 503 + `Retry-After`, and
/// every other answer.
#[derive(Default)]
pub struct Seen {
    pub acknowledged: Vec<String>,
    pub unavailable: usize,
    pub other: Vec<String>,
}

/// Four concurrent writers through a database fault: each creates a device and a run state for
/// it (`script`), recording the acknowledged run states; every other answer must come within
/// 20 s and is counted as a 503 + `Retry-After` or kept as another answer.
pub struct Writers {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Start the writers; after a refused write one sleeps `pause` if given.
    pub fn spawn(app: &Arc<TestApp>, script: &str, pause: Option<Duration>) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (app, stop, seen, script) =
                (app.clone(), stop.clone(), seen.clone(), script.to_owned());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let started = Instant::now();
                    let reply = match device_with_run_state(
                        &app,
                        &script,
                        &format!("w{w}-{n}"),
                        r#""detectionState":"fail","remediationState":"success""#,
                        |_| {},
                    )
                    .await
                    {
                        Ok(id) => {
                            seen.lock().unwrap().acknowledged.push(id);
                            continue;
                        }
                        Err(reply) => reply,
                    };
                    {
                        let mut seen = seen.lock().unwrap();
                        assert!(
                            started.elapsed() < Duration::from_secs(20),
                            "a write hung for {:?}",
                            started.elapsed()
                        );
                        if reply.status == 503 && !reply.header("retry-after").is_empty() {
                            seen.unavailable += 1;
                        } else {
                            seen.other.push(format!(
                                "{} {} {}",
                                reply.status,
                                reply.header("retry-after"),
                                reply.text
                            ));
                        }
                    }
                    if let Some(pause) = pause {
                        tokio::time::sleep(pause).await;
                    }
                }
            }));
        }
        Writers { stop, seen, tasks }
    }

    /// How many run states have been acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.seen.lock().unwrap().acknowledged.len()
    }

    /// Stop the writers and take what they saw: every answer was 2xx or 503 + `Retry-After`.
    pub async fn stop(self) -> Seen {
        let seen = stop_writers(&self.stop, self.tasks, &self.seen).await;
        assert!(
            seen.other.is_empty(),
            "answers other than 2xx or 503 + Retry-After: {:?}",
            seen.other
        );
        seen
    }
}

/// Every item on every page of `url`, mapped by `field`; every page must answer 200.
pub async fn all_ids(
    app: &TestApp,
    url: &str,
    what: &str,
    field: impl Fn(&serde_json::Value) -> String,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = Some(url.to_owned());
    while let Some(url) = next {
        let page = app.get(&url).await;
        assert_eq!(page.status, 200, "{what}: {}", page.text);
        ids.extend(page.json["value"].as_array().unwrap().iter().map(&field));
        next = page.json["@odata.nextLink"].as_str().map(str::to_owned);
    }
    ids
}

/// The devices of every stored run state of `script`.
pub async fn run_state_devices(app: &TestApp, script: &str, what: &str) -> HashSet<String> {
    all_ids(
        app,
        &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$select=id&$expand=managedDevice($select=id)&$top=500"),
        what,
        |s| s["managedDevice"]["id"].as_str().unwrap().to_owned(),
    )
    .await
    .into_iter()
    .collect()
}

/// Every acknowledged id is among the stored ones.
pub fn assert_none_lost(acknowledged: &[String], stored: &HashSet<String>, what: &str) {
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|d| !stored.contains(*d))
        .collect();
    assert!(lost.is_empty(), "{what}: {lost:?}");
}

/// `runSummary` of `script` counts `expected` remediated devices.
pub async fn assert_remediated(app: &TestApp, script: &str, expected: usize) {
    let summary = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/runSummary"
        ))
        .await;
    assert_eq!(
        summary.json["issueRemediatedDeviceCount"].as_u64(),
        Some(expected as u64),
        "{}",
        summary.text
    );
}
