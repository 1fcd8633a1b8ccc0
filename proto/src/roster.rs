//! The roster subscription model of RFC 6121 §3 and Appendix A: the
//! subscription attribute, the pending flags and pre-approval, and the
//! state machine that presence stanzas of type "subscribe", "subscribed",
//! "unsubscribe" and "unsubscribed" drive, as pure functions.
//!
//! The tables of RFC 6121 Appendix A.2 (outbound) and A.3 (inbound) decide
//! the new state and whether the stanza is routed or delivered; §3.4 adds
//! pre-approval. States are always seen from the user, the owner of the
//! roster; the contact's server runs the same machine on its own roster.

/// The `subscription` attribute of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Subscription> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// The subscription made of the two directions.
    pub fn from_directions(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }

    /// This subscription with the "to" direction set or cleared.
    pub fn with_to(self, to: bool) -> Subscription {
        Subscription::from_directions(to, self.has_from())
    }

    /// This subscription with the "from" direction set or cleared.
    pub fn with_from(self, from: bool) -> Subscription {
        Subscription::from_directions(self.has_to(), from)
    }
}

/// The full subscription state that the server keeps for one contact in one
/// user's roster: the nine states of RFC 6121 Appendix A plus pre-approval
/// (§3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubState {
    pub sub: Subscription,
    /// The user asked to subscribe to the contact and waits ("Pending Out",
    /// shown as `ask='subscribe'`).
    pub pending_out: bool,
    /// The contact asked to subscribe to the user and waits ("Pending In").
    pub pending_in: bool,
    /// The user pre-approved a subscription request from the contact.
    pub approved: bool,
}

/// The four subscription-related presence types (RFC 6121 §4.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAction {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl SubAction {
    /// The action for a presence `type` attribute, if it is one of the four.
    pub fn parse(presence_type: &str) -> Option<SubAction> {
        Some(match presence_type {
            "subscribe" => SubAction::Subscribe,
            "subscribed" => SubAction::Subscribed,
            "unsubscribe" => SubAction::Unsubscribe,
            "unsubscribed" => SubAction::Unsubscribed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubAction::Subscribe => "subscribe",
            SubAction::Subscribed => "subscribed",
            SubAction::Unsubscribe => "unsubscribe",
            SubAction::Unsubscribed => "unsubscribed",
        }
    }
}

/// Outcome of processing one subscription stanza against one side's state.
///
/// The caller persists `new` when it differs from the old state (a change
/// of `pending_in` alone is stored but not pushed), and acts on the flags:
/// deliver or route the stanza, send the roster push, send the auto-replies
/// from the user's bare JID to the contact's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub new: SubState,
    /// The state changed in a way that must be pushed to the user's
    /// interested resources (roster push, RFC 6121 §3): the `subscription`,
    /// `ask` or `approved` attribute of the item changed. "Pending In" is
    /// not part of a roster item, so changing only that pushes nothing.
    pub push: bool,
    /// The stanza must be routed on to the contact (outbound) / delivered to
    /// the user (inbound): the "ROUTE?" / "DELIVER?" column of RFC 6121
    /// Appendix A, MUST as true and SHOULD NOT / MUST NOT as false.
    pub forward: bool,
    /// The server answers the contact with presence of type "subscribed" on
    /// the user's behalf: an inbound "subscribe" when the contact already
    /// has a subscription from the user (A.3.1 note [2], §3.1.3 rule 2) or
    /// the user pre-approved it (§3.4.2).
    pub auto_reply_subscribed: bool,
    /// The server answers the contact with presence of type "unsubscribed"
    /// on the user's behalf: an inbound "unsubscribe" that changed the state
    /// (A.3.2 note [1]).
    pub auto_reply_unsubscribed: bool,
}

impl Transition {
    fn new(old: SubState, new: SubState, forward: bool) -> Transition {
        Transition {
            new,
            push: old.item_view() != new.item_view(),
            forward,
            auto_reply_subscribed: false,
            auto_reply_unsubscribed: false,
        }
    }
}

impl SubState {
    /// This state reduced to one of the nine states of RFC 6121 A.1:
    /// "Pending Out" cannot go with a subscription to the contact, "Pending
    /// In" cannot go with a subscription from the contact, and a
    /// pre-approval is moot once the contact has a subscription. The
    /// transitions only ever produce such states; this cleans up anything
    /// else that was stored.
    pub fn normalized(self) -> SubState {
        SubState {
            sub: self.sub,
            pending_out: self.pending_out && !self.sub.has_to(),
            pending_in: self.pending_in && !self.sub.has_from(),
            approved: self.approved && !self.sub.has_from(),
        }
    }

    /// The state's name in RFC 6121 A.1, e.g. "None + Pending Out+In".
    pub fn name(self) -> &'static str {
        let s = self.normalized();
        match (s.sub, s.pending_out, s.pending_in) {
            (Subscription::None, false, false) => "None",
            (Subscription::None, true, false) => "None + Pending Out",
            (Subscription::None, false, true) => "None + Pending In",
            (Subscription::None, true, true) => "None + Pending Out+In",
            (Subscription::To, _, false) => "To",
            (Subscription::To, _, true) => "To + Pending In",
            (Subscription::From, false, _) => "From",
            (Subscription::From, true, _) => "From + Pending Out",
            (Subscription::Both, _, _) => "Both",
        }
    }

    /// The roster item's `ask` attribute (RFC 6121 §2.1.2.2).
    pub fn ask(self) -> Option<&'static str> {
        self.normalized().pending_out.then_some("subscribe")
    }

    /// What a roster item shows of this state: `subscription`, `ask` and
    /// `approved` (RFC 6121 §2.1.2).
    fn item_view(self) -> (Subscription, bool, bool) {
        (self.sub, self.pending_out, self.approved)
    }

    /// The user (owner of this roster) SENDS `action` to the contact
    /// (RFC 6121 A.2 "outbound", with pre-approval from §3.4.2).
    pub fn outbound(self, action: SubAction) -> Transition {
        let old = self.normalized();
        let mut new = old;
        let forward = match action {
            // A.2.1 (Table 2): always routed; "Pending Out" unless the user
            // is already subscribed to the contact.
            SubAction::Subscribe => {
                new.pending_out = !old.sub.has_to();
                true
            }
            // A.2.2 (Table 3): always routed; the subscription to the
            // contact and any request for it end.
            SubAction::Unsubscribe => {
                new.sub = old.sub.with_to(false);
                new.pending_out = false;
                true
            }
            // A.2.3 (Table 4) and §3.4.2.
            SubAction::Subscribed => {
                if old.sub.has_from() {
                    // "From", "From + Pending Out", "Both": MUST NOT route,
                    // no state change (§3.4.2 rule 1: silently ignored).
                    false
                } else if old.pending_in {
                    // Approval of the contact's request: MUST route.
                    new.sub = old.sub.with_from(true);
                    new.pending_in = false;
                    new.approved = false;
                    true
                } else {
                    // "None", "None + Pending Out", "To": pre-approval,
                    // MUST NOT route (§3.4.2 rules 3 and 4).
                    new.approved = true;
                    false
                }
            }
            // A.2.4 (Table 5) and §3.2.2.
            SubAction::Unsubscribed => {
                // Cancelling a subscription or denying a request also ends
                // any pre-approval; in "None", "None + Pending Out" and "To"
                // that is all that happens (note [1], §3.2.2 rule 2).
                new.approved = false;
                if old.sub.has_from() || old.pending_in {
                    new.sub = old.sub.with_from(false);
                    new.pending_in = false;
                    true
                } else {
                    false
                }
            }
        };
        Transition::new(old, new, forward)
    }

    /// The user's server RECEIVES `action` from the contact (RFC 6121 A.3
    /// "inbound", with pre-approval from §3.4.2).
    pub fn inbound(self, action: SubAction) -> Transition {
        let old = self.normalized();
        let mut new = old;
        let mut auto_reply_subscribed = false;
        let mut auto_reply_unsubscribed = false;
        let forward = match action {
            // A.3.1 (Table 6), §3.1.3 and §3.4.2.
            SubAction::Subscribe => {
                if old.sub.has_from() {
                    // "From", "From + Pending Out", "Both": SHOULD NOT
                    // deliver, SHOULD auto-reply "subscribed" (note [2]).
                    auto_reply_subscribed = true;
                    false
                } else if old.approved {
                    // Pre-approved: MUST NOT deliver, MUST auto-reply, and
                    // the state becomes "From" rather than "None + Pending
                    // In" (note [1]).
                    new.sub = old.sub.with_from(true);
                    new.pending_in = false;
                    new.approved = false;
                    auto_reply_subscribed = true;
                    false
                } else if old.pending_in {
                    // A request is already pending: SHOULD NOT deliver.
                    false
                } else {
                    new.pending_in = true;
                    true
                }
            }
            // A.3.2 (Table 7): delivered, and answered with "unsubscribed"
            // (note [1]), exactly when the state changes.
            SubAction::Unsubscribe => {
                if old.sub.has_from() || old.pending_in {
                    new.sub = old.sub.with_from(false);
                    new.pending_in = false;
                    new.approved = false;
                    auto_reply_unsubscribed = true;
                    true
                } else {
                    false
                }
            }
            // A.3.3 (Table 8) and §3.1.6: only an approval the user asked
            // for counts; anything else is silently ignored.
            SubAction::Subscribed => {
                if old.pending_out {
                    new.sub = old.sub.with_to(true);
                    new.pending_out = false;
                    true
                } else {
                    false
                }
            }
            // A.3.4 (Table 9) and §3.2.3: a denial of the user's request or
            // a cancellation of the user's subscription.
            SubAction::Unsubscribed => {
                if old.pending_out || old.sub.has_to() {
                    new.sub = old.sub.with_to(false);
                    new.pending_out = false;
                    true
                } else {
                    false
                }
            }
        };
        Transition {
            auto_reply_subscribed,
            auto_reply_unsubscribed,
            ..Transition::new(old, new, forward)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn st(sub: Subscription, pending_out: bool, pending_in: bool) -> SubState {
        SubState {
            sub,
            pending_out,
            pending_in,
            approved: false,
        }
    }

    const NONE: SubState = st(Subscription::None, false, false);
    const NONE_PO: SubState = st(Subscription::None, true, false);
    const NONE_PI: SubState = st(Subscription::None, false, true);
    const NONE_PO_PI: SubState = st(Subscription::None, true, true);
    const TO: SubState = st(Subscription::To, false, false);
    const TO_PI: SubState = st(Subscription::To, false, true);
    const FROM: SubState = st(Subscription::From, false, false);
    const FROM_PO: SubState = st(Subscription::From, true, false);
    const BOTH: SubState = st(Subscription::Both, false, false);

    const fn approved(s: SubState) -> SubState {
        SubState {
            approved: true,
            ..s
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Reply {
        No,
        Subscribed,
        Unsubscribed,
    }

    /// One row of an RFC 6121 Appendix A table: existing state, new state,
    /// ROUTE?/DELIVER? (MUST = true), and the derived push and auto-reply.
    struct Row {
        name: &'static str,
        old: SubState,
        new: SubState,
        forward: bool,
        push: bool,
        reply: Reply,
    }

    const fn row(
        name: &'static str,
        old: SubState,
        new: SubState,
        forward: bool,
        push: bool,
    ) -> Row {
        Row {
            name,
            old,
            new,
            forward,
            push,
            reply: Reply::No,
        }
    }

    const fn replying(r: Row, reply: Reply) -> Row {
        Row { reply, ..r }
    }

    fn check(dir: &str, action: SubAction, rows: &[Row], f: fn(SubState, SubAction) -> Transition) {
        assert_eq!(rows.len(), 9, "{dir} {action:?}: one row per state");
        for r in rows {
            assert_eq!(r.old.name(), r.name, "row label");
            let t = f(r.old, action);
            let what = format!("{dir} {} in {:?}", action.as_str(), r.name);
            assert_eq!(t.new, r.new, "{what}: new state");
            assert_eq!(t.new.name(), r.new.name(), "{what}: new state name");
            assert_eq!(t.forward, r.forward, "{what}: forward");
            assert_eq!(t.push, r.push, "{what}: push");
            assert_eq!(
                t.auto_reply_subscribed,
                r.reply == Reply::Subscribed,
                "{what}: auto-reply subscribed"
            );
            assert_eq!(
                t.auto_reply_unsubscribed,
                r.reply == Reply::Unsubscribed,
                "{what}: auto-reply unsubscribed"
            );
        }
    }

    /// RFC 6121 A.2.1, Table 2: outbound "subscribe".
    #[test]
    fn outbound_subscribe() {
        check(
            "outbound",
            SubAction::Subscribe,
            &[
                row("None", NONE, NONE_PO, true, true),
                row("None + Pending Out", NONE_PO, NONE_PO, true, false),
                row("None + Pending In", NONE_PI, NONE_PO_PI, true, true),
                row("None + Pending Out+In", NONE_PO_PI, NONE_PO_PI, true, false),
                row("To", TO, TO, true, false),
                row("To + Pending In", TO_PI, TO_PI, true, false),
                row("From", FROM, FROM_PO, true, true),
                row("From + Pending Out", FROM_PO, FROM_PO, true, false),
                row("Both", BOTH, BOTH, true, false),
            ],
            SubState::outbound,
        );
    }

    /// RFC 6121 A.2.2, Table 3: outbound "unsubscribe".
    #[test]
    fn outbound_unsubscribe() {
        check(
            "outbound",
            SubAction::Unsubscribe,
            &[
                row("None", NONE, NONE, true, false),
                row("None + Pending Out", NONE_PO, NONE, true, true),
                row("None + Pending In", NONE_PI, NONE_PI, true, false),
                row("None + Pending Out+In", NONE_PO_PI, NONE_PI, true, true),
                row("To", TO, NONE, true, true),
                row("To + Pending In", TO_PI, NONE_PI, true, true),
                row("From", FROM, FROM, true, false),
                row("From + Pending Out", FROM_PO, FROM, true, true),
                row("Both", BOTH, FROM, true, true),
            ],
            SubState::outbound,
        );
    }

    /// RFC 6121 A.2.3, Table 4: outbound "subscribed" ("pre-approval" rows
    /// per §3.4.2 rule 3: approved flag set and pushed, not routed).
    #[test]
    fn outbound_subscribed() {
        check(
            "outbound",
            SubAction::Subscribed,
            &[
                row("None", NONE, approved(NONE), false, true),
                row(
                    "None + Pending Out",
                    NONE_PO,
                    approved(NONE_PO),
                    false,
                    true,
                ),
                row("None + Pending In", NONE_PI, FROM, true, true),
                row("None + Pending Out+In", NONE_PO_PI, FROM_PO, true, true),
                row("To", TO, approved(TO), false, true),
                row("To + Pending In", TO_PI, BOTH, true, true),
                row("From", FROM, FROM, false, false),
                row("From + Pending Out", FROM_PO, FROM_PO, false, false),
                row("Both", BOTH, BOTH, false, false),
            ],
            SubState::outbound,
        );
    }

    /// RFC 6121 A.2.4, Table 5: outbound "unsubscribed". Denying a pending
    /// request changes no roster attribute, hence no push.
    #[test]
    fn outbound_unsubscribed() {
        check(
            "outbound",
            SubAction::Unsubscribed,
            &[
                row("None", NONE, NONE, false, false),
                row("None + Pending Out", NONE_PO, NONE_PO, false, false),
                row("None + Pending In", NONE_PI, NONE, true, false),
                row("None + Pending Out+In", NONE_PO_PI, NONE_PO, true, false),
                row("To", TO, TO, false, false),
                row("To + Pending In", TO_PI, TO, true, false),
                row("From", FROM, NONE, true, true),
                row("From + Pending Out", FROM_PO, NONE_PO, true, true),
                row("Both", BOTH, TO, true, true),
            ],
            SubState::outbound,
        );
    }

    /// RFC 6121 A.3.1, Table 6: inbound "subscribe". "Pending In" is not
    /// shown in the roster, so noting a request pushes nothing.
    #[test]
    fn inbound_subscribe() {
        use Reply::Subscribed as S;
        check(
            "inbound",
            SubAction::Subscribe,
            &[
                row("None", NONE, NONE_PI, true, false),
                row("None + Pending Out", NONE_PO, NONE_PO_PI, true, false),
                row("None + Pending In", NONE_PI, NONE_PI, false, false),
                row(
                    "None + Pending Out+In",
                    NONE_PO_PI,
                    NONE_PO_PI,
                    false,
                    false,
                ),
                row("To", TO, TO_PI, true, false),
                row("To + Pending In", TO_PI, TO_PI, false, false),
                replying(row("From", FROM, FROM, false, false), S),
                replying(row("From + Pending Out", FROM_PO, FROM_PO, false, false), S),
                replying(row("Both", BOTH, BOTH, false, false), S),
            ],
            SubState::inbound,
        );
    }

    /// RFC 6121 A.3.2, Table 7: inbound "unsubscribe".
    #[test]
    fn inbound_unsubscribe() {
        use Reply::Unsubscribed as U;
        check(
            "inbound",
            SubAction::Unsubscribe,
            &[
                row("None", NONE, NONE, false, false),
                row("None + Pending Out", NONE_PO, NONE_PO, false, false),
                replying(row("None + Pending In", NONE_PI, NONE, true, false), U),
                replying(
                    row("None + Pending Out+In", NONE_PO_PI, NONE_PO, true, false),
                    U,
                ),
                row("To", TO, TO, false, false),
                replying(row("To + Pending In", TO_PI, TO, true, false), U),
                replying(row("From", FROM, NONE, true, true), U),
                replying(row("From + Pending Out", FROM_PO, NONE_PO, true, true), U),
                replying(row("Both", BOTH, TO, true, true), U),
            ],
            SubState::inbound,
        );
    }

    /// RFC 6121 A.3.3, Table 8: inbound "subscribed".
    #[test]
    fn inbound_subscribed() {
        check(
            "inbound",
            SubAction::Subscribed,
            &[
                row("None", NONE, NONE, false, false),
                row("None + Pending Out", NONE_PO, TO, true, true),
                row("None + Pending In", NONE_PI, NONE_PI, false, false),
                row("None + Pending Out+In", NONE_PO_PI, TO_PI, true, true),
                row("To", TO, TO, false, false),
                row("To + Pending In", TO_PI, TO_PI, false, false),
                row("From", FROM, FROM, false, false),
                row("From + Pending Out", FROM_PO, BOTH, true, true),
                row("Both", BOTH, BOTH, false, false),
            ],
            SubState::inbound,
        );
    }

    /// RFC 6121 A.3.4, Table 9: inbound "unsubscribed".
    #[test]
    fn inbound_unsubscribed() {
        check(
            "inbound",
            SubAction::Unsubscribed,
            &[
                row("None", NONE, NONE, false, false),
                row("None + Pending Out", NONE_PO, NONE, true, true),
                row("None + Pending In", NONE_PI, NONE_PI, false, false),
                row("None + Pending Out+In", NONE_PO_PI, NONE_PI, true, true),
                row("To", TO, NONE, true, true),
                row("To + Pending In", TO_PI, NONE_PI, true, true),
                row("From", FROM, FROM, false, false),
                row("From + Pending Out", FROM_PO, FROM, true, true),
                row("Both", BOTH, FROM, true, true),
            ],
            SubState::inbound,
        );
    }

    /// §3.4.2 rule 3 and A.3.1 note [1]: a pre-approved request is accepted
    /// by the server, not delivered, and answered with "subscribed".
    #[test]
    fn pre_approval_auto_accepts_the_next_request() {
        use Reply::Subscribed as S;
        check(
            "inbound",
            SubAction::Subscribe,
            &[
                replying(row("None", approved(NONE), FROM, false, true), S),
                replying(
                    row(
                        "None + Pending Out",
                        approved(NONE_PO),
                        FROM_PO,
                        false,
                        true,
                    ),
                    S,
                ),
                replying(row("To", approved(TO), BOTH, false, true), S),
                // The other six states cannot hold a pre-approval; a stored
                // one is dropped (From, Both) or honoured (Pending In).
                replying(
                    row("None + Pending In", approved(NONE_PI), FROM, false, true),
                    S,
                ),
                replying(
                    row(
                        "None + Pending Out+In",
                        approved(NONE_PO_PI),
                        FROM_PO,
                        false,
                        true,
                    ),
                    S,
                ),
                replying(
                    row("To + Pending In", approved(TO_PI), BOTH, false, true),
                    S,
                ),
                replying(row("From", approved(FROM), FROM, false, false), S),
                replying(
                    row(
                        "From + Pending Out",
                        approved(FROM_PO),
                        FROM_PO,
                        false,
                        false,
                    ),
                    S,
                ),
                replying(row("Both", approved(BOTH), BOTH, false, false), S),
            ],
            SubState::inbound,
        );
    }

    #[test]
    fn pre_approval_is_idempotent_and_cancelled_by_unsubscribed() {
        // Approving twice: no new push, still not routed.
        let t = approved(NONE).outbound(SubAction::Subscribed);
        assert_eq!(t.new, approved(NONE));
        assert!(!t.push && !t.forward);
        // §3.2.2 rule 2: "unsubscribed" removes the pre-approval, pushes the
        // item without 'approved', and is not routed.
        for s in [NONE, NONE_PO, TO] {
            let t = approved(s).outbound(SubAction::Unsubscribed);
            assert_eq!(t.new, s, "{}", s.name());
            assert!(t.push && !t.forward, "{}", s.name());
        }
        // The pre-approval survives the user's own subscription traffic and
        // the contact's answers to it.
        let t = approved(NONE).outbound(SubAction::Subscribe);
        assert_eq!(t.new, approved(NONE_PO));
        let t = approved(NONE_PO).inbound(SubAction::Subscribed);
        assert_eq!(t.new, approved(TO));
        let t = approved(TO).inbound(SubAction::Unsubscribed);
        assert_eq!(t.new, approved(NONE));
        let t = approved(TO).outbound(SubAction::Unsubscribe);
        assert_eq!(t.new, approved(NONE));
    }

    #[test]
    fn losing_from_clears_the_approval() {
        // Normalisation drops a stored approval next to From, so no path
        // out of From keeps one.
        let t = approved(BOTH).inbound(SubAction::Unsubscribe);
        assert_eq!(t.new, TO);
        let t = approved(FROM).outbound(SubAction::Unsubscribed);
        assert_eq!(t.new, NONE);
        // Accepting a request the ordinary way also consumes it.
        let t = approved(NONE_PI).outbound(SubAction::Subscribed);
        assert_eq!(t.new, FROM);
    }

    #[test]
    fn a_mutual_subscription_between_two_rosters() {
        // Romeo subscribes to Juliet, she accepts and subscribes back.
        let (mut romeo, mut juliet) = (SubState::default(), SubState::default());
        let t = romeo.outbound(SubAction::Subscribe);
        romeo = t.new;
        assert!(t.forward);
        let t = juliet.inbound(SubAction::Subscribe);
        juliet = t.new;
        assert!(t.forward);
        let t = juliet.outbound(SubAction::Subscribed);
        juliet = t.new;
        assert!(t.forward);
        romeo = romeo.inbound(SubAction::Subscribed).new;
        juliet = juliet.outbound(SubAction::Subscribe).new;
        romeo = romeo.inbound(SubAction::Subscribe).new;
        romeo = romeo.outbound(SubAction::Subscribed).new;
        juliet = juliet.inbound(SubAction::Subscribed).new;
        assert_eq!((romeo, juliet), (BOTH, BOTH));
    }

    #[test]
    fn inconsistent_stored_states_are_normalised() {
        let odd = SubState {
            sub: Subscription::Both,
            pending_out: true,
            pending_in: true,
            approved: true,
        };
        assert_eq!(odd.normalized(), BOTH);
        assert_eq!(odd.name(), "Both");
        assert_eq!(odd.ask(), None);
        assert_eq!(NONE_PO_PI.ask(), Some("subscribe"));
        let t = odd.inbound(SubAction::Subscribed);
        assert_eq!(t.new, BOTH);
        assert!(!t.push && !t.forward);
    }

    #[test]
    fn actions_round_trip_through_presence_types() {
        for a in [
            SubAction::Subscribe,
            SubAction::Subscribed,
            SubAction::Unsubscribe,
            SubAction::Unsubscribed,
        ] {
            assert_eq!(SubAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(SubAction::parse("unavailable"), None);
        assert_eq!(SubAction::parse("Subscribe"), None);
        for s in [
            Subscription::None,
            Subscription::To,
            Subscription::From,
            Subscription::Both,
        ] {
            assert_eq!(Subscription::parse(s.as_str()), Some(s));
            assert_eq!(Subscription::from_directions(s.has_to(), s.has_from()), s);
        }
    }
}
