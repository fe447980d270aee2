//! [`Store`] for [`SqlStore`]: each method forwards to where its work runs — reads to
//! [`SqlStore::read`] (`crate::connect`) with a function of `crate::reads` or `crate::views`,
//! writes to [`SqlStore::write_command`] and maintenance to [`SqlStore::maintain`]
//! (`crate::writer`).

use async_trait::async_trait;
use remediate_domain::query::{ListQuery, Page, RemediationHistory};
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Instant, Record};

use crate::connect::SqlStore;
use crate::db::{self, Conn};
use crate::{counters, reads, views, EntityRef, Store, StoreError};

#[async_trait]
impl Store for SqlStore {
    async fn write(&self, tenant: &str, write: Write) -> Result<WriteOutcome, StoreError> {
        self.write_command(tenant, write).await
    }

    async fn get(&self, tenant: &str, key: &EntityRef) -> Result<Option<Record>, StoreError> {
        let (tenant, key) = (tenant.to_owned(), key.clone());
        self.read(move |c| {
            Box::pin(async move { reads::fetch_entity(c, &tenant, &key, false).await })
        })
        .await
    }

    async fn list(&self, tenant: &str, query: &ListQuery) -> Result<Page, StoreError> {
        let (tenant, query) = (tenant.to_owned(), query.clone());
        if crate::plans::reads_in_snapshot(&query) {
            // Its plan may take several statements that must see the same rows.
            return self
                .read_snapshot(move |c| {
                    Box::pin(async move { reads::list_page(c, &tenant, &query).await })
                })
                .await;
        }
        self.read(move |c| Box::pin(async move { reads::list_page(c, &tenant, &query).await }))
            .await
    }

    async fn run_summary(
        &self,
        tenant: &str,
        script_id: &str,
    ) -> Result<Option<Record>, StoreError> {
        let (tenant, script_id) = (tenant.to_owned(), script_id.to_owned());
        self.read(move |c| {
            Box::pin(async move { views::run_summary(c, &tenant, &script_id).await })
        })
        .await
    }

    async fn remediation_history(
        &self,
        tenant: &str,
        script_id: &str,
    ) -> Result<Option<RemediationHistory>, StoreError> {
        let (tenant, script_id) = (tenant.to_owned(), script_id.to_owned());
        self.read(move |c| {
            Box::pin(async move { views::remediation_history(c, &tenant, &script_id).await })
        })
        .await
    }

    async fn remediation_summary(&self, tenant: &str) -> Result<(i64, i64), StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| Box::pin(async move { views::remediation_summary(c, &tenant).await }))
            .await
    }

    async fn device_script_states(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<Vec<Record>>, StoreError> {
        let (tenant, device_id) = (tenant.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(async move { views::device_script_states(c, &tenant, &device_id).await })
        })
        .await
    }

    async fn pending_on_demand(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<Vec<(String, Instant)>>, StoreError> {
        let (tenant, device_id) = (tenant.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(async move { views::pending_on_demand(c, &tenant, &device_id).await })
        })
        .await
    }

    async fn global_scripts_state(&self, tenant: &str) -> Result<i64, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| Box::pin(async move { reads::global_scripts_state(c, &tenant).await }))
            .await
    }

    async fn prune_history(&self, cutoff: Instant) -> Result<u64, StoreError> {
        let postgres = self.backend_name() == "postgres";
        self.maintain(true, move |c| {
            Box::pin(async move {
                counters::history_pruned(c, cutoff.ticks()).await?;
                let deleted = c
                    .execute(
                        "DELETE FROM run_history WHERE \"recordedDateTime\" < $1",
                        &[db::int(cutoff.ticks())],
                    )
                    .await?;
                // The per-day aggregate follows what is left (after the delete).
                counters::history_days_pruned(c, postgres, cutoff.ticks()).await?;
                counters::prune_deleted_devices(c).await?;
                Ok(deleted)
            })
        })
        .await
    }

    async fn device_targeting(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<remediate_domain::directory::DeviceTargeting, StoreError> {
        let (tenant, device_id) = (tenant.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(
                async move { crate::directory::device_targeting(c, &tenant, &device_id).await },
            )
        })
        .await
    }

    async fn device_visibility(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<
        (
            Vec<(String, String)>,
            remediate_domain::directory::DeviceTargeting,
        ),
        StoreError,
    > {
        let (tenant, device_id) = (tenant.to_owned(), device_id.to_owned());
        let postgres = self.backend_name() == "postgres";
        self.read(move |c| {
            Box::pin(async move {
                crate::directory::device_visibility(c, postgres, &tenant, &device_id).await
            })
        })
        .await
    }

    async fn check_in_view(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<remediate_domain::agents::CheckInView>, StoreError> {
        let (tenant, device_id) = (tenant.to_owned(), device_id.to_owned());
        let postgres = self.backend_name() == "postgres";
        self.read(move |c| {
            Box::pin(
                async move { crate::agents::check_in_view(c, postgres, &tenant, &device_id).await },
            )
        })
        .await
    }

    async fn create_app(&self, app: &crate::RegisteredApp) -> Result<(), StoreError> {
        let (app, client_id) = (app.clone(), app.client_id.clone());
        let inserted = self
            .maintain(true, move |c| {
                Box::pin(async move { crate::apps::insert(c, &app).await })
            })
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "An application with the client id '{client_id}' is already registered in this tenant."
            )))
        }
    }

    async fn app(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<crate::RegisteredApp>, StoreError> {
        let (tenant, client_id) = (tenant.to_owned(), client_id.to_owned());
        self.read(move |c| Box::pin(async move { crate::apps::get(c, &tenant, &client_id).await }))
            .await
    }

    async fn apps(&self, tenant: &str) -> Result<Vec<crate::RegisteredApp>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| Box::pin(async move { crate::apps::list(c, &tenant).await }))
            .await
    }

    async fn revoke_app(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<crate::RegisteredApp>, StoreError> {
        let (tenant, client_id) = (tenant.to_owned(), client_id.to_owned());
        self.maintain(true, move |c| {
            Box::pin(
                async move { crate::apps::revoke(c, &tenant, &client_id, Instant::now()).await },
            )
        })
        .await
    }

    async fn secret_tenant(&self, secret_hash: &str) -> Result<Option<String>, StoreError> {
        let hash = secret_hash.to_owned();
        self.read(move |c| Box::pin(async move { crate::agents::secret_tenant(c, &hash).await }))
            .await
    }

    async fn credential_hash(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let (tenant, device_id) = (tenant.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(async move { crate::agents::credential_hash(c, &tenant, &device_id).await })
        })
        .await
    }

    async fn assignment_targets(&self, tenant: &str) -> Result<Vec<(String, String)>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| Box::pin(async move { reads::assignment_targets(c, &tenant).await }))
            .await
    }

    async fn recount(&self) -> Result<(), StoreError> {
        self.maintain(true, |c| Box::pin(counters::recount(c)))
            .await
    }

    async fn check_counters(&self) -> Result<Vec<String>, StoreError> {
        self.maintain(false, |c| Box::pin(counters::check(c))).await
    }

    async fn export_rows(
        &self,
        tenant: &str,
        filter: &remediate_domain::exports::ExportFilter,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<remediate_domain::exports::ExportRow>, StoreError> {
        let (tenant, filter) = (tenant.to_owned(), filter.clone());
        self.read(move |c| {
            Box::pin(async move {
                crate::exports::rows(c, &tenant, &filter, after.as_ref(), limit).await
            })
        })
        .await
    }

    async fn export_jobs_to_run(
        &self,
        stale_before: Instant,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.read(move |c| {
            Box::pin(async move { crate::exports::jobs_to_run(c, stale_before, limit).await })
        })
        .await
    }

    async fn export_job_state(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<remediate_domain::exports::JobState>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.read(move |c| {
            Box::pin(async move { crate::exports::job_state(c, &tenant, &id).await })
        })
        .await
    }

    async fn create_login_link(&self, link: &crate::LoginLink) -> Result<(), StoreError> {
        let link = link.clone();
        self.maintain(true, move |c| {
            Box::pin(async move { crate::sessions::insert_link(c, &link).await })
        })
        .await
    }

    async fn open_session(
        &self,
        token_hash: &str,
        session_hash: &str,
        clock: crate::SessionClock,
    ) -> Result<Option<crate::Session>, StoreError> {
        let (token_hash, session_hash) = (token_hash.to_owned(), session_hash.to_owned());
        self.maintain(true, move |c| {
            Box::pin(
                async move { crate::sessions::open(c, &token_hash, &session_hash, clock).await },
            )
        })
        .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<crate::Session>, StoreError> {
        let id_hash = id_hash.to_owned();
        self.read(move |c| Box::pin(async move { crate::sessions::get(c, &id_hash).await }))
            .await
    }

    async fn touch_session(&self, id_hash: &str, now: Instant) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.maintain(true, move |c| {
            Box::pin(async move { crate::sessions::touch(c, &id_hash, now).await })
        })
        .await
    }

    async fn end_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let id_hash = id_hash.to_owned();
        self.maintain(true, move |c| {
            Box::pin(async move { crate::sessions::delete(c, &id_hash).await })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c: &mut dyn Conn| {
            Box::pin(async move { c.query("SELECT 1", &[]).await.map(drop) })
        })
        .await
    }

    fn paging_secret(&self) -> &[u8] {
        &self.secret
    }
}
