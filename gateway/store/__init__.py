"""The call store, the system of record (thread: whichever executor thread owns the store, one
writer per worker process): calls, turns, tools, consent, the audit trail; SQLite by default
(`var/calls.db`, WAL), PostgreSQL for a `postgresql://` URL. Schema migrations are versioned and
applied at open."""
