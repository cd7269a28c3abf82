"""Sans-IO machines of a conversation: turn-taking (end of turn, barge-in) and the fallback
policy. Pure and clock-free (time comes in as arguments); imports nothing above media."""
