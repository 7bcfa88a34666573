/**
 * The status page is one string of HTML with its script inside a TypeScript template literal,
 * where an escape written once too few times breaks the whole page at load. Parsing the script
 * here says so in a second, before the browser test does in a minute.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { STATUS_PAGE } from '../../src/health/page.js';

test("the status page's script parses", () => {
  const script = /<script>([\s\S]*)<\/script>/.exec(STATUS_PAGE)?.[1];
  assert.ok(script, 'the page has a script');
  assert.doesNotThrow(() => new Function(script), 'the script is valid JavaScript');
});
