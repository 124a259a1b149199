"""The media-plane API: the one seam between the edge (``signaling/``) and the media plane.

* :mod:`sfu.plane.types`: the plain dataclasses the API takes and returns;
* :mod:`sfu.plane.api`: :class:`~sfu.plane.api.MediaPlane`, the interface;
* :mod:`sfu.plane.local`: :class:`~sfu.plane.local.LocalMediaPlane`, media in this process;
* :mod:`sfu.plane.codec`: JSON-able encoding of every API value, for a channel to workers.

This package's ``__init__`` imports nothing, so importing the types never loads aiortc.
See docs/media-plane.md.
"""
