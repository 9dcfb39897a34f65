import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ConveyorError } from '../errors.ts';
import { problemAnswer, toConveyorError } from '../problems.ts';

/**
 * Answers any error a route, hook or Fastify itself raised as a problem document (src/problems.ts).
 * Fastify's own client errors are mapped onto the catalog first: a schema's refusal is
 * `validation_failed` with Ajv's `errors`, an unparseable JSON body `malformed_json`.
 */
export function sendProblem(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const problem = fastifyProblem(error);
  if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
  else request.log.info({ code: problem.code, detail: problem.message }, 'request rejected');
  const answer = problemAnswer(problem, { instance: request.url.split('?')[0]!, requestId: request.id });
  reply.code(answer.status).headers(answer.headers);
  // A HEAD response carries the headers of the GET it mirrors, and never a body.
  return request.method === 'HEAD' ? reply.send() : reply.send(answer.body);
}

/** The catalog error for what Fastify raised (or passed on from a route). */
export function fastifyProblem(error: unknown): ConveyorError {
  const fastifyError = (error ?? {}) as Partial<FastifyError> & { validation?: unknown[] };
  if (fastifyError.validation) {
    return new ConveyorError('validation_failed', fastifyError.message, {
      extra: { errors: fastifyError.validation },
    });
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ConveyorError('malformed_json', fastifyError.message);
  }
  return toConveyorError(error);
}
