-- Counters kept in the transaction of every change they count, so runSummary,
-- getRemediationSummary and unfiltered counts read a handful of rows instead of every run state
-- (docs/computed-views.md, "How the counters are kept"). Filled from the rows by counters_fill.sql.
--
-- "name": 's/<scriptId>/<detectionState>/<remediationState>' run states of a script in those states;
--         'c/<scriptId>' devices with a remediated history record of the script (rows of
--         remediated_history); 'r' devices with a remediated current run state (rows of
--         remediated_devices); 'd' managed devices. A counter is the sum of its shards: concurrent
--         PostgreSQL transactions add to different shards instead of queueing on one row.
CREATE TABLE "counters" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "name" TEXT COLLATE "C" NOT NULL,
    "shard" BIGINT NOT NULL,
    "n" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "name", "shard")
);

-- One row per device (or unbound run state) with a history record whose remediationState is
-- success, with the newest such record's time: history pruning drops exactly the rows whose
-- newest record it deletes.
CREATE TABLE "remediated_history" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "scriptId" TEXT COLLATE "C" NOT NULL,
    "device" TEXT COLLATE "C" NOT NULL,
    "recorded" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "scriptId", "device")
);
CREATE INDEX "remediated_history_recorded" ON "remediated_history" ("recorded");

-- Devices (or unbound run states) whose current run state in some script is remediated, with
-- the number of such run states.
CREATE TABLE "remediated_devices" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "device" TEXT COLLATE "C" NOT NULL,
    "n" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "device")
);
