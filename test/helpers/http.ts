import assert from 'node:assert/strict';
import http from 'node:http';

/** What one node:http request answered: status, headers and the raw body bytes. */
export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request with node:http; `path` is sent exactly as given (no URL normalisation). */
export function request(
  server: { url: string },
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** What one fetch answered: status, headers and the parsed body (null when empty, the text when not JSON). */
export interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

/** Reads a fetch Response to the end into an Answer. */
export async function readAnswer(res: Response): Promise<Answer> {
  const text = await res.text();
  let body: any = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  return { status: res.status, headers: res.headers, body };
}

/** Asserts an RFC 9457 problem document with the given status (and code, when given) and answers it. */
export function assertProblem(answer: Answer, status: number, code?: string, what = ''): any {
  const label = `${what} -> ${answer.status} ${JSON.stringify(answer.body)}`;
  assert.equal(answer.status, status, label);
  assert.match(answer.headers.get('content-type') ?? '', /^application\/problem\+json\b/, label);
  const body = answer.body;
  assert.equal(typeof body?.type, 'string', label);
  assert.equal(typeof body.title, 'string', label);
  assert.equal(body.status, status, label);
  assert.equal(typeof body.code, 'string', label);
  assert.ok(body.type.endsWith(body.code), label);
  if (code !== undefined) assert.equal(body.code, code, label);
  return body;
}
