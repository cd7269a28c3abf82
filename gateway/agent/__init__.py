"""The conversation side of a call: agent scripts, turn-taking and fallback policy (sans-IO cores)."""
