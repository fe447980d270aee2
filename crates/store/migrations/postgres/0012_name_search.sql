-- A rare device-name search (`contains(managedDevice/deviceName,'…')`) at a million devices
-- (docs/query-plans.md, "The device status table"): a GIN trigram index over the folded name
-- serves the generic translation's `LIKE '%…%' ESCAPE '\'` and finds the few devices whose name
-- contains the text; their run states are read through the unique (tenant, scriptId,
-- managedDeviceId) index. SQLite has an FTS5 trigram table instead (the schema parity test leaves
-- both out).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX "managed_devices_name_trigram" ON "managed_devices"
    USING gin ("deviceName_lc" gin_trgm_ops);
