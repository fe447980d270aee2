-- Rebuild the per-day history aggregate from run_history (both dialects). Run by migration 0010
-- and by `remediate recount`, on empty tables. These definitions are getRemediationHistory's
-- (docs/computed-views.md): a device (managedDeviceId, or stateId when unbound) counts once per
-- UTC day (of lastStateUpdateDateTime when > 0, else of recordedDateTime), classified by its
-- latest record of that day by id: 1 remediated (remediationState = 2), 2 no issue
-- (detectionState = 1 and remediationState <> 2), 3 detection failed (detectionState in (2, 3)
-- and remediationState <> 2), 0 none of these. The report function (postgres/0010) and
-- `counters::history_day_of` compute the same for each new record.
INSERT INTO "history_days" ("tenant", "scriptId", "device", "day", "id", "class", "recorded",
    "lastRecorded", "shard")
SELECT "tenant", "scriptId", "device", "day", "id", "class", "recorded", "lastRecorded", 0
FROM (
    SELECT "tenant", "scriptId", "device", "day", "id", "class", "recorded",
        MAX(COALESCE("recorded", 9223372036854775807))
            OVER (PARTITION BY "tenant", "scriptId", "device", "day") AS "lastRecorded",
        ROW_NUMBER() OVER (PARTITION BY "tenant", "scriptId", "device", "day" ORDER BY "id" DESC) AS "rn"
    FROM (
        SELECT "tenant", "scriptId", COALESCE("managedDeviceId", "stateId") AS "device",
            (CASE WHEN "lastStateUpdateDateTime" > 0 THEN "lastStateUpdateDateTime"
                  ELSE "recordedDateTime" END) / 864000000000 AS "day",
            "id", "recordedDateTime" AS "recorded",
            CASE WHEN "remediationState" = 2 THEN 1
                 WHEN "detectionState" = 1 AND "remediationState" <> 2 THEN 2
                 WHEN "detectionState" IN (2, 3) AND "remediationState" <> 2 THEN 3
                 ELSE 0 END AS "class"
        FROM "run_history"
    ) x
    WHERE "day" IS NOT NULL
) y
WHERE "rn" = 1;

INSERT INTO "history_day_counts" ("tenant", "scriptId", "day", "class", "shard", "n")
SELECT "tenant", "scriptId", "day", "class", 0, COUNT(*)
FROM "history_days"
GROUP BY "tenant", "scriptId", "day", "class";
