"""予約配信 with Apache Airflow: the campaign notebook at its scheduled time, via papermill.

Copy this file into Airflow's ``dags/`` folder on a machine where bcartnb is installed
(``pip install bcartnb apache-airflow-providers-papermill``) and adapt the paths. Not run by
bcartnb's tests (Airflow is not one of its dependencies); they only check that it is valid
Python that ruff accepts.

The task is safe to retry because a campaign goes out exactly once: a retry of a campaign
that ended unfinished (SMTP server down, mails deferred: the notebook fails after writing its
report, exit code 4 on the command line) continues that same campaign and mails nobody
twice; a retry of a finished one is refused before anything is sent. So:

* unfinished (4) or interrupted (130): the retries below continue it;
* over the quota (3), bad input (2) or refused mails (5): retrying changes nothing; the task
  fails once its retries are spent, and Airflow tells a person (``email_on_failure``).

The shop is the folder ``SHOP`` made by ``bcartnb init``: ``settings_path`` names its
``bcartnb.toml``, and with it come its ledger (the quota, the send history, the suppression
list, shared with the shop's marketers and any cron job) and its ``.env``. The SMTP password
comes from the worker's environment (``BCARTNB_SMTP_PASSWORD``) or that ``.env``, never from
the parameters: the executed notebook is kept as the report.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.providers.papermill.operators.papermill import PapermillOperator

SHOP = "/srv/shop"  # the shop folder (bcartnb init)

with DAG(
    dag_id="bcartnb_december_campaign",
    description="12月の新商品のご案内（予約配信）",
    schedule="0 9 1 12 *",  # 12月1日 9:00
    start_date=pendulum.datetime(2026, 11, 1, tz="Asia/Tokyo"),
    catchup=False,
    max_active_runs=1,  # one run at a time; the ledger refuses a second one anyway
    default_args={
        "retries": 4,
        "retry_delay": timedelta(minutes=30),
        "retry_exponential_backoff": True,
        "email_on_failure": True,
    },
) as dag:
    PapermillOperator(
        task_id="send_campaign",
        input_nb=f"{SHOP}/bcartnb/notebooks/campaign.ipynb",
        output_nb=f"{SHOP}/reports/campaign-{{{{ ds_nodash }}}}-{{{{ ti.try_number }}}}.ipynb",
        parameters={
            "members": f"{SHOP}/members.csv",
            "template": "テキストニュースレター",
            "filter": {"都道府県": ["東京都", "大阪府"]},
            "opt_in_only": True,
            "send": True,
            "scheduled_at": "{{ logical_date }}",
            "settings_path": f"{SHOP}/bcartnb.toml",
        },
    )
