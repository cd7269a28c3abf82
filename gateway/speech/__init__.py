"""Speech and language engines on the asyncio loop: recogniser, voice and language-model
interfaces, the registry that names them, fallback between them, and their caches.
Vendors live in `vendors/`, one module each."""
