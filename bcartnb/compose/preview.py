"""The confirmation screen's sample: the first members' mails as they will be sent, checked.

A member that cannot be composed is a :class:`Preview` with ``error`` set, so the screen shows
it instead of failing for the whole list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from bcartnb.compose.checks import plain
from bcartnb.exceptions import ComposeError, SelectionError, TemplateError
from bcartnb.mailcheck import Finding

if TYPE_CHECKING:
    from bcartnb.compose.composer import Composer

__all__ = ["Preview", "preview"]


@dataclass(frozen=True)
class Preview:
    """A rendered member for the confirmation screen; ``error`` instead of a mail when it fails."""

    member_id: Any
    subject: str = ""
    text: str = ""
    html: str | None = None
    raw: bytes = b""
    warnings: tuple[str, ...] = ()
    error: str | None = None
    checks: tuple[Finding, ...] = ()


def preview(
    composer: Composer,
    members: pd.DataFrame,
    n: int = 3,
    ids: Sequence[Any] | None = None,
) -> list[Preview]:
    """Render the first ``n`` members (or the given ``ids``) as they will be sent, checked.

    A member that cannot be composed gives a Preview with ``error`` set: the confirmation
    screen shows it instead of failing for the whole list.
    """
    if ids is not None:
        wanted = [str(i) for i in ids]
        have = members["id"].astype(str)
        known = set(have[have.isin(wanted)])
        missing = [i for i in wanted if i not in known]
        if missing:
            raise SelectionError(
                f"preview: member id {', '.join(missing)} not in the members",
                ja=f"会員ID {'、'.join(missing)} は会員ファイルにありません。",
            )
        rows = [
            {str(k): v for k, v in members[have == i].iloc[0].to_dict().items()} for i in wanted
        ]
    else:
        rows = [{str(k): v for k, v in r.items()} for r in members.head(n).to_dict("records")]
    out = []
    # shown with the links as written (a tracked link has no target before the campaign is
    # sent, and a click on it would count for the member); checked as it will be sent
    shown = composer.untracked()
    for row in rows:
        member_id = plain(row.get("id"))
        try:
            mail = composer.compose(row)
            view = mail if shown is composer else shown.compose(row)
        except (ComposeError, TemplateError) as err:
            out.append(Preview(member_id=member_id, error=str(err)))
            continue
        out.append(
            Preview(
                member_id=view.member_id,
                subject=view.subject,
                text=view.text,
                html=view.html,
                raw=view.raw,
                warnings=tuple(composer.warnings),
                checks=tuple(composer.check(mail)),
            )
        )
    return out
