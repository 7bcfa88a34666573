/**
 * Small catalogs for the schema planner's unit tests (src/schema/plan.ts), shaped as
 * src/schema/read.ts and src/schema/target.ts read them: a source and a target that hold only
 * what a test gives them.
 */
import type { SourceSchema, TableDef } from '../../src/schema/read.js';
import type { TargetFacts } from '../../src/schema/target.js';

/** public.<name> with a bigint id and a text body. */
export function table(oid: number, name: string): TableDef {
  return {
    oid,
    schema: 'public',
    name,
    kind: 'r',
    parent: null,
    unlogged: false,
    partitionKey: null,
    partitionBound: null,
    rls: false,
    forceRls: false,
    replicaIdentity: 'd',
    replicaIndex: null,
    comment: null,
    columns: [
      { num: 1, name: 'id', type: 'bigint', typeOid: 20, notNull: true, identity: '', generated: '', local: true, defaultOid: null, defaultExpr: null, collation: null, comment: null },
      { num: 2, name: 'body', type: 'text', typeOid: 25, notNull: false, identity: '', generated: '', local: true, defaultOid: null, defaultExpr: null, collation: null, comment: null },
    ],
  };
}

export function sourceSchema(more: Partial<SourceSchema> = {}): SourceSchema {
  return {
    tables: [],
    constraints: [],
    indexes: [],
    triggers: [],
    platformTriggers: [],
    policies: [],
    sequences: [],
    types: new Map(),
    collations: [],
    functions: new Map(),
    references: [],
    extensions: new Map(),
    authHelpers: [],
    views: [],
    viewReferences: [],
    viewIndexes: [],
    viewIndexReferences: [],
    viewTriggers: [],
    ...more,
  };
}

export function targetFacts(more: Partial<TargetFacts> = {}): TargetFacts {
  return {
    schemas: new Set(['public']),
    roles: new Set(),
    extensions: new Map(),
    available: new Set(),
    types: new Set(),
    functions: new Set(),
    collations: new Set(),
    collationProviders: new Set(['c', 'i']),
    relations: new Map(),
    columns: new Map(),
    ...more,
  };
}
