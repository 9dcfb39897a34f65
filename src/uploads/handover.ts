/**
 * The hand-over of finished tus uploads to the caller (onComplete), and the answers given for an upload
 * once it was handed over. See "Hand-over" at the top of src/uploads/tus.ts for the contract.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Metadata, type Upload } from '@tus/server';
import { ConveyorError } from '../errors.ts';
import type { Principal } from '../tenancy/principal.ts';
import { TUS_VERSION } from './protocol.ts';
import type { TusBackend, TusReceipt } from './storage.ts';
/** The reserved metadata key holding the creating tenant; clients can neither set nor see it. */
export const TENANT_KEY = 'conveyor-tenant';

/** What onComplete gets once the last byte of an upload is stored. */
export interface TusCompletion {
  /** The upload id as in its URL. */
  id: string;
  tenantId: string;
  /** Who sent the last byte (same tenant as the creator). */
  principal: Principal;
  size: number;
  /** Upload-Metadata as the client sent it (values decoded; a key without value is null). */
  metadata: Record<string, string | null>;
  /** The upload's bytes; valid until onComplete settles. */
  open(): Promise<Readable>;
}

export interface TusCompletionResult {
  /** Added to the final answer (and to HEAD answers afterwards), e.g. `{ 'Asset-Id': id }`. */
  headers?: Record<string, string>;
  /** Sent as JSON in the answer of a POST that completes its upload (a final PATCH answers 204). */
  body?: object;
}

export interface HandOverDeps {
  backend: TusBackend;
  onComplete(done: TusCompletion): Promise<TusCompletionResult>;
  now(): number;
  log?: { error(obj: object, msg: string): void };
}

/** Runs each upload's hand-over once: concurrent and repeated finishers share it, or its receipt. */
export class HandOvers {
  readonly #deps: HandOverDeps;
  /** Hand-overs running in this process, by store id. */
  readonly #running = new Map<string, Promise<TusReceipt>>();

  constructor(deps: HandOverDeps) {
    this.#deps = deps;
  }

  finish(upload: Upload, principal: Principal): Promise<TusReceipt> {
    let pending = this.#running.get(upload.id);
    if (!pending) {
      pending = this.#handOver(upload, principal).finally(() => this.#running.delete(upload.id));
      this.#running.set(upload.id, pending);
    }
    return pending;
  }

  isRunning(id: string): boolean {
    return this.#running.has(id);
  }

  async settled(): Promise<void> {
    await Promise.allSettled(this.#running.values());
  }

  /**
   * Deletes a handed-over upload's bytes: they live in the asset store now. Separate from finish() because
   * the library still reads the upload after onUploadFinish when a POST completes it. Should this fail,
   * the upload answers as complete (a final PATCH replays the receipt) until the expiry sweep removes it.
   */
  async release(id: string): Promise<void> {
    await this.#deps.backend.discard(id).catch((error: unknown) => {
      this.#deps.log?.error({ err: error, upload: id }, 'tus upload not removed after its hand-over');
    });
  }

  async #handOver(upload: Upload, principal: Principal): Promise<TusReceipt> {
    const { backend } = this.#deps;
    const id = upload.id;
    const known = await backend.readReceipt(id);
    if (known) return known;
    const tenantId = String(upload.metadata?.[TENANT_KEY]);
    const metadata = clientMetadata(upload.metadata);
    const size = upload.size ?? upload.offset;
    const result = await this.#deps.onComplete({
      id: id.slice(backend.idPrefix.length),
      tenantId,
      principal,
      size,
      metadata,
      open: () => backend.open(id),
    });
    const receipt: TusReceipt = {
      tenantId,
      size,
      metadata,
      headers: result?.headers ?? {},
      body: result?.body,
      completedAt: this.#deps.now(),
    };
    await backend.writeReceipt(id, receipt);
    return receipt;
  }
}

/** Answers a request for an upload that was handed over, from its receipt. */
export async function replayReceipt(
  req: IncomingMessage,
  res: ServerResponse,
  backend: TusBackend,
  id: string,
  receipt: TusReceipt,
): Promise<void> {
  if (req.method === 'DELETE') {
    await backend.deleteReceipt(id);
    res.writeHead(204, { 'tus-resumable': TUS_VERSION }).end();
    return;
  }
  if (req.method === 'PATCH') {
    // tus 1.0 core: "If the offsets do not match, the Server MUST respond with the 409 Conflict status
    // without modifying the upload resource."
    if (offsetHeader(req) !== receipt.size) {
      throw new ConveyorError('conflict', `The upload is complete at offset ${receipt.size}`);
    }
    if (hasBody(req)) throw new ConveyorError('payload_too_large', 'The upload is complete; no bytes fit');
    writeCompletion(res, completionAnswer(receipt, false));
    return;
  }
  // tus 1.0 core: "The Server MUST always include the Upload-Offset header in the response for a HEAD
  // request, even if the offset is 0, or the upload is already considered completed." ... "The Server MUST
  // prevent the client and/or proxies from caching the response by adding the Cache-Control: no-store
  // header to the response."
  const headers: OutgoingHttpHeaders = {
    ...receipt.headers,
    'tus-resumable': TUS_VERSION,
    'cache-control': 'no-store',
    'upload-offset': String(receipt.size),
    'upload-length': String(receipt.size),
  };
  if (Object.keys(receipt.metadata).length > 0)
    headers['upload-metadata'] = Metadata.stringify(receipt.metadata);
  res.writeHead(200, headers).end();
}

export interface CompletionAnswer {
  status: number;
  headers: Record<string, string>;
  body?: string;
}

/**
 * The final answer of an upload, with the receipt's headers (Asset-Id): for a PATCH 204 without a body, as
 * tus 1.0 core says ("The Server MUST acknowledge successful PATCH requests with the 204 No Content
 * status"); for a POST that completes its upload 201 (the library adds Location only to a 201), with the
 * receipt's JSON body when it has one.
 */
export function completionAnswer(receipt: TusReceipt, created: boolean): CompletionAnswer {
  const headers = { ...receipt.headers, 'Upload-Offset': String(receipt.size) };
  if (!created) return { status: 204, headers };
  if (receipt.body === undefined) return { status: 201, headers };
  return {
    status: 201,
    headers: { ...headers, 'Content-Type': 'application/json; charset=utf-8' },
    body: JSON.stringify(receipt.body),
  };
}

export function writeCompletion(res: ServerResponse, answer: CompletionAnswer): void {
  const headers: OutgoingHttpHeaders = { ...answer.headers, 'Tus-Resumable': TUS_VERSION };
  if (answer.body !== undefined) headers['Content-Length'] = Buffer.byteLength(answer.body);
  res.writeHead(answer.status, headers).end(answer.body);
}

/** The metadata as the client sent it: our reserved key removed. */
export function clientMetadata(
  metadata: Record<string, string | null> | undefined,
): Record<string, string | null> {
  const copy = { ...metadata };
  delete copy[TENANT_KEY];
  return copy;
}

/** Upload-Offset as a number, or undefined unless it is a non-negative integer written plainly. */
export function offsetHeader(req: IncomingMessage): number | undefined {
  const value = req.headers['upload-offset'];
  const offset = Number(value);
  return Number.isSafeInteger(offset) && offset >= 0 && String(offset) === value ? offset : undefined;
}

export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}
