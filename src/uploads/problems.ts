/**
 * Errors of the resumable-upload endpoint as RFC 9457 problem documents.
 *
 * @tus/server answers failures as `text/plain` with its own status codes, and its `onResponseError` hook can
 * change only the status and the text, not the Content-Type. So src/uploads/tus.ts lets it answer into a
 * web Response, and every Response of 400 or more (or error the library throws on the way) is mapped here
 * onto the error catalog and re-sent as a problem document (src/problems.ts):
 *
 *   library answer                                   catalog code            status
 *   400 malformed header, bad Upload-Length/metadata bad_request             400
 *   403 missing Upload-Offset / Content-Type (*)     bad_request             400
 *   404 no such upload                               not_found               404
 *   409 Upload-Offset conflict                       conflict                409
 *   410 expired (**)                                 not_found               404
 *   412 Tus-Resumable missing (*)                    precondition_failed     412
 *   413 over the maximum / past Upload-Length        payload_too_large       413
 *   500 lock not acquired in time                    unavailable             503 (Retry-After: 1)
 *   501 unsupported extension (*)                    bad_request             400
 *   a write or creation out of space (***)           insufficient_storage    507
 *   any other 5xx, any unexpected throw              internal                500 (detail only in the log)
 *
 *   (*)  src/uploads/tus.ts checks these itself before the library sees the request, so they are rare.
 *   (**) tus allows 404 or 410 for a removed upload; the catalog has no 410 and a sweep forgets the upload
 *        anyway, so an expired upload answers 404 whether or not it was swept yet.
 *   (***) the library passes the failed write's own error (ENOSPC) on. A PATCH keeps the bytes it stored
 *         before the disk filled, so its detail says to HEAD and resume; no Retry-After (see src/errors.ts).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { ERRORS } from '@tus/server';
import { ConveyorError, insufficientStorage, isOutOfSpace, type ProblemCode } from '../errors.ts';
import { toConveyorError, writeProblem } from '../problems.ts';

const CODE_BY_STATUS: Record<number, ProblemCode> = {
  400: 'bad_request',
  403: 'bad_request',
  404: 'not_found',
  409: 'conflict',
  410: 'not_found',
  412: 'precondition_failed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  501: 'bad_request',
};

/**
 * The catalog error for something the tus library threw or answered, or that our own code threw, during
 * a request of `method`.
 */
export function tusProblem(error: unknown, method?: string): ConveyorError {
  if (error instanceof ConveyorError) return error;
  // The library passes a failed write's own error on (a creation's too): a PATCH keeps what it stored.
  if (isOutOfSpace(error)) return insufficientStorage(error, method === 'PATCH' ? PATCH_KEPT : undefined);
  if (error === ERRORS.ERR_LOCK_TIMEOUT) {
    return new ConveyorError('unavailable', 'Another request is writing this upload; retry shortly', {
      headers: { 'retry-after': '1' },
    });
  }
  const answer = error as { status_code?: unknown; body?: unknown } | null;
  if (typeof answer?.status_code === 'number') {
    return tusAnswerProblem(answer.status_code, typeof answer.body === 'string' ? answer.body : '');
  }
  return toConveyorError(error);
}

const PATCH_KEPT =
  'Storage is full: the bytes stored so far are kept (HEAD tells the offset); resume once space is freed';

/** The catalog error for an error status the library answered with `text` as its body. */
export function tusAnswerProblem(status: number, text: string): ConveyorError {
  const code = CODE_BY_STATUS[status];
  if (code === undefined) return toConveyorError(new Error(`tus answered ${status}: ${text.trim()}`));
  const detail = status === 410 ? 'The upload expired; start a new one' : text.trim() || undefined;
  return new ConveyorError(code, detail);
}

export interface ProblemContext {
  /** The request path without its query: the problem's `instance`. */
  path: string;
  requestId: string;
  log?: { error(obj: object, msg: string): void };
}

/** Answers `error` as a problem document; a response that already began is cut short instead. */
export function sendTusProblem(
  req: IncomingMessage,
  res: ServerResponse,
  error: unknown,
  context: ProblemContext,
): void {
  const problem = tusProblem(error, req.method);
  if (problem.status >= 500) {
    context.log?.error({ err: error, reqId: context.requestId, url: context.path }, 'tus request failed');
  }
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const headers: OutgoingHttpHeaders = {};
  // tus 1.0 core: "The Tus-Resumable header MUST be included in every request and response except for
  // OPTIONS requests."
  if (req.method !== 'OPTIONS') headers['tus-resumable'] = '1.0.0';
  // A refused PATCH or POST may still be sending its body; Node would read all of it (up to the upload's
  // size) to reuse the connection. Closing costs the client one reconnect, which it needs after an error
  // anyway.
  if ((req.method === 'PATCH' || req.method === 'POST') && !req.complete) headers.connection = 'close';
  writeProblem(res, req.method, problem, { instance: context.path, requestId: context.requestId }, headers);
}
