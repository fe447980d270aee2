//! A real PostgreSQL restart under load (issue 17): the test starts its own cluster (`initdb`,
//! `pg_ctl` on a free port, in a temporary directory; the shared server is not touched), runs
//! concurrent writers against remediate, and restarts the cluster with a fast and then an
//! immediate shutdown. While it is down every answer is a 503 with `Retry-After` (never a 500,
//! never a hang); service comes back without restarting remediate; every acknowledged write is
//! stored and the counters agree with the rows (`recount --check`).

use std::sync::Arc;
use std::time::Duration;

use crate::harness::{Backend, TestApp};
use crate::pg_cluster::{
    assert_none_lost, assert_read_unavailable, assert_remediated, run_state_devices, serve_from,
    wait_for_a_write, Cluster, Writers,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_postgres_restart_fast_and_immediate_is_503_then_recovers_with_nothing_lost() {
    // The shared server must be there in CI (the harness's rule); this test needs only the
    // server binaries beside it.
    let Some(mut app) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    let cluster = Cluster::init();
    serve_from(&mut app, cluster.address());
    let script = app.script("restart").await;
    let app = Arc::new(app);
    let writers = Writers::spawn(&app, &script, None);
    for mode in ["fast", "immediate"] {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let before = writers.acknowledged();
        assert!(
            before > 0,
            "no write was acknowledged before the {mode} stop"
        );
        cluster.stop(mode);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Down: reads too are a 503 with Retry-After.
        assert_read_unavailable(&app, "a read while PostgreSQL is down").await;
        cluster.start();
        wait_for_a_write(&app, mode, Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = writers.stop().await;
    assert!(seen.unavailable > 0, "no write met the outage");
    // Every acknowledged run state is stored, with its counters.
    let stored = run_state_devices(&app, &script, "a read after the restarts").await;
    assert_none_lost(&seen.acknowledged, &stored, "acknowledged but lost");
    assert_remediated(&app, &script, stored.len()).await;
    let (agrees, output) = app.recount_check();
    assert!(agrees, "recount --check: {output}");
}
