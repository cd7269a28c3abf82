"""The test softphone (pjsua2, its own process): calls or answers, speaks turns, records,
times turns and barge-ins on its media clock. Run as `python -m gateway.sip.phone.softphone`."""
