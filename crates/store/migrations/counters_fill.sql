-- Rebuild every counter from the rows (both dialects). Run by migration 0003 and by
-- `remediate recount`, on empty counter tables.
INSERT INTO "counters" ("tenant", "name", "shard", "n")
SELECT "tenant", 's/' || "scriptId" || '/' || "detectionState" || '/' || "remediationState", 0, COUNT(*)
FROM "device_run_states"
GROUP BY "tenant", "scriptId", "detectionState", "remediationState";

INSERT INTO "remediated_history" ("tenant", "scriptId", "device", "recorded")
SELECT "tenant", "scriptId", "device", MAX("recordedDateTime")
FROM (SELECT "tenant", "scriptId", COALESCE("managedDeviceId", "stateId") AS "device", "recordedDateTime"
      FROM "run_history" WHERE "remediationState" = 2) x
GROUP BY "tenant", "scriptId", "device";

INSERT INTO "counters" ("tenant", "name", "shard", "n")
SELECT "tenant", 'c/' || "scriptId", 0, COUNT(*) FROM "remediated_history" GROUP BY "tenant", "scriptId";

INSERT INTO "remediated_devices" ("tenant", "device", "n")
SELECT "tenant", "device", COUNT(*)
FROM (SELECT "tenant", COALESCE("managedDeviceId", "scriptId" || ':' || "id") AS "device"
      FROM "device_run_states" WHERE "remediationState" = 2) x
GROUP BY "tenant", "device";

INSERT INTO "counters" ("tenant", "name", "shard", "n")
SELECT "tenant", 'r', 0, COUNT(*) FROM "remediated_devices" GROUP BY "tenant";

INSERT INTO "counters" ("tenant", "name", "shard", "n")
SELECT "tenant", 'd', 0, COUNT(*) FROM "managed_devices" GROUP BY "tenant";
