// The copy Flask serves at /static/js/paymentapp-client.js (pay-dialog.js, admin.js and
// the simulator's phone import it): dist/index.js and the modules it imports joined into
// one file (one request, as before src/ had several modules), with socket.io-client taken
// from the same server's /vendor/ (paymentapp/vendor.py serves it from node_modules), so
// pages on any origin load it with no bundler and no CDN.
//
// The join is small on purpose and only for our own tsc output: modules are placed
// dependencies first, imports between them are dropped (so they must name things as they
// are: no `as`, no `* as`, and no two modules may declare the same top-level name), and
// the file ends with one `export { … }` of exactly what index.js exports. Anything else
// fails the build rather than produce a file that differs from the package.
import { readFileSync, writeFileSync } from "node:fs";
import ts from "typescript";

const dist = new URL("../dist/", import.meta.url);
const target = new URL("paymentapp-client.js", dist);
const SOCKET_IO = "socket.io-client";
const VENDOR_SOCKET_IO = "../../vendor/socket.io.esm.min.js";

function fail(message) {
  throw new Error(`hosted-build: ${message}`);
}

function parse(name) {
  const text = readFileSync(new URL(name, dist), "utf8");
  return ts.createSourceFile(name, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
}

function moduleName(statement) {
  const spec = statement.moduleSpecifier;
  return spec && ts.isStringLiteral(spec) ? spec.text : null;
}

const isLocal = (spec) => spec !== null && spec.startsWith("./");

/** `{ a, b }` of an import or export, refusing renames, defaults and namespaces. */
function bindingNames(clause, where) {
  const named = clause && (ts.isImportClause(clause) ? clause.namedBindings : clause);
  if (!named || (clause.name && ts.isImportClause(clause)) || !("elements" in named)) {
    fail(`${where}: only named imports and exports can be joined`);
  }
  return named.elements.map((element) => {
    if (element.propertyName) fail(`${where}: "${element.propertyName.text} as" cannot be joined`);
    return element.name.text;
  });
}

/** The top-level names a declaration statement introduces. */
function declaredNames(statement, where) {
  if (ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement)) {
    return statement.name ? [statement.name.text] : fail(`${where}: an unnamed declaration`);
  }
  if (ts.isVariableStatement(statement)) {
    return statement.declarationList.declarations.map((d) =>
      ts.isIdentifier(d.name) ? d.name.text : fail(`${where}: a destructuring declaration`),
    );
  }
  return [];
}

// The modules, each after the ones it imports.
const ordered = [];
const state = new Map(); // name → "visiting" | "done"
function visit(name) {
  if (state.get(name) === "done") return;
  if (state.get(name) === "visiting") fail(`an import cycle through ${name}`);
  state.set(name, "visiting");
  const file = parse(name);
  for (const statement of file.statements) {
    const spec = moduleName(statement);
    if (isLocal(spec)) visit(spec.slice(2));
  }
  state.set(name, "done");
  ordered.push(file);
}
visit("index.js");

const declaredIn = new Map(); // top-level name → the module declaring it
const imports = []; // [module, name, from]
const publicNames = [];
const vendorImports = [];
const parts = ordered.map((file) => {
  const where = `dist/${file.fileName}`;
  const text = file.text;
  const pieces = [];
  for (const statement of file.statements) {
    const spec = moduleName(statement);
    if (ts.isImportDeclaration(statement)) {
      if (isLocal(spec)) {
        for (const name of bindingNames(statement.importClause, where)) {
          imports.push([where, name, spec.slice(2)]);
        }
        pieces.push(text.slice(statement.pos, statement.getStart(file))); // its comments
        continue;
      }
      if (spec !== SOCKET_IO) fail(`${where}: an import of "${spec}" has no hosted copy`);
      for (const name of bindingNames(statement.importClause, where)) {
        if (declaredIn.has(name)) fail(`"${name}" is imported twice`);
        declaredIn.set(name, SOCKET_IO);
      }
      // Moved to the top of the file; its leading comment stays with its module.
      const source = statement.moduleSpecifier;
      pieces.push(text.slice(statement.pos, statement.getStart(file)));
      vendorImports.push(
        text.slice(statement.getStart(file), source.getStart(file)) +
          JSON.stringify(VENDOR_SOCKET_IO) +
          text.slice(source.end, statement.end),
      );
      continue;
    }
    if (ts.isExportDeclaration(statement)) {
      const clause = statement.exportClause;
      // `export {};`, which tsc writes for a module of types only
      if (!spec && clause && "elements" in clause && !clause.elements.length) continue;
      if (file.fileName !== "index.js" || !isLocal(spec)) {
        fail(`${where}: only index.js may re-export, and only from its own modules`);
      }
      const names = bindingNames(statement.exportClause, where);
      for (const name of names) imports.push([where, name, spec.slice(2)]);
      publicNames.push(...names);
      continue;
    }
    if (ts.isExportAssignment(statement)) fail(`${where}: a default export cannot be joined`);
    const names = declaredNames(statement, where);
    for (const name of names) {
      if (declaredIn.has(name)) {
        fail(`"${name}" is declared by ${declaredIn.get(name)} and ${where}`);
      }
      declaredIn.set(name, file.fileName);
    }
    const modifiers = ts.canHaveModifiers(statement) ? ts.getModifiers(statement) || [] : [];
    const exportKeyword = modifiers.find((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    if (!exportKeyword) {
      pieces.push(text.slice(statement.pos, statement.end));
      continue;
    }
    if (modifiers.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword)) {
      fail(`${where}: a default export cannot be joined`);
    }
    if (file.fileName === "index.js") publicNames.push(...names);
    pieces.push(
      text.slice(statement.pos, exportKeyword.getStart(file)) +
        text.slice(exportKeyword.end, statement.end).replace(/^\s+/, ""),
    );
  }
  if (!pieces.length) return "";
  return `\n// -- ${file.fileName.replace(/\.js$/, ".ts")}\n${pieces.join("")}\n`;
});

for (const [where, name, from] of imports) {
  if (declaredIn.get(name) !== from) fail(`${where}: ${from} does not declare "${name}"`);
}
if (vendorImports.length !== 1) {
  fail(`expected one import of socket.io-client in dist/, found ${vendorImports.length}`);
}

const index = ordered[ordered.length - 1];
const header = index.text.slice(0, index.statements[0]?.getStart(index) ?? 0).trimEnd();
writeFileSync(
  target,
  "// Generated from clients/js/packages/client/src (make install); do not edit.\n" +
    header +
    "\n\n" +
    vendorImports.join("\n") +
    "\n" +
    parts.join("") +
    `\nexport { ${publicNames.sort().join(", ")} };\n`,
);
