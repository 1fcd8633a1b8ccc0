// Converse.js, a real browser client, against a running xmppd: the
// system Chromium, headless, loads Converse.js from node_modules (served
// by a small static server on 127.0.0.1) and logs Alice in over
// WebSocket or BOSH. Bob is xmpp.js over TCP (STARTTLS). Then, as a user
// would see it in the page:
//   - Alice's roster shows Bob, and shows him online;
//   - Alice opens a chat with Bob and sends a message, which Bob receives;
//   - Bob answers, and the answer appears in Alice's chat box.
// Before the browser starts, Alice and Bob are made mutual contacts
// (RFC 6121 subscriptions, with xmpp.js), unless they already are.
//
// Prints "interop ok" and exits 0 on success; on failure exits 1 with
// the step that failed and the last stanzas Converse.js sent and
// received; 2 for bad usage. The whole run is bounded (--timeout).
//
// usage: node run.mjs --transport websocket|bosh --url URL --tcp HOST:PORT
//          --alice-password PW --bob-password PW [--domain localhost]
//          [--screenshot FILE.png] [--trace FILE] [--chromium PATH]
//          [--timeout SECONDS]
// (accounts alice@DOMAIN and bob@DOMAIN must exist)

import { createServer } from "node:http";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

// The test server's certificate is self-signed (Bob's STARTTLS).
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

import xmppClient from "@xmpp/client";
import puppeteer from "puppeteer-core";
const { client, xml } = xmppClient;

const USAGE =
  "usage: node run.mjs --transport websocket|bosh --url URL --tcp HOST:PORT " +
  "--alice-password PW --bob-password PW [--domain localhost] [--screenshot FILE.png] " +
  "[--trace FILE] [--chromium PATH] [--timeout SECONDS]";

let opts;
try {
  opts = parseArgs({
    options: {
      transport: { type: "string" },
      url: { type: "string" },
      tcp: { type: "string" },
      domain: { type: "string", default: "localhost" },
      "alice-password": { type: "string" },
      "bob-password": { type: "string" },
      screenshot: { type: "string" },
      trace: { type: "string" },
      chromium: { type: "string" },
      timeout: { type: "string", default: "60" },
    },
  }).values;
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
const { transport, url, tcp, domain } = opts;
const alicePw = opts["alice-password"];
const bobPw = opts["bob-password"];
if (!["websocket", "bosh"].includes(transport) || !url || !tcp || !alicePw || !bobPw) {
  console.error(USAGE);
  process.exit(2);
}
const alice = `alice@${domain}`;
const bob = `bob@${domain}`;
// Each wait is bounded by what is left of the whole run.
const deadline = Date.now() + Number(opts.timeout) * 1000;
const left = () => Math.max(1, deadline - Date.now());

// What is going on, for the failure message.
let step = "starting";
// Converse.js's debug log, reduced to the stanzas: "-> " sent, "<- " received.
const trace = [];
// Converse.js's own warnings and errors, and page errors.
const complaints = [];
let browser = null;
let bobClient = null;
let httpServer = null;

async function cleanUp() {
  const closing = [];
  if (browser) closing.push(browser.close().catch(() => {}));
  if (bobClient) closing.push(bobClient.stop().catch(() => {}));
  if (httpServer) closing.push(new Promise((r) => httpServer.close(() => r())));
  // Never let clean-up hold the exit for long.
  await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 3000))]);
}

function writeTrace() {
  if (opts.trace) writeFileSync(opts.trace, trace.join("\n") + "\n");
}

let failing = false;
async function fail(reason) {
  if (failing) return;
  failing = true;
  console.error(`FAIL (${transport}) at "${step}": ${reason}`);
  if (complaints.length) console.error(`Converse.js reported:\n  ${complaints.slice(-20).join("\n  ")}`);
  if (trace.length) console.error(`last stanzas (-> sent, <- received):\n${trace.slice(-40).join("\n")}`);
  writeTrace();
  await cleanUp();
  process.exit(1);
}
const overall = setTimeout(() => fail(`timed out after ${opts.timeout} s`), left());
process.on("unhandledRejection", (e) => fail(e?.stack || String(e)));

// --- The page's static server: index.html and Converse.js's dist/ only.

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "node_modules", "converse.js", "dist");
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".mp3": "audio/mpeg",
  ".ogg": "audio/ogg",
};

function serve(req, res) {
  let path;
  try {
    path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  } catch {
    res.writeHead(400).end();
    return;
  }
  const file = path === "/" || path === "/index.html" ? join(here, "index.html") : normalize(join(here, path));
  const allowed = file === join(here, "index.html") || file.startsWith(dist + sep);
  if (req.method !== "GET" || !allowed || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, {
    "Content-Type": TYPES[extname(file)] || "application/octet-stream",
    "Cache-Control": "no-store",
  });
  res.end(readFileSync(file));
}

async function startStaticServer() {
  httpServer = createServer(serve);
  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(0, "127.0.0.1", resolve);
  });
  return `http://127.0.0.1:${httpServer.address().port}`;
}

// --- xmpp.js over TCP, for Bob and for setting up the contacts.

async function xmppjs(username, password, resource) {
  const c = client({ service: `xmpp://${tcp}`, domain, username, password, resource });
  c.on("error", (e) => complaints.push(`xmpp.js ${username}: ${e}`));
  c.queue = [];
  c.waiters = [];
  c.on("stanza", (s) => {
    if (!s.is("message") && !s.is("presence")) return;
    const i = c.waiters.findIndex((w) => w.pred(s));
    if (i >= 0) c.waiters.splice(i, 1)[0].resolve(s);
    else c.queue.push(s);
  });
  await c.start();
  return c;
}

/** The next message or presence `pred` takes, queued or to come. */
function next(c, pred) {
  const i = c.queue.findIndex(pred);
  if (i >= 0) return Promise.resolve(c.queue.splice(i, 1)[0]);
  return new Promise((resolve) => c.waiters.push({ pred, resolve }));
}

async function rosterItem(c, jid) {
  const r = await c.iqCaller.request(xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })), left());
  return r
    .getChild("query", "jabber:iq:roster")
    ?.getChildren("item")
    .find((i) => i.attrs.jid === jid);
}

async function setName(c, jid, name) {
  await c.iqCaller.request(
    xml("iq", { type: "set" }, xml("query", { xmlns: "jabber:iq:roster" }, xml("item", { jid, name }))),
    left(),
  );
}

/** Alice and Bob become mutual contacts, "Bob" and "Alice" by name. */
async function makeContacts(bobC) {
  step = "contacts: alice logs in with xmpp.js over TCP";
  const aliceC = await xmppjs("alice", alicePw, "setup");
  const item = await rosterItem(aliceC, bob);
  if (item?.attrs.subscription !== "both") {
    step = "contacts: mutual subscription";
    await setName(aliceC, bob, "Bob");
    await setName(bobC, alice, "Alice");
    // Available first: a subscription request goes to available resources.
    await aliceC.send(xml("presence"));
    await bobC.send(xml("presence"));
    await aliceC.send(xml("presence", { to: bob, type: "subscribe" }));
    await next(bobC, (s) => s.is("presence") && s.attrs.type === "subscribe" && s.attrs.from?.startsWith(alice));
    await bobC.send(xml("presence", { to: alice, type: "subscribed" }));
    await bobC.send(xml("presence", { to: alice, type: "subscribe" }));
    await next(aliceC, (s) => s.is("presence") && s.attrs.type === "subscribe" && s.attrs.from?.startsWith(bob));
    await aliceC.send(xml("presence", { to: bob, type: "subscribed" }));
    const now = await rosterItem(aliceC, bob);
    if (now?.attrs.subscription !== "both") throw new Error(`alice's roster item for bob: ${now}`);
  }
  await aliceC.stop();
  // Bob's queue keeps nothing from the set-up.
  bobC.queue.length = 0;
}

// --- The browser.

function findChromium() {
  const candidates = [
    opts.chromium,
    process.env.CHROMIUM,
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
  ];
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) throw new Error("no Chromium found (apt-get install chromium, or --chromium PATH)");
  return found;
}

// Converse.js logs each stanza at 'debug' as console.debug('%c%s', style, xml);
// the colour says which way it went.
function onConsole(msg) {
  const text = msg.text();
  const m = /^%c%s color: (darkgoldenrod|darkcyan) ([\s\S]*)$/.exec(text);
  if (m) {
    const received = m[1] === "darkgoldenrod";
    trace.push(`${received ? "<-" : "->"} ${m[2]}`);
    // The server refused the login or ended the stream: say so now.
    if (received && /<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"|<stream:error|type="terminate"/.test(m[2]))
      fail(`the server sent ${m[2]}`);
  }
  // The browser refused the transport itself: no use waiting for retries.
  else if (/blocked by CORS policy|^WebSocket connection to .* failed/.test(text)) fail(`Chromium: ${text}`);
  // (A resource that failed to load is reported by the "response" handler.)
  else if (["error", "warn", "warning"].includes(msg.type()) && !text.startsWith("Failed to load resource"))
    complaints.push(`${msg.type()}: ${text}`);
}

async function waitFor(page, what, fn, ...args) {
  step = what;
  await page.waitForFunction(fn, { timeout: left(), polling: 100 }, ...args);
}

async function main() {
  step = "bob logs in with xmpp.js over TCP";
  bobClient = await xmppjs("bob", bobPw, "xmppjs");
  await makeContacts(bobClient);
  step = "bob is online";
  await bobClient.send(xml("presence"));

  const origin = await startStaticServer();
  step = "chromium starts";
  browser = await puppeteer.launch({
    executablePath: findChromium(),
    headless: true,
    // A container has no user namespaces for the sandbox, and a small /dev/shm.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"],
    defaultViewport: { width: 1200, height: 760 },
    timeout: left(),
  });
  const page = await browser.newPage();
  page.on("console", onConsole);
  page.on("pageerror", (e) => complaints.push(`page error: ${e.message}`));
  // Nothing leaves this machine: the login page's footer links sponsors'
  // logos on conversejs.org, which a CI runner may not reach.
  await page.setRequestInterception(true);
  page.on("request", (r) => {
    const host = new URL(r.url()).hostname;
    if (host === "127.0.0.1" || host === "localhost" || r.url().startsWith("data:")) r.continue();
    else r.abort("blockedbyclient");
  });
  page.on("response", (r) => {
    if (r.status() < 400) return;
    const what = `HTTP ${r.status()} to ${r.request().method()} ${r.url()}`;
    // The BOSH endpoint refused a request (a retry would get the same).
    if (transport === "bosh" && r.url() === url) fail(`the BOSH endpoint answered ${what}`);
    else complaints.push(what);
  });

  const q = new URLSearchParams({
    [transport === "bosh" ? "bosh_service_url" : "websocket_url"]: url,
    jid: alice,
    password: alicePw,
    loglevel: "debug",
  });
  step = "the page loads";
  await page.goto(`${origin}/index.html?${q}`, { timeout: left(), waitUntil: "load" });
  // A login that fails shows on Converse.js's login form (auth failed,
  // connection failed, disconnected): stop there rather than time out.
  const feedback = () => document.querySelector(".conn-feedback.alert-danger .feedback-message")?.textContent.trim();
  page
    .waitForFunction(feedback, { timeout: 0, polling: 250 })
    .then((h) => h.jsonValue())
    .then((text) => fail(`Converse.js's login form says "${text}"`))
    .catch(() => {});

  // The roster shows Bob by his name...
  const contact = `converse-roster a.open-chat[data-jid="${bob}"]`;
  await waitFor(
    page,
    "alice's roster shows Bob",
    (sel) => document.querySelector(sel)?.querySelector(".contact-name")?.textContent.trim() === "Bob",
    contact,
  );
  // ...and online: a green status dot ("This contact is online") and
  // the name styled as online.
  await waitFor(
    page,
    "Bob shows online in alice's roster",
    (sel) => {
      const a = document.querySelector(sel);
      const dot = a?.querySelector("converse-icon.chat-status");
      return a?.querySelector(".contact-name--online") && dot?.getAttribute("color") === "var(--chat-status-online)";
    },
    contact,
  );
  console.log(`converse.js (${transport}): roster shows Bob, online`);

  // Alice opens the chat and types a message, as a user does.
  step = "alice opens a chat with Bob";
  await page.click(contact);
  const chat = `converse-chat[jid="${bob}"]`;
  const textarea = `${chat} textarea.chat-textarea`;
  await page.waitForSelector(textarea, { visible: true, timeout: left() });
  const toBob = `Hello Bob, this is Alice in Converse.js over ${transport}`;
  step = "alice sends Bob a message";
  await page.type(textarea, toBob);
  await page.keyboard.press("Enter");
  step = "bob receives alice's message";
  const m1 = await next(bobClient, (s) => s.is("message") && s.getChildText("body") === toBob);
  if (!m1.attrs.from?.startsWith(`${alice}/`)) throw new Error(`alice's message came from ${m1.attrs.from}`);
  if ((m1.attrs.type || "normal") !== "chat") throw new Error(`alice's message has type ${m1.attrs.type}`);
  console.log(`xmpp.js: bob received "${toBob}" from ${m1.attrs.from}`);

  // Bob answers; the answer shows in Alice's chat box.
  const toAlice = "Hello Alice, Bob here, on xmpp.js over TCP";
  step = "bob answers";
  await bobClient.send(
    xml("message", { to: m1.attrs.from, type: "chat", id: `bob-${Date.now()}` }, xml("body", {}, toAlice)),
  );
  await waitFor(
    page,
    "bob's answer appears in alice's chat box",
    (sel, body, from) =>
      [...document.querySelectorAll(`${sel} .chat-msg__text`)].some(
        (e) => e.textContent.includes(body) && e.closest(".chat-msg")?.dataset.from?.startsWith(from),
      ),
    chat,
    toAlice,
    `${bob}/`,
  );
  console.log(`converse.js: alice's chat box shows "${toAlice}"`);

  if (opts.screenshot) {
    step = "screenshot";
    await page.screenshot({ path: opts.screenshot, type: "png" });
    console.log(`screenshot: ${opts.screenshot}`);
  }
  if (complaints.length) console.log(`(Converse.js reported, not fatal:\n  ${complaints.join("\n  ")})`);
  writeTrace();
  clearTimeout(overall);
  await cleanUp();
  console.log("interop ok");
  process.exit(0);
}

main().catch((e) => fail(e?.message || String(e)));
