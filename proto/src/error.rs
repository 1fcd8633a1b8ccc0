//! Stream error conditions (RFC 6120 §4.9.3) and stanza error conditions
//! (RFC 6120 §8.3.3), and how they are written.

use crate::element::escape;
use crate::ns;

/// RFC 6120 §4.9.3 stream error conditions used by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamCondition {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RemoteConnectionFailed,
    ResetThisStream,
    ResourceConstraint,
    RestrictedXml,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamCondition {
    /// Every condition, in the order of RFC 6120 §4.9.3.
    pub const ALL: [StreamCondition; 22] = {
        use StreamCondition::*;
        [
            BadFormat,
            BadNamespacePrefix,
            Conflict,
            ConnectionTimeout,
            HostUnknown,
            ImproperAddressing,
            InternalServerError,
            InvalidFrom,
            InvalidNamespace,
            InvalidXml,
            NotAuthorized,
            NotWellFormed,
            PolicyViolation,
            RemoteConnectionFailed,
            ResetThisStream,
            ResourceConstraint,
            RestrictedXml,
            SystemShutdown,
            UndefinedCondition,
            UnsupportedEncoding,
            UnsupportedStanzaType,
            UnsupportedVersion,
        ]
    };

    /// The condition with this element name.
    pub fn from_name(name: &str) -> Option<StreamCondition> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn name(self) -> &'static str {
        use StreamCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            ResetThisStream => "reset",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }

    /// `<stream:error>` with an optional human-readable text, followed by the
    /// closing `</stream:stream>`.
    pub fn to_bytes(self, text: Option<&str>) -> Vec<u8> {
        stream_error(
            &format!("<{} xmlns='{}'/>", self.name(), ns::STREAMS_ERR),
            text,
        )
    }
}

/// RFC 6120 §4.9.3.19 `<see-other-host/>`: the stream error that sends
/// the client to `host` (a host name or IP address, IPv6 in brackets,
/// with an optional port), and the stream's end.
pub fn see_other_host_bytes(host: &str, text: Option<&str>) -> Vec<u8> {
    stream_error(
        &format!(
            "<see-other-host xmlns='{}'>{}</see-other-host>",
            ns::STREAMS_ERR,
            escape(host)
        ),
        text,
    )
}

/// `<stream:error>` with the condition element `condition` and an
/// optional text, then the stream's end.
fn stream_error(condition: &str, text: Option<&str>) -> Vec<u8> {
    let mut s = format!("<stream:error>{condition}");
    if let Some(t) = text {
        s.push_str(&format!(
            "<text xmlns='{}' xml:lang='en'>{}</text>",
            ns::STREAMS_ERR,
            escape(t)
        ));
    }
    s.push_str("</stream:error></stream:stream>");
    s.into_bytes()
}

/// The `type` of a stanza error (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// RFC 6120 §8.3.3 stanza error conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaCondition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl StanzaCondition {
    pub fn name(self) -> &'static str {
        use StanzaCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            Redirect => "redirect",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives for the condition.
    pub fn default_type(self) -> ErrorType {
        use StanzaCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            InternalServerError | RecipientUnavailable | RemoteServerTimeout
            | ResourceConstraint => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }
}

/// A stanza error to be returned to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub condition: StanzaCondition,
    pub kind: ErrorType,
    pub text: Option<String>,
    /// An application-specific condition (RFC 6120 §8.3.2): the element
    /// name, its namespace, and its attributes (XEP-0060's
    /// `<unsupported feature='...'/>`, say).
    pub app: Option<AppCondition>,
}

/// An application-specific error condition element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCondition {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<(String, String)>,
}

impl StanzaError {
    pub fn new(condition: StanzaCondition) -> StanzaError {
        StanzaError {
            condition,
            kind: condition.default_type(),
            text: None,
            app: None,
        }
    }

    pub fn with_text(condition: StanzaCondition, text: impl Into<String>) -> StanzaError {
        StanzaError {
            condition,
            kind: condition.default_type(),
            text: Some(text.into()),
            app: None,
        }
    }

    /// This error with an application-specific condition `<name xmlns=ns/>`.
    pub fn with_app(mut self, name: &str, ns: &str) -> StanzaError {
        self.app = Some(AppCondition {
            name: name.to_owned(),
            ns: ns.to_owned(),
            attrs: Vec::new(),
        });
        self
    }

    /// An attribute on the application-specific condition.
    pub fn with_app_attr(mut self, name: &str, value: &str) -> StanzaError {
        if let Some(a) = &mut self.app {
            a.attrs.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// This error with another type (RFC 6120 §8.3.2).
    pub fn with_type(mut self, kind: ErrorType) -> StanzaError {
        self.kind = kind;
        self
    }

    /// The `<error/>` child element.
    pub fn to_xml(&self) -> String {
        let mut s = format!(
            "<error type='{}'><{} xmlns='{}'/>",
            self.kind.as_str(),
            self.condition.name(),
            ns::STANZAS_ERR
        );
        if let Some(t) = &self.text {
            s.push_str(&format!(
                "<text xmlns='{}' xml:lang='en'>{}</text>",
                ns::STANZAS_ERR,
                escape(t)
            ));
        }
        if let Some(a) = &self.app {
            s.push_str(&format!("<{} xmlns='{}'", a.name, escape(&a.ns)));
            for (k, v) in &a.attrs {
                s.push_str(&format!(" {k}='{}'", escape(v)));
            }
            s.push_str("/>");
        }
        s.push_str("</error>");
        s
    }
}
