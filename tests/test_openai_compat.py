"""OpenAIPolicy against the real-HTTP FakeOpenAIServer: answers, concurrency, faults and retries."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import openai
import pytest

from score_distill.models.base import Completion, Policy, SamplingParams
from score_distill.models.openai_compat import OpenAIPolicy, describe_transient
from score_distill.testing import FakeOpenAIServer, Fault

KEY_ENV = "SCORE_DISTILL_TEST_KEY"
SECRET = "sk-test-5ecret-do-not-leak-1234567890"
CHAT = [{"role": "user", "content": "what is 2+2?"}]
PARAMS = SamplingParams(temperature=0.0, max_new_tokens=32)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def policy(srv: FakeOpenAIServer, **kw) -> OpenAIPolicy:
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("max_retries", 3)
    kw.setdefault("backoff_s", 0.01)
    return OpenAIPolicy(srv.base_url, "fake-model", api_key_env=KEY_ENV, **kw)


def test_normal_answers_in_order_with_usage_and_params():
    def responder(req):
        return "answer to " + req["messages"][-1]["content"]

    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
    params = SamplingParams(temperature=0.7, top_p=0.9, top_k=5, repetition_penalty=1.2, max_new_tokens=7,
                            stop=["</code>"], seed=11, n=2)
    with FakeOpenAIServer(responder) as srv:
        pol = policy(srv)
        assert isinstance(pol, Policy)
        out = pol.generate(chats, params)
        reqs = srv.chat_requests
    assert [c.text for c in out] == [f"answer to q{i}" for i in range(5) for _ in range(2)]
    assert all(c.error is None and c.finish_reason == "stop" for c in out)
    assert all(c.prompt_tokens == 1 and c.completion_tokens == 3 for c in out)
    assert len(reqs) == 10
    body = reqs[0].json
    assert body["model"] == "fake-model" and body["max_tokens"] == 7 and body["stop"] == ["</code>"]
    assert body["top_k"] == 5 and body["repetition_penalty"] == 1.2  # extra_body, for vLLM/SGLang
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert sorted(r.json["seed"] for r in reqs) == sorted([11, 12] * 5)  # seed + sample index
    assert pol.usage.calls == 10 and pol.usage.completion_tokens == 30 and not pol.usage.failures


def test_concurrency_limit_respected():
    def responder(req):
        time.sleep(0.3)
        return "ok"

    with FakeOpenAIServer(responder) as srv:
        out = policy(srv, max_concurrency=3).generate([CHAT] * 12, PARAMS)
        assert srv.max_in_flight == 3  # reached, never exceeded
    assert [c.text for c in out] == ["ok"] * 12


def test_timeout_then_success():
    with FakeOpenAIServer(lambda r: "late but fine", faults=[Fault.timeout(3.0)]) as srv:
        t0 = time.monotonic()
        [c] = policy(srv, timeout_s=0.5).generate([CHAT], PARAMS)
        assert time.monotonic() - t0 < 2.5
    assert c.text == "late but fine" and c.error is None and c.extra["attempts"] == 2


def test_429_retry_after_is_honoured():
    with FakeOpenAIServer(lambda r: "ok", faults=[Fault.status(429, retry_after=1)]) as srv:
        pol = policy(srv, backoff_s=0.001)
        [c] = pol.generate([CHAT], PARAMS)
        t = [r.received_at for r in srv.chat_requests]
    assert c.text == "ok" and len(t) == 2
    assert t[1] - t[0] >= 0.95  # waited as told, not the 1 ms backoff
    assert pol.usage.retries["rate_limit"] == 1


@pytest.mark.parametrize("fault,cause", [
    (Fault.status(500), "server_error"),
    (Fault.status(503), "server_error"),
    (Fault.malformed(), "bad_response"),
    (Fault.truncated(), "bad_response"),
    (Fault.no_choices(), "bad_response"),
    (Fault.reset(), "connection"),
])
@pytest.mark.parametrize("stream", [True, False])
def test_transient_fault_then_success(fault, cause, stream):
    with FakeOpenAIServer(lambda r: "fine", faults=[fault, fault]) as srv:
        pol = policy(srv, stream=stream)
        [c] = pol.generate([CHAT], PARAMS)
        assert len(srv.chat_requests) == 3
    assert c.text == "fine" and c.error is None
    assert pol.usage.retries[cause] == 2 and not pol.usage.failures


def test_an_interrupted_stream_is_retried_and_named():
    with FakeOpenAIServer(lambda r: "the whole answer here", faults=[Fault.interrupted()]) as srv:
        pol = policy(srv, max_retries=0)
        [c] = pol.generate([CHAT], PARAMS)
        [c2] = pol.generate([CHAT], PARAMS)
    assert c.error.startswith("bad_response: the server ended the reply stream before the reply was finished")
    assert "--interrupt_requests false" in c.error
    assert c2.text == "the whole answer here"


def test_empty_content_is_an_answer_not_a_failure():
    with FakeOpenAIServer(lambda r: "x", faults=[Fault.empty()]) as srv:
        [c] = policy(srv).generate([CHAT], PARAMS)
        assert len(srv.chat_requests) == 1
    assert c.text == "" and c.error is None and c.finish_reason == "stop"


def test_permanent_failure_gives_error_after_max_retries_plus_one():
    with FakeOpenAIServer(lambda r: Fault.status(503)) as srv:
        pol = policy(srv, max_retries=2)
        out = pol.generate([CHAT, CHAT], PARAMS)
        assert len(srv.chat_requests) == 2 * 3
    for c in out:
        assert isinstance(c, Completion) and c.finish_reason == "error" and c.text == ""
        assert c.error.startswith("server_error") and "3 attempts" in c.error
    assert pol.usage.failures["server_error"] == 2


@pytest.mark.parametrize("code", [400, 401, 404])
def test_client_errors_are_not_retried(code):
    with FakeOpenAIServer(lambda r: Fault.status(code)) as srv:
        pol = policy(srv)
        [c] = pol.generate([CHAT], PARAMS)
        assert len(srv.chat_requests) == 1
    assert c.finish_reason == "error" and c.error.startswith(f"http_{code}: the endpoint rejected the request")
    assert c.extra["permanent"]


def test_one_bad_request_does_not_sink_the_batch():
    def responder(req):
        return Fault.status(400) if req["messages"][-1]["content"] == "bad" else "good"

    chats = [[{"role": "user", "content": c}] for c in ("a", "bad", "b")]
    with FakeOpenAIServer(responder) as srv:
        out = policy(srv).generate(chats, PARAMS)
    assert [c.text for c in out] == ["good", "", "good"]
    assert [c.error is None for c in out] == [True, False, True]


def test_key_only_in_authorization_header_never_in_logs_repr_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(lambda r: Fault.status(500, body=f'{{"error": "bad key {SECRET}"}}')) as srv:
        pol = policy(srv, max_retries=1)
        [c] = pol.generate([CHAT], PARAMS)
        reqs = srv.chat_requests
    assert reqs[0].headers["authorization"] == f"Bearer {SECRET}"
    for r in reqs:
        others = {k: v for k, v in r.headers.items() if k.lower() != "authorization"}
        assert SECRET not in r.body and SECRET not in r.path and SECRET not in str(others)
    assert c.error and SECRET not in c.error and "***" in c.error  # the echoed key was scrubbed
    assert SECRET not in repr(pol) and SECRET not in str(vars(pol))
    assert caplog.records and SECRET not in caplog.text


SCHEMA = {"type": "object", "properties": {"step": {"type": "integer"}}, "required": ["step"]}
# What llama-cpp-python's server answers to response_format json_schema: a 500 that names the format.
LLAMA_CPP_REFUSAL = json.dumps({"error": {"message": "1 validation error for CreateChatCompletionRequest\n"
                                          "response_format.type\n  Input should be 'text' or 'json_object'",
                                          "type": "internal_server_error"}})


def _mode(req: dict) -> str:
    return (req.get("response_format") or {}).get("type", "text")


def test_json_schema_refused_with_http_500_falls_back_to_json_object_once_per_endpoint(caplog):
    def responder(req):
        return Fault.status(500, body=LLAMA_CPP_REFUSAL) if _mode(req) == "json_schema" else '{"step": 2}'

    with FakeOpenAIServer(responder) as srv:
        pol = policy(srv)
        p = SamplingParams(temperature=0.0, json_schema=SCHEMA)
        out = pol.generate([CHAT] * 6, p)
        again = policy(srv).generate([CHAT] * 2, p)  # another policy on the same endpoint: already known
        reqs = srv.chat_requests
    assert [c.text for c in out + again] == ['{"step": 2}'] * 8 and all(c.error is None for c in out + again)
    # One refusal in all (the first request negotiates alone), no retries, the rest sent as json_object.
    assert [_mode(r.json) for r in reqs] == ["json_schema"] + ["json_object"] * 8
    assert reqs[1].json["response_format"]["schema"] == SCHEMA  # llama.cpp constrains decoding to it
    assert pol.structured_output_mode == "json_object" and not pol.schema_supported
    assert not pol.usage.retries and not pol.usage.failures
    assert out[0].extra["structured_output"] == "json_object"
    log = caplog.text
    assert "refused response_format json_schema" in log and "Input should be 'text' or 'json_object'" in log
    assert log.count("structured output mode json_object") == 1


def test_json_schema_and_json_object_refused_falls_back_to_text():
    def responder(req):
        return Fault.status(400) if "response_format" in req else '{"step": 2}'

    with FakeOpenAIServer(responder) as srv:
        pol = policy(srv)
        p = SamplingParams(temperature=0.0, json_schema=SCHEMA)
        [c1] = pol.generate([CHAT], p)
        [c2] = pol.generate([CHAT], p)
        reqs = srv.chat_requests
    assert c1.text == c2.text == '{"step": 2}'
    assert reqs[0].json["response_format"]["json_schema"]["schema"] == SCHEMA
    assert [_mode(r.json) for r in reqs] == ["json_schema", "json_object", "text", "text"]
    assert pol.structured_output_mode == "text"


def test_a_named_structured_output_mode_is_not_negotiated():
    with FakeOpenAIServer(lambda r: Fault.status(400, body='{"error": {"message": "json_schema unsupported"}}')) as srv:
        pol = policy(srv, structured_output="json_schema")
        [c] = pol.generate([CHAT], SamplingParams(json_schema=SCHEMA))
        assert len(srv.chat_requests) == 1
    assert c.error.startswith("http_400") and "refused response_format json_schema" in c.error
    assert c.extra["permanent"]


def test_json_schema_sent_when_supported(caplog):
    schema = {"type": "object"}
    with FakeOpenAIServer(lambda r: "{}") as srv:
        pol = policy(srv)
        pol.generate([CHAT], SamplingParams(json_schema=schema))
        pol.generate([CHAT] * 3, SamplingParams(json_schema=schema))
        assert all(r.json["response_format"]["type"] == "json_schema" for r in srv.chat_requests)
    assert pol.schema_supported
    assert caplog.text.count("structured output mode json_schema") == 1


def test_a_500_that_refuses_the_request_is_not_retried_and_says_so():
    body = json.dumps({"error": {"message": "1 validation error: messages.0.role Input should be 'user'"}})
    with FakeOpenAIServer(lambda r: Fault.status(500, body=body)) as srv:
        pol = policy(srv)
        [c] = pol.generate([CHAT], PARAMS)
        assert len(srv.chat_requests) == 1
    assert c.error.startswith("http_500: the endpoint rejected the request (HTTP 500: 1 validation error")
    assert c.extra["permanent"] and "reach" not in c.error


def test_plain_server_errors_are_retried_and_say_so():
    with FakeOpenAIServer(lambda r: Fault.status(500, body='{"error": {"message": "CUDA out of memory"}}')) as srv:
        [c] = policy(srv, max_retries=1).generate([CHAT], PARAMS)
        assert len(srv.chat_requests) == 2
    assert c.error.startswith("server_error: the endpoint failed to answer (HTTP 500: CUDA out of memory)")
    assert not c.extra["permanent"]


def test_describe_transient_names_each_cause():
    assert describe_transient({"connection": 4}) == "could not be reached (connection: 4)"
    text = describe_transient({"server_error": 1, "timeout": 2})
    assert text.startswith("sent nothing for longer than the timeout (timeout: 2)")
    assert text.endswith("or answered with server errors (HTTP 5xx) (server_error: 1)")


# ------------------------------------------------------------------ slow and single-slot servers

def test_single_slot_server_queued_requests_wait_and_are_sent_once():
    """A server that generates one request at a time, each longer than the timeout: streamed tokens show the
    endpoint is working, so the queued requests wait instead of being abandoned and sent again."""
    words = " ".join(f"w{i}" for i in range(10))
    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    with FakeOpenAIServer(lambda r: words, slots=1, token_delay=0.1) as srv:  # 1 s a reply
        pol = policy(srv, max_concurrency=3, timeout_s=0.7, max_retries=2)
        out = pol.generate(chats, PARAMS)
        assert len(srv.chat_requests) == 3 and srv.max_copies_in_flight == 1 and srv.dropped == 0
    assert [c.text for c in out] == [words] * 3 and not pol.usage.retries
    assert all(c.completion_tokens == 10 and c.prompt_tokens == 1 for c in out)  # from the usage chunk


def test_single_slot_server_without_streaming_abandons_queued_requests():
    """The contrast: whole replies give no sign of progress while one is generated, so requests wait past
    the timeout, are abandoned (the server drops the queued ones unserved) and sent again."""
    words = " ".join(f"w{i}" for i in range(10))
    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(2)]
    with FakeOpenAIServer(lambda r: words, slots=1, token_delay=0.1) as srv:
        pol = policy(srv, max_concurrency=2, timeout_s=0.7, max_retries=2, stream=False)
        out = pol.generate(chats, PARAMS)
        # Sent again: more requests than chats. (Whether the server saw the hang-up before it served the
        # abandoned copy depends on timing, so `dropped` is not asserted.)
        assert len(srv.chat_requests) > 2
    assert pol.usage.retries["timeout"] >= 1 and any(c.error for c in out)


def test_concurrency_limit_is_per_endpoint_across_policies_and_threads():
    with FakeOpenAIServer(lambda r: "a b c", token_delay=0.05) as srv:
        pols = [policy(srv, max_concurrency=2), policy(srv, max_concurrency=4)]  # the smaller limit holds
        results = []

        def work(p):
            results.extend(p.generate([CHAT] * 4, PARAMS))

        threads = [threading.Thread(target=work, args=(p,)) for p in pols]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert srv.max_in_flight == 2
    assert [c.text for c in results] == ["a b c"] * 8


def test_silent_server_is_abandoned_and_the_retry_follows_the_hang_up():
    with FakeOpenAIServer(lambda r: "late", faults=[Fault.timeout(5)]) as srv:
        t0 = time.monotonic()
        [c] = policy(srv, timeout_s=0.5, backoff_s=0.2).generate([CHAT], PARAMS)
        assert time.monotonic() - t0 < 3
        assert len(srv.chat_requests) == 2 and srv.max_copies_in_flight == 1
    assert c.text == "late" and c.extra["attempts"] == 2


@pytest.mark.parametrize("stream", [True, False])
def test_whole_and_streamed_replies_agree(stream):
    with FakeOpenAIServer(lambda r: "<thought>t</thought>\n<code>\nx = 1\n") as srv:
        [c] = policy(srv, stream=stream).generate([CHAT], SamplingParams(stop=["</code>"]))
        body = srv.chat_requests[0].json
    assert c.text.endswith("<code>\nx = 1\n</code>") and c.completion_tokens == 5
    assert body.get("stream", False) is stream


def test_closing_tag_stop_string_is_restored():
    with FakeOpenAIServer(lambda r: "<thought>t</thought>\n<code>\nx = 1\n") as srv:
        [c] = policy(srv).generate([CHAT], SamplingParams(stop=["</code>", "\nObservation:"]))
    assert c.text.endswith("<code>\nx = 1\n</code>")


def test_works_inside_a_running_event_loop():
    with FakeOpenAIServer(lambda r: "from loop") as srv:
        pol = policy(srv)

        async def main():
            return pol.generate([CHAT], PARAMS)

        [c] = asyncio.run(main())
    assert c.text == "from loop"


def test_generate_from_several_threads():
    with FakeOpenAIServer(lambda r: r["messages"][-1]["content"]) as srv:
        pol = policy(srv)
        results: dict[int, str] = {}

        def work(i):
            results[i] = pol.generate([[{"role": "user", "content": str(i)}]], PARAMS)[0].text

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == {i: str(i) for i in range(4)}
    assert pol.usage.calls == 4


def test_ping():
    with FakeOpenAIServer(model_names=["fake-model", "other"]) as srv:
        assert policy(srv).ping() is None
        bad = OpenAIPolicy(srv.base_url, "missing-model", api_key_env=KEY_ENV).ping()
        assert bad and "missing-model" in bad
        port = srv.port
    down = OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "m", api_key_env=KEY_ENV, timeout_s=1).ping()
    assert down and "unreachable" in down and SECRET not in down


def test_ping_is_bounded_by_the_timeout():
    """A server that accepts the connection and never answers: the client has no read timeout of its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        t0 = time.monotonic()
        err = OpenAIPolicy(f"http://127.0.0.1:{s.getsockname()[1]}/v1", "m", api_key_env=KEY_ENV, timeout_s=0.5).ping()
        assert time.monotonic() - t0 < 5
    assert err and "did not answer within 0.5s" in err


def test_fake_server_default_echo_and_n_choices():
    with FakeOpenAIServer() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        r = client.chat.completions.create(model="fake-model", messages=CHAT, n=2)
        client.close()
    assert [ch.message.content for ch in r.choices] == ["what is 2+2?"] * 2
    assert r.usage.prompt_tokens == 3
