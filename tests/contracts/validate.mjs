// Validates an AsyncAPI document with @asyncapi/parser (errors and warnings
// fail; hints such as "a newer AsyncAPI version exists" do not), then every
// frame of a JSON-lines file against the payload schema of the message named
// by the frame's `type` (client frames: by `op`).
//
// usage: node validate.mjs ASYNCAPI.json [FRAMES.jsonl]
// Prints one line per problem and "ok: N frames" at the end; exit 1 on any problem.
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const [docPath, framesPath] = process.argv.slice(2);
const text = readFileSync(docPath, "utf8");
let problems = 0;

const { document, diagnostics } = await new Parser().parse(text);
for (const d of diagnostics) {
  if (d.severity <= DiagnosticSeverity.Warning) {
    problems++;
    console.log(`asyncapi: ${d.code}: ${d.message} at ${JSON.stringify(d.path)}`);
  }
}
if (!document) {
  console.log("asyncapi: the document did not parse");
  process.exit(1);
}

const raw = JSON.parse(text);
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(raw, "doc");
const validators = {};
for (const name of Object.keys(raw.components.messages)) {
  validators[name] = ajv.compile({ $ref: `doc#/components/messages/${name}/payload` });
  // Every example validates against its own message.
  for (const ex of raw.components.messages[name].examples ?? []) {
    if (!validators[name](ex.payload)) {
      problems++;
      console.log(`example ${name}: ${ajv.errorsText(validators[name].errors)}`);
    }
  }
}

let frames = 0;
if (framesPath) {
  for (const line of readFileSync(framesPath, "utf8").split("\n").filter(Boolean)) {
    const frame = JSON.parse(line);
    const name = frame.type ?? frame.op;
    frames++;
    const v = validators[name];
    if (!v) {
      problems++;
      console.log(`frame ${name}: no message of that name in the document: ${line.slice(0, 200)}`);
    } else if (!v(frame)) {
      problems++;
      console.log(`frame ${name}: ${ajv.errorsText(v.errors)}: ${line.slice(0, 300)}`);
    }
  }
}
console.log(problems ? `${problems} problem(s)` : `ok: ${frames} frames`);
process.exit(problems ? 1 : 0);
