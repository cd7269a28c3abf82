"""The store's schema, as numbered migrations applied in order at open (never edited once shipped:
a change is a new migration). The SQL is the subset SQLite and PostgreSQL share."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, tuple[str, ...]]] = [
    (1, "calls, turns, tools, consents, audit events, purged calls", (
        """CREATE TABLE calls (
            call_id TEXT PRIMARY KEY, dialled TEXT, caller TEXT, source TEXT, trunk TEXT,
            dialplan TEXT, started DOUBLE PRECISION, answered DOUBLE PRECISION,
            ended DOUBLE PRECISION, setup_ms DOUBLE PRECISION, outcome TEXT, end_code INTEGER,
            transfer_target TEXT, transfer TEXT, digits TEXT, steps TEXT, variables TEXT,
            barge_ins INTEGER, referred_by TEXT, recording TEXT, worker TEXT,
            audit_head TEXT, audit_count INTEGER, retention TEXT, purged TEXT, extra TEXT,
            stored_at DOUBLE PRECISION)""",
        """CREATE TABLE turns (
            call_id TEXT NOT NULL, seq INTEGER NOT NULL, who TEXT, text TEXT,
            confidence DOUBLE PRECISION, at DOUBLE PRECISION, latency_ms DOUBLE PRECISION,
            PRIMARY KEY (call_id, seq))""",
        """CREATE TABLE tools (
            call_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT, name TEXT, arguments TEXT,
            status TEXT, duration_ms DOUBLE PRECISION, at DOUBLE PRECISION,
            PRIMARY KEY (call_id, seq))""",
        """CREATE TABLE consents (
            call_id TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT, question TEXT, answer TEXT,
            via TEXT, at DOUBLE PRECISION, PRIMARY KEY (call_id, seq))""",
        """CREATE TABLE audit_events (
            call_id TEXT NOT NULL, seq INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL,
            kind TEXT NOT NULL, data TEXT, data_hash TEXT NOT NULL, prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL, PRIMARY KEY (call_id, seq))""",
        """CREATE TABLE purged_calls (
            call_id TEXT PRIMARY KEY, purged_at DOUBLE PRECISION, started DOUBLE PRECISION,
            audit_head TEXT, audit_count INTEGER, reason TEXT)""",
    )),
    (2, "indexes for gateway calls list", (
        "CREATE INDEX calls_started ON calls (started)",
        "CREATE INDEX calls_caller ON calls (caller)",
        "CREATE INDEX calls_dialled ON calls (dialled)",
        "CREATE INDEX calls_outcome ON calls (outcome)",
    )),
]
LATEST = MIGRATIONS[-1][0]
