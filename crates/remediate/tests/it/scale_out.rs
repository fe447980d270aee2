//! Two server processes on one PostgreSQL database (SPEC §9): a write acknowledged by one is
//! visible through the other at once, a nextLink issued by one is followed on the other, and
//! computed counters agree.

use crate::harness::{Backend, Mode, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres_database() {
    // Two child processes: what one process acknowledges must be visible to another.
    let Some(first) = TestApp::start_in(Backend::Postgres, Mode::Process).await else {
        return;
    };
    // The second process: same database and the same signing key (a copy of the data directory).
    let mut second = TestApp::start_in(Backend::Sqlite, Mode::Process)
        .await
        .unwrap();
    second.stop();
    std::fs::copy(
        first.data_dir.join("signing-key.pk8"),
        second.data_dir.join("signing-key.pk8"),
    )
    .unwrap();
    second.args = vec!["--database".into(), first.database_url().unwrap()];
    second.spawn();
    second.token = first.token.clone();
    let script = first.script("shared").await;
    let mut devices = Vec::new();
    for i in 0..9 {
        let device = if i % 2 == 0 {
            first.device(&format!("PC-{i}")).await
        } else {
            second.device(&format!("PC-{i}")).await
        };
        let writer = if i % 2 == 0 { &second } else { &first };
        let reply = writer
            .run_state(&script, &device, r#""detectionState":"fail""#)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        // Visible at once through the other process.
        let reader = if i % 2 == 0 { &first } else { &second };
        let id = reply.json["id"].as_str().unwrap();
        assert_eq!(
            reader
                .get(&format!(
                    "deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{id}"
                ))
                .await
                .status,
            200
        );
        devices.push(device);
    }
    // A nextLink of one process works on the other (the paging secret lives in the database).
    let page = first
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$top=4"
        ))
        .await;
    let next = page.json["@odata.nextLink"].as_str().unwrap().to_owned();
    let on_second = next.replace(&first.base, &second.base);
    let rest = second.get(&on_second).await;
    assert_eq!(rest.status, 200, "{}", rest.text);
    assert_eq!(rest.json["value"].as_array().unwrap().len(), 4);
    // Counters agree from both processes and with the rows.
    for app in [&first, &second] {
        let summary = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/runSummary"
            ))
            .await;
        assert_eq!(summary.json["issueDetectedDeviceCount"], 9);
    }
    // A duplicate create through the other process is still a 409.
    let duplicate = first.run_state(&script, &devices[0], "").await;
    assert_eq!(duplicate.status, 409);

    // Concurrent writes through both processes to the same script: the counters (sharded rows
    // changed by each transaction) stay exact.
    let mut fresh = Vec::new();
    for i in 0..24 {
        fresh.push(first.device(&format!("burst-{i}")).await);
    }
    let mut tasks = Vec::new();
    for (i, device) in fresh.iter().enumerate() {
        let (base, token) = if i % 2 == 0 {
            (first.base.clone(), first.token.clone())
        } else {
            (second.base.clone(), second.token.clone())
        };
        let (script, device) = (script.clone(), device.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let collection =
                format!("{base}/deviceManagement/deviceHealthScripts/{script}/deviceRunStates");
            let body = format!(
                r#"{{"managedDevice@odata.bind":"managedDevices('{device}')","detectionState":"fail","remediationState":"success"}}"#
            );
            let created = client
                .post(&collection)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(created.status().as_u16(), 201);
            // Then the device reports "no issue" (an update moving it between counters).
            let patched = client
                .patch(format!("{collection}/{script}:{device}"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(r#"{"detectionState":"success","remediationState":"skipped"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(patched.status().as_u16(), 200);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for app in [&first, &second] {
        let summary = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/runSummary"
            ))
            .await;
        for (counter, want) in [
            ("issueDetectedDeviceCount", 9),
            ("noIssueDetectedDeviceCount", 24),
            ("issueRemediatedDeviceCount", 0),
            ("issueRemediatedCumulativeDeviceCount", 24),
        ] {
            assert_eq!(summary.json[counter], want, "{counter}: {}", summary.text);
        }
        let totals = app
            .get("deviceManagement/deviceHealthScripts/getRemediationSummary()")
            .await;
        assert_eq!(totals.json["remediatedDeviceCount"], 0, "{}", totals.text);
    }
    let (ok, output) = first.recount_check();
    assert!(ok, "counters differ from the rows:\n{output}");
}
