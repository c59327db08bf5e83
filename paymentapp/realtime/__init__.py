"""Real time: Socket.IO rooms per order and the admin namespace.

`server.py` sets up the Socket.IO server, `events.py` the default namespace's handlers,
`emit.py` what a commit sends, `rooms.py` and `message_queue.py` the in-process and Redis
managers, `commands.py` `flask realtime resend`, and `routes.py` `GET /realtime/origin`
(may this page's origin connect?).
"""
