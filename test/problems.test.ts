import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConveyorError } from '../src/errors.ts';
import {
  PROBLEM_CONTENT_TYPE,
  problemAnswer,
  problemDocument,
  toConveyorError,
  writeProblem,
} from '../src/problems.ts';

/** Answers one request with `writeProblem` and returns what a client read. */
async function written(method: string, problem: ConveyorError, own: Record<string, string> = {}) {
  const server = createServer((req, res) => writeProblem(res, req.method, problem, { instance: '/x' }, own));
  server.listen(0, '127.0.0.1');
  try {
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    return await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
      (resolve, reject) => {
        request({ port, host: '127.0.0.1', method, path: '/x' }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            body += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        })
          .on('error', reject)
          .end();
      },
    );
  } finally {
    server.close();
  }
}

describe('problem documents', () => {
  it('name the catalog code as type and code, and leave out what the request did not give', () => {
    const problem = new ConveyorError('conflict', 'Busy', { extra: { state: 'active' } });
    assert.deepEqual(problemDocument(problem, { instance: '/a', requestId: 'r1' }), {
      type: 'https://conveyor.dev/problems/conflict',
      title: 'Conflict',
      status: 409,
      detail: 'Busy',
      instance: '/a',
      code: 'conflict',
      requestId: 'r1',
      state: 'active',
    });
    assert.equal(
      problemAnswer(new ConveyorError('request_timeout', 'Slow'), {}).body,
      '{"type":"https://conveyor.dev/problems/request_timeout","title":"The request took too long to arrive",' +
        '"status":408,"detail":"Slow","code":"request_timeout"}',
    );
  });

  it('are answered as UTF-8 problem+json, not cached unless the error says otherwise', async () => {
    const answer = await written('GET', new ConveyorError('not_found', 'Né'), { 'x-request-id': 'r2' });
    assert.equal(answer.status, 404);
    assert.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(answer.headers['cache-control'], 'no-store');
    assert.equal(answer.headers['x-request-id'], 'r2');
    assert.equal(Number(answer.headers['content-length']), Buffer.byteLength(answer.body));
    assert.equal(JSON.parse(answer.body).detail, 'Né');

    const lapsed = new ConveyorError('access_denied', 'Expired', {
      headers: { 'cache-control': 'private, no-store' },
    });
    assert.equal(
      (await written('GET', lapsed, { 'cache-control': 'public' })).headers['cache-control'],
      'private, no-store',
    );
  });

  it('answer HEAD with the headers of the GET and no body', async () => {
    const problem = new ConveyorError('method_not_allowed', 'No', { headers: { allow: 'GET, HEAD' } });
    const [get, head] = [await written('GET', problem), await written('HEAD', problem)];
    assert.equal(head.body, '');
    assert.equal(head.headers.allow, 'GET, HEAD');
    assert.equal(head.headers['content-length'], get.headers['content-length']);
  });

  it('keep catalog errors, and turn full disks, HTTP client errors and the rest into catalog errors', () => {
    const ours = new ConveyorError('conflict');
    assert.equal(toConveyorError(ours), ours);
    assert.equal(
      toConveyorError(Object.assign(new Error('x'), { code: 'ENOSPC' })).code,
      'insufficient_storage',
    );
    const tooLong = toConveyorError(Object.assign(new Error('Long'), { statusCode: 414 }));
    assert.deepEqual([tooLong.code, tooLong.message], ['uri_too_long', 'Long']);
    assert.equal(toConveyorError(Object.assign(new Error('?'), { statusCode: 418 })).code, 'bad_request');
    const broken = toConveyorError(new Error('secret detail'));
    assert.equal(broken.code, 'internal');
    assert.doesNotMatch(broken.message, /secret/);
    assert.equal(toConveyorError(null).code, 'internal');
  });

  it('have one writer: no other source file names their media type', async () => {
    const root = new URL('../src/', import.meta.url).pathname;
    const files = (await readdir(root, { recursive: true })).filter((f) => /\.(ts|js)$/.test(f));
    const naming: string[] = [];
    for (const file of files) {
      if ((await readFile(join(root, file), 'utf8')).includes('problem+json')) naming.push(file);
    }
    assert.deepEqual(naming, ['problems.ts']);
    assert.equal(PROBLEM_CONTENT_TYPE, 'application/problem+json; charset=utf-8');
  });
});
