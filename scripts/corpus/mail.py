"""Turns a raw RFC 822 message into "Subject + plain-text body": the part of an e-mail a person
writes. Headers (routing, MIME, spam scores) and HTML-only messages are left out, since they
are machine text or markup rather than e-mail prose."""

import email
import email.policy
import re

_QUOTED_PRINTABLE_SOFT_BREAK = re.compile(r"=\n")
_HTML_TAG = re.compile(r"</?(?:html|head|body|div|span|p|br|table|td|tr|font|a|img|center|b|i)\b[^>]*>", re.I)


def _plain_parts(message):
    for part in message.walk():
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_type() != "text/plain" or part.get_filename():
            continue
        try:
            body = part.get_content()
        except (LookupError, ValueError, AssertionError):
            # Unknown charsets and broken encodings occur in spam: decode bytes leniently.
            payload = part.get_payload(decode=True) or b""
            body = payload.decode("latin-1")
        yield body


def message_text(raw):
    """Returns "Subject: ...\\n\\nbody", or "" when the message has no plain-text part."""
    message = email.message_from_string(raw, policy=email.policy.default)
    try:
        subject = str(message.get("Subject", "") or "").strip()
    except (ValueError, IndexError):
        subject = ""
    bodies = [b.strip() for b in _plain_parts(message) if b.strip()]
    if not bodies:
        return ""
    body = _QUOTED_PRINTABLE_SOFT_BREAK.sub("", "\n\n".join(bodies))
    if len(_HTML_TAG.findall(body)) > 3:
        return ""
    return ("Subject: %s\n\n" % subject if subject else "") + body
