import type { Kysely } from 'kysely';
import { newId } from '../db/ids.ts';
import type { Database } from '../db/tables.ts';

export interface AuditEntry {
  tenantId: string | null;
  actor: string | null;
  action: string;
  target?: string | null;
  details?: Record<string, unknown>;
}

/** Appends to the audit log; pass the transaction so the entry commits with the change it records. */
export async function audit(db: Kysely<Database>, entry: AuditEntry): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({
      id: newId('aud'),
      tenant_id: entry.tenantId,
      actor: entry.actor,
      action: entry.action,
      target: entry.target ?? null,
      details: entry.details ? JSON.stringify(entry.details) : null,
      created_at: Date.now(),
    })
    .execute();
}
