//! Device agents' tokens (`remediate token --device <id>`, SPEC §6), authorized from the
//! collection declarations (`Collection::device_reads` / `device_writes`): such a caller may read
//! only the scripts assigned to its device (and their assignments), read and write only its own
//! run states (under an assigned script) and its own device record, and read its own pending
//! on-demand runs. Anything of another device is answered as missing (404); anything else is
//! 403. The result is a [`Narrowing`] the one dispatcher applies: a filter on lists, the device
//! a write must bind, a registration under the token's own id.

use remediate_domain::collections::{Collection, DeviceAccess, Parent};
use remediate_domain::directory;
use remediate_domain::model::{EntityType, NavId, MANAGED_DEVICE};
use remediate_domain::query::{Column, Filter};
use remediate_domain::write::Write;
use remediate_domain::Value;
use remediate_store::EntityRef;

use crate::auth::forbidden;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::route::{Route, Verb};

/// What a device token's request is narrowed to (empty for every other caller).
#[derive(Debug, Default)]
pub(crate) struct Narrowing {
    /// Rows of a list the device may see.
    pub filter: Option<Filter>,
    /// A write must bind this device (its own) and nothing else.
    pub bind_self: Option<String>,
    /// A create registers the device record under this id.
    pub register: Option<String>,
}

const NOT_ALLOWED: &str = "A device token may only read the scripts assigned to its device and write that device's own run states and device record.";

impl Narrowing {
    /// A bound `managedDevice` must be the token's own device; a create must bind it.
    pub(crate) fn check_bind(&self, bound: Option<&str>, create: bool) -> Result<(), ApiError> {
        let Some(own) = &self.bind_self else {
            return Ok(());
        };
        match bound {
            Some(device) if device == own => Ok(()),
            Some(_) => Err(forbidden(
                "A device token may only report and bind run states of its own device.",
            )),
            None if create => Err(ApiError::bad_request(
                "A device must bind its run state to itself with 'managedDevice@odata.bind'.",
            )),
            None => Ok(()),
        }
    }

    /// A device's registration: the record gets the token's device id (409 when it exists).
    pub(crate) async fn register(&self, ctx: &Ctx<'_>, write: Write) -> Result<Write, ApiError> {
        let (device, mut record) = match (&self.register, write) {
            (Some(device), Write::CreateDevice { record }) => (device, record),
            (_, other) => return Ok(other),
        };
        record.set("id", Value::Str(device.clone()));
        let key = EntityRef::Device(device.clone());
        if ctx
            .state
            .store
            .get(&ctx.principal.tenant, &key)
            .await?
            .is_some()
        {
            return Err(ApiError::new(
                remediate_wire::ErrorKind::Conflict,
                format!(
                    "The managedDevice '{device}' is already registered; update it with PATCH."
                ),
            ));
        }
        Ok(Write::CreateDevice { record })
    }
}

/// Authorize a device token's request and say how it is narrowed.
pub(crate) async fn authorize(
    ctx: &Ctx<'_>,
    route: &Route,
    verb: Verb,
    device: &str,
) -> Result<Narrowing, ApiError> {
    // The run summary aggregates every device's states: not for a device's eyes, expanded or not.
    let expands_summary = ctx.options.expand.iter().flatten().any(|item| {
        let nav = item.path.join("/");
        route_entity(route)
            .and_then(|e| e.navigation(&nav))
            .is_some_and(|n| n.id == NavId::RunSummary)
    });
    if expands_summary {
        return Err(forbidden(
            "A device token may not read run summaries (including through $expand=runSummary).",
        ));
    }
    let rules = Rules { ctx, device };
    match (route, verb) {
        (Route::Batch, _) => Ok(Narrowing::default()),
        (Route::Collection { of, parents }, Verb::Get) => {
            rules.list(of, parents, of.device_reads).await
        }
        (Route::Collection { of, parents }, Verb::Post) => {
            rules.create(of, parents, of.device_writes).await
        }
        (Route::Item { of, keys }, Verb::Get) => {
            rules.item(of, keys, of.device_reads).await?;
            Ok(Narrowing::default())
        }
        (Route::Item { of, keys }, Verb::Patch) => {
            rules.item(of, keys, of.device_writes).await?;
            Ok(Narrowing {
                bind_self: Some(device.to_owned()),
                ..Narrowing::default()
            })
        }
        (Route::PendingOnDemand { device_id } | Route::AgentCheckIn { device_id }, _) => {
            rules.own_device(device_id)?;
            Ok(Narrowing::default())
        }
        // Devices never delete, count, follow computed navigations or call operations.
        (
            Route::Collection { .. } | Route::Item { .. },
            Verb::Patch | Verb::Delete | Verb::Post,
        )
        | (
            Route::Count { .. }
            | Route::Navigation { .. }
            | Route::Operation(_)
            | Route::Ref { .. },
            _,
        )
        | (Route::Metadata, _) => Err(forbidden(NOT_ALLOWED)),
    }
}

/// The entity a route reads, for `$expand`.
fn route_entity(route: &Route) -> Option<&'static EntityType> {
    match route {
        Route::Collection { of, .. } | Route::Item { of, .. } => Some(of.entity),
        Route::Count { .. }
        | Route::Navigation { .. }
        | Route::Operation(_)
        | Route::PendingOnDemand { .. }
        | Route::AgentCheckIn { .. }
        | Route::Ref { .. }
        | Route::Batch
        | Route::Metadata => None,
    }
}

struct Rules<'a, 'c> {
    ctx: &'a Ctx<'c>,
    device: &'a str,
}

impl Rules<'_, '_> {
    /// Scripts assigned to the device (targets and exclusions as the server evaluates them).
    async fn visible(&self) -> Result<Vec<String>, ApiError> {
        let tenant = &self.ctx.principal.tenant;
        let store = &self.ctx.state.store;
        let (targets, mut targeting) = store.device_visibility(tenant, self.device).await?;
        // A token's `groups` claim adds memberships, as Entra's group claims would.
        targeting
            .groups
            .extend(self.ctx.principal.groups.iter().cloned());
        Ok(directory::visible_scripts(&targets, &targeting))
    }

    /// 404, as for a missing script, unless the script is assigned to the device.
    async fn require_visible(&self, script_id: &str) -> Result<(), ApiError> {
        if self.visible().await?.iter().any(|s| s == script_id) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "The deviceHealthScript '{script_id}' does not exist."
            )))
        }
    }

    /// 404 unless the run state exists and is bound to the device.
    async fn own_state(&self, keys: &[String]) -> Result<(), ApiError> {
        let (script_id, id) = (keys[0].clone(), keys[1].clone());
        let key = EntityRef::RunState {
            script_id: script_id.clone(),
            id: id.clone(),
        };
        let state = self
            .ctx
            .state
            .store
            .get(&self.ctx.principal.tenant, &key)
            .await?;
        match state {
            Some(s) if s.device_id.as_deref() == Some(self.device) => Ok(()),
            _ => Err(ApiError::not_found(format!(
                "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
            ))),
        }
    }

    fn own_device(&self, id: &str) -> Result<(), ApiError> {
        if id == self.device {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "The managedDevice '{id}' does not exist."
            )))
        }
    }

    /// The script a collection or item lies in (its outermost key), if it lies in one.
    fn script_of(of: &Collection, keys: &[String]) -> Option<String> {
        match of.parent {
            Parent::Root(_) => None,
            Parent::Item(_) => keys.first().cloned(),
        }
    }

    /// Rows whose id (of `entity`, or of the joined device) is one of `ids`.
    fn id_filter(entity: &'static EntityType, via_device: bool, ids: Vec<String>) -> Filter {
        Filter::In {
            column: Column {
                entity: if via_device { &MANAGED_DEVICE } else { entity },
                index: 0,
                via_device,
            },
            values: ids.into_iter().map(Value::Str).collect(),
        }
    }

    async fn list(
        &self,
        of: &'static Collection,
        parents: &[String],
        access: DeviceAccess,
    ) -> Result<Narrowing, ApiError> {
        let filter = match access {
            DeviceAccess::None => return Err(forbidden(NOT_ALLOWED)),
            DeviceAccess::AssignedScripts => match Self::script_of(of, parents) {
                Some(script) => {
                    self.require_visible(&script).await?;
                    None
                }
                None => Some(Self::id_filter(of.entity, false, self.visible().await?)),
            },
            DeviceAccess::OwnRunStates => {
                let script = Self::script_of(of, parents).unwrap_or_default();
                self.require_visible(&script).await?;
                if parents.len() >= 2 {
                    // Below a run state (its history): that state must be the device's own.
                    self.own_state(parents).await?;
                    None
                } else {
                    Some(Self::id_filter(
                        of.entity,
                        true,
                        vec![self.device.to_owned()],
                    ))
                }
            }
            DeviceAccess::OwnDevice => Some(Self::id_filter(
                of.entity,
                false,
                vec![self.device.to_owned()],
            )),
        };
        Ok(Narrowing {
            filter,
            ..Narrowing::default()
        })
    }

    async fn create(
        &self,
        of: &Collection,
        parents: &[String],
        access: DeviceAccess,
    ) -> Result<Narrowing, ApiError> {
        match access {
            DeviceAccess::None | DeviceAccess::AssignedScripts => Err(forbidden(NOT_ALLOWED)),
            DeviceAccess::OwnRunStates => {
                let script = Self::script_of(of, parents).unwrap_or_default();
                self.require_visible(&script).await?;
                Ok(Narrowing {
                    bind_self: Some(self.device.to_owned()),
                    ..Narrowing::default()
                })
            }
            DeviceAccess::OwnDevice => Ok(Narrowing {
                register: Some(self.device.to_owned()),
                ..Narrowing::default()
            }),
        }
    }

    async fn item(
        &self,
        of: &Collection,
        keys: &[String],
        access: DeviceAccess,
    ) -> Result<(), ApiError> {
        match access {
            DeviceAccess::None => Err(forbidden(NOT_ALLOWED)),
            DeviceAccess::AssignedScripts => {
                let script = keys.first().cloned().unwrap_or_default();
                self.require_visible(&script).await
            }
            DeviceAccess::OwnRunStates => {
                let script = Self::script_of(of, keys).unwrap_or_default();
                self.require_visible(&script).await?;
                self.own_state(keys).await
            }
            DeviceAccess::OwnDevice => self.own_device(keys.first().map_or("", String::as_str)),
        }
    }
}
