//! Node configuration (XEP-0060 §8.2, the `pubsub#node_config` form):
//! typed values, their defaults for a service node and for a PEP node
//! (XEP-0163 §4), the form that shows them, the submitted forms that
//! change them, and the meta-data form (§5.4). Stored as JSON in the
//! node's record: unknown or missing keys take defaults, so the record
//! survives adding options. Subscription options are `sub_options.rs`.

use proto::form::{Field, Form, FormError, FormKind, FormOption};
use proto::{BareJid, ns};
use serde::{Deserialize, Serialize};

/// Who may subscribe and retrieve items (XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    Open,
    Presence,
    Roster,
    Authorize,
    Whitelist,
}

/// Who may publish (XEP-0060 §16.4.3 `pubsub#publish_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishModel {
    Publishers,
    Subscribers,
    Open,
}

/// When the last item goes to a new subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

/// The message type of notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationType {
    Headline,
    Normal,
}

/// A node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    pub title: String,
    pub description: String,
    pub access_model: AccessModel,
    pub roster_groups_allowed: Vec<String>,
    pub publish_model: PublishModel,
    /// Items kept; `None` is "max" (the service's limit).
    pub max_items: Option<u64>,
    pub persist_items: bool,
    pub deliver_payloads: bool,
    pub deliver_notifications: bool,
    pub notify_retract: bool,
    pub notify_delete: bool,
    pub notify_config: bool,
    pub notify_sub: bool,
    pub send_last_published_item: SendLast,
    pub notification_type: NotificationType,
    /// Seconds after which an item expires; 0 never.
    pub item_expire: u64,
    /// Whether entities may subscribe at all.
    pub subscribe: bool,
    /// The payload namespace (`pubsub#type`), informative.
    pub payload_type: String,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            title: String::new(),
            description: String::new(),
            access_model: AccessModel::Open,
            roster_groups_allowed: Vec::new(),
            publish_model: PublishModel::Publishers,
            max_items: Some(10),
            persist_items: true,
            deliver_payloads: true,
            deliver_notifications: true,
            notify_retract: true,
            notify_delete: true,
            notify_config: false,
            notify_sub: false,
            send_last_published_item: SendLast::Never,
            notification_type: NotificationType::Headline,
            item_expire: 0,
            subscribe: true,
            payload_type: String::new(),
        }
    }
}

const ACCESS: [&str; 5] = ["open", "presence", "roster", "authorize", "whitelist"];
const PEP_ACCESS: [&str; 4] = ["open", "presence", "roster", "whitelist"];
const PUBLISH: [&str; 3] = ["publishers", "subscribers", "open"];
const SEND_LAST: [&str; 3] = ["never", "on_sub", "on_sub_and_presence"];
const NOTIFICATION: [&str; 2] = ["headline", "normal"];

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        ACCESS[self as usize]
    }
    fn parse(s: &str) -> Option<AccessModel> {
        use AccessModel::*;
        [Open, Presence, Roster, Authorize, Whitelist]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

impl PublishModel {
    pub fn as_str(self) -> &'static str {
        PUBLISH[self as usize]
    }
    fn parse(s: &str) -> Option<PublishModel> {
        use PublishModel::*;
        [Publishers, Subscribers, Open]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

impl SendLast {
    pub fn as_str(self) -> &'static str {
        SEND_LAST[self as usize]
    }
    fn parse(s: &str) -> Option<SendLast> {
        use SendLast::*;
        [Never, OnSub, OnSubAndPresence]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

impl NotificationType {
    pub fn as_str(self) -> &'static str {
        NOTIFICATION[self as usize]
    }
}

fn options(values: &[&str]) -> Vec<FormOption> {
    values.iter().map(|v| FormOption::new(*v)).collect()
}

/// Why a submitted configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Form(#[from] FormError),
    #[error("{var}: {reason}")]
    Value { var: String, reason: String },
}

impl ConfigError {
    pub(super) fn value(var: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            var: var.to_string(),
            reason: reason.into(),
        }
    }
}

impl NodeConfig {
    /// The defaults of a node of a PubSub service, with the service's
    /// default item count.
    pub fn service_default(max_items: u64) -> NodeConfig {
        NodeConfig {
            max_items: Some(max_items),
            ..NodeConfig::default()
        }
    }

    /// The defaults of a PEP node (XEP-0163 §4): presence access, the last
    /// item to new subscribers and contacts coming online.
    pub fn pep_default() -> NodeConfig {
        NodeConfig {
            access_model: AccessModel::Presence,
            max_items: Some(1),
            send_last_published_item: SendLast::OnSubAndPresence,
            ..NodeConfig::default()
        }
    }

    /// The stored form of the configuration.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored configuration; a damaged one reads as the defaults.
    pub fn decode(b: &[u8]) -> NodeConfig {
        serde_json::from_slice(b).unwrap_or_default()
    }

    /// The items the node keeps, under the service's limit `cap`.
    pub fn keep(&self, cap: u64) -> u64 {
        self.max_items.unwrap_or(cap).min(cap)
    }

    /// The configuration form (XEP-0060 §8.2.1). A PEP node's offers the
    /// access models a PEP node can have (no authorize, `pep.rs`).
    pub fn to_form(&self, kind: FormKind, pep: bool) -> Form {
        let access: &[&str] = if pep { &PEP_ACCESS } else { &ACCESS };
        let max_items = match self.max_items {
            Some(n) => n.to_string(),
            None => "max".to_string(),
        };
        Form::new(kind)
            .with_form_type(ns::PUBSUB_NODE_CONFIG)
            .with_field(Field::text_single("pubsub#title", &self.title).with_label("Title"))
            .with_field(
                Field::text_single("pubsub#description", &self.description)
                    .with_label("Description"),
            )
            .with_field(
                Field::list_single(
                    "pubsub#access_model",
                    self.access_model.as_str(),
                    options(access),
                )
                .with_label("Who may subscribe and retrieve items"),
            )
            .with_field(
                Field::list_multi(
                    "pubsub#roster_groups_allowed",
                    self.roster_groups_allowed.clone(),
                    Vec::new(),
                )
                .with_label("Roster groups allowed to subscribe"),
            )
            .with_field(
                Field::list_single(
                    "pubsub#publish_model",
                    self.publish_model.as_str(),
                    options(&PUBLISH),
                )
                .with_label("Who may publish"),
            )
            .with_field(
                Field::text_single("pubsub#max_items", max_items)
                    .with_label("Items to keep (a number or max)"),
            )
            .with_field(
                Field::boolean("pubsub#persist_items", self.persist_items).with_label("Keep items"),
            )
            .with_field(
                Field::boolean("pubsub#deliver_payloads", self.deliver_payloads)
                    .with_label("Payloads in notifications"),
            )
            .with_field(
                Field::boolean("pubsub#deliver_notifications", self.deliver_notifications)
                    .with_label("Send notifications"),
            )
            .with_field(
                Field::boolean("pubsub#notify_retract", self.notify_retract)
                    .with_label("Notify when items are retracted"),
            )
            .with_field(
                Field::boolean("pubsub#notify_delete", self.notify_delete)
                    .with_label("Notify when the node is deleted"),
            )
            .with_field(
                Field::boolean("pubsub#notify_config", self.notify_config)
                    .with_label("Notify when the configuration changes"),
            )
            .with_field(
                Field::boolean("pubsub#notify_sub", self.notify_sub)
                    .with_label("Notify owners of subscriptions"),
            )
            .with_field(
                Field::list_single(
                    "pubsub#send_last_published_item",
                    self.send_last_published_item.as_str(),
                    options(&SEND_LAST),
                )
                .with_label("When to send the last item"),
            )
            .with_field(
                Field::list_single(
                    "pubsub#notification_type",
                    self.notification_type.as_str(),
                    options(&NOTIFICATION),
                )
                .with_label("Message type of notifications"),
            )
            .with_field(
                Field::text_single("pubsub#item_expire", self.item_expire.to_string())
                    .with_label("Seconds after which items expire (0: never)"),
            )
            .with_field(
                Field::boolean("pubsub#subscribe", self.subscribe)
                    .with_label("Whether to allow subscriptions"),
            )
            .with_field(
                Field::text_single("pubsub#type", &self.payload_type).with_label("Payload type"),
            )
    }

    /// Apply a submitted configuration form (or publish-options used as a
    /// configuration on auto-create); fields not in the form keep their
    /// value. `cap` is the service's item limit.
    pub fn apply(&mut self, form: &Form, cap: u64) -> Result<(), ConfigError> {
        for (var, values) in form.submitted_values() {
            // A submitted form names no field types; the option's own
            // type says how many values it takes (XEP-0004 §3.3).
            if values.len() > 1 && !multi_valued(var) {
                return Err(FormError::TooManyValues(var.to_string()).into());
            }
            let first = values.first().map(String::as_str).unwrap_or("");
            let boolean =
                || -> Result<bool, ConfigError> { Ok(form.boolean(var)?.unwrap_or(false)) };
            match var {
                "pubsub#title" => self.title = first.to_string(),
                "pubsub#description" => self.description = first.to_string(),
                "pubsub#access_model" => {
                    self.access_model = AccessModel::parse(first)
                        .ok_or_else(|| ConfigError::value(var, "unknown access model"))?;
                }
                "pubsub#roster_groups_allowed" => self.roster_groups_allowed = values.to_vec(),
                "pubsub#publish_model" => {
                    self.publish_model = PublishModel::parse(first)
                        .ok_or_else(|| ConfigError::value(var, "unknown publish model"))?;
                }
                "pubsub#max_items" => {
                    self.max_items = if first == "max" {
                        None
                    } else {
                        let n: u64 = first
                            .trim()
                            .parse()
                            .map_err(|_| ConfigError::value(var, "not a number or max"))?;
                        if n > cap {
                            return Err(ConfigError::value(
                                var,
                                format!("at most {cap} items per node"),
                            ));
                        }
                        Some(n)
                    };
                }
                "pubsub#persist_items" => self.persist_items = boolean()?,
                "pubsub#deliver_payloads" => self.deliver_payloads = boolean()?,
                "pubsub#deliver_notifications" => self.deliver_notifications = boolean()?,
                "pubsub#notify_retract" => self.notify_retract = boolean()?,
                "pubsub#notify_delete" => self.notify_delete = boolean()?,
                "pubsub#notify_config" => self.notify_config = boolean()?,
                "pubsub#notify_sub" => self.notify_sub = boolean()?,
                "pubsub#subscribe" => self.subscribe = boolean()?,
                "pubsub#send_last_published_item" => {
                    self.send_last_published_item = SendLast::parse(first)
                        .ok_or_else(|| ConfigError::value(var, "unknown value"))?;
                }
                "pubsub#notification_type" => {
                    self.notification_type = match first {
                        "headline" => NotificationType::Headline,
                        "normal" => NotificationType::Normal,
                        _ => return Err(ConfigError::value(var, "headline or normal")),
                    };
                }
                "pubsub#item_expire" => {
                    // `max` (the config-node-max feature of XEP-0060): the most
                    // this service allows, which is no expiry.
                    self.item_expire = match first.trim() {
                        "max" => 0,
                        n => n
                            .parse()
                            .map_err(|_| ConfigError::value(var, "not a number of seconds"))?,
                    };
                }
                "pubsub#type" => self.payload_type = first.to_string(),
                // Options this service does not have are refused rather
                // than silently ignored: the submitter would believe them
                // in force.
                other => {
                    return Err(ConfigError::value(other, "not a configuration option here"));
                }
            }
        }
        Ok(())
    }

    /// The value of a `pubsub#...` option as a publish-options
    /// precondition compares it (XEP-0060 §7.1.5).
    pub fn value_of(&self, var: &str) -> Option<Vec<String>> {
        let b = |v: bool| vec![if v { "1" } else { "0" }.to_string()];
        Some(match var {
            "pubsub#title" => vec![self.title.clone()],
            "pubsub#description" => vec![self.description.clone()],
            "pubsub#access_model" => vec![self.access_model.as_str().to_string()],
            "pubsub#roster_groups_allowed" => self.roster_groups_allowed.clone(),
            "pubsub#publish_model" => vec![self.publish_model.as_str().to_string()],
            "pubsub#max_items" => vec![match self.max_items {
                Some(n) => n.to_string(),
                None => "max".to_string(),
            }],
            "pubsub#persist_items" => b(self.persist_items),
            "pubsub#deliver_payloads" => b(self.deliver_payloads),
            "pubsub#deliver_notifications" => b(self.deliver_notifications),
            "pubsub#notify_retract" => b(self.notify_retract),
            "pubsub#notify_delete" => b(self.notify_delete),
            "pubsub#notify_config" => b(self.notify_config),
            "pubsub#notify_sub" => b(self.notify_sub),
            "pubsub#subscribe" => b(self.subscribe),
            "pubsub#send_last_published_item" => {
                vec![self.send_last_published_item.as_str().to_string()]
            }
            "pubsub#notification_type" => vec![self.notification_type.as_str().to_string()],
            "pubsub#item_expire" => vec![self.item_expire.to_string()],
            "pubsub#type" => vec![self.payload_type.clone()],
            _ => return None,
        })
    }
}

/// Whether a `pubsub#...` option takes several values (list-multi); all
/// others are boolean, list-single or text-single, which take one
/// (XEP-0004 §3.3), a second one being a bad request.
pub fn multi_valued(var: &str) -> bool {
    var == "pubsub#roster_groups_allowed"
}

/// Whether two option values match as a precondition: booleans in any of
/// their four spellings, everything else exactly.
pub fn same_value(var: &str, want: &[String], have: &[String]) -> bool {
    let norm = |v: &String| match v.as_str() {
        "true" | "1" if var != "pubsub#title" => "1".to_string(),
        "false" | "0" if var != "pubsub#title" => "0".to_string(),
        other => other.to_string(),
    };
    let mut a: Vec<String> = want.iter().map(norm).collect();
    let mut b: Vec<String> = have.iter().map(norm).collect();
    a.sort();
    b.sort();
    a == b
}

/// The meta-data form of a node (XEP-0060 §5.4).
pub fn meta_data(cfg: &NodeConfig, owners: &[BareJid], created: &str, subscribers: usize) -> Form {
    Form::new(FormKind::Result)
        .with_form_type(ns::PUBSUB_META_DATA)
        .with_field(Field::text_single("pubsub#title", &cfg.title))
        .with_field(Field::text_single("pubsub#description", &cfg.description))
        .with_field(Field::jid_multi(
            "pubsub#owner",
            owners.iter().map(|o| proto::Jid::Bare(o.clone())),
        ))
        .with_field(Field::text_single("pubsub#creation_date", created))
        .with_field(Field::list_single(
            "pubsub#access_model",
            cfg.access_model.as_str(),
            Vec::new(),
        ))
        .with_field(Field::list_single(
            "pubsub#publish_model",
            cfg.publish_model.as_str(),
            Vec::new(),
        ))
        .with_field(Field::text_single(
            "pubsub#num_subscribers",
            subscribers.to_string(),
        ))
        .with_field(Field::text_single("pubsub#type", &cfg.payload_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submitted_form_changes_only_what_it_names() {
        let mut c = NodeConfig::service_default(10);
        let form = Form::new(FormKind::Submit)
            .with_form_type(ns::PUBSUB_NODE_CONFIG)
            .with_field(Field::list_single("pubsub#access_model", "whitelist", []))
            .with_field(Field::text_single("pubsub#max_items", "max"))
            .with_field(Field::text_single("pubsub#item_expire", "max"))
            .with_field(Field::boolean("pubsub#notify_retract", false));
        c.item_expire = 60;
        c.apply(&form, 100).expect("valid");
        assert_eq!(c.item_expire, 0, "max: no expiry");
        assert_eq!(c.access_model, AccessModel::Whitelist);
        assert_eq!(c.max_items, None);
        assert_eq!(c.keep(100), 100);
        assert!(!c.notify_retract);
        assert!(c.deliver_payloads);
        let back = NodeConfig::decode(&c.encode());
        assert_eq!(back, c);
    }

    #[test]
    fn bad_values_are_refused_and_named() {
        for (var, value) in [
            ("pubsub#access_model", "everyone"),
            ("pubsub#max_items", "-1"),
            ("pubsub#max_items", "1000"),
            ("pubsub#notify_retract", "maybe"),
            ("pubsub#no_such_option", "1"),
        ] {
            let mut c = NodeConfig::default();
            let form = Form::new(FormKind::Submit)
                .with_form_type(ns::PUBSUB_NODE_CONFIG)
                .with_field(Field::text_single(var, value));
            assert!(c.apply(&form, 100).is_err(), "{var}={value}");
        }
    }

    #[test]
    fn a_second_value_for_a_single_valued_option_is_a_bad_request() {
        for var in [
            "pubsub#title",
            "pubsub#access_model",
            "pubsub#persist_items",
        ] {
            let mut c = NodeConfig::default();
            let field = Field {
                values: vec!["open".into(), "whitelist".into()],
                ..Field::text_single(var, "")
            };
            let form = Form::new(FormKind::Submit)
                .with_form_type(ns::PUBSUB_NODE_CONFIG)
                .with_field(field);
            assert_eq!(
                c.apply(&form, 100),
                Err(ConfigError::Form(FormError::TooManyValues(var.into()))),
                "{var}"
            );
            assert_eq!(c, NodeConfig::default());
        }
        let mut c = NodeConfig::default();
        let form = Form::new(FormKind::Submit).with_field(Field::list_multi(
            "pubsub#roster_groups_allowed",
            vec!["a".to_string(), "b".to_string()],
            Vec::new(),
        ));
        c.apply(&form, 100).expect("list-multi");
        assert_eq!(c.roster_groups_allowed, ["a", "b"]);
    }

    #[test]
    fn the_form_round_trips() {
        let c = NodeConfig::pep_default();
        let form = c.to_form(FormKind::Form, true);
        let back = Form::from_element(&form.to_element()).expect("parses");
        let mut d = NodeConfig::default();
        let submit = Form {
            kind: FormKind::Submit,
            ..back
        };
        d.apply(&submit, 100).expect("applies");
        assert_eq!(d, c);
    }

    #[test]
    fn preconditions_compare_booleans_in_any_spelling() {
        let c = NodeConfig::default();
        let have = c.value_of("pubsub#persist_items").expect("known");
        assert!(same_value("pubsub#persist_items", &["true".into()], &have));
        assert!(!same_value(
            "pubsub#persist_items",
            &["false".into()],
            &have
        ));
    }
}
