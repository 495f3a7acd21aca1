// hearth's Ollama API driven by the official `ollama` npm package (ollama-js), the way
// applications use it. Run by js_clients_test.cpp (JsClients.OllamaJs) against a server holding
// the shared test models: stories (no chat template), llama3-tiny, qwen3-tiny (tools and
// thinking in its template), bge (embeddings). The tiny models have random weights: the checks
// are about shapes, determinism and protocol behaviour, never about what the text says.
import { Ollama } from 'ollama';
import { assert, base, check, run, raw, expectNoStreams, assertUnitVector, rejects } from './lib.mjs';

const ollama = new Ollama({ host: base });
const greedy = (n) => ({ num_predict: n, temperature: 0, seed: 1 });

// Drains a streamed reply: the parts, and the concatenated text of `pick(part)`.
async function drain(stream, pick) {
  const parts = [];
  let text = '';
  for await (const p of stream) {
    parts.push(p);
    text += pick(p) ?? '';
  }
  return { parts, text, last: parts.at(-1) };
}

function assertDurations(r, what) {
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'])
    assert.ok(Number.isInteger(r[k]) && r[k] >= 0, `${what}: ${k} = ${r[k]}`);
  assert.ok(r.total_duration > 0, `${what}: total_duration 0`);
}

check('version', async () => {
  const v = await ollama.version();
  assert.equal(typeof v.version, 'string');
  assert.ok(v.version.length > 0);
});

check('list', async () => {
  const { models } = await ollama.list();
  const names = models.map((m) => m.name).sort();
  for (const n of ['bge:latest', 'llama3-tiny:latest', 'qwen3-tiny:latest', 'stories:latest'])
    assert.ok(names.includes(n), `list: ${n} missing from ${names}`);
  for (const m of models) {
    assert.equal(m.model, m.name);
    assert.match(m.digest, /^[0-9a-f]{64}$/);
    assert.ok(m.size > 0, `${m.name}: size ${m.size}`);
    assert.ok(!Number.isNaN(Date.parse(m.modified_at)), `${m.name}: modified_at ${m.modified_at}`);
    assert.equal(m.details.format, 'gguf');
  }
  const llama = models.find((m) => m.name === 'llama3-tiny:latest');
  assert.equal(llama.details.family, 'llama');
  assert.deepEqual(llama.details.families, ['llama']);
  assert.equal(llama.details.quantization_level, 'Q8_0');
});

check('show', async () => {
  const s = await ollama.show({ model: 'qwen3-tiny' });
  assert.equal(typeof s.template, 'string');
  assert.ok(s.template.length > 0, 'qwen3-tiny has a chat template');
  assert.equal(typeof s.modelfile, 'string');
  assert.match(s.modelfile, /FROM /);
  assert.equal(s.details.format, 'gguf');
  assert.equal(s.model_info['general.architecture'], 'qwen3');
  assert.ok(s.capabilities.includes('completion'), `capabilities ${s.capabilities}`);
  assert.ok(s.capabilities.includes('tools'), `capabilities ${s.capabilities}`);
  assert.ok(s.capabilities.includes('thinking'), `capabilities ${s.capabilities}`);
  const bge = await ollama.show({ model: 'bge' });
  assert.deepEqual(bge.capabilities, ['embedding']);
});

check('generate: non-streamed and streamed give the same greedy text', async () => {
  const req = { model: 'stories', prompt: 'Once upon a time', options: greedy(12) };
  const r = await ollama.generate(req);
  assert.equal(r.model, 'stories');
  assert.equal(r.done, true);
  assert.equal(r.done_reason, 'length');
  assert.equal(r.eval_count, 12);
  assert.ok(r.prompt_eval_count > 3, `prompt_eval_count ${r.prompt_eval_count}`);
  assert.ok(r.response.length > 0);
  assert.ok(Array.isArray(r.context) && r.context.length === r.prompt_eval_count + 12, `context length ${r.context?.length}`);
  assert.ok(!Number.isNaN(Date.parse(r.created_at)));
  assertDurations(r, 'generate');

  const { parts, text, last } = await drain(await ollama.generate({ ...req, stream: true }), (p) => p.response);
  assert.ok(parts.length > 2, `${parts.length} parts`);
  assert.equal(text, r.response);
  for (const p of parts.slice(0, -1)) assert.equal(p.done, false);
  assert.equal(last.done, true);
  assert.equal(last.done_reason, 'length');
  assert.equal(last.eval_count, 12);
  assertDurations(last, 'streamed generate');

  // The context continues the conversation.
  const next = await ollama.generate({ model: 'stories', prompt: ' The end.', context: r.context, options: greedy(3) });
  assert.ok(next.prompt_eval_count > r.context.length, `continued prompt ${next.prompt_eval_count} tokens`);
});

check('generate: the same seed at temperature 1 gives the same text', async () => {
  const req = { model: 'stories', prompt: 'Tom had a dog', options: { num_predict: 16, temperature: 1, seed: 42 } };
  const a = await ollama.generate(req);
  const b = await ollama.generate(req);
  assert.equal(a.response, b.response);
});

check('generate: system and raw', async () => {
  const r = await ollama.generate({ model: 'stories', prompt: 'Lily', raw: true, options: greedy(3) });
  assert.equal(r.context, undefined, 'raw: no context');
  const s = await ollama.generate({ model: 'llama3-tiny', prompt: 'Hi', system: 'Be brief.', options: greedy(3) });
  const plain = await ollama.generate({ model: 'llama3-tiny', prompt: 'Hi', options: greedy(3) });
  assert.ok(s.prompt_eval_count > plain.prompt_eval_count, `system adds tokens: ${s.prompt_eval_count} vs ${plain.prompt_eval_count}`);
});

const chatReq = {
  model: 'llama3-tiny',
  messages: [
    { role: 'system', content: 'You are brief.' },
    { role: 'user', content: 'Hello! Who are you?' },
  ],
  options: greedy(10),
};

check('chat: non-streamed and streamed, with a system message', async () => {
  const r = await ollama.chat(chatReq);
  assert.equal(r.model, 'llama3-tiny');
  assert.equal(r.message.role, 'assistant');
  assert.equal(typeof r.message.content, 'string');
  assert.equal(r.done, true);
  assert.ok(['stop', 'length'].includes(r.done_reason), `done_reason ${r.done_reason}`);
  assert.ok(r.eval_count > 0 && r.eval_count <= 10, `eval_count ${r.eval_count}`);
  assert.ok(r.prompt_eval_count > 15, `the template's tokens count: ${r.prompt_eval_count}`);
  assertDurations(r, 'chat');
  const noSystem = await ollama.chat({ ...chatReq, messages: chatReq.messages.slice(1) });
  assert.ok(noSystem.prompt_eval_count < r.prompt_eval_count, 'the system message reaches the prompt');

  const { parts, text, last } = await drain(await ollama.chat({ ...chatReq, stream: true }), (p) => p.message?.content);
  assert.ok(parts.length > 1);
  for (const p of parts) assert.equal(p.message.role, 'assistant');
  assert.equal(text, r.message.content);
  assert.equal(last.done, true);
  assert.equal(last.done_reason, r.done_reason);
  assert.equal(last.eval_count, r.eval_count);
});

check('chat: multi-turn history', async () => {
  const r = await ollama.chat({
    model: 'llama3-tiny',
    messages: [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello there.' },
      { role: 'user', content: 'And again?' },
    ],
    options: greedy(4),
  });
  assert.equal(r.message.role, 'assistant');
  assert.ok(r.prompt_eval_count > 20, `prompt_eval_count ${r.prompt_eval_count}`);
});

check('chat: format "json" gives parsable JSON', async () => {
  // Random weights: the grammar keeps the text JSON, but whether an unbounded object closes
  // within num_predict is chance. Every reply that finished must parse; one cut at the limit
  // starts as JSON. (The bounded schema check below must complete.)
  for (const seed of [1, 2, 3]) {
    const r = await ollama.chat({
      model: 'llama3-tiny',
      messages: [{ role: 'user', content: 'Describe a cat as JSON.' }],
      format: 'json',
      options: { num_predict: 300, seed },
    });
    assert.ok(r.message.content.trimStart().startsWith('{'), `seed ${seed}: ${JSON.stringify(r.message.content)}`);
    if (r.done_reason !== 'stop') {
      assert.equal(r.done_reason, 'length', `seed ${seed}`);
      assert.equal(r.eval_count, 300, `seed ${seed}`);
      continue;
    }
    const out = JSON.parse(r.message.content);
    assert.ok(out !== null && typeof out === 'object', `seed ${seed}: ${r.message.content}`);
  }
});

check('chat: format with a JSON schema gives an object with the required keys', async () => {
  const schema = {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 99 } },
    required: ['name', 'age'],
  };
  for (const stream of [false, true]) {
    const req = {
      model: 'llama3-tiny',
      messages: [{ role: 'user', content: 'Tell me about Tom as JSON.' }],
      format: schema,
      options: { num_predict: 200, seed: 3 },
    };
    let content, doneReason;
    if (stream) {
      const d = await drain(await ollama.chat({ ...req, stream: true }), (p) => p.message?.content);
      content = d.text;
      doneReason = d.last.done_reason;
    } else {
      const r = await ollama.chat(req);
      content = r.message.content;
      doneReason = r.done_reason;
    }
    assert.equal(doneReason, 'stop', `stream=${stream}: the grammar completed: ${JSON.stringify(content)}`);
    const out = JSON.parse(content);
    assert.equal(typeof out.name, 'string', `stream=${stream}: ${content}`);
    assert.ok(Number.isInteger(out.age) && out.age >= 0 && out.age <= 99, `stream=${stream}: ${content}`);
    assert.ok(out.name.length <= 12, `stream=${stream}: maxLength: ${content}`);
  }
});

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', description: 'The city' } }, required: ['city'] },
  },
};

check('chat: tools on qwen3-tiny are accepted, tool results go back in', async () => {
  // Random weights: the model will not choose to call; the request and reply shapes are checked.
  const r = await ollama.chat({
    model: 'qwen3-tiny',
    messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    tools: [weatherTool],
    think: false,
    options: greedy(8),
  });
  assert.equal(r.message.role, 'assistant');
  assert.equal(typeof r.message.content, 'string');
  assert.equal(r.done, true);
  for (const c of r.message.tool_calls ?? []) {
    assert.equal(typeof c.function.name, 'string');
    assert.equal(typeof c.function.arguments, 'object');
  }
  const withTools = r.prompt_eval_count;
  const plain = await ollama.chat({ model: 'qwen3-tiny', messages: [{ role: 'user', content: 'What is the weather in Paris?' }], think: false, options: greedy(1) });
  assert.ok(withTools > plain.prompt_eval_count, `the tool list reaches the prompt: ${withTools} vs ${plain.prompt_eval_count}`);

  // A finished round trip: the assistant's call and the tool's result in the history.
  const followUp = await ollama.chat({
    model: 'qwen3-tiny',
    messages: [
      { role: 'user', content: 'What is the weather in Paris?' },
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
      { role: 'tool', content: '{"temp_c": 21, "sky": "sunny"}', tool_name: 'get_weather' },
    ],
    tools: [weatherTool],
    think: false,
    options: greedy(6),
  });
  assert.equal(followUp.message.role, 'assistant');
  assert.ok(followUp.prompt_eval_count > withTools, 'the call and its result reach the prompt');

  const { last } = await drain(
    await ollama.chat({ model: 'qwen3-tiny', messages: [{ role: 'user', content: 'Weather?' }], tools: [weatherTool], stream: true, think: false, options: greedy(6) }),
    (p) => p.message?.content);
  assert.equal(last.done, true);
});

check('chat: think on qwen3-tiny', async () => {
  const r = await ollama.chat({ model: 'qwen3-tiny', messages: [{ role: 'user', content: 'Why is the sky blue?' }], think: true, options: greedy(24) });
  assert.equal(r.message.role, 'assistant');
  assert.equal(typeof r.message.content, 'string');
  if (r.message.thinking !== undefined) assert.equal(typeof r.message.thinking, 'string');
  assert.ok(!r.message.content.includes('<think>'), `thinking kept out of content: ${JSON.stringify(r.message.content)}`);
  // llama3-tiny's template has no thinking switch: a clear 400.
  const e = await rejects(ollama.chat({ model: 'llama3-tiny', messages: [{ role: 'user', content: 'x' }], think: true }), 'think on llama3-tiny');
  assert.equal(e.name, 'ResponseError');
  assert.equal(e.status_code, 400);
  assert.match(e.message, /does not support thinking/);
});

check('embed: one input and several', async () => {
  const one = await ollama.embed({ model: 'bge', input: 'hello world' });
  assert.equal(one.model, 'bge');
  assert.equal(one.embeddings.length, 1);
  assertUnitVector(one.embeddings[0], 'embed one');
  assert.ok(one.prompt_eval_count > 0);
  const several = await ollama.embed({ model: 'bge', input: ['hello world', 'a second, longer text', 'third'] });
  assert.equal(several.embeddings.length, 3);
  const dim = several.embeddings[0].length;
  several.embeddings.forEach((v, i) => {
    assertUnitVector(v, `embed[${i}]`);
    assert.equal(v.length, dim, `embed[${i}] length`);
  });
  assert.equal(one.embeddings[0].length, dim);
  // The same text embeds the same alone or in a batch.
  one.embeddings[0].forEach((x, i) => assert.ok(Math.abs(x - several.embeddings[0][i]) < 1e-4, `component ${i}: ${x} vs ${several.embeddings[0][i]}`));
  assert.notDeepEqual(several.embeddings[0], several.embeddings[1]);
  const small = await ollama.embed({ model: 'bge', input: 'one', dimensions: 8 });
  assert.equal(small.embeddings[0].length, 8);
});

check('embeddings (legacy endpoint)', async () => {
  const r = await ollama.embeddings({ model: 'bge', prompt: 'hello world' });
  assert.ok(Array.isArray(r.embedding) && r.embedding.length > 0);
  const e = await ollama.embed({ model: 'bge', input: 'hello world' });
  assert.equal(r.embedding.length, e.embeddings[0].length);
  for (const x of r.embedding) assert.ok(Number.isFinite(x));
});

check('copy and delete', async () => {
  await ollama.copy({ source: 'stories', destination: 'js-copy:v1' });
  const { models } = await ollama.list();
  assert.ok(models.some((m) => m.name === 'js-copy:v1'), 'the copy is listed');
  const s = await ollama.show({ model: 'js-copy:v1' });
  assert.equal(s.details.format, 'gguf');
  const r = await ollama.generate({ model: 'js-copy:v1', prompt: 'Hi', options: greedy(2) });
  assert.equal(r.eval_count, 2);
  await ollama.generate({ model: 'js-copy:v1', prompt: '', keep_alive: 0 });
  await ollama.delete({ model: 'js-copy:v1' });
  const after = await ollama.list();
  assert.ok(!after.models.some((m) => m.name === 'js-copy:v1'), 'the copy is gone');
  let e = await rejects(ollama.show({ model: 'js-copy:v1' }), 'show after delete');
  assert.equal(e.status_code, 404);
  e = await rejects(ollama.delete({ model: 'js-copy:v1' }), 'delete twice');
  assert.equal(e.status_code, 404);
  e = await rejects(ollama.copy({ source: 'nope', destination: 'x' }), 'copy of an unknown model');
  assert.equal(e.status_code, 404);
  await ollama.show({ model: 'stories' });  // the source and its blob stayed
});

check('abort: AbortableAsyncIterator.abort() mid-stream, then the server serves on', async () => {
  // num_ctx past the training context: this could run for many seconds.
  const long = { num_predict: 100000, num_ctx: 8192, seed: 1 };
  const stream = await ollama.generate({ model: 'stories', prompt: 'A long story', stream: true, options: long });
  let n = 0, atAbort = 0;
  const e = await rejects((async () => {
    for await (const p of stream) {
      // Parts read before the abort may still come, the last one included when the model ended
      // by itself meanwhile (a race on a fast machine); before it, the stream must go on.
      if (atAbort === 0) assert.equal(p.done, false, 'the stream ended before the abort');
      if (++n === 3) {
        stream.abort();
        atAbort = performance.now();
      }
    }
  })(), 'iterating an aborted stream');
  assert.equal(e.name, 'AbortError', `${e.name}: ${e.message}`);
  // The client still hands out the parts it had already read; then the iteration ends.
  assert.ok(n >= 3 && performance.now() - atAbort < 5000, `${n} parts, ${performance.now() - atAbort} ms after abort()`);
  await expectNoStreams();
  const r = await ollama.generate({ model: 'stories', prompt: 'Once', options: greedy(4) });
  assert.equal(r.eval_count, 4);
});

check('abort: client.abort() ends every stream of the client', async () => {
  const client = new Ollama({ host: base });
  const started = [];
  const runs = [0, 1].map(async (i) => {
    const s = await client.chat({ model: 'llama3-tiny', messages: [{ role: 'user', content: `Story ${i}` }], stream: true,
                                  options: { num_predict: 100000, num_ctx: 8192, seed: i } });
    let seen = 0;
    try {
      for await (const p of s) {
        assert.equal(p.done, false, 'aborted before the end');
        if (++seen === 1) started.push(i);
      }
      return 'finished';
    } catch (e) {
      return e.name;
    }
  });
  while (started.length < 2) await new Promise((r) => setTimeout(r, 5));
  client.abort();
  assert.deepEqual(await Promise.all(runs), ['AbortError', 'AbortError']);
  await expectNoStreams();
  const r = await client.chat({ ...chatReq, options: greedy(2) });
  assert.equal(r.done, true);
});

check('errors: unknown model is a ResponseError with status 404', async () => {
  for (const call of [
    () => ollama.generate({ model: 'nope', prompt: 'hi' }),
    () => ollama.generate({ model: 'nope', prompt: 'hi', stream: true }),
    () => ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
    () => ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    () => ollama.embed({ model: 'nope', input: 'hi' }),
    () => ollama.show({ model: 'nope' }),
  ]) {
    const e = await rejects(call(), 'unknown model');
    assert.equal(e.name, 'ResponseError', `${e.name}: ${e.message}`);
    assert.equal(e.status_code, 404);
    assert.equal(e.message, "model 'nope' not found");
  }
});

check('errors: bad requests are ResponseErrors with status 400 and a message', async () => {
  let e = await rejects(ollama.generate({ model: 'bge', prompt: 'hi' }), 'generate on an embedding model');
  assert.equal(e.status_code, 400);
  assert.match(e.message, /does not support generate/);
  e = await rejects(ollama.embed({ model: 'stories', input: 'hi' }), 'embed on a generative model');
  assert.equal(e.status_code, 400);
  assert.match(e.message, /does not support embeddings/);
  e = await rejects(ollama.generate({ model: 'stories', prompt: 'hi', options: { temperature: 'hot' } }), 'bad option');
  assert.equal(e.status_code, 400);
  assert.match(e.message, /temperature/);
  e = await rejects(ollama.chat({ model: 'llama3-tiny', messages: [{ role: 'robot', content: 'x' }] }), 'bad role');
  assert.equal(e.status_code, 400);
  assert.match(e.message, /messages\[0\]\.role/);
  e = await rejects(ollama.push({ model: 'stories' }), 'push');
  assert.equal(e.status_code, 501);
  assert.match(e.message, /not supported/);
});

check('32 concurrent chat requests all succeed', async () => {
  const results = await Promise.all(Array.from({ length: 32 }, async (_, i) => {
    const req = { model: 'llama3-tiny', messages: [{ role: 'user', content: `Tell me a story, number ${i}` }], options: { num_predict: 8, seed: i } };
    if (i % 2) return (await drain(await ollama.chat({ ...req, stream: true }), (p) => p.message?.content)).last;
    return ollama.chat(req);
  }));
  results.forEach((r, i) => {
    assert.equal(r.done, true, `request ${i}`);
    assert.equal(r.message.role, 'assistant', `request ${i}`);
    // Sampling may pick the end token early (done_reason "stop"); otherwise all 8 come.
    if (r.done_reason === 'length') assert.equal(r.eval_count, 8, `request ${i}: eval_count ${r.eval_count}`);
    else assert.ok(r.done_reason === 'stop' && r.eval_count < 8, `request ${i}: ${r.done_reason} after ${r.eval_count}`);
  });
  await expectNoStreams();
});

check('load, ps, keep_alive 0 unloads, ps empty', async () => {
  let r = await ollama.generate({ model: 'stories', prompt: '', keep_alive: '10m' });
  assert.equal(r.done, true);
  assert.equal(r.done_reason, 'load');
  let ps = await ollama.ps();
  const stories = ps.models.find((m) => m.name === 'stories:latest');
  assert.ok(stories, `stories listed by ps: ${JSON.stringify(ps)}`);
  assert.equal(stories.model, 'stories:latest');
  assert.ok(stories.size > 0);
  assert.ok(Date.parse(stories.expires_at) > Date.now() + 5 * 60_000, `expires_at ${stories.expires_at}`);
  assert.equal(stories.details.family, 'llama');
  // Everything loaded so far goes, each through the endpoint that fits its model.
  for (const m of ps.models) {
    r = m.name.startsWith('bge')
      ? await ollama.embed({ model: m.name, input: [], keep_alive: 0 })
      : await ollama.generate({ model: m.name, prompt: '', keep_alive: 0 });
    if (!m.name.startsWith('bge')) assert.equal(r.done_reason, 'unload', m.name);
  }
  ps = await ollama.ps();
  assert.deepEqual(ps.models, [], `ps after unloading: ${JSON.stringify(ps)}`);
  r = await ollama.chat({ model: 'llama3-tiny', messages: [], keep_alive: 0 });
  assert.equal(r.message.role, 'assistant');
  ps = await ollama.ps();
  assert.deepEqual(ps.models, [], `ps after a chat load with keep_alive 0: ${JSON.stringify(ps)}`);
});

await run('ollama-js');
