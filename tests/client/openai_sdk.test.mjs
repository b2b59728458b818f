// The official OpenAI JavaScript SDK against a running goinfer (started by tests/integ).
// Environment: GOINFER_URL (e.g. http://127.0.0.1:4444/v1), GOINFER_KEY, GOINFER_MODEL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.GOINFER_URL,
  apiKey: process.env.GOINFER_KEY,
  maxRetries: 0,
  timeout: 60_000,
});
const model = process.env.GOINFER_MODEL;

test('models.list names the discovered models', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(model), `${model} not in ${ids}`);
});

test('models.retrieve finds one model, and a 404 for another', async () => {
  const m = await client.models.retrieve(model);
  assert.equal(m.id, model);
  assert.equal(m.object, 'model');
  await assert.rejects(client.models.retrieve('no-such-model'), (e) => e.status === 404);
});

test('chat completion returns a message', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Hello world' }],
    max_tokens: 8,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(r.usage.completion_tokens > 0);
});

test('chat completion streams chunks', async () => {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Hello world' }],
    max_tokens: 8,
    stream: true,
  });
  let chunks = 0;
  let finish = null;
  for await (const c of stream) {
    chunks++;
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
  }
  assert.ok(chunks >= 2, `only ${chunks} chunks`);
  assert.ok(finish === 'length' || finish === 'stop', `finish_reason ${finish}`);
});

test('an unknown model is a 404 the SDK reports with our message', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e.status === 404 && /no-such-model/.test(e.message) && e.message.includes(model),
  );
});

test('a wrong key is a 401', async () => {
  const bad = new OpenAI({ baseURL: process.env.GOINFER_URL, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e.status === 401);
});
