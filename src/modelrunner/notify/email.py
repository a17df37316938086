"""E-mail through the SMTP server of ``notifications.email`` (the standard library's smtplib).

The password is read from the environment variable ``password_env`` names (or from the file its
``*_FILE`` twin names) at each send, never stored, never logged; an SMTP error that repeats it
has it replaced by ``***``.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime

from modelrunner.auth.secrets import named_secret
from modelrunner.clock import utcnow
from modelrunner.errors import ModelrunnerError
from modelrunner.notify.sent import Sent, redacted
from modelrunner.spec.notify_spec import EmailSpec, SmtpSecurity


def message(spec: EmailSpec, to: str, subject: str, text: str, key: str, html: str | None = None) -> EmailMessage:
    """A plain-text mail, or with ``html`` one with both bodies (multipart/alternative). Its
    ``Message-ID`` is made of the delivery's idempotency key, the same on every attempt, so a mail
    sent twice (a crash after sending, before recording it) can be recognised as one by mail
    clients and filters."""
    domain = spec.sender.rpartition("@")[2] or "modelrunner"
    mail = EmailMessage()
    mail["From"] = spec.sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = f"<{key}@{domain}>"
    mail["X-Modelrunner-Delivery"] = key
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    return mail


def send(spec: EmailSpec, mail: EmailMessage, environ: Mapping[str, str]) -> Sent:
    """One SMTP conversation delivering ``mail``; the outcome, never an exception."""
    password = None
    if spec.password_env is not None:
        try:
            password = named_secret(spec.password_env, environ)
        except ModelrunnerError as exc:
            return Sent(False, None, exc.message)
        if password is None:
            return Sent(
                False,
                None,
                f"neither the environment variable {spec.password_env} (notifications.email.password_env) "
                f"nor {spec.password_env}_FILE is set on this server",
            )
    try:
        _converse(spec, mail, password)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = "; ".join(f"{to}: {code} {_text(reply)}" for to, (code, reply) in exc.recipients.items())
        return Sent(False, None, redacted(f"the SMTP server refused the recipient ({refused})", [password]))
    except smtplib.SMTPResponseException as exc:
        error = f"the SMTP server answered {exc.smtp_code} {_text(exc.smtp_error)}"
        return Sent(False, None, redacted(error, [password]))
    except (smtplib.SMTPException, OSError) as exc:
        where = f"{spec.host}:{spec.smtp_port}"
        return Sent(False, None, redacted(f"cannot send through {where}: {type(exc).__name__}: {exc}", [password]))
    return Sent(True, None, None)


def _converse(spec: EmailSpec, mail: EmailMessage, password: str | None) -> None:
    port = spec.smtp_port
    smtp: smtplib.SMTP
    if spec.security == SmtpSecurity.SSL:
        smtp = smtplib.SMTP_SSL(spec.host, port, timeout=spec.timeout, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(spec.host, port, timeout=spec.timeout)
    with smtp:
        if spec.security == SmtpSecurity.STARTTLS:
            smtp.starttls(context=ssl.create_default_context())
        if spec.username is not None:
            smtp.login(spec.username, password or "")
        smtp.send_message(mail)


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply
