import type { Role } from '../db/tables.ts';
import { ConveyorError } from '../errors.ts';

export type { Role } from '../db/tables.ts';

/** Who is calling: resolved from an API key or a platform JWT by the auth hook. */
export interface Principal {
  tenantId: string;
  role: Role;
  /** Operator keys manage tenants; only the bootstrap key (and keys it makes so) is one. */
  operator: boolean;
  /** The API key id, or null for a JWT. */
  keyId: string | null;
  /** What the audit log and rate limiter call this caller: the key id or `jwt:<sub>`. */
  actor: string;
}

const rank: Record<Role, number> = { viewer: 0, editor: 1, admin: 2 };

export const ROLES: readonly Role[] = ['admin', 'editor', 'viewer'];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && value in rank;
}

/** Throws 403 unless the principal has at least `role`. */
export function requireRole(principal: Principal, role: Role): void {
  if (rank[principal.role] < rank[role]) {
    throw new ConveyorError('forbidden', `This action needs the ${role} role; the key has ${principal.role}`);
  }
}

export function requireOperator(principal: Principal): void {
  if (!principal.operator) throw new ConveyorError('forbidden', 'Only an operator key may manage tenants');
}
