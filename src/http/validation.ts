import { Ajv, type Options } from 'ajv';
import formats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

// ajv-formats is CommonJS with `exports.default`; under nodenext its types see the namespace object.
const addFormats = formats as unknown as (ajv: Ajv) => Ajv;

const common: Options = { allErrors: true, useDefaults: true, removeAdditional: false, strict: false };

/**
 * Query strings and path parameters arrive as text, so their validator coerces ("10" -> 10). A JSON body
 * has real types, and coercing it would accept `{"ttlSeconds": "60"}` or `{"operator": "false"}` (a
 * truthy string!) as if the client had sent what it did not. Bodies are therefore validated strictly.
 */
export function validatorCompiler(): FastifySchemaCompiler<unknown> {
  const coercing = new Ajv({ ...common, coerceTypes: 'array' });
  const strict = new Ajv({ ...common, coerceTypes: false });
  addFormats(coercing);
  addFormats(strict);
  return ({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema as object);
}
