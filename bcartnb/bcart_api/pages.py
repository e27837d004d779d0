"""Paging through ``GET /customers``: every member once, a pull that always ends, and resumes.

An API that ignores ``offset`` answers the first page forever, and one that invents members
never reaches a short page: both once cost a shop its whole request allowance and grew the
process without end. So a pull stops, with one Japanese line, at

* a page that brings no member not seen already (the API repeats itself): a page shifted by
  sign-ups during the pull still brings new ones, so only a list that does not move forward
  is stopped;
* more members than the API announced (a top-level integer ``total`` in the reply, when it
  sends one), or than :data:`MAX_MEMBERS` when it does not.

What was fetched is not lost: with a :class:`PartialPull` (``bcartnb bcart pull`` keeps one
beside the snapshot, ``FILE.parquet.partial``) each page is appended to that file as it
arrives, so a pull stopped by a lock-out, a dropped network, Ctrl-C or even SIGKILL continues
at the page it had reached the next time, for :data:`RESUME_WITHIN`. The snapshot then says it
was pulled when the first page was (the oldest data in it), and the warning says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from bcartnb.bcart_api.client import BcartClient
from bcartnb.exceptions import BcartApiError, BcartnbError

__all__ = [
    "MAX_MEMBERS",
    "PAGE_SIZE",
    "RESUME_WITHIN",
    "PartialPull",
    "PullStopped",
    "fetch_customers",
    "fetch_pages",
    "showing_progress",
]

#: ``GET /customers`` returns at most 100 members a request (``limit``), paged by ``offset``.
PAGE_SIZE: Final = 100
#: A pull with no announced total stops past this many members. The largest B-Cart plan
#: (プラン300) is sized for 30,000 members; more than three times that is not a shop's list
#: but an API that never ends. It is 1,000 requests (about 17 minutes at 300 per 300 s) and
#: a few hundred megabytes of members at most. ``fetch_customers(max_members=)`` raises it.
MAX_MEMBERS: Final = 100_000
#: A stopped pull is continued only this long after it began: older pages are pulled again.
RESUME_WITHIN: Final = timedelta(hours=24)
_FORMAT: Final = 1


class PullStopped(BcartApiError):
    """The API does not move forward (a repeated page) or does not end (past its total)."""


class PartialPull:
    """The pages of one pull so far, appended to a private file as each arrives.

    The first line names the API, the page size, the query (``query``: the orders' changed
    since) and when the pull began; each next line is one page (``{"offset": n, key: [...]}``,
    ``key`` being ``customers`` or ``orders``). A line cut short by a crash is ignored. The
    file is locked while a pull uses it: a second pull into the same snapshot is refused
    rather than mixing pages with the first.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        api_url: str,
        page_size: int,
        *,
        key: str = "customers",
        query: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.api_url = api_url
        self.page_size = page_size
        self.key = key
        self.query = dict(query or {})
        self.pages: list[tuple[int, list[dict[str, Any]]]] = []
        self.started_at: datetime | None = None
        self._fd: int | None = None

    def open(self, now: datetime) -> PartialPull:
        """Lock the file and load its pages if they belong to this pull; else start anew."""
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as err:
            raise _file_error(self.path, err) from err
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise BcartApiError(
                f"{self.path}: another bcart pull is writing this snapshot",
                ja="同じスナップショットへの bcart pull が実行中です。"
                "終わってからやり直してください。",
            ) from None
        self._load(now)
        if self.started_at is None:
            self.restart(now)
        return self

    def _load(self, now: datetime) -> None:
        assert self._fd is not None
        with open(self._fd, "rb", closefd=False) as fh:
            fh.seek(0)
            lines = fh.read().split(b"\n")
        try:
            head = json.loads(lines[0])
            started = datetime.fromisoformat(head["started_at"])
            same = head.get("format") == _FORMAT and head.get("api_url") == self.api_url
            same = same and head.get("page_size") == self.page_size
            same = same and head.get("query", {}) == self.query
            fresh = timedelta(0) <= now - started <= RESUME_WITHIN
        except (ValueError, KeyError, TypeError, IndexError):
            return
        if not same or not fresh:
            return
        pages = []
        for line in lines[1:]:
            try:
                page = json.loads(line)
                pages.append((int(page["offset"]), list(page[self.key])))
            except (ValueError, KeyError, TypeError):
                break  # the line a crash cut short, and nothing after it
        if pages:
            self.started_at, self.pages = started, pages

    def _append(self, record: dict[str, Any]) -> None:
        assert self._fd is not None
        data = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            while data:  # O_APPEND: each write lands at the end
                data = data[os.write(self._fd, data) :]
        except OSError as err:
            raise _file_error(self.path, err) from err

    def add(self, offset: int, customers: list[dict[str, Any]]) -> None:
        self.pages.append((offset, customers))
        self._append({"offset": offset, self.key: customers})

    @property
    def members(self) -> int:
        return sum(len(page) for _, page in self.pages)

    def restart(self, now: datetime) -> None:
        """Forget the pages (the list moved since they were fetched) and begin again."""
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        self.started_at, self.pages = now, []
        head = {"format": _FORMAT, "api_url": self.api_url, "page_size": self.page_size}
        if self.query:  # absent for the members': their kept files read as before
            head["query"] = self.query
        self._append({**head, "started_at": now.isoformat()})

    def discard(self) -> None:
        """The snapshot is written (or its members are wrong): nothing to resume."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def _file_error(path: Path, err: OSError) -> BcartApiError:
    return BcartApiError(
        f"{path}: cannot keep the pulled pages: {err.strerror or err}",
        ja=f"取得途中のデータを {path} に保存できません"
        "（フォルダーと書き込み権限を確かめてください）。",
    )


def fetch_customers(
    client: BcartClient,
    *,
    page_size: int = PAGE_SIZE,
    progress: bool | Callable[[int], None] = True,
    max_members: int = MAX_MEMBERS,
    partial: PartialPull | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every member, page by page (``limit``/``offset``), and the warnings of the pull.

    A page shorter than ``page_size`` is the last; a 404 past the first page is read as
    "no more" too. Paging by offset can see a member twice when members are added during
    the pull: the later copy is kept, and the warning says so. A page with nothing new, or
    more members than the API's ``total`` or ``max_members``, is a :class:`PullStopped`.
    With ``partial``, pages already kept there are not fetched again, each new page is kept,
    and any error says how many members were kept for the next pull.
    """
    return fetch_pages(
        client,
        _CUSTOMERS,
        page_size=page_size,
        progress=progress,
        ceiling=max_members,
        partial=partial,
    )


class _Resource:
    """One list of the API paged the same way: its path (also its reply's key), its
    Japanese noun for the messages, and the query every page is asked with."""

    def __init__(self, path: str, noun: str, query: dict[str, Any] | None = None) -> None:
        self.path = path
        self.noun = noun
        self.query = dict(query or {})


_CUSTOMERS: Final = _Resource("customers", "会員")


def fetch_pages(
    client: BcartClient,
    resource: str | _Resource,
    *,
    noun: str = "",
    query: dict[str, Any] | None = None,
    page_size: int = PAGE_SIZE,
    progress: bool | Callable[[int], None] = True,
    ceiling: int = MAX_MEMBERS,
    partial: PartialPull | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every item of one list of the API (``GET /{resource}``, its reply's ``{resource}``
    key), by the members' rules: the same paging, ends, repeats, resume and warnings.

    ``query`` is sent with every page (``updated_at_min`` for the orders changed since);
    ``noun`` names the items in the Japanese messages (受注).
    """
    what = resource if isinstance(resource, _Resource) else _Resource(resource, noun, query)
    pager = _Pager(client, page_size, ceiling, partial, what)
    with showing_progress(client, progress, what.noun) as bar:
        try:
            pager.run(bar)
        except BcartnbError as err:
            if partial is not None and partial.members:
                _say_kept(err, partial)
            raise
    return list(pager.members.values()), pager.warnings()


@contextlib.contextmanager
def showing_progress(
    client: BcartClient, progress: bool | Callable[[int], None], noun: str = "会員"
) -> Iterator[Callable[[int], None]]:
    """The progress callback for a pull, with the client's long waits shown on the bar.

    ``progress``: True for a tqdm bar (a widget in Jupyter, a bar in a terminal) that also
    shows each wait's time left, a callable (members per page, -1 at the end), or False.
    """
    bar, on_wait = _bar(progress, noun)
    previous = client.on_wait
    client.on_wait = on_wait or previous
    try:
        yield bar
    finally:
        client.on_wait = previous
        bar(-1)


class _Pager:
    """One walk through the pages: what was seen, where it is, when to stop."""

    def __init__(
        self,
        client: BcartClient,
        page_size: int,
        ceiling: int,
        partial: PartialPull | None,
        resource: _Resource = _CUSTOMERS,
    ) -> None:
        self.client = client
        self.resource = resource
        self.page_size = page_size
        self.ceiling = ceiling
        self.partial = partial
        self.members: dict[int, dict[str, Any]] = {}
        self.seen = 0
        self.offset = 0
        self.resumed = 0

    def run(self, bar: Callable[[int], None]) -> None:
        resuming = self.partial is not None and self.partial.pages
        if resuming and self.partial is not None and not self._resume(self.partial, bar):
            return  # the kept pages already reached the end
        while True:
            items, total = self._fetch()
            if items is None:
                return
            fresh = sum(1 for m in items if self._id(m, self.offset) not in self.members)
            if items and not fresh:
                raise self._repeated(items)
            self._take(items, self.offset)
            if self.partial is not None:
                self.partial.add(self.offset, items)
            bar(len(items))
            self._check_end(total)
            if len(items) < self.page_size:
                return
            self.offset += len(items)

    def _fetch(self) -> tuple[list[dict[str, Any]] | None, int | None]:
        query = {"limit": self.page_size, "offset": self.offset, **self.resource.query}
        return self._items(self.client.get(self.resource.path, query))

    def _resume(self, partial: PartialPull, bar: Callable[[int], None]) -> bool:
        """Take the kept pages, if the list has not moved since; False when they are all.

        The last kept page is fetched again first: members added or deleted in front of it
        since would shift every offset, and a resumed pull would then miss members without
        a word. If that page's members are not the same ones, the pull starts over.
        """
        offset, last = partial.pages[-1]
        self.offset = offset
        again, _ = self._fetch()
        if again is None or [self._id(m, offset) for m in again] != [
            self._id(m, offset) for m in last
        ]:
            began = partial.started_at
            partial.restart(datetime.now(began.tzinfo if began else None))
            self.offset = 0
            return True
        self.resumed = partial.members
        for at, items in partial.pages[:-1]:
            self._take(items, at)
        self._take(again, offset)  # the fresher copy of the page fetched twice
        bar(self.seen)
        self.offset = offset + len(last)
        return len(last) == self.page_size

    def _items(self, page: Any) -> tuple[list[dict[str, Any]] | None, int | None]:
        if page is None and self.offset > 0:
            return None, None
        path, noun = self.resource.path, self.resource.noun
        if page is None:
            raise BcartApiError(
                f"GET {self.client.api_url}/{path}: HTTP 404 (is [bcart] api_url right?)",
                ja=f"BカートAPIの{noun}一覧が見つかりません。[bcart] api_url を確かめてください。",
            )
        items = page.get(path) if isinstance(page, dict) else None
        if not isinstance(items, list) or not all(isinstance(m, dict) for m in items):
            raise BcartApiError(
                f"GET {path}?offset={self.offset}: the reply has no list of {path}",
                ja=f"BカートAPIの{noun}一覧の応答（offset={self.offset}）の形が想定と違います。",
            )
        total = page.get("total")
        ok = isinstance(total, int) and not isinstance(total, bool) and total >= 0
        return items, total if ok else None

    def _take(self, items: list[dict[str, Any]], offset: int) -> None:
        for member in items:
            self.members[self._id(member, offset)] = member
        self.seen += len(items)

    def _id(self, item: dict[str, Any], offset: int) -> int:
        return _member_id(item, offset, self.resource)

    def _repeated(self, items: list[dict[str, Any]]) -> PullStopped:
        path, noun = self.resource.path, self.resource.noun
        return PullStopped(
            f"GET {path}?offset={self.offset}: the page holds only {path} already "
            f"fetched ({len(items)} of them): the API does not move forward (is offset "
            "ignored?)",
            ja=f"BカートAPIが取得済みの{noun}だけを返しました（{self.offset:,} 件目から）。"
            "同じページを繰り返しているため取得を止めました。",
        )

    def _check_end(self, total: int | None) -> None:
        limit = total if total is not None else self.ceiling
        if len(self.members) <= limit:
            return
        path, noun = self.resource.path, self.resource.noun
        said = f"the API's total of {total:,}" if total is not None else f"{limit:,} {path}"
        raise PullStopped(
            f"GET {path}?offset={self.offset}: more than {said}: the list does not end",
            ja=f"BカートAPIの{noun}一覧が終わりません（{limit:,} 件を超えました）。"
            "取得を止めました。",
        )

    def warnings(self) -> list[str]:
        out = []
        if self.seen > len(self.members):
            out.append(
                f"取得中に{self.resource.noun}が追加・変更されたため、"
                f"{self.seen - len(self.members)} 件を"
                "重複として除きました（最新の内容を使っています）。"
            )
        if self.resumed and self.partial is not None and self.partial.started_at is not None:
            began = self.partial.started_at.strftime("%Y-%m-%d %H:%M")
            out.append(
                f"前回止まった取得の続きから取得しました（{self.resumed:,} 件は {began} に"
                "取得したもの）。取得日時はその時刻として記録します。"
            )
        return out


def _member_id(member: dict[str, Any], offset: int, resource: _Resource = _CUSTOMERS) -> int:
    mid = member.get("id")
    if isinstance(mid, bool) or not isinstance(mid, int):
        path, noun = resource.path, resource.noun
        raise BcartApiError(
            f"GET {path}?offset={offset}: an item without an integer id: {mid!r:.40}",
            ja=f"BカートAPIの応答（offset={offset}）に{noun}IDのない{noun}があります: {mid!r:.40}",
        )
    return mid


def _say_kept(err: BcartnbError, partial: PartialPull) -> None:
    """Add to the error how many members were kept, and that the next pull goes on."""
    kept = partial.members
    command = "bcartnb bcart pull" + ("" if partial.key == "customers" else f" --{partial.key}")
    err.ja += (
        f" 取得済みの {kept:,} 件は {partial.path} に残しました。"
        f"もう一度 {command} を実行すると続きから取得します。"
    )
    err.args = (f"{err} ({kept} {partial.key} kept in {partial.path} for the next pull)",)


def _bar(
    progress: bool | Callable[[int], None], noun: str
) -> tuple[Callable[[int], None], Callable[[float], None] | None]:
    """tqdm.auto, the caller's callback, or none; and what shows a wait on the bar."""
    if callable(progress):
        return progress, None
    if not progress:
        return (lambda n: None), None
    from tqdm.auto import tqdm

    bar = tqdm(desc=f"{noun}を取得中", unit="件")

    def update(n: int) -> None:
        if n < 0:
            bar.close()
        else:
            bar.update(n)

    def waiting(left: float) -> None:
        if left <= 0:
            bar.set_postfix_str("", refresh=True)
            return
        minutes, seconds = divmod(int(left + 0.999), 60)
        bar.set_postfix_str(f"APIの制限で待機中 残り {minutes}:{seconds:02d}", refresh=True)

    return update, waiting
