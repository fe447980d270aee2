-- getRemediationHistory from a per-day aggregate kept on write (docs/computed-views.md, "How the
-- counters are kept"), so it reads O(days) rows instead of every history record of the script.
-- Filled from the rows by history_days_fill.sql (also run by `remediate recount`).
--
-- One row per script, device (managedDeviceId, or stateId when unbound) and UTC day (the day of
-- lastStateUpdateDateTime when > 0, else of recordedDateTime, in ticks / 864000000000) that has
-- history records: the latest of them by id ("id"), its class (0 none, 1 remediated, 2 no issue,
-- 3 detection failed), its recordedDateTime ("recorded"), the newest recordedDateTime of all of
-- them ("lastRecorded"; a record without one counts as never pruned) and the shard of
-- history_day_counts the row is counted in. Pruning reads "recorded" and "lastRecorded".
CREATE TABLE "history_days" (
    "tenant" TEXT NOT NULL,
    "scriptId" TEXT NOT NULL,
    "device" TEXT NOT NULL,
    "day" BIGINT NOT NULL,
    "id" TEXT NOT NULL,
    "class" BIGINT NOT NULL,
    "recorded" BIGINT,
    "lastRecorded" BIGINT NOT NULL,
    "shard" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "scriptId", "device", "day")
);
CREATE INDEX "history_days_recorded" ON "history_days" ("recorded");

-- The rows of history_days per script, day, class and shard. Each row of history_days is counted
-- in its own shard, so a count never goes below zero and a count of zero can be deleted.
-- Concurrent PostgreSQL transactions insert rows into different shards (as counters).
CREATE TABLE "history_day_counts" (
    "tenant" TEXT NOT NULL,
    "scriptId" TEXT NOT NULL,
    "day" BIGINT NOT NULL,
    "class" BIGINT NOT NULL,
    "shard" BIGINT NOT NULL,
    "n" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "scriptId", "day", "class", "shard")
);
