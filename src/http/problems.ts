import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ConveyorError, catalog, type ErrorCode, insufficientStorage, isOutOfSpace } from '../errors.ts';

export const PROBLEM_TYPE_BASE = 'https://conveyor.dev/problems/';

/**
 * Renders any error as RFC 9457 problem details. Known errors keep their catalog code; Fastify's own
 * client errors (bad JSON, wrong content type, oversized body) are mapped onto the catalog; a full disk or
 * database, wherever it surfaced, is a 507; anything else is a 500 whose details stay in the log, not in
 * the response.
 */
export function sendProblem(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const problem = toConveyorError(error);
  if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
  else request.log.info({ code: problem.code, detail: problem.message }, 'request rejected');
  const body = problemDocument(problem, request.url.split('?')[0]!, request.id);
  // A HEAD response carries the headers of the GET it mirrors, and never a body.
  // Errors are not cached, unless the error chose its own policy (a lapsed grant's 403 says `private`).
  reply.header('cache-control', 'no-store');
  reply.code(problem.status).headers(problem.headers).header('content-type', 'application/problem+json');
  return request.method === 'HEAD' ? reply.send() : reply.send(JSON.stringify(body));
}

/** The RFC 9457 document for `problem`, about the request for `instance` (a path without its query). */
export function problemDocument(problem: ConveyorError, instance: string, requestId: string) {
  return {
    type: PROBLEM_TYPE_BASE + problem.code,
    title: problem.title,
    status: problem.status,
    detail: problem.message,
    instance,
    code: problem.code,
    requestId,
    ...problem.extra,
  };
}

export function toConveyorError(error: unknown): ConveyorError {
  if (error instanceof ConveyorError) return error;
  if (isOutOfSpace(error)) return insufficientStorage(error);
  const fastifyError = error as Partial<FastifyError> & { validation?: unknown[] };
  if (fastifyError.validation) {
    return new ConveyorError('validation_failed', fastifyError.message, {
      extra: { errors: fastifyError.validation },
    });
  }
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = codeForFastify(fastifyError.code, status);
    return new ConveyorError(code, fastifyError.message ?? catalog[code].title);
  }
  return new ConveyorError(
    'internal',
    'Something went wrong on our side; the request id identifies it in the logs',
    {
      cause: error,
    },
  );
}

function codeForFastify(code: string | undefined, status: number): ErrorCode {
  switch (code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'malformed_json';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return 'payload_too_large';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'unsupported_media_type';
    case 'FST_ERR_BAD_URL':
      return 'bad_request';
  }
  if (status === 414) return 'uri_too_long';
  if (status === 413) return 'payload_too_large';
  if (status === 415) return 'unsupported_media_type';
  if (status === 404) return 'not_found';
  if (status === 405) return 'method_not_allowed';
  return 'bad_request';
}
