// hearth's OpenAI-compatible API (/v1/...) driven by the official `openai` npm package, the way
// applications use it. Run by js_clients_test.cpp (JsClients.OpenAiJs) against a server holding
// the shared test models: stories (no chat template: completions), llama3-tiny and qwen3-tiny
// (chat), bge (embeddings). The expectations are OpenAI's documented behaviour; the tiny models
// have random weights, so the checks are about shapes, determinism and protocol behaviour.
import OpenAI from 'openai';
import { assert, base, check, run, raw, expectNoStreams, assertUnitVector, rejects } from './lib.mjs';

// No retries: a failure must show as the server's answer, not be retried away.
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'x', maxRetries: 0, timeout: 60_000 });
const CHAT = 'llama3-tiny';
const greedy = { temperature: 0, seed: 1 };
const messages = [
  { role: 'system', content: 'You are brief.' },
  { role: 'user', content: 'Hello! Who are you?' },
];

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

function assertUsage(u, what) {
  assert.ok(u, `${what}: usage missing`);
  assert.ok(Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, `${what}: prompt_tokens ${u.prompt_tokens}`);
  assert.ok(Number.isInteger(u.completion_tokens) && u.completion_tokens >= 0, `${what}: completion_tokens ${u.completion_tokens}`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${what}: total_tokens`);
}

function assertCompletionId(r, object) {
  assert.equal(r.object, object);
  assert.equal(typeof r.id, 'string');
  assert.ok(r.id.length > 0);
  assert.ok(Number.isInteger(r.created) && Math.abs(r.created - Date.now() / 1000) < 600, `created ${r.created}`);
  assert.equal(typeof r.model, 'string');
}

// A 404 about the model 'nope', in OpenAI's error body; not the 404 of a route that is missing.
function assertModelNotFound(e) {
  assert.ok(e instanceof OpenAI.NotFoundError, `${e.constructor.name}: ${e.message}`);
  assert.equal(e.status, 404);
  assert.equal(typeof e.error?.message, 'string', `error body ${JSON.stringify(e.error)}`);
  assert.match(e.error.message, /nope/);
  assert.doesNotMatch(e.error.message, /page not found/, 'the route itself is missing');
}

// ---- models ---------------------------------------------------------------------------------

check('models.list', async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id);
  for (const id of ['stories:latest', 'llama3-tiny:latest', 'qwen3-tiny:latest', 'bge:latest'])
    assert.ok(ids.includes(id), `${id} missing from ${ids}`);
  for (const m of page.data) {
    assert.equal(m.object, 'model');
    assert.ok(Number.isInteger(m.created), `${m.id}: created ${m.created}`);
    assert.equal(typeof m.owned_by, 'string');
  }
  const seen = [];
  for await (const m of client.models.list()) seen.push(m.id);  // the SDK's auto-pagination
  assert.deepEqual(seen, ids);
});

check('models.retrieve', async () => {
  const m = await client.models.retrieve('llama3-tiny:latest');
  assert.equal(m.id, 'llama3-tiny:latest');
  assert.equal(m.object, 'model');
  assert.equal(typeof m.owned_by, 'string');
  const short = await client.models.retrieve('llama3-tiny');
  assert.equal(short.object, 'model');
  assert.ok(short.id.startsWith('llama3-tiny'), short.id);
});

check('models.retrieve unknown -> NotFoundError (404)', async () => {
  const e = await rejects(client.models.retrieve('nope'), 'retrieve nope');
  assertModelNotFound(e);
});

// ---- chat completions -----------------------------------------------------------------------

check('chat.completions: non-streamed', async () => {
  const r = await client.chat.completions.create({ model: CHAT, messages, max_tokens: 10, ...greedy });
  assertCompletionId(r, 'chat.completion');
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
  assertUsage(r.usage, 'chat');
  assert.ok(r.usage.completion_tokens <= 10);
  assert.ok(r.usage.prompt_tokens > 15, `the template's tokens count: ${r.usage.prompt_tokens}`);
});

check('chat.completions: streamed equals non-streamed; include_usage adds a usage chunk', async () => {
  const req = { model: CHAT, messages, max_tokens: 10, ...greedy };
  const whole = await client.chat.completions.create(req);
  const chunks = await collect(await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
  assert.ok(chunks.length > 2, `${chunks.length} chunks`);
  const id = chunks[0].id;
  let text = '', finish = null, role = null;
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, id, 'one id across the chunks');
    for (const ch of c.choices) {
      assert.equal(ch.index, 0);
      if (ch.delta.role) role = ch.delta.role;
      text += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
  assertUsage(last.usage, 'usage chunk');
  assert.deepEqual(last.usage.completion_tokens, whole.usage.completion_tokens);
  for (const c of chunks.slice(0, -1)) assert.ok(c.usage == null, 'usage only on the last chunk');

  // Without include_usage no chunk carries usage.
  const plain = await collect(await client.chat.completions.create({ ...req, stream: true }));
  for (const c of plain) assert.ok(c.usage == null, `unexpected usage: ${JSON.stringify(c)}`);
});

check('chat.completions: max_tokens -> finish_reason "length"', async () => {
  for (const limit of [{ max_tokens: 3 }, { max_completion_tokens: 3 }]) {
    const r = await client.chat.completions.create({ model: CHAT, messages, ...limit, ...greedy });
    assert.equal(r.choices[0].finish_reason, 'length', JSON.stringify(limit));
    assert.equal(r.usage.completion_tokens, 3, JSON.stringify(limit));
  }
});

check('chat.completions: stop', async () => {
  const req = { model: CHAT, messages, max_tokens: 24, ...greedy };
  const full = (await client.chat.completions.create(req)).choices[0].message.content;
  assert.ok(full.length >= 8, `need some text to cut: ${JSON.stringify(full)}`);
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 2);
  for (const s of [stop, [stop, '\u0000never']]) {
    const r = await client.chat.completions.create({ ...req, stop: s });
    assert.equal(r.choices[0].finish_reason, 'stop', `stop ${JSON.stringify(s)}`);
    assert.equal(r.choices[0].message.content, full.slice(0, full.indexOf(stop)), `stop ${JSON.stringify(s)} on ${JSON.stringify(full)}`);
  }
  const streamed = await collect(await client.chat.completions.create({ ...req, stop, stream: true }));
  const text = streamed.map((c) => c.choices[0]?.delta.content ?? '').join('');
  assert.equal(text, full.slice(0, full.indexOf(stop)), 'streamed: the stop string is held back, not sent');
});

check('chat.completions: seed makes sampling repeatable', async () => {
  const req = { model: CHAT, messages, max_tokens: 16 };
  const a = await client.chat.completions.create({ ...req, temperature: 0, seed: 5 });
  const b = await client.chat.completions.create({ ...req, temperature: 0, seed: 5 });
  assert.equal(a.choices[0].message.content, b.choices[0].message.content, 'temperature 0');
  const c = await client.chat.completions.create({ ...req, temperature: 1, seed: 42 });
  const d = await client.chat.completions.create({ ...req, temperature: 1, seed: 42 });
  assert.equal(c.choices[0].message.content, d.choices[0].message.content, 'temperature 1, same seed');
});

check('chat.completions: response_format json_object', async () => {
  const r = await client.chat.completions.create({
    model: CHAT,
    messages: [{ role: 'user', content: 'Describe a cat as a JSON object.' }],
    response_format: { type: 'json_object' },
    max_tokens: 300,
    seed: 7,
  });
  // Whether a random-weight model closes an unbounded object within max_tokens is chance: a
  // reply that ended must parse as an object; one cut at the limit starts as one.
  const content = r.choices[0].message.content;
  assert.ok(content.trimStart().startsWith('{'), `not JSON: ${JSON.stringify(content)}`);
  if (r.choices[0].finish_reason === 'stop') {
    const out = JSON.parse(content);
    assert.ok(out !== null && typeof out === 'object' && !Array.isArray(out), `not an object: ${content}`);
  } else {
    assert.equal(r.choices[0].finish_reason, 'length', JSON.stringify(r.choices[0]));
    assert.equal(r.usage.completion_tokens, 300, JSON.stringify(r.usage));
  }
});

check('chat.completions: response_format json_schema', async () => {
  const schema = {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 99 } },
    required: ['name', 'age'],
    additionalProperties: false,
  };
  const r = await client.chat.completions.create({
    model: CHAT,
    messages: [{ role: 'user', content: 'Tell me about Tom.' }],
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } },
    max_tokens: 200,
    seed: 3,
  });
  const content = r.choices[0].message.content;
  assert.equal(r.choices[0].finish_reason, 'stop', `the grammar completed: ${JSON.stringify(content)}`);
  const out = JSON.parse(content);
  assert.deepEqual(Object.keys(out).sort(), ['age', 'name'], content);
  assert.equal(typeof out.name, 'string');
  assert.ok(out.name.length <= 12, content);
  assert.ok(Number.isInteger(out.age) && out.age >= 0 && out.age <= 99, content);
});

const tools = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The current weather in a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', enum: ['Paris', 'London', 'Tokyo'] }, unit: { type: 'string', enum: ['c', 'f'] } },
        required: ['city'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_time',
      description: 'The time in a time zone',
      parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 20 } }, required: ['zone'], additionalProperties: false },
    },
  },
];

// Fails unless `call` is a well-formed tool call whose arguments are valid for its tool.
function assertValidCall(call, what) {
  assert.equal(call.type, 'function', what);
  assert.equal(typeof call.id, 'string', what);
  assert.ok(call.id.length > 0, what);
  assert.equal(typeof call.function.arguments, 'string', `${what}: arguments are a JSON string`);
  const args = JSON.parse(call.function.arguments);
  if (call.function.name === 'get_weather') {
    assert.ok(['Paris', 'London', 'Tokyo'].includes(args.city), `${what}: city ${call.function.arguments}`);
    if ('unit' in args) assert.ok(['c', 'f'].includes(args.unit), `${what}: unit ${call.function.arguments}`);
    for (const k of Object.keys(args)) assert.ok(['city', 'unit'].includes(k), `${what}: extra key ${k}`);
  } else {
    assert.equal(call.function.name, 'get_time', what);
    assert.equal(typeof args.zone, 'string', `${what}: zone ${call.function.arguments}`);
    // JSON Schema's maxLength counts code points, not UTF-16 units.
    assert.ok([...args.zone].length <= 20, `${what}: zone ${call.function.arguments}`);
    assert.deepEqual(Object.keys(args), ['zone'], what);
  }
  return args;
}

check('chat.completions: tools with tool_choice "required" -> parsable, valid tool_calls', async () => {
  for (const model of ['llama3-tiny', 'qwen3-tiny']) {
    const r = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      tools,
      tool_choice: 'required',
      max_tokens: 200,
      ...greedy,
    });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls', `${model}: ${JSON.stringify(c.message)}`);
    assert.ok(Array.isArray(c.message.tool_calls) && c.message.tool_calls.length >= 1, `${model}: ${JSON.stringify(c.message)}`);
    c.message.tool_calls.forEach((call, i) => assertValidCall(call, `${model} tool_calls[${i}]`));
    // No prose beside the calls. A random-weight model seldom chooses to end: it may go on
    // making calls until max_tokens, and the call cut there comes back as text (the parser's
    // rule for an unfinished call) — then the content is that call's beginning and nothing else.
    if (c.message.content) {
      assert.equal(r.usage.completion_tokens, 200, `${model}: content beside finished calls: ${JSON.stringify(c.message.content)}`);
      assert.ok(c.message.content.trimStart().startsWith('<tool_call>') || c.message.content.trimStart().startsWith('{'),
                `${model}: prose beside the calls: ${JSON.stringify(c.message.content)}`);
    }
  }
});

check('chat.completions: tool_choice naming a function calls that function', async () => {
  const r = await client.chat.completions.create({
    model: CHAT,
    messages: [{ role: 'user', content: 'What time is it in Tokyo?' }],
    tools,
    tool_choice: { type: 'function', function: { name: 'get_time' } },
    max_tokens: 200,
    ...greedy,
  });
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(r.choices[0].message.tool_calls[0].function.name, 'get_time');
  assertValidCall(r.choices[0].message.tool_calls[0], 'named tool');
  const none = await client.chat.completions.create({ model: CHAT, messages, tools, tool_choice: 'none', max_tokens: 6, ...greedy });
  assert.ok(!none.choices[0].message.tool_calls?.length, 'tool_choice none: no calls');
  assert.notEqual(none.choices[0].finish_reason, 'tool_calls');
});

check('chat.completions: streamed tool calls', async () => {
  const chunks = await collect(await client.chat.completions.create({
    model: CHAT,
    messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    tools,
    tool_choice: 'required',
    max_tokens: 200,
    stream: true,
    ...greedy,
  }));
  const calls = [];
  let finish = null;
  for (const c of chunks)
    for (const ch of c.choices) {
      if (ch.finish_reason) finish = ch.finish_reason;
      for (const d of ch.delta.tool_calls ?? []) {
        assert.ok(Number.isInteger(d.index), `tool call delta without index: ${JSON.stringify(d)}`);
        calls[d.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
        const t = calls[d.index];
        if (d.id) t.id = d.id;
        if (d.function?.name) t.function.name += d.function.name;
        t.function.arguments += d.function?.arguments ?? '';
      }
    }
  assert.equal(finish, 'tool_calls');
  assert.ok(calls.length >= 1, 'no tool call deltas');
  calls.forEach((call, i) => assertValidCall(call, `streamed tool_calls[${i}]`));
});

check('chat.completions: a tool round trip in the history is accepted', async () => {
  const r = await client.chat.completions.create({
    model: CHAT,
    messages: [
      { role: 'user', content: 'What is the weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c": 21}' },
    ],
    tools,
    max_tokens: 6,
    ...greedy,
  });
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.usage.prompt_tokens > 30, `the history reaches the prompt: ${r.usage.prompt_tokens}`);
});

check('chat.completions: logprobs and top_logprobs', async () => {
  const r = await client.chat.completions.create({ model: CHAT, messages, max_tokens: 4, logprobs: true, top_logprobs: 3, ...greedy });
  const lp = r.choices[0].logprobs?.content;
  assert.ok(Array.isArray(lp), `logprobs.content: ${JSON.stringify(r.choices[0].logprobs)}`);
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const t of lp) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0 && Number.isFinite(t.logprob), `logprob ${t.logprob}`);
    assert.ok(t.bytes === null || Array.isArray(t.bytes), `bytes ${t.bytes}`);
    assert.equal(t.top_logprobs.length, 3);
    for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i - 1].logprob >= t.top_logprobs[i].logprob, 'top_logprobs sorted');
    // Greedy: the chosen token is the most likely one.
    assert.equal(t.token, t.top_logprobs[0].token);
    assert.ok(Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-4);
  }
  assert.equal(lp.map((t) => t.token).join(''), r.choices[0].message.content);
  const without = await client.chat.completions.create({ model: CHAT, messages, max_tokens: 2, ...greedy });
  assert.ok(without.choices[0].logprobs == null, 'no logprobs unless asked');
});

check('chat.completions: qwen3-tiny (thinking template) answers', async () => {
  const r = await client.chat.completions.create({ model: 'qwen3-tiny', messages, max_tokens: 16, ...greedy });
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(!r.choices[0].message.content.includes('<think>'), `thinking kept out of content: ${r.choices[0].message.content}`);
});

// ---- completions ----------------------------------------------------------------------------

check('completions.create: non-streamed and streamed', async () => {
  const req = { model: 'stories', prompt: 'Once upon a time', max_tokens: 8, ...greedy };
  const r = await client.completions.create(req);
  assertCompletionId(r, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assertUsage(r.usage, 'completions');
  assert.equal(r.usage.completion_tokens, 8);
  const chunks = await collect(await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
  let text = '', finish = null;
  for (const c of chunks) {
    assert.equal(c.object, 'text_completion');
    for (const ch of c.choices) {
      text += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(text, r.choices[0].text);
  assert.equal(finish, 'length');
  assertUsage(chunks.at(-1).usage, 'streamed completions usage');
});

check('completions.create: stop', async () => {
  const req = { model: 'stories', prompt: 'Once upon a time', max_tokens: 24, ...greedy };
  const full = (await client.completions.create(req)).choices[0].text;
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 2);
  const r = await client.completions.create({ ...req, stop });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)), `stop ${JSON.stringify(stop)} on ${JSON.stringify(full)}`);
});

// ---- embeddings -----------------------------------------------------------------------------

check('embeddings.create: float, and base64 decoded by the SDK, give the same vectors', async () => {
  const input = ['hello world', 'a second, longer text'];
  const f = await client.embeddings.create({ model: 'bge', input, encoding_format: 'float' });
  assert.equal(f.object, 'list');
  assert.equal(typeof f.model, 'string');
  assert.equal(f.data.length, 2);
  f.data.forEach((d, i) => {
    assert.equal(d.object, 'embedding');
    assert.equal(d.index, i);
    assertUnitVector(d.embedding, `float[${i}]`);
  });
  assert.equal(f.data[0].embedding.length, f.data[1].embedding.length);
  assert.ok(f.usage.prompt_tokens > 0);
  assert.equal(f.usage.total_tokens, f.usage.prompt_tokens);

  const same = (a, b, what) => {
    assert.equal(a.length, b.length, `${what}: length`);
    for (let i = 0; i < a.length; i++)
      assert.ok(Math.abs(a[i] - b[i]) <= 1e-6 * Math.max(1, Math.abs(a[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  };
  // No encoding_format: the SDK asks for base64 and decodes it into float32s.
  const dflt = await client.embeddings.create({ model: 'bge', input });
  dflt.data.forEach((d, i) => same(f.data[i].embedding, Array.from(d.embedding), `sdk-decoded[${i}]`));
  // Asked for base64 explicitly: the string comes back as is; little-endian float32s.
  const b = await client.embeddings.create({ model: 'bge', input, encoding_format: 'base64' });
  b.data.forEach((d, i) => {
    assert.equal(typeof d.embedding, 'string');
    const bytes = Buffer.from(d.embedding, 'base64');
    const v = Array.from({ length: bytes.length / 4 }, (_, k) => bytes.readFloatLE(4 * k));
    same(f.data[i].embedding, v, `base64[${i}]`);
  });
  const one = await client.embeddings.create({ model: 'bge', input: 'hello world', encoding_format: 'float' });
  same(f.data[0].embedding, one.data[0].embedding, 'single input');
  const small = await client.embeddings.create({ model: 'bge', input: 'one', dimensions: 8, encoding_format: 'float' });
  assert.equal(small.data[0].embedding.length, 8);
});

// ---- responses ------------------------------------------------------------------------------

const responsesReq = { model: CHAT, instructions: 'You are brief.', input: 'Hello! Who are you?', max_output_tokens: 16, temperature: 0 };

check('responses.create: non-streamed', async () => {
  const r = await client.responses.create(responsesReq);
  assert.equal(r.object, 'response');
  assert.equal(typeof r.id, 'string');
  assert.ok(['completed', 'incomplete'].includes(r.status), `status ${r.status}`);
  assert.ok(Number.isInteger(r.created_at), `created_at ${r.created_at}`);
  const msg = r.output.find((o) => o.type === 'message');
  assert.ok(msg, `no message in output: ${JSON.stringify(r.output)}`);
  assert.equal(msg.role, 'assistant');
  assert.equal(msg.content[0].type, 'output_text');
  assert.equal(typeof msg.content[0].text, 'string');
  assert.equal(r.output_text, msg.content[0].text, 'the SDK joins output_text');
  assert.ok(r.usage.input_tokens > 0);
  assert.ok(r.usage.output_tokens > 0 && r.usage.output_tokens <= 16, `output_tokens ${r.usage.output_tokens}`);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  if (r.usage.output_tokens === 16) {
    assert.equal(r.status, 'incomplete', 'hit max_output_tokens');
    assert.equal(r.incomplete_details?.reason, 'max_output_tokens');
  }
  const list = await client.responses.create({ ...responsesReq, instructions: undefined, input: [{ role: 'user', content: 'Hello! Who are you?' }] });
  assert.equal(list.object, 'response');
});

check('responses.create: stream events', async () => {
  const whole = await client.responses.create(responsesReq);
  const events = await collect(await client.responses.create({ ...responsesReq, stream: true }));
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'response.created', types.join(' '));
  assert.ok(['response.completed', 'response.incomplete'].includes(types.at(-1)), types.join(' '));
  for (const t of ['response.in_progress', 'response.output_item.added', 'response.content_part.added',
                   'response.output_text.delta', 'response.output_text.done', 'response.content_part.done', 'response.output_item.done'])
    assert.ok(types.includes(t), `${t} missing from ${types.join(' ')}`);
  events.forEach((e, i) => assert.equal(e.sequence_number, i, `sequence_number of ${e.type}`));
  const deltas = events.filter((e) => e.type === 'response.output_text.delta');
  const text = deltas.map((e) => e.delta).join('');
  assert.equal(text, events.find((e) => e.type === 'response.output_text.done').text);
  assert.equal(text, whole.output_text, 'streamed text equals the non-streamed text');
  const final = events.at(-1).response;
  assert.equal(final.status, whole.status);
  assert.equal(final.usage.output_tokens, whole.usage.output_tokens);
  assert.equal(final.id, events[0].response.id);
});

// ---- errors, aborts, load -------------------------------------------------------------------

check('errors: malformed request -> BadRequestError (400)', async () => {
  let e = await rejects(client.chat.completions.create({ model: CHAT, messages: 'not a list' }), 'messages as a string');
  assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
  assert.equal(e.status, 400);
  assert.equal(e.error?.type, 'invalid_request_error', `error body ${JSON.stringify(e.error)}`);
  assert.equal(typeof e.error?.message, 'string');
  e = await rejects(client.chat.completions.create({ model: CHAT, messages, temperature: 'hot' }), 'temperature as a string');
  assert.equal(e.status, 400);
  e = await rejects(client.chat.completions.create({ model: CHAT }), 'no messages');
  assert.equal(e.status, 400);
  e = await rejects(client.embeddings.create({ model: 'bge', input: 5, encoding_format: 'float' }), 'input as a number');
  assert.equal(e.status, 400);
  // Not JSON at all.
  const r = await raw('POST', '/v1/chat/completions', '{not json');
  assert.equal(r.status, 400, r.text);
  assert.equal(typeof r.json?.error?.message, 'string', r.text);
});

check('errors: unknown model -> NotFoundError (404)', async () => {
  for (const call of [
    () => client.chat.completions.create({ model: 'nope', messages }),
    () => client.chat.completions.create({ model: 'nope', messages, stream: true }),
    () => client.completions.create({ model: 'nope', prompt: 'x' }),
    () => client.embeddings.create({ model: 'nope', input: 'x' }),
  ]) {
    assertModelNotFound(await rejects(call(), 'unknown model'));
  }
});

check('abort: stream.controller.abort() mid-stream, then the server serves on', async () => {
  const stream = await client.chat.completions.create({ model: CHAT, messages, max_tokens: 100000, stream: true, seed: 1 });
  let n = 0, atAbort = 0;
  for await (const c of stream) {
    // Chunks the SDK read before the abort may still come, a last one included when the model
    // ended by itself meanwhile (a race on a fast machine); before it, the stream must go on.
    if (atAbort === 0) assert.ok(!c.choices[0]?.finish_reason, 'the stream ended before the abort');
    if (++n === 3) {
      stream.controller.abort();  // the SDK ends the loop quietly ...
      atAbort = performance.now();
    }
  }
  // ... after the chunks it had already read.
  assert.ok(n >= 3 && performance.now() - atAbort < 5000, `${n} chunks, ${performance.now() - atAbort} ms after abort()`);
  await expectNoStreams();
  const r = await client.chat.completions.create({ model: CHAT, messages, max_tokens: 2, ...greedy });
  assert.equal(r.usage.completion_tokens, 2);
});

check('abort: an AbortController signal, and break, end a stream; the server serves on', async () => {
  const ac = new AbortController();
  const stream = await client.chat.completions.create({ model: CHAT, messages, max_tokens: 100000, stream: true, seed: 2 }, { signal: ac.signal });
  let n = 0, atAbort = 0;
  try {
    for await (const c of stream) {
      if (atAbort === 0) assert.ok(!c.choices[0]?.finish_reason, 'the stream ended before the abort');
      if (++n === 3) {
        ac.abort();
        atAbort = performance.now();
      }
    }
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', `${e.name}: ${e.message}`);
  }
  // The SDK still hands out the chunks it had already read; then the loop ends.
  assert.ok(n >= 3 && performance.now() - atAbort < 5000, `${n} chunks, ${performance.now() - atAbort} ms after abort()`);
  await expectNoStreams();
  const s2 = await client.completions.create({ model: 'stories', prompt: 'A long story', max_tokens: 100000, stream: true, seed: 3 });
  n = 0;
  for await (const c of s2) if (++n === 3) break;  // the SDK aborts the request on break
  await expectNoStreams();
  const r = await client.completions.create({ model: 'stories', prompt: 'Once', max_tokens: 2, ...greedy });
  assert.equal(r.usage.completion_tokens, 2);
});

check('32 concurrent requests all succeed', async () => {
  const results = await Promise.all(Array.from({ length: 32 }, async (_, i) => {
    const m = [{ role: 'user', content: `Tell me a story, number ${i}` }];
    // [finish_reason, completion_tokens]
    switch (i % 4) {
      case 0: {
        const r = await client.chat.completions.create({ model: CHAT, messages: m, max_tokens: 8, seed: i });
        return [r.choices[0].finish_reason, r.usage.completion_tokens];
      }
      case 1: {
        const chunks = await collect(await client.chat.completions.create({ model: CHAT, messages: m, max_tokens: 8, seed: i, stream: true, stream_options: { include_usage: true } }));
        return [chunks.at(-2).choices[0].finish_reason, chunks.at(-1).usage.completion_tokens];
      }
      case 2: {
        const r = await client.completions.create({ model: 'stories', prompt: `Story ${i}:`, max_tokens: 8, seed: i });
        return [r.choices[0].finish_reason, r.usage.completion_tokens];
      }
      default: {
        const r = await client.embeddings.create({ model: 'bge', input: `text ${i}`, encoding_format: 'float' });
        assertUnitVector(r.data[0].embedding, `request ${i}`);
        return ['length', 8];
      }
    }
  }));
  // Sampling may pick the end token early ("stop"); otherwise all 8 tokens come.
  results.forEach(([finish, n], i) => assert.ok(finish === 'length' ? n === 8 : finish === 'stop' && n < 8, `request ${i}: ${finish} after ${n}`));
  await expectNoStreams();
});

await run('openai-node');
