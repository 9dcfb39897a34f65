import type { SwaggerTransform } from '@fastify/swagger';
import { type TSchema, Type } from '@fastify/type-provider-typebox';
import { catalog, PROBLEM_CODES, type ProblemCode } from '../errors.ts';
import { JOB_STATES, LANES, OPEN_STATES, TIERS } from '../glossary.ts';
import { PROBLEM_MEDIA_TYPE } from '../problems.ts';

/** JSON shapes of the API; Fastify validates requests and serializes responses with them, and OpenAPI is built from them. */

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
    code: Type.Unsafe<ProblemCode>({
      type: 'string',
      enum: PROBLEM_CODES,
      description: 'The stable error code; docs/api.md, "Errors", says when each happens',
    }),
  },
  { $id: 'Problem', additionalProperties: true },
);

export const Visibility = Type.Union([Type.Literal('public'), Type.Literal('private')]);
export const RoleSchema = Type.Union([Type.Literal('admin'), Type.Literal('editor'), Type.Literal('viewer')]);
/** One of `values`, as a JSON schema (`anyOf` of constants) and as their TypeScript union. */
function oneOf<T extends string>(values: readonly T[]) {
  return Type.Unsafe<T>(Type.Union(values.map((value) => Type.Literal(value))));
}

export const TierSchema = oneOf(TIERS);

export const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  cursor: Type.Optional(Type.String({ maxLength: 64 })),
};

const MediaFields = {
  media: Type.Optional(
    Type.Union([
      Type.Object({
        format: Type.String(),
        width: Type.Integer(),
        height: Type.Integer(),
        orientation: Type.Union([Type.Integer(), Type.Null()]),
        hasAlpha: Type.Boolean(),
        pages: Type.Integer(),
        dominantColor: Type.Union([Type.String(), Type.Null()]),
        thumbhash: Type.Union([Type.String(), Type.Null()], { description: 'ThumbHash, base64' }),
        blurhash: Type.Union([Type.String(), Type.Null()]),
        phash: Type.Union([Type.String(), Type.Null()], {
          description: '64-bit DCT perceptual hash, 16 hex digits; compare by Hamming distance',
        }),
        exif: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
      }),
      Type.Null(),
    ]),
  ),
  video: Type.Optional(
    Type.Union([
      Type.Object(
        {
          durationMs: Type.Integer(),
          width: Type.Integer({ description: 'As displayed, after rotation' }),
          height: Type.Integer(),
          hasAudio: Type.Boolean(),
          container: Type.String(),
          videoCodec: Type.String(),
          audioCodec: Type.Union([Type.String(), Type.Null()]),
          loudness: Type.Unknown({ description: 'EBU R128: integrated LUFS, range, true peak; or null' }),
          state: Type.Union(
            [
              Type.Literal('none'),
              Type.Literal('encoding'),
              Type.Literal('complete'),
              Type.Literal('failed'),
            ],
            {
              description:
                'The ladder this URL serves; before it is complete, how far the newest attempt got',
            },
          ),
          renditions: Type.Array(
            Type.Object(
              {
                name: Type.String(),
                codec: Type.String(),
                width: Type.Integer(),
                height: Type.Integer(),
                frameRate: Type.Optional(Type.Number()),
                bandwidth: Type.Integer({ description: 'Peak segment bit rate, bits/s' }),
                averageBandwidth: Type.Integer(),
                codecs: Type.Optional(Type.Array(Type.String())),
                bytes: Type.Optional(Type.Integer()),
                encoder: Type.Optional(Type.String()),
                quality: Type.Optional(
                  Type.Union([
                    Type.Object({
                      ssim: Type.Union([Type.Number(), Type.Null()]),
                      psnr: Type.Union([Type.Number(), Type.Null()]),
                      vmaf: Type.Union([Type.Number(), Type.Null()]),
                    }),
                    Type.Null(),
                  ]),
                ),
              },
              { additionalProperties: true },
            ),
          ),
          encoder: Type.Union([Type.String(), Type.Null()]),
          fallbacks: Type.Array(Type.Unknown()),
          urls: Type.Union([
            Type.Object({
              master: Type.String(),
              poster: Type.String(),
              sprite: Type.String(),
              spriteVtt: Type.String(),
              fallback: Type.String(),
            }),
            Type.Null(),
          ]),
        },
        {
          description:
            'Video content: the probe and the HLS ladder; null for other content or before the probe',
        },
      ),
      Type.Null(),
    ]),
  ),
  variants: Type.Optional(
    Type.Array(
      Type.Object({
        preset: Type.String(),
        format: Type.String(),
        contentType: Type.String(),
        width: Type.Integer(),
        height: Type.Integer(),
        size: Type.Integer(),
        url: Type.String(),
      }),
    ),
  ),
};

export const Asset = Type.Object(
  {
    id: Type.String(),
    filename: Type.String(),
    contentType: Type.String(),
    size: Type.Integer(),
    etag: Type.String(),
    sha256: Type.String(),
    visibility: Visibility,
    versionCount: Type.Integer(),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
    contentUpdatedAt: Type.String({ format: 'date-time' }),
    url: Type.String(),
    ...MediaFields,
  },
  { $id: 'Asset' },
);

export const Version = Type.Object(
  {
    id: Type.String(),
    assetId: Type.String(),
    number: Type.Integer(),
    filename: Type.String(),
    contentType: Type.String(),
    size: Type.Integer(),
    etag: Type.String(),
    sha256: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    url: Type.String(),
    ...MediaFields,
  },
  { $id: 'Version' },
);

export const ApiKey = Type.Object(
  {
    id: Type.String(),
    tenantId: Type.String(),
    role: RoleSchema,
    operator: Type.Boolean(),
    name: Type.Union([Type.String(), Type.Null()]),
    prefix: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { $id: 'ApiKey' },
);

export const Tenant = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    tier: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Tenant' },
);

export const pageOf = <T extends TSchema>(item: T) =>
  Type.Object({ items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) });

/*
 * Response shapes as Fastify and @fastify/swagger both read them. A response in the `content` form
 * (`{description, headers?, content: {<media type>: {schema}}}`) is serialized by Fastify only when the
 * reply's Content-Type is one it lists, and documented with exactly those media types; a plain schema is
 * documented as application/json. `headers` is documentation only: Fastify does not check them.
 */

/** A response header as @fastify/swagger documents it: a schema with a description. */
export type ResponseHeader = { type: string; description: string; [keyword: string]: unknown };

export const header = (description: string, schema: Record<string, unknown> = {}): ResponseHeader => ({
  type: 'string',
  ...schema,
  description,
});

/** The titles of the catalog's codes that answer with `status` (src/errors.ts). */
function titlesOf(status: number): string {
  const titles = Object.values(catalog)
    .filter((entry) => entry.status === status)
    .map((entry) => entry.title);
  if (titles.length === 0) throw new Error(`No code of the error catalog answers ${status}`);
  return titles.join('; ');
}

/**
 * The error response for `status`: a problem document (RFC 9457, src/problems.ts) by reference to the one
 * Problem schema, described by the catalog's titles for that status unless `description` says more.
 */
export function problem(
  status: number,
  options: { description?: string; headers?: Record<string, ResponseHeader> } = {},
) {
  return {
    description: options.description ?? titlesOf(status),
    ...(options.headers ? { headers: options.headers } : {}),
    content: { [PROBLEM_MEDIA_TYPE]: { schema: Type.Ref('Problem') } },
  };
}

/** The error responses for these statuses, each a problem document. */
export function problems(...statuses: number[]): Record<number, ReturnType<typeof problem>> {
  return Object.fromEntries(statuses.map((status) => [status, problem(status)]));
}

/** The error responses every authenticated route can give. */
export const problemResponses = problems(400, 401, 403, 404, 429, 500);

/** `schema` with response headers to document; typed (and serialized) as the schema itself. */
export function withHeaders<T extends object>(schema: T, headers: Record<string, ResponseHeader>): T {
  return { ...schema, headers };
}

/** A response without content (a 204, a 304, any answer to HEAD), with the headers it carries. */
export function noContent(description: string, headers?: Record<string, ResponseHeader>) {
  return { type: 'null', description, ...(headers ? { headers } : {}) };
}

/** Bytes of any media type, as a request or response body. */
export const binaryContent = { '*/*': { schema: { type: 'string', format: 'binary' } } };

/** A Location header: where the created resource is. */
export const location = (what: string) => ({ Location: header(what, { format: 'uri-reference' }) });

/**
 * Route config that documents what Fastify must not see in the route's schema, since it would check it:
 * a body another parser reads (multipart, tus), request headers a library checks with answers of its own
 * (tus), or a cleaner URL with named parameters for a wildcard route. `schema` is merged over the route's
 * schema, in the OpenAPI document only.
 */
export function documentOnly(extra: { url?: string; schema: Record<string, unknown> }): {
  swaggerTransform: SwaggerTransform;
} {
  return {
    swaggerTransform: ({ schema, url }) => ({
      schema: { ...schema, ...extra.schema },
      url: extra.url ?? url,
    }),
  };
}

/** The conditional and range headers of a delivery answer (src/delivery/origin.ts). */
const validators = {
  ETag: header('The strong validator: the SHA-256 of the bytes, quoted'),
  'Last-Modified': header('When the content last changed (an HTTP date)'),
  'Cache-Control': header(
    'public, max-age=31536000, immutable for a version; the configured policy for latest content; private, no-store for private content',
  ),
};
const deliveryHeaders = (vary: boolean) => ({
  ...validators,
  'Accept-Ranges': header('bytes'),
  'Content-Length': header('The length of the content sent', { type: 'integer' }),
  'Content-Disposition': header(
    'inline (or attachment for active content, if so configured), with the filename',
  ),
  ...(vary
    ? { Vary: header('Accept, when the output format (f:auto) was chosen by the Accept header') }
    : {}),
});

/**
 * The answers of a delivery URL (src/delivery/origin.ts): the content (GET) or its headers (HEAD), ranges
 * (GET only: HEAD ignores Range, as RFC 9110 §14.2 says), revalidation, and the problems. A `variant`
 * (preset) or `transform` is rendered, with the refusals and the back-pressure of a render; a transform's
 * format may follow the Accept header.
 */
export function deliveryResponses(method: 'GET' | 'HEAD', kind: 'content' | 'variant' | 'transform') {
  const rendered = kind !== 'content';
  const headers = deliveryHeaders(kind === 'transform');
  const get = method === 'GET';
  return {
    200: get
      ? { description: 'The content', headers, content: binaryContent }
      : noContent('The headers a GET would answer with', headers),
    ...(get
      ? {
          206: {
            description:
              'The requested range (Range, honoured when If-Range matches): one range as its bytes, several as multipart/byteranges',
            headers: {
              ...headers,
              'Content-Range': header('bytes <first>-<last>/<size> (for a single range)'),
            },
            content: binaryContent,
          },
        }
      : {}),
    304: noContent(
      'Not modified: the copy the client has is current (If-None-Match, If-Modified-Since)',
      validators,
    ),
    400: problem(400, {
      description: rendered ? 'Malformed options, or a malformed query' : 'A malformed query',
    }),
    403: problem(403, {
      description: `A grant of private content has lapsed (an expired or revoked token, a signed URL past exp)${kind === 'transform' ? ', or the URL is not signed correctly' : ''}`,
    }),
    404: problem(404, {
      description: 'No such asset or version, or private content without a credential for it',
    }),
    412: problem(412, {
      description: 'If-Match or If-Unmodified-Since does not hold',
      headers: { ETag: validators.ETag, 'Last-Modified': validators['Last-Modified'] },
    }),
    ...(get
      ? {
          416: problem(416, {
            description: 'No requested range overlaps the content',
            headers: { 'Content-Range': header('bytes */<size>') },
          }),
        }
      : {}),
    ...(rendered ? problems(413, 415, 422) : {}),
    ...problems(429, 500),
    ...(rendered
      ? {
          503: problem(503, {
            description: 'Too many renders are waiting',
            headers: { 'Retry-After': header('Seconds to wait before trying again', { type: 'integer' }) },
          }),
        }
      : {}),
  };
}

/** A job's lane, as the API accepts and shows it. */
export const LaneSchema = oneOf(LANES);
/** A job's state, as the API accepts and shows it. */
export const JobStateSchema = oneOf(JOB_STATES);
/** The state of a job that is not finished. */
export const OpenStateSchema = oneOf(OPEN_STATES);
