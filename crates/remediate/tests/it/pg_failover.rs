//! Beyond one database machine (issue 17): a primary and a hot standby with synchronous
//! streaming replication, set up by the test (`initdb`, `pg_basebackup -R`,
//! `synchronous_standby_names='*'` on the primary's command line so the promoted standby does not
//! inherit it). remediate (the binary) is given both hosts
//! (`postgres://…@primary,standby/db`: several hosts mean `target_session_attrs=read-write`).
//! Under load the primary is stopped (immediate) and the standby promoted: every answer is 2xx
//! or 503 + `Retry-After`, writes resume on the new primary without restarting remediate, every
//! acknowledged write is there, and the counters agree with the rows. And a server that turns
//! read-only under remediate: 503 + `Retry-After` for writes, reads work, writes come back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{Backend, Mode, TestApp};
use crate::pg_cluster::{
    assert_none_lost, assert_read_unavailable, assert_remediated, database_name, run_state_devices,
    serve_from, wait_for_a_write, Cluster, Writers,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_takes_the_writes_without_a_restart_and_nothing_acknowledged_is_lost() {
    // The shared server must be there in CI (the harness's rule); this test needs only the
    // server binaries beside it.
    let Some(mut app) = TestApp::start_in(Backend::Postgres, Mode::Process).await else {
        return;
    };
    let primary = Cluster::init_with(&["synchronous_standby_names='*'"]);
    let standby = Cluster::standby_of(&primary);
    // Commits wait for the standby from now on.
    let started = Instant::now();
    while primary.psql("postgres", "SELECT sync_state FROM pg_stat_replication") != "sync" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the standby did not become synchronous"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    serve_from(
        &mut app,
        format!("{},{}", primary.address(), standby.address()),
    );
    let database = database_name(&app);
    assert_eq!(
        standby.psql("postgres", "SELECT pg_is_in_recovery()"),
        "t",
        "the standby is a standby before the failover"
    );
    let script = app.script("failover").await;
    let app = Arc::new(app);
    // Down: no need to spin.
    let writers = Writers::spawn(&app, &script, Some(Duration::from_millis(50)));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = writers.acknowledged();
    assert!(before > 0, "no write was acknowledged before the failover");
    primary.stop("immediate");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The primary is gone and the standby does not accept writes yet: reads too are a 503 with
    // Retry-After (remediate does not hand out connections to a standby).
    assert_read_unavailable(&app, "a read while no host accepts writes").await;
    let promoted = Instant::now();
    standby.promote();
    wait_for_a_write(&app, "after the promotion", Duration::from_secs(20)).await;
    let recovered_in = promoted.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let seen = writers.stop().await;
    assert!(seen.unavailable > 0, "no write met the failover");
    assert!(
        seen.acknowledged.len() > before,
        "no run state was acknowledged after the promotion"
    );
    // Every acknowledged run state is on the new primary, with its counters.
    assert_eq!(standby.psql(&database, "SELECT pg_is_in_recovery()"), "f");
    let stored = run_state_devices(&app, &script, "a read on the new primary").await;
    assert_none_lost(&seen.acknowledged, &stored, "acknowledged but lost");
    let rows: usize = standby
        .psql(&database, "SELECT count(*) FROM device_run_states")
        .parse()
        .unwrap();
    assert_eq!(rows, stored.len(), "the run state rows on the new primary");
    assert_remediated(&app, &script, stored.len()).await;
    let (agrees, output) = app.recount_check();
    assert!(agrees, "recount --check: {output}");
    eprintln!(
        "failover: {} run states acknowledged ({before} before the primary stopped), {} answers 503 + Retry-After, writes back {recovered_in:?} after the promotion began",
        seen.acknowledged.len(),
        seen.unavailable
    );
}

/// A server that turns read-only under remediate (`default_transaction_read_only`, as a
/// demoted or fenced primary would): writes answer 503 + `Retry-After` (`read_only_sql_transaction`,
/// 25006, never a 500), reads keep working, and writes resume when it accepts them again, without
/// restarting remediate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_turned_read_only_is_503_for_writes_and_writes_resume() {
    let Some(mut app) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    let cluster = Cluster::init();
    serve_from(&mut app, cluster.address());
    let device = app.device("before").await;
    let read_only = |on: &str| {
        cluster.psql(
            "postgres",
            &format!("ALTER SYSTEM SET default_transaction_read_only = {on}"),
        );
        cluster.psql("postgres", "SELECT pg_reload_conf()");
    };
    read_only("on");
    // The setting reaches the pooled sessions at their next statement.
    let started = Instant::now();
    let refused = loop {
        let reply = app
            .post(
                "deviceManagement/managedDevices",
                r#"{"deviceName":"refused"}"#,
            )
            .await;
        if reply.status != 201 {
            break reply;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "writes were still accepted 10 s after the server turned read-only"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    refused.assert_error(503, "ServiceUnavailable", "retry");
    assert!(!refused.header("retry-after").is_empty());
    let read = app
        .get(&format!("deviceManagement/managedDevices/{device}"))
        .await;
    assert_eq!(
        read.status, 200,
        "a read on a read-only server: {}",
        read.text
    );
    read_only("off");
    wait_for_a_write(
        &app,
        "after the server accepts writes again",
        Duration::from_secs(10),
    )
    .await;
}
