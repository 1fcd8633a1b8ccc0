//! Subscription options (XEP-0060 §6.3, the `pubsub#subscribe_options`
//! form): whether a subscription is delivered notifications. Stored as
//! JSON in the subscription's record; missing keys take defaults.

use proto::form::{Field, Form, FormKind};
use proto::ns;
use serde::{Deserialize, Serialize};

use super::config::ConfigError;

/// A subscription's options (XEP-0060 §6.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubOptions {
    /// Whether notifications are delivered (`pubsub#deliver`).
    pub deliver: bool,
}

impl Default for SubOptions {
    fn default() -> SubOptions {
        SubOptions { deliver: true }
    }
}

impl SubOptions {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> SubOptions {
        serde_json::from_slice(b).unwrap_or_default()
    }

    pub fn to_form(&self, kind: FormKind) -> Form {
        Form::new(kind)
            .with_form_type(ns::PUBSUB_SUBSCRIBE_OPTIONS)
            .with_field(
                Field::boolean("pubsub#deliver", self.deliver)
                    .with_label("Whether notifications are delivered"),
            )
    }

    pub fn apply(&mut self, form: &Form) -> Result<(), ConfigError> {
        form.expect_form_type(ns::PUBSUB_SUBSCRIBE_OPTIONS)?;
        for (var, _) in form.submitted_values() {
            match var {
                "pubsub#deliver" => self.deliver = form.boolean(var)?.unwrap_or(true),
                other => {
                    return Err(ConfigError::value(other, "not a subscription option here"));
                }
            }
        }
        Ok(())
    }
}
