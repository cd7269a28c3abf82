"""The agent step language: the model of a script (say, play, gather, branch, llm, transfer,
hangup), its loader with file:line errors, and the pure reading of callers' answers. No I/O."""
