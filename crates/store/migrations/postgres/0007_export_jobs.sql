-- Graph's export jobs (deviceManagement/reports/exportJobs, docs/exports.md): the job as Graph
-- shows it, and what its runner keeps beside it: the base URL the create reached (the download
-- link starts with it), the server process running it and when it last said it was alive (a job
-- whose runner fell silent is run again), why it failed, and how many rows it wrote.

CREATE TABLE "export_jobs" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "reportName" TEXT COLLATE "C",
    "reportName_lc" TEXT COLLATE "C",
    "filter" TEXT COLLATE "C",
    "select" TEXT COLLATE "C",
    "format" BIGINT,
    "snapshotId" TEXT COLLATE "C",
    "localizationType" BIGINT,
    "status" BIGINT,
    "url" TEXT COLLATE "C",
    "requestDateTime" BIGINT,
    "expirationDateTime" BIGINT,
    "origin" TEXT COLLATE "C",
    "runner" TEXT COLLATE "C",
    "heartbeat" BIGINT,
    "failureReason" TEXT COLLATE "C",
    "rowCount" BIGINT,
    PRIMARY KEY ("tenant", "id")
);
-- The runners' sweep: jobs not started, or in progress with a silent runner, across tenants.
CREATE INDEX "export_jobs_status" ON "export_jobs" ("status", "heartbeat");
