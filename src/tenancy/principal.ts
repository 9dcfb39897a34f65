import type { Role } from '../db/tables.ts';
import { ConveyorError } from '../errors.ts';
import { hasOwnKey } from '../own.ts';

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
  return hasOwnKey(rank, value);
}

/** Throws 403 unless the principal has at least `role`. */
export function requireRole(principal: Principal, role: Role): void {
  // A role that is not one of ours (however it got here) ranks below every role, never beside them.
  const held = hasOwnKey(rank, principal.role) ? rank[principal.role] : -1;
  if (held < rank[role]) {
    throw new ConveyorError('forbidden', `This action needs the ${role} role; the key has ${principal.role}`);
  }
}

export function requireOperator(principal: Principal): void {
  if (!principal.operator) throw new ConveyorError('forbidden', 'Only an operator key may manage tenants');
}
