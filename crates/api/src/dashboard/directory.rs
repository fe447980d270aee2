//! The dashboard's pages for what scripts are assigned through and how agents enroll: groups
//! (`/groups`: list, create assigned or dynamic with the rule checked as it is typed, edit,
//! static members added and removed, delete), assignment filters (`/filters`: list, create,
//! edit, delete) and enrollment secrets (`/secrets`: list without the secret, create with
//! groups, expiry and a use limit — the secret shown once with a copyable
//! `remediate-agent install` command — and revoke). All reads and writes go through the API
//! (`edit::Api`), so what a session may see and do and every message are the API's.

use std::fmt::Write as _;

use http::{Method, StatusCode};
use remediate_domain::collections::permissions as perm;
use remediate_domain::model::DEVICE_PLATFORM_TYPE;
use remediate_domain::rule::Dialect;
use remediate_domain::Instant;
use serde_json::{json, Map, Value as Json};

use super::edit::{
    checkbox, csrf_field, delete_form, error_box, form_error, frame_page, s, select, text_area,
    text_field, Api,
};
use super::form::Form;
use super::html::{attr, enc, esc, query as query_string};
use super::session;
use super::{method_not_allowed, Reply};
use crate::error::ApiError;

pub(super) async fn route(
    api: &Api<'_>,
    segments: &[&str],
    form: Option<&Form>,
) -> Result<Reply, ApiError> {
    let seg = |i: usize| super::segment(segments[i]);
    match (segments, form) {
        (["groups"], None) => groups(api).await,
        (["groups", "new"], None) => {
            api_require(api, perm::GROUPS_WRITE)?;
            Ok(html(new_group_page(api, &GroupInput::default(), None)))
        }
        (["groups", "new"], Some(form)) => create_group(api, form).await,
        (["groups", _], None) => group(api, &seg(1), None).await,
        (["groups", _], Some(form)) => update_group(api, &seg(1), form).await,
        (["groups", _, "members"], Some(form)) => add_member(api, &seg(1), form).await,
        (["groups", _, "members", _, "remove"], Some(_)) => {
            remove_member(api, &seg(1), &seg(3)).await
        }
        (["groups", _, "delete"], Some(_)) => {
            delete(api, &format!("groups/{}", enc(&seg(1))), "/groups").await
        }
        (["filters"], None) => filters(api).await,
        (["filters", "new"], None) => {
            api_require(api, perm::FILTERS_WRITE)?;
            Ok(html(filter_page(api, None, &FilterInput::default(), None)))
        }
        (["filters", "new"], Some(form)) => save_filter(api, None, form).await,
        (["filters", _], None) => filter(api, &seg(1)).await,
        (["filters", _], Some(form)) => save_filter(api, Some(&seg(1)), form).await,
        (["filters", _, "delete"], Some(_)) => delete(api, &filter_path(&seg(1)), "/filters").await,
        (["secrets"], None) => {
            let created = take_created(api);
            let reply = secrets(api, created.as_ref(), &SecretInput::default(), None).await?;
            Ok(match session::cookie_named(api.headers(), CREATED_COOKIE) {
                Some(_) => reply.with("set-cookie", created_cookie(api, None)),
                None => reply,
            })
        }
        (["secrets"], Some(form)) => create_secret(api, form).await,
        (["secrets", _, "revoke"], Some(_)) => {
            delete(
                api,
                &format!("deviceManagement/agentEnrollmentSecrets/{}", enc(&seg(1))),
                "/secrets",
            )
            .await
        }
        (["groups" | "filters" | "secrets", _, ..], None) => Err(method_not_allowed("POST")),
        _ => Err(ApiError::not_found(format!(
            "There is no dashboard page at '/{}'.",
            segments.join("/")
        ))),
    }
}

fn api_require(api: &Api<'_>, allowed: &[&str]) -> Result<(), ApiError> {
    api.signed().principal.require(allowed)
}

fn html(body: String) -> Reply {
    Reply::html(StatusCode::OK, body)
}

fn name(json: &Json) -> String {
    let name = s(json, "displayName");
    if name.trim().is_empty() {
        "(no name)".to_owned()
    } else {
        name.to_owned()
    }
}

async fn delete(api: &Api<'_>, path: &str, then: &str) -> Result<Reply, ApiError> {
    api.call(Method::DELETE, path, "", None).await?;
    Ok(Reply::redirect(then))
}

/// Rows a list page shows at once.
const LIST_PAGE: usize = 100;

/// One page of the API's list at `path` (`query` without `$top`), continued from the page's
/// `after` (the API's own `$skiptoken`, so a forged or foreign token is the API's 400), and the
/// pager under its table: "{what} 101–200", First page, Next page (`?after=…&n=…`).
async fn list_page(
    api: &Api<'_>,
    path: &str,
    query: &str,
    what: &str,
) -> Result<(Vec<Json>, String), ApiError> {
    let after = api.param("after");
    let shown: usize = if after.is_empty() {
        0
    } else {
        api.param("n").parse().unwrap_or(0)
    };
    let mut options = format!("{query}&$top={LIST_PAGE}");
    if !after.is_empty() {
        let _ = write!(options, "&$skiptoken={}", enc(&after));
    }
    let (items, next) = api.list(path, &options).await?;
    let page = api.path();
    let mut nav = String::new();
    if shown > 0 || next.is_some() {
        let _ = write!(
            nav,
            "<nav class=\"pager\" aria-label=\"Pages of {what}\"><p>{what} {}–{}</p>",
            shown + 1,
            shown + items.len()
        );
        if shown > 0 {
            let _ = write!(nav, "<a href=\"{}\">First page</a>", attr(page));
        }
        if let Some(token) = next {
            let _ = write!(
                nav,
                "<a href=\"{}\" rel=\"next\">Next page</a>",
                attr(&format!(
                    "{page}{}",
                    query_string(&[
                        ("after", token.as_str()),
                        ("n", &(shown + items.len()).to_string())
                    ])
                ))
            );
        }
        nav.push_str("</nav>");
    }
    Ok((items, nav))
}

// ---------------------------------------------------------------------------------------------
// Groups.

fn is_dynamic(group: &Json) -> bool {
    group["groupTypes"].as_array().is_some_and(|types| {
        types.iter().any(|t| {
            t.as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("DynamicMembership"))
        })
    })
}

async fn groups(api: &Api<'_>) -> Result<Reply, ApiError> {
    let (items, pager) = list_page(api, "groups", "$orderby=displayName", "Groups").await?;
    let mut body = String::from("<h1>Groups</h1>");
    if api.signed().may(perm::GROUPS_WRITE) {
        body.push_str(
            "<p class=\"actions\"><a href=\"/groups/new\" class=\"button\">New group</a></p>",
        );
    }
    if items.is_empty() {
        body.push_str("<p class=\"note\">No groups yet.</p>");
    } else {
        body.push_str("<table id=\"groups\" aria-label=\"Groups\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Membership</th>\
             <th scope=\"col\">Rule</th><th scope=\"col\">Description</th></tr></thead><tbody>");
        for g in &items {
            let _ = write!(
                body,
                "<tr><th scope=\"row\"><a href=\"/groups/{}\">{}</a></th><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                attr(&enc(s(g, "id"))),
                esc(&name(g)),
                if is_dynamic(g) { "Dynamic" } else { "Assigned" },
                esc(s(g, "membershipRule")),
                esc(s(g, "description")),
            );
        }
        body.push_str("</tbody></table>");
        body.push_str(&pager);
    }
    Ok(html(frame_page(api.signed(), "Groups", &body)))
}

#[derive(Default)]
struct GroupInput {
    display_name: String,
    mail_nickname: String,
    description: String,
    dynamic: bool,
    rule: String,
    paused: bool,
}

impl GroupInput {
    fn of(form: &Form) -> GroupInput {
        GroupInput {
            display_name: form.text("displayName").to_owned(),
            mail_nickname: form.text("mailNickname").to_owned(),
            description: form.text("description").to_owned(),
            dynamic: form.text("membership") == "dynamic",
            rule: form.text("membershipRule").to_owned(),
            paused: form.checked("paused"),
        }
    }

    fn of_group(group: &Json) -> GroupInput {
        GroupInput {
            display_name: s(group, "displayName").to_owned(),
            mail_nickname: s(group, "mailNickname").to_owned(),
            description: s(group, "description").to_owned(),
            dynamic: is_dynamic(group),
            rule: s(group, "membershipRule").to_owned(),
            paused: s(group, "membershipRuleProcessingState") == "Paused",
        }
    }
}

fn new_group_page(api: &Api<'_>, input: &GroupInput, error: Option<&str>) -> String {
    let mut body = format!("<h1>New group</h1>{}", error_box(error));
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/groups/new\" class=\"edit\">{}",
        csrf_field(api.signed())
    );
    body.push_str(&text_field(
        "displayName",
        "Name",
        &input.display_name,
        " required",
    ));
    body.push_str(&text_field(
        "mailNickname",
        "Mail nickname (required by Entra; letters and digits)",
        &input.mail_nickname,
        " required",
    ));
    body.push_str(&text_area(
        "description",
        "Description",
        &input.description,
        None,
    ));
    body.push_str("<fieldset><legend>Membership type</legend>");
    for (value, label, checked) in [
        (
            "assigned",
            "Assigned (members added by hand)",
            !input.dynamic,
        ),
        ("dynamic", "Dynamic device (members by rule)", input.dynamic),
    ] {
        let _ = write!(
            body,
            "<input type=\"radio\" id=\"membership-{value}\" name=\"membership\" value=\"{value}\"{}><label for=\"membership-{value}\">{label}</label>",
            if checked { " checked" } else { "" }
        );
    }
    body.push_str("</fieldset>");
    body.push_str(&text_area(
        "membershipRule",
        "Dynamic membership rule (for a dynamic group), e.g. <code>device.displayName -startsWith \"LAB-\"</code>",
        &input.rule,
        Some(Dialect::Membership),
    ));
    body.push_str("<div class=\"actions\"><button type=\"submit\">Create group</button><a href=\"/groups\">Cancel</a></div></form>");
    frame_page(api.signed(), "New group", &body)
}

fn group_body(input: &GroupInput, creating: bool) -> Json {
    let mut body = Map::new();
    body.insert("displayName".into(), json!(input.display_name));
    body.insert(
        "description".into(),
        if input.description.is_empty() {
            Json::Null
        } else {
            json!(input.description)
        },
    );
    if creating {
        body.insert("mailNickname".into(), json!(input.mail_nickname));
        body.insert("mailEnabled".into(), json!(false));
        body.insert("securityEnabled".into(), json!(true));
        let types: Vec<&str> = if input.dynamic {
            vec!["DynamicMembership"]
        } else {
            Vec::new()
        };
        body.insert("groupTypes".into(), json!(types));
        if !input.rule.trim().is_empty() {
            body.insert("membershipRule".into(), json!(input.rule));
        }
    } else if input.dynamic {
        body.insert("membershipRule".into(), json!(input.rule));
        body.insert(
            "membershipRuleProcessingState".into(),
            json!(if input.paused { "Paused" } else { "On" }),
        );
    }
    Json::Object(body)
}

async fn create_group(api: &Api<'_>, form: &Form) -> Result<Reply, ApiError> {
    let input = GroupInput::of(form);
    match api
        .call(Method::POST, "groups", "", Some(&group_body(&input, true)))
        .await
    {
        Ok(created) => Ok(Reply::redirect(&format!(
            "/groups/{}",
            enc(s(&created, "id"))
        ))),
        Err(e) => {
            let (status, message) = form_error(e)?;
            Ok(Reply::html(
                status,
                new_group_page(api, &input, Some(&message)),
            ))
        }
    }
}

/// What a group page shows again after a refused change.
struct Refused<'a> {
    status: StatusCode,
    message: String,
    input: Option<GroupInput>,
    member: &'a str,
}

async fn group(api: &Api<'_>, id: &str, refused: Option<Refused<'_>>) -> Result<Reply, ApiError> {
    let path = format!("groups/{}", enc(id));
    let group = api.get(&path, "").await?;
    let signed = api.signed();
    let dynamic = is_dynamic(&group);
    let title = name(&group);
    let mut body = format!(
        "<h1>{}</h1><p><a href=\"/groups\">All groups</a></p>",
        esc(&title)
    );
    let (status, message, input, member) = match refused {
        Some(r) => (r.status, Some(r.message), r.input, r.member),
        None => (StatusCode::OK, None, None, ""),
    };
    body.push_str(&error_box(message.as_deref()));
    body.push_str("<dl class=\"props\">");
    for (label, value) in [
        ("Id", esc(id)),
        ("Description", esc(s(&group, "description"))),
        (
            "Membership",
            if dynamic { "Dynamic" } else { "Assigned" }.to_owned(),
        ),
        (
            "Rule",
            format!("<code>{}</code>", esc(s(&group, "membershipRule"))),
        ),
        (
            "Rule processing",
            esc(s(&group, "membershipRuleProcessingState")),
        ),
        ("Mail nickname", esc(s(&group, "mailNickname"))),
    ] {
        let _ = write!(body, "<dt>{label}</dt><dd>{value}</dd>");
    }
    body.push_str("</dl>");

    // Members.
    body.push_str("<h2 id=\"members\">Members</h2>");
    let may_change = signed.may(perm::MEMBERS_WRITE) && !dynamic;
    match list_page(
        api,
        &format!("{path}/members"),
        "$select=id,displayName",
        "Members",
    )
    .await
    {
        Ok((members, _)) if members.is_empty() => {
            body.push_str("<p class=\"note\">No members.</p>");
        }
        Ok((members, pager)) => {
            body.push_str("<table id=\"group-members\" aria-labelledby=\"members\"><thead><tr><th scope=\"col\">Device</th><th scope=\"col\">Id</th>");
            if may_change {
                body.push_str("<th scope=\"col\">Change</th>");
            }
            body.push_str("</tr></thead><tbody>");
            for m in &members {
                let member_id = s(m, "id");
                let _ = write!(
                    body,
                    "<tr><th scope=\"row\">{}</th><td>{}</td>",
                    esc(&name(m)),
                    esc(member_id)
                );
                if may_change {
                    let _ = write!(
                        body,
                        "<td><form method=\"post\" action=\"/groups/{}/members/{}/remove\">{}<button type=\"submit\" class=\"secondary\" aria-label=\"Remove {}\">Remove</button></form></td>",
                        attr(&enc(id)),
                        attr(&enc(member_id)),
                        csrf_field(signed),
                        attr(&name(m))
                    );
                }
                body.push_str("</tr>");
            }
            body.push_str("</tbody></table>");
            body.push_str(&pager);
        }
        Err(e) if e.kind == remediate_wire::ErrorKind::Forbidden => {
            body.push_str("<p class=\"note\">This session may not read the group's members.</p>");
        }
        Err(e) => return Err(e),
    }
    if dynamic {
        body.push_str("<p class=\"note\">The members of a dynamic group follow its rule.</p>");
    } else if may_change {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/groups/{}/members\" class=\"filters\">{}",
            attr(&enc(id)),
            csrf_field(signed)
        );
        match api
            .choices("devices", "$select=id,displayName&$orderby=displayName")
            .await?
        {
            Some(devices) => {
                let mut options = vec![(String::new(), "Choose a device".to_owned())];
                options.extend(devices.iter().map(|d| (s(d, "id").to_owned(), name(d))));
                body.push_str(&select("device", "Add a device", &options, member));
            }
            None => body.push_str(&text_field("device", "Add a device (its id)", member, "")),
        }
        body.push_str("<div><button type=\"submit\">Add member</button></div></form>");
    }

    // Settings.
    if signed.may(perm::GROUPS_WRITE) {
        let input = input.unwrap_or_else(|| GroupInput::of_group(&group));
        let _ = write!(
            body,
            "<h2>Settings</h2><form method=\"post\" action=\"/groups/{}\" class=\"edit\">{}",
            attr(&enc(id)),
            csrf_field(signed)
        );
        body.push_str(&text_field(
            "displayName",
            "Name",
            &input.display_name,
            " required",
        ));
        body.push_str(&text_area(
            "description",
            "Description",
            &input.description,
            None,
        ));
        if dynamic {
            body.push_str("<input type=\"hidden\" name=\"membership\" value=\"dynamic\">");
            body.push_str(&text_area(
                "membershipRule",
                "Dynamic membership rule",
                &input.rule,
                Some(Dialect::Membership),
            ));
            body.push_str(&checkbox("paused", "Pause rule processing", input.paused));
        }
        body.push_str(
            "<div class=\"actions\"><button type=\"submit\">Save changes</button></div></form>",
        );
        body.push_str(&delete_form(
            signed,
            &format!("/groups/{}/delete", enc(id)),
            "group",
            "Assignments to this group stop applying; its members are not deleted.",
        ));
    }
    Ok(Reply::html(status, frame_page(signed, &title, &body)))
}

async fn update_group(api: &Api<'_>, id: &str, form: &Form) -> Result<Reply, ApiError> {
    let input = GroupInput::of(form);
    match api
        .call(
            Method::PATCH,
            &format!("groups/{}", enc(id)),
            "",
            Some(&group_body(&input, false)),
        )
        .await
    {
        Ok(_) => Ok(Reply::redirect(&format!("/groups/{}", enc(id)))),
        Err(e) => {
            let (status, message) = form_error(e)?;
            group(
                api,
                id,
                Some(Refused {
                    status,
                    message,
                    input: Some(input),
                    member: "",
                }),
            )
            .await
        }
    }
}

async fn add_member(api: &Api<'_>, id: &str, form: &Form) -> Result<Reply, ApiError> {
    let device = form.text("device").trim();
    let body = json!({
        "@odata.id": format!("https://graph.microsoft.com/beta/directoryObjects/{}", enc(device))
    });
    match api
        .call(
            Method::POST,
            &format!("groups/{}/members/$ref", enc(id)),
            "",
            Some(&body),
        )
        .await
    {
        Ok(_) => Ok(Reply::redirect(&format!("/groups/{}#members", enc(id)))),
        Err(e) => {
            let (status, message) = form_error(e)?;
            group(
                api,
                id,
                Some(Refused {
                    status,
                    message,
                    input: None,
                    member: device,
                }),
            )
            .await
        }
    }
}

async fn remove_member(api: &Api<'_>, id: &str, member: &str) -> Result<Reply, ApiError> {
    api.call(
        Method::DELETE,
        &format!("groups/{}/members/{}/$ref", enc(id), enc(member)),
        "",
        None,
    )
    .await?;
    Ok(Reply::redirect(&format!("/groups/{}#members", enc(id))))
}

// ---------------------------------------------------------------------------------------------
// Assignment filters.

fn filter_path(id: &str) -> String {
    format!("deviceManagement/assignmentFilters/{}", enc(id))
}

async fn filters(api: &Api<'_>) -> Result<Reply, ApiError> {
    let (items, pager) = list_page(
        api,
        "deviceManagement/assignmentFilters",
        "$orderby=displayName",
        "Assignment filters",
    )
    .await?;
    let mut body = String::from("<h1>Assignment filters</h1>");
    if api.signed().may(perm::FILTERS_WRITE) {
        body.push_str(
            "<p class=\"actions\"><a href=\"/filters/new\" class=\"button\">New filter</a></p>",
        );
    }
    if items.is_empty() {
        body.push_str("<p class=\"note\">No assignment filters yet.</p>");
    } else {
        body.push_str("<table id=\"filters\" aria-label=\"Assignment filters\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Platform</th>\
             <th scope=\"col\">Rule</th><th scope=\"col\">Description</th></tr></thead><tbody>");
        for f in &items {
            let _ = write!(
                body,
                "<tr><th scope=\"row\"><a href=\"/filters/{}\">{}</a></th><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                attr(&enc(s(f, "id"))),
                esc(&name(f)),
                esc(s(f, "platform")),
                esc(s(f, "rule")),
                esc(s(f, "description")),
            );
        }
        body.push_str("</tbody></table>");
        body.push_str(&pager);
    }
    Ok(html(frame_page(api.signed(), "Assignment filters", &body)))
}

#[derive(Default)]
struct FilterInput {
    display_name: String,
    description: String,
    platform: String,
    rule: String,
}

impl FilterInput {
    fn of(form: &Form) -> FilterInput {
        FilterInput {
            display_name: form.text("displayName").to_owned(),
            description: form.text("description").to_owned(),
            platform: form.text("platform").to_owned(),
            rule: form.text("rule").to_owned(),
        }
    }

    fn of_filter(filter: &Json) -> FilterInput {
        FilterInput {
            display_name: s(filter, "displayName").to_owned(),
            description: s(filter, "description").to_owned(),
            platform: s(filter, "platform").to_owned(),
            rule: s(filter, "rule").to_owned(),
        }
    }
}

/// The form of a new filter (`id` `None`) or of an existing one.
fn filter_page(
    api: &Api<'_>,
    id: Option<&str>,
    input: &FilterInput,
    error: Option<&str>,
) -> String {
    let signed = api.signed();
    let title = match id {
        None => "New assignment filter".to_owned(),
        Some(_) => input.display_name.clone(),
    };
    let mut body = format!(
        "<h1>{}</h1><p><a href=\"/filters\">All assignment filters</a></p>{}",
        esc(&title),
        error_box(error)
    );
    let writable = signed.may(perm::FILTERS_WRITE);
    if let (Some(_), false) = (id, writable) {
        let _ = write!(
            body,
            "<dl class=\"props\"><dt>Platform</dt><dd>{}</dd><dt>Rule</dt><dd><code>{}</code></dd><dt>Description</dt><dd>{}</dd></dl>",
            esc(&input.platform),
            esc(&input.rule),
            esc(&input.description)
        );
        return frame_page(signed, &title, &body);
    }
    let action = match id {
        None => "/filters/new".to_owned(),
        Some(id) => format!("/filters/{}", enc(id)),
    };
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\" class=\"edit\">{}",
        attr(&action),
        csrf_field(signed)
    );
    body.push_str(&text_field(
        "displayName",
        "Name",
        &input.display_name,
        " required",
    ));
    body.push_str(&text_area(
        "description",
        "Description",
        &input.description,
        None,
    ));
    let platforms: Vec<(String, String)> = DEVICE_PLATFORM_TYPE
        .members
        .iter()
        .filter(|(m, _)| *m != "unknownFutureValue")
        .map(|(m, _)| ((*m).to_owned(), (*m).to_owned()))
        .collect();
    let platform = if input.platform.is_empty() {
        "windows10AndLater"
    } else {
        &input.platform
    };
    body.push_str(&select("platform", "Platform", &platforms, platform));
    body.push_str(&text_area(
        "rule",
        "Rule, e.g. <code>(device.deviceName -startsWith \"LAB\")</code>",
        &input.rule,
        Some(Dialect::Filter),
    ));
    let _ = write!(
        body,
        "<div class=\"actions\"><button type=\"submit\">{}</button><a href=\"/filters\">Cancel</a></div></form>",
        if id.is_none() {
            "Create filter"
        } else {
            "Save changes"
        }
    );
    if let Some(id) = id {
        body.push_str(&delete_form(
            signed,
            &format!("/filters/{}/delete", enc(id)),
            "filter",
            "Assignments that use this filter stop being filtered by it.",
        ));
    }
    frame_page(signed, &title, &body)
}

async fn filter(api: &Api<'_>, id: &str) -> Result<Reply, ApiError> {
    let filter = api.get(&filter_path(id), "").await?;
    Ok(html(filter_page(
        api,
        Some(id),
        &FilterInput::of_filter(&filter),
        None,
    )))
}

async fn save_filter(api: &Api<'_>, id: Option<&str>, form: &Form) -> Result<Reply, ApiError> {
    let input = FilterInput::of(form);
    let mut body = Map::new();
    body.insert("displayName".into(), json!(input.display_name));
    body.insert(
        "description".into(),
        if input.description.is_empty() {
            Json::Null
        } else {
            json!(input.description)
        },
    );
    body.insert("platform".into(), json!(input.platform));
    body.insert("rule".into(), json!(input.rule));
    let body = Json::Object(body);
    let result = match id {
        None => {
            api.call(
                Method::POST,
                "deviceManagement/assignmentFilters",
                "",
                Some(&body),
            )
            .await
        }
        Some(id) => {
            api.call(Method::PATCH, &filter_path(id), "", Some(&body))
                .await
        }
    };
    match result {
        Ok(_) => Ok(Reply::redirect("/filters")),
        Err(e) => {
            let (status, message) = form_error(e)?;
            Ok(Reply::html(
                status,
                filter_page(api, id, &input, Some(&message)),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Enrollment secrets.

const SECRETS: &str = "deviceManagement/agentEnrollmentSecrets";

#[derive(Default)]
struct SecretInput {
    display_name: String,
    groups: Vec<String>,
    expires: String,
    uses: String,
}

impl SecretInput {
    fn of(form: &Form) -> SecretInput {
        let mut groups: Vec<String> = form.all("group").iter().map(|g| (*g).to_owned()).collect();
        // Without a group list (no permission to read groups), ids are typed, comma-separated.
        for typed in form.text("groupIds").split(',') {
            if !typed.trim().is_empty() {
                groups.push(typed.trim().to_owned());
            }
        }
        SecretInput {
            display_name: form.text("displayName").to_owned(),
            groups,
            expires: form.text("expires").trim().to_owned(),
            uses: form.text("uses").trim().to_owned(),
        }
    }

    fn body(&self) -> Json {
        let mut body = Map::new();
        if !self.display_name.is_empty() {
            body.insert("displayName".into(), json!(self.display_name));
        }
        body.insert("groupIds".into(), json!(self.groups));
        if !self.expires.is_empty() {
            // `datetime-local` sends `YYYY-MM-DDTHH:MM[:SS]`; the form asks for UTC.
            let expires = match self.expires.len() {
                16 => format!("{}:00Z", self.expires),
                19 => format!("{}Z", self.expires),
                _ => self.expires.clone(),
            };
            body.insert("expirationDateTime".into(), json!(expires));
        }
        if !self.uses.is_empty() {
            body.insert(
                "usesRemaining".into(),
                self.uses
                    .parse::<i64>()
                    .map_or_else(|_| json!(self.uses), |n| json!(n)),
            );
        }
        Json::Object(body)
    }
}

/// A week from now, as `datetime-local` shows it (UTC, minutes).
fn default_expiry() -> String {
    let now = Instant::now();
    let later =
        Instant::from_ticks(now.ticks().saturating_add(7 * 24 * 3600 * 10_000_000)).unwrap_or(now);
    later.to_seconds_string().chars().take(16).collect()
}

fn when(json: &Json, name: &str) -> String {
    let text = s(json, name);
    if text.is_empty() {
        "never".to_owned()
    } else {
        esc(&text
            .split('.')
            .next()
            .unwrap_or(text)
            .trim_end_matches('Z')
            .replacen('T', " ", 1))
            + " UTC"
    }
}

async fn secrets(
    api: &Api<'_>,
    created: Option<&Json>,
    input: &SecretInput,
    refused: Option<(StatusCode, String)>,
) -> Result<Reply, ApiError> {
    let signed = api.signed();
    let (items, pager) = list_page(
        api,
        SECRETS,
        "$orderby=createdDateTime desc",
        "Enrollment secrets",
    )
    .await?;
    let groups = api
        .choices(
            "groups",
            "$select=id,displayName,groupTypes&$orderby=displayName",
        )
        .await?;
    let group_name = |id: &str| -> String {
        groups
            .as_ref()
            .and_then(|g| g.iter().find(|g| s(g, "id") == id))
            .map_or_else(|| id.to_owned(), name)
    };
    let (status, message) = match refused {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let mut body = String::from("<h1>Enrollment secrets</h1>");
    if let Some(created) = created {
        let secret = s(created, "secret");
        let command = format!(
            "remediate-agent install --server {} --secret {}",
            api.server_url(),
            secret
        );
        let _ = write!(
            body,
            "<section class=\"msg\" role=\"status\" aria-labelledby=\"created\" id=\"created-secret\"><h2 id=\"created\">Secret created: {}</h2>\
             <p><strong>Copy it now: it is shown only once</strong> (the server keeps only its hash).</p>\
             <p>Secret: <code id=\"secret\">{}</code> <button type=\"button\" data-copy=\"secret\" hidden>Copy secret</button></p>\
             <p>Install the agent on a machine (as root):</p><pre class=\"code\" id=\"install-command\">{}</pre>\
             <button type=\"button\" data-copy=\"install-command\" hidden>Copy command</button></section>",
            esc(&name(created)),
            esc(secret),
            esc(&command)
        );
    }
    body.push_str(&error_box(message.as_deref()));
    body.push_str("<h2 id=\"list\">Secrets</h2>");
    if items.is_empty() {
        body.push_str("<p class=\"note\">No enrollment secrets.</p>");
    } else {
        body.push_str("<table id=\"secrets\" aria-labelledby=\"list\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Groups</th>\
             <th scope=\"col\">Created</th><th scope=\"col\">Expires</th><th scope=\"col\">Used</th><th scope=\"col\">Uses left</th><th scope=\"col\">Revoke</th></tr></thead><tbody>");
        for item in &items {
            let group_names: Vec<String> = item["groupIds"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(Json::as_str)
                        .map(&group_name)
                        .collect()
                })
                .unwrap_or_default();
            let uses_left = item["usesRemaining"]
                .as_i64()
                .map_or_else(|| "No limit".to_owned(), |n| n.to_string());
            let _ = write!(
                body,
                "<tr data-secret=\"{}\"><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><form method=\"post\" action=\"/secrets/{}/revoke\">{}<button type=\"submit\" class=\"danger\" aria-label=\"Revoke {}\">Revoke</button></form></td></tr>",
                attr(s(item, "id")),
                esc(&name(item)),
                esc(&group_names.join(", ")),
                when(item, "createdDateTime"),
                when(item, "expirationDateTime"),
                item["usesCount"].as_i64().unwrap_or(0),
                uses_left,
                attr(&enc(s(item, "id"))),
                csrf_field(signed),
                attr(&name(item)),
            );
        }
        body.push_str("</tbody></table>");
        body.push_str(&pager);
    }

    body.push_str("<h2 id=\"new\">New secret</h2>");
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/secrets\" class=\"edit\">{}",
        csrf_field(signed)
    );
    body.push_str(&text_field("displayName", "Name", &input.display_name, ""));
    match &groups {
        Some(groups) => {
            body.push_str("<fieldset><legend>Groups an enrolled device joins</legend>");
            let assigned: Vec<&Json> = groups.iter().filter(|g| !is_dynamic(g)).collect();
            if assigned.is_empty() {
                body.push_str("<p class=\"note\">No assigned groups yet (dynamic groups take members by their rule).</p>");
            }
            for (i, g) in assigned.iter().enumerate() {
                let id = s(g, "id");
                let checked = if input.groups.iter().any(|c| c == id) {
                    " checked"
                } else {
                    ""
                };
                let _ = write!(
                    body,
                    "<input type=\"checkbox\" id=\"group-{i}\" name=\"group\" value=\"{}\"{checked}><label for=\"group-{i}\">{}</label>",
                    attr(id),
                    esc(&name(g))
                );
            }
            body.push_str("</fieldset>");
        }
        None => body.push_str(&text_field(
            "groupIds",
            "Group ids an enrolled device joins (comma-separated)",
            &input.groups.join(", "),
            "",
        )),
    }
    let expires = if input.expires.is_empty() && message.is_none() {
        default_expiry()
    } else {
        input.expires.clone()
    };
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"expires\">Expires (UTC)</label><input type=\"datetime-local\" id=\"expires\" name=\"expires\" value=\"{}\"></div>\
         <div class=\"field\"><label for=\"uses\">Number of enrollments allowed (empty: no limit)</label><input type=\"number\" min=\"1\" id=\"uses\" name=\"uses\" value=\"{}\"></div>\
         <div class=\"actions\"><button type=\"submit\">Create secret</button></div></form>",
        attr(&expires),
        attr(&input.uses)
    );
    Ok(Reply::html(
        status,
        frame_page(signed, "Enrollment secrets", &body),
    ))
}

/// The cookie carrying a secret just created to the page that shows it once.
const CREATED_COOKIE: &str = "remediate_created";
/// What [`CREATED_COOKIE`] is sealed for.
const CREATED_PURPOSE: &str = "remediate-created-secret";
/// How long the browser keeps it if the redirect is not followed.
const CREATED_LIFETIME: i64 = 120;

/// Binds a created secret's cookie to the session that created it.
fn created_binding(api: &Api<'_>) -> String {
    session::hash(&format!("{CREATED_PURPOSE}\u{0}{}", api.signed().id))
}

/// The `Set-Cookie` carrying `created` (the API's answer: id, name, secret) to the next page,
/// or (`None`) removing it.
fn created_cookie(api: &Api<'_>, created: Option<&Json>) -> String {
    let secure = if api.secure() { "; Secure" } else { "" };
    match created {
        Some(created) => {
            let value = session::seal(
                api.signing_key(),
                CREATED_PURPOSE,
                &json!({
                    "session": created_binding(api),
                    "exp": session::unix_now() + CREATED_LIFETIME,
                    "id": s(created, "id"),
                    "displayName": s(created, "displayName"),
                    "secret": s(created, "secret"),
                }),
            );
            format!("{CREATED_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/secrets; Max-Age={CREATED_LIFETIME}{secure}")
        }
        None => format!(
            "{CREATED_COOKIE}=; HttpOnly; SameSite=Strict; Path=/secrets; Max-Age=0{secure}"
        ),
    }
}

/// The secret this session just created, from its cookie: intact, unexpired and of this
/// session, else `None`.
fn take_created(api: &Api<'_>) -> Option<Json> {
    let value = session::cookie_named(api.headers(), CREATED_COOKIE)?;
    let created = session::unseal(api.signing_key(), CREATED_PURPOSE, &value)?;
    let fresh = created["exp"]
        .as_i64()
        .is_some_and(|exp| exp > session::unix_now());
    (fresh && created["session"].as_str() == Some(created_binding(api).as_str())).then_some(created)
}

async fn create_secret(api: &Api<'_>, form: &Form) -> Result<Reply, ApiError> {
    let input = SecretInput::of(form);
    match api
        .call(Method::POST, SECRETS, "", Some(&input.body()))
        .await
    {
        // The answer carries the secret once. It is never stored: it goes to the browser in a
        // short-lived sealed cookie, and the list page it is redirected to shows it and
        // clears the cookie — so reloading that page neither shows it again nor creates a
        // second secret (post, redirect, get).
        Ok(created) => {
            Ok(Reply::redirect("/secrets").with("set-cookie", created_cookie(api, Some(&created))))
        }
        Err(e) => {
            let refused = form_error(e)?;
            secrets(api, None, &input, Some(refused)).await
        }
    }
}
