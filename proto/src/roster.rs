//! The roster subscription model of RFC 6121 §3 and Appendix A: the
//! subscription attribute, the pending flags and pre-approval.

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
