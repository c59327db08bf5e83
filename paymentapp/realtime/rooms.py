"""Which rooms a connection is in, without looking through all of them.

python-socketio keeps `rooms[namespace][room] → {sid: eio_sid}` and answers "the rooms of
this sid" (on every disconnect, and for `rooms()`) by going through every room of the
namespace: with 10,000 dialogs open, each one that closes costs a pass over 10,000
rooms, and a reconnect wave is quadratic. `RoomIndex` keeps the reverse index as rooms
are entered and left, for the Redis manager (`message_queue.py`) and the in-memory one.
"""

from __future__ import annotations

import socketio


class RoomIndex:
    """Mixin for a python-socketio client manager: a sid → rooms index."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rooms_of: dict[tuple, set] = {}  # (namespace, sid) → rooms (None included)

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid, namespace, **kwargs):
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self._rooms_of.pop((namespace, sid), None)
        # the rest of python-socketio's basic_disconnect, without its pass over every room
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid, namespace):
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]


class IndexedManager(RoomIndex, socketio.Manager):
    """The in-memory manager (one process, no Redis), with the room index."""
