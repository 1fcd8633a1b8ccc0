// xmpp.js (@xmpp/client), a second client library, against a running
// xmppd: STARTTLS and SCRAM login, XEP-0060 on the PubSub service (create,
// subscribe, publish, the event, items, retract), PEP (XEP-0163) with the
// OMEMO device-list pattern (publish-options access_model=open, read by a
// stranger) and a presence-only node refused to the stranger. Exits
// non-zero on any failure.
//
// usage: node pubsub.mjs HOST PORT DOMAIN ALICE_PASSWORD BOB_PASSWORD
// (accounts alice@DOMAIN and bob@DOMAIN must exist)

// The test server's certificate is self-signed.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

import xmppClient from "@xmpp/client";
const { client, xml } = xmppClient;

const [host, port, domain, alicePw, bobPw] = process.argv.slice(2);
const service = `pubsub.${domain}`;
const PUBSUB = "http://jabber.org/protocol/pubsub";
const EVENT = "http://jabber.org/protocol/pubsub#event";
const TIMEOUT = 15000;

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}
setTimeout(() => fail("timed out"), 60000).unref();

async function online(username, password, resource) {
  const c = client({
    service: `xmpp://${host}:${port}`,
    domain,
    username,
    password,
    resource,
  });
  c.on("error", (e) => console.error(`${username}: ${e}`));
  c.events = [];
  c.waiters = [];
  c.on("stanza", (s) => {
    if (s.is("message") && s.getChild("event", EVENT)) {
      const w = c.waiters.shift();
      if (w) w(s);
      else c.events.push(s);
    }
  });
  await c.start();
  await c.send(xml("presence"));
  return c;
}

function nextEvent(c) {
  const queued = c.events.shift();
  if (queued) return Promise.resolve(queued);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no event")), TIMEOUT);
    c.waiters.push((s) => {
      clearTimeout(t);
      resolve(s);
    });
  });
}

function pubsub(...children) {
  return xml("pubsub", { xmlns: PUBSUB }, ...children);
}

async function expectError(promise, condition) {
  try {
    await promise;
  } catch (e) {
    if (e.condition === condition) return;
    fail(`expected ${condition}, got ${e.condition || e}`);
  }
  fail(`expected ${condition}, got a result`);
}

const alice = await online("alice", alicePw, "js");
const bob = await online("bob", bobPw, "js");
const a = alice.iqCaller;
const b = bob.iqCaller;

// Discovery.
const info = await a.request(
  xml("iq", { type: "get", to: service }, xml("query", { xmlns: "http://jabber.org/protocol/disco#info" })),
  TIMEOUT,
);
const identity = info.getChild("query").getChild("identity");
if (identity.attrs.category !== "pubsub" || identity.attrs.type !== "service") {
  fail(`identity ${identity}`);
}
console.log("disco ok");

// Create, subscribe, publish, the event, items, retract.
await a.request(xml("iq", { type: "set", to: service }, pubsub(xml("create", { node: "js-sensors" }))), TIMEOUT);
const sub = await b.request(
  xml("iq", { type: "set", to: service }, pubsub(xml("subscribe", { node: "js-sensors", jid: "bob@" + domain }))),
  TIMEOUT,
);
const subscription = sub.getChild("pubsub").getChild("subscription");
if (subscription.attrs.subscription !== "subscribed") fail(`subscription ${subscription}`);
const published = await a.request(
  xml(
    "iq",
    { type: "set", to: service },
    pubsub(xml("publish", { node: "js-sensors" }, xml("item", {}, xml("reading", { xmlns: "urn:example:sensor" }, "19.25")))),
  ),
  TIMEOUT,
);
const id = published.getChild("pubsub").getChild("publish").getChild("item").attrs.id;
if (!id) fail("no server-generated item id");
const ev = await nextEvent(bob);
const item = ev.getChild("event", EVENT).getChild("items").getChild("item");
if (item.attrs.id !== id || !item.toString().includes("19.25")) fail(`event ${ev}`);
const items = await b.request(
  xml("iq", { type: "get", to: service }, pubsub(xml("items", { node: "js-sensors" }))),
  TIMEOUT,
);
const got = items.getChild("pubsub").getChild("items").getChildren("item").map((i) => i.attrs.id);
if (got.length !== 1 || got[0] !== id) fail(`items ${got}`);
await a.request(
  xml("iq", { type: "set", to: service }, pubsub(xml("retract", { node: "js-sensors", notify: "true" }, xml("item", { id })))),
  TIMEOUT,
);
const retracted = await nextEvent(bob);
if (!retracted.getChild("event", EVENT).getChild("items").getChild("retract")) fail(`retract ${retracted}`);
console.log("pubsub ok");

// PEP, the OMEMO device-list pattern: an open node a stranger may read.
const DEVICES = "eu.siacs.conversations.axolotl.devicelist";
const options = xml(
  "publish-options",
  {},
  xml(
    "x",
    { xmlns: "jabber:x:data", type: "submit" },
    xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, "http://jabber.org/protocol/pubsub#publish-options")),
    xml("field", { var: "pubsub#access_model" }, xml("value", {}, "open")),
  ),
);
await a.request(
  xml(
    "iq",
    { type: "set" },
    pubsub(
      xml(
        "publish",
        { node: DEVICES },
        xml("item", { id: "current" }, xml("list", { xmlns: "eu.siacs.conversations.axolotl" }, xml("device", { id: "4242" }))),
      ),
      options,
    ),
  ),
  TIMEOUT,
);
const own = await nextEvent(alice);
if (!own.toString().includes("4242")) fail(`own device list event ${own}`);
const devices = await b.request(
  xml("iq", { type: "get", to: `alice@${domain}` }, pubsub(xml("items", { node: DEVICES }))),
  TIMEOUT,
);
if (!devices.toString().includes("4242")) fail(`device list ${devices}`);
// A presence-access node (the PEP default) stays closed to the stranger.
await a.request(
  xml(
    "iq",
    { type: "set" },
    pubsub(xml("publish", { node: "http://jabber.org/protocol/mood" }, xml("item", {}, xml("mood", { xmlns: "http://jabber.org/protocol/mood" }, xml("happy"))))),
  ),
  TIMEOUT,
);
await expectError(
  b.request(
    xml("iq", { type: "get", to: `alice@${domain}` }, pubsub(xml("items", { node: "http://jabber.org/protocol/mood" }))),
    TIMEOUT,
  ),
  "not-authorized",
);
console.log("pep ok");

await alice.stop();
await bob.stop();
console.log("interop ok");
process.exit(0);
