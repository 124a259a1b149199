"""The media plane: Room -> Router -> WebRtcTransport -> Producer / Consumer.

This package forwards RTP without transcoding. It never imports aiohttp, pymongo or
``signaling``; a test can drive it with plain aiortc peers and no HTTP. Only
``sfu._aiortc_adapter`` reaches into aiortc internals.
"""
