-- getRemediationHistory from a per-day aggregate kept on write (docs/computed-views.md, "How the
-- counters are kept"): the tables below (as in sqlite/0010_history_days.sql), filled from the rows
-- by history_days_fill.sql, and the report function of migration 0009 replaced by one that also
-- keeps them (its signature unchanged). It takes the record's device, day and class from the row
-- it inserts into run_history, with the definitions of history_days_fill.sql, and changes the
-- aggregate after everything else it locks (the lock order of migration 0009, then the device's
-- row of history_days, then history_day_counts in class order): the same steps as
-- `counters::history_day_recorded` on the statement-by-statement path.

-- One row per script, device (managedDeviceId, or stateId when unbound) and UTC day (the day of
-- lastStateUpdateDateTime when > 0, else of recordedDateTime, in ticks / 864000000000) that has
-- history records: the latest of them by id ("id"), its class (0 none, 1 remediated, 2 no issue,
-- 3 detection failed), its recordedDateTime ("recorded"), the newest recordedDateTime of all of
-- them ("lastRecorded"; a record without one counts as never pruned) and the shard of
-- history_day_counts the row is counted in. Pruning reads "recorded" and "lastRecorded".
CREATE TABLE "history_days" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "scriptId" TEXT COLLATE "C" NOT NULL,
    "device" TEXT COLLATE "C" NOT NULL,
    "day" BIGINT NOT NULL,
    "id" TEXT COLLATE "C" NOT NULL,
    "class" BIGINT NOT NULL,
    "recorded" BIGINT,
    "lastRecorded" BIGINT NOT NULL,
    "shard" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "scriptId", "device", "day")
);
CREATE INDEX "history_days_recorded" ON "history_days" ("recorded");

-- The rows of history_days per script, day, class and shard. Each row of history_days is counted
-- in its own shard, so a count never goes below zero and a count of zero can be deleted.
-- Concurrent PostgreSQL transactions insert rows into different shards (as counters).
CREATE TABLE "history_day_counts" (
    "tenant" TEXT COLLATE "C" NOT NULL,
    "scriptId" TEXT COLLATE "C" NOT NULL,
    "day" BIGINT NOT NULL,
    "class" BIGINT NOT NULL,
    "shard" BIGINT NOT NULL,
    "n" BIGINT NOT NULL,
    PRIMARY KEY ("tenant", "scriptId", "day", "class", "shard")
);

CREATE OR REPLACE FUNCTION remediate_run_state_write(
    p_tenant TEXT,
    p_script TEXT,
    p_shard BIGINT,
    p_bind TEXT,
    p_insert JSONB,
    p_state TEXT,
    p_version TEXT,
    p_set JSONB,
    p_counters TEXT[],
    p_deltas BIGINT[],
    p_devices TEXT[],
    p_device_deltas BIGINT[],
    p_devices_counter TEXT,
    p_history JSONB,
    p_remediated TEXT,
    p_cumulative_counter TEXT,
    p_recorded BIGINT,
    p_clear TEXT
) RETURNS TABLE ("outcome" TEXT, "existing" TEXT)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_existing TEXT;
    v_n BIGINT;
    v_devices BIGINT := 0;
    i INT;
    v_device TEXT COLLATE "C";
    v_day BIGINT;
    v_class BIGINT;
    v_id TEXT COLLATE "C";
    v_recorded BIGINT;
    v_old_id TEXT COLLATE "C";
    v_old_class BIGINT;
    v_old_shard BIGINT;
BEGIN
    PERFORM 1 FROM device_health_scripts
        WHERE "tenant" = p_tenant AND "id" = p_script FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no-script'::TEXT, NULL::TEXT;
        RETURN;
    END IF;
    IF p_state IS NOT NULL THEN
        PERFORM 1 FROM device_run_states
            WHERE "tenant" = p_tenant AND "scriptId" = p_script AND "id" = p_state
              AND xmin::TEXT = p_version
            FOR UPDATE;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'changed'::TEXT, NULL::TEXT;
            RETURN;
        END IF;
    END IF;
    IF p_bind IS NOT NULL THEN
        PERFORM 1 FROM managed_devices
            WHERE "tenant" = p_tenant AND "id" = p_bind FOR KEY SHARE;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'no-device'::TEXT, NULL::TEXT;
            RETURN;
        END IF;
        SELECT "id" INTO v_existing FROM device_run_states
            WHERE "tenant" = p_tenant AND "scriptId" = p_script AND "managedDeviceId" = p_bind;
        IF FOUND THEN
            RETURN QUERY SELECT 'bound'::TEXT, v_existing;
            RETURN;
        END IF;
    END IF;

    IF p_insert IS NOT NULL THEN
        INSERT INTO device_run_states
            SELECT * FROM jsonb_populate_record(NULL::device_run_states, p_insert);
    ELSIF p_set IS NOT NULL THEN
        UPDATE device_run_states AS t SET (
            "managedDeviceId", "detectionState", "lastStateUpdateDateTime",
            "expectedStateUpdateDateTime", "lastSyncDateTime",
            "preRemediationDetectionScriptOutput", "preRemediationDetectionScriptOutput_lc",
            "preRemediationDetectionScriptError", "preRemediationDetectionScriptError_lc",
            "remediationScriptError", "remediationScriptError_lc",
            "postRemediationDetectionScriptOutput", "postRemediationDetectionScriptOutput_lc",
            "postRemediationDetectionScriptError", "postRemediationDetectionScriptError_lc",
            "remediationState", "assignmentFilterIds"
        ) = (
            SELECT n."managedDeviceId", n."detectionState", n."lastStateUpdateDateTime",
                n."expectedStateUpdateDateTime", n."lastSyncDateTime",
                n."preRemediationDetectionScriptOutput", n."preRemediationDetectionScriptOutput_lc",
                n."preRemediationDetectionScriptError", n."preRemediationDetectionScriptError_lc",
                n."remediationScriptError", n."remediationScriptError_lc",
                n."postRemediationDetectionScriptOutput", n."postRemediationDetectionScriptOutput_lc",
                n."postRemediationDetectionScriptError", n."postRemediationDetectionScriptError_lc",
                n."remediationState", n."assignmentFilterIds"
            FROM jsonb_populate_record(t, p_set) AS n
        )
        WHERE t."tenant" = p_tenant AND t."scriptId" = p_script AND t."id" = p_state;
    END IF;

    FOR i IN 1 .. coalesce(array_length(p_counters, 1), 0) LOOP
        INSERT INTO counters ("tenant", "name", "shard", "n")
            VALUES (p_tenant, p_counters[i], p_shard, p_deltas[i])
            ON CONFLICT ("tenant", "name", "shard") DO UPDATE SET "n" = counters."n" + excluded."n";
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_devices, 1), 0) LOOP
        IF p_device_deltas[i] > 0 THEN
            INSERT INTO remediated_devices ("tenant", "device", "n") VALUES (p_tenant, p_devices[i], 1)
                ON CONFLICT ("tenant", "device") DO UPDATE SET "n" = remediated_devices."n" + 1
                RETURNING "n" INTO v_n;
            IF v_n = 1 THEN
                v_devices := v_devices + 1;
            END IF;
        ELSE
            UPDATE remediated_devices SET "n" = "n" - 1
                WHERE "tenant" = p_tenant AND "device" = p_devices[i]
                RETURNING "n" INTO v_n;
            IF FOUND AND v_n <= 0 THEN
                DELETE FROM remediated_devices WHERE "tenant" = p_tenant AND "device" = p_devices[i];
                v_devices := v_devices - 1;
            END IF;
        END IF;
    END LOOP;
    IF v_devices <> 0 THEN
        INSERT INTO counters ("tenant", "name", "shard", "n")
            VALUES (p_tenant, p_devices_counter, p_shard, v_devices)
            ON CONFLICT ("tenant", "name", "shard") DO UPDATE SET "n" = counters."n" + excluded."n";
    END IF;

    IF p_history IS NOT NULL THEN
        -- The record's place in the per-day aggregate: the definitions of history_days_fill.sql.
        INSERT INTO run_history SELECT * FROM jsonb_populate_record(NULL::run_history, p_history)
            RETURNING COALESCE("managedDeviceId", "stateId"),
                (CASE WHEN "lastStateUpdateDateTime" > 0 THEN "lastStateUpdateDateTime"
                      ELSE "recordedDateTime" END) / 864000000000,
                CASE WHEN "remediationState" = 2 THEN 1
                     WHEN "detectionState" = 1 AND "remediationState" <> 2 THEN 2
                     WHEN "detectionState" IN (2, 3) AND "remediationState" <> 2 THEN 3
                     ELSE 0 END,
                "id", "recordedDateTime"
            INTO v_device, v_day, v_class, v_id, v_recorded;
        IF p_remediated IS NOT NULL THEN
            INSERT INTO remediated_history ("tenant", "scriptId", "device", "recorded")
                VALUES (p_tenant, p_script, p_remediated, p_recorded)
                ON CONFLICT ("tenant", "scriptId", "device") DO NOTHING;
            IF FOUND THEN
                INSERT INTO counters ("tenant", "name", "shard", "n")
                    VALUES (p_tenant, p_cumulative_counter, p_shard, 1)
                    ON CONFLICT ("tenant", "name", "shard") DO UPDATE SET "n" = counters."n" + excluded."n";
            ELSE
                UPDATE remediated_history SET "recorded" = p_recorded
                    WHERE "tenant" = p_tenant AND "scriptId" = p_script AND "device" = p_remediated
                      AND "recorded" < p_recorded;
            END IF;
        END IF;
        -- The device's row of that day takes the record when its id is greater; the counts of
        -- the two classes move (in class order) in the row's shard.
        WHILE v_day IS NOT NULL LOOP
            INSERT INTO history_days ("tenant", "scriptId", "device", "day", "id", "class",
                    "recorded", "lastRecorded", "shard")
                VALUES (p_tenant, p_script, v_device, v_day, v_id, v_class, v_recorded,
                    COALESCE(v_recorded, 9223372036854775807), p_shard)
                ON CONFLICT ("tenant", "scriptId", "device", "day") DO NOTHING;
            IF FOUND THEN
                INSERT INTO history_day_counts ("tenant", "scriptId", "day", "class", "shard", "n")
                    VALUES (p_tenant, p_script, v_day, v_class, p_shard, 1)
                    ON CONFLICT ("tenant", "scriptId", "day", "class", "shard")
                    DO UPDATE SET "n" = history_day_counts."n" + excluded."n";
                EXIT;
            END IF;
            SELECT "id", "class", "shard" INTO v_old_id, v_old_class, v_old_shard FROM history_days
                WHERE "tenant" = p_tenant AND "scriptId" = p_script AND "device" = v_device
                  AND "day" = v_day
                FOR UPDATE;
            -- Not found: pruning deleted the row since the INSERT; insert again.
            CONTINUE WHEN NOT FOUND;
            IF v_old_id < v_id THEN
                UPDATE history_days SET "id" = v_id, "class" = v_class, "recorded" = v_recorded,
                        "lastRecorded" = GREATEST("lastRecorded", COALESCE(v_recorded, 9223372036854775807))
                    WHERE "tenant" = p_tenant AND "scriptId" = p_script AND "device" = v_device
                      AND "day" = v_day;
                IF v_old_class <> v_class THEN
                    INSERT INTO history_day_counts ("tenant", "scriptId", "day", "class", "shard", "n")
                        VALUES (p_tenant, p_script, v_day, LEAST(v_old_class, v_class), v_old_shard,
                            CASE WHEN v_old_class < v_class THEN -1 ELSE 1 END)
                        ON CONFLICT ("tenant", "scriptId", "day", "class", "shard")
                        DO UPDATE SET "n" = history_day_counts."n" + excluded."n";
                    INSERT INTO history_day_counts ("tenant", "scriptId", "day", "class", "shard", "n")
                        VALUES (p_tenant, p_script, v_day, GREATEST(v_old_class, v_class), v_old_shard,
                            CASE WHEN v_old_class < v_class THEN 1 ELSE -1 END)
                        ON CONFLICT ("tenant", "scriptId", "day", "class", "shard")
                        DO UPDATE SET "n" = history_day_counts."n" + excluded."n";
                END IF;
            ELSE
                UPDATE history_days
                    SET "lastRecorded" = COALESCE(v_recorded, 9223372036854775807)
                    WHERE "tenant" = p_tenant AND "scriptId" = p_script AND "device" = v_device
                      AND "day" = v_day AND "lastRecorded" < COALESCE(v_recorded, 9223372036854775807);
            END IF;
            EXIT;
        END LOOP;
    END IF;

    IF p_clear IS NOT NULL THEN
        DELETE FROM on_demand_requests
            WHERE "tenant" = p_tenant AND "managedDeviceId" = p_clear AND "scriptId" = p_script;
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, NULL::TEXT;
END
$fn$;
