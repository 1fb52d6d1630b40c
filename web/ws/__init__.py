"""The WebSocket feeds: the compatible order feed (/api/v2/websocket) and the native feed
(/api/ws)."""
