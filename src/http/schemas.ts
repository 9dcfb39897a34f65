import { Type } from '@fastify/type-provider-typebox';
import { PROBLEM_CODES, type ProblemCode } from '../errors.ts';
import { JOB_STATES, LANES, OPEN_STATES, TIERS } from '../glossary.ts';

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

export const pageOf = <T extends ReturnType<typeof Type.Object>>(item: T) =>
  Type.Object({ items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) });

/** The error responses every authenticated route can give, by reference to the one Problem schema. */
export const problemResponses = {
  400: Type.Ref('Problem'),
  401: Type.Ref('Problem'),
  403: Type.Ref('Problem'),
  404: Type.Ref('Problem'),
  429: Type.Ref('Problem'),
};

/** A job's lane, as the API accepts and shows it. */
export const LaneSchema = oneOf(LANES);
/** A job's state, as the API accepts and shows it. */
export const JobStateSchema = oneOf(JOB_STATES);
/** The state of a job that is not finished. */
export const OpenStateSchema = oneOf(OPEN_STATES);
