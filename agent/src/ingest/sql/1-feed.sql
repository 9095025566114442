-- The regulator's copy of the netbar feed (migration 1), written by
-- `netbar-agent regulator ingest`. Everything lives in the schema `netbar`;
-- the views at the end are what a district's dashboard reads.

CREATE SCHEMA IF NOT EXISTS netbar;

-- What the views take as their limits; one row, changed with UPDATE.
CREATE TABLE netbar.settings (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    -- A venue with nothing received for this long (not even a heartbeat) is quiet.
    quiet_after    interval NOT NULL DEFAULT interval '3 minutes',
    -- An open incident nobody acknowledged for this long is a serious finding.
    unacknowledged interval NOT NULL DEFAULT interval '30 minutes'
);
INSERT INTO netbar.settings DEFAULT VALUES;

-- One row a venue, by the topic it publishes under; `ga_code` once one of
-- its summaries or heartbeats carried one.
CREATE TABLE netbar.venues (
    id             bigserial PRIMARY KEY,
    region         text NOT NULL,
    venue          text NOT NULL,
    ga_code        text,
    first_heard    timestamptz NOT NULL,
    last_heard     timestamptz NOT NULL,
    -- The sequence: the highest number received, how many distinct numbers
    -- were received, and how many arrived again (absorbed).
    highest_seq    bigint NOT NULL DEFAULT 0,
    received       bigint NOT NULL DEFAULT 0,
    duplicates     bigint NOT NULL DEFAULT 0,
    -- The latest heartbeat.
    heartbeat_at   timestamptz,
    outbox_pending bigint,
    store_error    text,
    UNIQUE (region, venue)
);
CREATE UNIQUE INDEX venues_ga_code ON netbar.venues (ga_code);

-- Every numbered message as it arrived (the audit copy), once.
CREATE TABLE netbar.feed (
    venue_id    bigint NOT NULL REFERENCES netbar.venues,
    seq         bigint NOT NULL CHECK (seq > 0),
    message_id  text NOT NULL,
    kind        text NOT NULL,
    sent_at     timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    envelope    jsonb NOT NULL,
    PRIMARY KEY (venue_id, seq)
);

-- Numbers missing from a venue's sequence when a later one arrived. Closed
-- once every number in the range has arrived after all.
CREATE TABLE netbar.gaps (
    venue_id  bigint NOT NULL REFERENCES netbar.venues,
    first_seq bigint NOT NULL,
    last_seq  bigint NOT NULL CHECK (last_seq >= first_seq),
    found_at  timestamptz NOT NULL,
    closed_at timestamptz,
    PRIMARY KEY (venue_id, first_seq)
);

CREATE TABLE netbar.summaries (
    venue_id          bigint NOT NULL,
    seq               bigint NOT NULL,
    period_from       timestamptz NOT NULL,
    period_to         timestamptz NOT NULL,
    compliance        text NOT NULL,
    stations_enrolled integer NOT NULL,
    stations_online   integer NOT NULL,
    sessions_open     integer NOT NULL,
    customers_present integer NOT NULL,
    registrations     integer NOT NULL,
    refused           integer NOT NULL,
    unregistered_use  integer NOT NULL,
    incidents_open    integer NOT NULL,
    critical_open     integer NOT NULL,
    sensors_enrolled  integer NOT NULL,
    sensors_silent    integer NOT NULL,
    log_index         bigint NOT NULL,
    log_hash          text NOT NULL,
    store_error       text,
    PRIMARY KEY (venue_id, seq),
    FOREIGN KEY (venue_id, seq) REFERENCES netbar.feed
);

-- An incident as its transitions so far make it (they may arrive out of order).
CREATE TABLE netbar.incidents (
    venue_id        bigint NOT NULL REFERENCES netbar.venues,
    incident_id     text NOT NULL,
    kind            text,
    severity        text,
    station         text,
    sensor          text,
    detail          text,
    opened_at       timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    resolution      text,
    PRIMARY KEY (venue_id, incident_id)
);

CREATE TABLE netbar.incident_transitions (
    venue_id    bigint NOT NULL,
    seq         bigint NOT NULL,
    incident_id text NOT NULL,
    transition  text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (venue_id, seq),
    FOREIGN KEY (venue_id, seq) REFERENCES netbar.feed
);

CREATE TABLE netbar.records (
    venue_id  bigint NOT NULL,
    seq       bigint NOT NULL,
    log_index bigint NOT NULL,
    prev_hash text NOT NULL,
    hash      text NOT NULL,
    at        timestamptz NOT NULL,
    station   text,
    allowed   boolean NOT NULL,
    reasons   text[] NOT NULL,
    person    jsonb NOT NULL,
    PRIMARY KEY (venue_id, seq),
    FOREIGN KEY (venue_id, seq) REFERENCES netbar.feed
);

-- The registration log's heads the feed carried (summaries and heartbeats
-- the head, records their entry and the one before), each position once:
-- what `records verify --heads` checks a venue's log against.
CREATE TABLE netbar.heads (
    venue_id    bigint NOT NULL REFERENCES netbar.venues,
    log_index   bigint NOT NULL CHECK (log_index > 0),
    hash        text NOT NULL,
    seq         bigint NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (venue_id, log_index)
);

-- What the feed showed that is wrong at a venue: `head_rewritten` (a log
-- position came back with another hash), `ga_code_taken` (a venue carried
-- a code another venue holds). Serious until a person clears it.
CREATE TABLE netbar.findings (
    id         bigserial PRIMARY KEY,
    venue_id   bigint NOT NULL REFERENCES netbar.venues,
    kind       text NOT NULL,
    detail     text NOT NULL,
    seq        bigint NOT NULL,
    found_at   timestamptz NOT NULL,
    cleared_at timestamptz,
    cleared_by text
);

-- Messages that could not be read (a topic outside the feed's pattern, a
-- payload that is no valid message, a venue publishing under another's
-- name): kept whole, with why, and acknowledged so they block nothing.
CREATE TABLE netbar.rejected (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    error       text NOT NULL,
    payload     bytea NOT NULL
);

-- Notes a log head carried by message `p_seq` of venue `p_venue`.
CREATE FUNCTION netbar.note_head(p_venue bigint, p_index bigint, p_hash text, p_seq bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_known text;
BEGIN
    IF p_index IS NULL OR p_index < 1 THEN
        RETURN;
    END IF;
    INSERT INTO netbar.heads VALUES (p_venue, p_index, p_hash, p_seq, now()) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        SELECT hash INTO v_known FROM netbar.heads WHERE venue_id = p_venue AND log_index = p_index;
        IF v_known <> p_hash THEN
            INSERT INTO netbar.findings (venue_id, kind, detail, seq, found_at)
            VALUES (p_venue, 'head_rewritten',
                    format('log #%s came back with hash %s; it had %s', p_index, p_hash, v_known), p_seq, now());
        END IF;
    END IF;
END $$;

-- Takes in one message of the feed, already checked by the ingest (a valid
-- envelope, on its own venue's topic in `p_region`). Answers what it was:
-- 'new', 'gap' (new, after missing numbers), 'late' (new, inside a gap),
-- 'duplicate' (absorbed) or 'live' (a heartbeat, outside the sequence).
CREATE FUNCTION netbar.receive(p_region text, p_envelope jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_venue   bigint;
    v_highest bigint;
    v_seq     bigint := (p_envelope->>'seq')::bigint;
    v_kind    text := p_envelope->>'kind';
    v_body    jsonb := p_envelope->'body';
    v_code    text := p_envelope->'body'->>'ga_code';
    v_move    jsonb := p_envelope->'body'->'transition';
    v_verdict text := 'new';
BEGIN
    -- The venue's row, locked until the transaction ends: one venue's
    -- messages are taken in one at a time.
    INSERT INTO netbar.venues AS v (region, venue, first_heard, last_heard)
    VALUES (p_region, p_envelope->>'venue', now(), now())
    ON CONFLICT (region, venue) DO UPDATE SET last_heard = now()
    RETURNING v.id, v.highest_seq INTO v_venue, v_highest;

    IF v_seq = 0 THEN
        v_verdict := 'live';
    ELSE
        INSERT INTO netbar.feed VALUES (v_venue, v_seq, p_envelope->>'id', v_kind, (p_envelope->>'ts')::timestamptz, now(), p_envelope)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            UPDATE netbar.venues SET duplicates = duplicates + 1 WHERE id = v_venue;
            RETURN 'duplicate';
        END IF;
        IF v_seq > v_highest + 1 THEN
            INSERT INTO netbar.gaps VALUES (v_venue, v_highest + 1, v_seq - 1, now(), NULL);
            v_verdict := 'gap';
        ELSIF v_seq <= v_highest THEN
            UPDATE netbar.gaps g SET closed_at = now()
            WHERE g.venue_id = v_venue AND g.closed_at IS NULL AND v_seq BETWEEN g.first_seq AND g.last_seq
              AND (SELECT count(*) FROM netbar.feed f WHERE f.venue_id = v_venue AND f.seq BETWEEN g.first_seq AND g.last_seq)
                  = g.last_seq - g.first_seq + 1;
            v_verdict := 'late';
        END IF;
        UPDATE netbar.venues SET highest_seq = greatest(highest_seq, v_seq), received = received + 1 WHERE id = v_venue;
    END IF;

    IF v_code IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM netbar.venues WHERE ga_code = v_code AND id <> v_venue) THEN
            INSERT INTO netbar.findings (venue_id, kind, detail, seq, found_at)
            SELECT v_venue, 'ga_code_taken', format('carried GA code %s, which %s/%s holds', v_code, region, venue), v_seq, now()
            FROM netbar.venues WHERE ga_code = v_code;
        ELSE
            UPDATE netbar.venues SET ga_code = v_code WHERE id = v_venue AND ga_code IS DISTINCT FROM v_code;
        END IF;
    END IF;

    CASE v_kind
    WHEN 'summary' THEN
        INSERT INTO netbar.summaries VALUES (
            v_venue, v_seq, (v_body->>'from')::timestamptz, (v_body->>'to')::timestamptz, v_body->>'compliance',
            (v_body->>'stations_enrolled')::int, (v_body->>'stations_online')::int, (v_body->>'sessions_open')::int,
            (v_body->>'customers_present')::int, (v_body->>'registrations')::int,
            (SELECT coalesce(sum((r->>'count')::int), 0) FROM jsonb_array_elements(v_body->'refusals') r),
            (v_body->>'unregistered_use')::int, (v_body->>'incidents_open')::int,
            (v_body->'incidents_open_by_severity'->>'critical')::int,
            (v_body->>'sensors_enrolled')::int, (v_body->>'sensors_silent')::int,
            (v_body->'log_head'->>'index')::bigint, v_body->'log_head'->>'hash', v_body->>'store_error');
        PERFORM netbar.note_head(v_venue, (v_body->'log_head'->>'index')::bigint, v_body->'log_head'->>'hash', v_seq);
    WHEN 'heartbeat' THEN
        UPDATE netbar.venues
        SET heartbeat_at = (p_envelope->>'ts')::timestamptz,
            outbox_pending = (v_body->>'outbox_pending')::bigint,
            store_error = v_body->>'store_error'
        WHERE id = v_venue AND (heartbeat_at IS NULL OR heartbeat_at <= (p_envelope->>'ts')::timestamptz);
        PERFORM netbar.note_head(v_venue, (v_body->'log_head'->>'index')::bigint, v_body->'log_head'->>'hash', v_seq);
    WHEN 'record' THEN
        INSERT INTO netbar.records VALUES (
            v_venue, v_seq, (v_body->>'index')::bigint, v_body->>'prev_hash', v_body->>'hash', (v_body->>'at')::timestamptz,
            v_body->>'station', (v_body->>'allowed')::boolean,
            ARRAY(SELECT jsonb_array_elements_text(v_body->'reasons')), v_body->'person');
        PERFORM netbar.note_head(v_venue, (v_body->>'index')::bigint - 1, v_body->>'prev_hash', v_seq);
        PERFORM netbar.note_head(v_venue, (v_body->>'index')::bigint, v_body->>'hash', v_seq);
    WHEN 'incident' THEN
        INSERT INTO netbar.incident_transitions VALUES
            (v_venue, v_seq, v_body->>'incident_id', v_move->>'transition', (v_body->>'at')::timestamptz);
        INSERT INTO netbar.incidents (venue_id, incident_id) VALUES (v_venue, v_body->>'incident_id') ON CONFLICT DO NOTHING;
        CASE v_move->>'transition'
        WHEN 'opened' THEN
            UPDATE netbar.incidents
            SET kind = v_move->>'incident_kind', severity = v_move->>'severity', station = v_move->>'station',
                sensor = v_move->>'sensor', detail = v_move->>'detail', opened_at = (v_body->>'at')::timestamptz
            WHERE venue_id = v_venue AND incident_id = v_body->>'incident_id';
        WHEN 'acknowledged' THEN
            UPDATE netbar.incidents SET acknowledged_at = (v_body->>'at')::timestamptz, acknowledged_by = v_move->>'by'
            WHERE venue_id = v_venue AND incident_id = v_body->>'incident_id';
        WHEN 'resolved' THEN
            UPDATE netbar.incidents
            SET resolved_at = (v_body->>'at')::timestamptz, resolved_by = v_move->>'by', resolution = v_move->>'note'
            WHERE venue_id = v_venue AND incident_id = v_body->>'incident_id';
        ELSE
            RAISE EXCEPTION 'unknown incident transition %', v_move->>'transition';
        END CASE;
    ELSE
        -- Another kind on the feed is kept in netbar.feed only.
        NULL;
    END CASE;
    RETURN v_verdict;
END $$;

-- The dashboard's views. A venue is named by its GA code where it has one,
-- else by region/venue.

CREATE VIEW netbar.venue_feed AS
SELECT v.id AS venue_id,
       coalesce(v.ga_code, v.region || '/' || v.venue) AS venue_key,
       v.region, v.venue, v.ga_code,
       v.highest_seq AS expected,
       v.received,
       v.highest_seq - v.received AS missing,
       v.duplicates,
       CASE WHEN v.highest_seq = 0 THEN 1.0 ELSE round(v.received::numeric / v.highest_seq, 4) END AS received_ratio,
       v.first_heard, v.last_heard, v.heartbeat_at, v.outbox_pending, v.store_error
FROM netbar.venues v;

CREATE VIEW netbar.open_gaps AS
SELECT f.venue_key, g.venue_id, g.first_seq, g.last_seq,
       (g.last_seq - g.first_seq + 1)
         - (SELECT count(*) FROM netbar.feed m WHERE m.venue_id = g.venue_id AND m.seq BETWEEN g.first_seq AND g.last_seq) AS missing,
       g.found_at, now() - g.found_at AS age
FROM netbar.gaps g JOIN netbar.venue_feed f USING (venue_id)
WHERE g.closed_at IS NULL;

CREATE VIEW netbar.open_incidents AS
SELECT f.venue_key, i.venue_id, i.incident_id, i.kind, i.severity, i.station, i.sensor, i.detail,
       i.opened_at, i.acknowledged_at, i.acknowledged_by, now() - i.opened_at AS age
FROM netbar.incidents i JOIN netbar.venue_feed f USING (venue_id)
WHERE i.resolved_at IS NULL AND i.opened_at IS NOT NULL;

CREATE VIEW netbar.quiet_venues AS
SELECT f.venue_key, f.venue_id, f.last_heard, now() - f.last_heard AS silent_for
FROM netbar.venue_feed f, netbar.settings s
WHERE f.last_heard < now() - s.quiet_after;

CREATE VIEW netbar.latest_summaries AS
SELECT DISTINCT ON (venue_id) * FROM netbar.summaries ORDER BY venue_id, seq DESC;

-- The grading rule (README, "The regulator's database"), in the spirit of
-- police bureaus' published ones:
--   red:    under 90 % of the venue's numbered messages received, or a
--           serious finding: an open critical incident, an open incident
--           nobody acknowledged within settings.unacknowledged, the latest
--           summary red, or an uncleared finding (log rewritten, GA code
--           taken);
--   yellow: 90 % or more and minor findings only: a message missing, an
--           open incident, the latest summary yellow, unregistered use in
--           the latest summary, the venue's store failing, the venue quiet;
--   green:  every numbered message received and nothing of the above.
CREATE VIEW netbar.venue_grades AS
WITH facts AS (
    SELECT f.venue_id, f.venue_key, f.received_ratio, f.missing,
           EXISTS (SELECT 1 FROM netbar.open_incidents i WHERE i.venue_id = f.venue_id AND i.severity = 'critical') AS critical_open,
           EXISTS (SELECT 1 FROM netbar.open_incidents i, netbar.settings s
                   WHERE i.venue_id = f.venue_id AND i.acknowledged_at IS NULL AND i.age > s.unacknowledged) AS unacknowledged,
           EXISTS (SELECT 1 FROM netbar.open_incidents i WHERE i.venue_id = f.venue_id) AS incident_open,
           (SELECT count(*) FROM netbar.findings x WHERE x.venue_id = f.venue_id AND x.cleared_at IS NULL) AS findings,
           l.compliance, coalesce(l.unregistered_use, 0) AS unregistered_use,
           f.store_error IS NOT NULL OR l.store_error IS NOT NULL AS store_failing,
           EXISTS (SELECT 1 FROM netbar.quiet_venues q WHERE q.venue_id = f.venue_id) AS quiet
    FROM netbar.venue_feed f LEFT JOIN netbar.latest_summaries l USING (venue_id)
), reasons AS (
    SELECT *,
           array_remove(ARRAY[
               CASE WHEN received_ratio < 0.9 THEN 'under 90 % of messages received' END,
               CASE WHEN critical_open THEN 'critical incident open' END,
               CASE WHEN unacknowledged THEN 'incident not acknowledged' END,
               CASE WHEN compliance = 'red' THEN 'latest summary red' END,
               CASE WHEN findings > 0 THEN findings || ' uncleared finding(s)' END
           ], NULL) AS serious,
           array_remove(ARRAY[
               CASE WHEN missing > 0 THEN missing || ' message(s) missing' END,
               CASE WHEN incident_open THEN 'incident open' END,
               CASE WHEN compliance = 'yellow' THEN 'latest summary yellow' END,
               CASE WHEN unregistered_use > 0 THEN 'unregistered use' END,
               CASE WHEN store_failing THEN 'store failing' END,
               CASE WHEN quiet THEN 'quiet' END
           ], NULL) AS minor
    FROM facts
)
SELECT venue_id, venue_key,
       CASE WHEN cardinality(serious) > 0 THEN 'red' WHEN cardinality(minor) > 0 THEN 'yellow' ELSE 'green' END AS grade,
       received_ratio, serious, minor
FROM reasons;

-- The heads of each venue's log as `records verify --heads` reads them (one
-- JSON line each): psql -At -c "SELECT line FROM netbar.inspection_heads
-- WHERE venue_key = '…'" > heads.jsonl
CREATE VIEW netbar.inspection_heads AS
SELECT f.venue_key, f.region, f.venue, h.log_index, h.hash,
       json_build_object('region', f.region, 'venue', f.venue, 'index', h.log_index, 'hash', h.hash)::text AS line
FROM netbar.heads h JOIN netbar.venue_feed f USING (venue_id);
