-- Initial schema. Every table is partitioned by "tenant" (the token's tid claim).
-- Times are BIGINT ticks (100 ns since 0001-01-01T00:00:00Z), enums their declared member value,
-- booleans 0/1, collections and complex values JSON text. "<name>_lc" columns hold the Unicode
-- lower case of a string computed by the server, so case-insensitive filters behave the same on
-- both databases.
-- PostgreSQL: every TEXT column uses the "C" collation so comparisons and ordering are by code point,
-- exactly as SQLite's BINARY collation orders UTF-8.

CREATE TABLE "meta" (
    "key" TEXT COLLATE "C" PRIMARY KEY,
    "value" TEXT COLLATE "C" NOT NULL
);

CREATE TABLE "device_health_scripts" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "publisher" TEXT COLLATE "C",
    "publisher_lc" TEXT COLLATE "C",
    "version" TEXT COLLATE "C",
    "version_lc" TEXT COLLATE "C",
    "displayName" TEXT COLLATE "C",
    "displayName_lc" TEXT COLLATE "C",
    "description" TEXT COLLATE "C",
    "description_lc" TEXT COLLATE "C",
    "detectionScriptContent" BYTEA,
    "remediationScriptContent" BYTEA,
    "createdDateTime" BIGINT,
    "lastModifiedDateTime" BIGINT,
    "runAsAccount" BIGINT,
    "enforceSignatureCheck" BIGINT,
    "runAs32Bit" BIGINT,
    "roleScopeTagIds" TEXT COLLATE "C",
    "isGlobalScript" BIGINT,
    "highestAvailableVersion" TEXT COLLATE "C",
    "highestAvailableVersion_lc" TEXT COLLATE "C",
    "deviceHealthScriptType" BIGINT,
    "detectionScriptParameters" TEXT COLLATE "C",
    "remediationScriptParameters" TEXT COLLATE "C",
    PRIMARY KEY ("tenant", "id")
);

CREATE TABLE "managed_devices" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "userId" TEXT COLLATE "C",
    "userId_lc" TEXT COLLATE "C",
    "deviceName" TEXT COLLATE "C",
    "deviceName_lc" TEXT COLLATE "C",
    "managedDeviceName" TEXT COLLATE "C",
    "managedDeviceName_lc" TEXT COLLATE "C",
    "managedDeviceOwnerType" BIGINT,
    "ownerType" BIGINT,
    "enrolledDateTime" BIGINT,
    "lastSyncDateTime" BIGINT,
    "operatingSystem" TEXT COLLATE "C",
    "operatingSystem_lc" TEXT COLLATE "C",
    "complianceState" BIGINT,
    "managementAgent" BIGINT,
    "osVersion" TEXT COLLATE "C",
    "osVersion_lc" TEXT COLLATE "C",
    "azureADDeviceId" TEXT COLLATE "C",
    "azureADDeviceId_lc" TEXT COLLATE "C",
    "deviceEnrollmentType" BIGINT,
    "emailAddress" TEXT COLLATE "C",
    "emailAddress_lc" TEXT COLLATE "C",
    "model" TEXT COLLATE "C",
    "model_lc" TEXT COLLATE "C",
    "manufacturer" TEXT COLLATE "C",
    "manufacturer_lc" TEXT COLLATE "C",
    "serialNumber" TEXT COLLATE "C",
    "serialNumber_lc" TEXT COLLATE "C",
    "userPrincipalName" TEXT COLLATE "C",
    "userPrincipalName_lc" TEXT COLLATE "C",
    "userDisplayName" TEXT COLLATE "C",
    "userDisplayName_lc" TEXT COLLATE "C",
    "isEncrypted" BIGINT,
    "isSupervised" BIGINT,
    "totalStorageSpaceInBytes" BIGINT,
    "freeStorageSpaceInBytes" BIGINT,
    "physicalMemoryInBytes" BIGINT,
    "joinType" BIGINT,
    "roleScopeTagIds" TEXT COLLATE "C",
    PRIMARY KEY ("tenant", "id")
);

CREATE INDEX "managed_devices_name" ON "managed_devices" ("tenant", "deviceName_lc", "deviceName", "id");

CREATE TABLE "device_run_states" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "scriptId" TEXT COLLATE "C" NOT NULL,
    "managedDeviceId" TEXT COLLATE "C",
    "id" TEXT COLLATE "C" NOT NULL,
    "detectionState" BIGINT,
    "lastStateUpdateDateTime" BIGINT,
    "expectedStateUpdateDateTime" BIGINT,
    "lastSyncDateTime" BIGINT,
    "preRemediationDetectionScriptOutput" TEXT COLLATE "C",
    "preRemediationDetectionScriptOutput_lc" TEXT COLLATE "C",
    "preRemediationDetectionScriptError" TEXT COLLATE "C",
    "preRemediationDetectionScriptError_lc" TEXT COLLATE "C",
    "remediationScriptError" TEXT COLLATE "C",
    "remediationScriptError_lc" TEXT COLLATE "C",
    "postRemediationDetectionScriptOutput" TEXT COLLATE "C",
    "postRemediationDetectionScriptOutput_lc" TEXT COLLATE "C",
    "postRemediationDetectionScriptError" TEXT COLLATE "C",
    "postRemediationDetectionScriptError_lc" TEXT COLLATE "C",
    "remediationState" BIGINT,
    "assignmentFilterIds" TEXT COLLATE "C",
    PRIMARY KEY ("tenant", "scriptId", "id")
);

CREATE UNIQUE INDEX "device_run_states_device" ON "device_run_states" ("tenant", "scriptId", "managedDeviceId");
CREATE INDEX "device_run_states_by_device" ON "device_run_states" ("tenant", "managedDeviceId");
CREATE INDEX "device_run_states_detection" ON "device_run_states" ("tenant", "scriptId", "detectionState", "id");
CREATE INDEX "device_run_states_updated" ON "device_run_states" ("tenant", "scriptId", "lastStateUpdateDateTime", "id");

-- Run history (SPEC §3.2): one immutable record per change of a run state's detection state,
-- remediation state or lastStateUpdateDateTime, appended in the same transaction as the change.
-- Ids are the record time in ticks (20 digits) and a random suffix, so id order is time order.
CREATE TABLE "run_history" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "scriptId" TEXT COLLATE "C" NOT NULL,
    "stateId" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "recordedDateTime" BIGINT,
    "managedDeviceId" TEXT COLLATE "C",
    "managedDeviceId_lc" TEXT COLLATE "C",
    "detectionState" BIGINT,
    "remediationState" BIGINT,
    "lastStateUpdateDateTime" BIGINT,
    "preRemediationDetectionScriptOutput" TEXT COLLATE "C",
    "preRemediationDetectionScriptOutput_lc" TEXT COLLATE "C",
    "preRemediationDetectionScriptError" TEXT COLLATE "C",
    "preRemediationDetectionScriptError_lc" TEXT COLLATE "C",
    "remediationScriptError" TEXT COLLATE "C",
    "remediationScriptError_lc" TEXT COLLATE "C",
    "postRemediationDetectionScriptOutput" TEXT COLLATE "C",
    "postRemediationDetectionScriptOutput_lc" TEXT COLLATE "C",
    "postRemediationDetectionScriptError" TEXT COLLATE "C",
    "postRemediationDetectionScriptError_lc" TEXT COLLATE "C",
    PRIMARY KEY ("tenant", "scriptId", "stateId", "id")
);
CREATE INDEX "run_history_script" ON "run_history" ("tenant", "scriptId", "recordedDateTime");

CREATE TABLE "device_health_script_assignments" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "scriptId" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "target" TEXT COLLATE "C",
    "runRemediationScript" BIGINT,
    "runSchedule" TEXT COLLATE "C",
    PRIMARY KEY ("tenant", "scriptId", "id")
);

-- On-demand runs queued by initiateOnDemandProactiveRemediation, cleared when the device next
-- reports that script.
CREATE TABLE "on_demand_requests" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "managedDeviceId" TEXT COLLATE "C" NOT NULL,
    "scriptId" TEXT COLLATE "C" NOT NULL,
    "requestedDateTime" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "managedDeviceId", "scriptId")
);

-- Per-tenant settings (the global-scripts state of enableGlobalScripts / areGlobalScriptsAvailable).
CREATE TABLE "tenant_settings" (
    "tenant" TEXT COLLATE "C" PRIMARY KEY,
    "globalScriptsState" BIGINT NOT NULL
);
