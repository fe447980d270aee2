//! The dashboard's editing pages (`docs/dashboard.md`, "Editing"): scripts (create and edit
//! with the detection and remediation files uploaded, assign to groups, exclusions, filters and
//! schedules, delete), and the routes of `groups` (groups, assignment filters, enrollment
//! secrets). Every write — and every read these pages make — is an internal request run through
//! the API's own dispatcher ([`crate::dispatch::dispatch_as`]) with the session's principal, so
//! permissions, validation and messages are exactly the API's: a 4xx shows the form again with
//! the API's message and the user's input; a 403 is an error page. Forms carry the session's
//! CSRF token and are checked with `session::same_origin_form`. Also the rule check behind
//! "validated as you type" (`GET /rules/check`) and the small script `/assets/dashboard.js`.

use std::fmt::Write as _;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use remediate_domain::collections::SCRIPTS;
use remediate_domain::rule::Dialect;
use remediate_wire::ErrorKind;
use serde_json::{json, Map, Value as Json};

use super::form::{self, Form};
use super::html::{self, attr, enc, esc, Frame};
use super::session::{self, Signed};
use super::{csrf_refused, method_not_allowed, Reply};
use crate::error::ApiError;
use crate::respond::{ApiRequest, Body};
use crate::AppState;

/// Is `path` one of the editing pages outside the prefixes the dashboard already serves?
pub fn is_edit_path(path: &str) -> bool {
    matches!(path, "/groups" | "/filters" | "/secrets" | "/rules/check")
        || ["/groups/", "/filters/", "/secrets/"]
            .iter()
            .any(|p| path.starts_with(p))
}

/// The script of `/assets/dashboard.js`.
pub const SCRIPT: &str = include_str!("dashboard.js");

/// Serve `/assets/dashboard.js` (no session needed, like the stylesheet).
pub(super) fn script_asset(get: bool) -> Result<Reply, ApiError> {
    if !get {
        return Err(method_not_allowed("GET"));
    }
    Ok(Reply {
        status: StatusCode::OK,
        content_type: "text/javascript; charset=utf-8",
        body: SCRIPT.to_owned(),
        headers: vec![("cache-control", "public, max-age=3600".to_owned())],
    })
}

// ---------------------------------------------------------------------------------------------
// The API, called in process.

/// The API as a page calls it: internal requests through the dispatcher, as the session.
pub(super) struct Api<'a> {
    state: &'a AppState,
    signed: &'a Signed,
    parts: &'a http::request::Parts,
    base_url: String,
}

impl<'a> Api<'a> {
    pub fn new(
        state: &'a AppState,
        signed: &'a Signed,
        parts: &'a http::request::Parts,
    ) -> Api<'a> {
        Api {
            state,
            signed,
            parts,
            base_url: state.link_base(&parts.headers, parts.extensions.get()),
        }
    }

    pub fn signed(&self) -> &'a Signed {
        self.signed
    }

    /// The page request's headers (its cookies).
    pub fn headers(&self) -> &'a HeaderMap {
        &self.parts.headers
    }

    /// Is the browser's connection https (cookies then get `Secure`)?
    pub fn secure(&self) -> bool {
        super::secure(self.state, self.parts)
    }

    /// The key signing what the dashboard hands the browser (paging tokens, flash cookies).
    pub fn signing_key(&self) -> &'a [u8] {
        self.state.store.paging_secret()
    }

    /// The page request's path.
    pub fn path(&self) -> &'a str {
        self.parts.uri.path()
    }

    /// A query parameter of the page request (`""` when absent).
    pub fn param(&self, name: &str) -> String {
        html::parse_pairs(self.parts.uri.query().unwrap_or(""))
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// The server's base URL as an agent reaches it (`--public-url`, else this request's host).
    pub fn server_url(&self) -> String {
        self.base_url.trim_end_matches("/beta").to_owned()
    }

    /// One request; the answer's JSON (`null` for 204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&Json>,
    ) -> Result<Json, ApiError> {
        let mut headers = HeaderMap::new();
        let bytes = match body {
            Some(json) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                serde_json::to_vec(json).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let limit = self.state.guard.limits.max_body_bytes;
        if bytes.len() > limit {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "The request body is {} bytes (the uploaded files base64-encoded); the API accepts at most {limit} bytes.",
                    bytes.len()
                ),
            ));
        }
        let request = ApiRequest {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body: bytes.into(),
            base_url: self.base_url.clone(),
        };
        let response =
            crate::dispatch::dispatch_as(self.state, &request, self.signed.principal.clone())
                .await?;
        Ok(match response.body {
            Body::Json(bytes) => serde_json::from_slice(&bytes).unwrap_or(Json::Null),
            _ => Json::Null,
        })
    }

    pub async fn get(&self, path: &str, query: &str) -> Result<Json, ApiError> {
        self.call(Method::GET, path, query, None).await
    }

    /// One page of a list: its items and the API's `$skiptoken` for the next page, if any.
    pub async fn list(
        &self,
        path: &str,
        query: &str,
    ) -> Result<(Vec<Json>, Option<String>), ApiError> {
        let answer = self.get(path, query).await?;
        let next = answer
            .get("@odata.nextLink")
            .and_then(Json::as_str)
            .and_then(skiptoken);
        let items = match answer.get("value") {
            Some(Json::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        Ok((items, next))
    }

    /// A list for a chooser (at most [`CHOICES`] items): `None` when the session
    /// may not read it or there are more than a chooser holds — the page then asks for an id
    /// instead, rather than offering part of the list.
    pub async fn choices(&self, path: &str, query: &str) -> Result<Option<Vec<Json>>, ApiError> {
        match self.list(path, &format!("{query}&$top={CHOICES}")).await {
            Ok((items, None)) => Ok(Some(items)),
            Ok((_, Some(_))) => Ok(None),
            Err(e) if e.kind == ErrorKind::Forbidden => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The `$skiptoken` of an `@odata.nextLink`.
fn skiptoken(link: &str) -> Option<String> {
    let (_, query) = link.split_once('?')?;
    html::parse_pairs(query)
        .into_iter()
        .find(|(name, _)| name == "$skiptoken")
        .map(|(_, value)| value)
}

/// The most a chooser (a `<select>`) offers; above it the form asks for an id.
const CHOICES: usize = 1000;

/// An API error a form shows next to the user's input (the request was wrong), or the error
/// page for the rest (not allowed, not found, server trouble).
pub(super) fn form_error(error: ApiError) -> Result<(StatusCode, String), ApiError> {
    match error.kind {
        ErrorKind::BadRequest
        | ErrorKind::Conflict
        | ErrorKind::PayloadTooLarge
        | ErrorKind::UnsupportedMediaType => Ok((error.kind.status(), error.message)),
        _ => Err(error),
    }
}

/// A JSON string member of an API answer.
pub(super) fn s<'j>(json: &'j Json, name: &str) -> &'j str {
    json.get(name).and_then(Json::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Widgets.

/// The message of a refused form, announced to screen readers.
pub(super) fn error_box(message: Option<&str>) -> String {
    match message {
        Some(m) => format!(
            "<div class=\"error\" role=\"alert\" id=\"form-error\"><h2>Not saved</h2><p>{}</p></div>",
            esc(m)
        ),
        None => String::new(),
    }
}

pub(super) fn csrf_field(signed: &Signed) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        attr(&signed.csrf())
    )
}

/// A labelled one-line text input.
pub(super) fn text_field(id: &str, label: &str, value: &str, extra: &str) -> String {
    format!(
        "<div class=\"field\"><label for=\"{id}\">{label}</label><input type=\"text\" id=\"{id}\" name=\"{id}\" value=\"{}\"{extra}></div>",
        attr(value)
    )
}

/// A labelled textarea; `dialect` makes it a rule checked as it is typed.
pub(super) fn text_area(id: &str, label: &str, value: &str, dialect: Option<Dialect>) -> String {
    match dialect {
        None => format!(
            "<div class=\"field\"><label for=\"{id}\">{label}</label><textarea id=\"{id}\" name=\"{id}\" rows=\"3\">{}</textarea></div>",
            esc(value)
        ),
        Some(dialect) => {
            let name = match dialect {
                Dialect::Membership => "membership",
                Dialect::Filter => "filter",
            };
            format!(
                "<div class=\"field\"><label for=\"{id}\">{label}</label><textarea id=\"{id}\" name=\"{id}\" rows=\"4\" \
                 spellcheck=\"false\" data-rule-dialect=\"{name}\" aria-describedby=\"{id}-check\">{}</textarea>\
                 <p class=\"check\" id=\"{id}-check\" aria-live=\"polite\"></p></div>",
                esc(value)
            )
        }
    }
}

/// A labelled select of (value, label) options.
pub(super) fn select(id: &str, label: &str, options: &[(String, String)], chosen: &str) -> String {
    let mut out = format!("<div class=\"field\"><label for=\"{id}\">{label}</label><select id=\"{id}\" name=\"{id}\">");
    for (value, text) in options {
        let selected = if value == chosen { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{}\"{selected}>{}</option>",
            attr(value),
            esc(text)
        );
    }
    out.push_str("</select></div>");
    out
}

pub(super) fn checkbox(id: &str, label: &str, checked: bool) -> String {
    format!(
        "<div class=\"field\"><input type=\"checkbox\" id=\"{id}\" name=\"{id}\" value=\"true\"{}><label for=\"{id}\" class=\"inline\">{label}</label></div>",
        if checked { " checked" } else { "" }
    )
}

/// A delete button behind a disclosure (a second click confirms; no script needed).
pub(super) fn delete_form(signed: &Signed, action: &str, what: &str, warning: &str) -> String {
    format!(
        "<details class=\"danger\"><summary>Delete {what}</summary><form method=\"post\" action=\"{}\">{}\
         <p>{warning}</p><button type=\"submit\" class=\"danger\">Delete {what}</button></form></details>",
        attr(action),
        csrf_field(signed)
    )
}

pub(super) fn frame_page(signed: &Signed, title: &str, body: &str) -> String {
    let frame = Frame {
        tenant: &signed.principal.tenant,
        csrf: &signed.csrf(),
    };
    html::page(title, Some(&frame), body)
}

/// The controls the overview shows a session that may write scripts.
pub fn overview_actions(signed: &Signed) -> String {
    if signed.may(SCRIPTS.write_permissions) {
        "<p class=\"actions\"><a href=\"/scripts/new\" class=\"button\">New script</a></p>"
            .to_owned()
    } else {
        String::new()
    }
}

/// The controls a script's page shows a session that may write scripts: edit, assign, delete.
pub fn script_actions(signed: &Signed, id: &str) -> String {
    if !signed.may(SCRIPTS.write_permissions) {
        return String::new();
    }
    let path = format!("/scripts/{}", enc(id));
    format!(
        "<div class=\"actions\" id=\"script-actions\"><a href=\"{0}/edit\" class=\"button\">Edit</a>\
         <a href=\"{0}/assign\" class=\"button\">Assign</a>{1}</div>",
        attr(&path),
        delete_form(
            signed,
            &format!("{path}/delete"),
            "script",
            "This deletes the script with its assignments, device states and run history."
        )
    )
}

// ---------------------------------------------------------------------------------------------
// Routing.

/// The editing routes (before the dashboard's own match, which would take `/scripts/new` for
/// a script id); `None` when the path is not one of them.
pub(super) async fn route(
    state: &AppState,
    parts: &http::request::Parts,
    body: &[u8],
    signed: &Signed,
    segments: &[&str],
) -> Option<Result<Reply, ApiError>> {
    let method = &parts.method;
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let seg = |i: usize| super::segment(segments[i]);
    let known = matches!(
        segments,
        ["rules", "check"]
            | ["scripts", "new"]
            | ["scripts", _, "edit" | "assign" | "delete"]
            | ["groups" | "filters" | "secrets", ..]
    );
    if !known {
        return None;
    }
    if segments.iter().any(|s| s.is_empty()) {
        return Some(Err(ApiError::not_found(format!(
            "There is no dashboard page at '{}'.",
            parts.uri.path()
        ))));
    }
    let api = Api::new(state, signed, parts);
    // A POST's form, after the CSRF check.
    let form = if post {
        match form::parse(&parts.headers, body) {
            Ok(form) => {
                if !session::same_origin_form(signed, &parts.headers, form.get("csrf")) {
                    return Some(Err(csrf_refused()));
                }
                Some(form)
            }
            Err(e) => return Some(Err(e)),
        }
    } else {
        None
    };
    let params = html::parse_pairs(parts.uri.query().unwrap_or(""));
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    Some(match (segments, form) {
        (["rules", "check"], _) if get => rule_check(param("dialect"), param("rule")),
        (["rules", "check"], _) => Err(method_not_allowed("GET")),
        (["scripts", "new"], None) if get => new_script_form(&api),
        (["scripts", "new"], Some(form)) => create_script(&api, &form).await,
        (["scripts", _, "edit"], None) if get => edit_script_form(&api, &seg(1)).await,
        (["scripts", _, "edit"], Some(form)) => update_script(&api, &seg(1), &form).await,
        (["scripts", _, "assign"], None) if get => assign_form(&api, &seg(1)).await,
        (["scripts", _, "assign"], Some(form)) => assign(&api, &seg(1), &form).await,
        (["scripts", _, "delete"], Some(_)) => delete_script(&api, &seg(1)).await,
        (["scripts", _, "delete"], None) => Err(method_not_allowed("POST")),
        (["scripts", ..], None) => Err(method_not_allowed("GET, POST")),
        (["groups" | "filters" | "secrets", ..], form) => {
            if form.is_none() && !get {
                Err(method_not_allowed("GET, POST"))
            } else {
                super::directory::route(&api, segments, form.as_ref()).await
            }
        }
        _ => Err(ApiError::not_found(format!(
            "There is no dashboard page at '{}'.",
            parts.uri.path()
        ))),
    })
}

/// `GET /rules/check?dialect=membership|filter&rule=…`: the rule parser of the API with its
/// messages (`remediate_domain::directory::parse_rule`), for checking a rule as it is typed.
fn rule_check(dialect: &str, rule: &str) -> Result<Reply, ApiError> {
    let (dialect, property) = match dialect {
        "membership" => (Dialect::Membership, "membershipRule"),
        "filter" => (Dialect::Filter, "rule"),
        other => {
            return Err(ApiError::bad_request(format!(
                "The dialect '{other}' is not known; use 'membership' or 'filter'."
            )))
        }
    };
    let answer = match remediate_domain::directory::parse_rule(rule, dialect, property) {
        Ok(_) => json!({ "valid": true, "message": "Valid rule." }),
        Err(e) => json!({ "valid": false, "message": e.0 }),
    };
    Ok(Reply {
        status: StatusCode::OK,
        content_type: "application/json",
        body: answer.to_string(),
        headers: Vec::new(),
    })
}

fn redirect(location: &str) -> Result<Reply, ApiError> {
    Ok(Reply::redirect(location))
}

// ---------------------------------------------------------------------------------------------
// Scripts.

/// A script file: uploaded now, or kept (base64) from an attempt the API refused.
#[derive(Default)]
struct Content {
    filename: String,
    base64: String,
    bytes: usize,
}

impl Content {
    fn of(form: &Form, input: &str) -> Content {
        if let Some(file) = form.file(input) {
            return Content {
                filename: file.filename.clone(),
                base64: base64::engine::general_purpose::STANDARD.encode(&file.bytes),
                bytes: file.bytes.len(),
            };
        }
        let kept = form.text(&format!("{input}Kept"));
        Content {
            filename: form.text(&format!("{input}KeptName")).to_owned(),
            base64: kept.to_owned(),
            bytes: kept.len() / 4 * 3,
        }
    }
}

/// What the script form holds.
struct ScriptInput {
    display_name: String,
    description: String,
    publisher: String,
    run_as: String,
    enforce: bool,
    bits32: bool,
    detection: Content,
    remediation: Content,
    remove_remediation: bool,
}

impl ScriptInput {
    fn of(form: &Form) -> ScriptInput {
        ScriptInput {
            display_name: form.text("displayName").to_owned(),
            description: form.text("description").to_owned(),
            publisher: form.text("publisher").to_owned(),
            run_as: form.get("runAsAccount").unwrap_or("system").to_owned(),
            enforce: form.checked("enforceSignatureCheck"),
            bits32: form.checked("runAs32Bit"),
            detection: Content::of(form, "detection"),
            remediation: Content::of(form, "remediation"),
            remove_remediation: form.checked("removeRemediation"),
        }
    }

    fn of_script(script: &Json) -> ScriptInput {
        ScriptInput {
            display_name: s(script, "displayName").to_owned(),
            description: s(script, "description").to_owned(),
            publisher: s(script, "publisher").to_owned(),
            run_as: s(script, "runAsAccount").to_owned(),
            enforce: script["enforceSignatureCheck"] == Json::Bool(true),
            bits32: script["runAs32Bit"] == Json::Bool(true),
            detection: Content::default(),
            remediation: Content::default(),
            remove_remediation: false,
        }
    }

    /// Files too large for the API are not kept in the page (they would make it as large).
    fn forget_if_too_large(&mut self, status: StatusCode) {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            self.detection = Content::default();
            self.remediation = Content::default();
        }
    }

    /// The API body: a create sends what is filled in; an update sends every setting and the
    /// files only when a new one is given.
    fn body(&self, creating: bool) -> Json {
        let mut body = Map::new();
        let optional = |text: &str| {
            if text.is_empty() {
                Json::Null
            } else {
                Json::String(text.to_owned())
            }
        };
        body.insert("displayName".into(), json!(self.display_name));
        for (name, value) in [
            ("description", &self.description),
            ("publisher", &self.publisher),
        ] {
            if !(creating && value.is_empty()) {
                body.insert(name.into(), optional(value));
            }
        }
        body.insert("runAsAccount".into(), json!(self.run_as));
        body.insert("enforceSignatureCheck".into(), json!(self.enforce));
        body.insert("runAs32Bit".into(), json!(self.bits32));
        if !self.detection.base64.is_empty() {
            body.insert(
                "detectionScriptContent".into(),
                json!(self.detection.base64),
            );
        }
        if !self.remediation.base64.is_empty() {
            body.insert(
                "remediationScriptContent".into(),
                json!(self.remediation.base64),
            );
        } else if self.remove_remediation && !creating {
            body.insert("remediationScriptContent".into(), json!(""));
        }
        Json::Object(body)
    }
}

fn file_field(id: &str, label: &str, kept: &Content, current: Option<&str>) -> String {
    let mut note = String::new();
    if !kept.base64.is_empty() {
        let _ = write!(
            note,
            "{} ({} bytes) is kept from your last attempt; choose a file to replace it.\
             <input type=\"hidden\" name=\"{id}Kept\" value=\"{}\"><input type=\"hidden\" name=\"{id}KeptName\" value=\"{}\">",
            esc(if kept.filename.is_empty() { "The file" } else { &kept.filename }),
            kept.bytes,
            attr(&kept.base64),
            attr(&kept.filename)
        );
    } else if let Some(current) = current {
        note.push_str(current);
    }
    format!(
        "<div class=\"field\"><label for=\"{id}\">{label}</label><input type=\"file\" id=\"{id}\" name=\"{id}\" \
         aria-describedby=\"{id}-note\"><p class=\"note\" id=\"{id}-note\">{note}</p></div>"
    )
}

fn decoded(script: &Json, name: &str) -> Option<String> {
    let text = s(script, name);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

fn script_form(
    signed: &Signed,
    action: &str,
    input: &ScriptInput,
    error: Option<&str>,
    current: Option<&Json>,
) -> String {
    let creating = current.is_none();
    let mut out = error_box(error);
    let _ = write!(
        out,
        "<form method=\"post\" action=\"{}\" enctype=\"multipart/form-data\" class=\"edit\">{}",
        attr(action),
        csrf_field(signed)
    );
    out.push_str(&text_field(
        "displayName",
        "Name",
        &input.display_name,
        " required",
    ));
    out.push_str(&text_area(
        "description",
        "Description",
        &input.description,
        None,
    ));
    out.push_str(&text_field("publisher", "Publisher", &input.publisher, ""));
    let keep_note = |name: &str| {
        current.map(|script| match decoded(script, name) {
            Some(text) => format!(
                "Leave empty to keep the current file ({} bytes).</p><details><summary>Current file</summary><pre class=\"code\">{}</pre></details><p class=\"note\">",
                text.len(),
                esc(&text)
            ),
            None => "None yet.".to_owned(),
        })
    };
    out.push_str(&file_field(
        "detection",
        if creating {
            "Detection script file (required)"
        } else {
            "Detection script file"
        },
        &input.detection,
        keep_note("detectionScriptContent").as_deref(),
    ));
    out.push_str(&file_field(
        "remediation",
        "Remediation script file (optional)",
        &input.remediation,
        keep_note("remediationScriptContent").as_deref(),
    ));
    if !creating {
        out.push_str(&checkbox(
            "removeRemediation",
            "Remove the remediation script",
            input.remove_remediation,
        ));
    }
    out.push_str("<fieldset><legend>Run this script using the credentials of</legend>");
    for (value, label) in [("system", "System"), ("user", "The signed-in user")] {
        let checked = if input.run_as == value || (value == "system" && input.run_as.is_empty()) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<input type=\"radio\" id=\"runAs-{value}\" name=\"runAsAccount\" value=\"{value}\"{checked}><label for=\"runAs-{value}\">{label}</label>"
        );
    }
    out.push_str("</fieldset>");
    out.push_str(&checkbox(
        "enforceSignatureCheck",
        "Enforce script signature check",
        input.enforce,
    ));
    out.push_str(&checkbox(
        "runAs32Bit",
        "Run script in 32-bit PowerShell",
        input.bits32,
    ));
    let _ = write!(
        out,
        "<div class=\"actions\"><button type=\"submit\">{}</button><a href=\"{}\">Cancel</a></div></form>",
        if creating { "Create script" } else { "Save changes" },
        if creating {
            "/".to_owned()
        } else {
            attr(action.trim_end_matches("/edit"))
        }
    );
    out
}

fn new_script_page(signed: &Signed, input: &ScriptInput, error: Option<&str>) -> String {
    let body = format!(
        "<h1>New script</h1>{}",
        script_form(signed, "/scripts/new", input, error, None)
    );
    frame_page(signed, "New script", &body)
}

fn new_script_form(api: &Api<'_>) -> Result<Reply, ApiError> {
    api.signed.principal.require(SCRIPTS.write_permissions)?;
    let input = ScriptInput::of(&Form::default());
    Ok(Reply::html(
        StatusCode::OK,
        new_script_page(api.signed, &input, None),
    ))
}

async fn create_script(api: &Api<'_>, form: &Form) -> Result<Reply, ApiError> {
    let mut input = ScriptInput::of(form);
    match api
        .call(
            Method::POST,
            "deviceManagement/deviceHealthScripts",
            "",
            Some(&input.body(true)),
        )
        .await
    {
        Ok(created) => redirect(&format!("/scripts/{}", enc(s(&created, "id")))),
        Err(e) => {
            let (status, message) = form_error(e)?;
            input.forget_if_too_large(status);
            Ok(Reply::html(
                status,
                new_script_page(api.signed, &input, Some(&message)),
            ))
        }
    }
}

fn script_path(id: &str) -> String {
    format!("deviceManagement/deviceHealthScripts/{}", enc(id))
}

fn name_of(json: &Json) -> String {
    let name = s(json, "displayName");
    if name.trim().is_empty() {
        "(no name)".to_owned()
    } else {
        name.to_owned()
    }
}

fn edit_page(
    signed: &Signed,
    id: &str,
    script: &Json,
    input: &ScriptInput,
    error: Option<&str>,
) -> String {
    let name = name_of(script);
    let body = format!(
        "<h1>Edit {}</h1><p><a href=\"/scripts/{}\">Back to the script</a></p>{}",
        esc(&name),
        attr(&enc(id)),
        script_form(
            signed,
            &format!("/scripts/{}/edit", enc(id)),
            input,
            error,
            Some(script)
        )
    );
    frame_page(signed, &format!("Edit {name}"), &body)
}

async fn edit_script_form(api: &Api<'_>, id: &str) -> Result<Reply, ApiError> {
    api.signed.principal.require(SCRIPTS.write_permissions)?;
    let script = api.get(&script_path(id), "").await?;
    let input = ScriptInput::of_script(&script);
    Ok(Reply::html(
        StatusCode::OK,
        edit_page(api.signed, id, &script, &input, None),
    ))
}

async fn update_script(api: &Api<'_>, id: &str, form: &Form) -> Result<Reply, ApiError> {
    let mut input = ScriptInput::of(form);
    match api
        .call(
            Method::PATCH,
            &script_path(id),
            "",
            Some(&input.body(false)),
        )
        .await
    {
        Ok(_) => redirect(&format!("/scripts/{}", enc(id))),
        Err(e) => {
            let (status, message) = form_error(e)?;
            input.forget_if_too_large(status);
            let script = api.get(&script_path(id), "").await?;
            Ok(Reply::html(
                status,
                edit_page(api.signed, id, &script, &input, Some(&message)),
            ))
        }
    }
}

async fn delete_script(api: &Api<'_>, id: &str) -> Result<Reply, ApiError> {
    api.call(Method::DELETE, &script_path(id), "", None).await?;
    redirect("/")
}

// ---------------------------------------------------------------------------------------------
// Assignments.

/// One row of the assignment form.
#[derive(Default, Clone)]
struct Row {
    /// "", `all-devices`, `all-users`, `include`, `exclude`.
    kind: String,
    group: String,
    filter: String,
    filter_mode: String,
    remediate: bool,
    /// "", `once`, `hourly`, `daily`.
    schedule: String,
    interval: String,
    time: String,
    date: String,
    utc: bool,
}

const TARGETS: [(&str, &str, &str); 4] = [
    ("include", "Include group", "groupAssignmentTarget"),
    ("exclude", "Exclude group", "exclusionGroupAssignmentTarget"),
    ("all-devices", "All devices", "allDevicesAssignmentTarget"),
    ("all-users", "All users", "allLicensedUsersAssignmentTarget"),
];

const SCHEDULES: [(&str, &str, &str); 3] = [
    ("daily", "Daily", "deviceHealthScriptDailySchedule"),
    ("hourly", "Hourly", "deviceHealthScriptHourlySchedule"),
    ("once", "Once", "deviceHealthScriptRunOnceSchedule"),
];

impl Row {
    fn of_assignment(a: &Json) -> Row {
        let target = &a["target"];
        let target_type = s(target, "@odata.type").trim_start_matches("#microsoft.graph.");
        let kind = TARGETS
            .iter()
            .find(|(_, _, t)| *t == target_type)
            .map_or(target_type, |(k, _, _)| k);
        let filter = s(target, "deviceAndAppManagementAssignmentFilterId");
        let filter = if filter == remediate_wire::complex::NO_FILTER_ID {
            ""
        } else {
            filter
        };
        let schedule = &a["runSchedule"];
        let schedule_type = s(schedule, "@odata.type").trim_start_matches("#microsoft.graph.");
        let time = s(schedule, "time");
        let time = time.strip_suffix(".0000000").unwrap_or(time).to_owned();
        Row {
            kind: kind.to_owned(),
            group: s(target, "groupId").to_owned(),
            filter: filter.to_owned(),
            filter_mode: match s(target, "deviceAndAppManagementAssignmentFilterType") {
                "exclude" => "exclude".to_owned(),
                _ => "include".to_owned(),
            },
            remediate: a["runRemediationScript"] == Json::Bool(true),
            schedule: SCHEDULES
                .iter()
                .find(|(_, _, t)| *t == schedule_type)
                .map_or("", |(k, _, _)| k)
                .to_owned(),
            interval: schedule
                .get("interval")
                .and_then(Json::as_i64)
                .map(|i| i.to_string())
                .unwrap_or_default(),
            time,
            date: s(schedule, "date").to_owned(),
            utc: schedule["useUtc"] == Json::Bool(true),
        }
    }

    fn of_form(form: &Form, i: usize) -> Row {
        let f = |name: &str| form.text(&format!("{name}-{i}")).trim().to_owned();
        Row {
            kind: f("target"),
            group: f("group"),
            filter: f("filter"),
            filter_mode: f("filterMode"),
            remediate: form.checked(&format!("remediate-{i}")),
            schedule: f("schedule"),
            interval: f("interval"),
            time: f("time"),
            date: f("date"),
            utc: form.checked(&format!("utc-{i}")),
        }
    }

    /// The row as an item of the assign action; `None` for an empty row.
    fn json(&self) -> Option<Json> {
        if self.kind.is_empty() {
            return None;
        }
        let target_type = TARGETS
            .iter()
            .find(|(k, _, _)| *k == self.kind)
            .map_or(self.kind.as_str(), |(_, _, t)| t);
        let mut target = Map::new();
        target.insert(
            "@odata.type".into(),
            json!(format!("#microsoft.graph.{target_type}")),
        );
        if matches!(self.kind.as_str(), "include" | "exclude") {
            target.insert("groupId".into(), json!(self.group));
        }
        if !self.filter.is_empty() {
            target.insert(
                "deviceAndAppManagementAssignmentFilterId".into(),
                json!(self.filter),
            );
            target.insert(
                "deviceAndAppManagementAssignmentFilterType".into(),
                json!(if self.filter_mode.is_empty() {
                    "include"
                } else {
                    &self.filter_mode
                }),
            );
        }
        let mut item = Map::new();
        item.insert("target".into(), Json::Object(target));
        item.insert("runRemediationScript".into(), json!(self.remediate));
        if !self.schedule.is_empty() {
            let schedule_type = SCHEDULES
                .iter()
                .find(|(k, _, _)| *k == self.schedule)
                .map_or(self.schedule.as_str(), |(_, _, t)| t);
            let mut schedule = Map::new();
            schedule.insert(
                "@odata.type".into(),
                json!(format!("#microsoft.graph.{schedule_type}")),
            );
            if self.schedule != "once" && !self.interval.is_empty() {
                // Not a number: sent as text, so the API's own message says what is wrong.
                let interval = self
                    .interval
                    .parse::<i64>()
                    .map_or_else(|_| json!(self.interval), |n| json!(n));
                schedule.insert("interval".into(), interval);
            }
            if self.schedule != "hourly" {
                if !self.time.is_empty() {
                    schedule.insert("time".into(), json!(self.time));
                }
                schedule.insert("useUtc".into(), json!(self.utc));
            }
            if self.schedule == "once" && !self.date.is_empty() {
                schedule.insert("date".into(), json!(self.date));
            }
            item.insert("runSchedule".into(), Json::Object(schedule));
        }
        Some(Json::Object(item))
    }
}

/// A chooser of ids: a select when the session may list them, else a text input.
fn chooser(
    id: &str,
    label: &str,
    none: &str,
    choices: Option<&[(String, String)]>,
    chosen: &str,
) -> String {
    match choices {
        Some(choices) => {
            let mut out = format!("<select id=\"{id}\" name=\"{id}\" aria-label=\"{label}\">");
            let _ = write!(out, "<option value=\"\">{}</option>", esc(none));
            let mut found = chosen.is_empty();
            for (value, text) in choices {
                let selected = if value == chosen {
                    found = true;
                    " selected"
                } else {
                    ""
                };
                let _ = write!(
                    out,
                    "<option value=\"{}\"{selected}>{}</option>",
                    attr(value),
                    esc(text)
                );
            }
            if !found {
                let _ = write!(
                    out,
                    "<option value=\"{0}\" selected>{0}</option>",
                    attr(chosen)
                );
            }
            out.push_str("</select>");
            out
        }
        None => format!(
            "<input type=\"text\" id=\"{id}\" name=\"{id}\" value=\"{}\" aria-label=\"{label} (id)\">",
            attr(chosen)
        ),
    }
}

fn options_select(id: &str, label: &str, options: &[(&str, &str)], chosen: &str) -> String {
    let mut out = format!("<select id=\"{id}\" name=\"{id}\" aria-label=\"{label}\">");
    for (value, text) in options {
        let selected = if *value == chosen { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{value}\"{selected}>{text}</option>");
    }
    out.push_str("</select>");
    out
}

struct AssignChoices {
    groups: Option<Vec<(String, String)>>,
    filters: Option<Vec<(String, String)>>,
}

async fn assign_choices(api: &Api<'_>) -> Result<AssignChoices, ApiError> {
    let pairs = |items: Vec<Json>| {
        items
            .iter()
            .map(|i| (s(i, "id").to_owned(), name_of(i)))
            .collect::<Vec<_>>()
    };
    Ok(AssignChoices {
        groups: api
            .choices("groups", "$select=id,displayName&$orderby=displayName")
            .await?
            .map(pairs),
        filters: api
            .choices(
                "deviceManagement/assignmentFilters",
                "$select=id,displayName&$orderby=displayName",
            )
            .await?
            .map(pairs),
    })
}

fn assign_page(
    signed: &Signed,
    id: &str,
    script: &Json,
    rows: &[Row],
    choices: &AssignChoices,
    error: Option<&str>,
) -> String {
    let name = name_of(script);
    let mut body = format!(
        "<h1>Assign {}</h1><p><a href=\"/scripts/{}\">Back to the script</a></p>{}",
        esc(&name),
        attr(&enc(id)),
        error_box(error)
    );
    body.push_str(
        "<p class=\"note\">One row per target: include or exclude a group (with an optional assignment filter), or all \
         devices or all users. A row whose target is “None” is removed. Saving replaces the script's assignments.</p>",
    );
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/scripts/{}/assign\" class=\"assign\">{}<input type=\"hidden\" name=\"rows\" value=\"{}\">",
        attr(&enc(id)),
        csrf_field(signed),
        rows.len()
    );
    body.push_str(
        "<div class=\"wide\"><table id=\"assignments-form\"><caption>Assignments</caption><thead><tr>\
         <th scope=\"col\">Row</th><th scope=\"col\">Target</th><th scope=\"col\">Group</th><th scope=\"col\">Assignment filter</th>\
         <th scope=\"col\">Filter mode</th><th scope=\"col\">Remediate</th><th scope=\"col\">Schedule</th><th scope=\"col\">Every</th>\
         <th scope=\"col\">Time</th><th scope=\"col\">Date</th><th scope=\"col\">UTC</th></tr></thead><tbody>",
    );
    let mut targets: Vec<(&str, &str)> = vec![("", "None")];
    targets.extend(TARGETS.iter().map(|(k, l, _)| (*k, *l)));
    let mut schedules: Vec<(&str, &str)> = vec![("", "Not scheduled")];
    schedules.extend(SCHEDULES.iter().map(|(k, l, _)| (*k, *l)));
    for (i, row) in rows.iter().enumerate() {
        let n = i + 1;
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{n}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><input type=\"checkbox\" id=\"remediate-{i}\" name=\"remediate-{i}\" value=\"true\" aria-label=\"Row {n} runs the remediation script\"{}></td>\
             <td>{}</td>\
             <td><input type=\"text\" inputmode=\"numeric\" size=\"3\" id=\"interval-{i}\" name=\"interval-{i}\" value=\"{}\" aria-label=\"Row {n} interval (days or hours)\"></td>\
             <td><input type=\"time\" step=\"1\" id=\"time-{i}\" name=\"time-{i}\" value=\"{}\" aria-label=\"Row {n} time\"></td>\
             <td><input type=\"date\" id=\"date-{i}\" name=\"date-{i}\" value=\"{}\" aria-label=\"Row {n} date (once)\"></td>\
             <td><input type=\"checkbox\" id=\"utc-{i}\" name=\"utc-{i}\" value=\"true\" aria-label=\"Row {n} time is UTC\"{}></td></tr>",
            options_select(&format!("target-{i}"), &format!("Row {n} target"), &targets, &row.kind),
            chooser(
                &format!("group-{i}"),
                &format!("Row {n} group"),
                "(no group)",
                choices.groups.as_deref(),
                &row.group
            ),
            chooser(
                &format!("filter-{i}"),
                &format!("Row {n} filter"),
                "No filter",
                choices.filters.as_deref(),
                &row.filter
            ),
            options_select(
                &format!("filterMode-{i}"),
                &format!("Row {n} filter mode"),
                &[("include", "Include filtered devices"), ("exclude", "Exclude filtered devices")],
                &row.filter_mode
            ),
            if row.remediate { " checked" } else { "" },
            options_select(&format!("schedule-{i}"), &format!("Row {n} schedule"), &schedules, &row.schedule),
            attr(&row.interval),
            attr(&row.time),
            attr(&row.date),
            if row.utc { " checked" } else { "" },
        );
    }
    body.push_str(
        "</tbody></table></div><div class=\"actions\"><button type=\"submit\">Save assignments</button>\
         <button type=\"submit\" name=\"more\" value=\"1\" class=\"secondary\">Add a row</button></div></form>",
    );
    frame_page(signed, &format!("Assign {name}"), &body)
}

async fn assign_form(api: &Api<'_>, id: &str) -> Result<Reply, ApiError> {
    api.signed.principal.require(SCRIPTS.write_permissions)?;
    let script = api.get(&script_path(id), "$select=id,displayName").await?;
    let (assignments, _) = api
        .list(&format!("{}/assignments", script_path(id)), "")
        .await?;
    let mut rows: Vec<Row> = assignments.iter().map(Row::of_assignment).collect();
    rows.extend([Row::default(), Row::default()]);
    let choices = assign_choices(api).await?;
    Ok(Reply::html(
        StatusCode::OK,
        assign_page(api.signed, id, &script, &rows, &choices, None),
    ))
}

/// Rows a form may carry (each is a dozen fields; the form's own cap is 1000 fields).
const MAX_ROWS: usize = 60;

async fn assign(api: &Api<'_>, id: &str, form: &Form) -> Result<Reply, ApiError> {
    let count = form
        .text("rows")
        .parse::<usize>()
        .unwrap_or(0)
        .min(MAX_ROWS);
    let mut rows: Vec<Row> = (0..count).map(|i| Row::of_form(form, i)).collect();
    if form.checked("more") {
        // "Add a row": the same form with one more row, nothing saved.
        api.signed.principal.require(SCRIPTS.write_permissions)?;
        if rows.len() < MAX_ROWS {
            rows.push(Row::default());
        }
        let script = api.get(&script_path(id), "$select=id,displayName").await?;
        let choices = assign_choices(api).await?;
        return Ok(Reply::html(
            StatusCode::OK,
            assign_page(api.signed, id, &script, &rows, &choices, None),
        ));
    }
    let items: Vec<Json> = rows.iter().filter_map(Row::json).collect();
    let body = json!({ "deviceHealthScriptAssignments": items });
    match api
        .call(
            Method::POST,
            &format!("{}/assign", script_path(id)),
            "",
            Some(&body),
        )
        .await
    {
        Ok(_) => redirect(&format!("/scripts/{}#assignments", enc(id))),
        Err(e) => {
            let (status, message) = form_error(e)?;
            let script = api.get(&script_path(id), "$select=id,displayName").await?;
            let choices = assign_choices(api).await?;
            Ok(Reply::html(
                status,
                assign_page(api.signed, id, &script, &rows, &choices, Some(&message)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_rows_become_the_assign_actions_items() {
        let row = Row {
            kind: "include".into(),
            group: "g1".into(),
            filter: "9d8c3f3e-2d6a-4b0f-8a59-5c7e1f0a2b11".into(),
            filter_mode: "exclude".into(),
            remediate: true,
            schedule: "daily".into(),
            interval: "2".into(),
            time: "09:30".into(),
            date: String::new(),
            utc: false,
        };
        let item = row.json().unwrap();
        assert_eq!(
            item,
            json!({
                "target": {
                    "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                    "groupId": "g1",
                    "deviceAndAppManagementAssignmentFilterId": "9d8c3f3e-2d6a-4b0f-8a59-5c7e1f0a2b11",
                    "deviceAndAppManagementAssignmentFilterType": "exclude"
                },
                "runRemediationScript": true,
                "runSchedule": {
                    "@odata.type": "#microsoft.graph.deviceHealthScriptDailySchedule",
                    "interval": 2, "time": "09:30", "useUtc": false
                }
            })
        );
        // Back from what the API stores, the row is the same.
        let mut stored = item.clone();
        stored["runSchedule"]["time"] = json!("09:30:00.0000000");
        let again = Row::of_assignment(&stored);
        assert_eq!(again.kind, "include");
        assert_eq!(again.filter, row.filter);
        assert_eq!(again.filter_mode, "exclude");
        assert_eq!(again.schedule, "daily");
        assert_eq!(again.time, "09:30:00");
        assert!(Row::default().json().is_none());
        // A non-number interval is sent as text, for the API to name.
        let odd = Row {
            kind: "all-devices".into(),
            schedule: "hourly".into(),
            interval: "often".into(),
            ..Row::default()
        };
        assert_eq!(odd.json().unwrap()["runSchedule"]["interval"], "often");
    }

    #[test]
    fn rule_check_answers_the_apis_message() {
        let ok = rule_check("membership", "device.displayName -startsWith \"LAB-\"").unwrap();
        assert!(ok.body.contains("\"valid\":true"), "{}", ok.body);
        let bad = rule_check("filter", "(device.deviceName -eq").unwrap();
        let answer: Json = serde_json::from_str(&bad.body).unwrap();
        assert_eq!(answer["valid"], false);
        assert!(answer["message"]
            .as_str()
            .unwrap()
            .starts_with("The 'rule' is not valid: "));
        assert!(rule_check("sql", "x").is_err());
    }
}
