-- The device status table at a million run states (docs/query-plans.md, "The device status table"):
-- sorting a script's run states by remediation state or by last sync walks an index instead of
-- sorting every run state of the script. Both columns are NOT NULL, so plain indexes serve
-- both directions on both databases.
CREATE INDEX "device_run_states_remediation" ON "device_run_states"
    ("tenant", "scriptId", "remediationState", "id");
CREATE INDEX "device_run_states_synced" ON "device_run_states"
    ("tenant", "scriptId", "lastSyncDateTime", "id");
-- Sorting by a device's user walks managed_devices in that order (as managed_devices_name does for
-- its name) and probes each device's run state (docs/query-plans.md, "The device status table").
CREATE INDEX "managed_devices_user" ON "managed_devices"
    ("tenant", "userPrincipalName_lc" NULLS FIRST, "userPrincipalName" NULLS FIRST, "id");
-- The ids of deleted devices, kept by triggers: run states stay bound to a deleted device, and the
-- device-driven plan finds them here (they sort with the run states without a device).
CREATE TABLE "deleted_devices" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY ("tenant", "id")
);
INSERT INTO "deleted_devices" ("tenant", "id")
SELECT DISTINCT t."tenant", t."managedDeviceId" FROM "device_run_states" t
WHERE t."managedDeviceId" IS NOT NULL AND NOT EXISTS
    (SELECT 1 FROM "managed_devices" d WHERE d."tenant" = t."tenant" AND d."id" = t."managedDeviceId");
CREATE FUNCTION remediate_device_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO "deleted_devices" ("tenant", "id") VALUES (OLD."tenant", OLD."id") ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE FUNCTION remediate_device_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM "deleted_devices" WHERE "tenant" = NEW."tenant" AND "id" = NEW."id";
    RETURN NULL;
END $$;
CREATE TRIGGER "managed_devices_deleted" AFTER DELETE ON "managed_devices"
    FOR EACH ROW EXECUTE FUNCTION remediate_device_deleted();
CREATE TRIGGER "managed_devices_created" AFTER INSERT ON "managed_devices"
    FOR EACH ROW EXECUTE FUNCTION remediate_device_created();
