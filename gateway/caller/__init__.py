"""The caller's seat: `gateway call`, `gateway simulate` (scenarios, personas) and `gateway
loadtest`. They drive the test softphone (gateway.sip.phone) as a separate process only."""
