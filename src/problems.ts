/**
 * One way to say no: every refusal and failure Conveyor answers over HTTP is an RFC 9457 problem document
 * built here, whoever writes it: the Fastify routes (through src/http/problems.ts), the origin, the tus
 * endpoint, the socket guard and the metrics listener. The document names the catalog code
 * (src/errors.ts) twice, as `type` and as `code`.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { ConveyorError, catalog, insufficientStorage, isOutOfSpace, type ProblemCode } from './errors.ts';

export const PROBLEM_TYPE_BASE = 'https://conveyor.dev/problems/';

/** RFC 9457 §3: "application/problem+json"; the document is JSON, so UTF-8 (RFC 8259 §8.1). */
export const PROBLEM_MEDIA_TYPE = 'application/problem+json';
export const PROBLEM_CONTENT_TYPE = `${PROBLEM_MEDIA_TYPE}; charset=utf-8`;

/**
 * Any error as a catalog error. Ours keep their code; a full disk or database, wherever it surfaced, is a
 * 507; an error from an HTTP library that carries a 4xx `statusCode` keeps its status's meaning; anything
 * else is a 500 whose details stay in the log, not in the response.
 */
export function toConveyorError(error: unknown): ConveyorError {
  if (error instanceof ConveyorError) return error;
  if (isOutOfSpace(error)) return insufficientStorage(error);
  const { statusCode, message } = (error ?? {}) as { statusCode?: unknown; message?: string };
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    const code = CODE_BY_CLIENT_STATUS[statusCode] ?? 'bad_request';
    return new ConveyorError(code, message ?? catalog[code].title);
  }
  return new ConveyorError(
    'internal',
    'Something went wrong on our side; the request id identifies it in the logs',
    { cause: error },
  );
}

const CODE_BY_CLIENT_STATUS: Partial<Record<number, ProblemCode>> = {
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
};

/** What a problem is about: absent when the request could not even be parsed. */
export interface ProblemAbout {
  /** The request path without its query: the document's `instance`. */
  instance?: string;
  requestId?: string;
}

/** The RFC 9457 document for `problem`. */
export function problemDocument(problem: ConveyorError, about: ProblemAbout) {
  return {
    type: PROBLEM_TYPE_BASE + problem.code,
    title: problem.title,
    status: problem.status,
    detail: problem.message,
    instance: about.instance,
    code: problem.code,
    requestId: about.requestId,
    ...problem.extra,
  };
}

export interface ProblemAnswer {
  status: number;
  headers: Record<string, string | number>;
  body: string;
}

/**
 * The whole answer to `problem`. Errors are not cached, unless the error chose its own policy (a lapsed
 * grant's 403 says `private`); its other headers (Retry-After, Allow, WWW-Authenticate) come along.
 */
export function problemAnswer(problem: ConveyorError, about: ProblemAbout): ProblemAnswer {
  const body = JSON.stringify(problemDocument(problem, about));
  return {
    status: problem.status,
    headers: {
      'cache-control': 'no-store',
      ...problem.headers,
      'content-type': PROBLEM_CONTENT_TYPE,
      'content-length': Buffer.byteLength(body),
    },
    body,
  };
}

/**
 * Answers `problem` on a response whose head is not sent yet. `headers` are the response's own (X-Request-Id,
 * Connection, ...); the problem's win where both name one. A HEAD answer carries the headers of the GET
 * it mirrors, and never a body.
 */
export function writeProblem(
  res: ServerResponse,
  method: string | undefined,
  problem: ConveyorError,
  about: ProblemAbout,
  headers: OutgoingHttpHeaders = {},
): void {
  const answer = problemAnswer(problem, about);
  res.writeHead(answer.status, { ...headers, ...answer.headers });
  res.end(method === 'HEAD' ? undefined : answer.body);
}

/**
 * The 401 of a request without a usable Bearer credential. RFC 6750 §3: the resource server "MUST include
 * the HTTP "WWW-Authenticate" response header field"; when a token was given and is "expired, revoked,
 * malformed, or invalid for other reasons" the challenge says `error="invalid_token"` (§3.1), and when none
 * was given it "SHOULD NOT include an error code".
 */
export function unauthenticated(detail: string, tokenRejected: boolean): ConveyorError {
  const challenge = tokenRejected ? 'Bearer error="invalid_token"' : 'Bearer';
  return new ConveyorError('unauthenticated', detail, { headers: { 'www-authenticate': challenge } });
}
