-- What left the sandbox (labels, counts, output sizes, a fingerprint of the
-- labels, captured output kept only here): JSON text.
ALTER TABLE executions ADD COLUMN output TEXT;
