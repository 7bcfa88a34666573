#!/usr/bin/env node
/**
 * Railway's start command: `node dist/daemon.js` (not `npm start`, so signals reach Node).
 * Configuration comes from the environment only.
 */
import { runCommand } from './commands/run.js';

const code = await runCommand(process.env);
process.exit(code);
