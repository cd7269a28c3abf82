"""One worker process (asyncio loop): the server that routes SIP events to calls, the call
handle, the session that hears and speaks, the runner that walks a script, records and metrics.
Talks to the pj thread only through gateway.sip's command queue and events."""
