-- Registered applications of the Entra-shaped token endpoint (`remediate app create`): a client id
-- (GUID) per tenant, its roles (application permissions, the token's `roles`) and scopes (the
-- token's `scp`) as JSON arrays of strings, and the SHA-256 hash of its client secret (the
-- secret is shown once and never stored). Revoking keeps the row and sets "revokedDateTime".

CREATE TABLE "apps" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "clientId" TEXT COLLATE "C" NOT NULL,
    "displayName" TEXT COLLATE "C" NOT NULL,
    "roles" TEXT COLLATE "C" NOT NULL,
    "scopes" TEXT COLLATE "C" NOT NULL,
    "secretHash" TEXT COLLATE "C" NOT NULL,
    "createdDateTime" BIGINT NOT NULL,
    "revokedDateTime" BIGINT,
    PRIMARY KEY ("tenant", "clientId")
);
