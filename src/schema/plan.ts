/**
 * From what the source's tables need (read.ts) and what the target holds (target.ts): the
 * statements to run, in order, and what cannot come across as it is. Pure: no database here,
 * so `walbridge schema --dry-run`, a real run and preflight's target check all see one plan.
 *
 * The rules:
 * - What the target has already is left as it is. A table that exists is compared, never
 *   altered; if it differs, that is a problem and nothing runs.
 * - Supabase's platform (platform.ts) never lands: its schemas, reserved roles, grants, default
 *   privileges, publications and event triggers are not even read. What the app's objects need from
 *   it is decided per object: GoTrue's auth.uid() & co. and the API roles are made when policies are
 *   kept (the default: row-level security keeps working); anything else that calls into the
 *   platform is left out and listed with the choice it leaves.
 */
import { quoteIdent } from '../pg/ident.js';
import * as ddl from './ddl.js';
import { dependenciesFirst } from './order.js';
import { API_ROLES, isApiRole, isAppSchema, isAuthHelper, isReservedRole, isWalbridgeSchema, authHelpersCalledIn } from './platform.js';
import type { ColumnConversion } from '../convert/conversions.js';
import type { ColumnDef, ConstraintDef, FunctionDef, IndexDef, PolicyDef, Reference, SequenceDef, SourceSchema, TableDef, TypeDef, ViewDef, ViewReference } from './read.js';
import { functionKey, type TargetFacts } from './target.js';

export type PolicyChoice = 'keep' | 'drop';

export interface PlanOptions {
  /** The selected schemas: the app's, whatever their names. */
  schemas: string[];
  /** keep: make the API roles (NOLOGIN) and auth.uid() & co. so the policies work; drop: leave such policies out. */
  policies: PolicyChoice;
  /** Declared conversions (WALBRIDGE_CONVERT) by `schema.table.column`: such a column is made with the type its conversion produces. */
  conversions?: Map<string, ColumnConversion>;
}

export interface Step {
  kind: string;
  name: string;
  sql: string;
}

export interface LeftOut {
  kind: string;
  name: string;
  reason: string;
  choice: string;
}

export interface Problem {
  message: string;
  fix: string;
}

export interface SchemaPlan {
  steps: Step[];
  present: Array<{ kind: string; name: string }>;
  leftOut: LeftOut[];
  problems: Problem[];
}

/** The order statements run in: each kind only needs kinds before it. */
const ORDER = [
  'role',
  'schema',
  'extension',
  'collation',
  'type',
  'function',
  'sequence',
  'table',
  'partition',
  'sequence-owner',
  'constraint',
  'index',
  'foreign-key',
  'replica-identity',
  'view',
  'trigger',
  'rls',
  'policy',
  'comment',
] as const;
type Kind = (typeof ORDER)[number];

const display = (schema: string, name: string) => `${schema}.${name}`;
const tableDisplay = (t: TableDef) => display(t.schema, t.name);

export function planSchema(src: SourceSchema, target: TargetFacts, opts: PlanOptions): SchemaPlan {
  return new Planner(src, target, opts).plan();
}

class Planner {
  private readonly buckets = new Map<Kind, Step[]>(ORDER.map((k) => [k, []]));
  private readonly present: SchemaPlan['present'] = [];
  private readonly leftOut: LeftOut[] = [];
  private readonly problems: Problem[] = [];
  private readonly tables: Map<number, TableDef>;
  private readonly refsByOwner = new Map<string, Reference[]>();
  /** Roles, schemas and functions already planned (or present): each made once. */
  private readonly planned = new Set<string>();
  /** Tables this run makes (their constraints, indexes, policies... come with them). */
  private readonly created = new Set<number>();

  constructor(
    private readonly src: SourceSchema,
    private readonly target: TargetFacts,
    private readonly opts: PlanOptions,
  ) {
    this.tables = new Map(src.tables.map((t) => [t.oid, t]));
    for (const r of src.references) {
      const key = `${r.class}:${r.objid}`;
      this.refsByOwner.set(key, [...(this.refsByOwner.get(key) ?? []), r]);
    }
  }

  plan(): SchemaPlan {
    this.planExtensions();
    this.planCollations();
    this.planTypes();
    this.planFunctions();
    this.planTables();
    this.planSequences();
    for (const t of this.src.tables) if (this.created.has(t.oid)) this.planTableObjects(t);
    this.planViews();
    this.planPlatformTriggers();
    return { steps: ORDER.flatMap((k) => this.buckets.get(k) ?? []), present: this.present, leftOut: this.leftOut, problems: this.problems };
  }

  private isApp(schema: string): boolean {
    return isAppSchema(schema, this.opts.schemas);
  }

  private step(kind: Kind, name: string, sql: string): void {
    this.stepIn(kind, kind, name, sql);
  }

  /** A statement shown as `kind`, run with the statements of `bucket`. */
  private stepIn(bucket: Kind, kind: string, name: string, sql: string): void {
    this.buckets.get(bucket)?.push({ kind, name, sql });
  }

  private ensureSchema(schema: string): void {
    if (this.target.schemas.has(schema) || this.planned.has(`schema:${schema}`)) return;
    this.planned.add(`schema:${schema}`);
    this.step('schema', schema, ddl.createSchema(schema));
  }

  private ensureRole(role: string): void {
    if (this.target.roles.has(role) || this.planned.has(`role:${role}`)) return;
    this.planned.add(`role:${role}`);
    this.step('role', role, ddl.createRole(role));
  }

  private refs(cls: string, oid: number | null): Reference[] {
    return oid === null ? [] : (this.refsByOwner.get(`${cls}:${oid}`) ?? []);
  }

  /** What an object calls in Supabase's platform: GoTrue's helpers apart from the rest. */
  private platformCalls(refs: Reference[]): { helpers: FunctionDef[]; others: string[] } {
    const helpers: FunctionDef[] = [];
    const others: string[] = [];
    for (const r of refs) {
      if (r.refExtension || r.refSchema === null || this.isApp(r.refSchema) || isWalbridgeSchema(r.refSchema)) continue;
      const f = r.refClass === 'pg_proc' ? this.src.functions.get(r.refOid) : undefined;
      if (f && isAuthHelper(f.schema, f.name)) helpers.push(f);
      else others.push(r.refName);
    }
    return { helpers, others };
  }

  /** auth.uid() & co. on the target, in schema auth, as the source defines them. */
  private ensureHelper(f: FunctionDef): void {
    const key = functionKey(f.schema, f.name, f.args);
    if (this.target.functions.has(key) || this.planned.has(`function:${key}`)) return;
    this.planned.add(`function:${key}`);
    this.ensureSchema(f.schema);
    this.step('function', `${f.schema}.${f.name}(${f.args})`, ddl.createFunction(f));
  }

  /**
   * An object that calls into the platform: with policies kept, GoTrue's helpers are made and
   * the object stays; anything else leaves it out. Returns whether it stays.
   */
  private keepCalling(kind: string, name: string, refs: Reference[], choice: string): boolean {
    const { helpers, others } = this.platformCalls(refs);
    if (others.length > 0) {
      this.leftOut.push({ kind, name, reason: `calls ${others.join(', ')}, part of Supabase's platform, which stays on Supabase`, choice });
      return false;
    }
    if (helpers.length > 0 && this.opts.policies === 'drop') {
      this.leftOut.push({
        kind,
        name,
        reason: `calls ${helpers.map((h) => `auth.${h.name}()`).join(', ')}, Supabase Auth's, which --policies drop does not make on the target`,
        choice: 'walbridge schema --policies keep makes auth.uid() & co. on the target (they read the JWT claims PostgREST sets)',
      });
      return false;
    }
    for (const h of helpers) this.ensureHelper(h);
    return true;
  }

  private conversionOf(t: TableDef, column: string): ColumnConversion | undefined {
    return this.opts.conversions?.get(`${tableDisplay(t)}.${column}`);
  }

  /** The table's converted or dropped columns that the index `indexOid` names. */
  private indexOnConverted(t: TableDef, indexOid: number): string[] {
    const def = this.src.indexes.find((i) => i.oid === indexOid)?.def ?? '';
    return t.columns.filter((c) => this.conversionOf(t, c.name) && mentionsColumn(def, c.name)).map((c) => c.name);
  }

  /** A type only converted columns have (the stand-in of a type the target lacks): not made. */
  private onlyForConverted(oid: number): boolean {
    const columns = this.src.tables.flatMap((t) => t.columns.map((c) => ({ c, converted: this.conversionOf(t, c.name) !== undefined })));
    if (!columns.some((x) => x.converted && x.c.typeOid === oid)) return false;
    if (columns.some((x) => !x.converted && x.c.typeOid === oid)) return false;
    return !this.src.references.some((r) => r.refOid === oid && !(r.class === 'pg_class' && r.subid > 0));
  }

  /** The table as the target gets it: a converted column with the type its conversion makes, a dropped one gone. */
  private converted(t: TableDef): TableDef {
    const columns = t.columns.flatMap((c): ColumnDef[] => {
      const conversion = this.conversionOf(t, c.name);
      if (!conversion) return [c];
      if (conversion.kind === 'drop') return [];
      const type = conversion.targetTypes[0];
      if (!type) {
        this.problems.push({
          message: `column ${tableDisplay(t)}.${c.name} is converted with ${conversion.spec}, whose result type walbridge schema cannot tell`,
          fix: `Create ${tableDisplay(t)} on the target yourself with the column's new type (walbridge schema then leaves it as it is), or use a built-in conversion.`,
        });
        return [c];
      }
      // The source's default is of the source's type; the app fills the new column.
      return [{ ...c, type, defaultExpr: null, defaultOid: null, collation: null }];
    });
    return { ...t, columns };
  }

  // --- extensions, types, functions -------------------------------------------------------

  private planExtensions(): void {
    for (const [name, { schema }] of this.src.extensions) {
      // Needed only by converted columns (vector → bytea): the target does without it.
      if (this.extensionUsers(name).length === 0) continue;
      const installedIn = this.target.extensions.get(name);
      if (installedIn === schema) {
        this.present.push({ kind: 'extension', name });
      } else if (installedIn !== undefined) {
        this.problems.push({
          message: `extension ${name} is installed in schema ${installedIn} on the target but in ${schema} on the source, and the tables name its objects as ${schema}.…`,
          fix: `On the target run ALTER EXTENSION ${quoteIdent(name)} SET SCHEMA ${quoteIdent(schema)}; (nothing else uses it yet on an empty target), then run walbridge schema again.`,
        });
      } else if (!this.target.available.has(name)) {
        const users = this.extensionUsers(name);
        this.problems.push({
          message: `extension ${name} is not available on the target (used by ${users.length > 0 ? users.join(', ') : 'the selected tables'})`,
          fix:
            `Choose one: run the target on a PostgreSQL image that ships ${name} (on Railway, a template with it), then run walbridge schema again; ` +
            `or leave ${users.length > 0 ? 'the table(s)' : 'those tables'} out (WALBRIDGE_EXCLUDE_TABLES=${[...new Set(users.map((u) => u.split('.').slice(0, 2).join('.')))].join(',')}) and move them yourself; ` +
            'or make the table on the target yourself with the column as another type (walbridge then refuses values it would have to reinterpret).',
        });
      } else {
        this.ensureSchema(schema);
        this.step('extension', name, ddl.createExtension(name, schema));
      }
    }
  }

  /** Columns (schema.table.column) and objects of the selected tables that need the extension. */
  private extensionUsers(ext: string): string[] {
    const users = new Set<string>();
    for (const t of this.src.tables) {
      for (const c of t.columns) if (!this.conversionOf(t, c.name) && this.typeExtension(c.typeOid) === ext) users.add(`${tableDisplay(t)}.${c.name}`);
    }
    for (const r of this.src.references) {
      if (r.refExtension !== ext) continue;
      const t = this.ownerTable(r);
      // A converted column's type, and an index on it (left out), need nothing on the target.
      if (t && r.class === 'pg_class' && r.objid === t.oid && r.subid > 0 && this.conversionOf(t, t.columns.find((c) => c.num === r.subid)?.name ?? '')) continue;
      if (t && r.class === 'pg_class' && this.indexOnConverted(t, r.objid).length > 0) continue;
      users.add(t ? tableDisplay(t) : r.refName);
    }
    return [...users];
  }

  private ownerTable(r: Reference): TableDef | undefined {
    if (r.class === 'pg_class') return this.tables.get(r.objid) ?? this.tables.get(this.src.indexes.find((i) => i.oid === r.objid)?.rel ?? 0);
    if (r.class === 'pg_attrdef') return this.src.tables.find((t) => t.columns.some((c) => c.defaultOid === r.objid));
    const rel =
      r.class === 'pg_constraint'
        ? this.src.constraints.find((c) => c.oid === r.objid)?.rel
        : r.class === 'pg_trigger'
          ? this.src.triggers.find((t) => t.oid === r.objid)?.rel
          : r.class === 'pg_policy'
            ? this.src.policies.find((p) => p.oid === r.objid)?.rel
            : undefined;
    return rel === undefined ? undefined : this.tables.get(rel);
  }

  private typeExtension(oid: number, seen = new Set<number>()): string | null {
    const t = this.src.types.get(oid);
    if (!t || seen.has(oid)) return null;
    seen.add(oid);
    if (t.extension) return t.extension;
    for (const dep of [t.elem, t.baseOid, ...t.attributes.map((a) => a.typeOid)]) {
      const e = dep === 0 ? null : this.typeExtension(dep, seen);
      if (e) return e;
    }
    return null;
  }

  /** The first type on the way to a column's type that lives in the platform's schemas. */
  private platformType(oid: number, seen = new Set<number>()): TypeDef | null {
    const t = this.src.types.get(oid);
    if (!t || seen.has(oid) || t.extension || t.schema === 'pg_catalog') return null;
    seen.add(oid);
    if (!this.isApp(t.schema)) return t;
    for (const dep of [t.elem, t.baseOid, ...t.attributes.map((a) => a.typeOid)]) {
      const p = dep === 0 ? null : this.platformType(dep, seen);
      if (p) return p;
    }
    return null;
  }

  /** The app's collations the tables and their types use (a case-insensitive ICU one, say). */
  private planCollations(): void {
    for (const c of this.src.collations) {
      if (this.target.collations.has(c.qualified)) {
        this.present.push({ kind: 'collation', name: c.qualified });
        continue;
      }
      if (!this.isApp(c.schema)) {
        this.problems.push({
          message: `collation ${c.qualified} is used by the selected tables and lives in schema ${c.schema}, part of Supabase's platform`,
          fix: `Create ${c.qualified} on the target first (walbridge schema then leaves it as it is), or exclude the tables that use it.`,
        });
        continue;
      }
      if (!this.target.collationProviders.has(c.provider)) {
        const provider = c.provider === 'i' ? 'ICU' : c.provider === 'b' ? "PostgreSQL's builtin provider (17 and later)" : `provider ${c.provider}`;
        this.problems.push({
          message: `collation ${c.qualified} uses ${provider}, which the target's server lacks`,
          fix: `Run the target on a PostgreSQL built with it (the official images have ICU), or create ${c.qualified} there yourself with another provider.`,
        });
        continue;
      }
      this.ensureSchema(c.schema);
      this.step('collation', c.qualified, ddl.createCollation(c));
      if (c.comment !== null) this.step('comment', c.qualified, ddl.comment(`COLLATION ${ddl.qname(c.schema, c.name)}`, c.comment));
    }
  }

  /** Whether a collation is on the target after the run. */
  private collationReady(qualified: string): boolean {
    return this.target.collations.has(qualified) || this.plannedStep('collation', qualified);
  }

  /** The app's enums, domains and composite types, each after the types it is made of. */
  private planTypes(): void {
    const done = new Set<number>();
    const visit = (oid: number) => {
      const t = this.src.types.get(oid);
      if (!t || done.has(oid)) return;
      done.add(oid);
      if (t.extension || t.schema === 'pg_catalog' || t.schema === 'information_schema' || !this.isApp(t.schema) || this.onlyForConverted(oid)) return;
      for (const dep of [t.elem, t.baseOid, ...t.attributes.map((a) => a.typeOid)]) if (dep !== 0) visit(dep);
      if (t.category === 'A' && t.elem !== 0) return; // an array type comes with its element type
      if (t.kind === 'c' && t.relKind !== 'c') {
        // A table's row type: the table brings it, if it is selected.
        if (!this.src.tables.some((x) => x.oid === t.rel)) {
          this.problems.push({ message: `a column has the row type of table ${t.qualified}, which is not selected`, fix: `Select ${t.qualified} too, or exclude the tables that use its row type.` });
        }
        return;
      }
      if (!['e', 'd', 'c'].includes(t.kind)) {
        this.problems.push({
          message: `type ${t.qualified} (${t.kind === 'r' || t.kind === 'm' ? 'a range type' : 'a base type'}) is used by the selected tables and walbridge schema does not make such types`,
          fix: `Create ${t.qualified} on the target first (walbridge schema then leaves it as it is), or exclude the tables that use it.`,
        });
        return;
      }
      if (this.target.types.has(t.qualified)) {
        this.present.push({ kind: 'type', name: t.qualified });
        return;
      }
      this.ensureSchema(t.schema);
      this.step('type', t.qualified, ddl.createType(t));
      if (t.comment !== null) this.step('comment', t.qualified, ddl.comment(`TYPE ${ddl.qname(t.schema, t.name)}`, t.comment));
    };
    for (const oid of [...this.src.types.keys()].sort((a, b) => a - b)) visit(oid);
  }

  /** The app's functions the tables use (defaults, checks, triggers, policies). */
  private planFunctions(): void {
    for (const f of [...this.src.functions.values()].sort((a, b) => a.oid - b.oid)) {
      if (f.extension || !this.isApp(f.schema) || f.schema === 'pg_catalog') continue;
      const key = functionKey(f.schema, f.name, f.args);
      const name = `${f.schema}.${f.name}(${f.args})`;
      if (f.def === null) {
        this.problems.push({ message: `function ${name} is an aggregate or window function, which walbridge schema does not make`, fix: `Create ${name} on the target first, or exclude the tables that use it.` });
        continue;
      }
      if (this.target.functions.has(key)) {
        this.present.push({ kind: 'function', name });
        continue;
      }
      this.planned.add(`function:${key}`);
      this.ensureSchema(f.schema);
      this.step('function', name, ddl.createFunction(f));
      if (f.comment !== null) this.step('comment', name, ddl.comment(`FUNCTION ${ddl.qname(f.schema, f.name)}(${f.args})`, f.comment));
      // A body calling auth.uid() leaves no dependency to read: look for the call itself.
      if (this.opts.policies === 'keep' && !this.isApp('auth')) {
        for (const helper of authHelpersCalledIn(f.def)) {
          const h = this.src.authHelpers.find((x) => x.name === helper);
          if (h) this.ensureHelper(h);
        }
      }
    }
  }

  // --- tables -------------------------------------------------------------------------------

  private planTables(): void {
    for (const t of this.src.tables) {
      const name = tableDisplay(t);
      const parent = t.parent === null ? undefined : this.tables.get(t.parent);
      if (parent && !this.created.has(parent.oid) && this.target.relations.has(name)) {
        this.present.push({ kind: 'partition', name });
        continue;
      }
      // A partition the source gained since its parent was made on the target (a monthly job,
      // pg_partman's premade ones) falls through: it is made under the existing parent, which
      // gives it the parent's columns, constraints and indexes.
      const existing = this.target.relations.get(name);
      if (existing) {
        this.compareExisting(t, existing.kind);
        continue;
      }
      const keepDefault = (c: ColumnDef) =>
        c.defaultOid === null ||
        this.keepCalling('default', `${name}.${c.name}`, this.refs('pg_attrdef', c.defaultOid), `set a default on the target (ALTER TABLE ${ddl.qname(t.schema, t.name)} ALTER COLUMN ${quoteIdent(c.name)} SET DEFAULT …), or let the app fill the column`);
      if (!parent) {
        for (const c of t.columns) {
          const foreign = this.platformType(c.typeOid);
          if (foreign) {
            this.problems.push({
              message: `column ${name}.${c.name} has type ${foreign.qualified}, from Supabase's platform schema ${foreign.schema}`,
              fix: `Exclude ${name} (WALBRIDGE_EXCLUDE_TABLES=${name}), or create ${foreign.qualified} on the target first.`,
            });
          }
          if (c.generated !== '' && this.platformCalls(this.refs('pg_attrdef', c.defaultOid)).others.length > 0) {
            this.problems.push({ message: `generated column ${name}.${c.name} calls into Supabase's platform: ${c.defaultExpr ?? ''}`, fix: `Exclude ${name}, or create the table on the target yourself.` });
          }
        }
      }
      this.ensureSchema(t.schema);
      this.created.add(t.oid);
      this.step(parent ? 'partition' : 'table', name, ddl.createTable(this.converted(t), parent, (c) => this.identitySequence(t, c), keepDefault));
    }
  }

  private identitySequence(t: TableDef, c: ColumnDef): SequenceDef | undefined {
    return this.src.sequences.find((s) => s.identity && s.ownerRel === t.oid && s.ownerColumn === c.name);
  }

  /** A table the target has: the same columns with the same types, or a problem. */
  private compareExisting(t: TableDef, kind: string): void {
    const name = tableDisplay(t);
    if (kind !== 'r' && kind !== 'p') {
      this.problems.push({ message: `${name} exists on the target but is not a table (relkind ${kind})`, fix: `Drop or rename it on the target, then run walbridge schema again.` });
      return;
    }
    const theirs = this.target.columns.get(name) ?? [];
    const diffs: string[] = [];
    for (const c of t.columns) {
      // A converted column differs on purpose; preflight checks that its conversion fits.
      if (this.conversionOf(t, c.name)) continue;
      const tc = theirs.find((x) => x.name === c.name);
      if (!tc) diffs.push(`column ${c.name} is missing`);
      else if (tc.type !== c.type) diffs.push(`column ${c.name} is ${tc.type} there, ${c.type} on the source`);
      else if ((tc.generated === '') !== (c.generated === '')) diffs.push(`column ${c.name} is ${c.generated ? 'generated' : 'plain'} on the source but not there`);
    }
    for (const tc of theirs) if (!t.columns.some((c) => c.name === tc.name) && tc.notNull && tc.defaultExpr === null) diffs.push(`column ${tc.name} exists only there and is NOT NULL`);
    if (diffs.length === 0) {
      this.present.push({ kind: 'table', name });
      return;
    }
    this.problems.push({
      message: `table ${name} exists on the target and differs: ${diffs.join('; ')}`,
      fix: `walbridge schema never alters a table that exists: make it match on the target (or drop it there if it is empty and let walbridge schema make it), or exclude it (WALBRIDGE_EXCLUDE_TABLES=${name}).`,
    });
  }

  private planSequences(): void {
    for (const s of this.src.sequences) {
      if (s.identity || s.extension) continue;
      const owner = s.ownerRel === null ? undefined : this.tables.get(s.ownerRel);
      const name = display(s.schema, s.name);
      if (this.target.relations.has(name)) {
        this.present.push({ kind: 'sequence', name });
        continue;
      }
      if (owner && !this.created.has(owner.oid)) {
        // Its table exists on the target without it: the table's own business, never altered.
        continue;
      }
      this.ensureSchema(s.schema);
      this.step('sequence', name, ddl.createSequence(s));
      if (owner) this.step('sequence-owner', name, ddl.sequenceOwnedBy(s, owner));
      if (s.comment !== null) this.step('comment', name, ddl.comment(`SEQUENCE ${ddl.qname(s.schema, s.name)}`, s.comment));
    }
  }

  /** Everything on a table this run makes: constraints, indexes, triggers, RLS, policies, comments. */
  private planTableObjects(t: TableDef): void {
    const name = tableDisplay(t);
    const q = ddl.qname(t.schema, t.name);
    for (const c of this.src.constraints.filter((x) => x.rel === t.oid && x.local)) this.planConstraint(t, c);
    for (const i of this.src.indexes.filter((x) => x.rel === t.oid)) {
      const onConverted = this.indexOnConverted(t, i.oid);
      if (onConverted.length > 0) {
        this.leftOut.push({
          kind: 'index',
          name: `${name}.${i.name}`,
          reason: `indexes ${onConverted.join(', ')}, which WALBRIDGE_CONVERT carries as another type`,
          choice: 'index the new column on the target in a way its type allows, or let the app do without',
        });
        continue;
      }
      if (!this.keepCalling('index', `${name}.${i.name}`, this.refs('pg_class', i.oid), 'create the index on the target yourself with a function of your own')) continue;
      this.step('index', `${name}.${i.name}`, ddl.createIndex(i.def));
      if (i.comment !== null) this.step('comment', `${name}.${i.name}`, ddl.comment(`INDEX ${ddl.qname(t.schema, i.name)}`, i.comment));
    }
    const identity = ddl.replicaIdentity(t);
    if (identity) this.step('replica-identity', name, identity);
    for (const tr of this.src.triggers.filter((x) => x.rel === t.oid)) {
      if (isWalbridgeSchema(tr.functionSchema)) continue; // walbridge's own fence on the source
      const trName = `${name}.${tr.name}`;
      if (!this.isApp(tr.functionSchema)) {
        const webhook = tr.functionSchema === 'supabase_functions';
        this.leftOut.push({
          kind: 'trigger',
          name: trName,
          reason: `calls ${tr.functionSchema}.${tr.functionName}(), ${webhook ? "a Database Webhook of Supabase's platform" : "part of Supabase's platform"}, which stays on Supabase`,
          choice: webhook ? 'call the webhook from the app, or create a trigger of your own on the target (with pg_net, if the image has it)' : 'create a trigger of your own on the target, or do its work in the app',
        });
        continue;
      }
      this.step('trigger', trName, ddl.createTrigger(tr.def));
      const state = ddl.triggerState(t, tr.name, tr.enabled);
      if (state) this.step('trigger', trName, state);
      if (tr.comment !== null) this.step('comment', trName, ddl.comment(`TRIGGER ${quoteIdent(tr.name)} ON ${q}`, tr.comment));
    }
    for (const sql of ddl.enableRls(t)) this.step('rls', name, sql);
    for (const p of this.src.policies.filter((x) => x.rel === t.oid)) this.planPolicy(t, p);
    if (t.comment !== null) this.step('comment', name, ddl.comment(`TABLE ${q}`, t.comment));
    for (const c of t.columns) if (c.comment !== null && c.local) this.step('comment', `${name}.${c.name}`, ddl.comment(`COLUMN ${q}.${quoteIdent(c.name)}`, c.comment));
  }

  private planConstraint(t: TableDef, c: ConstraintDef): void {
    const name = `${tableDisplay(t)}.${c.name}`;
    if (c.type === 'f') {
      const ref = c.refRel === null ? undefined : this.tables.get(c.refRel);
      if (!ref) {
        const platform = c.refSchema !== null && !this.isApp(c.refSchema);
        this.leftOut.push({
          kind: 'foreign-key',
          name,
          reason: platform
            ? `references ${c.refTable ?? '?'}, ${c.refTable === 'auth.users' ? "Supabase Auth's users" : `a table of Supabase's platform (${c.refSchema ?? ''})`}, which stay on Supabase`
            : `references ${c.refTable ?? '?'}, which is not among the selected tables`,
          choice: platform
            ? 'the column keeps its values; the app now owns the link (or migrate that table too and add the foreign key on the target after cutover)'
            : `select ${c.refTable ?? 'it'} too (WALBRIDGE_TABLES, WALBRIDGE_SCHEMAS), or add the foreign key on the target once that table is there`,
        });
        return;
      }
      this.step('foreign-key', name, ddl.addConstraint(t, c));
    } else {
      if (!this.keepCalling('constraint', name, this.refs('pg_constraint', c.oid), 'add a check of your own on the target, or leave the rule to the app')) return;
      this.step('constraint', name, ddl.addConstraint(t, c));
    }
    if (c.comment !== null) this.step('comment', name, ddl.comment(`CONSTRAINT ${quoteIdent(c.name)} ON ${ddl.qname(t.schema, t.name)}`, c.comment));
  }

  private planPolicy(t: TableDef, p: PolicyDef): void {
    const name = `${tableDisplay(t)}.${p.name}`;
    const reserved = p.roles.filter(isReservedRole);
    if (reserved.length > 0) {
      this.leftOut.push({ kind: 'policy', name, reason: `applies to ${reserved.join(', ')}, reserved roles of Supabase's platform`, choice: 'create the policy on the target for a role of your own' });
      return;
    }
    const api = p.roles.filter(isApiRole);
    if (api.length > 0 && this.opts.policies === 'drop') {
      this.leftOut.push({
        kind: 'policy',
        name,
        reason: `applies to ${api.join(', ')}, Supabase's API roles (--policies drop)`,
        choice: 'row-level security stays enabled, so only the owner and superusers see rows; walbridge schema --policies keep makes the roles (NOLOGIN) and keeps the policy',
      });
      return;
    }
    if (!this.keepCalling('policy', name, this.refs('pg_policy', p.oid), 'write the policy on the target with functions of your own')) return;
    for (const r of p.roles) if (r !== 'public') this.ensureRole(r);
    // PostgREST needs all three API roles as soon as it serves one of them.
    if (api.length > 0) for (const r of API_ROLES) this.ensureRole(r);
    this.step('policy', name, ddl.createPolicy(t, p));
    if (p.comment !== null) this.step('comment', name, ddl.comment(`POLICY ${quoteIdent(p.name)} ON ${ddl.qname(t.schema, t.name)}`, p.comment));
  }

  // --- views ---------------------------------------------------------------------------------

  /**
   * The views of the selected schemas that read the selected tables, directly or through other
   * views, each after the views it reads. A view is made only when everything it reads and calls
   * is on the target or made by this run; otherwise it is listed as left out with what it lacks.
   * A view never adds a problem: it never keeps the tables from being made. Materialized views
   * likewise, made empty, with their indexes: cutover fills them (cutover/materialized.ts).
   */
  private planViews(): void {
    const views = new Map(this.src.views.map((v) => [v.oid, v]));
    const refs = new Map<number, ViewReference[]>();
    for (const r of this.src.viewReferences) refs.set(r.view, [...(refs.get(r.view) ?? []), r]);
    // Which views the selection needs: those reading a selected table, then those reading them.
    const wanted = new Set<number>();
    for (let grew = true; grew; ) {
      grew = false;
      for (const v of views.values()) {
        if (wanted.has(v.oid) || !(refs.get(v.oid) ?? []).some((r) => r.refClass === 'pg_class' && (this.tables.has(r.refOid) || wanted.has(r.refOid)))) continue;
        wanted.add(v.oid);
        grew = true;
      }
    }
    // Each after the views it reads (made for it even if they read no selected table).
    const readViews = (v: ViewDef) => (refs.get(v.oid) ?? []).flatMap((r) => (r.refClass === 'pg_class' ? (views.get(r.refOid) ?? []) : []));
    const outcome = new Map<number, boolean>();
    for (const v of dependenciesFirst([...views.values()].filter((x) => wanted.has(x.oid)), readViews)) {
      outcome.set(v.oid, this.planView(v, refs.get(v.oid) ?? [], (oid) => (views.has(oid) ? (outcome.get(oid) ?? false) : undefined)));
    }
  }

  /**
   * One view, once the views it reads are planned (`viewReady`: whether one is on the target
   * after the run; undefined for a relation that is not a view of the selected schemas).
   * Returns whether this one is.
   */
  private planView(v: ViewDef, refs: ViewReference[], viewReady: (oid: number) => boolean | undefined): boolean {
    const name = display(v.schema, v.name);
    const kind = v.kind === 'm' ? 'materialized-view' : 'view';
    const existing = this.target.relations.get(name);
    if (existing) {
      if (existing.kind === v.kind) {
        this.present.push({ kind, name });
        return true;
      }
      this.leftOut.push({ kind, name, reason: `a relation of that name (relkind ${existing.kind}) exists on the target`, choice: 'drop or rename it on the target, then run walbridge schema again' });
      return false;
    }
    const platform: string[] = [];
    const lacks: string[] = [];
    const helpers: FunctionDef[] = [];
    for (const r of refs) {
      const need = this.viewNeed(r, viewReady);
      if (need.platform) platform.push(need.platform);
      if (need.lacks) lacks.push(need.lacks);
      if (need.helper) helpers.push(need.helper);
    }
    if (platform.length > 0) {
      this.leftOut.push({
        kind,
        name,
        reason: `${[...new Set(platform)].join(', ')}: Supabase's platform, which stays on Supabase`,
        choice: 'create a view of your own on the target that does without it, or do that work in the app',
      });
      return false;
    }
    if (lacks.length > 0) {
      this.leftOut.push({
        kind,
        name,
        reason: `needs ${[...new Set(lacks)].join('; ')}`,
        choice: 'create what it needs on the target first (walbridge schema leaves what exists as it is) and run walbridge schema again, or create the view there yourself',
      });
      return false;
    }
    for (const h of helpers) this.ensureHelper(h);
    const q = ddl.qname(v.schema, v.name);
    // A schema of views only (PostgREST's `api`, say) has no table to bring it.
    this.ensureSchema(v.schema);
    // Views and materialized views run together, each after those it reads.
    this.stepIn('view', kind, name, ddl.createView(v));
    // A materialized view's indexes right after it (REFRESH ... CONCURRENTLY needs its unique one).
    for (const i of this.src.viewIndexes.filter((x) => x.rel === v.oid)) this.planViewIndex(name, i);
    for (const tr of this.src.viewTriggers.filter((x) => x.rel === v.oid)) {
      this.leftOut.push({
        kind: 'trigger',
        name: `${name}.${tr.name}`,
        reason: 'a trigger on a view (INSTEAD OF, to write through it), which walbridge schema does not make',
        choice: `create it on the target once the view is there: ${tr.def};`,
      });
    }
    if (v.comment !== null) this.step('comment', name, ddl.comment(`${v.kind === 'm' ? 'MATERIALIZED VIEW' : 'VIEW'} ${q}`, v.comment));
    for (const c of v.columnComments) this.step('comment', `${name}.${c.name}`, ddl.comment(`COLUMN ${q}.${quoteIdent(c.name)}`, c.comment));
    return true;
  }

  /**
   * What one thing a view reads or calls asks of this run: nothing (it is there, or made now);
   * `platform`, what of Supabase's platform it is; `lacks`, what is missing on the target; or
   * `helper`, auth.uid() & co. to make (policies kept).
   */
  private viewNeed(r: ViewReference, viewReady: (oid: number) => boolean | undefined): { platform?: string; lacks?: string; helper?: FunctionDef } {
    const schema = r.refSchema ?? '';
    if (r.refExtension !== null) {
      const lacks = this.extensionLacks(r.refExtension, schema, r.refName);
      return lacks === null ? {} : { lacks };
    }
    if (r.refClass === 'pg_class') {
      const ready = viewReady(r.refOid);
      if (ready !== undefined) return ready ? {} : { lacks: `${r.refKind === 'm' ? 'materialized view' : 'view'} ${r.refName}, left out` };
      const table = this.tables.get(r.refOid);
      if (table) {
        const converted = r.refColumn !== null && this.conversionOf(table, r.refColumn) !== undefined;
        return converted ? { lacks: `column ${tableDisplay(table)}.${r.refColumn ?? ''} as it is on the source (WALBRIDGE_CONVERT carries it as another type)` } : {};
      }
      if (!this.isApp(schema)) return { platform: `reads ${r.refName}` };
      // A composite type's relation (a column of that type), a sequence the tables bring, or
      // anything the target has already.
      if (r.refKind === 'c' && (this.target.types.has(r.refName) || this.plannedStep('type', r.refName))) return {};
      if (r.refKind === 'S' && this.src.sequences.some((x) => x.oid === r.refOid)) return {};
      if (this.target.relations.has(`${schema}.${r.refRelname ?? ''}`)) return {};
      return { lacks: `${r.refName}, which is not among the selected ${r.refKind === 'v' || r.refKind === 'm' ? 'schemas' : 'tables'}` };
    }
    if (r.refClass === 'pg_proc') {
      const helper = this.src.authHelpers.find((h) => h.oid === r.refOid);
      if (helper && this.opts.policies === 'keep') return { helper };
      if (!this.isApp(schema)) return { platform: `calls ${r.refName}${helper ? ' (--policies drop makes no auth function)' : ''}` };
      return this.functionReady(functionKey(schema, r.refFunction ?? '', r.refArgs ?? '')) ? {} : { lacks: `function ${r.refName}, which walbridge schema makes only when a table needs it` };
    }
    // A selected table's row type, or its primary key (a GROUP BY on it): they come with the table.
    if (r.refClass === 'pg_type' && r.refTypeRelation !== null && this.tables.has(r.refTypeRelation)) return {};
    if (r.refClass === 'pg_constraint' && r.refConstraintRelation !== null && this.tables.has(r.refConstraintRelation)) return {};
    if (!this.isApp(schema)) return { platform: `uses ${r.refName}` };
    if (r.refClass === 'pg_collation') return this.collationReady(r.refName) ? {} : { lacks: `collation ${r.refName}, which no selected table uses` };
    if (r.refClass === 'pg_type') {
      // An array type comes with its element type.
      return this.target.types.has(r.refName) || this.plannedStep('type', r.refName.replace(/\[\]$/, '')) ? {} : { lacks: `type ${r.refName}, which no selected table uses` };
    }
    return { lacks: `${r.refClass.replace(/^pg_/, '')} ${r.refName}, of a kind walbridge schema does not make` };
  }

  /**
   * Whether an object of extension `ext` that lives in `schema` on the source is there on the
   * target after the run: the statements name it with that schema, so the extension must be in
   * the same one (an extension's objects put in pg_catalog are found from anywhere).
   */
  private extensionLacks(ext: string, schema: string, object: string): string | null {
    if (this.plannedStep('extension', ext)) return null;
    const there = this.target.extensions.get(ext);
    if (there === undefined) return `extension ${ext} (for ${object}), which the tables do not need`;
    if (there !== schema && schema !== 'pg_catalog') return `extension ${ext} in schema ${schema}, as on the source (the target has it in ${there})`;
    return null;
  }

  /** A materialized view's index, unless what it refers to (an operator class, a function) is missing. */
  private planViewIndex(view: string, i: IndexDef): void {
    const lacks: string[] = [];
    for (const r of this.src.viewIndexReferences.filter((x) => x.objid === i.oid)) {
      const schema = r.refSchema ?? '';
      if (r.refExtension !== null) {
        const lack = this.extensionLacks(r.refExtension, schema, r.refName);
        if (lack !== null) lacks.push(lack);
      } else if (r.refClass === 'pg_collation') {
        if (!this.collationReady(r.refName)) lacks.push(`collation ${r.refName}`);
      } else {
        const f = r.refClass === 'pg_proc' ? this.src.functions.get(r.refOid) : undefined;
        if (!f || !this.functionReady(functionKey(f.schema, f.name, f.args))) lacks.push(r.refName);
      }
    }
    const name = `${view}.${i.name}`;
    if (lacks.length > 0) {
      this.leftOut.push({ kind: 'index', name, reason: `needs ${[...new Set(lacks)].join('; ')}`, choice: 'create the index on the target yourself once what it needs is there' });
      return;
    }
    this.stepIn('view', 'index', name, ddl.createIndex(i.def));
  }

  private plannedStep(kind: Kind, name: string): boolean {
    return (this.buckets.get(kind) ?? []).some((s) => s.kind === kind && s.name === name);
  }

  private functionReady(key: string): boolean {
    return this.target.functions.has(key) || this.planned.has(`function:${key}`);
  }

  /** Triggers on the platform's own tables (GoTrue's auth.users): the app's side of them is listed. */
  private planPlatformTriggers(): void {
    for (const tr of this.src.platformTriggers) {
      if (!this.isApp(tr.functionSchema)) continue; // the platform's own machinery
      this.leftOut.push({
        kind: 'trigger',
        name: `${tr.table.replace(/"/g, '')}.${tr.name}`,
        reason: `fires on ${tr.table.replace(/"/g, '')}, a table of Supabase's platform that is not migrated, and calls ${tr.functionSchema}.${tr.functionName}()`,
        choice: `nothing writes ${tr.table.replace(/"/g, '')} on the target: do in the app what ${tr.functionSchema}.${tr.functionName}() did (for example, create the profile at sign-up)`,
      });
    }
  }
}

/** Whether an index or constraint definition names the column (bare or quoted). */
function mentionsColumn(def: string, column: string): boolean {
  const escape = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\w"])(${escape(column)}|${escape(quoteIdent(column))})($|[^\\w"])`).test(def);
}
