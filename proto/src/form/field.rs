//! One `<field/>` of a data form (XEP-0004 §3.2), its type (§3.3) and its
//! `<option/>`s: parsing with the per-field rules of §3.2, writing, and
//! typed access to its values.

use std::collections::HashSet;

use super::FormError;
use crate::element::Element;
use crate::jid::Jid;
use crate::ns;

/// The field types of XEP-0004 §3.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    Boolean,
    Fixed,
    Hidden,
    JidMulti,
    JidSingle,
    ListMulti,
    ListSingle,
    TextMulti,
    TextPrivate,
    TextSingle,
}

impl FieldKind {
    /// Every type, in the order of XEP-0004 §3.3.
    pub const ALL: [FieldKind; 10] = [
        FieldKind::Boolean,
        FieldKind::Fixed,
        FieldKind::Hidden,
        FieldKind::JidMulti,
        FieldKind::JidSingle,
        FieldKind::ListMulti,
        FieldKind::ListSingle,
        FieldKind::TextMulti,
        FieldKind::TextPrivate,
        FieldKind::TextSingle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Boolean => "boolean",
            FieldKind::Fixed => "fixed",
            FieldKind::Hidden => "hidden",
            FieldKind::JidMulti => "jid-multi",
            FieldKind::JidSingle => "jid-single",
            FieldKind::ListMulti => "list-multi",
            FieldKind::ListSingle => "list-single",
            FieldKind::TextMulti => "text-multi",
            FieldKind::TextPrivate => "text-private",
            FieldKind::TextSingle => "text-single",
        }
    }

    pub fn parse(s: &str) -> Option<FieldKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a field of this type may carry more than one `<value/>`
    /// (§3.2: list-multi, jid-multi, text-multi and hidden; all others
    /// MUST NOT).
    pub fn is_multi(self) -> bool {
        matches!(
            self,
            FieldKind::ListMulti | FieldKind::JidMulti | FieldKind::TextMulti | FieldKind::Hidden
        )
    }

    /// Whether a field of this type may carry `<option/>`s (§3.2).
    pub fn has_options(self) -> bool {
        matches!(self, FieldKind::ListMulti | FieldKind::ListSingle)
    }
}

/// One `<option/>` of a list field: a value and an optional label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormOption {
    pub label: Option<String>,
    pub value: String,
}

impl FormOption {
    pub fn new(value: impl Into<String>) -> FormOption {
        FormOption {
            label: None,
            value: value.into(),
        }
    }

    pub fn labelled(label: impl Into<String>, value: impl Into<String>) -> FormOption {
        FormOption {
            label: Some(label.into()),
            value: value.into(),
        }
    }
}

/// A `<field/>`. `kind` is `None` when the `type` attribute is absent,
/// which forms of type "submit" and "result" may do (§3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Field {
    pub var: Option<String>,
    pub kind: Option<FieldKind>,
    pub label: Option<String>,
    pub desc: Option<String>,
    pub required: bool,
    pub values: Vec<String>,
    pub options: Vec<FormOption>,
}

impl Field {
    /// A field of this type without values.
    pub fn new(var: impl Into<String>, kind: FieldKind) -> Field {
        Field {
            var: Some(var.into()),
            kind: Some(kind),
            ..Field::default()
        }
    }

    /// A boolean field, written as "1" or "0".
    pub fn boolean(var: impl Into<String>, value: bool) -> Field {
        Field::new(var, FieldKind::Boolean).with_value(if value { "1" } else { "0" })
    }

    /// A fixed field: descriptive text, no var.
    pub fn fixed(text: impl Into<String>) -> Field {
        Field {
            kind: Some(FieldKind::Fixed),
            values: vec![text.into()],
            ..Field::default()
        }
    }

    pub fn hidden(var: impl Into<String>, value: impl Into<String>) -> Field {
        Field::new(var, FieldKind::Hidden).with_value(value)
    }

    pub fn text_single(var: impl Into<String>, value: impl Into<String>) -> Field {
        Field::new(var, FieldKind::TextSingle).with_value(value)
    }

    pub fn text_private(var: impl Into<String>, value: impl Into<String>) -> Field {
        Field::new(var, FieldKind::TextPrivate).with_value(value)
    }

    /// A text-multi field, one value per line (§3.3 note ***).
    pub fn text_multi<S: Into<String>>(
        var: impl Into<String>,
        lines: impl IntoIterator<Item = S>,
    ) -> Field {
        let mut f = Field::new(var, FieldKind::TextMulti);
        f.values = lines.into_iter().map(Into::into).collect();
        f
    }

    pub fn jid_single(var: impl Into<String>, jid: impl Into<Jid>) -> Field {
        Field::new(var, FieldKind::JidSingle).with_value(jid.into().as_str())
    }

    pub fn jid_multi<J: Into<Jid>>(
        var: impl Into<String>,
        jids: impl IntoIterator<Item = J>,
    ) -> Field {
        let mut f = Field::new(var, FieldKind::JidMulti);
        f.values = jids
            .into_iter()
            .map(|j| j.into().as_str().to_string())
            .collect();
        f
    }

    pub fn list_single(
        var: impl Into<String>,
        value: impl Into<String>,
        options: impl IntoIterator<Item = FormOption>,
    ) -> Field {
        let mut f = Field::new(var, FieldKind::ListSingle).with_value(value);
        f.options = options.into_iter().collect();
        f
    }

    pub fn list_multi<S: Into<String>>(
        var: impl Into<String>,
        values: impl IntoIterator<Item = S>,
        options: impl IntoIterator<Item = FormOption>,
    ) -> Field {
        let mut f = Field::new(var, FieldKind::ListMulti);
        f.values = values.into_iter().map(Into::into).collect();
        f.options = options.into_iter().collect();
        f
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Field {
        self.label = Some(label.into());
        self
    }

    pub fn with_desc(mut self, desc: impl Into<String>) -> Field {
        self.desc = Some(desc.into());
        self
    }

    pub fn with_required(mut self, required: bool) -> Field {
        self.required = required;
        self
    }

    pub fn with_value(mut self, value: impl Into<String>) -> Field {
        self.values.push(value.into());
        self
    }

    pub fn with_option(mut self, option: FormOption) -> Field {
        self.options.push(option);
        self
    }

    /// The var, or "" for a fixed field without one (for error messages).
    fn name(&self) -> String {
        self.var.clone().unwrap_or_default()
    }

    /// The first value.
    pub fn value(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }

    /// The value of a field that must have at most one.
    pub fn single(&self) -> Result<Option<&str>, FormError> {
        match self.values.as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(FormError::TooManyValues(self.name())),
        }
    }

    /// The value as an xs:boolean: "1"/"true" or "0"/"false" (§3.3).
    pub fn bool_value(&self) -> Result<Option<bool>, FormError> {
        match self.single()? {
            None => Ok(None),
            Some("1" | "true") => Ok(Some(true)),
            Some("0" | "false") => Ok(Some(false)),
            Some(_) => Err(FormError::NotBoolean(self.name())),
        }
    }

    pub fn integer_value(&self) -> Result<Option<i64>, FormError> {
        self.single()?
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| FormError::NotInteger(self.name()))
            })
            .transpose()
    }

    pub fn jid_value(&self) -> Result<Option<Jid>, FormError> {
        self.single()?.map(|v| self.parse_jid(v)).transpose()
    }

    /// Every value as a JID, in order, duplicates dropped (§3.3: duplicate
    /// JIDs in a jid-multi MUST be ignored); one invalid JID fails all.
    pub fn jid_values(&self) -> Result<Vec<Jid>, FormError> {
        let mut seen = HashSet::with_capacity(self.values.len());
        let mut out = Vec::with_capacity(self.values.len());
        for v in &self.values {
            let j = self.parse_jid(v)?;
            if seen.insert(j.clone()) {
                out.push(j);
            }
        }
        Ok(out)
    }

    fn parse_jid(&self, v: &str) -> Result<Jid, FormError> {
        Jid::parse(v).map_err(|source| FormError::BadJid {
            var: self.name(),
            source,
        })
    }

    /// The value, which must be one of `allowed` (a list-single's options:
    /// the submitter MUST NOT insert new ones, §3.3).
    pub fn option_value(&self, allowed: &[&str]) -> Result<Option<&str>, FormError> {
        match self.single()? {
            Some(v) if !allowed.contains(&v) => Err(FormError::NotAnOption(self.name())),
            v => Ok(v),
        }
    }

    /// The values, each of which must be one of `allowed`.
    pub fn option_values(&self, allowed: &[&str]) -> Result<&[String], FormError> {
        if self.values.iter().all(|v| allowed.contains(&v.as_str())) {
            Ok(&self.values)
        } else {
            Err(FormError::NotAnOption(self.name()))
        }
    }

    /// Parse a `<field/>`. `unknown_as_text` is for forms of type "form":
    /// an unknown or absent `type` is text-single, as §3.2 and §3.3 ask of
    /// a form-submitting entity; otherwise an unknown type is an error.
    /// Unknown children are ignored.
    pub(super) fn from_element(el: &Element, unknown_as_text: bool) -> Result<Field, FormError> {
        let var = el.attr("var").map(str::to_string);
        let name = || var.clone().unwrap_or_default();
        let kind = match el.attr("type") {
            None => None,
            Some(t) => match FieldKind::parse(t) {
                Some(k) => Some(k),
                None if unknown_as_text => Some(FieldKind::TextSingle),
                None => {
                    return Err(FormError::UnknownFieldType {
                        var: name(),
                        kind: t.to_string(),
                    });
                }
            },
        };
        let mut f = Field {
            label: el.attr("label").map(str::to_string),
            ..Field::default()
        };
        for c in el.elements().filter(|c| c.ns == ns::DATA_FORMS) {
            match c.name.as_str() {
                "desc" if f.desc.is_none() => f.desc = Some(c.text()),
                "required" => f.required = true,
                // XEP-0004 §3.3: a value is character data only.
                "value" if c.elements().next().is_some() => {
                    return Err(FormError::ValueNotText(name()));
                }
                "value" => f.values.push(c.text()),
                "option" => {
                    let mut values = c
                        .elements()
                        .filter(|v| v.name == "value" && v.ns == ns::DATA_FORMS);
                    let (Some(value), None) = (values.next(), values.next()) else {
                        return Err(FormError::BadOption(name()));
                    };
                    f.options.push(FormOption {
                        label: c.attr("label").map(str::to_string),
                        value: value.text(),
                    });
                }
                _ => {}
            }
        }
        if var.is_none() && kind != Some(FieldKind::Fixed) {
            return Err(FormError::MissingVar);
        }
        // Without a type, a field of a form to fill in is text-single
        // (§3.2); elsewhere it may be of any type.
        let effective = kind.or(unknown_as_text.then_some(FieldKind::TextSingle));
        if effective.is_some_and(|k| !k.is_multi()) && f.values.len() > 1 {
            return Err(FormError::TooManyValues(name()));
        }
        if effective.is_some_and(|k| !k.has_options()) && !f.options.is_empty() {
            return Err(FormError::OptionsNotAllowed(name()));
        }
        f.var = var;
        f.kind = kind;
        Ok(f)
    }

    /// The `<field/>` element, children in the order of the XEP-0004
    /// schema (desc, required, values, options).
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("field", ns::DATA_FORMS);
        if let Some(k) = self.kind {
            el.set_attr("type", k.as_str());
        }
        if let Some(v) = &self.var {
            el.set_attr("var", v.as_str());
        }
        if let Some(l) = &self.label {
            el.set_attr("label", l.as_str());
        }
        if let Some(d) = &self.desc {
            el.push(text_element("desc", d));
        }
        if self.required {
            el.push(Element::new("required", ns::DATA_FORMS));
        }
        for v in &self.values {
            el.push(text_element("value", v));
        }
        for o in &self.options {
            let mut opt = Element::new("option", ns::DATA_FORMS);
            if let Some(l) = &o.label {
                opt.set_attr("label", l.as_str());
            }
            el.push(opt.with_child(text_element("value", &o.value)));
        }
        el
    }
}

/// An element of the data forms namespace holding `text` (none if empty).
pub(super) fn text_element(name: &str, text: &str) -> Element {
    let el = Element::new(name, ns::DATA_FORMS);
    if text.is_empty() {
        el
    } else {
        el.with_text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(xml: &str) -> Result<Field, FormError> {
        let el = Element::parse(xml.as_bytes(), ns::DATA_FORMS, &[]).expect("xml");
        Field::from_element(&el, false)
    }

    #[test]
    fn every_kind_name_parses_back() {
        for k in FieldKind::ALL {
            assert_eq!(FieldKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(FieldKind::parse("Boolean"), None);
        let multi: Vec<_> = FieldKind::ALL
            .into_iter()
            .filter(|k| k.is_multi())
            .collect();
        assert_eq!(
            multi,
            [
                FieldKind::Hidden,
                FieldKind::JidMulti,
                FieldKind::ListMulti,
                FieldKind::TextMulti
            ]
        );
    }

    #[test]
    fn option_needs_exactly_one_value() {
        let two = "<field var='a' type='list-single'><option><value>x</value><value>y</value></option></field>";
        assert_eq!(field(two), Err(FormError::BadOption("a".into())));
        let none = "<field var='a' type='list-single'><option label='x'/></field>";
        assert_eq!(field(none), Err(FormError::BadOption("a".into())));
        let one =
            "<field var='a' type='list-multi'><option label='X'><value>x</value></option></field>";
        assert_eq!(
            field(one).map(|f| f.options),
            Ok(vec![FormOption::labelled("X", "x")])
        );
    }

    #[test]
    fn options_only_in_list_fields() {
        let xml = "<field var='a' type='text-single'><option><value>x</value></option></field>";
        assert_eq!(field(xml), Err(FormError::OptionsNotAllowed("a".into())));
        // An untyped field in a submit form may be a list.
        let untyped = "<field var='a'><option><value>x</value></option></field>";
        assert!(field(untyped).is_ok());
    }

    #[test]
    fn hidden_may_repeat_its_value_but_text_single_may_not() {
        let hidden = "<field var='h' type='hidden'><value>1</value><value>2</value></field>";
        assert_eq!(field(hidden).map(|f| f.values.len()), Ok(2));
        let single = "<field var='t' type='text-single'><value>1</value><value>2</value></field>";
        assert_eq!(field(single), Err(FormError::TooManyValues("t".into())));
    }

    #[test]
    fn unknown_children_and_foreign_namespaces_are_ignored() {
        let xml = "<field var='a' type='text-single'><validate xmlns='http://jabber.org/protocol/xdata-validate' datatype='xs:integer'/><value xmlns='urn:example'>x</value><media/><value>y</value></field>";
        assert_eq!(field(xml).map(|f| f.values), Ok(vec!["y".to_string()]));
    }

    #[test]
    fn empty_texts_round_trip() {
        let f = Field::text_single("a", "")
            .with_label("")
            .with_desc("")
            .with_option(FormOption::new(""));
        let f = Field {
            kind: Some(FieldKind::ListSingle),
            ..f
        };
        let xml = f.to_element().to_xml(ns::DATA_FORMS);
        assert_eq!(field(&xml), Ok(f));
    }
}
