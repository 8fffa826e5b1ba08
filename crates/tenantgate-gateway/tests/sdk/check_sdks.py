"""Drives a running tenantgate with the official OpenAI and Anthropic Python SDKs.

Run by tests/sdk.rs, which starts the gateway and mockllm and passes TG_BASE_URL and TG_KEY
(a key of a tenant allowed gpt-test, claude-test and demo, but not azure-gpt).
"""
import os

import anthropic
import openai

BASE = os.environ["TG_BASE_URL"]
KEY = os.environ["TG_KEY"]

oa = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0)

# chat, plain
r = oa.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hello sdk"}])
assert r.choices[0].message.content == "mock reply to: hello sdk", r
assert r.usage.prompt_tokens == 2

# chat, streaming with usage, through the OpenAI-compatible upstream and through translation
for model in ("gpt-test", "claude-test", "demo"):
    chunks = list(oa.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "stream to me"}],
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text, (model, chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0, (model, chunks[-1])
    if model != "demo":
        assert text == "mock reply to: stream to me", (model, text)

# streaming without include_usage: no usage chunk reaches the SDK
chunks = list(oa.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}], stream=True))
assert all(c.choices for c in chunks), "usage-only chunk leaked"

# tools
tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
for model in ("gpt-test", "claude-test"):
    r = oa.chat.completions.create(model=model, tools=tools,
                                   messages=[{"role": "user", "content": "weather? mock:tool_call=get_weather"}])
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and '"Paris"' in call.function.arguments, (model, r)

# models.list is the tenant's allow-list, and nothing else
ids = sorted(m.id for m in oa.models.list())
assert ids == ["claude-test", "demo", "gpt-test"], ids

# embeddings (the SDK asks for base64 by default and decodes it)
e = oa.embeddings.create(model="demo", input=["quarterly report", "banana bread"])
assert len(e.data) == 2 and len(e.data[0].embedding) == 384, e
e = oa.embeddings.create(model="gpt-test", input="hi")
assert len(e.data[0].embedding) == 8

# errors surface as the SDK's typed exceptions
try:
    oa.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a model outside the allow-list was served")
except openai.NotFoundError as err:
    # indistinguishable from an unknown model: no oracle over the catalogue
    assert err.status_code == 404 and err.code == "model_not_found", err
try:
    oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model was served")
except openai.NotFoundError as err:
    assert err.code == "model_not_found"
try:
    openai.OpenAI(base_url=BASE + "/v1", api_key="tgk_wrong", max_retries=0).models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass

# limits: OpenAI's rate-limit headers on every admitted call; a tenant whose kill switch is on
# gets the SDK's RateLimitError with code insufficient_quota, which the SDK does not retry
# (x-should-retry: false) even with retries enabled (tests/sdk.rs counts the attempts).
raw = oa.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
assert raw.headers.get("x-ratelimit-limit-requests"), dict(raw.headers)
assert raw.headers.get("x-ratelimit-remaining-tokens") is not None, dict(raw.headers)
killed = openai.OpenAI(base_url=BASE + "/v1", api_key=os.environ["TG_KILLED_KEY"], max_retries=2)
try:
    killed.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a tenant with its kill switch on was served")
except openai.RateLimitError as err:
    assert err.status_code == 429 and err.code == "insufficient_quota", err

# a failure after the 200 raises inside the stream loop
try:
    for _ in oa.chat.completions.create(model="gpt-test", stream=True,
                                        messages=[{"role": "user", "content": "a b c d mock:stream_error_after=2"}]):
        pass
    raise AssertionError("mid-stream error was swallowed")
except openai.APIError as err:
    assert "mid-stream" in str(err), err

# The Responses API (issue 19): plain and streamed, on every provider wire, through the one
# chat pipeline; tool calls come back as function_call items.
for model in ("gpt-test", "claude-test", "demo"):
    r = oa.responses.create(model=model, instructions="be brief", input="hello responses")
    assert r.output_text, (model, r)
    if model != "demo":
        assert r.output_text == "mock reply to: hello responses", (model, r.output_text)
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, (model, r.usage)
    events = list(oa.responses.create(model=model, input="stream responses", stream=True))
    assert events[-1].type == "response.completed", (model, events[-1])
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text, (model, text)
    with oa.responses.stream(model=model, input="stream responses") as s:
        streamed = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert streamed and final.output_text == streamed, (model, streamed, final)
r = oa.responses.create(model="gpt-test", input="weather? mock:tool_call=get_weather",
                        tools=[{"type": "function", "name": "get_weather",
                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
calls = [i for i in r.output if i.type == "function_call"]
assert calls and calls[0].name == "get_weather", r.output
try:
    oa.responses.create(model="azure-gpt", input="x")
    raise AssertionError("a model outside the allow-list was served")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err
try:
    oa.responses.create(model="gpt-test", input="x", previous_response_id="resp_123")
    raise AssertionError("previous_response_id was accepted")
except openai.BadRequestError as err:
    assert err.param == "previous_response_id", err

# Legacy completions, plain and streamed.
c = oa.completions.create(model="gpt-test", prompt="hello completions", max_tokens=20)
assert c.choices[0].text == "mock reply to: hello completions", c
text = "".join(ch.choices[0].text for ch in oa.completions.create(
    model="claude-test", prompt="stream completions", stream=True) if ch.choices)
assert text == "mock reply to: stream completions", text
try:
    oa.completions.create(model="azure-gpt", prompt="x")
    raise AssertionError("a model outside the allow-list was served")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err

# Anthropic SDK against /v1/messages
an = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0)
m = an.messages.create(model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "hi claude"}])
assert m.content[0].text == "mock reply to: hi claude", m
with an.messages.stream(model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "stream claude"}]) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
assert text == "mock reply to: stream claude", text
assert final.usage.output_tokens == 5, final.usage  # "mock reply to: stream claude"
# An OpenAI-format model behind the Anthropic SDK (translated both ways, streaming too).
m = an.messages.create(model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": "hi gpt"}])
assert m.content[0].text == "mock reply to: hi gpt", m
with an.messages.stream(model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": "stream gpt"}]) as s:
    assert "".join(s.text_stream) == "mock reply to: stream gpt"
    final = s.get_final_message()
    assert final.usage.output_tokens == 5
# The OpenAI stream reports usage only at its end; the SDK still gets the real prompt count.
plain = an.messages.create(model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": "stream gpt"}])
assert plain.usage.input_tokens > 0, plain.usage
assert final.usage.input_tokens == plain.usage.input_tokens, final.usage
# Two tool calls whose argument pieces interleave upstream: two tool_use blocks, each complete.
def hexs(*items):
    return ",".join(i.encode().hex() for i in items)
interleaved = "go mock:char_chunks=4 mock:choices_hex=%s mock:tool_args_hex=%s" % (
    hexs("calling tools"), hexs('{"city":"Paris"}', '{"city":"Oslo","units":"metric"}'))
with an.messages.stream(model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": interleaved}]) as s:
    final = s.get_final_message()
inputs = sorted((b.input for b in final.content if b.type == "tool_use"), key=lambda i: i["city"])
assert inputs == [{"city": "Oslo", "units": "metric"}, {"city": "Paris"}], final.content
# n = 2 streamed, choices interleaved: the OpenAI SDK assembles each choice on its own.
with oa.chat.completions.stream(model="gpt-test", n=2, messages=[{"role": "user", "content": "mock:char_chunks=3 mock:choices_hex=%s" % hexs("first answer", "second answer")}]) as s:
    done = s.get_final_completion()
assert [c.message.content for c in done.choices] == ["first answer", "second answer"], done
m = an.messages.create(model="demo", max_tokens=64, messages=[{"role": "user", "content": "hi demo"}])
assert m.content[0].text.startswith("[tenantgate demo model"), m
with an.messages.stream(model="demo", max_tokens=64, messages=[{"role": "user", "content": "hi demo"}]) as s:
    assert "".join(s.text_stream) == m.content[0].text
try:
    an.messages.create(model="azure-gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a model outside the allow-list was served")
except anthropic.NotFoundError:
    pass

# count_tokens: the gateway's estimate, no provider call; a model outside the allow-list is the
# SDK's NotFoundError.
n = an.messages.count_tokens(model="claude-test", messages=[{"role": "user", "content": "count these tokens please"}])
assert n.input_tokens > 0, n
try:
    an.messages.count_tokens(model="azure-gpt", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a model outside the allow-list was counted")
except anthropic.NotFoundError:
    pass

print("sdk checks passed")
