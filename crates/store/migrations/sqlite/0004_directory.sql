-- The neighbours of deviceHealthScripts that Intune tooling touches: role scope tags, assignment
-- filters, Entra groups and their members; Entra devices as a read-only view of managed devices.

CREATE TABLE "role_scope_tags" (
    "tenant" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "displayName" TEXT,
    "displayName_lc" TEXT,
    "description" TEXT,
    "description_lc" TEXT,
    "isBuiltIn" BIGINT,
    PRIMARY KEY ("tenant", "id")
);
-- The built-in Default tag, shared by every tenant (stored under the empty tenant).
INSERT INTO "role_scope_tags" VALUES ('', '0', 'Default', 'default', 'Default scope tag', 'default scope tag', 1);

CREATE TABLE "assignment_filters" (
    "tenant" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "createdDateTime" BIGINT,
    "lastModifiedDateTime" BIGINT,
    "displayName" TEXT,
    "displayName_lc" TEXT,
    "description" TEXT,
    "description_lc" TEXT,
    "platform" BIGINT,
    "rule" TEXT,
    "roleScopeTags" TEXT,
    "assignmentFilterManagementType" BIGINT,
    PRIMARY KEY ("tenant", "id")
);

CREATE TABLE "groups" (
    "tenant" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "displayName" TEXT,
    "displayName_lc" TEXT,
    "description" TEXT,
    "description_lc" TEXT,
    "mailEnabled" BIGINT,
    "mailNickname" TEXT,
    "mailNickname_lc" TEXT,
    "securityEnabled" BIGINT,
    "groupTypes" TEXT,
    "membershipRule" TEXT,
    "membershipRuleProcessingState" TEXT,
    "membershipRuleProcessingState_lc" TEXT,
    "createdDateTime" BIGINT,
    PRIMARY KEY ("tenant", "id")
);
CREATE INDEX "groups_name" ON "groups" ("tenant", "displayName_lc", "displayName", "id");

-- Members of groups: by hand ("dynamic" = 0, through members/$ref) or computed from a dynamic
-- group's rule ("dynamic" = 1). "memberId" is a managed device's id (its Entra object's id).
CREATE TABLE "group_members" (
    "tenant" TEXT NOT NULL,
    "groupId" TEXT NOT NULL,
    "memberId" TEXT NOT NULL,
    "dynamic" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "groupId", "memberId")
);
CREATE INDEX "group_members_member" ON "group_members" ("tenant", "memberId");

CREATE VIEW "directory_devices" AS SELECT
    "tenant",
    "id",
    1 AS "accountEnabled",
    "lastSyncDateTime" AS "approximateLastSignInDateTime",
    "azureADDeviceId" AS "deviceId",
    "azureADDeviceId_lc" AS "deviceId_lc",
    CASE "ownerType" WHEN 1 THEN 'Company' WHEN 2 THEN 'Personal' END AS "deviceOwnership",
    CASE "ownerType" WHEN 1 THEN 'company' WHEN 2 THEN 'personal' END AS "deviceOwnership_lc",
    "deviceName" AS "displayName",
    "deviceName_lc" AS "displayName_lc",
    1 AS "isManaged",
    'MDM' AS "managementType",
    'mdm' AS "managementType_lc",
    "manufacturer",
    "manufacturer_lc",
    "model",
    "model_lc",
    "operatingSystem",
    "operatingSystem_lc",
    "osVersion" AS "operatingSystemVersion",
    "osVersion_lc" AS "operatingSystemVersion_lc",
    "enrolledDateTime" AS "registrationDateTime"
FROM "managed_devices";
