#!/bin/sh
# 予約配信: run a campaign at its scheduled time (from cron, or any scheduler that runs a
# command), write the executed notebook as its report, and exit with bcartnb's exit code.
#
#   cd /srv/shop && examples/scheduled-campaign.sh PARAMS.yaml [REPORT_DIR]
#
# Run it in the shop folder (made by `bcartnb init`): the notebook's kernel runs there too, so
# it finds the shop's bcartnb.toml, its ledger and its .env as every bcartnb face does; the
# quota, the send history and the suppression list are the shop's, whoever runs what.
#
# PARAMS.yaml holds the campaign notebook's parameters (members, template, filter, ...);
# send=True and scheduled_at are added here. Exit codes (the same as `bcartnb run`):
#   0    finished, every mail accepted                      -> nothing to do
#   2    bad input or settings, or the campaign already     -> tell a person; retrying
#        went out (nothing was sent this time)                 changes nothing
#   3    over this month's メール配信上限数 (nothing sent)     -> tell a person
#   4    unfinished (server down, mails deferred)            -> run the same line again later:
#                                                              it continues the campaign and
#                                                              mails nobody twice
#   5    finished, some mails refused for good (5xx)        -> tell a person; do not retry
#   130  interrupted                                        -> run again later (continues)
#   1    anything else (the kernel died, papermill missing)  -> run again later; it is safe
#
# The SMTP password comes from the environment or the shop's .env, never from PARAMS.yaml.
set -u

params=${1:?"使い方: scheduled-campaign.sh PARAMS.yaml [REPORT_DIR]"}
reports=${2:-reports}
here=$(cd "$(dirname "$0")" && pwd)
notebook=${BCARTNB_NOTEBOOK:-$here/../notebooks/campaign.ipynb}
python=${PYTHON:-python}

mkdir -p "$reports" || exit 1
scheduled_at=$(date -Iseconds)
report="$reports/campaign-$(date +%Y%m%d-%H%M%S).ipynb"

"$python" -m papermill "$notebook" "$report" --log-level WARNING --cwd "$(pwd)" \
    -f "$params" -p send True -p scheduled_at "$scheduled_at"
"$python" "$here/notebook_exit_code.py" "$report"
code=$?
echo "bcartnb: 予約配信 $scheduled_at の結果: 終了コード $code（レポート: $report）" >&2
exit "$code"
