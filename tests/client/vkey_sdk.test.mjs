// The official OpenAI JavaScript SDK with a virtual key (started by tests/integ/
// test_virtual_keys.py). Environment: GOINFER_URL (.../v1), GOINFER_KEY (the key's secret),
// GOINFER_MODEL (a model the key allows).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.GOINFER_URL, apiKey: process.env.GOINFER_KEY, maxRetries: 0,
  timeout: 60_000,
});
const model = process.env.GOINFER_MODEL;

test('chat with a virtual key', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4,
  });
  assert.equal(r.object, 'chat.completion');
  assert.ok(r.usage.completion_tokens > 0);
});

test('stream with a virtual key', async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, stream: true,
  });
  let chunks = 0;
  for await (const c of stream) if (c.object === 'chat.completion.chunk') chunks++;
  assert.ok(chunks > 0);
});

test('a model outside the key is a 403 the SDK reports', async () => {
  await assert.rejects(client.chat.completions.create({
    model: 'not-' + model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 2,
  }), (e) => e.status === 403 && /may not use model/.test(e.message));
});
