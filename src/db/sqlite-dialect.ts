import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
} from 'kysely';
import {
  type Checkpointer,
  FALLBACK_AUTOCHECKPOINT_PAGES,
  startCheckpointer,
} from './sqlite-checkpointer.ts';

/**
 * Kysely dialect over Node's built-in `node:sqlite`.
 *
 * node:sqlite is synchronous, so a statement that waits on another process's write lock would block the
 * event loop for as long as SQLite's busy timeout. We keep that timeout tiny (a few ms of SQLite's own
 * spinning) and retry SQLITE_BUSY ourselves with asynchronous, jittered sleeps up to `busyRetryMs`, so
 * a contended database slows one request down instead of freezing the whole server.
 *
 * WAL checkpoints run on a background thread (sqlite-checkpointer.ts), not in whichever commit fills
 * the WAL.
 *
 * Write transactions start with BEGIN IMMEDIATE: taking the write lock up front means a transaction
 * never fails half-way with SQLITE_BUSY on its first write (which a deferred BEGIN can, unretryably).
 */
export interface NodeSqliteConfig {
  path: string;
  busyRetryMs: number;
  /** Checkpoint the WAL on a background thread this often; 0 leaves it to SQLite (on the event loop). */
  checkpointMs?: number;
  statementCacheSize?: number;
}

export class NodeSqliteDialect implements Dialect {
  readonly #config: NodeSqliteConfig;
  constructor(config: NodeSqliteConfig) {
    this.#config = config;
  }
  createDriver(): Driver {
    return new NodeSqliteDriver(this.#config);
  }
  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }
  createAdapter(): DialectAdapter {
    return new SqliteAdapter();
  }
  // biome-ignore lint/suspicious/noExplicitAny: Kysely's own signature
  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}

const SQLITE_BUSY_TIMEOUT_MS = 5;

class NodeSqliteDriver implements Driver {
  readonly #config: NodeSqliteConfig;
  #connection: NodeSqliteConnection | undefined;
  #checkpointer: Checkpointer | undefined;
  #queue: Promise<void> = Promise.resolve();

  constructor(config: NodeSqliteConfig) {
    this.#config = config;
  }

  async init(): Promise<void> {
    const db = new DatabaseSync(this.#config.path, { timeout: SQLITE_BUSY_TIMEOUT_MS });
    db.exec('PRAGMA journal_mode = WAL');
    // NORMAL is durable in WAL mode against application crashes; a power cut can lose the last
    // transactions but never corrupts the file (https://sqlite.org/pragma.html#pragma_synchronous).
    db.exec('PRAGMA synchronous = NORMAL');
    db.exec('PRAGMA foreign_keys = ON');
    const { path, checkpointMs = 0 } = this.#config;
    if (checkpointMs > 0 && path !== ':memory:') {
      db.exec(`PRAGMA wal_autocheckpoint = ${FALLBACK_AUTOCHECKPOINT_PAGES}`);
      this.#checkpointer = startCheckpointer(path, checkpointMs);
    }
    this.#connection = new NodeSqliteConnection(db, this.#config);
  }

  /** One connection, handed out one holder at a time (FIFO), as SQLite allows a single writer anyway. */
  async acquireConnection(): Promise<DatabaseConnection> {
    let release!: () => void;
    const previous = this.#queue;
    this.#queue = new Promise((resolve) => {
      release = resolve;
    });
    await previous;
    const connection = this.#connection!;
    connection.release = release;
    return connection;
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('BEGIN IMMEDIATE'));
  }
  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('COMMIT'));
  }
  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    // SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM).
    // A ROLLBACK then fails with "no transaction is active", and Kysely would throw that instead of the
    // error that mattered (a full disk must answer 507, not 500).
    if (!(connection as NodeSqliteConnection).inTransaction) return;
    await connection.executeQuery(CompiledQuery.raw('ROLLBACK'));
  }
  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    (connection as NodeSqliteConnection).release?.();
  }
  async destroy(): Promise<void> {
    await this.#checkpointer?.stop();
    this.#connection?.close();
  }
}

class NodeSqliteConnection implements DatabaseConnection {
  readonly #db: DatabaseSync;
  readonly #config: NodeSqliteConfig;
  readonly #statements = new Map<string, Prepared>();
  release: (() => void) | undefined;

  constructor(db: DatabaseSync, config: NodeSqliteConfig) {
    this.#db = db;
    this.#config = config;
  }

  /**
   * A cached prepared statement and whether it returns rows. Both are worth keeping: preparing parses
   * the SQL, and `columns()` (how we tell a reader from a writer) costs about 10 microseconds a call,
   * as much as running a primary-key lookup.
   */
  #prepare(sql: string): Prepared {
    let prepared = this.#statements.get(sql);
    if (prepared) {
      // Refresh recency: a Map iterates in insertion order, so the first key is the least recently used.
      this.#statements.delete(sql);
    } else {
      const statement = this.#db.prepare(sql);
      prepared = { statement, reader: statement.columns().length > 0 };
      const limit = this.#config.statementCacheSize ?? 500;
      if (this.#statements.size >= limit) this.#statements.delete(this.#statements.keys().next().value!);
    }
    this.#statements.set(sql, prepared);
    return prepared;
  }

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const parameters = query.parameters.map(toSqlite);
    const deadline = Date.now() + this.#config.busyRetryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const { statement, reader } = this.#prepare(query.sql);
        if (reader) return { rows: statement.all(...parameters) as R[] };
        const { changes, lastInsertRowid } = statement.run(...parameters);
        return { rows: [], numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid) };
      } catch (error) {
        if (!isBusy(error) || Date.now() >= deadline) throw error;
        // Full jitter, growing to at most 50 ms, so waiting processes don't retry in lockstep.
        await sleep(Math.random() * Math.min(50, 2 ** attempt));
      }
    }
  }

  /** Whether a transaction is open on this connection (SQLite may have ended one by itself). */
  get inTransaction(): boolean {
    return this.#db.isTransaction;
  }

  async *streamQuery<R>(query: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    const result = await this.executeQuery<R>(query);
    yield result;
  }

  close(): void {
    this.#statements.clear();
    this.#db.close();
  }
}

interface Prepared {
  statement: StatementSync;
  reader: boolean;
}

function isBusy(error: unknown): boolean {
  const code = (error as { errcode?: number }).errcode;
  // SQLITE_BUSY (5) and its extended codes (e.g. 261 SQLITE_BUSY_RECOVERY, 517 SQLITE_BUSY_SNAPSHOT).
  return typeof code === 'number' && (code & 0xff) === 5;
}

function toSqlite(value: unknown): SQLInputValue {
  if (value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value instanceof Date) return value.getTime();
  return value as SQLInputValue;
}
