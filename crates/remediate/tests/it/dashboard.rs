//! The dashboard (`remediate_api::dashboard`, `docs/dashboard.md`) through the real router, on
//! both databases: one-time login links from the `remediate login-link` binary (single use,
//! expiry), the session cookie's attributes, idle and absolute session expiry, only hashes
//! stored, CSRF refusal (token, `Origin`, `Sec-Fetch-Site`), sign-out, 403 for a session
//! without the permission (hidden buttons, refused forged posts), the overview against
//! `runSummary` and `getRemediationSummary`, the device status table's filters, search, sort,
//! paging and column choice, Run remediation, escaping, and tenant isolation.

use std::collections::BTreeSet;

use crate::both;
use crate::harness::TestApp;

pub(crate) const READ_ALL: &[&str] = &[
    "DeviceManagementScripts.Read.All",
    "DeviceManagementManagedDevices.Read.All",
];
pub(crate) const OPERATOR: &[&str] = &[
    "DeviceManagementScripts.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
    "DeviceManagementManagedDevices.PrivilegedOperations.All",
];

/// A client that does not follow redirects (the tests look at them).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn root(app: &TestApp) -> String {
    app.base.trim_end_matches("/beta").to_owned()
}

/// `remediate login-link` (the binary, on the app's data directory and database): the link's
/// path, `/login/{token}`.
pub(crate) fn login_link(app: &TestApp, tenant: &str, scopes: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_remediate"));
    command
        .arg("login-link")
        .args(["--tenant", tenant])
        .args(["--data-dir"])
        .arg(&app.data_dir)
        .args(["--public-url", "https://dashboard.example"]);
    if let Some(url) = app.database_url() {
        command.args(["--database", &url]);
    }
    for scope in scopes {
        command.args(["--scope", scope]);
    }
    let out = command.output().expect("remediate login-link runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let path = url
        .strip_prefix("https://dashboard.example")
        .unwrap_or_else(|| panic!("the link is on --public-url: {url}"));
    assert!(path.starts_with("/login/"), "{url}");
    assert_eq!(path.len(), "/login/".len() + 64, "256 random bits: {url}");
    path.to_owned()
}

pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Page {
    pub(crate) fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first `name="csrf"` field.
    pub(crate) fn csrf(&self) -> String {
        let at = self
            .text
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field");
        let rest = &self.text[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// The row headers (first cells) of the table with this id, as text, in order.
    pub(crate) fn rows(&self, table_id: &str) -> Vec<String> {
        let start = self
            .text
            .find(&format!("<table id=\"{table_id}\""))
            .unwrap_or_else(|| panic!("no table {table_id}: {}", self.text));
        let table = &self.text[start..];
        let table = &table[..table.find("</table>").unwrap()];
        table
            .split("<tr><th scope=\"row\">")
            .skip(1)
            .map(|row| strip_tags(&row[..row.find("</th>").unwrap()]))
            .collect()
    }
}

pub(crate) fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in html.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    pub(crate) client: reqwest::Client,
    pub(crate) cookie: Option<String>,
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            client: browser(),
            cookie: None,
        }
    }

    /// Sign in with a new link of `tenant` with `scopes`.
    pub(crate) async fn sign_in(app: &'a TestApp, tenant: &str, scopes: &[&str]) -> Browser<'a> {
        let mut browser = Browser::new(app);
        let link = login_link(app, tenant, scopes);
        let reply = browser.get(&link).await;
        assert_eq!(reply.status, 303, "{}", reply.text);
        browser.take_cookie(&reply);
        browser
    }

    pub(crate) fn take_cookie(&mut self, reply: &Page) {
        let set = reply
            .headers
            .get("set-cookie")
            .expect("a session cookie")
            .to_str()
            .unwrap();
        let value = set.split(';').next().unwrap().to_owned();
        self.cookie = Some(value);
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        form: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Page {
        let body = form.map(|f| ("application/x-www-form-urlencoded", f.as_bytes().to_vec()));
        self.send_body(method, path, body, extra).await
    }

    /// [`Browser::send`] with any body: `(content type, bytes)`.
    pub(crate) async fn send_body(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", root(self.app)));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the server answers");
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap_or_default(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Page {
        self.send("GET", path, None, &[]).await
    }

    pub(crate) async fn post(&self, path: &str, form: &str) -> Page {
        self.send("POST", path, Some(form), &[]).await
    }
}

/// Run SQL on the app's database (ticks: 100 ns; a minute is 600,000,000).
pub(crate) async fn sql(app: &TestApp, statement: &str) -> u64 {
    match app.database_url() {
        None => {
            let conn = rusqlite::Connection::open(app.data_dir.join("remediate.db")).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn.execute(statement, []).unwrap() as u64
        }
        Some(url) => {
            let conn = crate::harness::pg_connect(&url).await.unwrap();
            conn.execute(statement, &[]).await.unwrap()
        }
    }
}

pub(crate) async fn sql_text(app: &TestApp, query: &str) -> Vec<String> {
    match app.database_url() {
        None => {
            let conn = rusqlite::Connection::open(app.data_dir.join("remediate.db")).unwrap();
            let mut statement = conn.prepare(query).unwrap();
            let rows = statement
                .query_map([], |row| row.get::<_, String>(0))
                .unwrap();
            rows.map(Result::unwrap).collect()
        }
        Some(url) => {
            let conn = crate::harness::pg_connect(&url).await.unwrap();
            conn.query(query, &[])
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.get::<_, String>(0))
                .collect()
        }
    }
}

fn sha256(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

both!(a_login_link_opens_one_session_with_a_strict_cookie, |app| {
    let signed_out = Browser::new(&app);
    let page = signed_out.get("/").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/login");
    assert_eq!(signed_out.get("/login").await.status, 200);

    let link = login_link(&app, "tenant-a", READ_ALL);
    let mut browser = Browser::new(&app);
    let opened = browser.get(&link).await;
    assert_eq!(opened.status, 303, "{}", opened.text);
    assert_eq!(opened.location(), "/");
    let cookie = opened.headers["set-cookie"].to_str().unwrap().to_owned();
    let attributes: BTreeSet<&str> = cookie.split(';').skip(1).map(str::trim).collect();
    assert!(attributes.contains("HttpOnly"), "{cookie}");
    assert!(attributes.contains("SameSite=Strict"), "{cookie}");
    assert!(attributes.contains("Path=/"), "{cookie}");
    // Over plain http the cookie is not `Secure` (the link's base is only where it is printed).
    assert!(!attributes.contains("Secure"), "{cookie}");
    browser.take_cookie(&opened);
    let overview = browser.get("/").await;
    assert_eq!(overview.status, 200, "{}", overview.text);
    assert!(overview.text.contains("<h1>Remediations</h1>"));
    assert_eq!(overview.headers["cache-control"], "no-store");
    assert!(overview.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));

    // Single use: the same link opens nothing the second time.
    let again = Browser::new(&app).get(&link).await;
    assert_eq!(again.status, 403);
    assert!(again.headers.get("set-cookie").is_none());
    assert!(again.text.contains("not valid"));
    assert_eq!(Browser::new(&app).get("/login/nonsense").await.status, 403);

    // Only hashes are stored: of the link's token and of the session id.
    let token = link.trim_start_matches("/login/");
    let session_id = browser
        .cookie
        .as_deref()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let links = sql_text(&app, "SELECT \"tokenHash\" FROM login_links").await;
    assert_eq!(links, vec![sha256(token)]);
    let sessions = sql_text(&app, "SELECT \"idHash\" FROM sessions").await;
    assert_eq!(sessions, vec![sha256(&session_id)]);
});

both!(
    links_expire_and_sessions_end_idle_absolute_and_on_sign_out,
    |app| {
        // A link older than its 5 minutes opens nothing.
        let link = login_link(&app, "tenant-a", READ_ALL);
        sql(
            &app,
            "UPDATE login_links SET \"expiresDateTime\" = \"expiresDateTime\" - 3060000000",
        )
        .await;
        assert_eq!(Browser::new(&app).get(&link).await.status, 403);

        // Idle: a session unused for 31 minutes is over (and deleted).
        let browser = Browser::sign_in(&app, "tenant-a", READ_ALL).await;
        assert_eq!(browser.get("/").await.status, 200);
        sql(
            &app,
            "UPDATE sessions SET \"lastSeenDateTime\" = \"lastSeenDateTime\" - 18600000000",
        )
        .await;
        let page = browser.get("/").await;
        assert_eq!(page.status, 303);
        assert_eq!(page.location(), "/login");
        assert!(sql_text(&app, "SELECT \"idHash\" FROM sessions")
            .await
            .is_empty());

        // Absolute: a session opened 12 hours ago is over even when used a moment ago.
        let browser = Browser::sign_in(&app, "tenant-a", READ_ALL).await;
        sql(
            &app,
            "UPDATE sessions SET \"createdDateTime\" = \"createdDateTime\" - 432600000000",
        )
        .await;
        assert_eq!(browser.get("/").await.status, 303);

        // Sign-out: a POST with the CSRF token ends the session on the server.
        let browser = Browser::sign_in(&app, "tenant-a", READ_ALL).await;
        let overview = browser.get("/").await;
        let refused = browser.post("/logout", "csrf=wrong").await;
        assert_eq!(refused.status, 403);
        assert_eq!(browser.get("/").await.status, 200, "still signed in");
        let out = browser
            .post("/logout", &format!("csrf={}", overview.csrf()))
            .await;
        assert_eq!(out.status, 303);
        assert_eq!(out.location(), "/login");
        assert!(out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        // The old cookie, sent again, opens nothing.
        assert_eq!(browser.get("/").await.status, 303);
        assert_eq!(browser.get("/logout").await.status, 405);
    }
);

/// A script with `n` devices `dev-00`… and their run states: device i has detection `fail`
/// when i % 3 == 0 (remediated when also even), else `success`. Returns (script, devices).
pub(crate) async fn fleet(app: &TestApp, name: &str, n: usize) -> (String, Vec<String>) {
    let body = serde_json::json!({"displayName": name, "detectionScriptContent": "ZWNobyAx"});
    let script = app
        .post("deviceManagement/deviceHealthScripts", &body.to_string())
        .await;
    assert_eq!(script.status, 201, "{}", script.text);
    let script = script.json["id"].as_str().unwrap().to_owned();
    let mut devices = Vec::new();
    for i in 0..n {
        let device = app
            .post(
                "deviceManagement/managedDevices",
                &format!(
                    r#"{{"deviceName":"dev-{i:02}","userPrincipalName":"user{i}@contoso.com"}}"#
                ),
            )
            .await;
        assert_eq!(device.status, 201, "{}", device.text);
        let device = device.json["id"].as_str().unwrap().to_owned();
        let members = if i % 3 == 0 {
            let remediation = if i % 2 == 0 {
                "success"
            } else {
                "remediationFailed"
            };
            format!(
                r#""detectionState":"fail","remediationState":"{remediation}","preRemediationDetectionScriptOutput":"out-{i} <b>&</b>","remediationScriptError":"rem-err-{i}""#
            )
        } else {
            format!(r#""detectionState":"success","preRemediationDetectionScriptOutput":"out-{i}""#)
        };
        let state = app.run_state(&script, &device, &members).await;
        assert_eq!(state.status, 201, "{}", state.text);
        devices.push(device);
    }
    (script, devices)
}

both!(pages_show_the_rows_the_api_returns, |app| {
    let (script, devices) = fleet(&app, "Disk <cleanup> & \"more\"", 30).await;
    let other = app.script("Another script").await;
    let browser = Browser::sign_in(&app, "tenant-a", OPERATOR).await;

    // Overview: the remediation summary and each script's bar counts equal the API's.
    let overview = browser.get("/").await;
    assert_eq!(overview.status, 200);
    let summary = app
        .get("deviceManagement/deviceHealthScripts/getRemediationSummary")
        .await;
    assert!(overview.text.contains(&format!(
        "data-summary=\"scriptCount\">{}<",
        summary.json["scriptCount"]
    )));
    assert!(overview.text.contains(&format!(
        "data-summary=\"remediatedDeviceCount\">{}<",
        summary.json["remediatedDeviceCount"]
    )));
    assert!(overview
        .text
        .contains("Disk &lt;cleanup&gt; &amp; &quot;more&quot;"));
    assert!(!overview.text.contains("<cleanup>"));
    let run_summary = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/runSummary"
        ))
        .await;
    let row_at = overview
        .text
        .find(&format!("data-script=\"{script}\""))
        .unwrap();
    let row = &overview.text[row_at..];
    let row = &row[..row.find("</tr>").unwrap()];
    for property in [
        "noIssueDetectedDeviceCount",
        "issueDetectedDeviceCount",
        "issueRemediatedDeviceCount",
        "issueReoccurredDeviceCount",
        "detectionScriptErrorDeviceCount",
        "remediationScriptErrorDeviceCount",
        "detectionScriptPendingDeviceCount",
        "detectionScriptNotApplicableDeviceCount",
    ] {
        let want = format!("data-count=\"{property}\">");
        let at = row
            .find(&want)
            .unwrap_or_else(|| panic!("{property} in {row}"));
        let cell = &row[at..];
        let count =
            strip_tags(&cell[cell.find("<strong>").unwrap()..cell.find("</strong>").unwrap()]);
        assert_eq!(count, run_summary.json[property].to_string(), "{property}");
    }
    // Filter by name.
    let filtered = browser.get("/?q=another").await;
    assert!(filtered.text.contains(&format!("data-script=\"{other}\"")));
    assert!(!filtered.text.contains(&format!("data-script=\"{script}\"")));
    assert!(filtered.text.contains("Scripts 1–1 of 1"));

    // Script page: default sort (last update, newest first), 25 rows then the next page.
    let path = format!("/scripts/{script}");
    let first = browser.get(&format!("{path}?sort=device&dir=asc")).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let rows = first.rows("device-status");
    let expected: Vec<String> = (0..25).map(|i| format!("dev-{i:02}")).collect();
    assert_eq!(rows, expected);
    assert!(first.text.contains("Devices 1–25 of 30"));
    let next_at = first.text.find("rel=\"next\"").expect("a next page");
    let href_at = first.text[..next_at].rfind("href=\"").unwrap() + 6;
    let next = first.text[href_at..next_at]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let second = browser.get(&next).await;
    assert_eq!(
        second.rows("device-status"),
        (25..30).map(|i| format!("dev-{i:02}")).collect::<Vec<_>>()
    );
    assert!(second.text.contains("Devices 26–30 of 30"));
    assert!(!second.text.contains("rel=\"next\""));
    // A token of another query is refused.
    let forged = next.replace("dir=asc", "dir=desc");
    assert_eq!(browser.get(&forged).await.status, 400);
    // Descending.
    let desc = browser.get(&format!("{path}?sort=device&dir=desc")).await;
    assert_eq!(desc.rows("device-status")[0], "dev-29");

    // Filters: detection `fail` (i % 3 == 0: 10 devices), and remediation `success` among them.
    let fail = browser
        .get(&format!("{path}?detection=fail&sort=device&dir=asc"))
        .await;
    let want: Vec<String> = (0..30)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("dev-{i:02}"))
        .collect();
    assert_eq!(fail.rows("device-status"), want);
    let fixed = browser
        .get(&format!(
            "{path}?detection=fail&remediation=success&sort=device&dir=asc"
        ))
        .await;
    let want: Vec<String> = (0..30)
        .filter(|i| i % 6 == 0)
        .map(|i| format!("dev-{i:02}"))
        .collect();
    assert_eq!(fixed.rows("device-status"), want);
    // Search by device name.
    let search = browser
        .get(&format!("{path}?q=DEV-1&sort=device&dir=asc"))
        .await;
    let want: Vec<String> = (10..20).map(|i| format!("dev-{i:02}")).collect();
    assert_eq!(search.rows("device-status"), want);
    // Sort by user, in text order: "user0@…", "user10@…", "user11@…" ('0' sorts before '@').
    let by_user = browser.get(&format!("{path}?sort=user&dir=asc")).await;
    assert_eq!(
        &by_user.rows("device-status")[..3],
        ["dev-00", "dev-10", "dev-11"]
    );

    // Columns: the outputs before and after remediation by default; chosen ones otherwise.
    assert!(first
        .text
        .contains("<th scope=\"col\">Detection output</th>"));
    assert!(!first
        .text
        .contains("<th scope=\"col\">Remediation error</th>"));
    assert!(first.text.contains("out-0 &lt;b&gt;&amp;&lt;/b&gt;"));
    let chosen = browser
        .get(&format!("{path}?cols=1&col=remerr&detection=fail"))
        .await;
    assert!(chosen
        .text
        .contains("<th scope=\"col\">Remediation error</th>"));
    assert!(!chosen
        .text
        .contains("<th scope=\"col\">Detection output</th>"));
    assert!(chosen.text.contains("rem-err-3"));

    // Device page: properties, the script's state, its run history with full outputs.
    let device = browser.get(&format!("/devices/{}", devices[3])).await;
    assert_eq!(device.status, 200, "{}", device.text);
    assert!(device.text.contains("<h1>dev-03</h1>"));
    assert!(device.text.contains("user3@contoso.com"));
    assert!(device.text.contains("out-3 &lt;b&gt;&amp;&lt;/b&gt;"));
    assert!(device.text.contains("rem-err-3"));

    // Run remediation: the same write as initiateOnDemandProactiveRemediation.
    let csrf = device.csrf();
    let run = browser
        .post(
            &format!("/devices/{}/run", devices[3]),
            &format!("csrf={csrf}&script={script}"),
        )
        .await;
    assert_eq!(run.status, 303, "{}", run.text);
    assert_eq!(run.location(), format!("/devices/{}?queued=1", devices[3]));
    let pending = app
        .get(&format!(
            "deviceManagement/managedDevices/{}/pendingOnDemandRemediations",
            devices[3]
        ))
        .await;
    assert_eq!(pending.json["value"][0]["scriptPolicyId"], script.as_str());
    let shown = browser.get(run.location()).await;
    assert!(shown.text.contains("Remediation requested"));
    assert!(shown
        .text
        .contains("<ul id=\"pending-runs\"><li data-script"));
    assert_eq!(browser.get("/devices/nope").await.status, 404);
    assert_eq!(browser.get("/scripts/nope").await.status, 404);
    assert_eq!(browser.get("/scripts/").await.status, 404);
    assert_eq!(browser.get("/devices/a/b").await.status, 404);
    assert_eq!(
        browser
            .get(&format!("/devices/{}/run", devices[0]))
            .await
            .status,
        405
    );
    assert_eq!(browser.post("/", "").await.status, 405);
    let css = browser.get("/assets/dashboard.css").await;
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
});

both!(forms_from_elsewhere_are_refused, |app| {
    let script = app.script("Fix").await;
    let device = app.device("pc").await;
    let browser = Browser::sign_in(&app, "tenant-a", OPERATOR).await;
    let page = browser.get(&format!("/devices/{device}")).await;
    let csrf = page.csrf();
    let path = format!("/devices/{device}/run");
    let good = format!("csrf={csrf}&script={script}");
    assert_eq!(
        browser
            .post(&path, &format!("script={script}"))
            .await
            .status,
        403
    );
    // Another token: its first hex digit changed (a fixed "0" would be the real token one time in 16).
    let other = if csrf.starts_with('0') { '1' } else { '0' };
    assert_eq!(
        browser
            .post(
                &path,
                &format!("csrf={other}{}&script={script}", &csrf[1..])
            )
            .await
            .status,
        403
    );
    let cross_site = browser
        .send(
            "POST",
            &path,
            Some(&good),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(cross_site.status, 403);
    let fetch_site = browser
        .send(
            "POST",
            &path,
            Some(&good),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(fetch_site.status, 403);
    // Another session's token is not this session's.
    let other = Browser::sign_in(&app, "tenant-a", OPERATOR).await;
    let other_csrf = other.get("/").await.csrf();
    assert_ne!(other_csrf, csrf);
    assert_eq!(
        browser
            .post(&path, &format!("csrf={other_csrf}&script={script}"))
            .await
            .status,
        403
    );
    // Without a session: refused, not redirected.
    assert_eq!(Browser::new(&app).post(&path, &good).await.status, 403);
    let pending = app
        .get(&format!(
            "deviceManagement/managedDevices/{device}/pendingOnDemandRemediations"
        ))
        .await;
    assert_eq!(
        pending.json["value"],
        serde_json::json!([]),
        "nothing was queued"
    );
    // The real form from the same origin is accepted.
    let origin = root(&app);
    let accepted = browser
        .send(
            "POST",
            &path,
            Some(&good),
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(accepted.status, 303, "{}", accepted.text);
});

both!(sessions_have_the_permissions_of_their_link, |app| {
    let script = app.script("Fix").await;
    let device = app.device("pc-1").await;
    let state = app
        .run_state(&script, &device, r#""detectionState":"fail""#)
        .await;
    assert_eq!(state.status, 201);

    // Devices only: no overview or script page; the device page without script reads or the button.
    let devices_only = Browser::sign_in(
        &app,
        "tenant-a",
        &["DeviceManagementManagedDevices.Read.All"],
    )
    .await;
    let overview = devices_only.get("/").await;
    assert_eq!(overview.status, 403);
    assert!(overview.text.contains("DeviceManagementScripts.Read.All"));
    assert_eq!(
        devices_only.get(&format!("/scripts/{script}")).await.status,
        403
    );
    let page = devices_only.get(&format!("/devices/{device}")).await;
    assert_eq!(page.status, 200);
    // A device reader reads a device's script states (as the API's deviceHealthScriptStates),
    // but not run history (a script read).
    assert!(page.text.contains("With issues"));
    assert!(!page.text.contains("Run history"));
    assert!(!page.text.contains("Run remediation</button>"));
    // A forged post with the session's own token is refused all the same.
    let forged = devices_only
        .post(
            &format!("/devices/{device}/run"),
            &format!("csrf={}&script={script}", page.csrf()),
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(forged
        .text
        .contains("DeviceManagementManagedDevices.PrivilegedOperations.All"));

    // Read-only scripts and devices: pages, device links, no button.
    let reader = Browser::sign_in(&app, "tenant-a", READ_ALL).await;
    let page = reader.get(&format!("/scripts/{script}")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .text
        .contains(&format!("<a href=\"/devices/{device}\">pc-1</a>")));
    let page = reader.get(&format!("/devices/{device}")).await;
    assert!(!page.text.contains("Run remediation</button>"));

    // Scripts only: no device links, device pages 403.
    let scripts_only =
        Browser::sign_in(&app, "tenant-a", &["DeviceManagementScripts.Read.All"]).await;
    let page = scripts_only.get(&format!("/scripts/{script}")).await;
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("href=\"/devices/"));
    assert_eq!(
        scripts_only.get(&format!("/devices/{device}")).await.status,
        403
    );

    // The operator sees the button.
    let operator = Browser::sign_in(&app, "tenant-a", OPERATOR).await;
    let page = operator.get(&format!("/devices/{device}")).await;
    assert!(page.text.contains("Run remediation</button>"));
});

both!(tenants_are_isolated, |app| {
    let script = app.script("Tenant A script").await;
    let device = app.device("a-device").await;
    let other = Browser::sign_in(&app, "tenant-b", OPERATOR).await;
    let overview = other.get("/").await;
    assert_eq!(overview.status, 200);
    assert!(!overview.text.contains("Tenant A script"));
    assert!(overview.text.contains("No Scripts match"));
    assert_eq!(other.get(&format!("/scripts/{script}")).await.status, 404);
    assert_eq!(other.get(&format!("/devices/{device}")).await.status, 404);
    let csrf = overview.csrf();
    let run = other
        .post(
            &format!("/devices/{device}/run"),
            &format!("csrf={csrf}&script={script}"),
        )
        .await;
    assert_eq!(run.status, 404, "{}", run.text);
    // Tenant A's own session sees it.
    let mine = Browser::sign_in(&app, "tenant-a", OPERATOR).await;
    assert!(mine.get("/").await.text.contains("Tenant A script"));
});

both!(over_https_the_cookie_is_secure, |app| {
    let mut app = app;
    app.stop();
    app.args = vec!["--tls".to_owned()];
    app.spawn();
    let origin = root(&app).replacen("http://", "https://", 1);
    let ca = std::fs::read(app.data_dir.join("ca.pem")).expect("the local CA of --tls");
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = login_link(&app, "tenant-a", READ_ALL);
    let opened = client.get(format!("{origin}{link}")).send().await.unwrap();
    assert_eq!(opened.status(), 303);
    let cookie = opened.headers()["set-cookie"].to_str().unwrap().to_owned();
    let attributes: BTreeSet<&str> = cookie.split(';').skip(1).map(str::trim).collect();
    assert!(attributes.contains("Secure"), "{cookie}");
    assert!(attributes.contains("HttpOnly"), "{cookie}");
    let page = client
        .get(format!("{origin}/"))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
});
