import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../app.ts';
import {
  ApiKey,
  IdParams,
  PageQuery,
  pageOf,
  problemResponses,
  RoleSchema,
  Tenant,
  TierSchema,
} from '../schemas.ts';

/** Tenants (operator only) and API keys (tenant admins for their tenant, operators for any). */
export async function tenancyRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { tenancy, config } = opts.deps;

  app.post(
    '/tenants',
    {
      schema: {
        operationId: 'createTenant',
        tags: ['tenants'],
        summary: 'Create a tenant (operator keys only)',
        body: Type.Object(
          { name: Type.String({ minLength: 1, maxLength: 200 }), tier: Type.Optional(TierSchema) },
          { additionalProperties: false },
        ),
        response: { 201: Tenant, ...problemResponses },
      },
    },
    async (request, reply) => {
      const tenant = await tenancy.createTenant(request.principal!, {
        name: request.body.name,
        tier: request.body.tier ?? 'free',
      });
      return reply.code(201).send(tenant);
    },
  );

  app.get(
    '/tenants',
    {
      schema: {
        operationId: 'listTenants',
        tags: ['tenants'],
        summary: 'List tenants (operator keys only)',
        response: { 200: Type.Object({ items: Type.Array(Tenant) }), ...problemResponses },
      },
    },
    async (request) => ({ items: await tenancy.listTenants(request.principal!) }),
  );

  app.post(
    '/keys',
    {
      schema: {
        operationId: 'createKey',
        tags: ['keys'],
        summary: 'Create an API key; the key is shown once',
        body: Type.Object(
          {
            tenantId: Type.Optional(Type.String({ maxLength: 64 })),
            role: RoleSchema,
            name: Type.Optional(Type.String({ maxLength: 200 })),
            operator: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Intersect([ApiKey, Type.Object({ key: Type.String() })]), ...problemResponses },
      },
    },
    async (request, reply) => {
      const { key, view } = await tenancy.createKey(request.principal!, request.body);
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send({ ...view, key });
    },
  );

  app.get(
    '/keys',
    {
      schema: {
        operationId: 'listKeys',
        tags: ['keys'],
        summary: "List the tenant's API keys (never the keys themselves)",
        querystring: Type.Object({ ...PageQuery, tenantId: Type.Optional(Type.String({ maxLength: 64 })) }),
        response: { 200: pageOf(ApiKey), ...problemResponses },
      },
    },
    async (request) =>
      tenancy.listKeys(request.principal!, {
        tenantId: request.query.tenantId,
        limit: Math.min(request.query.limit ?? config.maxPageSize, config.maxPageSize),
        cursor: request.query.cursor,
      }),
  );

  app.delete(
    '/keys/:id',
    {
      schema: {
        operationId: 'revokeKey',
        tags: ['keys'],
        summary: 'Revoke an API key',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await tenancy.revokeKey(request.principal!, request.params.id);
      return reply.code(204).send(null);
    },
  );
}
