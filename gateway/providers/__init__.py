"""Speech and language providers: one module per vendor, all behind the interfaces in base."""
