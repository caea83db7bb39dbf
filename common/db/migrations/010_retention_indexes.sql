-- Retention sweeps delete by age in bounded batches; each finds its batch
-- through an index instead of scanning the table (spend_usage, audit_log,
-- device_codes and spend_holds already have one).
CREATE INDEX IF NOT EXISTS spend_counters_day ON spend_counters (day);
CREATE INDEX IF NOT EXISTS auth_sessions_expires ON auth_sessions (expires_at);
CREATE INDEX IF NOT EXISTS rate_limits_window ON rate_limits (window_start);
