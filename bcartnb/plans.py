"""B-Cart's plans (プラン) and their names: the one table every layer may read.

A plan is plain data (its name, its English alias, its member cap): the settings check it at
load and :mod:`bcartnb.quota` does the monthly arithmetic with it, so it sits at the ground,
below both.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bcartnb.exceptions import SettingsError

__all__ = ["PLANS", "Plan", "resolve_plan"]


@dataclass(frozen=True)
class Plan:
    """A B-Cart plan. ``member_cap`` None means no cap at all (自社SMTP)."""

    key: str
    name: str
    member_cap: int | None

    @property
    def monthly_cap(self) -> int | None:
        """Twice the member cap: sized so every member can be mailed at least twice a month."""
        return None if self.member_cap is None else 2 * self.member_cap

    def __str__(self) -> str:
        return self.name


#: Every plan, in the order of the B-Cart price list; the key is the English alias.
PLANS: tuple[Plan, ...] = (
    Plan("light", "ライトプラン", 50),
    Plan("plan10", "プラン10", 1_000),
    Plan("plan30", "プラン30", 3_000),
    Plan("plan50", "プラン50", 5_000),
    Plan("plan100", "プラン100", 10_000),
    Plan("plan300", "プラン300", 30_000),
    Plan("own-smtp", "自社SMTP", None),
)


def _norm(name: str) -> str:
    # NFKC folds full-width digits, letters and spaces (プラン１０, ｌｉｇｈｔ, プラン　10),
    # which a Japanese IME produces as easily as the ASCII ones; case, spaces, _ and - are
    # not worth an error (プラン 10, plan 10, own_smtp, ownsmtp): no two plans differ by them.
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFKC", name).lower())


_BY_NAME: dict[str, Plan] = {}
for _p in PLANS:
    _BY_NAME[_norm(_p.key)] = _p
    _BY_NAME[_norm(_p.name)] = _p
_BY_NAME[_norm("ライト")] = PLANS[0]


def resolve_plan(name: str | Plan) -> Plan:
    """The plan for a Japanese name (プラン10) or an English alias (plan10); else a clear error."""
    if isinstance(name, Plan):
        return name
    plan = _BY_NAME.get(_norm(str(name)))
    if plan is None:
        valid = ", ".join(f"{p.name} ({p.key})" for p in PLANS)
        raise SettingsError(
            f"unknown plan {name!r}; valid plans: {valid}",
            ja=f"プラン「{name}」はありません。{'、'.join(p.name for p in PLANS)} のいずれかを"
            "指定してください。",
        )
    return plan
