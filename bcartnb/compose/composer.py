"""The Composer: a draft compiled once per campaign, then one member's mail as bytes, fast.

A :class:`Composer` is built once per campaign and compiles everything that does not depend on
the member: the Jinja templates, the From header, the MIME boundary, the encoded constant
headers, and for HTML mail the CSS inlining and the HTML-to-text conversion (the fast path,
:mod:`bcartnb.compose.fastpath`). Per member it only renders the fields that vary and writes
the bytes directly (base64 for UTF-8, 7bit for ISO-2022-JP), which is what makes 10,000
members take seconds rather than minutes (``bench/bench_compose.py``).
:meth:`Composer.to_email_message` builds the same mail with the standard library's
``EmailMessage``; the tests check that both parse back to the same thing.

Decisions worth knowing:

* ``raw`` is the wire format, ready for ``sendmail`` (:mod:`bcartnb.compose.wire`).
* Line ends: a lone CR or LF in a value is a line break in a text body, and white space in
  an HTML body (the HTML parser turns CR into LF); every part is written with CRLF only. A
  CR, LF or NUL in a value that lands in a header is a ComposeError naming member and field.
* No attachment can be added: there is no API for one, and the only MIME structures written
  are text/plain and multipart/alternative of text/plain + text/html.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from email import utils as email_utils
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from functools import partial
from typing import TYPE_CHECKING, Any

import css_inline
import pandas as pd
from markupsafe import Markup

from bcartnb.compose.checks import (
    check_header_value,
    check_member_header,
    check_size,
    encoding_error,
    member_id_of,
    recipient,
)
from bcartnb.compose.context import with_link, with_signature, with_token
from bcartnb.compose.fastpath import PlaceholderSpots, Protected, html_value, text_value
from bcartnb.compose.headers import (
    CHARSET,
    CRLF,
    ENCODINGS,
    encode_header_words,
    fold_words,
    from_header,
    message_id_affixes,
    plain_ascii_header,
    unsubscribe_lines,
)
from bcartnb.compose.mail import ComposedMail, Draft
from bcartnb.compose.plaintext import html_to_text, tidy_text
from bcartnb.compose.signature import Signature, insert_html_signature
from bcartnb.compose.tracking import LinkTracker, tracked_links
from bcartnb.compose.wire import text_part
from bcartnb.exceptions import ComposeError, TemplateError
from bcartnb.htmldepth import check_depth
from bcartnb.mailcheck import Finding, check_mail
from bcartnb.mailtokens import TrackSigner, message_token
from bcartnb.quota import now_tokyo
from bcartnb.templates import (
    SIGNATURE_FIELDS,
    UNSUBSCRIBE_TOKEN_FIELD,
    CompiledTemplate,
    RenderDeclined,
    check_fields,
    columns_for,
    compile_template,
    context_builder,
)

if TYPE_CHECKING:
    from bcartnb.settings import Settings

__all__ = ["Composer"]


class Composer:
    """A draft compiled once for a campaign; :meth:`compose` one member, :meth:`compose_all` many.

    ``clock`` returns the Date header's time (aware); tests inject it. ``warnings`` holds the
    campaign-level warnings (a signature already in the body, a missing signature).
    """

    def __init__(
        self,
        draft: Draft,
        settings: Settings,
        campaign_id: str,
        *,
        clock: Callable[[], datetime] | None = None,
        columns: Iterable[str] | None = None,
    ) -> None:
        if draft.encoding not in ENCODINGS:
            raise ComposeError(
                f"encoding must be one of {', '.join(ENCODINGS)}, not {draft.encoding!r}",
                ja=f"文字コード {draft.encoding!r} は使えません（utf-8 か iso-2022-jp）。",
            )
        self.draft = draft
        self.settings = settings
        self.campaign_id = str(campaign_id)
        self.encoding = draft.encoding
        self.clock = clock or now_tokyo
        self.warnings: list[str] = []
        name = draft.template or "draft"
        self.name = name
        # Every template of the campaign, bounded by the settings' render limits.
        self._compile = partial(
            compile_template, timeout=settings.render_timeout, max_size=settings.max_mail_bytes
        )

        subject_src = draft.subject.rstrip("\r\n")
        check_header_value(subject_src, f"template {name!r} (subject)")
        self.subject_t = self._compile(subject_src, name, "subject", False)
        self.body_t = self._compile(draft.body, name, "body", draft.html)
        if columns is not None:  # the member columns: a field none has is the template's typo
            cols = list(columns)
            check_fields(self.subject_t, cols)
            check_fields(self.body_t, cols)

        self.from_header = from_header(settings.from_name, settings.from_addr, self.encoding)
        self._mid_prefix, self._mid_suffix = message_id_affixes(
            self.campaign_id, settings.from_addr
        )
        self.boundary = "=_bcartnb_" + hashlib.sha256(self.campaign_id.encode()).hexdigest()[:24]

        self.unsub_ts: list[CompiledTemplate] = []
        for key, value in (
            ("unsubscribe_url", settings.unsubscribe_url),
            ("unsubscribe_mailto", settings.unsubscribe_mailto),
        ):
            if value:
                if key == "unsubscribe_mailto" and not value.lower().startswith("mailto:"):
                    value = "mailto:" + value
                self.unsub_ts.append(self._compile(value, key, "List-Unsubscribe", False))
        # the visible 配信停止 link follows the same setting: the URL, else the mailto
        link: CompiledTemplate | str = (
            self.unsub_ts[0] if self.unsub_ts else f"mailto:{settings.from_addr}"
        )
        self.one_click = bool(
            settings.unsubscribe_url and settings.unsubscribe_url.lower().startswith("https://")
        )

        names = set(self.subject_t.names) | set(self.body_t.names)
        for t in self.unsub_ts:
            names |= t.names
        used = columns_for(names)
        self._columns = None if used is None else used | {"id", "email"}

        sig = Signature.of(settings, draft)
        self.sig_text, self.sig_inline, self.sig_html = sig.text, sig.inline, sig.html
        self.warnings += sig.warnings
        self.sig_placed = bool(SIGNATURE_FIELDS & self.body_t.names)
        in_setting = any(UNSUBSCRIBE_TOKEN_FIELD in t.names for t in self.unsub_ts)
        token = with_token(
            with_signature(
                context_builder(names),
                names,
                Markup(self.sig_inline) if draft.html else self.sig_text,
            ),
            names,
            settings.unsubscribe_secret,
            "unsubscribe_url" if in_setting else f"template {name!r}",
            self.campaign_id,
        )
        self._context = with_link(token, names, link)
        self.fast_html = False
        self.fast_text = False
        #: Mails composed per path: "fast_text" (both parts by the fast templates), "fast_html"
        #: (the HTML only), "reference". Tests read it to know the fast path ran, not only
        #: that its bytes agree with the reference's.
        self.paths: Counter[str] = Counter()
        if draft.html:
            self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
            self._prepare_fast_html()

        self._date_cache: tuple[int, str] = (-1, "")
        self._head_tail = self._constant_tail()
        #: The campaign's click and open measurement, None when off (:mod:`.tracking`)
        self.tracker = self._tracker()

    # -- per campaign --

    def _tracker(self) -> LinkTracker | None:
        """Measuring needs the shop's ``[tracking] url`` and the campaign's ``track``; the
        secret is checked now, so a shop without it is refused when planning, not sending."""
        base = self.settings.tracking.base
        if base is None or not self.draft.track:
            return None
        signer = TrackSigner(self.settings.unsubscribe_secret, "[tracking] url")
        signature = (self.sig_html, self.sig_inline) if self.draft.html else (self.sig_text,)
        links = tracked_links(
            self.draft.body, self.draft.html, signature, (self.settings.unsubscribe_url,)
        )
        return LinkTracker(base, signer, self.campaign_id, links)

    def untracked(self) -> Composer:
        """This composer without click and open measurement: for a copy that is no member's
        mail (the administrator's 配信控え), whose clicks must count for nobody."""
        if self.tracker is None:
            return self
        twin = copy.copy(self)
        twin.tracker = None
        return twin

    @property
    def tracked_links(self) -> tuple[str, ...]:
        """The link table the ledger records with the campaign (empty when not measuring)."""
        return () if self.tracker is None else self.tracker.links

    def _prepare_fast_html(self) -> None:
        """Settle, from the template alone, whether the fast paths can be sound at all.

        Blocks are left to the reference path: a branch or a loop can open or close an
        element in one member's mail and not in another's, which the HTML parser mends
        differently from the one parse of the template the fast path rests on.
        """
        prot = Protected(self.body_t)
        if not prot.ok or not prot.only_values:
            return
        try:
            inlined = self._inline(prot.fill_signature(self.sig_inline))
        except (ValueError, css_inline.InlineError):
            return
        spots = PlaceholderSpots.of(inlined)
        source = prot.restore(inlined)
        if source is None or not spots.html_ok:
            return
        self.fast_html_t = self._compile(source, self.name, "body", True, finalize=html_value)
        self.fast_html = True
        text_source = prot.restore(html_to_text(inlined), for_text=True)
        if text_source is not None and spots.text_ok:
            self.fast_text_t = self._compile(
                text_source, self.name, "body", False, {"bcnb_text": text_value}
            )
            self.fast_text = True

    def _constant_tail(self) -> bytes:
        lines = ["MIME-Version: 1.0"]
        self._unsub_value: str | None = None
        if all(t.constant for t in self.unsub_ts):
            self._unsub_constant = True
            unsub = unsubscribe_lines(self.unsub_ts, self.one_click, None, {})
            self._unsub_value = unsub[0] if unsub else None
            lines += unsub
        else:
            self._unsub_constant = False
        return (CRLF.join(lines) + CRLF).encode("ascii")

    def _content_head(self) -> str:
        charset = CHARSET[self.encoding]
        if self.draft.html:
            return f'Content-Type: multipart/alternative; boundary="{self.boundary}"{CRLF}{CRLF}'
        return f'Content-Type: text/plain; charset="{charset}"{CRLF}'

    # -- per member --

    def date_header(self) -> str:
        """The Date header for a mail going out now, formatted once a second (10,000 mails
        share a handful); the spool renews its mails' Date with it as they go out."""
        if self.clock is now_tokyo:  # then time.time() says when the second changes
            key = int(time.time())
            if self._date_cache[0] != key:
                now = self.clock()
                self._date_cache = (int(now.timestamp()), email_utils.format_datetime(now))
            return self._date_cache[1]
        now = self.clock()
        key = int(now.timestamp())
        if self._date_cache[0] != key:
            self._date_cache = (key, email_utils.format_datetime(now))
        return self._date_cache[1]

    def message_id(self, member_id: Any) -> str:
        """Deterministic per campaign and member: a resent uncertain mail keeps its id."""
        return self._mid_prefix + message_token(str(member_id)) + self._mid_suffix

    def render_reference(self, member: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """(subject, text, html) by the straightforward per-member pipeline, no shortcuts."""
        member_id = member_id_of(member)
        ctx = self._context(member)
        subject = self.subject_t.render(ctx, member_id)
        text, html = self._reference_body(ctx, member_id)
        if self.tracker is not None:
            text, html = self.tracker.apply(member_id, text, html)
        return subject, text, html

    def _reference_body(self, ctx: Mapping[str, Any], member_id: Any) -> tuple[str, str | None]:
        body = self.body_t.render(ctx, member_id)
        if not self.draft.html:
            return self._finish_text(body), None
        html = _end_line(self._inline(body, member_id))
        return html_to_text(html), html

    def _inline(self, body: str, member_id: Any = None) -> str:
        """The signature placed and the CSS inlined, each only on HTML that cannot stall or
        crash it: checked as rendered, and again as css-inline gets it (signature included)."""
        self._check_depth(body, member_id)
        html = self._place_signature(body)
        if html is not body:
            self._check_depth(html, member_id)
        return self._inliner.inline(html)

    def _check_depth(self, html: str, member_id: Any = None) -> None:
        where, where_ja = self.body_t.where(None), self.body_t.where_ja(None)
        if member_id is not None:
            where = f"{where} for member {member_id}"
            where_ja = f"{where_ja}から作った会員 {member_id} のメール"
        check_depth(html, where, where_ja)

    def _place_signature(self, html: str) -> str:
        return html if self.sig_placed else insert_html_signature(html, self.sig_html)

    def _finish_text(self, body: str) -> str:
        if "\r" in body:
            body = body.replace("\r\n", "\n").replace("\r", "\n")
        if self.sig_text and not self.sig_placed:
            return body.rstrip("\n") + "\n\n" + self.sig_text + "\n"
        return body if not body or body.endswith("\n") else body + "\n"

    def _render(self, member_id: Any, ctx: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """What :meth:`render_reference` gives, by the fast path when this member allows it."""
        subject = self.subject_t.render(ctx, member_id)
        if self.fast_html:
            try:
                html = _end_line(self.fast_html_t.render(ctx, member_id))
            except (RenderDeclined, TemplateError):
                pass  # the reference path renders it (and words an error with its lines)
            else:
                text = self._fast_text(ctx, member_id) if self.fast_text else None
                self.paths["fast_html" if text is None else "fast_text"] += 1
                return subject, html_to_text(html) if text is None else text, html
        self.paths["reference"] += 1
        return (subject, *self._reference_body(ctx, member_id))

    def _fast_text(self, ctx: Mapping[str, Any], member_id: Any) -> str | None:
        try:
            return tidy_text(self.fast_text_t.render(ctx, member_id))
        except RenderDeclined:
            return None  # html_to_text of the (same) HTML, as the reference does

    def compose(self, member: Mapping[str, Any]) -> ComposedMail:
        """Render and encode one member's mail; a problem is a ComposeError or TemplateError."""
        member_id = member_id_of(member)
        to = recipient(member, member_id)
        ctx = self._context(member)
        subject, text, html = self._render(member_id, ctx)
        if self.tracker is not None:
            text, html = self.tracker.apply(member_id, text, html)
        check_member_header(subject, member_id, ctx, "subject", "件名")
        # Every character is at least a byte on the wire: refuse before encoding a giant.
        check_size(len(text) + len(html or ""), self.settings.max_mail_bytes, self.name, member_id)
        enc = self.encoding
        try:
            if plain_ascii_header(subject, 78 - len("Subject: ")):
                subj = subject
            else:
                subj = fold_words(encode_header_words(subject, enc, 76 - len("Subject: ")))
        except UnicodeEncodeError as err:
            raise encoding_error(err, member_id, "subject", ctx, CHARSET[enc]) from err
        date = self.date_header()
        message_id = self.message_id(member_id)
        head = (
            f"From: {self.from_header}{CRLF}To: {to}{CRLF}Subject: {subj}{CRLF}"
            f"Date: {date}{CRLF}Message-ID: {message_id}{CRLF}"
        )
        parts = [head.encode("ascii"), self._head_tail]
        unsub = self._unsub_value
        if not self._unsub_constant:
            lines = unsubscribe_lines(self.unsub_ts, self.one_click, member_id, ctx)
            unsub = lines[0]
            parts.append((CRLF.join(lines) + CRLF).encode("ascii"))
        parts.append(self._content_head().encode("ascii"))
        if html is None:
            parts.append(text_part(text, "plain", enc, member_id, ctx, with_type=False))
        else:
            b = self.boundary.encode("ascii")
            plain_part = text_part(text, "plain", enc, member_id, ctx)
            html_part = text_part(html, "html", enc, member_id, ctx)
            if b in plain_part or b in html_part:
                raise ComposeError(
                    f"member {member_id}: the mail contains the MIME boundary",
                    ja=f"会員 {member_id} のメールに MIME の区切り文字列が含まれています。",
                )
            # The CRLF before a delimiter belongs to the delimiter (RFC 2046), hence the extra one.
            parts += [
                b"--" + b + b"\r\n",
                plain_part,
                b"\r\n--" + b + b"\r\n",
                html_part,
                b"\r\n--" + b + b"--\r\n",
            ]
        raw = b"".join(parts)
        check_size(len(raw), self.settings.max_mail_bytes, self.name, member_id)
        return ComposedMail(
            member_id=member_id,
            to=to,
            subject=subject,
            text=text,
            html=html,
            raw=raw,
            message_id=message_id,
            date=date,
            list_unsubscribe=unsub.split(": ", 1)[1].replace(CRLF + " ", " ") if unsub else None,
        )

    def compose_all(
        self, members: pd.DataFrame | Iterable[Mapping[str, Any]]
    ) -> Iterator[ComposedMail]:
        """Compose every member in order, streaming (one chunk of rows in memory at a time)."""
        if isinstance(members, pd.DataFrame):
            read = self._columns
            keep = [c for c in members.columns if read is None or str(c) in read]
            columns = [str(c) for c in keep]
            n = len(members)
            for start in range(0, n, 1000):
                chunk = members.iloc[start : start + 1000]
                values = [chunk[c].tolist() for c in keep]
                for row in zip(*values, strict=True):
                    yield self.compose(dict(zip(columns, row, strict=True)))
        else:
            for member in members:
                yield self.compose(member)

    def check(self, mail: ComposedMail) -> list[Finding]:
        """送信前の確認 of one of this campaign's mails (:mod:`bcartnb.mailcheck`): the
        settings' sender name and the draft's charset are the composer's to give."""
        return check_mail(mail, sender_name=self.settings.from_name, charset=self.encoding)

    def to_email_message(self, mail: ComposedMail) -> EmailMessage:
        """The same mail built with the standard library, for comparison and for smtplib users."""
        msg = EmailMessage(policy=SMTP)
        msg["From"] = Address(
            display_name=self.settings.from_name, addr_spec=self.settings.from_addr
        )
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = mail.date
        msg["Message-ID"] = mail.message_id
        if mail.list_unsubscribe:
            msg["List-Unsubscribe"] = mail.list_unsubscribe
            if self.one_click:
                msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        charset = self.encoding
        if mail.html is None:
            msg.set_content(mail.text, charset=charset)
        else:
            msg.set_content(mail.text, charset=charset)
            msg.add_alternative(mail.html, subtype="html", charset=charset)
        return msg


def _end_line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
