#!/usr/bin/env node
// Validates katad's OpenAPI document.
//
//   npm ci --prefix tests/spec
//   node tests/spec/validate.mjs [api/openapi.yaml]
//
// 1. @apidevtools/swagger-parser validate(): the document must match the OpenAPI 3.0 JSON schema,
//    every $ref must resolve, path parameters must be declared, and so on.
// 2. katad's own rules: OpenAPI 3.0.x, every operation has a unique operationId, every operation
//    documents its errors with the Error schema, path template parameters are declared.
//
// Exits 0 when the document is valid, 1 (with every problem listed on stderr) when it is not,
// 2 on a usage error.

import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";
import SwaggerParser from "@apidevtools/swagger-parser";

const here = path.dirname(fileURLToPath(import.meta.url));
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

function usage() {
  console.error("usage: node validate.mjs [path/to/openapi.yaml]");
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length > 1 || args[0] === "-h" || args[0] === "--help") usage();
const file = path.resolve(args[0] ?? path.join(here, "..", "..", "api", "openapi.yaml"));
if (!fs.existsSync(file)) {
  console.error(`validate.mjs: ${file}: no such file`);
  process.exit(2);
}

// katad-specific rules, on the parsed (not dereferenced) document so $refs are still visible.
function lint(api) {
  const problems = [];
  if (typeof api.openapi !== "string" || !/^3\.0\.\d+$/.test(api.openapi))
    problems.push(`openapi: expected a 3.0.x version, got ${JSON.stringify(api.openapi)}`);

  const errorRef = "#/components/schemas/Error";
  const responses = api.components?.responses ?? {};
  const usesErrorSchema = (resp) => {
    if (resp?.$ref) {
      const name = resp.$ref.replace(/^#\/components\/responses\//, "");
      resp = responses[name];
    }
    return resp?.content?.["application/json"]?.schema?.$ref === errorRef;
  };

  const seenIds = new Map();
  for (const [p, item] of Object.entries(api.paths ?? {})) {
    const templParams = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const where = `${method.toUpperCase()} ${p}`;
      if (!op.operationId) problems.push(`${where}: no operationId`);
      else if (seenIds.has(op.operationId))
        problems.push(`${where}: operationId ${op.operationId} already used by ${seenIds.get(op.operationId)}`);
      else seenIds.set(op.operationId, where);

      // Path parameters: every template parameter declared (at path or operation level).
      const declared = new Set();
      for (let prm of [...(item.parameters ?? []), ...(op.parameters ?? [])]) {
        if (prm.$ref) prm = api.components?.parameters?.[prm.$ref.split("/").pop()];
        if (prm?.in === "path") declared.add(prm.name);
      }
      for (const t of templParams)
        if (!declared.has(t)) problems.push(`${where}: path parameter {${t}} not declared`);
      for (const d of declared)
        if (!templParams.includes(d)) problems.push(`${where}: path parameter ${d} not in the template`);

      const codes = Object.keys(op.responses ?? {});
      if (!codes.some((c) => /^(1|2)\d\d$/.test(c)))
        problems.push(`${where}: no 1xx/2xx response`);
      for (const c of codes) {
        if (!/^[45]\d\d$/.test(c) && c !== "default") continue;
        if (!usesErrorSchema(op.responses[c]))
          problems.push(`${where}: response ${c} does not use the Error schema`);
      }
      for (const c of ["405", "500", "503"])
        if (!codes.includes(c)) problems.push(`${where}: response ${c} not documented`);
      if (op.requestBody)
        for (const c of ["400", "413", "415"])
          if (!codes.includes(c)) problems.push(`${where}: takes a body but does not document ${c}`);
      if (templParams.length && !codes.includes("404"))
        problems.push(`${where}: has path parameters but does not document 404`);
      if (codes.includes("501") && !/501|not_implemented/.test(op.description ?? ""))
        problems.push(`${where}: lists 501 but its description does not say when it answers 501`);
    }
  }
  return problems;
}

let problems = [];
try {
  // parse() gives the raw document (YAML syntax errors surface here).
  const raw = await SwaggerParser.parse(file);
  problems = lint(raw);
  // validate() checks against the OpenAPI schema, resolves and dereferences every $ref.
  await SwaggerParser.validate(file);
} catch (err) {
  // Schema failures come as one message with a line per (often redundant oneOf) ajv error:
  // keep the first lines, which name the offending location.
  const MAX = 25;
  const lines = String(err?.message ?? err).trim().split("\n");
  let msg = lines.slice(0, MAX).join("\n    ");
  if (lines.length > MAX) msg += `\n    … ${lines.length - MAX} more line(s)`;
  problems.unshift(msg);
}

if (problems.length) {
  console.error(`${path.relative(process.cwd(), file)}: INVALID (${problems.length} problem(s))`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
console.log(`${path.relative(process.cwd(), file)}: valid OpenAPI document`);
