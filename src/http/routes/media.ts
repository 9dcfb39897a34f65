import { type Static, Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { ConveyorError } from '../../errors.ts';
import { FITS, GRAVITIES, OUTPUT_FORMATS, type RequestedFormat } from '../../grammar/transform-spec.ts';
import type { TransformTarget } from '../../media/image/transform-url.ts';
import { INGEST_VIA, type IngestItem } from '../../media/ingest/ingest.ts';
import type { AppDeps } from '../app.ts';
import { IdParams, LaneSchema, problemResponses, Visibility, withHeaders } from '../schemas.ts';
import { jobLocation, jobView } from './jobs.ts';

const ItemSchema = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 8192, description: 'http or https URL to fetch' }),
    kind: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 32,
        description: 'Maps to a lane through CONVEYOR_INGEST_KINDS (avatar, post, backfill, …)',
      }),
    ),
    priority: Type.Optional(LaneSchema),
    idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    filename: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    visibility: Type.Optional(Visibility),
    assetId: Type.Optional(
      Type.String({
        maxLength: 64,
        description:
          'Re-ingest into this asset, conditionally (If-None-Match / If-Modified-Since); direct downloads only',
      }),
    ),
    via: Type.Optional(
      Type.Union(
        INGEST_VIA.map((v) => Type.Literal(v)),
        {
          description:
            'How the URL is fetched: `direct` (default) downloads the file at the URL (`ingest.fetch` job); `ytdlp` hands a video-site page to yt-dlp, whose connections go through the same address rules (`ingest.site` job)',
        },
      ),
    ),
    playlist: Type.Optional(
      Type.Boolean({
        description:
          'With `via: "ytdlp"`: the URL is a playlist; an `ingest.playlist` job lists it and queues one `ingest.site` job per entry (report: GET /api/v1/ingest/playlists/{id})',
      }),
    ),
  },
  { additionalProperties: false },
);

const ReportEntry = Type.Object({
  url: Type.String(),
  title: Type.Optional(Type.String()),
  jobId: Type.Union([Type.String(), Type.Null()], { description: "The entry's `ingest.site` job" }),
  state: Type.String({ description: "The child job's state, or `refused` for an entry that got no job" }),
  assetId: Type.Optional(Type.String()),
  error: Type.Optional(Type.Object({ code: Type.Optional(Type.String()), message: Type.String() })),
});

const PlaylistReportSchema = Type.Object({
  jobId: Type.String(),
  state: Type.String({ description: "The playlist job's own state; entries are listed once it succeeded" }),
  done: Type.Boolean({ description: 'Every entry has ended' }),
  succeeded: Type.Integer(),
  failed: Type.Integer(),
  pending: Type.Integer(),
  truncated: Type.Boolean({ description: 'The playlist had more than CONVEYOR_YTDLP_PLAYLIST_MAX_ENTRIES' }),
  entries: Type.Array(ReportEntry),
});

const BatchBody = Type.Object(
  { items: Type.Array(ItemSchema, { minItems: 1 }) },
  { additionalProperties: false },
);

const TransformBody = Type.Object(
  {
    preset: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    width: Type.Optional(Type.Integer({ minimum: 1 })),
    height: Type.Optional(Type.Integer({ minimum: 1 })),
    fit: Type.Optional(Type.Union(FITS.map((f) => Type.Literal(f)))),
    gravity: Type.Optional(
      Type.Union([
        ...GRAVITIES.map((g) => Type.Literal(g)),
        Type.Object(
          { x: Type.Number({ minimum: 0, maximum: 1 }), y: Type.Number({ minimum: 0, maximum: 1 }) },
          { additionalProperties: false },
        ),
      ]),
    ),
    quality: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    format: Type.Optional(Type.Union(['source', 'auto', ...OUTPUT_FORMATS].map((f) => Type.Literal(f)))),
    dpr: Type.Optional(Type.Number({ minimum: 1 })),
    blur: Type.Optional(Type.Number({ minimum: 0.3 })),
    sharpen: Type.Optional(Type.Number({ minimum: 0.3 })),
    versionId: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

function toTransformRequest(body: Static<typeof TransformBody>): TransformTarget {
  const format = body.format as RequestedFormat | undefined;
  if (body.preset !== undefined) {
    const extra = Object.keys(body).filter((k) => !['preset', 'format', 'versionId'].includes(k));
    if (extra.length > 0) {
      throw new ConveyorError('validation_failed', `A preset takes only a format, not ${extra.join(', ')}`);
    }
    return { preset: body.preset, ...(format ? { format } : {}) };
  }
  return {
    fit: body.fit ?? 'cover',
    gravity: body.gravity ?? 'center',
    format: format ?? 'source',
    dpr: body.dpr ?? 1,
    ...(body.width !== undefined ? { width: body.width } : {}),
    ...(body.height !== undefined ? { height: body.height } : {}),
    ...(body.quality !== undefined ? { quality: body.quality } : {}),
    ...(body.blur !== undefined ? { blur: body.blur } : {}),
    ...(body.sharpen !== undefined ? { sharpen: body.sharpen } : {}),
  };
}

const toItem = (body: Static<typeof ItemSchema>): IngestItem => ({ ...body });

/**
 * Media API: remote ingest (answers 202 as soon as the fetch job is queued; the job's events report each
 * step and its result names the asset), and signed transform URLs for clients that hold no key.
 */
export async function mediaRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { ingest, transforms } = opts.deps.media;
  const { assets, baseUrl } = opts.deps;
  const JobRef = Type.Ref('Job');

  app.post(
    '/ingest',
    {
      schema: {
        operationId: 'ingestUrl',
        tags: ['ingest'],
        summary: 'Fetch a remote URL into a new asset (or, with assetId, into an existing one)',
        description:
          'Answers 202 with the ingest job (200 with the existing one for a reused idempotency key): `ingest.fetch` for a direct download, `ingest.site` with `via: "ytdlp"`, `ingest.playlist` with `playlist: true` as well. The URL is checked against the SSRF policy now where that needs no DNS (400), and again, address by address, when the job connects (for yt-dlp, every connection it makes).',
        body: ItemSchema,
        response: {
          200: withHeaders(JobRef, jobLocation),
          202: withHeaders(JobRef, jobLocation),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const { job, outcome } = await ingest.enqueue(request.principal!, toItem(request.body));
      return reply
        .code(outcome === 'created' ? 202 : 200)
        .header('location', `/api/v1/jobs/${job.id}`)
        .send(jobView(job));
    },
  );

  app.post(
    '/ingest/batch',
    {
      schema: {
        operationId: 'ingestUrls',
        tags: ['ingest'],
        summary: 'Queue many remote fetches at once, each in the lane of its kind',
        description:
          'All or nothing: an invalid item (named by its index) queues none. Answers 202 with the jobs in the order of the items.',
        body: BatchBody,
        response: {
          202: Type.Object({ items: Type.Array(JobRef) }),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const results = await ingest.enqueueBatch(request.principal!, request.body.items.map(toItem));
      return reply.code(202).send({ items: results.map((r) => jobView(r.job)) });
    },
  );
  app.get(
    '/ingest/playlists/:id',
    {
      schema: {
        operationId: 'ingestPlaylistReport',
        tags: ['ingest'],
        summary: 'The per-entry report of a playlist ingest',
        description:
          "The id is the `ingest.playlist` job's. Built from its children as they are now: each entry's job, state, asset (once succeeded) and error (once failed). Entries succeed or fail on their own; `done` says every one has ended.",
        params: IdParams,
        response: { 200: PlaylistReportSchema, ...problemResponses },
      },
    },
    async (request) => ingest.playlistReport(request.principal!, request.params.id),
  );

  app.post(
    '/assets/:id/transform-url',
    {
      schema: {
        operationId: 'createTransformUrl',
        tags: ['transforms'],
        summary: 'A signed on-the-fly transform URL of the asset',
        description:
          'For clients that hold no signing key. Give either `preset` (optionally with `format`) or the options; the answer is a /t/ URL of the asset (its latest content), or of `versionId` when given.',
        params: IdParams,
        body: TransformBody,
        response: { 200: Type.Object({ url: Type.String(), path: Type.String() }), ...problemResponses },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const asset = await assets.get(principal, request.params.id);
      let target = asset.id;
      if (request.body.versionId !== undefined) {
        const version = await assets.getVersion(principal, asset.id, request.body.versionId);
        target = version.id;
      }
      const path = transforms.signedPath(toTransformRequest(request.body), target);
      return { url: baseUrl() + path, path };
    },
  );
}
