//! XEP-0004 Data Forms, typed: the `<x xmlns='jabber:x:data'/>` element
//! with its type (§3.1), fields (§3.2, §3.3 in `field`), and the
//! `<reported/>` and `<item/>` table of result forms (§3.4); the FORM_TYPE
//! convention of XEP-0068; and the checks of typed values that the
//! form-processing entity owes (§4). Used by the XEPs that carry forms:
//! PubSub configuration and options (XEP-0060), MUC configuration and
//! requests (XEP-0045), in-band registration (XEP-0077).
//!
//! Parsing is lenient about unknown children and foreign namespaces (XMPP
//! is extensible) and strict where XEP-0004 says a form is malformed. Works
//! on `Element` only; no I/O, no other crate of ours.

mod field;

use std::collections::HashSet;

pub use field::{Field, FieldKind, FormOption};

use crate::element::Element;
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::{Jid, JidError};
use crate::ns;

/// The var of the hidden field naming the form's namespace (XEP-0068).
pub const FORM_TYPE: &str = "FORM_TYPE";

/// The `type` of a form (XEP-0004 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormKind {
    Form,
    Submit,
    Cancel,
    Result,
}

impl FormKind {
    pub const ALL: [FormKind; 4] = [
        FormKind::Form,
        FormKind::Submit,
        FormKind::Cancel,
        FormKind::Result,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FormKind::Form => "form",
            FormKind::Submit => "submit",
            FormKind::Cancel => "cancel",
            FormKind::Result => "result",
        }
    }

    pub fn parse(s: &str) -> Option<FormKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a form was refused. Malformed forms are `bad-request`; values that
/// fail their type (§4, data validation) are `not-acceptable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("not a jabber:x:data element")]
    NotDataForm,
    #[error("data form without a type")]
    MissingType,
    #[error("unknown data form type {0:?}")]
    UnknownType(String),
    #[error("field {var:?} has unknown type {kind:?}")]
    UnknownFieldType { var: String, kind: String },
    #[error("field without var that is not fixed")]
    MissingVar,
    #[error("field {0:?} appears twice")]
    DuplicateVar(String),
    #[error("field {0:?} has more than one value")]
    TooManyValues(String),
    #[error("a value of field {0:?} holds an element, not only text")]
    ValueNotText(String),
    #[error("an option of field {0:?} does not have exactly one value")]
    BadOption(String),
    #[error("field {0:?} has options but is not a list")]
    OptionsNotAllowed(String),
    #[error("more than one reported element")]
    DuplicateReported,
    #[error("an item lacks the reported field {0:?}")]
    ItemMissingField(String),
    #[error("FORM_TYPE is {} where {expected} is expected", .found.as_deref().map_or("missing".to_string(), |f| format!("{f:?}")))]
    WrongFormType {
        expected: String,
        found: Option<String>,
    },
    #[error("field {0:?} is not a boolean")]
    NotBoolean(String),
    #[error("field {0:?} is not an integer")]
    NotInteger(String),
    #[error("field {var:?} holds an invalid jid: {source}")]
    BadJid { var: String, source: JidError },
    #[error("field {0:?} has a value that is not one of its options")]
    NotAnOption(String),
}

impl FormError {
    /// The stanza error to answer with: `not-acceptable` for a value that
    /// fails its type (XEP-0004 §4), `bad-request` for a malformed form.
    pub fn to_stanza_error(&self) -> StanzaError {
        let condition = match self {
            FormError::NotBoolean(_)
            | FormError::NotInteger(_)
            | FormError::BadJid { .. }
            | FormError::NotAnOption(_) => StanzaCondition::NotAcceptable,
            _ => StanzaCondition::BadRequest,
        };
        StanzaError::with_text(condition, self.to_string())
    }
}

/// A data form. `reported` and `items` are the table of a result form
/// (§3.4): `reported` the header, each item a row of fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub kind: FormKind,
    pub title: Option<String>,
    pub instructions: Vec<String>,
    pub fields: Vec<Field>,
    pub reported: Option<Vec<Field>>,
    pub items: Vec<Vec<Field>>,
}

impl Form {
    pub fn new(kind: FormKind) -> Form {
        Form {
            kind,
            title: None,
            instructions: Vec::new(),
            fields: Vec::new(),
            reported: None,
            items: Vec::new(),
        }
    }

    /// Builder: set the hidden FORM_TYPE field, first, replacing any other.
    pub fn with_form_type(mut self, namespace: &str) -> Form {
        self.fields.retain(|f| f.var.as_deref() != Some(FORM_TYPE));
        self.fields.insert(0, Field::hidden(FORM_TYPE, namespace));
        self
    }

    pub fn with_title(mut self, title: impl Into<String>) -> Form {
        self.title = Some(title.into());
        self
    }

    /// Builder: add a paragraph of instructions.
    pub fn with_instructions(mut self, text: impl Into<String>) -> Form {
        self.instructions.push(text.into());
        self
    }

    pub fn with_field(mut self, field: Field) -> Form {
        self.fields.push(field);
        self
    }

    pub fn with_reported(mut self, fields: Vec<Field>) -> Form {
        self.reported = Some(fields);
        self
    }

    pub fn with_item(mut self, fields: Vec<Field>) -> Form {
        self.items.push(fields);
        self
    }

    /// Parse an `<x xmlns='jabber:x:data'/>`.
    pub fn from_element(el: &Element) -> Result<Form, FormError> {
        if el.name != "x" || el.ns != ns::DATA_FORMS {
            return Err(FormError::NotDataForm);
        }
        let kind = match el.attr("type") {
            None => return Err(FormError::MissingType),
            Some(t) => FormKind::parse(t).ok_or_else(|| FormError::UnknownType(t.to_string()))?,
        };
        // In a form to fill in, a field without a type or of an unknown
        // type is text-single (§3.2, §3.3); in the other kinds an unknown
        // type is an error.
        let lenient = kind == FormKind::Form;
        let mut form = Form::new(kind);
        for c in el.elements().filter(|c| c.ns == ns::DATA_FORMS) {
            match c.name.as_str() {
                "title" if form.title.is_none() => form.title = Some(c.text()),
                "instructions" => form.instructions.push(c.text()),
                "field" => form.fields.push(Field::from_element(c, lenient)?),
                "reported" if form.reported.is_some() => return Err(FormError::DuplicateReported),
                "reported" => form.reported = Some(parse_fields(c, lenient)?),
                "item" => form.items.push(parse_fields(c, lenient)?),
                _ => {}
            }
        }
        unique_vars(&form.fields)?;
        // XEP-0068: one FORM_TYPE, whatever type the field was given.
        if form.field(FORM_TYPE).is_some_and(|f| f.values.len() > 1) {
            return Err(FormError::TooManyValues(FORM_TYPE.to_string()));
        }
        let reported = form.reported.as_deref().unwrap_or_default();
        unique_vars(reported)?;
        for item in &form.items {
            let vars = unique_vars(item)?;
            if let Some(missing) = reported
                .iter()
                .filter_map(|f| f.var.as_deref())
                .find(|v| !vars.contains(v))
            {
                return Err(FormError::ItemMissingField(missing.to_string()));
            }
        }
        Ok(form)
    }

    /// The `<x xmlns='jabber:x:data'/>` element; `from_element` reads it
    /// back to an equal form when the form is well-formed.
    pub fn to_element(&self) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", self.kind.as_str());
        if let Some(t) = &self.title {
            x.push(field::text_element("title", t));
        }
        for i in &self.instructions {
            x.push(field::text_element("instructions", i));
        }
        for f in &self.fields {
            x.push(f.to_element());
        }
        if let Some(r) = &self.reported {
            x.push(fields_element("reported", r));
        }
        for item in &self.items {
            x.push(fields_element("item", item));
        }
        x
    }

    /// The first field with this var.
    pub fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var.as_deref() == Some(var))
    }

    /// The namespace in the hidden FORM_TYPE field (XEP-0068); in a submit
    /// form that field may come without a type.
    pub fn form_type(&self) -> Option<&str> {
        self.field(FORM_TYPE)
            .filter(|f| matches!(f.kind, None | Some(FieldKind::Hidden)))
            .and_then(Field::value)
    }

    /// Check that the FORM_TYPE is `expected`; a submitted form with another
    /// FORM_TYPE, or none, is a bad request.
    pub fn expect_form_type(&self, expected: &str) -> Result<(), FormError> {
        match self.form_type() {
            Some(t) if t == expected => Ok(()),
            found => Err(FormError::WrongFormType {
                expected: expected.to_string(),
                found: found.map(str::to_string),
            }),
        }
    }

    /// The (var, values) of every data field, in order: FORM_TYPE and fixed
    /// fields are skipped.
    pub fn submitted_values(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.fields.iter().filter_map(|f| match (&f.var, f.kind) {
            (_, Some(FieldKind::Fixed)) => None,
            (Some(var), _) if var != FORM_TYPE => Some((var.as_str(), f.values.as_slice())),
            _ => None,
        })
    }

    /// The first value of the field.
    pub fn value(&self, var: &str) -> Option<&str> {
        self.field(var).and_then(Field::value)
    }

    /// All values of the field; none if it is absent.
    pub fn values(&self, var: &str) -> &[String] {
        self.field(var).map(|f| f.values.as_slice()).unwrap_or(&[])
    }

    /// The field as a boolean; `Ok(None)` if absent or empty.
    pub fn boolean(&self, var: &str) -> Result<Option<bool>, FormError> {
        Ok(self
            .field(var)
            .map(Field::bool_value)
            .transpose()?
            .flatten())
    }

    pub fn integer(&self, var: &str) -> Result<Option<i64>, FormError> {
        Ok(self
            .field(var)
            .map(Field::integer_value)
            .transpose()?
            .flatten())
    }

    pub fn jid(&self, var: &str) -> Result<Option<Jid>, FormError> {
        Ok(self.field(var).map(Field::jid_value).transpose()?.flatten())
    }

    /// The field's JIDs, duplicates dropped; empty if absent.
    pub fn jids(&self, var: &str) -> Result<Vec<Jid>, FormError> {
        self.field(var).map_or(Ok(Vec::new()), Field::jid_values)
    }

    /// The field's single value, which must be one of `allowed`.
    pub fn list_single(&self, var: &str, allowed: &[&str]) -> Result<Option<&str>, FormError> {
        Ok(self
            .field(var)
            .map(|f| f.option_value(allowed))
            .transpose()?
            .flatten())
    }

    /// The field's values, each of which must be one of `allowed`.
    pub fn list_multi(&self, var: &str, allowed: &[&str]) -> Result<&[String], FormError> {
        self.field(var)
            .map_or(Ok(&[]), |f| f.option_values(allowed))
    }
}

fn parse_fields(el: &Element, lenient: bool) -> Result<Vec<Field>, FormError> {
    el.elements()
        .filter(|c| c.name == "field" && c.ns == ns::DATA_FORMS)
        .map(|c| Field::from_element(c, lenient))
        .collect()
}

fn fields_element(name: &str, fields: &[Field]) -> Element {
    let mut el = Element::new(name, ns::DATA_FORMS);
    for f in fields {
        el.push(f.to_element());
    }
    el
}

/// The vars of these fields, which must be unique (§3.2).
fn unique_vars(fields: &[Field]) -> Result<HashSet<&str>, FormError> {
    let mut seen = HashSet::with_capacity(fields.len());
    for var in fields.iter().filter_map(|f| f.var.as_deref()) {
        if !seen.insert(var) {
            return Err(FormError::DuplicateVar(var.to_string()));
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jid::BareJid;

    fn parse(xml: &str) -> Result<Form, FormError> {
        let el = Element::parse(xml.as_bytes(), ns::CLIENT, &[]).expect("xml");
        Form::from_element(&el)
    }

    fn reparse(form: &Form) -> Result<Form, FormError> {
        parse(&form.to_element().to_xml(ns::CLIENT))
    }

    fn bare(s: &str) -> BareJid {
        BareJid::parse(s).expect("jid")
    }

    /// A form to fill in, in the shape of the XEP-0004 configuration
    /// example: FORM_TYPE, section headers, one field of most types.
    const RELAY_FORM: &str = "<x xmlns='jabber:x:data' type='form'>
      <title>Relay setup</title>
      <instructions>Describe the relay.</instructions>
      <instructions>Then choose its channels.</instructions>
      <field type='hidden' var='FORM_TYPE'><value>urn:example:relay</value></field>
      <field type='fixed'><value>Part A: naming</value></field>
      <field type='text-single' label='Relay name' var='name'/>
      <field type='text-multi' label='About the relay' var='about'/>
      <field type='boolean' label='Listed?' var='listed'><required/></field>
      <field type='text-private' label='Access secret' var='secret'/>
      <field type='fixed'><value>Part B: channels</value></field>
      <field type='list-multi' label='Channels' var='channels'>
        <option label='Weather'><value>weather</value></option>
        <option label='Traffic'><value>traffic</value></option>
        <option label='Sport'><value>sport</value></option>
        <value>weather</value>
        <value>sport</value>
      </field>
      <field type='list-single' label='Queue length' var='queue'>
        <value>25</value>
        <option label='Short'><value>5</value></option>
        <option label='Medium'><value>25</value></option>
        <option label='Unbounded'><value>none</value></option>
      </field>
      <field type='jid-multi' label='Operators' var='operators'>
        <desc>Who may restart it</desc>
      </field>
      <field type='jid-single' label='Owner' var='owner'/>
    </x>";

    /// The same form submitted; `owner` comes without a type, as submit
    /// forms may.
    const RELAY_SUBMIT: &str = "<x xmlns='jabber:x:data' type='submit'>
      <field type='hidden' var='FORM_TYPE'><value>urn:example:relay</value></field>
      <field type='text-single' var='name'><value>Night relay</value></field>
      <field type='text-multi' var='about'>
        <value>Carries the late bulletins</value>
        <value>until dawn.</value>
      </field>
      <field type='boolean' var='listed'><value>true</value></field>
      <field type='text-private' var='secret'><value>s3cr3t</value></field>
      <field type='list-multi' var='channels'><value>traffic</value></field>
      <field type='list-single' var='queue'><value>5</value></field>
      <field type='jid-multi' var='operators'>
        <value>ann@relay.example</value>
        <value>bob@relay.example/desk</value>
        <value>ann@relay.example</value>
      </field>
      <field var='owner'><value>ann@relay.example</value></field>
    </x>";

    const CHANNELS: &[&str] = &["weather", "traffic", "sport"];

    #[test]
    fn form_to_fill_in_parses_to_its_structure() {
        let f = parse(RELAY_FORM).expect("form");
        assert_eq!(f.kind, FormKind::Form);
        assert_eq!(f.title.as_deref(), Some("Relay setup"));
        assert_eq!(
            f.instructions,
            ["Describe the relay.", "Then choose its channels."]
        );
        assert_eq!(f.form_type(), Some("urn:example:relay"));
        assert_eq!(f.fields.len(), 11);
        let kinds: Vec<_> = f.fields.iter().map(|x| x.kind).collect();
        use FieldKind::*;
        assert_eq!(
            kinds,
            [
                Hidden,
                Fixed,
                TextSingle,
                TextMulti,
                Boolean,
                TextPrivate,
                Fixed,
                ListMulti,
                ListSingle,
                JidMulti,
                JidSingle
            ]
            .map(Some)
        );
        assert_eq!(f.fields[1].var, None);
        assert_eq!(f.fields[1].value(), Some("Part A: naming"));
        let listed = f.field("listed").expect("listed");
        assert!(listed.required);
        assert_eq!(listed.label.as_deref(), Some("Listed?"));
        assert_eq!(f.boolean("listed"), Ok(None));
        assert_eq!(f.values("channels"), ["weather", "sport"]);
        let queue = f.field("queue").expect("queue");
        assert_eq!(queue.options.len(), 3);
        assert_eq!(queue.options[2], FormOption::labelled("Unbounded", "none"));
        assert_eq!(f.value("queue"), Some("25"));
        assert_eq!(
            f.field("operators").and_then(|x| x.desc.as_deref()),
            Some("Who may restart it")
        );
        assert_eq!(f.jids("operators"), Ok(Vec::new()));
        assert_eq!(f.jid("owner"), Ok(None));
        assert!(f.reported.is_none() && f.items.is_empty());
        assert_eq!(reparse(&f), Ok(f));
    }

    #[test]
    fn submitted_form_parses_to_typed_values() {
        let f = parse(RELAY_SUBMIT).expect("submit");
        assert_eq!(f.kind, FormKind::Submit);
        assert_eq!(f.expect_form_type("urn:example:relay"), Ok(()));
        assert_eq!(f.value("name"), Some("Night relay"));
        assert_eq!(
            f.values("about"),
            ["Carries the late bulletins", "until dawn."]
        );
        assert_eq!(f.boolean("listed"), Ok(Some(true)));
        assert_eq!(f.value("secret"), Some("s3cr3t"));
        assert_eq!(
            f.list_multi("channels", CHANNELS).map(<[String]>::to_vec),
            Ok(vec!["traffic".to_string()])
        );
        assert_eq!(f.list_single("queue", &["5", "25", "none"]), Ok(Some("5")));
        // Duplicate JIDs in a jid-multi are ignored (§3.3).
        let ops = f.jids("operators").expect("jids");
        let ops: Vec<&str> = ops.iter().map(Jid::as_str).collect();
        assert_eq!(ops, ["ann@relay.example", "bob@relay.example/desk"]);
        assert_eq!(
            f.jid("owner"),
            Ok(Some(Jid::from(bare("ann@relay.example"))))
        );
        let vars: Vec<&str> = f.submitted_values().map(|(v, _)| v).collect();
        assert_eq!(
            vars,
            [
                "name",
                "about",
                "listed",
                "secret",
                "channels",
                "queue",
                "operators",
                "owner"
            ]
        );
        assert_eq!(f.value("missing"), None);
        assert!(f.values("missing").is_empty());
        assert_eq!(f.boolean("missing"), Ok(None));
        assert_eq!(reparse(&f), Ok(f));
    }

    #[test]
    fn result_table_parses_reported_and_items() {
        let f = parse(
            "<x xmlns='jabber:x:data' type='result'>
              <title>Relays found</title>
              <reported>
                <field var='name' label='Name' type='text-single'/>
                <field var='owner' label='Owner' type='jid-single'/>
              </reported>
              <item>
                <field var='name'><value>Night relay</value></field>
                <field var='owner'><value>ann@relay.example</value></field>
              </item>
              <item>
                <field var='owner'><value/></field>
                <field var='name'><value>Day relay</value></field>
              </item>
            </x>",
        )
        .expect("result");
        assert_eq!(f.kind, FormKind::Result);
        let reported = f.reported.as_deref().expect("reported");
        assert_eq!(reported[1].kind, Some(FieldKind::JidSingle));
        assert_eq!(f.items.len(), 2);
        assert_eq!(f.items[1][0].value(), Some(""));
        assert_eq!(
            f.items[0][1].jid_value(),
            Ok(Some(Jid::from(bare("ann@relay.example"))))
        );
        assert_eq!(reparse(&f), Ok(f));
    }

    fn every_kind() -> Vec<Field> {
        let options = || {
            [
                FormOption::labelled("One", "1"),
                FormOption::new("2"),
                FormOption::labelled("", "3"),
            ]
        };
        vec![
            Field::hidden(FORM_TYPE, "urn:example:all"),
            Field::fixed("Section"),
            Field::boolean("b", true)
                .with_label("B")
                .with_required(true),
            Field::boolean("b0", false),
            Field::hidden("h", "x").with_value("y"),
            Field::jid_multi("jm", [bare("a@example.com"), bare("example.org")]),
            Field::jid_single("js", bare("a@example.com")).with_desc("d"),
            Field::list_multi("lm", ["1", "3"], options()),
            Field::list_single("ls", "2", options()),
            Field::text_multi("tm", ["line one", "", "line three"]),
            Field::text_private("tp", "secret"),
            Field::text_single("ts", "v"),
            Field::new("empty", FieldKind::JidSingle).with_label("No value yet"),
        ]
    }

    #[test]
    fn every_field_kind_round_trips_in_every_form_kind() {
        let fields = every_kind();
        let covered: HashSet<_> = fields.iter().filter_map(|f| f.kind).collect();
        assert_eq!(covered.len(), FieldKind::ALL.len());
        for kind in FormKind::ALL {
            let mut form = Form::new(kind)
                .with_title("All kinds")
                .with_instructions("Fill it in");
            form.fields = fields.clone();
            let form = form
                .with_reported(vec![
                    Field::new("ts", FieldKind::TextSingle).with_label("T"),
                ])
                .with_item(vec![Field::text_single("ts", "row 1")])
                .with_item(vec![Field {
                    kind: None,
                    ..Field::text_single("ts", "row 2")
                }]);
            assert_eq!(reparse(&form).as_ref(), Ok(&form), "{kind:?}");
        }
        let form = Form {
            fields,
            ..Form::new(FormKind::Submit)
        };
        assert_eq!(form.boolean("b"), Ok(Some(true)));
        assert_eq!(form.boolean("b0"), Ok(Some(false)));
        assert_eq!(form.jid("js"), Ok(Some(Jid::from(bare("a@example.com")))));
        assert_eq!(form.jids("jm").map(|j| j.len()), Ok(2));
        assert_eq!(form.jid("empty"), Ok(None));
    }

    #[test]
    fn empty_forms_round_trip() {
        for kind in FormKind::ALL {
            let form = Form::new(kind);
            assert_eq!(
                form.to_element().to_xml(ns::CLIENT),
                format!("<x xmlns='jabber:x:data' type='{}'/>", kind.as_str())
            );
            assert_eq!(reparse(&form), Ok(form));
        }
    }

    #[test]
    fn malformed_forms_are_bad_requests() {
        let x =
            |kind: &str, body: &str| format!("<x xmlns='jabber:x:data' type='{kind}'>{body}</x>");
        let mut cases = vec![
            (
                "<x xmlns='jabber:x:data'/>".to_string(),
                FormError::MissingType,
            ),
            (
                "<x xmlns='jabber:x:data' type='draft'/>".to_string(),
                FormError::UnknownType("draft".into()),
            ),
            (
                "<x xmlns='urn:example' type='submit'/>".to_string(),
                FormError::NotDataForm,
            ),
            (
                "<form xmlns='jabber:x:data' type='submit'/>".to_string(),
                FormError::NotDataForm,
            ),
            (
                x("submit", "<field><value>a</value></field>"),
                FormError::MissingVar,
            ),
            (
                x(
                    "submit",
                    "<field type='text-single'><value>a</value></field>",
                ),
                FormError::MissingVar,
            ),
            (x("form", "<field label='L'/>"), FormError::MissingVar),
            (
                x("result", "<reported><field type='boolean'/></reported>"),
                FormError::MissingVar,
            ),
            (
                x(
                    "submit",
                    "<field var='d' type='date'><value>x</value></field>",
                ),
                FormError::UnknownFieldType {
                    var: "d".into(),
                    kind: "date".into(),
                },
            ),
            (
                x(
                    "form",
                    "<field var='t'><value>1</value><value>2</value></field>",
                ),
                FormError::TooManyValues("t".into()),
            ),
            (
                x(
                    "submit",
                    "<field var='a'><value>1</value></field><field var='a'><value>2</value></field>",
                ),
                FormError::DuplicateVar("a".into()),
            ),
            (
                x("result", "<reported><field var='a'/></reported><reported/>"),
                FormError::DuplicateReported,
            ),
            (
                x(
                    "result",
                    "<reported><field var='a'/><field var='b'/></reported><item><field var='a'/></item>",
                ),
                FormError::ItemMissingField("b".into()),
            ),
            (
                x("result", "<item><field var='a'/><field var='a'/></item>"),
                FormError::DuplicateVar("a".into()),
            ),
            (
                x(
                    "submit",
                    "<field var='l' type='list-single'><option/></field>",
                ),
                FormError::BadOption("l".into()),
            ),
            (
                x(
                    "form",
                    "<field var='b' type='boolean'><option><value>1</value></option></field>",
                ),
                FormError::OptionsNotAllowed("b".into()),
            ),
        ];
        // Every single-valued type refuses a second value.
        for kind in FieldKind::ALL.into_iter().filter(|k| !k.is_multi()) {
            let field = format!(
                "<field var='v' type='{}'><value>1</value><value>0</value></field>",
                kind.as_str()
            );
            cases.push((x("submit", &field), FormError::TooManyValues("v".into())));
        }
        for (xml, want) in cases {
            let got = parse(&xml);
            assert_eq!(got.as_ref(), Err(&want), "{xml}");
            let err = want.to_stanza_error();
            assert_eq!(err.condition, StanzaCondition::BadRequest, "{xml}");
            assert_eq!(err.text.as_deref(), Some(want.to_string().as_str()));
        }
    }

    #[test]
    fn lenient_where_the_spec_allows() {
        // A fixed field needs no var; unknown children, foreign namespaces
        // and fields of other namespaces are ignored.
        let f = parse(
            "<x xmlns='jabber:x:data' type='submit'>
               <field type='fixed'><value>note</value></field>
               <field var='a'><value>1</value><value>2</value></field>
               <page xmlns='http://jabber.org/protocol/xdata-layout' label='p'/>
               <field xmlns='urn:example' var='a'/>
               <comment>ignored</comment>
             </x>",
        )
        .expect("submit");
        assert_eq!(f.fields.len(), 2);
        assert_eq!(f.values("a"), ["1", "2"]);
        // The typed getters still want one value.
        assert_eq!(f.boolean("a"), Err(FormError::TooManyValues("a".into())));
        // A form to fill in takes an unknown field type as text-single (§3.3).
        let f = parse(
            "<x xmlns='jabber:x:data' type='form'><field var='d' type='date'><value>x</value></field></x>",
        )
        .expect("form");
        assert_eq!(f.fields[0].kind, Some(FieldKind::TextSingle));
    }

    #[test]
    fn booleans_in_all_four_spellings() {
        let form = |v: &str| {
            Form::new(FormKind::Submit)
                .with_field(Field::new("b", FieldKind::Boolean).with_value(v))
        };
        for (v, want) in [("1", true), ("true", true), ("0", false), ("false", false)] {
            let f = reparse(&form(v)).expect("form");
            assert_eq!(f.boolean("b"), Ok(Some(want)), "{v}");
        }
        for v in [
            "", "yes", "no", "TRUE", "False", "2", "-1", " 1", "1 ", "on",
        ] {
            let f = reparse(&form(v)).expect("form");
            let err = f.boolean("b").expect_err(v);
            assert_eq!(err, FormError::NotBoolean("b".into()));
            assert_eq!(
                err.to_stanza_error().condition,
                StanzaCondition::NotAcceptable
            );
        }
        let empty = Form::new(FormKind::Submit).with_field(Field::new("b", FieldKind::Boolean));
        assert_eq!(empty.boolean("b"), Ok(None));
    }

    #[test]
    fn jid_multi_with_an_invalid_jid_is_an_error() {
        let f = parse(
            "<x xmlns='jabber:x:data' type='submit'><field var='j' type='jid-multi'>
               <value>ok@example.com</value><value>bad@@example.com</value></field>
               <field var='s' type='jid-single'><value>@example.com</value></field>
               <field var='e' type='jid-single'><value/></field></x>",
        )
        .expect("form");
        for (var, got) in [
            ("j", f.jids("j").map(|_| ())),
            ("s", f.jid("s").map(|_| ())),
            ("e", f.jid("e").map(|_| ())),
        ] {
            let err = got.expect_err(var);
            assert!(matches!(&err, FormError::BadJid { var: v, .. } if v == var));
            assert_eq!(
                err.to_stanza_error().condition,
                StanzaCondition::NotAcceptable
            );
        }
    }

    #[test]
    fn integers_and_list_choices_are_checked() {
        let f = Form::new(FormKind::Submit)
            .with_field(Field::text_single("n", "42"))
            .with_field(Field::text_single("neg", "-7"))
            .with_field(Field::text_single("big", "99999999999999999999"))
            .with_field(Field::text_single("word", "ten"))
            .with_field(Field::list_single("ls", "moon", []))
            .with_field(Field::list_multi("lm", ["weather", "moon"], []));
        assert_eq!(f.integer("n"), Ok(Some(42)));
        assert_eq!(f.integer("neg"), Ok(Some(-7)));
        assert_eq!(f.integer("big"), Err(FormError::NotInteger("big".into())));
        assert_eq!(f.integer("word"), Err(FormError::NotInteger("word".into())));
        assert_eq!(f.integer("absent"), Ok(None));
        assert_eq!(
            f.list_single("ls", CHANNELS),
            Err(FormError::NotAnOption("ls".into()))
        );
        assert_eq!(f.list_single("ls", &["moon"]), Ok(Some("moon")));
        assert_eq!(
            f.list_multi("lm", CHANNELS),
            Err(FormError::NotAnOption("lm".into()))
        );
        assert_eq!(f.list_multi("absent", CHANNELS), Ok(&[][..]));
    }

    #[test]
    fn two_form_types_or_an_element_in_a_value_are_bad_requests() {
        let two = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='FORM_TYPE'><value>urn:a</value><value>urn:b</value></field>\
            <field var='f'><value>1</value></field></x>";
        let err = parse(two).expect_err("two FORM_TYPE values");
        assert_eq!(err, FormError::TooManyValues("FORM_TYPE".into()));
        assert_eq!(err.to_stanza_error().condition, StanzaCondition::BadRequest);
        let nested = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='f'><value>a<b xmlns='jabber:x:data'/>c</value></field></x>";
        let err = parse(nested).expect_err("element in a value");
        assert_eq!(err, FormError::ValueNotText("f".into()));
        assert_eq!(err.to_stanza_error().condition, StanzaCondition::BadRequest);
        let foreign = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='f'><value>a<b xmlns='urn:other'/></value></field></x>";
        assert_eq!(
            parse(foreign).expect_err("any element"),
            FormError::ValueNotText("f".into())
        );
    }

    #[test]
    fn form_type_is_checked_against_the_expected_namespace() {
        let f = parse(RELAY_SUBMIT).expect("submit");
        let err = f.expect_form_type("urn:example:other").expect_err("wrong");
        assert_eq!(
            err,
            FormError::WrongFormType {
                expected: "urn:example:other".into(),
                found: Some("urn:example:relay".into()),
            }
        );
        assert_eq!(err.to_stanza_error().condition, StanzaCondition::BadRequest);
        assert_eq!(
            err.to_string(),
            "FORM_TYPE is \"urn:example:relay\" where urn:example:other is expected"
        );
        // Untyped in a submit form counts; a visible FORM_TYPE does not
        // (XEP-0068); none at all is wrong too.
        let untyped = Form::new(FormKind::Submit).with_field(Field {
            kind: None,
            ..Field::hidden(FORM_TYPE, "urn:a")
        });
        assert_eq!(untyped.expect_form_type("urn:a"), Ok(()));
        let visible =
            Form::new(FormKind::Submit).with_field(Field::text_single(FORM_TYPE, "urn:a"));
        assert_eq!(visible.form_type(), None);
        assert!(
            Form::new(FormKind::Submit)
                .expect_form_type("urn:a")
                .is_err()
        );
    }

    #[test]
    fn with_form_type_replaces_and_goes_first() {
        let f = Form::new(FormKind::Form)
            .with_field(Field::text_single("a", "1"))
            .with_form_type("urn:one")
            .with_form_type("urn:two");
        assert_eq!(f.fields.len(), 2);
        assert_eq!(f.fields[0].var.as_deref(), Some(FORM_TYPE));
        assert_eq!(f.form_type(), Some("urn:two"));
        assert_eq!(
            f.submitted_values().collect::<Vec<_>>(),
            [("a", &["1".to_string()][..])]
        );
    }

    #[test]
    fn markup_quotes_and_non_ascii_survive() {
        let nasty = "a<b & c>'d\"e ü 日本 🎉 ]]> &amp;";
        let form = Form::new(FormKind::Form)
            .with_title(nasty)
            .with_instructions(nasty)
            .with_field(
                Field::list_single(nasty, nasty, [FormOption::labelled(nasty, nasty)])
                    .with_label(nasty)
                    .with_desc(nasty),
            );
        let xml = form.to_element().to_xml(ns::CLIENT);
        assert!(!xml.contains("<b"), "{xml}");
        let back = reparse(&form).expect("reparse");
        assert_eq!(back, form);
        assert_eq!(back.value(nasty), Some(nasty));
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    const NAMES: &[&str] = &[
        "field",
        "field",
        "field",
        "value",
        "value",
        "option",
        "required",
        "desc",
        "reported",
        "item",
        "title",
        "instructions",
        "other",
    ];

    const ATTRS: &[&str] = &[
        " var='a'",
        " var='b'",
        " var='FORM_TYPE'",
        " type='boolean'",
        " type='jid-multi'",
        " type='list-single'",
        " type='list-multi'",
        " type='hidden'",
        " type='fixed'",
        " type='nope'",
        " label='&lt;L&apos;&gt;'",
        " xmlns='urn:example'",
    ];

    const TEXTS: &[&str] = &[
        "1",
        "true",
        "0",
        "x",
        "a@b",
        "@@",
        "&amp;",
        "&#x1F389;",
        "ü",
        " ",
        "\n",
    ];

    /// Breakage: stray markup, bad references, restricted XML.
    const JUNK: &[&str] = &[
        "<",
        ">",
        "</",
        "'",
        "\"",
        "&bogus;",
        "<!-- c -->",
        "<![CDATA[<x>]]>",
        "</x>",
    ];

    fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
        from.get(rng.below(from.len())).copied().unwrap_or("")
    }

    /// Mostly well-formed form-like content, sometimes broken.
    fn random_body(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        let n = if depth == 0 {
            rng.below(12)
        } else {
            rng.below(5)
        };
        for _ in 0..n {
            match rng.below(20) {
                0 => out.push(u8::try_from(rng.next() & 0xFF).unwrap_or(0)),
                1 => out.extend_from_slice(pick(rng, JUNK).as_bytes()),
                2..=6 => out.extend_from_slice(pick(rng, TEXTS).as_bytes()),
                _ => {
                    let name = if depth == 0 && rng.below(2) == 0 {
                        "field"
                    } else {
                        pick(rng, NAMES)
                    };
                    out.extend_from_slice(format!("<{name}").as_bytes());
                    if name == "field" && rng.below(5) != 0 {
                        let var = pick(rng, &["p", "q", "r", "s", "t", "u", "v", "w"]);
                        out.extend_from_slice(format!(" var='{var}'").as_bytes());
                    }
                    for _ in 0..rng.below(3) {
                        out.extend_from_slice(pick(rng, ATTRS).as_bytes());
                    }
                    if depth >= 3 || rng.below(4) == 0 {
                        out.extend_from_slice(b"/>");
                    } else {
                        out.push(b'>');
                        random_body(rng, depth + 1, out);
                        out.extend_from_slice(format!("</{name}>").as_bytes());
                    }
                }
            }
        }
    }

    #[test]
    fn random_forms_never_panic_and_round_trip() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let (mut xml_ok, mut forms, mut fields) = (0, 0, 0);
        for i in 0..20_000 {
            // Mostly submit forms, what a server receives.
            let kind = match i % 8 {
                0 => "form",
                1 => "result",
                _ => "submit",
            };
            let mut raw = format!("<x xmlns='jabber:x:data' type='{kind}'>").into_bytes();
            random_body(&mut rng, 0, &mut raw);
            raw.extend_from_slice(b"</x>");
            let Ok(el) = Element::parse(&raw, ns::CLIENT, &[]) else {
                continue;
            };
            xml_ok += 1;
            let Ok(form) = Form::from_element(&el) else {
                continue;
            };
            forms += 1;
            fields += form.fields.len();
            for f in form.fields.iter().chain(form.items.iter().flatten()) {
                let _ = (f.bool_value(), f.integer_value(), f.jid_values());
                let _ = (f.jid_value(), f.option_value(&["1"]), f.option_values(&[]));
            }
            let _ = (form.form_type(), form.submitted_values().count());
            assert_eq!(
                reparse(&form).as_ref(),
                Ok(&form),
                "{}",
                String::from_utf8_lossy(&raw)
            );
        }
        // The generator must reach the parser's success paths.
        assert!(xml_ok > 2000, "only {xml_ok} inputs were xml");
        assert!(forms > 1500, "only {forms} inputs were forms");
        assert!(fields > 500, "only {fields} fields parsed");
    }

    #[test]
    fn five_hundred_fields_parse() {
        let mut form = Form::new(FormKind::Submit).with_form_type("urn:example:big");
        for i in 0..500 {
            let field = match i % 4 {
                0 => Field::text_single(format!("t{i}"), format!("value {i}")),
                1 => Field::boolean(format!("b{i}"), i % 3 == 0),
                2 => Field::jid_multi(format!("j{i}"), [bare("a@example.com"), bare("b.example")]),
                _ => Field::list_single(format!("l{i}"), "x", [FormOption::new("x")]),
            };
            form = form.with_field(field);
        }
        let xml = form.to_element().to_xml(ns::CLIENT);
        let back = parse(&xml).expect("parse");
        assert_eq!(back.fields.len(), 501);
        assert_eq!(back.submitted_values().count(), 500);
        assert_eq!(back.value("t496"), Some("value 496"));
        assert_eq!(back, form);
    }
}
