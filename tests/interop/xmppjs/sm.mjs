// xmpp.js (@xmpp/client) with stream management (XEP-0198) over
// WebSocket (RFC 7395) against a running xmppd: Bob's client enables it
// (xmpp.js does when the server offers it), his connection is cut under
// him (the TCP socket destroyed, no <close/>), Alice goes on sending, and
// xmpp.js reconnects and resumes the session: every message arrives
// once, in order, and no new session was bound. Exits non-zero on any
// failure.
//
// usage: node sm.mjs WS_URL DOMAIN ALICE_PASSWORD BOB_PASSWORD
// (accounts alice@DOMAIN and bob@DOMAIN must exist)

import xmppClient from "@xmpp/client";
const { client, xml } = xmppClient;

const [wsUrl, domain, alicePw, bobPw] = process.argv.slice(2);
if (!bobPw) {
  console.error("usage: node sm.mjs WS_URL DOMAIN ALICE_PASSWORD BOB_PASSWORD");
  process.exit(2);
}

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}
setTimeout(() => fail("timed out"), 60000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, cond) {
  const deadline = Date.now() + 15000;
  while (!cond()) {
    if (Date.now() > deadline) fail(`no ${what}`);
    await sleep(20);
  }
}

const alice = client({ service: wsUrl, domain, username: "alice", password: alicePw, resource: "a" });
alice.on("error", (e) => console.error(`alice: ${e}`));
await alice.start();

const bob = client({ service: wsUrl, domain, username: "bob", password: bobPw, resource: "phone" });
bob.on("error", (e) => console.error(`bob: ${e}`));
const bodies = [];
let binds = 0;
bob.on("online", () => {
  binds += 1;
});
bob.on("stanza", (s) => {
  if (s.is("message") && s.getChildText("body")) bodies.push(s.getChildText("body"));
});
await bob.start();
await bob.send(xml("presence"));
const sm = bob.streamManagement;
await until("stream management", () => sm.enabled && sm.id);
const id = sm.id;
console.log(`stream management enabled, resumable (max ${sm.max} s)`);

const to = `bob@${domain}/phone`;
const say = (i) => alice.send(xml("message", { to, type: "chat" }, xml("body", {}, `m${i}`)));
for (let i = 0; i < 10; i++) await say(i);
await until("the first 10 messages", () => bodies.length >= 10);
console.log("10 messages before the cut");

// The connection is cut under the client.
const resumed = new Promise((resolve) => bob.reconnect.once("reconnected", resolve));
bob.socket.socket.terminate();
for (let i = 10; i < 20; i++) await say(i);
await resumed;
await until("the resumption", () => sm.enabled && bob.status === "online");
if (sm.id !== id) fail(`a new session (${sm.id}) rather than the old one resumed`);
if (binds !== 1) fail(`bound ${binds} times: the session was not resumed`);
console.log("session resumed");
for (let i = 20; i < 25; i++) await say(i);
await until("all 25 messages", () => bodies.length >= 25);
await sleep(300);
const want = Array.from({ length: 25 }, (_, i) => `m${i}`);
if (JSON.stringify(bodies) !== JSON.stringify(want)) fail(`got ${JSON.stringify(bodies)}`);
console.log("all 25 messages, once each, in order");
await bob.stop();
await alice.stop();
console.log("interop ok");
process.exit(0);
