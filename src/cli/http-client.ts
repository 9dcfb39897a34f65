import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CliError } from './output.ts';

/** A server's answer, its body read whole (API answers are small; file bytes only ever go up). */
export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** No answer came: the connection could not be made, or it broke. */
export class NetworkError extends CliError {}

/**
 * One request to the Conveyor API with the API key, streaming `body` when given. Rejects only when no
 * answer came (a NetworkError, or what `body` failed with); any status resolves.
 */
export function call(
  url: URL,
  apiKey: string,
  method: string,
  headers: Record<string, string> = {},
  body?: Readable,
): Promise<Answer> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<Answer>((resolve, reject) => {
    const broken = (error: Error) =>
      reject(new NetworkError(`${method} ${url.origin}${url.pathname}: ${error.message}`, { cause: error }));
    const req = request(
      url,
      { method, headers: { ...headers, authorization: `Bearer ${apiKey}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', broken);
      },
    );
    req.on('error', broken);
    // What the body itself fails with (the file could not be read) is reported as it is.
    if (body) body.once('error', reject);
    if (body) pipeline(body, req).catch(broken);
    else req.end();
  });
}

/** The answer's JSON body, or {} when it has none or it is not JSON. */
export function json(answer: Answer): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(answer.body.toString('utf8'));
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** An error answer as a CLI error: `<status> <code>: <detail>` from its problem document. */
export function failure(answer: Answer, doing: string): CliError {
  const problem = json(answer);
  const detail = problem['detail'] ?? problem['title'] ?? answer.body.toString('utf8').slice(0, 200);
  return new CliError(`${doing}: ${answer.status} ${String(problem['code'] ?? '')}: ${String(detail)}`);
}

/** `call`, answering the JSON body of a 2xx answer and throwing `failure` otherwise. */
export async function callJson(
  url: URL,
  apiKey: string,
  method: string,
  doing: string,
  headers: Record<string, string> = {},
  body?: Readable,
): Promise<Record<string, unknown>> {
  const answer = await call(url, apiKey, method, headers, body);
  if (answer.status < 200 || answer.status >= 300) throw failure(answer, doing);
  return json(answer);
}
