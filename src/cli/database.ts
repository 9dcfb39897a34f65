import { existsSync } from 'node:fs';
import type { Config } from '../config/config.ts';
import {
  type Db,
  databaseLabel,
  hasConveyorTables,
  migrate,
  openDatabase,
  sqlitePath,
} from '../db/database.ts';
import { CliError } from './output.ts';

/**
 * Opens the database of an installation for a command that works on it directly (`tenants`, `keys`,
 * `gc`), and applies pending migrations. Says on stderr which database it opened. Unless `create`, a
 * database that does not exist yet is an error, not a new empty one: a mistyped CONVEYOR_DATA_DIR or
 * CONVEYOR_DATABASE_URL would otherwise show an installation without tenants or keys, and leave an empty
 * database behind. For SQLite that is a missing file (checked before anything could create it); for
 * PostgreSQL a schema without Conveyor's tables (nothing is migrated then).
 */
export async function openInstallation(config: Config, options: { create?: boolean }): Promise<Db> {
  const label = databaseLabel(config);
  process.stderr.write(`database: ${label}\n`);
  const missing = () =>
    new CliError(
      `no Conveyor database at ${label}: check CONVEYOR_DATA_DIR or CONVEYOR_DATABASE_URL, or pass --create to create it`,
    );
  const path = sqlitePath(config);
  if (!options.create && path !== undefined && (path === ':memory:' || !existsSync(path))) throw missing();
  const db = openDatabase(config);
  try {
    if (!options.create && !(await hasConveyorTables(db))) throw missing();
    await migrate(db);
  } catch (error) {
    await db.close();
    throw error;
  }
  return db;
}
