import { PassThrough, type Readable } from 'node:stream';
import multipart from '@fastify/multipart';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ContentInput } from '../../assets/intake.ts';
import { deliveryPath } from '../../delivery/lookup.ts';
import { ConveyorError } from '../../errors.ts';
import { releaseChunk } from '../../storage/chunks.ts';
import type { AppDeps } from '../app.ts';
import {
  Asset,
  binaryContent,
  documentOnly,
  IdParams,
  location,
  PageQuery,
  pageOf,
  problem,
  problemResponses,
  Version,
  Visibility,
  withHeaders,
} from '../schemas.ts';

/** Room for multipart boundaries and part headers when comparing a declared length with the limit. */
const MULTIPART_FRAMING_SLACK = 64 * 1024;

const malformed = (error: unknown) =>
  new ConveyorError('bad_request', `Malformed multipart body: ${(error as Error).message}`);
const interrupted = (error: unknown) =>
  new ConveyorError('bad_request', `The upload was interrupted: ${(error as Error).message}`);

/**
 * The client's bytes, with the client's failures (a dropped connection, broken multipart framing)
 * turned into 400s: they are the client's doing, not ours, and must not be reported or logged as 500s.
 */
function fromClient(source: Readable, wrap: (error: unknown) => ConveyorError): Readable {
  const body = new PassThrough({ highWaterMark: 256 * 1024 });
  source.once('error', (error) => body.destroy(wrap(error)));
  source.pipe(body);
  return body;
}

const uploadResponses = {
  ...problemResponses,
  413: problem(413, { description: 'The content is larger than CONVEYOR_MAX_UPLOAD_BYTES' }),
  507: problem(507, { description: 'The disk has no room for the content; nothing is stored' }),
};

/**
 * What an upload route reads, for the OpenAPI document: Fastify must not see it, since the body is
 * parsed by @fastify/multipart or streamed as it is.
 */
const uploadBody = documentOnly({
  schema: {
    body: {
      content: {
        'multipart/form-data': {
          schema: {
            type: 'object',
            required: ['file'],
            properties: {
              file: { type: 'string', format: 'binary' },
            },
            description:
              "One file part (its field name is free); the part's filename and Content-Type are the declared ones. Other fields are ignored.",
          },
        },
        ...binaryContent,
      },
    },
  },
});

/** Assets, their versions, and the two ways to open private ones (tokens and signed URLs). */
export async function assetRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  await base.register(uploadRoutes, opts);
  await base.register(jsonRoutes, opts);
}

/**
 * Upload routes take the body as a raw stream (any Content-Type, so a JSON file is stored, not parsed) or
 * as multipart/form-data; nothing is buffered, the bytes go straight to the blob store.
 */
async function uploadRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { assets, config, metrics, space } = opts.deps;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  await app.register(multipart, {
    limits: { files: 1, fields: 10, fieldSize: 4096, parts: 20, fileSize: config.maxUploadBytes + 1 },
    throwFileSizeLimit: false,
  });

  const readContent = async (
    request: FastifyRequest,
  ): Promise<ContentInput & { filename: string | undefined }> => {
    const multipartBody = request.isMultipart();
    const declaredLength = Number(request.headers['content-length']);
    // Refuse what is certain to be too large before reading a byte of it (a multipart body carries some
    // framing around the file, so it gets a little slack).
    const slack = multipartBody ? MULTIPART_FRAMING_SLACK : 0;
    if (Number.isFinite(declaredLength) && declaredLength > config.maxUploadBytes + slack) {
      throw new ConveyorError(
        'payload_too_large',
        `The content exceeds the limit of ${config.maxUploadBytes} bytes`,
        { extra: { limit: config.maxUploadBytes } },
      );
    }
    // And what cannot fit on the disk (507), before a byte of it is written: without the declared length
    // of a chunked body, only while the disk is under its free-space reserve.
    await space.admit({ blobs: Number.isFinite(declaredLength) ? declaredLength : 0 });
    if (multipartBody) {
      let part: Awaited<ReturnType<FastifyRequest['file']>>;
      try {
        part = await request.file();
      } catch (error) {
        throw malformed(error);
      }
      if (!part) throw new ConveyorError('bad_request', 'The multipart body holds no file part');
      return {
        body: fromClient(part.file, malformed),
        declaredType: part.mimetype,
        filename: part.filename || undefined,
      };
    }
    const query = request.query as { filename?: string };
    return {
      body: fromClient(request.raw, interrupted),
      declaredType: request.headers['content-type'],
      filename: query.filename,
      // The socket's chunks pass through untouched, and nothing but the store holds them. (Multipart file
      // chunks are slices the parser may still hold, so they are left to the collector.)
      release: releaseChunk,
    };
  };

  // A refused or failed upload has left the rest of the body unread on the socket. Closing the
  // connection after the answer is the only honest way out; keeping it alive would leave the client's
  // next request behind those bytes, and the socket open until the keep-alive timeout.
  app.addHook('onSend', async (request, reply) => {
    if (!request.raw.complete) reply.header('connection', 'close');
  });

  const uploadQuery = Type.Object({
    filename: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    visibility: Type.Optional(Visibility),
  });

  app.post(
    '/assets',
    {
      schema: {
        operationId: 'uploadAsset',
        tags: ['assets'],
        summary: 'Upload an asset (raw body with ?filename=, or multipart/form-data)',
        description:
          'The body is streamed to storage and hashed on the way (SHA-256, the ETag). The content type is sniffed from the bytes.',
        querystring: uploadQuery,
        response: {
          201: withHeaders(Asset, location('The new asset: /api/v1/assets/{id}')),
          ...uploadResponses,
        },
      },
      config: uploadBody,
    },
    async (request, reply) => {
      const content = await readContent(request);
      const asset = await assets.upload(request.principal!, {
        ...content,
        filename: content.filename ?? request.query.filename ?? 'upload',
        visibility: request.query.visibility ?? 'public',
      });
      metrics.uploadedBytes.inc(asset.size);
      return reply.code(201).header('location', `/api/v1/assets/${asset.id}`).send(asset);
    },
  );

  app.put(
    '/assets/:id/content',
    {
      schema: {
        operationId: 'replaceAssetContent',
        tags: ['assets'],
        summary: "Replace an asset's content (the latest URL changes; published versions do not)",
        params: IdParams,
        response: { 200: Asset, ...uploadResponses },
      },
      config: uploadBody,
    },
    async (request) => {
      const content = await readContent(request);
      const asset = await assets.replaceContent(request.principal!, request.params.id, content);
      metrics.uploadedBytes.inc(asset.size);
      return asset;
    },
  );
}

async function jsonRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { assets, access, config, baseUrl } = opts.deps;
  const { catalog } = opts.deps.media;
  const pageLimit = (limit: number | undefined) => Math.min(limit ?? config.maxPageSize, config.maxPageSize);

  app.get(
    '/assets',
    {
      schema: {
        operationId: 'listAssets',
        tags: ['assets'],
        summary: "List the tenant's assets, newest first",
        querystring: Type.Object({
          ...PageQuery,
          contentType: Type.Optional(Type.String({ maxLength: 255, description: 'Prefix, e.g. image/' })),
          visibility: Type.Optional(Visibility),
          filename: Type.Optional(Type.String({ maxLength: 255, description: 'Filename prefix' })),
        }),
        response: { 200: pageOf(Asset), ...problemResponses },
      },
    },
    async (request) => {
      const page = await assets.list(request.principal!, {
        limit: pageLimit(request.query.limit),
        cursor: request.query.cursor,
        contentType: request.query.contentType,
        visibility: request.query.visibility,
        filenamePrefix: request.query.filename,
      });
      return { ...page, items: await catalog.describe(page.items) };
    },
  );

  app.get(
    '/assets/:id',
    {
      schema: {
        operationId: 'getAsset',
        tags: ['assets'],
        summary: 'Get an asset',
        params: IdParams,
        response: { 200: Asset, ...problemResponses },
      },
    },
    async (request) => (await catalog.describe([await assets.get(request.principal!, request.params.id)]))[0],
  );

  app.patch(
    '/assets/:id',
    {
      schema: {
        operationId: 'updateAsset',
        tags: ['assets'],
        summary: 'Rename an asset or change its visibility',
        params: IdParams,
        body: Type.Object(
          {
            filename: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
            visibility: Type.Optional(Visibility),
          },
          { additionalProperties: false },
        ),
        response: { 200: Asset, ...problemResponses },
      },
    },
    async (request) => assets.update(request.principal!, request.params.id, request.body),
  );

  app.delete(
    '/assets/:id',
    {
      schema: {
        operationId: 'deleteAsset',
        tags: ['assets'],
        summary: 'Delete an asset with its versions and tokens',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await assets.delete(request.principal!, request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/assets/:id/publish',
    {
      schema: {
        operationId: 'publishAsset',
        tags: ['versions'],
        summary: 'Snapshot the current content as an immutable version',
        params: IdParams,
        response: {
          201: withHeaders(
            Version,
            location("The version's immutable content: /v/{versionId} (no API route gives one version)"),
          ),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const version = await assets.publish(request.principal!, request.params.id);
      // No API route gives one version: Location names what a client can GET, its immutable content.
      return reply.code(201).header('location', deliveryPath.version(version.id)).send(version);
    },
  );

  app.get(
    '/assets/:id/versions',
    {
      schema: {
        operationId: 'listVersions',
        tags: ['versions'],
        summary: "List an asset's versions, newest first",
        params: IdParams,
        querystring: Type.Object(PageQuery),
        response: { 200: pageOf(Version), ...problemResponses },
      },
    },
    async (request) => {
      const page = await assets.listVersions(request.principal!, request.params.id, {
        limit: pageLimit(request.query.limit),
        cursor: request.query.cursor,
      });
      return { ...page, items: await catalog.describe(page.items, 'first') };
    },
  );

  const TtlBody = Type.Object({ ttlSeconds: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });

  app.post(
    '/assets/:id/tokens',
    {
      schema: {
        operationId: 'createAccessToken',
        tags: ['access'],
        summary: 'Create a revocable access token for a private asset',
        params: IdParams,
        body: TtlBody,
        response: {
          201: Type.Object({
            id: Type.String(),
            token: Type.String(),
            url: Type.String(),
            expiresAt: Type.String(),
          }),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const created = await access.createToken(
        request.principal!,
        request.params.id,
        request.body.ttlSeconds,
      );
      const url = `${baseUrl()}${deliveryPath.latest(request.params.id)}?token=${created.token}`;
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send({ ...created, url });
    },
  );

  app.delete(
    '/tokens/:id',
    {
      schema: {
        operationId: 'revokeAccessToken',
        tags: ['access'],
        summary: 'Revoke an access token',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await access.revokeToken(request.principal!, request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/assets/:id/signed-url',
    {
      schema: {
        operationId: 'createSignedUrl',
        tags: ['access'],
        summary: 'Create a signed URL (HMAC-SHA256 over path and expiry) to the latest content or a version',
        params: IdParams,
        body: Type.Object(
          {
            ttlSeconds: Type.Integer({ minimum: 1 }),
            versionId: Type.Optional(Type.String({ maxLength: 64 })),
            prefix: Type.Optional(
              Type.Literal('hls', {
                description:
                  "Sign the folder of the video's HLS ladder (a prefix signature opening every file under /a/{id}/hls/ or /v/{versionId}/hls/); the URL is its master playlist's",
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ url: Type.String(), expiresAt: Type.String() }), ...problemResponses },
      },
    },
    async (request) => {
      const { versionId, ttlSeconds, prefix } = request.body;
      const signed = await access.signUrl(
        request.principal!,
        request.params.id,
        versionId,
        ttlSeconds,
        prefix,
      );
      return { url: `${baseUrl()}${signed.path}?${signed.query}`, expiresAt: signed.expiresAt };
    },
  );
}
