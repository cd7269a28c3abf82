"""Local stand-ins for cloud APIs, speaking each vendor's real wire protocol so the real SDKs
can be exercised offline. Test code only: `gateway run` never imports these.

Each fake is an async context manager bound to 127.0.0.1 on a kernel-chosen port; it runs in
the caller's event loop and records what the client sent for assertions.
"""
