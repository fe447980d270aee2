-- Failures (or any detection state) in a time range, newest first: the common report query
-- (docs/query-plans.md, "d1/d2").
CREATE INDEX "device_run_states_det_updated" ON "device_run_states"
    ("tenant", "scriptId", "detectionState", "lastStateUpdateDateTime", "id");

-- deviceName is nullable, so its ORDER BY asks for NULLS FIRST; an index in that order lets
-- PostgreSQL walk it instead of sorting every device (docs/query-plans.md, "h").
DROP INDEX "managed_devices_name";
CREATE INDEX "managed_devices_name" ON "managed_devices"
    ("tenant", "deviceName_lc" NULLS FIRST, "deviceName" NULLS FIRST, "id");
