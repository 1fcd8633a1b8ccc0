//! XEP-0077 In-Band Registration: new accounts before authentication (off
//! by default), password changes and account removal after it.

use proto::error::{StanzaCondition, StanzaError};
use proto::stanza::Stanza;
use proto::{BareJid, Element, Jid, ns};

use super::Ctx;
use super::handler::{IqHandler, Target, TargetKind};
use crate::accounts::AccountError;
use crate::session::Outbound;

pub(crate) struct Register {
    pub registration: crate::config::Switch,
    pub allow_password_change: bool,
}

fn form(instructions: &str) -> Element {
    Element::new("query", ns::REGISTER)
        .with_child(Element::new("instructions", ns::REGISTER).with_text(instructions))
        .with_child(Element::new("username", ns::REGISTER))
        .with_child(Element::new("password", ns::REGISTER))
}

fn account_error(e: &AccountError) -> StanzaError {
    match e {
        AccountError::Exists(_) => {
            StanzaError::with_text(StanzaCondition::Conflict, "the username is taken")
        }
        AccountError::BadPassword(t) => {
            StanzaError::with_text(StanzaCondition::NotAcceptable, t.clone())
        }
        AccountError::NotAUser(_) => {
            StanzaError::with_text(StanzaCondition::JidMalformed, "invalid username")
        }
        AccountError::UnknownDomain(_) => StanzaError::new(StanzaCondition::ItemNotFound),
        AccountError::NoSuchUser(_) => StanzaError::new(StanzaCondition::ItemNotFound),
        AccountError::Storage(_) | AccountError::NotCommitted(_) => {
            tracing::warn!(error = %e, "a registration was not made");
            StanzaError::new(StanzaCondition::InternalServerError)
        }
    }
}

/// Registration before authentication (XEP-0077 §3.1), answered by the
/// edge. `Ok(Some(form))` for a get, `Ok(None)` for a successful set.
pub async fn unauthenticated(
    core: &crate::Core,
    enabled: bool,
    domain: &str,
    iq_type: &str,
    payload: &Element,
) -> Result<Option<Element>, StanzaError> {
    if !enabled {
        return Err(StanzaError::with_text(
            StanzaCondition::ServiceUnavailable,
            "in-band registration is disabled",
        ));
    }
    if iq_type == "get" {
        return Ok(Some(form("Choose a username and password.")));
    }
    let username = payload
        .child("username", ns::REGISTER)
        .map(Element::text)
        .unwrap_or_default();
    let password = payload
        .child("password", ns::REGISTER)
        .map(Element::text)
        .unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return Err(StanzaError::with_text(
            StanzaCondition::NotAcceptable,
            "username and password are required",
        ));
    }
    let user = BareJid::new(Some(&username), domain)
        .map_err(|_| StanzaError::with_text(StanzaCondition::JidMalformed, "invalid username"))?;
    core.add_account(&user, &password)
        .await
        .map_err(|e| account_error(&e))?;
    tracing::info!(user = %user, "account registered in-band");
    Ok(None)
}

impl IqHandler for Register {
    fn namespace(&self) -> &'static str {
        ns::REGISTER
    }
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::Server, TargetKind::OwnAccount]
    }
    fn features(&self, t: TargetKind) -> &'static [&'static str] {
        // XEP-0077: the server for registration, the account for changing
        // its password or cancelling; listed only where one of them is on.
        let served = match t {
            TargetKind::Server => self.registration.get() || self.allow_password_change,
            TargetKind::OwnAccount => self.registration.get() || self.allow_password_change,
            _ => false,
        };
        if served { &[ns::REGISTER] } else { &[] }
    }
    fn handle(&self, ctx: &mut Ctx<'_>, iq: &Stanza, p: &Element, _t: &Target) {
        let Some(Jid::Full(from)) = iq.from.clone() else {
            return;
        };
        let user = from.bare();
        if iq.stype() == "get" {
            let q = Element::new("query", ns::REGISTER)
                .with_child(Element::new("registered", ns::REGISTER))
                .with_child(
                    Element::new("username", ns::REGISTER)
                        .with_text(user.local().unwrap_or_default()),
                )
                .with_child(Element::new("password", ns::REGISTER));
            return ctx.iq_result(iq, Some(&q));
        }
        if p.child("remove", ns::REGISTER).is_some() {
            if !self.registration.get() {
                return ctx.bounce(
                    iq,
                    StanzaCondition::NotAllowed,
                    Some("account removal is disabled"),
                );
            }
            // XEP-0077 §3.2: remove the account, then (once that is
            // committed) answer and end every session.
            let sh = ctx.env;
            if let Err(e) = sh.accounts.plan_delete(&mut ctx.writes, &user) {
                tracing::error!(user = %user, error = %e, "account removal failed");
                return ctx.bounce_with(iq, &account_error(&e));
            }
            super::subscription::cancel_all(ctx, &user);
            let result = proto::stanza::iq_result(
                iq.id.as_deref().unwrap_or(""),
                None,
                &Jid::Full(from.clone()),
                None,
            );
            if let Some(u) = ctx.st.remove_user(&user) {
                for s in u.sessions {
                    if s.jid == from {
                        ctx.send(&s.sink, Outbound::Stanza(result.clone()));
                    }
                    ctx.send(
                        &s.sink,
                        Outbound::Close(
                            proto::error::StreamCondition::NotAuthorized,
                            Some("account removed".into()),
                        ),
                    );
                }
            }
            return;
        }
        if !self.allow_password_change {
            return ctx.bounce(
                iq,
                StanzaCondition::NotAllowed,
                Some("password changes are disabled"),
            );
        }
        let username = p
            .child("username", ns::REGISTER)
            .map(Element::text)
            .unwrap_or_default();
        let password = p
            .child("password", ns::REGISTER)
            .map(Element::text)
            .unwrap_or_default();
        let same_user = BareJid::new(Some(&username), user.domain()).is_ok_and(|b| b == user);
        if !same_user || password.is_empty() {
            return ctx.bounce(
                iq,
                StanzaCondition::BadRequest,
                Some("give your own username and the new password"),
            );
        }
        let sh = ctx.env;
        match sh
            .accounts
            .plan_set_password(&mut ctx.writes, &user, &password)
        {
            Ok(()) => ctx.iq_result(iq, None),
            Err(e) => ctx.bounce_with(iq, &account_error(&e)),
        }
    }
}
