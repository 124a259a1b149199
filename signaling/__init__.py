"""The signaling edge: aiohttp app, settings, WebSocket protocol, WHIP/WHEP, accounts.

This package owns users, tokens, persistence and the wire protocol; it never touches RTP.
It calls only the public API of :mod:`sfu`.
"""
