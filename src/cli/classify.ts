import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { loadConfig, resolveConfigPath } from '../config/index.ts';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createClassifier, defaultRules, loadRulesFile, qualifyMessage, STAGES, type Classifier, type ClassifyInput, type Rule, type Stage } from '../bounce/index.ts';
import type { Io } from './cli.ts';

/**
 * `tern classify [--rules FILE] [--config FILE] [REPLY]`: one reply as an argument → one JSON
 * object; no argument → one reply per stdin line → one JSON line each, in order. A stdin line that
 * starts with `{` is JSON: {"reply": "550 ..."} or {"code": 550, "enhanced": "5.1.1", "text": "...",
 * "stage": "rcpt"}. Without --rules, the config's bounce.rules_file (if any) is used.
 */
export async function classifyCommand(args: readonly string[], io: Io, stdin: Readable): Promise<number> {
  let parsed: { values: { rules?: string | undefined; config?: string | undefined; message?: boolean | undefined }; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...args], options: { rules: { type: 'string' }, config: { type: 'string', short: 'c' }, message: { type: 'boolean' } }, allowPositionals: true, strict: true });
  } catch (err) {
    io.err(`tern classify: ${(err as Error).message}`);
    return 2;
  }
  const rules = operatorRules(parsed.values, io);
  if (typeof rules === 'number') return rules;
  const classify = createClassifier([...rules, ...defaultRules()]);
  if (parsed.values.message) return classifyMessages(classify, parsed.positionals, io);
  if (parsed.positionals.length > 0) {
    io.out(JSON.stringify(classifyLine(classify, parsed.positionals.join(' '))));
    return 0;
  }
  let status = 0;
  for await (const line of createInterface({ input: stdin, crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    try {
      io.out(JSON.stringify(classifyLine(classify, line)));
    } catch (err) {
      io.out(JSON.stringify({ error: (err as Error).message, input: line }));
      status = 1;
    }
  }
  return status;
}

/**
 * `--message FILE...`: whole bounce, complaint or auto-reply messages (RFC 5322 files), one JSON
 * line per recipient found (BRIEF §3): file, recipient, kind, status, reply_code, reason, class,
 * type. A file that cannot be read is a JSON line with `error`, and exit status 1.
 */
async function classifyMessages(classify: Classifier, files: readonly string[], io: Io): Promise<number> {
  if (files.length === 0) {
    io.err('tern classify --message: give one or more message files');
    return 2;
  }
  let status = 0;
  for (const file of files) {
    try {
      for (const r of qualifyMessage(await readFile(resolve(io.cwd, file)), classify)) io.out(JSON.stringify({ file, ...r }));
    } catch (err) {
      io.out(JSON.stringify({ file, error: (err as Error).message }));
      status = 1;
    }
  }
  return status;
}

function operatorRules(values: { rules?: string | undefined; config?: string | undefined }, io: Io): readonly Rule[] | number {
  let file = values.rules;
  if (!file) {
    const path = resolveConfigPath(values.config, io.env, io.cwd);
    const loaded = path ? loadConfig(path) : undefined;
    if (loaded && loaded.ok) file = loaded.config.bounce.rules_file;
  }
  if (!file) return [];
  const loaded = loadRulesFile(file);
  if (loaded.ok) return loaded.rules;
  io.err(`${file}: ${loaded.problems.length} problem${loaded.problems.length === 1 ? '' : 's'}`);
  for (const p of loaded.problems) io.err(`  ${p.path}: ${p.problem}`);
  return 1;
}

function classifyLine(classify: Classifier, line: string): object {
  const input = line.trimStart().startsWith('{') ? fromJson(line) : { text: line };
  const { reason, class: klass, category, type, failure, retry, rule, mismatch } = classify(input);
  return { reason, class: klass, category, type, failure, retry, rule, ...(mismatch ? { mismatch } : {}) };
}

function fromJson(line: string): ClassifyInput {
  const value = JSON.parse(line) as Record<string, unknown>;
  const text = typeof value.reply === 'string' ? value.reply : value.text;
  if (typeof text !== 'string') throw new Error('a JSON line needs "reply" or "text" (a string)');
  const stage = typeof value.stage === 'string' ? value.stage.toLowerCase() : undefined;
  if (stage !== undefined && !(STAGES as readonly string[]).includes(stage)) throw new Error(`"stage" must be one of ${STAGES.join(', ')}`);
  return {
    text,
    ...(typeof value.code === 'number' ? { code: value.code } : {}),
    ...(typeof value.enhanced === 'string' ? { enhanced: value.enhanced } : {}),
    ...(stage ? { stage: stage as Stage } : {}),
  };
}
