-- Graph's export jobs (deviceManagement/reports/exportJobs, docs/exports.md): the job as Graph
-- shows it, and what its runner keeps beside it: the base URL the create reached (the download
-- link starts with it), the server process running it and when it last said it was alive (a job
-- whose runner fell silent is run again), why it failed, and how many rows it wrote.

CREATE TABLE "export_jobs" (
    "tenant" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "reportName" TEXT,
    "reportName_lc" TEXT,
    "filter" TEXT,
    "select" TEXT,
    "format" BIGINT,
    "snapshotId" TEXT,
    "localizationType" BIGINT,
    "status" BIGINT,
    "url" TEXT,
    "requestDateTime" BIGINT,
    "expirationDateTime" BIGINT,
    "origin" TEXT,
    "runner" TEXT,
    "heartbeat" BIGINT,
    "failureReason" TEXT,
    "rowCount" BIGINT,
    PRIMARY KEY ("tenant", "id")
);
-- The runners' sweep: jobs not started, or in progress with a silent runner, across tenants.
CREATE INDEX "export_jobs_status" ON "export_jobs" ("status", "heartbeat");
