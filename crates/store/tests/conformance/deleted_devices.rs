//! `deleted_devices` (migration 0011): the ids that run states are bound to and no managed device
//! has, which the device-driven plans read to place those run states. The delete trigger lists
//! every deleted device, re-creating the device unlists it, the hourly maintenance
//! (`prune_history`) drops the ones no run state is bound to any more, `recount` rebuilds the
//! list exactly, and `check_counters` reports a run state whose deleted device is not listed.

use remediate_domain::write::Write;
use remediate_domain::Instant;
use remediate_store::Store;

use crate::values::*;
use crate::{both, Backend, TestStore};

/// The listed (tenant, id) pairs, read directly from the database under the store.
async fn listed(s: &TestStore) -> Vec<(String, String)> {
    const SQL: &str = "SELECT \"tenant\", \"id\" FROM deleted_devices ORDER BY 1, 2";
    match s.backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(&s._scratch.name).unwrap();
            let mut statement = conn.prepare(SQL).unwrap();
            statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        }
        Backend::Postgres => {
            let conn = crate::pg_connect(&s._scratch.url).await.unwrap();
            conn.query(SQL, &[])
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        }
    }
}

/// Run the hourly maintenance without pruning any history (the cutoff is before every record).
async fn maintain(s: &TestStore) {
    s.prune_history(Instant::from_ticks(0).unwrap())
        .await
        .unwrap();
}

fn pairs(tenant: &str, ids: &[&String]) -> Vec<(String, String)> {
    let mut out: Vec<_> = ids
        .iter()
        .map(|id| (tenant.to_owned(), (*id).clone()))
        .collect();
    out.sort();
    out
}

both!(
    deleted_devices_are_listed_while_run_states_are_bound_to_them,
    |s| {
        let s1 = new_script(&s, A, "s1").await;
        let s2 = new_script(&s, A, "s2").await;
        let d: Vec<String> = [
            new_device(&s, A, Some("d0")).await,
            new_device(&s, A, Some("d1")).await,
            new_device(&s, A, Some("d2")).await,
        ]
        .into();
        let other = new_device(&s, B, Some("other")).await;
        report(&s, A, &s1, Some(&d[0]), states(1, 0)).await;
        report(&s, A, &s2, Some(&d[0]), states(1, 0)).await;
        report(&s, A, &s1, Some(&d[1]), states(2, 1)).await;
        for id in &d {
            ok(&s, A, Write::DeleteDevice { id: id.clone() }).await;
        }
        ok(&s, B, Write::DeleteDevice { id: other.clone() }).await;
        // Every deleted device is listed at once, with or without run states.
        let mut all = pairs(A, &[&d[0], &d[1], &d[2]]);
        all.extend(pairs(B, &[&other]));
        all.sort();
        assert_eq!(listed(&s).await, all);
        assert_eq!(s.check_counters().await, Ok(vec![]));

        // The maintenance drops the devices without run states (d2, and B's).
        maintain(&s).await;
        assert_eq!(listed(&s).await, pairs(A, &[&d[0], &d[1]]));

        // d1's only run state goes; d0 keeps one through s1 after s2 is deleted.
        ok(
            &s,
            A,
            Write::DeleteRunState {
                script_id: s1.clone(),
                id: format!("{s1}:{}", d[1]),
            },
        )
        .await;
        ok(&s, A, Write::DeleteScript { id: s2.clone() }).await;
        assert_eq!(s.check_counters().await, Ok(vec![]));
        maintain(&s).await;
        assert_eq!(listed(&s).await, pairs(A, &[&d[0]]));

        // A listed device that is missing is a difference; recount puts it back.
        s.recount().await.unwrap();
        assert_eq!(listed(&s).await, pairs(A, &[&d[0]]));
        match s.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(&s._scratch.name).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .unwrap();
                conn.execute("DELETE FROM deleted_devices", []).unwrap();
            }
            Backend::Postgres => {
                let conn = crate::pg_connect(&s._scratch.url).await.unwrap();
                conn.execute("DELETE FROM deleted_devices", &[])
                    .await
                    .unwrap();
            }
        }
        let differences = s.check_counters().await.unwrap();
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert!(
            differences[0].contains(&d[0]) && differences[0].contains("deleted_devices"),
            "{differences:?}"
        );
        s.recount().await.unwrap();
        assert_eq!(listed(&s).await, pairs(A, &[&d[0]]));
        assert_eq!(s.check_counters().await, Ok(vec![]));

        // Re-creating the device (an agent registering with its old id) unlists it; deleting its
        // last script leaves nothing for the maintenance to keep.
        register_device(&s, A, &d[0], "d0 again").await;
        assert_eq!(listed(&s).await, vec![]);
        ok(&s, A, Write::DeleteDevice { id: d[0].clone() }).await;
        ok(&s, A, Write::DeleteScript { id: s1.clone() }).await;
        maintain(&s).await;
        assert_eq!(listed(&s).await, vec![]);
        assert_eq!(s.check_counters().await, Ok(vec![]));
    }
);
