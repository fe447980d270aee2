-- Device agents (SPEC §7): enrollment secrets (stored as a SHA-256 hash, shown once) and the
-- credential of each enrolled device (also a hash). A device's credential row is deleted with the
-- device, which revokes it.

CREATE TABLE "enrollment_secrets" (
    "tenant" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "displayName" TEXT,
    "displayName_lc" TEXT,
    "groupIds" TEXT,
    "createdDateTime" BIGINT,
    "expirationDateTime" BIGINT,
    "usesRemaining" BIGINT,
    "usesCount" BIGINT,
    "secretHash" TEXT NOT NULL,
    PRIMARY KEY ("tenant", "id")
);
CREATE UNIQUE INDEX "enrollment_secrets_hash" ON "enrollment_secrets" ("secretHash");

CREATE TABLE "device_credentials" (
    "tenant" TEXT NOT NULL,
    "deviceId" TEXT NOT NULL,
    "credentialHash" TEXT NOT NULL,
    "createdDateTime" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "deviceId")
);
