"""Draft → one ready-to-send message per member: merge fields, signature, HTML + text, headers.

One module a concern, the :class:`Composer` on top of them:

* :mod:`~bcartnb.compose.mail`: the :class:`Draft` going in and the :class:`ComposedMail`
  coming out;
* :mod:`~bcartnb.compose.composer`: the Composer, compiled once per campaign, one member's
  bytes per call;
* :mod:`~bcartnb.compose.headers`: RFC 2047 words, the From, Message-ID and List-Unsubscribe
  lines;
* :mod:`~bcartnb.compose.wire`: a text part's bytes (CRLF, base64 or 7bit);
* :mod:`~bcartnb.compose.checks`: what a member's values may not bring into a mail;
* :mod:`~bcartnb.compose.context`: the signature and unsubscribe token a template may name;
* :mod:`~bcartnb.compose.plaintext`: the text part of an HTML mail (html2text, plain Japanese);
* :mod:`~bcartnb.compose.signature`: the signature's forms and its place in an HTML layout;
* :mod:`~bcartnb.compose.fastpath`: which members' HTML mails can skip the per-member pipeline;
* :mod:`~bcartnb.compose.preview`: the confirmation screen's checked sample.
"""

from bcartnb.compose.composer import Composer
from bcartnb.compose.headers import ENCODINGS, encode_header_words
from bcartnb.compose.mail import ComposedMail, Draft
from bcartnb.compose.plaintext import html_to_text
from bcartnb.compose.preview import Preview, preview

__all__ = [
    "ENCODINGS",
    "ComposedMail",
    "Composer",
    "Draft",
    "Preview",
    "encode_header_words",
    "html_to_text",
    "preview",
]
