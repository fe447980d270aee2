//! The server's API as the agent uses it: enrollment (`POST /agent/enroll`), the credential →
//! device token exchange (`POST /agent/token`, cached until shortly before it expires), the
//! check-in (`POST /beta/deviceManagement/managedDevices/{id}/agentCheckIn`), a script's content
//! (`GET …/deviceHealthScripts/{id}`) and reports (the seed's `POST …/deviceRunStates` with
//! `managedDevice@odata.bind`, later `PATCH …/deviceRunStates/{scriptId}:{deviceId}`).
//!
//! Every failure is classified: [`Failure::Retry`] (unreachable, 5xx, 408, 429 — with the
//! server's `Retry-After`), [`Failure::Revoked`] (the credential was refused: the device was
//! deleted; the agent stops and does not re-enroll by itself) and [`Failure::Rejected`] (any other
//! 4xx: the request itself is wrong and retrying cannot help).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::state::Identity;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Retry {
        retry_after: Option<Duration>,
        message: String,
    },
    Revoked(String),
    Rejected {
        status: u16,
        message: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry { message, .. } => write!(f, "will retry: {message}"),
            Failure::Revoked(m) => write!(f, "credential refused: {m}"),
            Failure::Rejected { status, message } => write!(f, "refused ({status}): {message}"),
        }
    }
}

/// The server's root URL (no `/beta`) from what a user gives: `https://host`, `https://host/`,
/// `https://host/beta`.
pub fn server_root(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    trimmed.strip_suffix("/beta").unwrap_or(trimmed).to_owned()
}

/// What enrollment answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub tenant: String,
    pub device_id: String,
    pub credential: String,
}

/// What a check-in answers.
#[derive(Debug, Clone, Default)]
pub struct CheckIn {
    pub etag: String,
    /// `None` when the agent's etag was current (nothing changed).
    pub scripts: Option<Vec<AssignedScript>>,
    pub pending_on_demand: Vec<String>,
}

/// A script assigned to the device, as the check-in lists it (no content).
#[derive(Debug, Clone, PartialEq)]
pub struct AssignedScript {
    pub id: String,
    pub version: String,
    pub last_modified: String,
    pub display_name: Option<String>,
    pub run_as_account: String,
    pub enforce_signature_check: bool,
    pub run_remediation: bool,
    pub run_schedule: Option<Value>,
    pub assignment_id: String,
}

/// The HTTP client of the agent (and of every simulated device: one connection pool).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("remediate-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The Graph error message of an answer, or its status.
async fn message(response: reqwest::Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            )
        })
}

/// Classify a non-success answer.
async fn failure(response: reqwest::Response) -> Failure {
    let status = response.status().as_u16();
    let after = retry_after(&response);
    let text = message(response).await;
    match status {
        408 | 429 | 500..=599 => Failure::Retry {
            retry_after: after,
            message: text,
        },
        _ => Failure::Rejected {
            status,
            message: text,
        },
    }
}

/// A failure of the unauthenticated endpoints, where a 401 means the secret or credential was
/// refused.
async fn credential_failure(response: reqwest::Response) -> Failure {
    match failure(response).await {
        Failure::Rejected {
            status: 401,
            message,
        } => Failure::Revoked(message),
        other => other,
    }
}

fn unreachable(e: reqwest::Error) -> Failure {
    Failure::Retry {
        retry_after: None,
        message: format!("the server cannot be reached: {e}"),
    }
}

/// `POST /agent/enroll`.
pub async fn enroll(
    server: &str,
    secret: &str,
    device: Value,
    existing: Option<(&str, &str)>,
) -> Result<Enrolled, Failure> {
    let mut body = json!({"secret": secret, "device": device});
    if let Some((id, credential)) = existing {
        body["deviceId"] = json!(id);
        body["credential"] = json!(credential);
    }
    let response = http_client()
        .post(format!("{}/agent/enroll", server_root(server)))
        .json(&body)
        .send()
        .await
        .map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(credential_failure(response).await);
    }
    let answer: Value = response.json().await.map_err(unreachable)?;
    let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
    Ok(Enrolled {
        tenant: field("tenantId"),
        device_id: field("deviceId"),
        credential: field("credential"),
    })
}

/// An enrolled agent's connection to its server.
pub struct Client {
    http: reqwest::Client,
    root: String,
    identity: Identity,
    token: Mutex<Option<(String, Instant)>>,
}

impl Client {
    pub fn new(identity: Identity) -> Client {
        Client::with_http(identity, http_client())
    }

    /// A client sharing `http`'s connection pool (the fleet simulator's devices).
    pub fn with_http(identity: Identity, http: reqwest::Client) -> Client {
        Client {
            http,
            root: server_root(&identity.server),
            identity,
            token: Mutex::new(None),
        }
    }

    pub fn device_id(&self) -> &str {
        &self.identity.device_id
    }

    fn beta(&self, path: &str) -> String {
        format!("{}/beta/{path}", self.root)
    }

    /// A device token, exchanged anew when none is cached or it expires within a minute.
    async fn token(&self) -> Result<String, Failure> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let response = self
            .http
            .post(format!("{}/agent/token", self.root))
            .json(&json!({
                "tenantId": self.identity.tenant,
                "deviceId": self.identity.device_id,
                "credential": self.identity.credential,
            }))
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(credential_failure(response).await);
        }
        let answer: Value = response.json().await.map_err(unreachable)?;
        let token = answer["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let lifetime = answer["expires_in"].as_u64().unwrap_or(60);
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(5));
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// Send a request with the device token; a 401 drops the cached token and tries once more
    /// (a 401 again means the credential is gone).
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failure> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let response = build(&self.http)
                .bearer_auth(&token)
                .send()
                .await
                .map_err(unreachable)?;
            if response.status().as_u16() == 401 {
                *self.token.lock().await = None;
                if attempt == 1 {
                    return Err(Failure::Revoked(message(response).await));
                }
                continue;
            }
            return Ok(response);
        }
        Err(Failure::Revoked("the device token was refused".into()))
    }

    /// The check-in: records the sync and lists the assigned scripts unless `etag` is current.
    pub async fn check_in(&self, etag: Option<&str>) -> Result<CheckIn, Failure> {
        let url = self.beta(&format!(
            "deviceManagement/managedDevices/{}/agentCheckIn",
            self.identity.device_id
        ));
        let body = match etag {
            Some(e) => json!({"etag": e}),
            None => json!({}),
        };
        let response = self.send(|h| h.post(&url).json(&body)).await?;
        if !response.status().is_success() {
            return Err(failure(response).await);
        }
        let answer: Value = response.json().await.map_err(unreachable)?;
        let text = |v: &Value, name: &str| v[name].as_str().unwrap_or_default().to_owned();
        let scripts = answer["scripts"].as_array().map(|list| {
            list.iter()
                .map(|s| AssignedScript {
                    id: text(s, "id"),
                    version: text(s, "version"),
                    last_modified: text(s, "lastModifiedDateTime"),
                    display_name: s["displayName"].as_str().map(str::to_owned),
                    run_as_account: text(s, "runAsAccount"),
                    enforce_signature_check: s["enforceSignatureCheck"].as_bool() == Some(true),
                    run_remediation: s["runRemediationScript"].as_bool() == Some(true),
                    run_schedule: Some(s["runSchedule"].clone()).filter(|v| !v.is_null()),
                    assignment_id: text(s, "assignmentId"),
                })
                .collect()
        });
        Ok(CheckIn {
            etag: text(&answer, "etag"),
            scripts,
            pending_on_demand: answer["pendingOnDemand"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// A script with its content and parameters.
    pub async fn script(&self, id: &str) -> Result<Value, Failure> {
        let url = self.beta(&format!(
            "deviceManagement/deviceHealthScripts/{}",
            encode(id)
        ));
        let response = self.send(|h| h.get(&url)).await?;
        if !response.status().is_success() {
            return Err(failure(response).await);
        }
        response.json().await.map_err(unreachable)
    }

    /// Deliver one report: a POST to the seed's endpoint when the run state may not exist yet
    /// (`first`), else a PATCH; a POST that finds it exists (409) becomes a PATCH, a PATCH that
    /// finds none (404) a POST — so a retry after a lost answer changes nothing.
    pub async fn report(&self, script_id: &str, body: &Value, first: bool) -> Result<(), Failure> {
        let device = &self.identity.device_id;
        let collection = self.beta(&format!(
            "deviceManagement/deviceHealthScripts/{}/deviceRunStates",
            encode(script_id)
        ));
        let item = format!("{collection}/{}", encode(&format!("{script_id}:{device}")));
        let mut post = body.clone();
        post["managedDevice@odata.bind"] = json!(format!(
            "{}/deviceManagement/managedDevices('{device}')",
            self.beta("").trim_end_matches('/')
        ));
        let mut use_post = first;
        for _ in 0..3 {
            let response = if use_post {
                self.send(|h| h.post(&collection).json(&post)).await?
            } else {
                self.send(|h| h.patch(&item).json(body)).await?
            };
            let status = response.status().as_u16();
            if response.status().is_success() {
                return Ok(());
            }
            match (use_post, status) {
                // It exists already (a retry after a lost answer): change it instead.
                (true, 409) => use_post = false,
                // No run state (deleted by an admin): create it — unless the script is gone.
                (false, 404) => {
                    let text = message(response).await;
                    if !text.contains("deviceRunState") {
                        return Err(Failure::Rejected {
                            status,
                            message: text,
                        });
                    }
                    use_post = true;
                }
                _ => return Err(failure(response).await),
            }
        }
        Err(Failure::Retry {
            retry_after: None,
            message: "the run state kept changing between POST and PATCH".into(),
        })
    }
}

/// Percent-encode a key for a path segment.
fn encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_url_is_taken_with_or_without_beta() {
        for url in [
            "https://r.example.com",
            "https://r.example.com/",
            "https://r.example.com/beta",
            "https://r.example.com/beta/",
        ] {
            assert_eq!(server_root(url), "https://r.example.com", "{url}");
        }
        assert_eq!(encode("a b:c"), "a%20b:c");
    }
}
