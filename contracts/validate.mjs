// Validates an AsyncAPI document with the AsyncAPI parser (the same parser and
// ruleset the AsyncAPI CLI and Studio use).
//
//   node contracts/validate.mjs contracts/organization-bootstrap-events.yaml
//
// Prints every diagnostic as `severity code path (line:col) message` and exits 1 when
// the document does not parse or has any error or warning: a warning is a contract
// problem that someone will trip over later, so CI treats it as one now. Information
// and hints are printed but do not fail the run.
//
// The parser does not check a 3.0 document's message examples against their schemas,
// so this script does, with Ajv in strict mode: every example's payload and headers
// must be valid, and a misspelt schema keyword (which every validator would silently
// ignore) is an error. Ajv is also a second, ECMAScript-regex implementation beside the
// pipeline's Python one, so a pattern that only Python understands fails here.
//
// Exit codes: 0 valid, 1 invalid, 2 usage or setup problem (no document, no parser).

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SETUP_HINT = 'run `npm ci --prefix contracts` first (node_modules is not committed)';

// The parser is imported dynamically so that a missing node_modules gives the setup
// hint instead of a bare ERR_MODULE_NOT_FOUND stack trace.
async function loadParser() {
  try {
    return await import('@asyncapi/parser');
  } catch (error) {
    if (error && error.code === 'ERR_MODULE_NOT_FOUND') {
      console.error(`error: @asyncapi/parser is not installed in ${here}: ${SETUP_HINT}`);
      process.exit(2);
    }
    throw error;
  }
}

const SEVERITY_NAMES = ['error', 'warning', 'info', 'hint'];

// The parser annotates resolved schemas with its own bookkeeping keys; Ajv's strict
// mode would reject them as unknown keywords.
function withoutParserKeys(value) {
  if (Array.isArray(value)) {
    return value.map(withoutParserKeys);
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key]) => !key.startsWith('x-parser-'))
        .map(([key, item]) => [key, withoutParserKeys(item)]),
    );
  }
  return value;
}

// Returns one line per problem found in the messages' examples.
async function checkExamples(document) {
  const { default: Ajv } = await import('ajv');
  const { default: addFormats } = await import('ajv-formats');
  const ajv = new Ajv({ strict: true, allowUnionTypes: true, allErrors: true });
  addFormats(ajv);

  const problems = [];
  for (const message of document.allMessages().all()) {
    const where = `components.messages.${message.id()}`;
    const parts = [
      ['payload', message.hasPayload() ? message.payload() : undefined],
      ['headers', message.hasHeaders() ? message.headers() : undefined],
    ];
    const validators = {};
    for (const [part, schema] of parts) {
      if (schema === undefined) {
        continue;
      }
      try {
        validators[part] = ajv.compile(withoutParserKeys(schema.json()));
      } catch (error) {
        problems.push(`error schema-invalid ${where}.${part} ${error.message}`);
      }
    }
    const examples = message.examples().all();
    if (examples.length === 0) {
      problems.push(`error example-missing ${where} has no examples`);
    }
    examples.forEach((example, index) => {
      for (const part of ['payload', 'headers']) {
        const validate = validators[part];
        const value = part === 'payload' ? example.payload() : example.headers();
        if (validate === undefined || value === undefined) {
          continue;
        }
        if (!validate(value)) {
          for (const error of validate.errors) {
            const at = `${where}.examples[${index}].${part}${error.instancePath.replaceAll('/', '.')}`;
            problems.push(`error example-invalid ${at} ${error.message}`);
          }
        }
      }
    });
  }
  return problems;
}

function formatDiagnostic(diagnostic) {
  const severity = SEVERITY_NAMES[diagnostic.severity] ?? `severity-${diagnostic.severity}`;
  const where = diagnostic.path && diagnostic.path.length > 0 ? diagnostic.path.join('.') : '$';
  // Spectral ranges are 0-based; editors count lines and columns from 1.
  const start = diagnostic.range?.start;
  const position = start ? ` (${start.line + 1}:${start.character + 1})` : '';
  return `${severity} ${diagnostic.code} ${where}${position} ${diagnostic.message}`;
}

async function main(argv) {
  const documentPath = argv[2] ?? path.join(here, 'organization-bootstrap-events.yaml');
  let source;
  try {
    source = await readFile(documentPath, 'utf8');
  } catch (error) {
    console.error(`error: cannot read ${documentPath}: ${error.message}`);
    return 2;
  }

  const { Parser, DiagnosticSeverity } = await loadParser();
  const parser = new Parser();
  // `source` lets the parser resolve relative $refs and name the file in diagnostics.
  const { document, diagnostics } = await parser.parse(source, {
    source: path.resolve(documentPath),
  });

  let failures = 0;
  for (const diagnostic of diagnostics) {
    console.log(formatDiagnostic(diagnostic));
    if (
      diagnostic.severity === DiagnosticSeverity.Error ||
      diagnostic.severity === DiagnosticSeverity.Warning
    ) {
      failures += 1;
    }
  }

  if (document === undefined) {
    console.log(`${documentPath}: does not parse as AsyncAPI`);
    return 1;
  }
  const problems = await checkExamples(document);
  for (const problem of problems) {
    console.log(problem);
  }
  failures += problems.length;

  if (failures > 0) {
    console.log(`${documentPath}: ${failures} error(s) or warning(s)`);
    return 1;
  }
  const messages = document.allMessages().length;
  const version = document.version();
  console.log(`${documentPath}: valid AsyncAPI ${version}, ${messages} messages`);
  return 0;
}

process.exitCode = await main(process.argv);
