-- Device reports in one round trip (docs/storage.md, "Device reports in one round trip").
--
-- The writer decides everything in Rust — the new row, the counter changes, the history record —
-- and this function applies that plan in one statement (autocommit: its own transaction), with
-- the same checks and the same lock order as the statement-by-statement path SQLite keeps:
-- the script's row FOR KEY SHARE first, then the run state FOR UPDATE, then the bound device
-- FOR KEY SHARE, then state counters by name, remediated devices by key, the tenant's count,
-- and the history. An update carries the version (xmin) of the row it was computed from; when
-- the row changed since, nothing is written and the outcome is 'changed' (the writer reads
-- again and recomputes). Outcomes: 'ok', 'no-script', 'changed', 'no-device',
-- 'bound' (with the id of the device's existing run state of the script).
--
-- The UPDATE lists every non-key column of device_run_states: a migration adding a column there
-- must replace this function (the conformance suite's PATCH tests fail otherwise).
CREATE FUNCTION remediate_run_state_write(
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
        INSERT INTO run_history SELECT * FROM jsonb_populate_record(NULL::run_history, p_history);
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
    END IF;

    IF p_clear IS NOT NULL THEN
        DELETE FROM on_demand_requests
            WHERE "tenant" = p_tenant AND "managedDeviceId" = p_clear AND "scriptId" = p_script;
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, NULL::TEXT;
END
$fn$;
