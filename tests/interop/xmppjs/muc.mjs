// xmpp.js (@xmpp/client), a second client library, against a running
// xmppd: Multi-User Chat (XEP-0045) on the conference service. Alice
// creates an instant room, Bob joins without history, a groupchat message
// reaches both occupants with a stanza-id (XEP-0359), a private message
// goes through the room, disco#info describes the room, Bob leaves and
// Alice destroys the room. Exits non-zero on any failure.
//
// usage: node muc.mjs HOST PORT DOMAIN ALICE_PASSWORD BOB_PASSWORD
// (accounts alice@DOMAIN and bob@DOMAIN must exist)

// The test server's certificate is self-signed.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

import xmppClient from "@xmpp/client";
const { client, xml } = xmppClient;

const [host, port, domain, alicePw, bobPw] = process.argv.slice(2);
if (!bobPw) {
  console.error("usage: node muc.mjs HOST PORT DOMAIN ALICE_PASSWORD BOB_PASSWORD");
  process.exit(2);
}
const room = `jsroom@conference.${domain}`;
const MUC = "http://jabber.org/protocol/muc";
const MUC_USER = "http://jabber.org/protocol/muc#user";
const MUC_OWNER = "http://jabber.org/protocol/muc#owner";
const DISCO_INFO = "http://jabber.org/protocol/disco#info";
const SID = "urn:xmpp:sid:0";
const TIMEOUT = 15000;

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}
setTimeout(() => fail("timed out"), 60000).unref();

// Each client keeps, in arrival order, every presence and message that
// comes from the room (its bare JID or one of its occupant JIDs).
async function online(username, password, resource) {
  const c = client({
    service: `xmpp://${host}:${port}`,
    domain,
    username,
    password,
    resource,
  });
  c.on("error", (e) => console.error(`${username}: ${e}`));
  c.name = username;
  c.queue = [];
  c.waiters = [];
  c.on("stanza", (s) => {
    if (!s.is("presence") && !s.is("message")) return;
    const from = s.attrs.from || "";
    if (from.split("/")[0] !== room) return;
    const w = c.waiters.shift();
    if (w) w(s);
    else c.queue.push(s);
  });
  await c.start();
  await c.send(xml("presence"));
  return c;
}

// The next stanza from the room, strictly in order.
function next(c, what) {
  const queued = c.queue.shift();
  if (queued) return Promise.resolve(queued);
  return new Promise((resolve) => {
    const t = setTimeout(() => fail(`${c.name}: nothing from the room while waiting for ${what}`), TIMEOUT);
    c.waiters.push((s) => {
      clearTimeout(t);
      resolve(s);
    });
  });
}

// The status codes of a muc#user payload, as strings.
function statusCodes(s) {
  const x = s.getChild("x", MUC_USER);
  if (!x) return [];
  return x.getChildren("status").map((st) => st.attrs.code);
}

function mucItem(s) {
  const x = s.getChild("x", MUC_USER);
  return x ? x.getChild("item") : undefined;
}

function isSubjectOnly(s) {
  return s.is("message") && s.attrs.type === "groupchat" && s.getChild("subject") && !s.getChild("body");
}

// An available presence from the given occupant JID, or fail.
async function expectPresence(c, from, what) {
  const s = await next(c, what);
  if (!s.is("presence") || s.attrs.from !== from || (s.attrs.type && s.attrs.type !== "available")) {
    fail(`${c.name}: expected ${what} (available presence from ${from}), got ${s}`);
  }
  return s;
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

function discoInfo(iqCaller) {
  return iqCaller.request(xml("iq", { type: "get", to: room }, xml("query", { xmlns: DISCO_INFO })), TIMEOUT);
}

const alice = await online("alice", alicePw, "js");
const bob = await online("bob", bobPw, "js");
const a = alice.iqCaller;
const b = bob.iqCaller;

// 1. Alice enters first, which creates the room: her own presence comes
// back with 110 (this is you) and 201 (room created), as owner and
// moderator.
await alice.send(xml("presence", { to: `${room}/Alice` }, xml("x", { xmlns: MUC })));
const created = await expectPresence(alice, `${room}/Alice`, "alice's own presence");
const createdCodes = statusCodes(created);
if (!createdCodes.includes("110") || !createdCodes.includes("201")) {
  fail(`alice's own presence lacks status 110 and 201: ${created}`);
}
const ownerItem = mucItem(created);
if (!ownerItem || ownerItem.attrs.affiliation !== "owner" || ownerItem.attrs.role !== "moderator") {
  fail(`alice is not owner and moderator: ${created}`);
}
console.log("create ok");

// 2. Accept the default configuration: an instant room.
await a.request(
  xml("iq", { type: "set", to: room }, xml("query", { xmlns: MUC_OWNER }, xml("x", { xmlns: "jabber:x:data", type: "submit" }))),
  TIMEOUT,
);
// A subject message after the creation presence is allowed; skip it.
if (alice.queue.length > 0 && isSubjectOnly(alice.queue[0])) alice.queue.shift();
console.log("instant room ok");

// 3. Bob enters without history: first the existing occupant (Alice),
// then his own presence with 110, then the (empty) subject.
await bob.send(
  xml("presence", { to: `${room}/Bob` }, xml("x", { xmlns: MUC }, xml("history", { maxstanzas: "0" }))),
);
const seenAlice = await expectPresence(bob, `${room}/Alice`, "alice's presence");
const seenAliceItem = mucItem(seenAlice);
if (!seenAliceItem || seenAliceItem.attrs.affiliation !== "owner" || seenAliceItem.attrs.role !== "moderator") {
  fail(`bob sees alice without owner/moderator: ${seenAlice}`);
}
if (statusCodes(seenAlice).includes("110")) fail(`bob got 110 on alice's presence: ${seenAlice}`);
const bobSelf = await expectPresence(bob, `${room}/Bob`, "bob's own presence");
if (!statusCodes(bobSelf).includes("110")) fail(`bob's own presence lacks status 110: ${bobSelf}`);
const subject = await next(bob, "the subject");
if (!subject.is("message") || subject.attrs.type !== "groupchat" || !subject.getChild("subject")) {
  fail(`expected a groupchat message with <subject/>, got ${subject}`);
}
if (subject.getChild("body")) fail(`subject message carries a body (history not suppressed?): ${subject}`);
if (subject.getChildText("subject")) fail(`expected an empty subject, got ${subject}`);
// Alice sees Bob arrive.
const bobArrives = await expectPresence(alice, `${room}/Bob`, "bob's join presence");
if (statusCodes(bobArrives).includes("110")) fail(`alice got 110 on bob's presence: ${bobArrives}`);
console.log("join ok");

// 4. A groupchat message reaches every occupant, the sender included,
// from Bob's occupant JID with his id and a stanza-id by the room.
await bob.send(xml("message", { to: room, type: "groupchat", id: "js1" }, xml("body", {}, "hello room")));
for (const c of [bob, alice]) {
  const m = await next(c, "bob's groupchat message");
  if (!m.is("message") || m.attrs.type !== "groupchat" || m.attrs.from !== `${room}/Bob`) {
    fail(`${c.name}: expected groupchat from ${room}/Bob, got ${m}`);
  }
  if (m.attrs.id !== "js1") fail(`${c.name}: message id changed: ${m}`);
  if (m.getChildText("body") !== "hello room") fail(`${c.name}: body ${m}`);
  const sid = m.getChild("stanza-id", SID);
  if (!sid || sid.attrs.by !== room || !sid.attrs.id) fail(`${c.name}: no stanza-id by ${room}: ${m}`);
}
console.log("groupchat ok");

// 5. A private message through the room, addressed to an occupant JID.
await alice.send(
  xml("message", { to: `${room}/Bob`, type: "chat", id: "js2" }, xml("body", {}, "psst"), xml("x", { xmlns: MUC_USER })),
);
const pm = await next(bob, "the private message");
if (!pm.is("message") || pm.attrs.type !== "chat" || pm.attrs.from !== `${room}/Alice` || pm.getChildText("body") !== "psst") {
  fail(`bob: expected private message from ${room}/Alice, got ${pm}`);
}
console.log("private message ok");

// 6. disco#info on the room.
const info = (await discoInfo(b)).getChild("query");
const identities = info.getChildren("identity");
if (!identities.some((i) => i.attrs.category === "conference" && i.attrs.type === "text")) {
  fail(`room identity ${info}`);
}
if (!info.getChildren("feature").some((f) => f.attrs.var === MUC)) fail(`room features ${info}`);
console.log("disco ok");

// 7. Bob leaves: his own unavailable presence with 110, and Alice sees
// him go.
await bob.send(xml("presence", { to: `${room}/Bob`, type: "unavailable" }));
const bobGone = await next(bob, "bob's own unavailable presence");
if (!bobGone.is("presence") || bobGone.attrs.type !== "unavailable" || bobGone.attrs.from !== `${room}/Bob`) {
  fail(`bob: expected own unavailable presence, got ${bobGone}`);
}
if (!statusCodes(bobGone).includes("110")) fail(`bob's unavailable presence lacks status 110: ${bobGone}`);
const bobLeft = await next(alice, "bob's unavailable presence");
if (!bobLeft.is("presence") || bobLeft.attrs.type !== "unavailable" || bobLeft.attrs.from !== `${room}/Bob`) {
  fail(`alice: expected unavailable presence from ${room}/Bob, got ${bobLeft}`);
}
console.log("leave ok");

// 8. Alice destroys the room; she is told as the last occupant, and the
// room is gone from discovery.
await a.request(
  xml("iq", { type: "set", to: room }, xml("query", { xmlns: MUC_OWNER }, xml("destroy", {}, xml("reason", {}, "done")))),
  TIMEOUT,
);
const destroyed = await next(alice, "alice's removal on destroy");
if (
  !destroyed.is("presence") ||
  destroyed.attrs.type !== "unavailable" ||
  destroyed.attrs.from !== `${room}/Alice` ||
  !destroyed.getChild("x", MUC_USER)?.getChild("destroy")
) {
  fail(`alice: expected unavailable presence with <destroy/>, got ${destroyed}`);
}
await expectError(discoInfo(a), "item-not-found");
console.log("destroy ok");

if (alice.queue.length || bob.queue.length) {
  fail(`unexpected stanzas from the room: ${[...alice.queue, ...bob.queue].join(" ")}`);
}

await alice.stop();
await bob.stop();
console.log("interop ok");
process.exit(0);
