//! The template catalogue: every stored template of every account, read into memory, and
//! the rules a template send must meet before anything goes out.
//!
//! [`Catalogue`] is loaded from the store at start and reloaded after each sync, create,
//! delete and template webhook; the sender, the agent API and campaign creation ask it
//! through [`Catalogue::check`]. An endpoint's account is its `waba_id`, else the account
//! whose numbers include its `phone_number_id`. For an endpoint with no known account the
//! catalogue has nothing to check against and lets the send through (Meta still refuses a
//! bad one, 132000/132001); once an account is set up, a template it does not have is
//! refused here.
//!
//! Meta's components are read into a [`TemplateSpec`]: the header's kind, the body's
//! placeholders (`{{1}}`… positional or `{{name}}` named), and which buttons take a value.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::config::EndpointConfig;
use crate::plugins::types::{
    MediaKind, MediaOutput, MediaSource, TemplateButton, TemplateButtonKind, TemplateOutput,
    TemplateParameter, TemplateValue,
};
use crate::store::business::{StoredAccount, StoredNumber, StoredTemplate};

/// What a template's header needs.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderSpec {
    None,
    /// Text, with this many placeholders (0 or 1).
    Text(usize),
    /// A media header of this kind: one media value.
    Media(MediaKind),
    /// A location header (its value is sent by Meta's own form; not checked here).
    Location,
}

/// The body's placeholders.
#[derive(Debug, Clone, PartialEq)]
pub enum BodySpec {
    /// `{{1}}` … `{{n}}`.
    Positional(usize),
    /// `{{first_name}}` …
    Named(BTreeSet<String>),
}

/// One button and whether it takes a value.
#[derive(Debug, Clone, PartialEq)]
pub struct ButtonSpec {
    pub index: u32,
    pub kind: TemplateButtonKind,
    /// A URL button with a `{{1}}` suffix, or a copy-code button.
    pub needs_value: bool,
}

/// A stored template, read.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    pub stored: StoredTemplate,
    pub header: HeaderSpec,
    pub body: BodySpec,
    pub buttons: Vec<ButtonSpec>,
}

/// The answer to "may this template go out from this endpoint?".
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The endpoint has no known account: nothing to check against.
    Unchecked,
    Valid(Arc<TemplateSpec>),
}

/// Placeholders in a text: `{{1}}`, `{{ name }}`.
fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !found.iter().any(|f| f == name) {
            found.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    found
}

fn upper(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_uppercase()
}

impl TemplateSpec {
    pub fn read(stored: StoredTemplate) -> TemplateSpec {
        let components: Value = serde_json::from_str(&stored.components).unwrap_or(Value::Null);
        let mut header = HeaderSpec::None;
        let mut body = BodySpec::Positional(0);
        let mut buttons = Vec::new();
        for c in components.as_array().into_iter().flatten() {
            match upper(c, "type").as_str() {
                "HEADER" => {
                    header = match upper(c, "format").as_str() {
                        "IMAGE" => HeaderSpec::Media(MediaKind::Image),
                        "VIDEO" => HeaderSpec::Media(MediaKind::Video),
                        "DOCUMENT" => HeaderSpec::Media(MediaKind::Document),
                        "LOCATION" => HeaderSpec::Location,
                        _ => HeaderSpec::Text(
                            placeholders(c.get("text").and_then(Value::as_str).unwrap_or("")).len(),
                        ),
                    }
                }
                "BODY" => {
                    let names = placeholders(c.get("text").and_then(Value::as_str).unwrap_or(""));
                    body = if names.iter().all(|n| n.parse::<u32>().is_ok()) {
                        BodySpec::Positional(names.len())
                    } else {
                        BodySpec::Named(names.into_iter().collect())
                    };
                }
                "BUTTONS" => {
                    for (i, b) in c
                        .get("buttons")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        let index = u32::try_from(i).unwrap_or(u32::MAX);
                        let (kind, needs_value) = match upper(b, "type").as_str() {
                            "URL" => (
                                TemplateButtonKind::Url,
                                b.get("url")
                                    .and_then(Value::as_str)
                                    .is_some_and(|u| u.contains("{{")),
                            ),
                            "COPY_CODE" => (TemplateButtonKind::CopyCode, true),
                            "QUICK_REPLY" => (TemplateButtonKind::QuickReply, false),
                            // Phone-number and other static buttons take nothing.
                            _ => continue,
                        };
                        buttons.push(ButtonSpec {
                            index,
                            kind,
                            needs_value,
                        });
                    }
                }
                _ => {}
            }
        }
        TemplateSpec {
            stored,
            header,
            body,
            buttons,
        }
    }

    /// Whether `output` fills exactly this template's placeholders; the reason otherwise.
    pub fn validate(&self, output: &TemplateOutput) -> Result<(), String> {
        let at = format!("template `{}` ({})", self.stored.name, self.stored.language);
        if self.stored.status != "APPROVED" {
            return Err(format!(
                "{at} is {}, not APPROVED: Meta would refuse it",
                self.stored.status
            ));
        }
        match &self.header {
            HeaderSpec::None | HeaderSpec::Text(0) if !output.header.is_empty() => {
                return Err(format!(
                    "{at} has no header parameter, got {}",
                    output.header.len()
                ));
            }
            HeaderSpec::Text(n) if *n > 0 => match output.header.as_slice() {
                [p] if matches!(p.value, TemplateValue::Text(_)) => {}
                _ => return Err(format!("{at} needs one text value for its header")),
            },
            HeaderSpec::Media(kind) => match output.header.as_slice() {
                [p] if matches!(&p.value, TemplateValue::Media(m) if m.kind == *kind) => {}
                _ => {
                    return Err(format!(
                        "{at} needs one {kind:?} for its header (a link or media id)"
                    ));
                }
            },
            _ => {}
        }
        match &self.body {
            BodySpec::Positional(n) => {
                if output.body.len() != *n {
                    return Err(format!(
                        "{at} takes {n} body parameter(s), got {}",
                        output.body.len()
                    ));
                }
                if output.body.iter().any(|p| p.name.is_some()) {
                    return Err(format!("{at} has positional parameters, got named ones"));
                }
            }
            BodySpec::Named(names) => {
                let given: BTreeSet<String> =
                    output.body.iter().filter_map(|p| p.name.clone()).collect();
                if given.len() != output.body.len() || &given != names {
                    let want: Vec<&str> = names.iter().map(String::as_str).collect();
                    return Err(format!(
                        "{at} takes the named body parameters {want:?}, got {:?}",
                        given
                    ));
                }
            }
        }
        for b in &output.buttons {
            let Some(spec) = self.buttons.iter().find(|s| s.index == b.index) else {
                return Err(format!("{at} has no button {} taking a value", b.index));
            };
            if spec.kind != b.kind {
                return Err(format!(
                    "{at}: button {} is {:?}, not {:?}",
                    b.index, spec.kind, b.kind
                ));
            }
        }
        for spec in self.buttons.iter().filter(|s| s.needs_value) {
            if !output
                .buttons
                .iter()
                .any(|b| b.index == spec.index && !b.parameters.is_empty())
            {
                return Err(format!(
                    "{at}: button {} ({:?}) needs a value",
                    spec.index, spec.kind
                ));
            }
        }
        Ok(())
    }

    /// A send of this template from one recipient's values: `body.<n|name>` (or a bare
    /// `<n|name>`), `header`, `button.<index>`. Unknown columns are refused, so a typo does
    /// not silently send a template with a missing value.
    ///
    /// The keys may be shared (`Arc<str>`: a CSV upload's header names) or owned.
    pub fn build<K: AsRef<str> + Ord>(
        &self,
        values: &BTreeMap<K, String>,
    ) -> Result<TemplateOutput, String> {
        let mut header = Vec::new();
        let mut named: BTreeMap<String, String> = BTreeMap::new();
        let mut buttons = Vec::new();
        for (key, value) in values {
            let key: &str = key.as_ref();
            if key == "header" {
                let value = match &self.header {
                    HeaderSpec::Media(kind) => TemplateValue::Media(MediaOutput {
                        kind: *kind,
                        source: if value.starts_with("https://") || value.starts_with("http://") {
                            MediaSource::Link(value.clone())
                        } else {
                            MediaSource::Id(value.clone())
                        },
                        caption: None,
                        filename: None,
                    }),
                    _ => TemplateValue::Text(value.clone()),
                };
                header.push(TemplateParameter { name: None, value });
            } else if let Some(index) = key.strip_prefix("button.") {
                let index: u32 = index
                    .parse()
                    .map_err(|_| format!("column `{key}`: a button index is a number"))?;
                let kind = self
                    .buttons
                    .iter()
                    .find(|b| b.index == index)
                    .map(|b| b.kind)
                    .ok_or_else(|| format!("column `{key}`: the template has no such button"))?;
                let value = match kind {
                    TemplateButtonKind::QuickReply => TemplateValue::Payload(value.clone()),
                    _ => TemplateValue::Text(value.clone()),
                };
                buttons.push(TemplateButton {
                    kind,
                    index,
                    parameters: vec![TemplateParameter { name: None, value }],
                });
            } else {
                let name = key.strip_prefix("body.").unwrap_or(key);
                named.insert(name.to_string(), value.clone());
            }
        }
        let body = match &self.body {
            BodySpec::Positional(n) => {
                let mut params = Vec::with_capacity(*n);
                for i in 1..=*n {
                    let value = named
                        .remove(&i.to_string())
                        .ok_or_else(|| format!("no value for body parameter {{{{{i}}}}}"))?;
                    params.push(TemplateParameter {
                        name: None,
                        value: TemplateValue::Text(value),
                    });
                }
                params
            }
            BodySpec::Named(names) => {
                let mut params = Vec::with_capacity(names.len());
                for name in names {
                    let value = named
                        .remove(name)
                        .ok_or_else(|| format!("no value for body parameter {{{{{name}}}}}"))?;
                    params.push(TemplateParameter {
                        name: Some(name.clone()),
                        value: TemplateValue::Text(value),
                    });
                }
                params
            }
        };
        if let Some(extra) = named.keys().next() {
            return Err(format!(
                "column `{extra}` is not a parameter of template `{}`",
                self.stored.name
            ));
        }
        let output = TemplateOutput {
            name: self.stored.name.clone(),
            language: self.stored.language.clone(),
            header,
            body,
            buttons,
        };
        self.validate(&output)?;
        Ok(output)
    }
}

#[derive(Default)]
struct Inner {
    /// (account, name, language) → template.
    templates: HashMap<(String, String, String), Arc<TemplateSpec>>,
    /// phone_number_id → (account, messaging-limit tier).
    numbers: HashMap<String, (String, Option<String>)>,
    /// Accounts known to the host → their business portfolio.
    accounts: BTreeMap<String, Option<String>>,
}

/// Every stored template, in memory.
#[derive(Default)]
pub struct Catalogue {
    inner: RwLock<Inner>,
}

impl Catalogue {
    /// Replaces the whole catalogue with what the store holds.
    pub fn load(
        &self,
        accounts: Vec<StoredAccount>,
        numbers: Vec<StoredNumber>,
        templates: Vec<StoredTemplate>,
    ) {
        let mut inner = Inner {
            accounts: accounts.into_iter().map(|a| (a.id, a.portfolio)).collect(),
            ..Inner::default()
        };
        for n in numbers {
            inner
                .numbers
                .insert(n.id, (n.account, n.messaging_limit_tier));
        }
        for t in templates {
            let key = (t.account.clone(), t.name.clone(), t.language.clone());
            inner.templates.insert(key, Arc::new(TemplateSpec::read(t)));
        }
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = inner;
    }

    /// The account an endpoint sends from, when the host knows it.
    pub fn account_of(&self, config: &EndpointConfig) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        config
            .waba_id
            .clone()
            .filter(|id| inner.accounts.contains_key(id))
            .or_else(|| {
                let (account, _) = inner.numbers.get(&config.phone_number_id)?;
                Some(account.clone())
            })
    }

    /// Where an endpoint's business-initiated messages count against Meta's messaging
    /// limit: the key of its business portfolio (else its account, else its number, when
    /// the host knows no better) and its number's messaging-limit tier.
    pub fn limit_of(&self, config: &EndpointConfig) -> (String, Option<String>) {
        let account = self.account_of(config);
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let portfolio = account
            .as_ref()
            .and_then(|a| inner.accounts.get(a).cloned().flatten())
            .or(account)
            .unwrap_or_else(|| format!("number:{}", config.phone_number_id));
        let tier = inner
            .numbers
            .get(&config.phone_number_id)
            .and_then(|(_, tier)| tier.clone());
        (portfolio, tier)
    }

    /// The account that owns a phone number.
    pub fn account_of_number(&self, phone_number_id: &str) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let (account, _) = inner.numbers.get(phone_number_id)?;
        Some(account.clone())
    }

    /// The stored template an endpoint would send under this name and language.
    pub fn find(
        &self,
        config: &EndpointConfig,
        name: &str,
        language: &str,
    ) -> Result<Check, String> {
        let Some(account) = self.account_of(config) else {
            return Ok(Check::Unchecked);
        };
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .templates
            .get(&(account.clone(), name.to_string(), language.to_string()))
            .cloned()
            .map(Check::Valid)
            .ok_or_else(|| {
                format!(
                    "account {account} has no template `{name}` in {language} (sync the templates if it was created elsewhere)"
                )
            })
    }

    /// The rule for one template send: its stored template exists, is approved, and the
    /// values fill exactly its placeholders.
    pub fn check(&self, config: &EndpointConfig, output: &TemplateOutput) -> Result<(), String> {
        match self.find(config, &output.name, &output.language)? {
            Check::Unchecked => Ok(()),
            Check::Valid(spec) => spec.validate(output),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(components: Value, status: &str) -> StoredTemplate {
        StoredTemplate {
            account: "waba".into(),
            name: "order_update".into(),
            language: "en_US".into(),
            template_id: Some("1".into()),
            category: Some("UTILITY".into()),
            status: status.into(),
            quality: None,
            components: components.to_string(),
            updated_ms: 0,
        }
    }

    fn spec() -> TemplateSpec {
        TemplateSpec::read(stored(
            serde_json::json!([
                {"type": "HEADER", "format": "IMAGE"},
                {"type": "BODY", "text": "Hi {{1}}, order {{2}} ships {{2}} today."},
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "URL", "text": "Track", "url": "https://x.test/t/{{1}}"}
                ]}
            ]),
            "APPROVED",
        ))
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn components_are_read() {
        let s = spec();
        assert_eq!(s.header, HeaderSpec::Media(MediaKind::Image));
        assert_eq!(s.body, BodySpec::Positional(2));
        assert_eq!(s.buttons.len(), 2);
        assert!(s.buttons[1].needs_value && !s.buttons[0].needs_value);
    }

    #[test]
    fn a_full_set_of_values_builds_and_validates() {
        let out = spec()
            .build(&values(&[
                ("1", "Ada"),
                ("body.2", "A-17"),
                ("header", "https://x.test/p.png"),
                ("button.1", "A-17"),
            ]))
            .expect("valid");
        assert_eq!(out.body.len(), 2);
        assert!(matches!(
            &out.header[0].value,
            TemplateValue::Media(MediaOutput {
                source: MediaSource::Link(_),
                ..
            })
        ));
    }

    #[test]
    fn wrong_values_are_refused_with_the_reason() {
        let s = spec();
        let missing = s.build(&values(&[("1", "Ada"), ("header", "h"), ("button.1", "x")]));
        assert!(missing.unwrap_err().contains("{{2}}"));
        let extra = s.build(&values(&[
            ("1", "a"),
            ("2", "b"),
            ("3", "c"),
            ("header", "h"),
            ("button.1", "x"),
        ]));
        assert!(extra.unwrap_err().contains("`3`"));
        let no_button = s.build(&values(&[("1", "a"), ("2", "b"), ("header", "h")]));
        assert!(no_button.unwrap_err().contains("button 1"));
        let paused = TemplateSpec::read(stored(serde_json::json!([]), "PAUSED"));
        assert!(paused.build(&values(&[])).unwrap_err().contains("PAUSED"));
    }

    #[test]
    fn named_parameters_must_match_by_name() {
        let s = TemplateSpec::read(stored(
            serde_json::json!([{"type": "BODY", "text": "Hi {{first_name}} {{ city }}"}]),
            "APPROVED",
        ));
        assert!(
            s.build(&values(&[("first_name", "Ada"), ("city", "Oslo")]))
                .is_ok()
        );
        assert!(s.build(&values(&[("first_name", "Ada")])).is_err());
        let positional = TemplateOutput {
            name: "order_update".into(),
            language: "en_US".into(),
            header: Vec::new(),
            body: vec![TemplateParameter {
                name: None,
                value: TemplateValue::Text("Ada".into()),
            }],
            buttons: Vec::new(),
        };
        assert!(s.validate(&positional).is_err());
    }

    #[test]
    fn a_number_counts_against_its_accounts_portfolio_and_tier() {
        let endpoint = |number: &str| {
            let toml = format!(
                "[[endpoints]]\nid = 'shop'\nflow = 'f.json'\nphone_number_id = '{number}'\nverify_token = 'vt'\n\
                 insecure_skip_signature = true\n"
            );
            let config = crate::config::ServeConfig::from_toml(&toml, std::path::Path::new("."))
                .expect("config");
            config.endpoints.into_iter().next().expect("an endpoint")
        };
        let account = |id: &str, portfolio: Option<&str>| StoredAccount {
            id: id.into(),
            name: None,
            portfolio: portfolio.map(String::from),
            graph_api_base: String::new(),
            graph_api_version: String::new(),
            token: String::new(),
            subscribed: None,
            refreshed_ms: 0,
            created_ms: 0,
        };
        let number = |id: &str, account: &str, tier: Option<&str>| StoredNumber {
            id: id.into(),
            account: account.into(),
            display_phone_number: None,
            verified_name: None,
            quality_rating: None,
            throughput_level: None,
            messaging_limit_tier: tier.map(String::from),
            updated_ms: 0,
        };
        let catalogue = Catalogue::default();
        catalogue.load(
            vec![
                account("waba-1", Some("portfolio-1")),
                account("waba-2", None),
            ],
            vec![
                number("100", "waba-1", Some("TIER_2K")),
                number("200", "waba-2", None),
            ],
            Vec::new(),
        );
        let limit = |n: &str| catalogue.limit_of(&endpoint(n));
        assert_eq!(limit("100"), ("portfolio-1".into(), Some("TIER_2K".into())));
        assert_eq!(limit("200"), ("waba-2".into(), None));
        assert_eq!(limit("300"), ("number:300".into(), None));
    }
}
