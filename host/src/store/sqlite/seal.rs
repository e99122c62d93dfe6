//! Which stored columns hold secrets, and their sealing on write and opening on read (see
//! [`crate::secretbox`] for the format).
//!
//! The secrets live in three places: the secret fields of an endpoint's JSON spec
//! (`access_token`, `verify_token`, `app_secret`: [`SPEC_SECRETS`]), a WhatsApp Business
//! account's system-user `token`, and an event webhook's signing `secret`. Every write of
//! these goes through [`Columns::seal_spec`] / [`Keyring::seal`] inside the store, every
//! read through the matching open, so the rest of the host only sees clear values. The
//! column name is the associated data of each sealed value.
//!
//! [`check`] runs when the store opens: every sealed value must open with the keys given,
//! else the open fails with the reason (a missing or wrong key), instead of an endpoint
//! silently losing its token later. [`reseal`] rewrites every secret with the current key
//! (or in clear) in the caller's transaction: `plugboard secrets rotate`.

use rusqlite::{Connection, params};

use super::rows::{Ctx, exec};
use crate::secretbox::SPEC_SECRETS;
use crate::secretbox::{Keyring, SealError, Stored};
use crate::store::StoreError;

/// The associated data (column names) of the sealed values.
pub(super) const ACCOUNT_TOKEN: &str = "wa_accounts.token";
pub(super) const HOOK_SECRET: &str = "hook_subscriptions.secret";

fn spec_field(name: &str) -> String {
    format!("endpoints.spec.{name}")
}

fn store_error(e: SealError) -> StoreError {
    StoreError(e.to_string())
}

/// Seals or opens values of the secret columns with a keyring.
pub(super) struct Columns<'a>(pub &'a Keyring);

impl Columns<'_> {
    pub fn seal(&self, field: &str, value: &str) -> Result<String, StoreError> {
        self.0.seal(field, value).map_err(store_error)
    }

    pub fn open(&self, field: &str, stored: &str) -> Result<String, StoreError> {
        self.0.open(field, stored).map_err(store_error)
    }

    /// The spec JSON with its secret fields sealed (the rest as it is).
    pub fn seal_spec(&self, spec: &str) -> Result<String, StoreError> {
        self.map_spec(spec, |field, value| self.seal(field, value))
    }

    /// The spec JSON with its secret fields opened.
    pub fn open_spec(&self, spec: &str) -> Result<String, StoreError> {
        self.map_spec(spec, |field, value| self.open(field, value))
    }

    fn map_spec(
        &self,
        spec: &str,
        f: impl Fn(&str, &str) -> Result<String, StoreError>,
    ) -> Result<String, StoreError> {
        // Nothing to do without a key and without sealed values: keep the text as it is.
        if self.0.current_id().is_none() && !spec.contains(crate::secretbox::SEALED_PREFIX) {
            return Ok(spec.to_string());
        }
        let mut value: serde_json::Value = serde_json::from_str(spec)
            .map_err(|e| StoreError(format!("a stored endpoint spec is not JSON: {e}")))?;
        if let Some(object) = value.as_object_mut() {
            for name in SPEC_SECRETS {
                if let Some(serde_json::Value::String(text)) = object.get_mut(name) {
                    *text = f(&spec_field(name), text)?;
                }
            }
        }
        serde_json::to_string(&value)
            .map_err(|e| StoreError(format!("encoding an endpoint spec: {e}")))
    }

    /// Every secret value of a spec as stored, with its field.
    fn spec_values(spec: &str) -> Vec<(String, String)> {
        let Ok(serde_json::Value::Object(object)) = serde_json::from_str(spec) else {
            return Vec::new();
        };
        SPEC_SECRETS
            .iter()
            .filter_map(|name| match object.get(*name) {
                Some(serde_json::Value::String(text)) => Some((spec_field(name), text.clone())),
                _ => None,
            })
            .collect()
    }
}

/// How the stored secrets are kept: counts by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsReport {
    /// Literal secrets in clear.
    pub clear: usize,
    /// Sealed values.
    pub sealed: usize,
    /// `env:NAME` references (not secrets).
    pub references: usize,
    /// Values [`reseal`] changed.
    pub rewritten: usize,
}

/// Every stored secret as (field, stored value); endpoint specs give one entry per secret
/// field.
fn all_values(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    let specs: Vec<String> = conn
        .prepare("SELECT spec FROM endpoints")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .ctx("reading endpoint specs")?;
    for spec in specs {
        out.extend(Columns::spec_values(&spec));
    }
    for (sql, field) in [
        ("SELECT token FROM wa_accounts", ACCOUNT_TOKEN),
        ("SELECT secret FROM hook_subscriptions", HOOK_SECRET),
    ] {
        let values: Vec<String> = conn
            .prepare(sql)
            .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
            .ctx("reading stored secrets")?;
        out.extend(values.into_iter().map(|v| (field.to_string(), v)));
    }
    Ok(out)
}

fn count(report: &mut SecretsReport, stored: &str) {
    match Keyring::classify(stored) {
        Stored::Clear => report.clear += 1,
        Stored::Reference => report.references += 1,
        Stored::Sealed { .. } => report.sealed += 1,
    }
}

/// Opens every stored secret with `keys`: the first one that does not open fails the
/// check with the reason.
pub(super) fn check(conn: &Connection, keys: &Keyring) -> Result<SecretsReport, StoreError> {
    let mut report = SecretsReport::default();
    for (field, stored) in all_values(conn)? {
        count(&mut report, &stored);
        keys.open(&field, &stored).map_err(store_error)?;
    }
    Ok(report)
}

/// Rewrites every stored secret that `keys` would write differently (see
/// [`Keyring::needs_reseal`]), in the caller's transaction. The report counts the values
/// as they are afterwards.
pub(super) fn reseal(tx: &Connection, keys: &Keyring) -> Result<SecretsReport, StoreError> {
    let columns = Columns(keys);
    let mut report = SecretsReport::default();
    let specs: Vec<(String, String)> = tx
        .prepare("SELECT id, spec FROM endpoints")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .ctx("reading endpoint specs")?;
    for (id, spec) in specs {
        let values = Columns::spec_values(&spec);
        if values.iter().any(|(_, v)| keys.needs_reseal(v)) {
            let clear = columns.open_spec(&spec)?;
            let sealed = columns.seal_spec(&clear)?;
            exec(
                tx,
                "UPDATE endpoints SET spec = ?2 WHERE id = ?1",
                params![id, sealed],
            )
            .ctx("rewriting an endpoint spec")?;
            report.rewritten += values.iter().filter(|(_, v)| keys.needs_reseal(v)).count();
            for (_, v) in Columns::spec_values(&sealed) {
                count(&mut report, &v);
            }
        } else {
            for (field, v) in &values {
                columns.open(field, v)?;
                count(&mut report, v);
            }
        }
    }
    for (table, column, key, field) in [
        ("wa_accounts", "token", "id", ACCOUNT_TOKEN),
        ("hook_subscriptions", "secret", "id", HOOK_SECRET),
    ] {
        // Table and column names are the literals above, never input.
        let rows: Vec<(rusqlite::types::Value, String)> = tx
            .prepare(&format!("SELECT {key}, {column} FROM {table}"))
            .and_then(|mut stmt| {
                stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .ctx("reading stored secrets")?;
        for (id, stored) in rows {
            let clear = columns.open(field, &stored)?;
            if keys.needs_reseal(&stored) {
                let sealed = columns.seal(field, &clear)?;
                exec(
                    tx,
                    &format!("UPDATE {table} SET {column} = ?2 WHERE {key} = ?1"),
                    params![id, sealed],
                )
                .ctx("rewriting a stored secret")?;
                report.rewritten += 1;
                count(&mut report, &sealed);
            } else {
                count(&mut report, &stored);
            }
        }
    }
    Ok(report)
}
