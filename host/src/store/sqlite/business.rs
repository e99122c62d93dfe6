//! [`BusinessStore`] on SQLite: accounts, numbers, templates, campaigns, opt-outs, the
//! messaging-limit ledger and the reply quota.
//!
//! Changes made through the admin API (accounts, templates, campaigns, opt-ins) are admin
//! writes, fsync'd before the answer; an account's system-user token is sealed on write
//! and opened on read ([`super::seal`]).
//!
//! The one write with a rule to keep is [`BusinessStore::claim_recipients`]: the
//! recipient's state change, its outbox row and the ledger entry commit together, so a
//! recipient is either untouched (and claimed later) or claimed exactly once.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{Ctx, db_int, db_limit, exec, from_db, now_ms, query_one};
use super::seal::{ACCOUNT_TOKEN, Columns};
use crate::store::business::{
    BusinessStore, CampaignContact, CampaignProgress, CampaignRow, Claim, Claimed, NewCampaign,
    NewRecipient, OptOut, StoredAccount, StoredNumber, StoredTemplate, TemplateChange,
};
use crate::store::{OutboxRow, OutboxState, StoreError, StoreFuture};
use crate::whatsapp::WINDOW_MS;

/// Counts a bot reply towards the month's quota, in the step's transaction; with a user,
/// also notes that they were told the quota is used up.
pub(super) fn count_replies(
    tx: &Connection,
    endpoint: &str,
    month: &str,
    replies: u64,
    told: Option<&str>,
) -> Result<(), StoreError> {
    if replies > 0 {
        exec(
            tx,
            "INSERT INTO reply_quota (endpoint, month, replies) VALUES (?1, ?2, ?3)
             ON CONFLICT (endpoint, month) DO UPDATE SET replies = replies + excluded.replies",
            params![endpoint, month, db_int(replies)],
        )
        .ctx("counting replies")?;
    }
    if let Some(user) = told {
        exec(
            tx,
            "INSERT OR IGNORE INTO quota_told (endpoint, month, user) VALUES (?1, ?2, ?3)",
            params![endpoint, month, user],
        )
        .ctx("noting the quota message")?;
    }
    Ok(())
}

/// Before outbox rows are pruned: their recipients keep the final state.
pub(super) fn keep_campaign_states(tx: &Connection, before_ms: i64) -> Result<(), StoreError> {
    exec(
        tx,
        "UPDATE campaign_recipients
         SET state = (SELECT o.state FROM outbox o WHERE o.id = campaign_recipients.outbox_id),
             outbox_id = NULL
         WHERE outbox_id IN (SELECT id FROM outbox
             WHERE state IN ('sent', 'delivered', 'read', 'failed') AND updated_ms < ?1)",
        [before_ms],
    )
    .ctx("keeping campaign states")?;
    Ok(())
}

/// Records an opt-out in the caller's transaction; true when it is new.
pub(super) fn insert_opt_out(
    tx: &Connection,
    endpoint: &str,
    user: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    let n = exec(
        tx,
        "INSERT OR IGNORE INTO opt_outs (endpoint, user, reason, at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![endpoint, user, reason, db_int(now_ms())],
    )
    .ctx("recording an opt-out")?;
    Ok(n > 0)
}

fn account_row(row: &Row<'_>) -> rusqlite::Result<StoredAccount> {
    Ok(StoredAccount {
        id: row.get(0)?,
        name: row.get(1)?,
        portfolio: row.get(2)?,
        graph_api_base: row.get(3)?,
        graph_api_version: row.get(4)?,
        token: row.get(5)?,
        subscribed: row.get(6)?,
        refreshed_ms: from_db(row.get(7)?),
        created_ms: from_db(row.get(8)?),
    })
}

fn number_row(row: &Row<'_>) -> rusqlite::Result<StoredNumber> {
    Ok(StoredNumber {
        id: row.get(0)?,
        account: row.get(1)?,
        display_phone_number: row.get(2)?,
        verified_name: row.get(3)?,
        quality_rating: row.get(4)?,
        throughput_level: row.get(5)?,
        messaging_limit_tier: row.get(6)?,
        updated_ms: from_db(row.get(7)?),
    })
}

fn template_row(row: &Row<'_>) -> rusqlite::Result<StoredTemplate> {
    Ok(StoredTemplate {
        account: row.get(0)?,
        name: row.get(1)?,
        language: row.get(2)?,
        template_id: row.get(3)?,
        category: row.get(4)?,
        status: row.get(5)?,
        quality: row.get(6)?,
        components: row.get(7)?,
        updated_ms: from_db(row.get(8)?),
    })
}

macro_rules! campaign_columns {
    () => {
        "id, endpoint, name, template, language, start_ms, state, waiting, created_ms, \
         updated_ms, finished_ms"
    };
}

fn campaign_row(row: &Row<'_>) -> rusqlite::Result<CampaignRow> {
    Ok(CampaignRow {
        id: row.get(0)?,
        endpoint: row.get(1)?,
        name: row.get(2)?,
        template: row.get(3)?,
        language: row.get(4)?,
        start_ms: from_db(row.get(5)?),
        state: row.get(6)?,
        waiting: row.get(7)?,
        created_ms: from_db(row.get(8)?),
        updated_ms: from_db(row.get(9)?),
        finished_ms: row.get::<_, Option<i64>>(10)?.map(from_db),
    })
}

fn insert_template(tx: &Connection, t: &StoredTemplate) -> Result<(), StoreError> {
    exec(
        tx,
        "INSERT INTO wa_templates (account, name, language, template_id, category, status,
             quality, components, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (account, name, language) DO UPDATE SET
             template_id = excluded.template_id, category = excluded.category,
             status = excluded.status, quality = excluded.quality,
             components = excluded.components, updated_ms = excluded.updated_ms",
        params![
            t.account,
            t.name,
            t.language,
            t.template_id,
            t.category,
            t.status,
            t.quality,
            t.components,
            db_int(t.updated_ms)
        ],
    )
    .ctx("saving a template")?;
    Ok(())
}

/// Users counted against the portfolio's limit in the moving 24 hours before `now`.
fn ledger_count(tx: &Connection, portfolio: &str, now: u64) -> Result<u64, StoreError> {
    let since = db_int(now.saturating_sub(WINDOW_MS));
    query_one(
        tx,
        "SELECT COUNT(*) FROM business_initiated WHERE portfolio = ?1 AND at_ms > ?2",
        params![portfolio, since],
        |row| row.get::<_, i64>(0),
    )
    .map(from_db)
    .ctx("counting the messaging limit")
}

impl BusinessStore for SqliteStore {
    fn save_account(
        &self,
        account: StoredAccount,
        numbers: Vec<StoredNumber>,
    ) -> StoreFuture<'_, ()> {
        let keys = self.keys.clone();
        self.submit_admin(move |tx| {
            let a = &account;
            let token = Columns(&keys).seal(ACCOUNT_TOKEN, &a.token)?;
            exec(
                tx,
                "INSERT INTO wa_accounts (id, name, portfolio, graph_api_base, graph_api_version,
                     token, subscribed, refreshed_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                 ON CONFLICT (id) DO UPDATE SET
                     name = excluded.name, portfolio = excluded.portfolio,
                     graph_api_base = excluded.graph_api_base,
                     graph_api_version = excluded.graph_api_version, token = excluded.token,
                     subscribed = COALESCE(excluded.subscribed, wa_accounts.subscribed),
                     refreshed_ms = excluded.refreshed_ms",
                params![
                    a.id,
                    a.name,
                    a.portfolio,
                    a.graph_api_base,
                    a.graph_api_version,
                    token,
                    a.subscribed,
                    db_int(a.refreshed_ms)
                ],
            )
            .ctx("saving an account")?;
            exec(tx, "DELETE FROM wa_numbers WHERE account = ?1", [&a.id])
                .ctx("replacing an account's numbers")?;
            for n in &numbers {
                // A number moved between accounts belongs to the one set up last.
                exec(
                    tx,
                    "INSERT OR REPLACE INTO wa_numbers (id, account, display_phone_number,
                         verified_name, quality_rating, throughput_level, messaging_limit_tier,
                         updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        n.id,
                        a.id,
                        n.display_phone_number,
                        n.verified_name,
                        n.quality_rating,
                        n.throughput_level,
                        n.messaging_limit_tier,
                        db_int(n.updated_ms)
                    ],
                )
                .ctx("saving a number")?;
            }
            Ok(())
        })
    }

    fn set_subscribed(&self, id: &str, subscribed: bool) -> StoreFuture<'_, bool> {
        let id = id.to_string();
        self.submit_admin(move |tx| {
            let n = exec(
                tx,
                "UPDATE wa_accounts SET subscribed = ?2 WHERE id = ?1",
                params![id, subscribed],
            )
            .ctx("recording a subscription")?;
            Ok(n > 0)
        })
    }

    fn delete_account(&self, id: &str) -> StoreFuture<'_, bool> {
        let id = id.to_string();
        self.submit_admin(move |tx| {
            let n = exec(tx, "DELETE FROM wa_accounts WHERE id = ?1", [&id])
                .ctx("removing an account")?;
            Ok(n > 0)
        })
    }

    fn accounts(&self) -> Result<Vec<StoredAccount>, StoreError> {
        let rows: Vec<StoredAccount> = self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, name, portfolio, graph_api_base, graph_api_version, token,
                         subscribed, refreshed_ms, created_ms
                     FROM wa_accounts ORDER BY id",
                )
                .ctx("listing accounts")?;
            let rows = stmt
                .query_map([], account_row)
                .and_then(Iterator::collect)
                .ctx("listing accounts")?;
            Ok(rows)
        })?;
        let columns = Columns(&self.keys);
        rows.into_iter()
            .map(|mut a| {
                a.token = columns.open(ACCOUNT_TOKEN, &a.token)?;
                Ok(a)
            })
            .collect()
    }

    fn numbers(&self) -> Result<Vec<StoredNumber>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, account, display_phone_number, verified_name, quality_rating,
                         throughput_level, messaging_limit_tier, updated_ms
                     FROM wa_numbers ORDER BY account, id",
                )
                .ctx("listing numbers")?;
            let rows = stmt
                .query_map([], number_row)
                .and_then(Iterator::collect)
                .ctx("listing numbers")?;
            Ok(rows)
        })
    }

    fn update_number(
        &self,
        account: &str,
        display_digits: &str,
        messaging_limit_tier: Option<String>,
        quality_rating: Option<String>,
    ) -> StoreFuture<'_, bool> {
        let (account, digits) = (account.to_string(), display_digits.to_string());
        self.submit(move |tx| {
            let numbers: Vec<(String, Option<String>)> = tx
                .prepare_cached(
                    "SELECT id, display_phone_number FROM wa_numbers WHERE account = ?1",
                )
                .and_then(|mut stmt| {
                    stmt.query_map([&account], |row| Ok((row.get(0)?, row.get(1)?)))
                        .and_then(Iterator::collect)
                })
                .ctx("reading numbers")?;
            let mut changed = false;
            for (id, display) in numbers {
                let same = display.is_some_and(|d| {
                    d.chars().filter(char::is_ascii_digit).collect::<String>() == digits
                });
                if !same {
                    continue;
                }
                exec(
                    tx,
                    "UPDATE wa_numbers SET
                         messaging_limit_tier = COALESCE(?2, messaging_limit_tier),
                         quality_rating = COALESCE(?3, quality_rating), updated_ms = ?4
                     WHERE id = ?1",
                    params![id, messaging_limit_tier, quality_rating, db_int(now_ms())],
                )
                .ctx("updating a number")?;
                changed = true;
            }
            Ok(changed)
        })
    }

    fn replace_templates(
        &self,
        account: &str,
        templates: Vec<StoredTemplate>,
    ) -> StoreFuture<'_, ()> {
        let account = account.to_string();
        self.submit_admin(move |tx| {
            exec(
                tx,
                "DELETE FROM wa_templates WHERE account = ?1",
                [&account],
            )
            .ctx("replacing templates")?;
            for t in &templates {
                insert_template(tx, t)?;
            }
            Ok(())
        })
    }

    fn save_template(&self, template: StoredTemplate) -> StoreFuture<'_, ()> {
        self.submit_admin(move |tx| insert_template(tx, &template))
    }

    fn delete_templates(
        &self,
        account: &str,
        name: &str,
        language: Option<String>,
    ) -> StoreFuture<'_, u64> {
        let (account, name) = (account.to_string(), name.to_string());
        self.submit_admin(move |tx| {
            let n = exec(
                tx,
                "DELETE FROM wa_templates
                 WHERE account = ?1 AND name = ?2 AND (?3 IS NULL OR language = ?3)",
                params![account, name, language],
            )
            .ctx("deleting templates")?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn update_template(
        &self,
        account: &str,
        template_id: &str,
        name: &str,
        language: &str,
        change: TemplateChange,
    ) -> StoreFuture<'_, bool> {
        let (account, template_id, name, language) = (
            account.to_string(),
            template_id.to_string(),
            name.to_string(),
            language.to_string(),
        );
        self.submit(move |tx| {
            let (column, value) = match &change {
                TemplateChange::Status(v) => ("status", v),
                TemplateChange::Quality(v) => ("quality", v),
                TemplateChange::Category(v) => ("category", v),
            };
            // The column name is one of three literals above, never input.
            let sql = format!(
                "UPDATE wa_templates SET {column} = ?5, updated_ms = ?6
                 WHERE account = ?1 AND (template_id = ?2 OR (name = ?3 AND language = ?4))"
            );
            let n = exec(
                tx,
                &sql,
                params![
                    account,
                    template_id,
                    name,
                    language,
                    value,
                    db_int(now_ms())
                ],
            )
            .ctx("updating a template")?;
            Ok(n > 0)
        })
    }

    fn templates(&self, account: Option<&str>) -> Result<Vec<StoredTemplate>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT account, name, language, template_id, category, status, quality,
                         components, updated_ms
                     FROM wa_templates WHERE ?1 IS NULL OR account = ?1
                     ORDER BY account, name, language",
                )
                .ctx("listing templates")?;
            let rows = stmt
                .query_map([account], template_row)
                .and_then(Iterator::collect)
                .ctx("listing templates")?;
            Ok(rows)
        })
    }

    fn create_campaign(
        &self,
        campaign: NewCampaign,
        recipients: Vec<NewRecipient>,
    ) -> StoreFuture<'_, i64> {
        self.submit_admin(move |tx| {
            let now = db_int(now_ms());
            let c = &campaign;
            let id = tx
                .prepare_cached(
                    "INSERT INTO campaigns (endpoint, name, template, language, start_ms, state,
                         created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'scheduled', ?6, ?6)",
                )
                .and_then(|mut stmt| {
                    stmt.insert(params![
                        c.endpoint,
                        c.name,
                        c.template,
                        c.language,
                        db_int(c.start_ms),
                        now
                    ])
                })
                .ctx("creating a campaign")?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO campaign_recipients (campaign, seq, recipient, user_json, output,
                         updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .ctx("adding recipients")?;
            for (seq, r) in recipients.iter().enumerate() {
                stmt.execute(params![
                    id,
                    db_limit(seq),
                    r.recipient,
                    r.user_json,
                    r.output,
                    now
                ])
                .ctx("adding a recipient")?;
            }
            Ok(id)
        })
    }

    fn campaigns(&self, endpoint: Option<&str>) -> Result<Vec<CampaignRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    campaign_columns!(),
                    " FROM campaigns WHERE ?1 IS NULL OR endpoint = ?1 ORDER BY id DESC"
                ))
                .ctx("listing campaigns")?;
            let rows = stmt
                .query_map([endpoint], campaign_row)
                .and_then(Iterator::collect)
                .ctx("listing campaigns")?;
            Ok(rows)
        })
    }

    fn live_campaigns(&self) -> Result<Vec<CampaignRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    campaign_columns!(),
                    " FROM campaigns WHERE state IN ('scheduled', 'running') ORDER BY id"
                ))
                .ctx("listing live campaigns")?;
            let rows = stmt
                .query_map([], campaign_row)
                .and_then(Iterator::collect)
                .ctx("listing live campaigns")?;
            Ok(rows)
        })
    }

    fn campaign(&self, id: i64) -> Result<Option<CampaignRow>, StoreError> {
        self.read(|conn| {
            query_one(
                conn,
                concat!(
                    "SELECT ",
                    campaign_columns!(),
                    " FROM campaigns WHERE id = ?1"
                ),
                [id],
                campaign_row,
            )
            .optional()
            .ctx("reading a campaign")
        })
    }

    fn campaign_progress(&self, id: i64) -> Result<CampaignProgress, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT COALESCE(o.state, r.state) AS s, COUNT(*)
                     FROM campaign_recipients r LEFT JOIN outbox o ON o.id = r.outbox_id
                     WHERE r.campaign = ?1 GROUP BY s",
                )
                .ctx("reading campaign progress")?;
            let counts: Vec<(String, i64)> = stmt
                .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(Iterator::collect)
                .ctx("reading campaign progress")?;
            let mut p = CampaignProgress::default();
            for (state, n) in counts {
                let n = from_db(n);
                p.total += n;
                match state.as_str() {
                    "queued" => p.queued += n,
                    "pending" | "sending" => p.sending += n,
                    "sent" => p.sent += n,
                    "delivered" => p.delivered += n,
                    "read" => p.read += n,
                    "opted_out" => p.opted_out += n,
                    _ => p.failed += n,
                }
            }
            Ok(p)
        })
    }

    fn set_campaign_state(
        &self,
        id: i64,
        from: &'static [&'static str],
        state: &str,
        waiting: Option<String>,
    ) -> StoreFuture<'_, bool> {
        let state = state.to_string();
        // Admin (pause, resume, cancel) or a runner's transition: rare, and an answered
        // pause must survive a power cut.
        self.submit_admin(move |tx| {
            // Read and write in one transaction of the single writer: nothing changes the
            // campaign in between.
            let current: Option<String> = query_one(
                tx,
                "SELECT state FROM campaigns WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()
            .ctx("reading a campaign")?;
            if !current.is_some_and(|c| from.contains(&c.as_str())) {
                return Ok(false);
            }
            let now = db_int(now_ms());
            let finished = matches!(state.as_str(), "completed" | "cancelled").then_some(now);
            exec(
                tx,
                "UPDATE campaigns SET state = ?2, waiting = ?3, updated_ms = ?4,
                     finished_ms = COALESCE(?5, finished_ms)
                 WHERE id = ?1",
                params![id, state, waiting, now, finished],
            )
            .ctx("changing a campaign")?;
            Ok(true)
        })
    }

    fn claim_recipients(&self, claim: Claim) -> StoreFuture<'_, Claimed> {
        self.submit(move |tx| {
            let c = &claim;
            let now = c.now_ms;
            let mut out = Claimed::default();
            let live: Option<String> = query_one(
                tx,
                "SELECT state FROM campaigns WHERE id = ?1",
                [c.campaign],
                |row| row.get(0),
            )
            .optional()
            .ctx("reading a campaign")?;
            // A campaign paused or cancelled since the runner looked claims nothing.
            if live.as_deref() != Some("running") {
                out.stopped = true;
                return Ok(out);
            }
            let candidates: Vec<(String, String, String)> = tx
                .prepare_cached(
                    "SELECT recipient, user_json, output FROM campaign_recipients
                     WHERE campaign = ?1 AND state = 'queued' ORDER BY seq LIMIT ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![c.campaign, db_limit(c.max)], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .and_then(Iterator::collect)
                })
                .ctx("reading queued recipients")?;
            let mut counted = match c.tier_limit {
                Some(_) => ledger_count(tx, &c.portfolio, now)?,
                None => 0,
            };
            let since = db_int(now.saturating_sub(WINDOW_MS));
            for (recipient, user_json, output) in candidates {
                let opted: bool = query_one(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM opt_outs WHERE endpoint = ?1 AND user = ?2)",
                    params![c.endpoint, recipient],
                    |row| row.get(0),
                )
                .ctx("reading opt-outs")?;
                if opted {
                    exec(
                        tx,
                        "UPDATE campaign_recipients SET state = 'opted_out', reason = 'opted_out',
                             updated_ms = ?3
                         WHERE campaign = ?1 AND recipient = ?2",
                        params![c.campaign, recipient, db_int(now)],
                    )
                    .ctx("skipping a recipient")?;
                    out.opted_out += 1;
                    continue;
                }
                // A user whose service window is open costs nothing against the limit; one
                // already counted in the last 24 hours costs nothing more.
                let window_open: bool = query_one(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM windows
                         WHERE endpoint = ?1 AND conversation = ?2 AND last_inbound_ms > ?3)",
                    params![c.endpoint, recipient, since],
                    |row| row.get(0),
                )
                .ctx("reading a window")?;
                if !window_open {
                    let already: bool = query_one(
                        tx,
                        "SELECT EXISTS (SELECT 1 FROM business_initiated
                             WHERE portfolio = ?1 AND user = ?2 AND at_ms > ?3)",
                        params![c.portfolio, recipient, since],
                        |row| row.get(0),
                    )
                    .ctx("reading the ledger")?;
                    if !already {
                        if c.tier_limit.is_some_and(|limit| counted >= limit) {
                            out.limited = true;
                            break;
                        }
                        counted += 1;
                    }
                    exec(
                        tx,
                        "INSERT INTO business_initiated (portfolio, user, at_ms)
                         VALUES (?1, ?2, ?3)
                         ON CONFLICT (portfolio, user) DO UPDATE SET at_ms = excluded.at_ms",
                        params![c.portfolio, recipient, db_int(now)],
                    )
                    .ctx("writing the ledger")?;
                }
                let id = tx
                    .prepare_cached(
                        "INSERT INTO outbox (endpoint, conversation, recipient, business, output,
                             free_form, next_attempt_ms, created_ms, updated_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, ?6, ?6)",
                    )
                    .and_then(|mut stmt| {
                        stmt.insert(params![
                            c.endpoint,
                            recipient,
                            user_json,
                            c.business,
                            output,
                            db_int(now)
                        ])
                    })
                    .ctx("queueing a campaign message")?;
                exec(
                    tx,
                    "UPDATE campaign_recipients SET state = 'sending', outbox_id = ?3,
                         updated_ms = ?4
                     WHERE campaign = ?1 AND recipient = ?2",
                    params![c.campaign, recipient, id, db_int(now)],
                )
                .ctx("claiming a recipient")?;
                out.rows.push(OutboxRow {
                    id,
                    endpoint: c.endpoint.clone(),
                    conversation: recipient,
                    recipient: user_json,
                    business: c.business.clone(),
                    output,
                    free_form: false,
                    state: OutboxState::Pending,
                    attempts: 0,
                    parts_sent: 0,
                    next_attempt_ms: 0,
                    last_error: None,
                    created_ms: now,
                    known_inbound_ms: None,
                });
            }
            out.remaining = query_one(
                tx,
                "SELECT COUNT(*) FROM campaign_recipients WHERE campaign = ?1 AND state = 'queued'",
                [c.campaign],
                |row| row.get::<_, i64>(0),
            )
            .map(from_db)
            .ctx("counting queued recipients")?;
            Ok(out)
        })
    }

    fn campaign_contact(
        &self,
        endpoint: &str,
        user: &str,
        since_ms: u64,
    ) -> Result<Option<CampaignContact>, StoreError> {
        self.read(|conn| {
            query_one(
                conn,
                "SELECT c.id, c.name, c.template, r.updated_ms
                 FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign
                 WHERE r.recipient = ?2 AND c.endpoint = ?1 AND r.outbox_id IS NOT NULL
                   AND r.updated_ms >= ?3
                 ORDER BY r.updated_ms DESC LIMIT 1",
                params![endpoint, user, db_int(since_ms)],
                |row| {
                    Ok(CampaignContact {
                        campaign: row.get(0)?,
                        name: row.get(1)?,
                        template: row.get(2)?,
                        sent_ms: from_db(row.get(3)?),
                    })
                },
            )
            .optional()
            .ctx("reading a campaign contact")
        })
    }

    fn opt_out(&self, endpoint: &str, user: &str, reason: &str) -> StoreFuture<'_, bool> {
        let (endpoint, user, reason) = (endpoint.to_string(), user.to_string(), reason.to_string());
        self.submit(move |tx| insert_opt_out(tx, &endpoint, &user, &reason))
    }

    fn opt_in(&self, endpoint: &str, user: &str) -> StoreFuture<'_, bool> {
        let (endpoint, user) = (endpoint.to_string(), user.to_string());
        self.submit_admin(move |tx| {
            let n = exec(
                tx,
                "DELETE FROM opt_outs WHERE endpoint = ?1 AND user = ?2",
                params![endpoint, user],
            )
            .ctx("removing an opt-out")?;
            Ok(n > 0)
        })
    }

    fn opt_outs(&self, endpoint: &str) -> Result<Vec<OptOut>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT user, reason, at_ms FROM opt_outs WHERE endpoint = ?1 ORDER BY at_ms",
                )
                .ctx("listing opt-outs")?;
            let rows = stmt
                .query_map([endpoint], |row| {
                    Ok(OptOut {
                        user: row.get(0)?,
                        reason: row.get(1)?,
                        at_ms: from_db(row.get(2)?),
                    })
                })
                .and_then(Iterator::collect)
                .ctx("listing opt-outs")?;
            Ok(rows)
        })
    }

    fn replies_in_month(&self, endpoint: &str, month: &str) -> Result<u64, StoreError> {
        self.read(|conn| {
            query_one(
                conn,
                "SELECT replies FROM reply_quota WHERE endpoint = ?1 AND month = ?2",
                params![endpoint, month],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.map(from_db).unwrap_or(0))
            .ctx("reading the reply quota")
        })
    }

    fn quota_told(&self, endpoint: &str, month: &str, user: &str) -> Result<bool, StoreError> {
        self.read(|conn| {
            query_one(
                conn,
                "SELECT EXISTS (SELECT 1 FROM quota_told
                     WHERE endpoint = ?1 AND month = ?2 AND user = ?3)",
                params![endpoint, month, user],
                |row| row.get(0),
            )
            .ctx("reading the quota messages")
        })
    }
}
