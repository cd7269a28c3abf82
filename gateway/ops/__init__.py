"""Running many workers: the supervisor, the Kamailio front it renders and runs, and the merged
metrics. Its own threads and processes; never imports pjsua2."""
