"""The unsubscribe server's log, in Japanese: what the person who runs it reads on stderr.

uvicorn writes its own lines in English ("Started server process [12]", "Shutting down",
"Invalid HTTP request received."). It takes a ``log_config`` (a :func:`logging.config.dictConfig`
mapping): :func:`log_config` gives it one whose filter puts each of uvicorn's known lines into
Japanese, keeping its values (the process number), and writes the level in Japanese too; the
server's own lines (``bcartnb.unsubscribe``: what was unsubscribed, by campaign and member)
share the format. A line uvicorn adds in a later version passes through as it is.

Nothing here writes a request: uvicorn's access log stays off (:func:`make_server`), since a
request path holds the member's token and the client's address is nobody's business here;
every line is passed through :func:`~bcartnb.privacy.mask_text` as well, so an address that
reached a message (a ledger error quoting one) is masked like everywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from bcartnb.privacy import mask_text

__all__ = ["LEVELS_JA", "UVICORN_JA", "JapaneseLines", "log_config"]

#: uvicorn's lines (0.3x, its format strings as written) → the same in Japanese, same values.
UVICORN_JA: Final[Mapping[str, str]] = {
    "Started server process [%d]": "サーバーを開始しました（プロセス番号 %d）",
    "Finished server process [%d]": "サーバーを終了しました（プロセス番号 %d）",
    "Waiting for application startup.": "起動の準備をしています",
    "Application startup complete.": "起動しました",
    "Waiting for application shutdown.": "終了の準備をしています",
    "Application shutdown complete.": "終了の準備ができました",
    "Shutting down": "停止しています",
    "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)": (
        "%s://%s:%d で待ち受けています（Ctrl-C で停止します）"
    ),
    "Waiting for connections to close. (CTRL+C to force quit)": (
        "接続が閉じるのを待っています（すぐに止めるには、もう一度 Ctrl-C）"
    ),
    "Waiting for background tasks to complete. (CTRL+C to force quit)": (
        "処理中のリクエストが終わるのを待っています（すぐに止めるには、もう一度 Ctrl-C）"
    ),
    "Cancel %s running task(s), timeout graceful shutdown exceeded": (
        "停止の待ち時間を過ぎたため、処理中の %s 件を打ち切りました"
    ),
    "Invalid HTTP request received.": "HTTP として読めないリクエストを受け取りました（400 で応答）",
    "Unsupported upgrade request.": "対応していないプロトコル切り替え（Upgrade）の要求がありました",
    "No supported WebSocket library detected. Please use \"pip install 'uvicorn[standard]'\", "
    "or install 'websockets' or 'wsproto' manually.": "このサーバーは WebSocket を受け付けません",
    "Exception in ASGI application\n": "リクエストの処理中に思いがけないエラーが起きました\n",
    "ASGI callable returned without starting response.": (
        "応答を始めずに処理が終わりました（500 で応答）"
    ),
    "ASGI callable returned without completing response.": "応答の途中で処理が終わりました",
    "Exceeded concurrency limit.": "同時接続数の上限を超えました（503 で応答）",
}

#: The level each line is written with.
LEVELS_JA: Final[Mapping[str, str]] = {
    "DEBUG": "詳細",
    "INFO": "情報",
    "WARNING": "警告",
    "ERROR": "エラー",
    "CRITICAL": "重大なエラー",
}

_FORMAT: Final = "%(asctime)s %(level_ja)s: %(message)s"


class JapaneseLines(logging.Filter):
    """Puts uvicorn's known lines and every level into Japanese, and masks addresses."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_text(UVICORN_JA.get(record.msg, record.msg))
        if record.args:
            masked = tuple(mask_text(a) if isinstance(a, str) else a for a in record.args)
            record.args = masked
        record.level_ja = LEVELS_JA.get(record.levelname, record.levelname)
        return True


def log_config() -> dict[str, Any]:
    """What ``uvicorn.Config(log_config=...)`` takes: uvicorn's loggers and the server's own
    on stderr in one Japanese format; uvicorn's access logger writes nowhere."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ja": {"()": JapaneseLines}},
        "formatters": {"ja": {"format": _FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "ja",
                "filters": ["ja"],
            },
            "nowhere": {"class": "logging.NullHandler"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["nowhere"], "level": "INFO", "propagate": False},
            "bcartnb.unsubscribe": {"handlers": ["stderr"], "level": "INFO"},
        },
    }
