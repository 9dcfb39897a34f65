import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppDeps } from '../app.ts';
import { binaryContent, documentOnly, header, noContent, problem, problems } from '../schemas.ts';

/** The tus request headers, as the OpenAPI document shows them: the tus component checks them itself. */
const requestHeaders = (names: (keyof typeof REQUEST_HEADERS)[], required: string[]) => ({
  type: 'object',
  required,
  properties: Object.fromEntries(names.map((name) => [name, REQUEST_HEADERS[name]])),
});
const REQUEST_HEADERS = {
  'Tus-Resumable': { type: 'string', enum: ['1.0.0'], description: 'The tus version: 1.0.0' },
  'Upload-Length': {
    type: 'string',
    pattern: '^[0-9]+$',
    description: 'The size of the whole upload in bytes (deferred length is not supported)',
  },
  'Upload-Metadata': {
    type: 'string',
    description:
      'Comma-separated `key base64(value)` pairs: filename, filetype (or contentType), visibility (public or private)',
  },
  'Upload-Offset': {
    type: 'string',
    pattern: '^[0-9]+$',
    description: 'Where these bytes go: the offset the last HEAD or PATCH answered',
  },
};

const tusResumable = { 'Tus-Resumable': header('1.0.0') };
const uploadOffset = { 'Upload-Offset': header('The bytes stored so far', { type: 'integer' }) };
const uploadExpires = {
  'Upload-Expires': header('When an unfinished upload expires (an HTTP date)'),
};
const assetId = {
  'Asset-Id': header('The asset the upload became, once its last byte is stored'),
};
const discovery = {
  ...tusResumable,
  'Tus-Version': header('1.0.0'),
  'Tus-Extension': header('The tus extensions the storage supports, comma-separated'),
  'Tus-Max-Size': header('The largest upload in bytes (CONVEYOR_MAX_UPLOAD_BYTES)', { type: 'integer' }),
};
const wrongVersion = problem(412, {
  description: 'Tus-Resumable is missing or not 1.0.0',
  headers: { 'Tus-Version': header('1.0.0') },
});

/**
 * Resumable uploads (tus 1.0) at /api/v1/uploads: authenticated and rate-limited like the rest of the
 * API (the hooks of the enclosing scope), then handed whole to the tus component (src/uploads/tus.ts),
 * which reads the body itself; so this scope parses no bodies and the JSON body limit does not apply
 * (CONVEYOR_MAX_UPLOAD_BYTES does, as Tus-Max-Size). Each method is a route of its own, to be an operation
 * of its own in the OpenAPI document; every one hands over to the same component.
 */
export async function uploadRoutes(app: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const { uploads } = opts.deps;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    // Headers decided so far (X-Request-Id, RateLimit-*, CORS) would be lost with the hijack: hand them over.
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) reply.raw.setHeader(name, value);
    }
    reply.hijack();
    await uploads.handle(request.raw, reply.raw, request.principal ?? null, { requestId: request.id });
  };
  const tags = ['uploads'];

  app.route({
    method: 'OPTIONS',
    url: '/uploads',
    config: { credentialOptional: true },
    schema: {
      security: [{}, { bearer: [] }],
      operationId: 'discoverUploads',
      tags,
      summary: 'tus discovery: the version, extensions and largest size',
      response: { 204: noContent('What the server supports', discovery), ...problems(401, 429, 500) },
    },
    handler,
  });
  app.route({
    method: 'POST',
    url: '/uploads',
    schema: {
      operationId: 'createUpload',
      tags,
      summary: 'tus creation: start an upload (editor)',
      description:
        'Bytes may come with the creation (creation-with-upload, `Content-Type: application/offset+octet-stream`); a creation that brings all of them makes the asset at once.',
      response: {
        201: noContent('The upload is created; send its bytes to Location', {
          Location: header('The upload URL, relative: /api/v1/uploads/{id}', { format: 'uri-reference' }),
          ...tusResumable,
          ...uploadOffset,
          ...uploadExpires,
          ...assetId,
        }),
        ...problems(400, 401, 403),
        412: wrongVersion,
        ...problems(413, 429, 500, 507),
      },
    },
    config: documentOnly({
      schema: {
        headers: requestHeaders(
          ['Tus-Resumable', 'Upload-Length', 'Upload-Metadata'],
          ['Tus-Resumable', 'Upload-Length'],
        ),
      },
    }),
    handler,
  });

  // HEAD first, and as a list: Fastify then adds no HEAD route of its own for the GET below, and
  // @fastify/swagger documents it (it leaves out a route whose method is the string 'HEAD').
  app.route({
    method: ['HEAD'],
    url: '/uploads/:id',
    schema: {
      operationId: 'getUploadOffset',
      tags,
      summary: 'tus: how many bytes of the upload are stored',
      response: {
        200: noContent('The offset; after the hand-over also the asset', {
          ...tusResumable,
          ...uploadOffset,
          'Upload-Length': header('The size of the whole upload in bytes', { type: 'integer' }),
          'Upload-Metadata': header('The metadata the upload was created with'),
          ...uploadExpires,
          'Cache-Control': header('no-store'),
          ...assetId,
        }),
        ...problems(401, 404),
        412: wrongVersion,
        ...problems(429, 500),
      },
    },
    config: documentOnly({ schema: { headers: requestHeaders(['Tus-Resumable'], ['Tus-Resumable']) } }),
    handler,
  });
  app.route({
    method: 'OPTIONS',
    url: '/uploads/:id',
    // The id is not looked up: the answer is the same for any id, and tells nobody whether it exists.
    config: { credentialOptional: true },
    schema: {
      security: [{}, { bearer: [] }],
      operationId: 'discoverUpload',
      tags,
      summary: 'tus discovery, at an upload URL',
      response: { 204: noContent('What the server supports', discovery), ...problems(401, 404, 429, 500) },
    },
    handler,
  });
  app.route({
    method: 'PATCH',
    url: '/uploads/:id',
    schema: {
      operationId: 'appendUpload',
      tags,
      summary: 'tus: append bytes at Upload-Offset (editor)',
      description:
        'The PATCH that stores the last byte makes the asset and answers with its id in Asset-Id. An empty PATCH at the end repeats that answer, so a retried last request never makes a second asset.',
      response: {
        204: noContent('The bytes are stored', {
          ...tusResumable,
          ...uploadOffset,
          ...uploadExpires,
          ...assetId,
        }),
        ...problems(400, 401, 403, 404, 409),
        412: wrongVersion,
        ...problems(413, 415, 429, 500),
        503: problem(503, {
          description: 'Another request is writing this upload',
          headers: { 'Retry-After': header('Seconds to wait before trying again', { type: 'integer' }) },
        }),
        507: problem(507, {
          description: 'Storage is full: the bytes stored so far are kept (HEAD tells the offset)',
        }),
      },
    },
    config: documentOnly({
      schema: {
        headers: requestHeaders(['Tus-Resumable', 'Upload-Offset'], ['Tus-Resumable', 'Upload-Offset']),
        body: { content: { 'application/offset+octet-stream': binaryContent['*/*'] } },
      },
    }),
    handler,
  });
  app.route({
    method: 'DELETE',
    url: '/uploads/:id',
    schema: {
      operationId: 'terminateUpload',
      tags,
      summary: 'tus termination: remove the upload, or forget a finished one (editor)',
      response: {
        204: noContent('The upload is gone', tusResumable),
        ...problems(401, 403, 404),
        412: wrongVersion,
        ...problems(429, 500),
      },
    },
    config: documentOnly({ schema: { headers: requestHeaders(['Tus-Resumable'], ['Tus-Resumable']) } }),
    handler,
  });
  // Answered 405 with Allow by the tus component; nothing to document.
  app.route({ method: 'GET', url: '/uploads/:id', schema: { hide: true }, handler });
}
