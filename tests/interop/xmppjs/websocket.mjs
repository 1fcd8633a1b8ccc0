// xmpp.js (@xmpp/client) over WebSocket (RFC 7395) against a running
// xmppd: Alice logs in over ws:// (the plain listener, as behind a
// proxy), Bob over wss:// (TLS), each gets their roster, they exchange
// presence and a message each way, and Alice sends a ping to the server
// that is answered. Exits non-zero on any failure.
//
// usage: node websocket.mjs WS_URL WSS_URL DOMAIN ALICE_PASSWORD BOB_PASSWORD
// (accounts alice@DOMAIN and bob@DOMAIN must exist)

// The test server's certificate is self-signed.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

import xmppClient from "@xmpp/client";
const { client, xml } = xmppClient;

const [wsUrl, wssUrl, domain, alicePw, bobPw] = process.argv.slice(2);
if (!bobPw) {
  console.error("usage: node websocket.mjs WS_URL WSS_URL DOMAIN ALICE_PASSWORD BOB_PASSWORD");
  process.exit(2);
}
const TIMEOUT = 15000;

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}
setTimeout(() => fail("timed out"), 60000).unref();

async function online(service, username, password) {
  const c = client({ service, domain, username, password, resource: "ws" });
  c.on("error", (e) => console.error(`${username}: ${e}`));
  c.name = username;
  c.queue = [];
  c.waiters = [];
  c.on("stanza", (s) => {
    if (!s.is("message") && !s.is("presence")) return;
    const w = c.waiters.shift();
    if (w) w(s);
    else c.queue.push(s);
  });
  const address = await c.start();
  if (address.bare().toString() !== `${username}@${domain}`) fail(`${username} bound ${address}`);
  return c;
}

function next(c, pred, what) {
  const i = c.queue.findIndex(pred);
  if (i >= 0) return Promise.resolve(c.queue.splice(i, 1)[0]);
  return new Promise((resolve) => {
    const t = setTimeout(() => fail(`${c.name}: no ${what}`), TIMEOUT);
    const waiter = (s) => {
      if (pred(s)) {
        clearTimeout(t);
        resolve(s);
      } else {
        c.queue.push(s);
        c.waiters.push(waiter);
      }
    };
    c.waiters.push(waiter);
  });
}

const alice = await online(wsUrl, "alice", alicePw);
const bob = await online(wssUrl, "bob", bobPw);
console.log("logged in over ws and wss");

// The roster (RFC 6121 §2): both get theirs, and become contacts.
for (const c of [alice, bob]) {
  const r = await c.iqCaller.request(xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })), TIMEOUT);
  if (!r.getChild("query", "jabber:iq:roster")) fail(`${c.name}: no roster`);
}
// Available first: a subscription request goes to available resources.
await alice.send(xml("presence"));
await bob.send(xml("presence"));
await alice.send(xml("presence", { to: `bob@${domain}`, type: "subscribe" }));
await next(bob, (s) => s.is("presence") && s.attrs.type === "subscribe", "subscription request");
await bob.send(xml("presence", { to: `alice@${domain}`, type: "subscribed" }));
// Alice is subscribed to bob now: his presence reaches her.
await next(alice, (s) => s.is("presence") && (s.attrs.from || "").startsWith(`bob@${domain}/`) && !s.attrs.type, "bob's presence");
console.log("roster and presence ok");

// A message each way.
await alice.send(xml("message", { to: `bob@${domain}`, type: "chat", id: "m1" }, xml("body", {}, "hello over ws")));
const m1 = await next(bob, (s) => s.is("message") && s.getChildText("body") === "hello over ws", "alice's message");
if (!(m1.attrs.from || "").startsWith(`alice@${domain}/`)) fail(`from ${m1.attrs.from}`);
await bob.send(xml("message", { to: m1.attrs.from, type: "chat", id: "m2" }, xml("body", {}, "and back over wss")));
await next(alice, (s) => s.is("message") && s.getChildText("body") === "and back over wss", "bob's answer");
console.log("messages ok");

// An IQ answered by the server.
await alice.iqCaller.request(xml("iq", { type: "get", to: domain }, xml("ping", { xmlns: "urn:xmpp:ping" })), TIMEOUT);
console.log("ping ok");

await alice.stop();
await bob.stop();
console.log("interop ok");
