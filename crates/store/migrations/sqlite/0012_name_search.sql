-- A rare device-name search (`contains(managedDevice/deviceName,'…')`) at a million devices
-- (docs/query-plans.md, "The device status table"): a trigram full-text index over the folded
-- name finds the few devices whose name contains the text, and their run states are read through
-- the unique (tenant, scriptId, managedDeviceId) index. External content: the index reads names
-- from managed_devices by rowid (a rowid table; the store never runs VACUUM, which could renumber
-- it), and these triggers keep it in step. PostgreSQL has a GIN trigram index instead.
CREATE VIRTUAL TABLE "managed_devices_name_trigram" USING fts5(
    "deviceName_lc", content = 'managed_devices', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO "managed_devices_name_trigram" ("managed_devices_name_trigram") VALUES ('rebuild');
CREATE TRIGGER "managed_devices_name_trigram_insert" AFTER INSERT ON "managed_devices" BEGIN
    INSERT INTO "managed_devices_name_trigram" (rowid, "deviceName_lc")
    VALUES (new.rowid, new."deviceName_lc");
END;
CREATE TRIGGER "managed_devices_name_trigram_delete" AFTER DELETE ON "managed_devices" BEGIN
    INSERT INTO "managed_devices_name_trigram" ("managed_devices_name_trigram", rowid, "deviceName_lc")
    VALUES ('delete', old.rowid, old."deviceName_lc");
END;
CREATE TRIGGER "managed_devices_name_trigram_update" AFTER UPDATE OF "deviceName_lc" ON "managed_devices" BEGIN
    INSERT INTO "managed_devices_name_trigram" ("managed_devices_name_trigram", rowid, "deviceName_lc")
    VALUES ('delete', old.rowid, old."deviceName_lc");
    INSERT INTO "managed_devices_name_trigram" (rowid, "deviceName_lc")
    VALUES (new.rowid, new."deviceName_lc");
END;
