-- The neighbours of deviceHealthScripts that Intune tooling touches: role scope tags, assignment
-- filters, Entra groups and their members; Entra devices as a read-only view of managed devices.

CREATE TABLE "role_scope_tags" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "displayName" TEXT COLLATE "C",
    "displayName_lc" TEXT COLLATE "C",
    "description" TEXT COLLATE "C",
    "description_lc" TEXT COLLATE "C",
    "isBuiltIn" BIGINT,
    PRIMARY KEY ("tenant", "id")
);
-- The built-in Default tag, shared by every tenant (stored under the empty tenant).
INSERT INTO "role_scope_tags" VALUES ('', '0', 'Default', 'default', 'Default scope tag', 'default scope tag', 1);

CREATE TABLE "assignment_filters" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "createdDateTime" BIGINT,
    "lastModifiedDateTime" BIGINT,
    "displayName" TEXT COLLATE "C",
    "displayName_lc" TEXT COLLATE "C",
    "description" TEXT COLLATE "C",
    "description_lc" TEXT COLLATE "C",
    "platform" BIGINT,
    "rule" TEXT COLLATE "C",
    "roleScopeTags" TEXT COLLATE "C",
    "assignmentFilterManagementType" BIGINT,
    PRIMARY KEY ("tenant", "id")
);

CREATE TABLE "groups" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "displayName" TEXT COLLATE "C",
    "displayName_lc" TEXT COLLATE "C",
    "description" TEXT COLLATE "C",
    "description_lc" TEXT COLLATE "C",
    "mailEnabled" BIGINT,
    "mailNickname" TEXT COLLATE "C",
    "mailNickname_lc" TEXT COLLATE "C",
    "securityEnabled" BIGINT,
    "groupTypes" TEXT COLLATE "C",
    "membershipRule" TEXT COLLATE "C",
    "membershipRuleProcessingState" TEXT COLLATE "C",
    "membershipRuleProcessingState_lc" TEXT COLLATE "C",
    "createdDateTime" BIGINT,
    PRIMARY KEY ("tenant", "id")
);
CREATE INDEX "groups_name" ON "groups" ("tenant", "displayName_lc", "displayName", "id");

-- Members of groups: by hand ("dynamic" = 0, through members/$ref) or computed from a dynamic
-- group's rule ("dynamic" = 1). "memberId" is a managed device's id (its Entra object's id).
CREATE TABLE "group_members" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "groupId" TEXT COLLATE "C" NOT NULL,
    "memberId" TEXT COLLATE "C" NOT NULL,
    "dynamic" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "groupId", "memberId")
);
CREATE INDEX "group_members_member" ON "group_members" ("tenant", "memberId");

CREATE VIEW "directory_devices" AS SELECT
    "tenant",
    "id",
    CAST(1 AS BIGINT) AS "accountEnabled",
    "lastSyncDateTime" AS "approximateLastSignInDateTime",
    "azureADDeviceId" AS "deviceId",
    "azureADDeviceId_lc" AS "deviceId_lc",
    CAST(CASE "ownerType" WHEN 1 THEN 'Company' WHEN 2 THEN 'Personal' END AS TEXT) COLLATE "C" AS "deviceOwnership",
    CAST(CASE "ownerType" WHEN 1 THEN 'company' WHEN 2 THEN 'personal' END AS TEXT) COLLATE "C" AS "deviceOwnership_lc",
    "deviceName" AS "displayName",
    "deviceName_lc" AS "displayName_lc",
    CAST(1 AS BIGINT) AS "isManaged",
    CAST('MDM' AS TEXT) COLLATE "C" AS "managementType",
    CAST('mdm' AS TEXT) COLLATE "C" AS "managementType_lc",
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
