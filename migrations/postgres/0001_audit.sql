-- The audit store: API keys and one row per execution, hash-chained.
-- Times are RFC 3339 UTC text with millisecond precision (sortable as text).
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_sha256  TEXT NOT NULL UNIQUE,
    roles       TEXT NOT NULL,
    policies    TEXT,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE executions (
    seq              BIGSERIAL PRIMARY KEY,
    execution_id     TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    finished_at      TEXT,
    principal        TEXT NOT NULL,
    client_addr      TEXT,
    policy           TEXT,
    environment      TEXT,
    sql_query        TEXT,
    sql_sha256       TEXT,
    params           TEXT,
    classifier_code  TEXT,
    code_sha256      TEXT,
    error            TEXT,
    row_count        BIGINT,
    timings_ms       TEXT,
    resources        TEXT,
    exit_signal      BIGINT,
    blocked_syscall  TEXT,
    server_id        TEXT NOT NULL,
    chain_seq        BIGINT UNIQUE,
    prev_hash        TEXT,
    hash             TEXT
);
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_principal ON executions (principal);
CREATE INDEX executions_policy ON executions (policy);
CREATE INDEX executions_code ON executions (code_sha256);
CREATE INDEX executions_created ON executions (created_at);

-- The end of the hash chain; writers serialize on it (a row lock, SELECT … FOR UPDATE).
CREATE TABLE chain_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
