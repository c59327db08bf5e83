"""Real time: Socket.IO rooms per order and the admin namespace."""
