"""The failure alert's shell: what failed in a run, read from the run's events in the instance, and
one `:rotating_light: ECM Manager Error` per failed run of the live tick.

Two paths post it. The daemon's run-failure sensor (`failure_alert_sensor`) sees every failed run
of the code location; `ecm triage` runs in-process, where no daemon may be running, and posts it
itself. Both publish under the same identity (message `failure_alert`, partition = the run id), so
whichever comes second, and a sensor evaluated again, updates the one alert instead of adding one.
"""

from __future__ import annotations

import os

import dagster as dg

from ecm_pipeline.domain.alerts import Failure, failure_alert
from ecm_pipeline.resources.slack import Delivery, SlackDestinationResource
from ecm_pipeline.run_context import run_ticks, started_at, why_not_live
from ecm_pipeline.settings import load_settings

# Values that must never reach Slack even if a library puts them in an error message.
SECRET_VARIABLES = ("REDSHIFT_PASSWORD", "SLACK_BOT_TOKEN", "GOOGLE_SERVICE_ACCOUNT_JSON", "AWS_SECRET_ACCESS_KEY")


def secret_values() -> list[str]:
    return [os.environ.get(name, "") for name in SECRET_VARIABLES]


def step_error(data) -> str:
    """The message of a step failure: a `dg.Failure`'s description, else the root error's message."""
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error.cause or data.error
    message = error.message.strip() or error.cls_name
    # "SomeError: text" -> "text": the class name is noise in a one-line alert.
    head, _, rest = message.partition(": ")
    return rest if rest and head.rsplit(".", 1)[-1] == error.cls_name else message


def _events(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> list:
    return [r.event_log_entry.dagster_event for r in instance.get_records_for_run(run_id, of_type=event_type).records
            if r.event_log_entry.dagster_event is not None]


def failure_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Failure:
    """What failed in `run`: the first failed step, the assets (or checks) it was to produce, its error."""
    produces: dict[str, list[str]] = {}
    for event in _events(instance, run.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED):
        produces.setdefault(event.step_key, []).append(event.asset_key.to_user_string())
    for event in _events(instance, run.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED):
        check = event.event_specific_data
        produces.setdefault(event.step_key, []).append(f"{check.asset_key.to_user_string()}.{check.check_name}")
    tick = "...".join(run_ticks(run.tags))
    failures = _events(instance, run.run_id, dg.DagsterEventType.STEP_FAILURE)
    if failures:
        first = failures[0]
        return Failure(run.job_name, run.run_id, tick, tuple(dict.fromkeys(produces.get(first.step_key, []))),
                       first.step_key or "", step_error(first.step_failure_data))
    run_failures = _events(instance, run.run_id, dg.DagsterEventType.RUN_FAILURE)
    message = run_failures[0].message if run_failures and run_failures[0].message else "the run failed"
    return Failure(run.job_name, run.run_id, tick, (), "", message)


def alert_withheld(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why a failed run gets no alert (SPEC §9: past partitions and backfills never post), or None."""
    keys = run_ticks(run.tags)
    if not keys:
        return None   # not a tick's run (a job without partitions): its failure is news
    return why_not_live(run.tags, keys, started_at(instance, run.run_id))


def post_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun,
                       slack: SlackDestinationResource) -> Delivery | None:
    """Post (or update) the alert for a failed run; None when the run gets none."""
    if alert_withheld(instance, run):
        return None
    url = f"{load_settings().alerts.dagster_ui_url.rstrip('/')}/runs/{run.run_id}"
    secrets = secret_values()
    [delivery] = slack.publish([failure_alert(failure_of(instance, run), url, secrets)], run.run_id)
    return delivery


@dg.run_failure_sensor(name="failure_alert_sensor", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Posts one ':rotating_light: ECM Manager Error' per failed run of the live "
                                   "tick: the failed asset, the error's first line and a link to the run.")
def failure_alert_sensor(context: dg.RunFailureSensorContext, slack: SlackDestinationResource) -> None:
    delivery = post_failure_alert(context.instance, context.dagster_run, slack)
    if delivery is None:
        context.log.info(f"no alert for run {context.dagster_run.run_id[:8]}: "
                         f"{alert_withheld(context.instance, context.dagster_run)}")
