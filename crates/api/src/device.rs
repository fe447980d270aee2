//! Device agents' tokens (`remediate token --device <id>`, SPEC §6): such a caller may read only the
//! scripts assigned to its device (and their assignments), write only its own run states and its
//! own device record, and read its own pending on-demand runs. Anything of another device is
//! answered as missing (404); anything else is 403.

use http::Method;
use remediate_domain::model::{
    DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT, DEVICE_RUN_STATE, MANAGED_DEVICE,
};
use remediate_domain::query::{Column, Filter, Scope};
use remediate_domain::write::Write;
use remediate_domain::{ops, Value};
use remediate_store::EntityRef;

use crate::auth::forbidden;
use crate::error::ApiError;
use crate::handlers::{assignments_context, bound_device, enc, odata_key, run_states_context, Ctx};
use crate::respond::ApiResponse;
use crate::route::Route;

fn id_column(entity: &'static remediate_domain::model::EntityType, via_device: bool) -> Column {
    Column {
        entity,
        index: 0,
        via_device,
    }
}

fn id_filter(column: Column, ids: &[String]) -> Filter {
    Filter::In {
        column,
        values: ids.iter().cloned().map(Value::Str).collect(),
    }
}

/// Handle a request made with a device token.
pub(crate) async fn dispatch(
    ctx: &Ctx<'_>,
    route: Route,
    device: &str,
) -> Result<ApiResponse, ApiError> {
    let tenant = &ctx.principal.tenant;
    let store = &ctx.state.store;
    let visible = || async {
        let targets = store.assignment_targets(tenant).await?;
        Ok::<_, ApiError>(ops::visible_scripts(
            &targets,
            device,
            &ctx.principal.groups,
        ))
    };
    let require_visible = |script_id: String| async move {
        if visible().await?.contains(&script_id) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "The deviceHealthScript '{script_id}' does not exist."
            )))
        }
    };
    let own_state = |script_id: String, id: String| async move {
        let state = store
            .get(
                tenant,
                &EntityRef::RunState {
                    script_id: script_id.clone(),
                    id: id.clone(),
                },
            )
            .await?;
        match state {
            Some(s) if s.device_id.as_deref() == Some(device) => Ok(()),
            _ => Err(ApiError::not_found(format!(
                "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
            ))),
        }
    };
    let own_device = |id: &str| {
        if id == device {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "The managedDevice '{id}' does not exist."
            )))
        }
    };
    // The run summary aggregates every device's states: not for a device's eyes, expanded or not.
    if ctx
        .options
        .expand
        .as_ref()
        .is_some_and(|items| items.iter().any(|i| i.path.join("/") == "runSummary"))
    {
        return Err(forbidden(
            "A device token may not read run summaries (including through $expand=runSummary).",
        ));
    }
    match (route, &ctx.req.method) {
        (Route::Scripts, &Method::GET) => {
            let ids = visible().await?;
            let filter = id_filter(id_column(&DEVICE_HEALTH_SCRIPT, false), &ids);
            ctx.list_with(Scope::Scripts, "deviceManagement/deviceHealthScripts".into(), Some(filter)).await
        }
        (Route::Script(id), &Method::GET) => {
            require_visible(id.clone()).await?;
            ctx.item(&DEVICE_HEALTH_SCRIPT, EntityRef::Script(id), "deviceManagement/deviceHealthScripts/$entity".into()).await
        }
        (Route::Assignments { script_id }, &Method::GET) => {
            require_visible(script_id.clone()).await?;
            let context = assignments_context(&script_id);
            ctx.list_with(Scope::Assignments { script_id }, context, None).await
        }
        (Route::Assignment { script_id, id }, &Method::GET) => {
            require_visible(script_id.clone()).await?;
            let context = format!("{}/$entity", assignments_context(&script_id));
            ctx.item(&DEVICE_HEALTH_SCRIPT_ASSIGNMENT, EntityRef::Assignment { script_id, id }, context).await
        }
        (Route::RunStates { script_id }, &Method::GET) => {
            require_visible(script_id.clone()).await?;
            let filter = id_filter(id_column(&MANAGED_DEVICE, true), &[device.to_owned()]);
            let context = run_states_context(&script_id);
            ctx.list_with(Scope::RunStates { script_id }, context, Some(filter)).await
        }
        (Route::RunStates { script_id }, &Method::POST) => {
            require_visible(script_id.clone()).await?;
            ctx.no_options("a create")?;
            let body = ctx.body(&DEVICE_RUN_STATE)?;
            match bound_device(&body)? {
                Some(bound) if bound == device => {}
                Some(_) => return Err(forbidden("A device token may only report run states of its own device.")),
                None => {
                    return Err(ApiError::bad_request(
                        "A device must bind its run state to itself with 'managedDevice@odata.bind'.",
                    ))
                }
            }
            let write = ops::create_run_state(script_id.clone(), body.fields, Some(device.to_owned()));
            ctx.created(write, run_states_context(&script_id), |r| format!("deviceManagement/deviceHealthScripts/{}/deviceRunStates/{}", enc(&script_id), enc(r.id())))
                .await
        }
        (Route::RunState { script_id, id }, &Method::GET) => {
            require_visible(script_id.clone()).await?;
            own_state(script_id.clone(), id.clone()).await?;
            let context = format!("{}/$entity", run_states_context(&script_id));
            ctx.item(&DEVICE_RUN_STATE, EntityRef::RunState { script_id, id }, context).await
        }
        (Route::RunState { script_id, id }, &Method::PATCH) => {
            require_visible(script_id.clone()).await?;
            own_state(script_id.clone(), id.clone()).await?;
            ctx.no_options("an update")?;
            let body = ctx.body(&DEVICE_RUN_STATE)?;
            let bind_device = bound_device(&body)?;
            if bind_device.as_deref().is_some_and(|d| d != device) {
                return Err(forbidden("A device token may only bind run states to its own device."));
            }
            ctx.write(Write::UpdateRunState { script_id, id, changes: body.fields, bind_device }).await
        }
        (Route::History { script_id, state_id }, &Method::GET) => {
            require_visible(script_id.clone()).await?;
            own_state(script_id.clone(), state_id.clone()).await?;
            let context = format!(
                "deviceManagement/deviceHealthScripts('{}')/deviceRunStates('{}')/history",
                odata_key(&script_id),
                odata_key(&state_id)
            );
            ctx.list_with(Scope::History { script_id, state_id }, context, None).await
        }
        (Route::Devices, &Method::GET) => {
            let filter = id_filter(id_column(&MANAGED_DEVICE, false), &[device.to_owned()]);
            ctx.list_with(Scope::Devices, "deviceManagement/managedDevices".into(), Some(filter)).await
        }
        (Route::Devices, &Method::POST) => {
            // Registration: the record is created with the id the token names.
            ctx.no_options("a create")?;
            let body = ctx.body(&MANAGED_DEVICE)?;
            let Write::CreateDevice { mut record } = ops::create_device(body.fields) else {
                return Err(ApiError::bad_request("unexpected device create"));
            };
            record.set("id", Value::Str(device.to_owned()));
            if store.get(tenant, &EntityRef::Device(device.to_owned())).await?.is_some() {
                return Err(ApiError::new(
                    remediate_wire::ErrorKind::Conflict,
                    format!("The managedDevice '{device}' is already registered; update it with PATCH."),
                ));
            }
            ctx.created(Write::CreateDevice { record }, "deviceManagement/managedDevices".into(), |r| format!("deviceManagement/managedDevices/{}", enc(r.id()))).await
        }
        (Route::Device(id), &Method::GET) => {
            own_device(&id)?;
            ctx.item(&MANAGED_DEVICE, EntityRef::Device(id), "deviceManagement/managedDevices/$entity".into()).await
        }
        (Route::Device(id), &Method::PATCH) => {
            own_device(&id)?;
            ctx.no_options("an update")?;
            let body = ctx.body(&MANAGED_DEVICE)?;
            ctx.write(Write::UpdateDevice { id, changes: body.fields }).await
        }
        (Route::PendingOnDemand { device_id }, &Method::GET) => {
            own_device(&device_id)?;
            crate::handlers::pending_on_demand(ctx, &device_id).await
        }
        (Route::Batch, _) => crate::batch::run(ctx.state, ctx.req).await,
        _ => Err(forbidden(
            "A device token may only read the scripts assigned to its device and write that device's own run states and device record.",
        )),
    }
}
