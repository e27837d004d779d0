"""The B-Cart API: members pulled into a snapshot file, suppressions pushed back.

    client.py    BcartClient: httpx, the 300-per-300 s limit, Retry-After, retries, the token
    pages.py     any list page by page (GET /customers, /orders); stops an API that repeats
                 or never ends; keeps the pages and resumes
    snapshot.py  pull → the CSV export's text → members.typed_members → a Parquet snapshot
    orders.py    GET /orders?complete=1 (after the first pull only those changed since,
                 merged by order) → the 受注 CSV's text → orders.typed_orders → a Parquet
                 snapshot (its shapes, and what is unverified, are in its docstring)
    push.py      the list resolved to members (hygiene.writeback) → the ledger's BcartChange
                 list → PATCH /customers, each accepted one recorded; the rest listed

Where each shape comes from (B-Cart publishes no Python client and its reference at
docs.api.bcart.jp is a Postman page; these were read from public pages and code):

- Base URL ``https://api.bcart.jp/api/v1``, ``Authorization: Bearer`` with a personal
  access token from プライベートアプリ管理 (scopes ``customers-read``/``customers-write``):
  the B-Cart developer start guide (api.bcart.jp/start) and integrators' setup guides.
- The limit of 300 requests per 300 seconds, a 300-second lock-out, and ``Retry-After``
  only on the answer that went over: B-Cart's own article on its API documentation
  (bcart.jp/post/detail/187).
- ``GET /customers?limit=100&offset=N`` answering ``{"customers": [...]}`` with the keys
  ``id, ext_id, comp_name, comp_name_kana, department, tanto_last_name, tanto_first_name,
  email, email_cc, tel, mobile_phone, zip, pref, address1-3, price_group_id, view_group_id,
  salesman_id, mm_flag (0/1), status, created_at, updated_at`` and ``customs``: public
  client code for the API (typed models in C# and Java, a batch job's notes on limit 100
  and offset paging).
- ``customs`` as ``[{"field_id": 11, "value": "..."}]``: a public C# client's model.
- ``GET /customer_customs`` answering ``{"customer_customs": [{"id", "name", "is_active",
  "input_type", ...}]}``: B-Cart's API news of 2021-08 (api.bcart.jp/news/25).
- ``is_invalid_email`` (メールアドレス無効設定) readable and writable on customers: B-Cart's API
  news (api.bcart.jp/news/39).
- ``PATCH /customers`` with ``{"customers": [{"id": ..., field: value}]}``, 100 a request:
  B-Cart's β2 notes (会員一括更新API, api.bcart.jp/news/2) and a public client's bulk update.

Not yet verified against the live API (the tests' local server follows the shapes above):
the status code of the lock-out (429 is assumed; any 5xx is retried too), what a page past
the end answers (an empty list, or a 404, are both read as the end), whether a page announces
the number of members (a top-level integer ``total`` is used when present, never required),
the date format of ``created_at`` (``2021-03-05 16:24:10`` as in the news; B-Cart's CSV
form ``2021/03/05 16:24:10`` is read as well), the value of a multi-choice custom field (a
list is joined with commas), whether ``PATCH /customers`` caps a batch below 100, and what
it answers for an unknown member id.
"""

from __future__ import annotations

from bcartnb.bcart_api.client import BcartClient, RateLimiter, WaitTooLong
from bcartnb.bcart_api.pages import (
    MAX_MEMBERS,
    PAGE_SIZE,
    PartialPull,
    PullStopped,
    fetch_customers,
)
from bcartnb.bcart_api.push import (
    BATCH_SIZE,
    PushPlan,
    PushReport,
    describe,
    latest_snapshot,
    plan_push,
    push_suppressions,
)
from bcartnb.bcart_api.snapshot import (
    DEFAULT_SNAPSHOT,
    Pulled,
    customers_text,
    partial_path,
    pull,
    pull_snapshot,
    read_snapshot,
    snapshot_info,
    write_snapshot,
)

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_SNAPSHOT",
    "MAX_MEMBERS",
    "PAGE_SIZE",
    "BcartClient",
    "PartialPull",
    "PullStopped",
    "Pulled",
    "PushPlan",
    "PushReport",
    "RateLimiter",
    "WaitTooLong",
    "customers_text",
    "describe",
    "fetch_customers",
    "latest_snapshot",
    "partial_path",
    "plan_push",
    "pull",
    "pull_snapshot",
    "push_suppressions",
    "read_snapshot",
    "snapshot_info",
    "write_snapshot",
]
