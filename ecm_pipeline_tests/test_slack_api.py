"""The production Slack resource with the real slack_sdk client against a fake Slack Web API on
127.0.0.1: threads and metadata, idempotent re-runs, retries that never double post (429, 5xx,
dropped connection, timeout after the message was stored), Block Kit splitting, escaping, no token
in errors or logs, the connection check, and the whole Dagster chain posting through it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dagster as dg
import pytest
from slack_sdk.http_retry import RateLimitErrorRetryHandler

from ecm_pipeline.assets import triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.domain.briefing import Message, escape, sections
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.slack import message_metadata
from ecm_pipeline.resources.slack_api import SlackApiResource, SlackCheckError, SlackDeliveryError
from ecm_pipeline_tests.conftest import QUIET
from ecm_pipeline_tests.fakes.slack_server import FakeSlack

TOKEN = "xoxb-test-secret"
CHANNEL = "C0TEST"
PARTITION = "2026-11-21-14:00"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    # slack_sdk sends everything through HTTP(S)_PROXY when set and ignores NO_PROXY.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = FakeSlack(token=TOKEN, channel=CHANNEL).start()
    yield server
    server.stop()


@pytest.fixture
def log_records() -> Iterator[list[logging.LogRecord]]:
    """Every log record at DEBUG and up (pytest's caplog is off under `-p no:logging`)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append   # type: ignore[method-assign]
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(level)


def resource(fake: FakeSlack, **overrides: object) -> SlackApiResource:
    return SlackApiResource(**{"token": TOKEN, "channel": CHANNEL, "base_url": fake.url, **overrides})


def briefing(*agents: str, version: int = 1) -> list[Message]:
    texts = [("triage", f":dart: *ECM Triage* v{version}")]
    texts += [(f"triage/agent/{a}", f"{a}: your orders v{version}") for a in agents]
    return [Message(key, text, sections(text)) for key, text in texts]


def payload(message: dict) -> dict:
    return message["metadata"]["event_payload"]


def assert_one_per_key(fake: FakeSlack, keys: list[str]) -> None:
    assert sorted(payload(m)["message"] for m in fake.messages) == sorted(keys)


def test_parent_then_threaded_replies_each_with_metadata(fake: FakeSlack) -> None:
    deliveries = resource(fake).publish(briefing("amal", "omar"), PARTITION)

    [parent] = fake.top_level()
    assert parent["metadata"] == message_metadata("triage", PARTITION)
    assert parent["blocks"] == sections(":dart: *ECM Triage* v1")
    replies = fake.replies(parent["ts"])
    assert [payload(r) for r in replies] == [{"message": f"triage/agent/{a}", "partition": PARTITION}
                                             for a in ("amal", "omar")]
    assert [d.method for d in deliveries] == ["chat.postMessage"] * 3
    assert [d.ts for d in deliveries] == [parent["ts"]] + [r["ts"] for r in replies]
    assert deliveries[0].record == f"{CHANNEL}/{parent['ts']}"
    assert all(not r.body.get("unfurl_links") for r in fake.calls("chat.postMessage"))


def test_republish_updates_the_same_messages(fake: FakeSlack) -> None:
    slack = resource(fake)
    first = slack.publish(briefing("amal", "omar"), PARTITION)
    second = slack.publish(briefing("amal", "omar", version=2), PARTITION)

    assert [d.method for d in second] == ["chat.update"] * 3
    assert [d.ts for d in second] == [d.ts for d in first]
    assert len(fake.calls("chat.postMessage")) == 3
    [parent] = fake.top_level()
    assert parent["text"].endswith("v2") and len(fake.replies(parent["ts"])) == 2
    assert all(m["text"].endswith("v2") for m in fake.messages)
    update = fake.calls("chat.update")[0].body
    assert update["metadata"] == message_metadata("triage", PARTITION) and update["blocks"]


def test_another_partition_gets_its_own_messages(fake: FakeSlack) -> None:
    slack = resource(fake)
    slack.publish(briefing("amal"), PARTITION)
    slack.publish(briefing("amal"), "2026-11-21-20:00")
    assert len(fake.top_level()) == 2
    assert len(fake.calls("chat.update")) == 0


def test_only_the_rate_limit_retry_handler_is_installed(fake: FakeSlack) -> None:
    handlers = resource(fake)._client().retry_handlers
    assert [type(h) for h in handlers] == [RateLimitErrorRetryHandler]


def test_rate_limited_post_is_retried_after_retry_after(fake: FakeSlack) -> None:
    fake.rate_limit("chat.postMessage", times=1, retry_after=1)
    resource(fake).publish(briefing(), PARTITION)

    assert len(fake.calls("chat.postMessage")) == 2
    assert_one_per_key(fake, ["triage"])


def test_server_error_then_success_posts_once(fake: FakeSlack) -> None:
    fake.server_error("chat.postMessage", times=1)
    [delivery] = resource(fake).publish(briefing(), PARTITION)

    assert delivery.method == "chat.postMessage"
    assert len(fake.calls("chat.postMessage")) == 2
    assert_one_per_key(fake, ["triage"])


def test_connection_dropped_after_the_parent_was_stored_updates_it(fake: FakeSlack) -> None:
    fake.drop_after_store("chat.postMessage")
    [delivery] = resource(fake).publish(briefing(), PARTITION)

    assert delivery.method == "chat.update"      # found again through conversations.history
    assert len(fake.calls("chat.postMessage")) == 1
    assert_one_per_key(fake, ["triage"])


def test_connection_dropped_after_a_reply_was_stored_updates_it(fake: FakeSlack) -> None:
    slack = resource(fake)
    slack.publish(briefing(), PARTITION)
    fake.drop_after_store("chat.postMessage")     # the next post is the reply
    deliveries = slack.publish(briefing("amal"), PARTITION)

    assert [d.method for d in deliveries] == ["chat.update", "chat.update"]   # via conversations.replies
    assert len(fake.calls("chat.postMessage")) == 2
    assert_one_per_key(fake, ["triage", "triage/agent/amal"])


def test_timeout_after_the_message_was_stored_updates_it(fake: FakeSlack) -> None:
    fake.stall_after_store("chat.postMessage", seconds=2)
    [delivery] = resource(fake, timeout_seconds=1).publish(briefing(), PARTITION)

    assert delivery.method == "chat.update"
    assert_one_per_key(fake, ["triage"])


def test_persistent_server_error_raises_then_a_rerun_posts_once(fake: FakeSlack) -> None:
    slack = resource(fake, max_attempts=3)
    fake.server_error("chat.postMessage", times=3)
    with pytest.raises(SlackDeliveryError) as failure:
        slack.publish(briefing("amal"), PARTITION)

    message = str(failure.value)
    assert "'triage'" in message and PARTITION in message and CHANNEL in message
    assert "after 3 attempts" in message and "internal_error (HTTP 500)" in message
    assert TOKEN not in message
    assert len(fake.calls("chat.postMessage")) == 3 and not fake.messages

    slack.publish(briefing("amal"), PARTITION)
    assert_one_per_key(fake, ["triage", "triage/agent/amal"])


def test_ten_publishes_leave_one_message_per_key(fake: FakeSlack) -> None:
    slack = resource(fake)
    for version in range(10):
        slack.publish(briefing("amal", "omar", "sara", version=version), PARTITION)

    assert_one_per_key(fake, ["triage", "triage/agent/amal", "triage/agent/omar", "triage/agent/sara"])
    assert all(m["text"].endswith("v9") for m in fake.messages)
    assert len(fake.calls("chat.postMessage")) == 4


def test_messages_over_50_blocks_are_split_not_truncated(fake: FakeSlack) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"line {i}", "verbatim": True}}
              for i in range(120)]
    big_parent = Message("triage", "everything", blocks)
    big_reply = Message("triage/agent/amal", "amal's orders", blocks[:60])
    slack = resource(fake)
    deliveries = slack.publish([big_parent, big_reply], PARTITION)

    assert [d.key for d in deliveries] == ["triage", "triage#2", "triage#3", "triage/agent/amal",
                                           "triage/agent/amal#2"]
    [parent] = fake.top_level()
    thread = [parent] + fake.replies(parent["ts"])
    assert [len(m["blocks"]) for m in thread] == [50, 50, 20, 50, 10]
    assert [b for m in thread[:3] for b in m["blocks"]] == blocks
    assert thread[1]["text"].startswith("line 50\nline 51")

    slack.publish([big_parent, big_reply], PARTITION)
    assert len(fake.messages) == 5 and len(fake.calls("chat.update")) == 5


def test_mentions_in_data_arrive_escaped_once(fake: FakeSlack) -> None:
    note = "<!channel> pay now & <@U999> <https://evil|click>"
    text = f"• order note: {escape(note)}"
    resource(fake).publish([Message("triage", text, sections(text))], PARTITION)

    [stored] = fake.messages
    for sent in (stored["text"], stored["blocks"][0]["text"]["text"]):
        assert "&lt;!channel&gt; pay now &amp; &lt;@U999&gt; &lt;https://evil|click&gt;" in sent
        assert "<!channel>" not in sent and "&amp;lt;" not in sent
    assert stored["blocks"][0]["text"]["verbatim"] is True


def test_token_is_never_in_errors_describe_or_logs(fake: FakeSlack, log_records: list[logging.LogRecord]) -> None:
    slack = resource(fake, max_attempts=3)
    fake.server_error("chat.postMessage", times=1)
    fake.drop_after_store("chat.postMessage")
    slack.publish(briefing("amal"), PARTITION)
    fake.server_error("chat.update", times=3)
    with pytest.raises(SlackDeliveryError) as failure:
        slack.publish(briefing("amal"), PARTITION)
    with pytest.raises(SlackDeliveryError) as refused:
        resource(fake, token="xoxb-wrong-secret").publish(briefing(), PARTITION)

    assert "invalid_auth" in str(refused.value) and "SLACK_BOT_TOKEN" in str(refused.value)
    logged = "\n".join(r.getMessage() for r in log_records)
    assert "retrying" in logged and "Sending a request" in logged     # the client's DEBUG output was captured
    for shown in (str(failure.value), str(refused.value), slack.describe(), logged):
        assert TOKEN not in shown and "xoxb-wrong-secret" not in shown
    assert slack.describe() == f"Slack channel {CHANNEL} via {fake.url}"
    assert SlackApiResource(token=TOKEN, channel=CHANNEL).describe() == f"Slack channel {CHANNEL} via https://slack.com/api/"


def test_check_reports_bot_team_and_channel(fake: FakeSlack) -> None:
    assert resource(fake).check() == f"Slack ok: bot ecm-bot in team ECM Test, channel {CHANNEL}"
    assert [r.method for r in fake.requests] == ["auth.test", "conversations.history"]


def test_check_with_a_wrong_token_says_so_without_the_token(fake: FakeSlack) -> None:
    with pytest.raises(SlackCheckError) as failure:
        resource(fake, token="xoxb-wrong-secret").check()
    message = str(failure.value)
    assert "invalid_auth" in message and "check SLACK_BOT_TOKEN" in message and CHANNEL in message
    assert "xoxb-wrong-secret" not in message
    assert [(r.method, r.authorized) for r in fake.requests] == [("auth.test", False)]


def test_check_with_an_unknown_channel_names_the_variable(fake: FakeSlack) -> None:
    with pytest.raises(SlackCheckError, match="channel_not_found.*SLACK_CHANNEL_ID"):
        resource(fake, channel="C0NOPE").check()


def test_whole_chain_posts_one_briefing_through_the_slack_api(demo_env, fake: FakeSlack) -> None:
    _, key = demo_env
    slack = SlackApiResource(token=TOKEN, channel=CHANNEL, base_url=fake.url)
    resources = {**environment_resources(), "slack": slack}

    def run() -> dg.ExecuteInProcessResult:
        result = dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=resources,
                                instance=dg.DagsterInstance.ephemeral(), run_config=QUIET)
        assert result.success
        return result

    def briefing_and_replies() -> tuple[dict, list[dict]]:
        [parent] = [m for m in fake.top_level() if m["metadata"] == message_metadata("triage", key)]
        return parent, fake.replies(parent["ts"])

    first = run()
    parent, replies = briefing_and_replies()
    assert parent["text"].startswith(":dart: *ECM Triage* — ")
    agents = first.asset_materializations_for_node("briefing")[0].metadata["thread_replies"].value
    assert agents > 0 and len(replies) == agents
    assert all(payload(r)["message"].startswith("triage/agent/") and payload(r)["partition"] == key
               for r in replies)
    assert len({payload(r)["message"] for r in replies}) == agents

    posts = len(fake.calls("chat.postMessage"))
    second = run()
    again, replies_again = briefing_and_replies()
    assert again["ts"] == parent["ts"] and len(replies_again) == agents
    assert len(fake.calls("chat.postMessage")) == posts
    deliveries = second.asset_materializations_for_node("briefing")[0].metadata["deliveries"].value
    assert {d["method"] for d in deliveries} == {"chat.update"}
    destination = second.asset_materializations_for_node("briefing")[0].metadata["destination"].value
    assert destination == f"Slack channel {CHANNEL} via {fake.url}"


def test_a_chart_is_uploaded_into_the_thread_once(fake: FakeSlack) -> None:
    slack = resource(fake)
    [parent] = slack.publish(briefing(), PARTITION)[:1]
    png = b"\x89PNG\r\n\x1a\n" + b"chart" * 100
    channel = slack.conversation()
    first = channel.attach(png, "ecm-inflow-x.png", "ECM inflow", parent.ts)
    assert first is not None and first.method == "files.upload_v2"
    fake.drop_after_store("files.completeUploadExternal")        # shared, but the answer is lost
    assert channel.attach(png, "ecm-inflow-y.png", "ECM inflow", parent.ts) is not None
    assert channel.attach(png, "ecm-inflow-x.png", "ECM inflow", parent.ts) is None   # a re-run
    shared = [f for m in fake.replies(parent.ts) for f in m.get("files", [])]
    assert sorted(f["name"] for f in shared) == ["ecm-inflow-x.png", "ecm-inflow-y.png"]
    assert all(stored["content"] == png for stored in fake.files.values() if "title" in stored)
