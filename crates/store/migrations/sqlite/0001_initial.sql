-- Initial schema. Every table is partitioned by "tenant" (the token's tid claim).
-- Times are BIGINT ticks (100 ns since 0001-01-01T00:00:00Z), enums their declared member value,
-- booleans 0/1, collections and complex values JSON text. "<name>_lc" columns hold the Unicode
-- lower case of a string computed by the server, so case-insensitive filters behave the same on
-- both databases.

CREATE TABLE "meta" (
    "key" TEXT PRIMARY KEY,
    "value" TEXT NOT NULL
);

CREATE TABLE "device_health_scripts" (
    "tenant" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "publisher" TEXT,
    "publisher_lc" TEXT,
    "version" TEXT,
    "version_lc" TEXT,
    "displayName" TEXT,
    "displayName_lc" TEXT,
    "description" TEXT,
    "description_lc" TEXT,
    "detectionScriptContent" BLOB,
    "remediationScriptContent" BLOB,
    "createdDateTime" BIGINT,
    "lastModifiedDateTime" BIGINT,
    "runAsAccount" BIGINT,
    "enforceSignatureCheck" BIGINT,
    "runAs32Bit" BIGINT,
    "roleScopeTagIds" TEXT,
    "isGlobalScript" BIGINT,
    "highestAvailableVersion" TEXT,
    "highestAvailableVersion_lc" TEXT,
    "deviceHealthScriptType" BIGINT,
    "detectionScriptParameters" TEXT,
    "remediationScriptParameters" TEXT,
    PRIMARY KEY ("tenant", "id")
);

CREATE TABLE "managed_devices" (
    "tenant" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "userId" TEXT,
    "userId_lc" TEXT,
    "deviceName" TEXT,
    "deviceName_lc" TEXT,
    "managedDeviceName" TEXT,
    "managedDeviceName_lc" TEXT,
    "managedDeviceOwnerType" BIGINT,
    "ownerType" BIGINT,
    "enrolledDateTime" BIGINT,
    "lastSyncDateTime" BIGINT,
    "operatingSystem" TEXT,
    "operatingSystem_lc" TEXT,
    "complianceState" BIGINT,
    "managementAgent" BIGINT,
    "osVersion" TEXT,
    "osVersion_lc" TEXT,
    "azureADDeviceId" TEXT,
    "azureADDeviceId_lc" TEXT,
    "deviceEnrollmentType" BIGINT,
    "emailAddress" TEXT,
    "emailAddress_lc" TEXT,
    "model" TEXT,
    "model_lc" TEXT,
    "manufacturer" TEXT,
    "manufacturer_lc" TEXT,
    "serialNumber" TEXT,
    "serialNumber_lc" TEXT,
    "userPrincipalName" TEXT,
    "userPrincipalName_lc" TEXT,
    "userDisplayName" TEXT,
    "userDisplayName_lc" TEXT,
    "isEncrypted" BIGINT,
    "isSupervised" BIGINT,
    "totalStorageSpaceInBytes" BIGINT,
    "freeStorageSpaceInBytes" BIGINT,
    "physicalMemoryInBytes" BIGINT,
    "joinType" BIGINT,
    "roleScopeTagIds" TEXT,
    PRIMARY KEY ("tenant", "id")
);

CREATE INDEX "managed_devices_name" ON "managed_devices" ("tenant", "deviceName_lc", "deviceName", "id");

CREATE TABLE "device_run_states" (
    "tenant" TEXT NOT NULL,
    "scriptId" TEXT NOT NULL,
    "managedDeviceId" TEXT,
    "id" TEXT NOT NULL,
    "detectionState" BIGINT,
    "lastStateUpdateDateTime" BIGINT,
    "expectedStateUpdateDateTime" BIGINT,
    "lastSyncDateTime" BIGINT,
    "preRemediationDetectionScriptOutput" TEXT,
    "preRemediationDetectionScriptOutput_lc" TEXT,
    "preRemediationDetectionScriptError" TEXT,
    "preRemediationDetectionScriptError_lc" TEXT,
    "remediationScriptError" TEXT,
    "remediationScriptError_lc" TEXT,
    "postRemediationDetectionScriptOutput" TEXT,
    "postRemediationDetectionScriptOutput_lc" TEXT,
    "postRemediationDetectionScriptError" TEXT,
    "postRemediationDetectionScriptError_lc" TEXT,
    "remediationState" BIGINT,
    "assignmentFilterIds" TEXT,
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
    "tenant" TEXT NOT NULL,
    "scriptId" TEXT NOT NULL,
    "stateId" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "recordedDateTime" BIGINT,
    "managedDeviceId" TEXT,
    "managedDeviceId_lc" TEXT,
    "detectionState" BIGINT,
    "remediationState" BIGINT,
    "lastStateUpdateDateTime" BIGINT,
    "preRemediationDetectionScriptOutput" TEXT,
    "preRemediationDetectionScriptOutput_lc" TEXT,
    "preRemediationDetectionScriptError" TEXT,
    "preRemediationDetectionScriptError_lc" TEXT,
    "remediationScriptError" TEXT,
    "remediationScriptError_lc" TEXT,
    "postRemediationDetectionScriptOutput" TEXT,
    "postRemediationDetectionScriptOutput_lc" TEXT,
    "postRemediationDetectionScriptError" TEXT,
    "postRemediationDetectionScriptError_lc" TEXT,
    PRIMARY KEY ("tenant", "scriptId", "stateId", "id")
);
CREATE INDEX "run_history_script" ON "run_history" ("tenant", "scriptId", "recordedDateTime");

CREATE TABLE "device_health_script_assignments" (
    "tenant" TEXT NOT NULL,
    "scriptId" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "target" TEXT,
    "runRemediationScript" BIGINT,
    "runSchedule" TEXT,
    PRIMARY KEY ("tenant", "scriptId", "id")
);

-- On-demand runs queued by initiateOnDemandProactiveRemediation, cleared when the device next
-- reports that script.
CREATE TABLE "on_demand_requests" (
    "tenant" TEXT NOT NULL,
    "managedDeviceId" TEXT NOT NULL,
    "scriptId" TEXT NOT NULL,
    "requestedDateTime" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "managedDeviceId", "scriptId")
);

-- Per-tenant settings (the global-scripts state of enableGlobalScripts / areGlobalScriptsAvailable).
CREATE TABLE "tenant_settings" (
    "tenant" TEXT PRIMARY KEY,
    "globalScriptsState" BIGINT NOT NULL
);
