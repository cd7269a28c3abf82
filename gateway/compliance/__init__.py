"""Compliance rules as pure functions, any thread: PII redaction (`redact.py`), the per-call audit
hash chain (`audit.py`) and retention periods (`retention.py`). No I/O: the worker and the call
store both use them."""
