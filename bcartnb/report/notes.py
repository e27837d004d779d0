"""A campaign's notes beside the ledger: what only the notebook run knew.

The ledger's schema holds who, when, the parameters, the counts and every member's result;
what only the notebook knows (its scheduled time, the From and the subject as sent, the
quota seen before and after) is kept in a small JSON file per campaign in a folder beside
the ledger file, so ``bcartnb report ID`` can show it later. The ledger's schema is left
alone. The campaign id names the file, so its form is checked here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from bcartnb.exceptions import CampaignStateError
from bcartnb.files import write_atomically
from bcartnb.quota import TOKYO

__all__ = ["id_time", "is_campaign_id", "notes_path", "read_notes", "write_notes"]

_CAMPAIGN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")


def is_campaign_id(text: str) -> bool:
    """Whether ``text`` has a campaign id's form: safe to put in a file name."""
    return bool(_CAMPAIGN_ID.fullmatch(text))


def notes_path(db: Path, campaign_id: str) -> Path:
    """Where a campaign's notes are kept: ``<ledger>.reports/<campaign id>.json``."""
    if not is_campaign_id(campaign_id):
        raise CampaignStateError(
            f"{campaign_id!r} is not a campaign id (YYYYMMDD-HHMMSS-xxxxxx)",
            ja=f"キャンペーンIDの形式ではありません（{campaign_id!r}）。"
            "`bcartnb campaigns` で確かめてください。",
        )
    return db.with_name(db.name + ".reports") / f"{campaign_id}.json"


def write_notes(db: Path, campaign_id: str, notes: Mapping[str, Any]) -> None:
    """Whole or not at all: a report read while a run writes sees the old notes or the new."""
    path = notes_path(db, campaign_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(dict(notes), ensure_ascii=False, indent=1))


def read_notes(db: Path, campaign_id: str) -> dict[str, Any]:
    """The notes, or none: a campaign run from the command line has none, and a report
    without them still shows everything the ledger holds."""
    try:
        data = json.loads(notes_path(db, campaign_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def id_time(campaign_id: str) -> datetime | None:
    """When a campaign id was made (``YYYYMMDD-HHMMSS`` in Asia/Tokyo): a dry run's start."""
    try:
        return datetime.strptime(campaign_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=TOKYO)
    except ValueError:
        return None
