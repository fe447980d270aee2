-- The dashboard's sign-in (docs/dashboard.md). A login link of `remediate login-link` is stored as
-- the SHA-256 hash of its token with the tenant and permissions it grants (JSON arrays of
-- strings), its expiry, and when it was used (a link opens one session, once). A session is
-- stored as the SHA-256 hash of its id (the cookie's value is never stored), with the link's
-- tenant and permissions, when it was opened (the absolute timeout) and last seen (the idle one).

CREATE TABLE "login_links" (
    "tokenHash" TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    "tenant" TEXT COLLATE "C" NOT NULL,
    "scopes" TEXT COLLATE "C" NOT NULL,
    "roles" TEXT COLLATE "C" NOT NULL,
    "createdDateTime" BIGINT NOT NULL,
    "expiresDateTime" BIGINT NOT NULL,
    "usedDateTime" BIGINT
);

CREATE TABLE "sessions" (
    "idHash" TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    "tenant" TEXT COLLATE "C" NOT NULL,
    "scopes" TEXT COLLATE "C" NOT NULL,
    "roles" TEXT COLLATE "C" NOT NULL,
    "createdDateTime" BIGINT NOT NULL,
    "lastSeenDateTime" BIGINT NOT NULL
);

CREATE INDEX "sessions_last_seen" ON "sessions" ("lastSeenDateTime");
