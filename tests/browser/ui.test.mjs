// The management page in a real browser (headless Chromium via
// playwright-core): sign in, create a custom API token, copy its key, use it
// on the proxy port, pin it to a network from the edit form and see it
// refused, regenerate it and see the old key refused, delete it; sort the
// list by expiry.
// Saves screenshots of the lists and the create forms at 1280 and 390 px
// under target/browser/, and checks that neither width scrolls sideways.
//
// Run through scripts/browser-test.sh, which builds the binaries and makes
// sure Postgres, Chromium and playwright-core are there. Everything else
// (schema, users, tokens, echo upstream, `authgate serve`) is set up here and
// torn down at the end.
//
// Environment: AUTHGATE_BIN, ECHO_BIN (built binaries), CHROMIUM
// (/usr/bin/chromium), AUTHGATE_TEST_DATABASE_URL (postgres://postgres@
// 127.0.0.1:5432/postgres), OUT_DIR (target/browser).

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync, rmSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.AUTHGATE_BIN || join(root, "target/debug/authgate");
const ECHO = process.env.ECHO_BIN || join(root, "target/debug/examples/echo_upstream");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const DB = process.env.AUTHGATE_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const OUT = process.env.OUT_DIR || join(root, "target/browser");
const READ_ARTICLES = "plugin::content-manager.explorer.read@api::article.article";
const FIND_ARTICLES = "api::article.article.find";

const schema = `browser_${process.pid}_${randomBytes(3).toString("hex")}`;
const run = join(OUT, "run");
const config = join(run, "config.toml");
const children = [];

/** The environment for authgate: ours, without anything that would override the test config. */
function authgateEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  for (const k of Object.keys(env)) {
    if (k.startsWith("AUTHGATE_") || k === "API_TOKEN_SALT" || k === "ENCRYPTION_KEY") { delete env[k]; }
  }
  return env;
}

function log(msg) {
  process.stdout.write(`browser-test: ${msg}\n`);
}

/** Run the CLI with the test config; return stdout. */
function cli(...args) {
  const r = spawnSync(BIN, ["--config", config, ...args], {
    encoding: "utf8",
    env: authgateEnv(),
  });
  if (r.status !== 0) {
    throw new Error(`authgate ${args.join(" ")} failed: ${r.stderr}`);
  }
  return r.stdout;
}

function keyOf(json) {
  return JSON.parse(json.trim()).key;
}

/** Start a process; resolve with the first stderr line matching `pattern`. */
function startUntil(cmd, args, pattern, env = process.env) {
  return new Promise((resolveLine, reject) => {
    const child = spawn(cmd, args, {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(child);
    let buffer = "";
    let done = false;
    const timer = setTimeout(() => {
      if (!done) { reject(new Error(`${cmd} did not start:\n${buffer}`)); }
    }, 30000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      buffer += chunk;
      if (process.env.BROWSER_TEST_VERBOSE) { process.stderr.write(chunk); }
      // Whole lines only: a chunk can end in the middle of the line sought.
      const line = buffer.split("\n").slice(0, -1).find((l) => pattern.test(l));
      if (line && !done) {
        done = true;
        clearTimeout(timer);
        resolveLine(line);
      }
    });
    child.on("exit", (code) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(new Error(`${cmd} exited with ${code}:\n${buffer}`));
      }
    });
  });
}

async function proxyStatus(proxy, path, key) {
  const r = await fetch(`${proxy}${path}`, { headers: { authorization: `Bearer ${key}` } });
  await r.arrayBuffer();
  return r.status;
}

async function eventually(what, f, ms = 5000) {
  const until = Date.now() + ms;
  for (;;) {
    if (await f()) { return; }
    if (Date.now() > until) { throw new Error(`timed out waiting for: ${what}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Screenshot at a width, full page, and check nothing scrolls sideways. */
async function shoot(page, name, width) {
  await page.setViewportSize({ width, height: width > 600 ? 900 : 844 });
  await page.waitForTimeout(100);
  const overflow = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    view: document.documentElement.clientWidth,
    // Boxes whose content is wider than they are (a table spilling out).
    boxes: [...document.querySelectorAll(".table-wrap, main, form, fieldset, .key-row")]
      .filter((el) => el.scrollWidth > el.clientWidth + 1)
      .map((el) => `${el.tagName.toLowerCase()}.${el.className} ${el.scrollWidth}>${el.clientWidth}`),
  }));
  assert.ok(
    overflow.scroll <= overflow.view,
    `${name} at ${width}px scrolls sideways (${overflow.scroll} > ${overflow.view})`,
  );
  assert.deepEqual(overflow.boxes, [], `${name} at ${width}px: content wider than its box`);
  const file = join(OUT, `${name}-${width}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

/** Every visible form control has a label; buttons have names. */
async function checkLabels(page, where) {
  const problems = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
      if (!el.labels || el.labels.length === 0) { out.push(`${el.tagName} ${el.name} has no label`); }
    }
    for (const b of document.querySelectorAll("button, a.button")) {
      if (!b.textContent.trim()) { out.push(`a button without a name`); }
    }
    return out;
  });
  assert.deepEqual(problems, [], `${where}: ${problems.join("; ")}`);
}

async function main() {
  mkdirSync(run, { recursive: true });
  for (const f of ["failure.png", "failure.html"]) { rmSync(join(OUT, f), { force: true }); }
  const upstreamLine = await startUntil(ECHO, ["127.0.0.1:0"], /listening on/);
  const upstream = upstreamLine.match(/http:\/\/(\S+)/)[1];
  writeFileSync(
    config,
    `[server]
listen = "127.0.0.1:0"
[upstream]
url = "http://${upstream}"
[postgres]
url = "${DB}"
schema = "${schema}"
pool_size = 4
[tokens]
salt = "browser-test-salt"
encryption_key = "browser-test-encryption-key"
last_used_interval = "1s"
[metrics]
listen = "127.0.0.1:0"
[management]
listen = "127.0.0.1:0"
[log]
format = "text"
[[content_types]]
uid = "api::article.article"
plural = "articles"
[[content_types]]
uid = "api::homepage.homepage"
kind = "single"
`,
  );

  // People and tokens, made with the CLI as an operator would.
  cli("migrate");
  cli("role", "create", "editor");
  cli("role", "grant", "editor", READ_ARTICLES);
  cli("user", "create", "--email", "admin@example.com", "--name", "Ada Admin", "--role", "super-admin");
  cli("user", "create", "--email", "editor@example.com", "--name", "Ed Editor", "--role", "editor");
  const manage = [];
  for (const area of ["api-tokens", "admin-tokens"]) {
    for (const op of ["read", "create", "update", "delete", "regenerate"]) {
      manage.push("--permission", `admin::${area}.${op}`);
    }
  }
  const adminKey = keyOf(cli(
    "token", "create", "--kind", "admin", "--name", "ada-laptop", "--owner", "admin@example.com",
    "--description", "Ada's management token", ...manage, "--permission", READ_ARTICLES,
    "--permission", "admin::audit-logs.read", "--json",
  ));
  cli("token", "create", "--kind", "content-api", "--name", "Read Only", "--type", "read-only",
    "--description", "Public website build", "--json");
  cli("token", "create", "--kind", "content-api", "--name", "Full Access", "--type", "full-access",
    "--duration", "90d", "--json");
  cli("token", "create", "--kind", "admin", "--name", "editor-ci", "--owner", "editor@example.com",
    "--description", "Nightly content export", "--permission", READ_ARTICLES, "--duration", "30d", "--json");

  const started = await startUntil(BIN, ["--config", config, "serve"], /authgate started/,
    authgateEnv({ RUST_LOG: "info" }));
  const proxy = `http://${started.match(/listen=(\S+)/)[1]}`;
  const mgmt = `http://${started.match(/management=Some\(([^)]+)\)/)[1]}`;
  log(`proxy ${proxy}, management ${mgmt}`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--no-first-run", "--no-default-browser-check",
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: mgmt });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") { errors.push(m.text()); } });

    // Sign in.
    await page.goto(mgmt);
    await checkLabels(page, "sign-in");
    await shoot(page, "sign-in", 1280);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.getByLabel("Admin token").fill(adminKey);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(`${mgmt}/api-tokens`);
    assert.ok(!(await page.content()).includes(adminKey), "the page never shows the sign-in key");
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
    assert.ok(!stored.includes(adminKey), "nothing readable by scripts holds the key");
    await page.getByRole("heading", { name: "API Tokens" }).waitFor();

    // The lists.
    await checkLabels(page, "API tokens list");
    await shoot(page, "api-tokens", 1280);
    await shoot(page, "api-tokens", 390);
    await page.setViewportSize({ width: 1280, height: 900 });
    // Sorted by expiry on the server, from the column header (issue 16).
    const names = () => page.locator('tbody th[scope="row"]').allTextContents();
    assert.deepEqual(await names(), ["Read Only", "Full Access"], "made first, first");
    await page.getByRole("link", { name: /Expires/ }).click();
    await page.waitForURL(`${mgmt}/api-tokens?sort=expiresAt:asc`);
    assert.deepEqual(await names(), ["Full Access", "Read Only"], "soonest expiry first, never last");
    assert.equal(await page.getByRole("columnheader", { name: /Expires/ }).getAttribute("aria-sort"), "ascending");
    await page.getByText("expires in 90 days").waitFor();
    await page.getByRole("link", { name: /Expires/ }).click();
    await page.waitForURL(`${mgmt}/api-tokens?sort=expiresAt:desc`);
    assert.deepEqual(await names(), ["Read Only", "Full Access"]);
    await page.goto(`${mgmt}/admin-tokens`);
    await page.getByRole("columnheader", { name: "Owner" }).waitFor();
    await shoot(page, "admin-tokens", 1280);
    await shoot(page, "admin-tokens", 390);
    await page.goto(`${mgmt}/admin-tokens/new`);
    await checkLabels(page, "admin token form");
    const disabled = await page.locator('input[name="permission"][value="admin::webhooks.read"]').isDisabled();
    assert.ok(disabled, "a permission the signed-in token lacks is disabled");
    assert.ok(!(await page.locator(`input[name="permission"][value="${READ_ARTICLES}"]`).isDisabled()));
    await shoot(page, "admin-token-form", 1280);
    await shoot(page, "admin-token-form", 390);

    // Create a custom API token through the form.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${mgmt}/api-tokens`);
    await page.getByRole("link", { name: "Create new API Token" }).click();
    await page.getByRole("heading", { name: "Create new API Token" }).waitFor();
    await checkLabels(page, "API token form");
    assert.ok(await page.locator("#custom-permissions").isHidden(), "custom permissions hidden until Custom");
    await page.getByLabel("Custom", { exact: true }).check();
    await page.locator("#custom-permissions").waitFor({ state: "visible" });
    await page.getByLabel("Name", { exact: true }).fill("browser-test");
    await page.getByLabel("Description").fill("Made by the browser test");
    await page.getByLabel("Token duration").selectOption("30");
    // Pinned to the network the proxy sees us from (issue 16).
    await page.getByLabel("Allowed networks").fill("127.0.0.0/8");
    await page.locator(`input[name="permission"][value="${FIND_ARTICLES}"]`).check();
    await shoot(page, "api-token-form", 1280);
    await shoot(page, "api-token-form", 390);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("heading", { name: "Copy your new API Token now" }).waitFor();
    await shoot(page, "api-token-created", 1280);
    await shoot(page, "api-token-created", 390);
    await page.setViewportSize({ width: 1280, height: 900 });

    // Copy the key with the button, read it back from the clipboard.
    const shown = (await page.locator("#token-key").textContent()).trim();
    await page.getByRole("button", { name: "Copy" }).click();
    await page.getByText("Copied to the clipboard.").waitFor();
    const key = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(key, shown);
    assert.match(key, /^[0-9a-f]{256}$/);
    assert.equal(await proxyStatus(proxy, "/api/articles", key), 200, "the copied key works on the proxy");
    assert.equal(await proxyStatus(proxy, "/api/articles/1", key), 403, "and only for its action");
    log("created key works on the proxy");

    // A reload does not show a fresh key again.
    await page.reload();
    assert.equal(await page.locator("#token-key").count(), 0, "a new key is shown once");

    // Pinned elsewhere from the edit form: refused; unpinned again: works.
    const networks = page.locator("dd.networks");
    assert.equal((await networks.textContent()).trim(), "127.0.0.0/8");
    const pinTo = async (cidrs) => {
      await page.getByLabel("Allowed networks").fill(cidrs);
      await page.getByRole("button", { name: "Save" }).click();
      await page.getByText("Saved.").waitFor();
    };
    await pinTo("192.0.2.0/24");
    await eventually("pinned elsewhere: refused", async () => (await proxyStatus(proxy, "/api/articles", key)) === 403);
    await pinTo("");
    assert.equal((await networks.textContent()).trim(), "Any address");
    await eventually("unpinned: works", async () => (await proxyStatus(proxy, "/api/articles", key)) === 200);
    log("pinned to a network: refused elsewhere, works again unpinned");

    // Regenerate, confirmed in the dialog.
    await page.getByRole("button", { name: "Regenerate" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    assert.match(await dialog.textContent(), /stops working at once/);
    // Cancel first: nothing happens.
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });
    assert.equal(await proxyStatus(proxy, "/api/articles", key), 200);
    await page.getByRole("button", { name: "Regenerate" }).click();
    await dialog.getByRole("button", { name: "Regenerate" }).click();
    await page.getByRole("heading", { name: "Copy your new API Token now" }).waitFor();
    await page.getByRole("button", { name: "Copy" }).click();
    await page.getByText("Copied to the clipboard.").waitFor();
    const newKey = await page.evaluate(() => navigator.clipboard.readText());
    assert.notEqual(newKey, key);
    await eventually("the old key is refused", async () => (await proxyStatus(proxy, "/api/articles", key)) === 401);
    assert.equal(await proxyStatus(proxy, "/api/articles", newKey), 200);
    log("regenerated: old key 401, new key 200");

    // View the key again (an encryption key is configured).
    await page.goto(page.url());
    await page.getByRole("button", { name: "View key" }).click();
    await page.getByRole("heading", { name: "The key of this API Token" }).waitFor();
    assert.equal((await page.locator("#token-key").textContent()).trim(), newKey);

    // Delete, confirmed in the dialog.
    await page.getByRole("button", { name: "Delete browser-test" }).click();
    await dialog.getByRole("button", { name: "Delete" }).click();
    await page.waitForURL(`${mgmt}/api-tokens`);
    await page.getByText("Deleted the token “browser-test”.").waitFor();
    assert.equal(await page.getByRole("link", { name: "browser-test" }).count(), 0);
    await eventually("the deleted key is refused", async () => (await proxyStatus(proxy, "/api/articles", newKey)) === 401);
    log("deleted: key 401");

    // The Audit log tab: what was just done, newest first, filterable,
    // with a detail view; never a key.
    await page.getByRole("link", { name: "Audit log" }).click();
    await page.getByRole("heading", { name: "Audit log" }).waitFor();
    const rows = page.locator("table.audit tbody tr");
    const actions = await page.locator("table.audit tbody th").allTextContents();
    assert.deepEqual(actions.slice(0, 6), [
      "api-token.delete", "api-token.view-key", "api-token.regenerate",
      "api-token.update", "api-token.update", "api-token.create",
    ]);
    assert.ok(!(await page.content()).includes(newKey), "no key on the audit page");
    await shoot(page, "audit-log", 1280);
    await shoot(page, "audit-log", 390);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.getByLabel("Action").fill("api-token.regenerate");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/action=api-token.regenerate/);
    assert.equal(await rows.count(), 1, "the filter keeps one event");
    await rows.first().getByRole("link").click();
    await page.getByRole("heading", { name: /^Event \d+: api-token.regenerate$/ }).waitFor();
    assert.match(await page.locator("dl.facts").textContent(), /admin@example\.com/);
    assert.match(await page.locator("dl.facts").textContent(), /ui/);
    await shoot(page, "audit-event", 1280);
    await shoot(page, "audit-event", 390);
    await page.setViewportSize({ width: 1280, height: 900 });
    log("audit log lists, filters and shows the page's own actions");

    // Keyboard: the skip link is the first stop and leads to the content.
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");

    // Sign out.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.goto(`${mgmt}/api-tokens`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();

    assert.deepEqual(errors, [], `browser console errors: ${errors.join("; ")}`);
    log("all steps passed");
  } catch (e) {
    // Leave what the browser saw, for the post-mortem.
    for (const p of browser.contexts().flatMap((c) => c.pages())) {
      await p.screenshot({ path: join(OUT, "failure.png"), fullPage: true }).catch(() => {});
      writeFileSync(join(OUT, "failure.html"), await p.content().catch(() => ""));
      log(`failure at ${p.url()}: see ${join(OUT, "failure.png")} and failure.html`);
    }
    throw e;
  } finally {
    await browser.close();
  }
}

function cleanup() {
  for (const c of children) {
    if (c.exitCode === null) { c.kill("SIGTERM"); }
  }
  const r = spawnSync("psql", [DB, "-qc", `DROP SCHEMA IF EXISTS ${schema} CASCADE`], { encoding: "utf8" });
  if (r.status !== 0) { log(`could not drop schema ${schema}: ${r.stderr || r.error}`); }
  rmSync(run, { recursive: true, force: true });
}

main().then(
  () => { cleanup(); process.exit(0); },
  (e) => { console.error(`browser-test: FAILED: ${e.stack || e}`); cleanup(); process.exit(1); },
);
