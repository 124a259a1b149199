"""Delivery of one-time login codes: a :class:`CodeSender` protocol and two senders.

:class:`LogCodeSender` (the default) writes the code to the server log, which is what a
developer or a single-operator deployment wants. :class:`SmtpCodeSender` mails codes for email
identities through ``smtplib`` in a worker thread (``SFU_SMTP_*`` settings); phone identities
fall back to the log (no SMS gateway is wired). Choose with :func:`sender_from_settings`.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from datetime import datetime
from email.message import EmailMessage
from typing import Literal, Protocol

from signaling.settings import Settings

log = logging.getLogger("signaling.auth.codes")

Channel = Literal["email", "phone"]


class CodeSender(Protocol):
    """Delivers a 6-digit code to ``address`` (an email or E.164 phone number)."""

    async def send(self, channel: Channel, address: str, code: str, expires_at: datetime) -> None:
        """Deliver ``code`` (valid until ``expires_at``); raise ``OSError`` on failure."""
        ...


class LogCodeSender:
    """Writes codes to the ``signaling.auth.codes`` logger at INFO level."""

    async def send(self, channel: Channel, address: str, code: str, expires_at: datetime) -> None:
        """Log the code."""
        log.info(
            "one-time login code for %s %s: %s (valid until %s)",
            channel,
            address,
            code,
            expires_at.isoformat(timespec="seconds"),
        )


class SmtpCodeSender:
    """Mails codes with ``smtplib`` (STARTTLS and login when configured), in a thread."""

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        username: str | None = None,
        password: str | None = None,
        sender: str = "sfu@localhost",
        starttls: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.sender = sender
        self.starttls = starttls
        self.timeout_s = timeout_s
        self._fallback = LogCodeSender()

    def _message(self, address: str, code: str, expires_at: datetime) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = address
        message["Subject"] = f"Your sign-in code: {code}"
        message.set_content(
            f"Your sign-in code is {code}.\n\n"
            f"It is valid until {expires_at.isoformat(timespec='seconds')} and can be used once.\n"
            "If you did not ask for it, ignore this message.\n"
        )
        return message

    def _send_sync(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)

    async def send(self, channel: Channel, address: str, code: str, expires_at: datetime) -> None:
        """Mail the code (email identities); log it for phone identities."""
        if channel != "email":
            await self._fallback.send(channel, address, code, expires_at)
            return
        await asyncio.to_thread(self._send_sync, self._message(address, code, expires_at))


def sender_from_settings(settings: Settings) -> CodeSender:
    """:class:`SmtpCodeSender` when ``settings.smtp_host`` is set, else :class:`LogCodeSender`."""
    if settings.smtp_host:
        return SmtpCodeSender(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
        )
    return LogCodeSender()
