-- Failures (or any detection state) in a time range, newest first: the common report query
-- (docs/query-plans.md, "d1/d2").
CREATE INDEX "device_run_states_det_updated" ON "device_run_states"
    ("tenant", "scriptId", "detectionState", "lastStateUpdateDateTime", "id");
