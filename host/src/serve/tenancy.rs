//! The isolation rule: whose event a decoded webhook item is, whatever endpoint it came in at.
//!
//! Meta posts every number of an app to one callback URL, so an item may name another
//! endpoint's number than the one whose URL received it. The demux ([`super::pipeline`])
//! asks [`route`] once per decoded item, with the receiving endpoint, the item's number or
//! account, and every served endpoint as a [`Tenant`]; the answer decides the endpoint the
//! event is recorded for and whether it is recorded as `unowned` (kept, counted, never
//! answered, never applied). Everything downstream (conversation workers, replies with an
//! endpoint's token, STOP/START opt-outs, delivery statuses and their 131050 opt-outs,
//! template and number changes) acts only on what this rule routed, so this module is the
//! one place where one tenant's webhook can be allowed to act for another.
//!
//! # The rule
//! 1. **An item for the receiving endpoint's own number** (or naming no number at all) is
//!    the receiving endpoint's own: it is recorded there as it always was. An unsigned
//!    endpoint (`insecure_skip_signature = true`) can only ever act for itself: an item
//!    with no number can only be answered from the number the endpoint replies from.
//! 2. **An item for another endpoint's number** is recorded for that endpoint only when
//!    the receiving endpoint *verified the signature with its app secret* (it does not
//!    skip the check, and the key its adapter checks with is its `app_secret`: an adapter
//!    naming another setting, say the public phone number id, speaks for nobody else)
//!    **and** the owner *trusts the same app*: both have the same app
//!    secret (compared in constant time) or the same non-empty `app_id`. That is what Meta
//!    does: one app, one secret, one callback for all its numbers. Otherwise the item is
//!    `unowned` with reason `untrusted_sender`. A number no endpoint serves is `unowned`
//!    with reason `unknown_number`.
//! 3. **Account-level items** (template status, quality and category; a number's quality
//!    and messaging limit) carry an account (WABA) id and no number. They are applied only
//!    to an account *linked* to an endpoint the receiving endpoint may speak for: itself,
//!    and, when it verified the signature, every endpoint trusting the same app. An
//!    endpoint's linked accounts are its configured `waba_id` and the stored account that
//!    owns its `phone_number_id` (the link `account setup` learns from the Graph API; the
//!    same two links the template catalogue uses). An unsigned endpoint applies account
//!    items only to an account linked to it and to no other endpoint: it may break its own
//!    templates, never another tenant's. Anything else, including an item with no account
//!    id, is `unowned` with reason `foreign_account` (or `untrusted_sender` for an
//!    unsigned endpoint's shared account).
//!
//! Unowned items are recorded for the receiving endpoint under `EventKind::Unowned`,
//! logged with their reason and counted in `unowned_events_total{endpoint, reason}`: the
//! endpoint is the receiving one (configured, so bounded) and the reason is one of
//! [`Reason::ALL`], never a value taken from the request.

use subtle::ConstantTimeEq;

use crate::business::templates::Catalogue;

use std::sync::Arc;

use crate::endpoints::endpoint::Endpoint;
use crate::endpoints::registry::Registry;

/// What the rule needs to know about one served endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Tenant<'a> {
    pub id: &'a str,
    pub phone_number_id: &'a str,
    /// Whether this endpoint checks webhook signatures (false with
    /// `insecure_skip_signature`).
    pub verifies: bool,
    /// The app secret it verifies with (else the configured one), compared in constant
    /// time; never logged.
    pub app_secret: Option<&'a [u8]>,
    /// The Meta app id, when configured.
    pub app_id: Option<&'a str>,
    /// The accounts (WABA ids) linked to it: its `waba_id` and the stored account owning
    /// its number.
    pub accounts: &'a [String],
}

impl<'a> Tenant<'a> {
    /// A served endpoint as the rule sees it; `accounts` from [`linked_accounts`].
    pub fn of(endpoint: &'a Endpoint, accounts: &'a [String]) -> Tenant<'a> {
        let config = &endpoint.config;
        Tenant {
            id: &config.id,
            phone_number_id: &config.phone_number_id,
            verifies: verifies_with_app_secret(endpoint),
            app_secret: config.app_secret.as_ref().map(|s| s.expose().as_bytes()),
            app_id: config.app_id.as_deref(),
            accounts,
        }
    }
}

/// Whether the endpoint checks signatures with its app secret. An adapter names the setting
/// that keys its signature, and a third-party one could name a public one (the phone number
/// id is in every webhook): such an endpoint verifies its own webhooks as its adapter wants,
/// but speaks for no other endpoint.
fn verifies_with_app_secret(endpoint: &Endpoint) -> bool {
    match (&endpoint.signature, &endpoint.config.app_secret) {
        (Some(check), Some(app_secret)) => {
            let (key, app) = (
                check.secret.expose().as_bytes(),
                app_secret.expose().as_bytes(),
            );
            !app.is_empty() && bool::from(key.ct_eq(app))
        }
        _ => false,
    }
}

/// The accounts linked to an endpoint: its `waba_id`, and the stored account owning its
/// number.
pub fn linked_accounts(endpoint: &Endpoint, catalogue: &Catalogue) -> Vec<String> {
    let config = &endpoint.config;
    let mut accounts: Vec<String> = config
        .waba_id
        .iter()
        .filter(|id| !id.is_empty())
        .cloned()
        .collect();
    if let Some(owner) = catalogue.account_of_number(&config.phone_number_id)
        && !accounts.contains(&owner)
    {
        accounts.push(owner);
    }
    accounts
}

/// What a decoded item names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A message, status, system notice or channel error of this number (`""`: none).
    Number(&'a str),
    /// An account-level change of this account (`None` or `""`: none).
    Account(Option<&'a str>),
}

/// Why an item is stored as unowned: a fixed set, so the metric's labels stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No served endpoint has this number.
    UnknownNumber,
    /// The number (or account) is another endpoint's, and the receiving endpoint may not
    /// speak for it (unsigned, or another app).
    UntrustedSender,
    /// The account is linked to no endpoint the receiving endpoint may speak for.
    ForeignAccount,
}

impl Reason {
    pub const ALL: [Reason; 3] = [
        Reason::UnknownNumber,
        Reason::UntrustedSender,
        Reason::ForeignAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownNumber => "unknown_number",
            Reason::UntrustedSender => "untrusted_sender",
            Reason::ForeignAccount => "foreign_account",
        }
    }
}

/// Where an item is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The receiving endpoint's own.
    Here,
    /// Another endpoint's (by id), which trusts the same app.
    Other(String),
    /// Stored for the receiving endpoint as unowned: never answered, never applied.
    Unowned(Reason),
}

/// Rule 1's first half: an item naming no number, or the receiving endpoint's own.
pub fn is_own(receiver_number: &str, number: &str) -> bool {
    number.is_empty() || number == receiver_number
}

/// [`route`] for the items of one webhook body, against the served endpoints; they are
/// read (with their linked accounts) only when an item names something other than the
/// receiving endpoint's own number, and then once per body.
pub struct Router<'s> {
    receiver: &'s Endpoint,
    registry: &'s Registry,
    catalogue: &'s Catalogue,
    known: Option<Known>,
}

/// The receiving endpoint's linked accounts, and every served endpoint with its own.
struct Known {
    own: Vec<String>,
    all: Vec<(Arc<Endpoint>, Vec<String>)>,
}

impl<'s> Router<'s> {
    pub fn new(receiver: &'s Endpoint, registry: &'s Registry, catalogue: &'s Catalogue) -> Self {
        Router {
            receiver,
            registry,
            catalogue,
            known: None,
        }
    }

    pub fn route(&mut self, item: Item<'_>) -> Route {
        if let Item::Number(number) = item
            && is_own(&self.receiver.config.phone_number_id, number)
        {
            return Route::Here;
        }
        let (registry, catalogue, receiver) = (self.registry, self.catalogue, self.receiver);
        let known = self.known.get_or_insert_with(|| {
            let all = registry
                .all()
                .into_iter()
                .map(|e| {
                    let accounts = linked_accounts(&e, catalogue);
                    (e, accounts)
                })
                .collect();
            Known {
                own: linked_accounts(receiver, catalogue),
                all,
            }
        });
        let tenants: Vec<Tenant<'_>> = known.all.iter().map(|(e, a)| Tenant::of(e, a)).collect();
        route(&Tenant::of(receiver, &known.own), item, &tenants)
    }
}

/// Whether `receiver` may record items for `owner`: it verified the signature, and both
/// belong to the same app (same secret, or same non-empty app id).
pub fn trusts(receiver: &Tenant<'_>, owner: &Tenant<'_>) -> bool {
    if !receiver.verifies {
        return false;
    }
    let same_secret = match (receiver.app_secret, owner.app_secret) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => bool::from(a.ct_eq(b)),
        _ => false,
    };
    let same_app = match (receiver.app_id, owner.app_id) {
        (Some(a), Some(b)) => !a.is_empty() && a == b,
        _ => false,
    };
    same_secret || same_app
}

/// The rule (see the module documentation). `endpoints` are all served endpoints; the
/// receiver may be among them.
pub fn route(receiver: &Tenant<'_>, item: Item<'_>, endpoints: &[Tenant<'_>]) -> Route {
    match item {
        Item::Number(number) => route_number(receiver, number, endpoints),
        Item::Account(account) => route_account(receiver, account.unwrap_or_default(), endpoints),
    }
}

fn route_number(receiver: &Tenant<'_>, number: &str, endpoints: &[Tenant<'_>]) -> Route {
    if is_own(receiver.phone_number_id, number) {
        return Route::Here;
    }
    let mut owners = endpoints
        .iter()
        .filter(|e| e.id != receiver.id && e.phone_number_id == number)
        .peekable();
    if owners.peek().is_none() {
        return Route::Unowned(Reason::UnknownNumber);
    }
    match owners.find(|owner| trusts(receiver, owner)) {
        Some(owner) => Route::Other(owner.id.to_string()),
        None => Route::Unowned(Reason::UntrustedSender),
    }
}

fn route_account(receiver: &Tenant<'_>, account: &str, endpoints: &[Tenant<'_>]) -> Route {
    let linked = |e: &Tenant<'_>| !account.is_empty() && e.accounts.iter().any(|a| a == account);
    if !receiver.verifies {
        // Unsigned: its own account only, and only when no other endpoint shares it.
        if !linked(receiver) {
            return Route::Unowned(Reason::ForeignAccount);
        }
        let shared = endpoints.iter().any(|e| e.id != receiver.id && linked(e));
        return if shared {
            Route::Unowned(Reason::UntrustedSender)
        } else {
            Route::Here
        };
    }
    let reachable = linked(receiver)
        || endpoints
            .iter()
            .any(|e| e.id != receiver.id && linked(e) && trusts(receiver, e));
    if reachable {
        Route::Here
    } else {
        Route::Unowned(Reason::ForeignAccount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant<'a>(
        id: &'a str,
        number: &'a str,
        secret: Option<&'a str>,
        app_id: Option<&'a str>,
        accounts: &'a [String],
    ) -> Tenant<'a> {
        Tenant {
            id,
            phone_number_id: number,
            verifies: secret.is_some(),
            app_secret: secret.map(str::as_bytes),
            app_id,
            accounts,
        }
    }

    fn waba(id: &str) -> Vec<String> {
        vec![id.to_string()]
    }

    #[test]
    fn own_number_and_no_number_stay_here_even_unsigned() {
        let none: Vec<String> = Vec::new();
        let open = tenant("open", "1", None, None, &none);
        let a = tenant("a", "2", Some("sa"), None, &none);
        let all = [open, a];
        assert_eq!(route(&open, Item::Number("1"), &all), Route::Here);
        assert_eq!(route(&open, Item::Number(""), &all), Route::Here);
        assert_eq!(route(&a, Item::Number("2"), &all), Route::Here);
    }

    #[test]
    fn an_unsigned_endpoint_never_speaks_for_another() {
        let none: Vec<String> = Vec::new();
        // Even with the same app id and secret configured: it did not check the signature.
        let open = Tenant {
            verifies: false,
            ..tenant("open", "1", Some("s"), Some("app"), &none)
        };
        let a = tenant("a", "2", Some("s"), Some("app"), &none);
        let all = [open, a];
        assert_eq!(
            route(&open, Item::Number("2"), &all),
            Route::Unowned(Reason::UntrustedSender)
        );
        assert_eq!(
            route(&open, Item::Number("9"), &all),
            Route::Unowned(Reason::UnknownNumber)
        );
    }

    #[test]
    fn another_apps_signature_does_not_reach_a_number_of_this_app() {
        let none: Vec<String> = Vec::new();
        let a = tenant("a", "1", Some("secret-a"), Some("app-a"), &none);
        let b = tenant("b", "2", Some("secret-b"), Some("app-b"), &none);
        // Same length, one byte apart, and a prefix: none is the same secret.
        let c = tenant("c", "3", Some("secret-c"), None, &none);
        let d = tenant("d", "4", Some("secret"), None, &none);
        let all = [a, b, c, d];
        for (from, to) in [(&b, "1"), (&a, "2"), (&c, "1"), (&d, "3")] {
            assert_eq!(
                route(from, Item::Number(to), &all),
                Route::Unowned(Reason::UntrustedSender),
                "{} → {to}",
                from.id
            );
        }
    }

    #[test]
    fn one_app_routes_between_its_numbers_by_secret_or_app_id() {
        let none: Vec<String> = Vec::new();
        let a = tenant("a", "1", Some("shared"), None, &none);
        let b = tenant("b", "2", Some("shared"), None, &none);
        // Secrets differ (one was rotated), app ids say it is one app.
        let c = tenant("c", "3", Some("old"), Some("app"), &none);
        let d = tenant("d", "4", Some("new"), Some("app"), &none);
        // An empty app id is no app id.
        let e = tenant("e", "5", Some("x"), Some(""), &none);
        let f = tenant("f", "6", Some("y"), Some(""), &none);
        let all = [a, b, c, d, e, f];
        assert_eq!(route(&a, Item::Number("2"), &all), Route::Other("b".into()));
        assert_eq!(route(&b, Item::Number("1"), &all), Route::Other("a".into()));
        assert_eq!(route(&c, Item::Number("4"), &all), Route::Other("d".into()));
        assert_eq!(
            route(&e, Item::Number("6"), &all),
            Route::Unowned(Reason::UntrustedSender)
        );
        assert_eq!(
            route(&a, Item::Number("3"), &all),
            Route::Unowned(Reason::UntrustedSender)
        );
    }

    #[test]
    fn account_items_reach_only_accounts_of_the_same_app() {
        let (wa, wb, wc) = (waba("W-A"), waba("W-B"), waba("W-C"));
        let a = tenant("a", "1", Some("sa"), None, &wa);
        let b = tenant("b", "2", Some("sb"), None, &wb);
        let c = tenant("c", "3", Some("sa"), None, &wc);
        let all = [a, b, c];
        assert_eq!(route(&a, Item::Account(Some("W-A")), &all), Route::Here);
        // Another endpoint of the same app: its account too.
        assert_eq!(route(&a, Item::Account(Some("W-C")), &all), Route::Here);
        // Another app's account, an unknown one, none at all.
        for account in [Some("W-B"), Some("W-X"), Some(""), None] {
            assert_eq!(
                route(&a, Item::Account(account), &all),
                Route::Unowned(Reason::ForeignAccount),
                "{account:?}"
            );
        }
    }

    #[test]
    fn an_unsigned_endpoint_changes_only_an_account_of_its_own() {
        let (wo, wa) = (waba("W-O"), waba("W-A"));
        let open = tenant("open", "1", None, None, &wo);
        let a = tenant("a", "2", Some("sa"), None, &wa);
        let all = [open, a];
        assert_eq!(route(&open, Item::Account(Some("W-O")), &all), Route::Here);
        assert_eq!(
            route(&open, Item::Account(Some("W-A")), &all),
            Route::Unowned(Reason::ForeignAccount)
        );
        // Shared with a signed endpoint: the unsigned one may not change it.
        let shared = waba("W-A");
        let open = tenant("open", "1", None, None, &shared);
        let all = [open, a];
        assert_eq!(
            route(&open, Item::Account(Some("W-A")), &all),
            Route::Unowned(Reason::UntrustedSender)
        );
        // While the signed one still may.
        assert_eq!(route(&a, Item::Account(Some("W-A")), &all), Route::Here);
    }

    #[test]
    fn reasons_are_a_fixed_set() {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            ["unknown_number", "untrusted_sender", "foreign_account"]
        );
    }
}
