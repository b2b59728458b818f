// The official OpenAI JavaScript SDK against a running goinfer whose cloud upstream is the FAKE
// OpenRouter (started by tests/integ/test_cloud.py).
// Environment: GOINFER_URL (e.g. http://127.0.0.1:4444/v1), GOINFER_KEY; the peer is "or".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.GOINFER_URL,
  apiKey: process.env.GOINFER_KEY,
  maxRetries: 0,
  timeout: 30_000,
});
const messages = [{ role: 'user', content: 'Hello cloud' }];

test('a cloud chat answers with the provider\'s usage and cost', async () => {
  const r = await client.chat.completions.create({ model: 'or/fake/ok', messages });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.content, 'FAKE hello');
  assert.equal(r.usage.completion_tokens, 3);
  assert.equal(r.usage.cost, 0.000123);
});

test('a cloud chat streams, the final chunk with usage', async () => {
  const stream = await client.chat.completions.create({ model: 'fake/ok', messages, stream: true });
  let text = '';
  let usage = null;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? '';
    if (c.usage) usage = c.usage;
  }
  assert.equal(text, 'tok0 tok1 tok2 ');
  assert.equal(usage.cost, 0.000123);
});

test('the provider\'s 402 and 429 reach the SDK with their messages', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'fake/payment', messages }),
    (e) => e.status === 402 && /Insufficient credits/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'fake/ratelimit', messages }),
    (e) => e.status === 429 && /Rate limit exceeded/.test(e.message));
});

test('a 5xx the provider keeps giving reaches the SDK after one retry', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'fake/down', messages }),
    (e) => e.status === 502 && /FAKE provider returned error/.test(e.message));
});

test('a wrong provider key is the provider\'s 401', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'badkey/other/not-allowed', messages }),
    (e) => e.status === 401 && /No auth credentials/.test(e.message));
});

test('a stream cut by the provider ends in an error, not a silent success', async () => {
  const stream = await client.chat.completions.create({ model: 'fake/cut', messages, stream: true });
  let chunks = 0;
  await assert.rejects((async () => {
    for await (const c of stream) chunks++;
  })());
  assert.ok(chunks >= 1, `${chunks} chunks before the cut`);
});

test('a slow first byte is waited for', async () => {
  const t0 = Date.now();
  const r = await client.chat.completions.create({ model: 'fake/slow', messages });
  assert.equal(r.choices[0].message.content, 'FAKE hello');
  assert.ok(Date.now() - t0 >= 1900);
});
