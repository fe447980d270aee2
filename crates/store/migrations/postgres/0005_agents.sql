-- Device agents (SPEC §7): enrollment secrets (stored as a SHA-256 hash, shown once) and the
-- credential of each enrolled device (also a hash). A device's credential row is deleted with the
-- device, which revokes it.

CREATE TABLE "enrollment_secrets" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "displayName" TEXT COLLATE "C",
    "displayName_lc" TEXT COLLATE "C",
    "groupIds" TEXT COLLATE "C",
    "createdDateTime" BIGINT,
    "expirationDateTime" BIGINT,
    "usesRemaining" BIGINT,
    "usesCount" BIGINT,
    "secretHash" TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY ("tenant", "id")
);
CREATE UNIQUE INDEX "enrollment_secrets_hash" ON "enrollment_secrets" ("secretHash");

CREATE TABLE "device_credentials" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "deviceId" TEXT COLLATE "C" NOT NULL,
    "credentialHash" TEXT COLLATE "C" NOT NULL,
    "createdDateTime" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "deviceId")
);
