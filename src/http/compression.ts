import compress from '@fastify/compress';
import type { FastifyInstance } from 'fastify';

/** JSON bodies, problem documents included: what the API answers. Media and event streams are not. */
const JSON_TYPES = /^application\/(?:[\w.-]+\+)?json(?:;|$)/;

/**
 * Compresses the JSON answers of the routes in `scope` (br, then gzip, as Accept-Encoding allows) when
 * they are at least `minBytes` long; 0 turns it off. Request bodies are never decompressed: an upload's
 * bytes are stored as sent, and a compressed JSON body would only be a way around the body limit's intent.
 * Delivery routes are outside every scope this is registered in: their bodies are media, mostly compressed
 * already, and a CDN in front does its own negotiation.
 */
export async function compressJson(scope: FastifyInstance, minBytes: number): Promise<void> {
  if (minBytes === 0) return;
  await scope.register(compress, {
    global: true,
    globalDecompression: false,
    encodings: ['br', 'gzip'],
    threshold: minBytes,
    customTypes: JSON_TYPES,
  });
}
