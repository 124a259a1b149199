"""Simulcast in SDP (RFC 8853 ``a=simulcast``, RFC 8851 ``a=rid``): the one place that reads a
publisher's simulcast offer and writes the matching lines into our answer.

aiortc 1.16.0 neither parses ``a=rid``/``a=simulcast`` nor negotiates the RTP stream id header
extensions (RFC 8852 ``rtp-stream-id`` and ``repaired-rtp-stream-id``), so its answer to a
simulcast offer would make the browser fall back to one encoding. :func:`parse_simulcast_offer`
finds, per m-line, the rids the offer sends and the extension ids naming them;
:func:`answer_simulcast` adds ``a=extmap`` (same ids as offered), ``a=rid:<id> recv`` and
``a=simulcast:recv <ids>`` to the m-sections of our answer, nothing else.

Layer order: rids named ``q``, ``h`` and ``f`` (quarter, half, full resolution, LiveKit's
names) are ordered low to high whatever the order of the offer; other rids keep the order of
the ``a=simulcast`` line, which clients list lowest resolution first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sfu.errors import InvalidSdpError

__all__ = [
    "MAX_LAYERS",
    "URI_REPAIRED_RID",
    "URI_RID",
    "SimulcastOffer",
    "answer_simulcast",
    "parse_simulcast_offer",
]

URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

MAX_LAYERS = 3
"""Most simulcast layers accepted per m-line; an offer sending more is refused."""

_RID_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_KNOWN_ORDER = {"q": 0, "h": 1, "f": 2}


@dataclass(frozen=True, slots=True)
class SimulcastOffer:
    """The simulcast an offer's m-line sends.

    Attributes:
        mid: the m-line's mid.
        rids: the rids it sends (RFC 8851), lowest resolution first.
        rid_ext_id: the RFC 8285 id of the ``rtp-stream-id`` extension (0 when absent).
        repaired_rid_ext_id: the id of ``repaired-rtp-stream-id`` (0 when absent).
    """

    mid: str
    rids: tuple[str, ...]
    rid_ext_id: int
    repaired_rid_ext_id: int


def _sections(sdp: str) -> list[list[str]]:
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _ordered(rids: list[str]) -> tuple[str, ...]:
    if all(r in _KNOWN_ORDER for r in rids):
        return tuple(sorted(rids, key=_KNOWN_ORDER.__getitem__))
    return tuple(rids)


def parse_simulcast_offer(sdp: str) -> dict[str, SimulcastOffer]:
    """mid -> :class:`SimulcastOffer` for every video m-line of ``sdp`` that sends simulcast
    (``a=simulcast:send`` naming ``a=rid:<id> send`` lines, RFC 8853 §5.1). Alternatives
    (``a,b``) count as their first rid; rids paused in the offer (``~x``) are still layers.

    Raises:
        InvalidSdpError: a malformed rid, more than :data:`MAX_LAYERS` layers, a rid on the
            ``a=simulcast`` line with no ``a=rid`` line, or simulcast without the
            ``rtp-stream-id`` header extension (the SFU could not tell the layers apart).
    """
    out: dict[str, SimulcastOffer] = {}
    for section in _sections(sdp)[1:]:
        if not section[0].startswith("m=video"):
            continue
        mid = ""
        send_rids: list[str] = []
        declared: set[str] = set()
        ext: dict[str, int] = {}
        for line in section:
            if line.startswith("a=mid:"):
                mid = line[6:]
            elif line.startswith("a=rid:"):
                parts = line[6:].split()
                if len(parts) >= 2 and parts[1] == "send":
                    declared.add(parts[0])
            elif line.startswith("a=simulcast:"):
                words = line[len("a=simulcast:") :].split()
                for i in range(0, len(words) - 1, 2):
                    if words[i] == "send":
                        for alternatives in words[i + 1].split(";"):
                            first = alternatives.split(",")[0].lstrip("~")
                            send_rids.append(first)
            elif line.startswith("a=extmap:"):
                head, _, rest = line[9:].partition(" ")
                uri = rest.split()[0] if rest.split() else ""
                try:
                    ext[uri] = int(head.split("/")[0])
                except ValueError:
                    raise InvalidSdpError(f"bad extmap line: {line!r}") from None
        if not send_rids:
            continue
        for rid in send_rids:
            if not _RID_RE.match(rid):
                raise InvalidSdpError(f"invalid rid {rid!r} (RFC 8851 §10)")
            if rid not in declared:
                raise InvalidSdpError(f"a=simulcast names rid {rid!r} with no a=rid send line")
        if len(send_rids) > MAX_LAYERS or len(set(send_rids)) != len(send_rids):
            raise InvalidSdpError(f"at most {MAX_LAYERS} distinct simulcast layers per track")
        if not ext.get(URI_RID):
            raise InvalidSdpError("simulcast needs the rtp-stream-id header extension (RFC 8852)")
        out[mid] = SimulcastOffer(
            mid=mid,
            rids=_ordered(send_rids),
            rid_ext_id=ext[URI_RID],
            repaired_rid_ext_id=ext.get(URI_REPAIRED_RID, 0),
        )
    return out


def answer_simulcast(answer: str, offers: dict[str, SimulcastOffer]) -> str:
    """Our ``answer`` SDP with, in the m-section of each mid of ``offers`` that we accepted
    (port not 0): the ``rtp-stream-id``/``repaired-rtp-stream-id`` extmap lines with the
    offered ids (unless present), ``a=rid:<id> recv`` per layer and ``a=simulcast:recv`` with
    the layers (RFC 8853 §5.3). Other sections and lines are unchanged; CRLF line ends."""
    if not offers:
        return answer
    sections = _sections(answer)
    for section in sections[1:]:
        mid = next((line[6:] for line in section if line.startswith("a=mid:")), None)
        offer = offers.get(mid) if mid is not None else None
        if offer is None or section[0].split()[1] == "0":
            continue
        present = {line.split()[1] for line in section if line.startswith("a=extmap:")}
        extra = []
        if URI_RID not in present:
            extra.append(f"a=extmap:{offer.rid_ext_id} {URI_RID}")
        if offer.repaired_rid_ext_id and URI_REPAIRED_RID not in present:
            extra.append(f"a=extmap:{offer.repaired_rid_ext_id} {URI_REPAIRED_RID}")
        extra += [f"a=rid:{rid} recv" for rid in offer.rids]
        extra.append("a=simulcast:recv " + ";".join(offer.rids))
        section.extend(extra)
    return "".join(line + "\r\n" for section in sections for line in section)
