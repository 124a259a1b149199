"""Pure-Python RTP/RTCP building blocks for the SFU forwarding hot path.

Everything in this package is synchronous, network-free and allocation-light:
sequence arithmetic (RFC 3550 A.1), per-consumer header munging, NACK
generation and FCI packing (RFC 4585), RTX wrapping (RFC 4588), keyframe
detection / request throttling, receive statistics (RFC 3550 §6.4.1) and fast
RTP header / header-extension parsing (RFC 3550 §5.1, RFC 8285).
"""
