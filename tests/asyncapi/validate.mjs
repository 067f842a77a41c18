import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], 'utf8'));
const errors = diagnostics.filter(d => d.severity === 0);
console.log(JSON.stringify({ valid: document !== undefined && errors.length === 0, diagnostics: diagnostics.map(d => ({ code: d.code, message: d.message, path: d.path, severity: d.severity })) }));
