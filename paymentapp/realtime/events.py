"""Socket.IO event handlers (filled in by the real-time work)."""
