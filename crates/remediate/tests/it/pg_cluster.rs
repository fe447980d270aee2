//! Throwaway PostgreSQL clusters for the fault tests (issue 17): `initdb` and `pg_ctl` on a free
//! port in a temporary directory, a hot standby made with `pg_basebackup`, its promotion; and
//! the one loop that waits for the server to accept writes again after a fault. The shared
//! server on 127.0.0.1:5432 is never touched.
//!
//! `initdb` and `postgres` refuse to run as root: as root (here and in CI) the cluster belongs
//! to the `postgres` user and its commands run as that user (`runuser`).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::TestApp;

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
