//! The demo apps' tables.

use async_trait::async_trait;
use mandate_core::StoreError;
use mandate_core::clock::UnixTime;
use mandate_core::demo::{Customer, DemoStore, Invoice, InvoiceStatus, Todo};
use mandate_core::error::StoreResult;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::convert::*;

fn customer(r: &AnyRow) -> StoreResult<Customer> {
    Ok(Customer {
        id: text(r, "id")?,
        name: text(r, "name")?,
        email: opt_text(r, "email")?,
        created_at: int(r, "created_at")?,
    })
}

fn invoice(r: &AnyRow) -> StoreResult<Invoice> {
    let status = match text(r, "status")?.as_str() {
        "draft" => InvoiceStatus::Draft,
        "sent" => InvoiceStatus::Sent,
        other => return Err(StoreError::Corrupt(format!("invoice status {other}"))),
    };
    Ok(Invoice {
        id: text(r, "id")?,
        customer_id: text(r, "customer_id")?,
        amount_cents: int(r, "amount_cents")?,
        currency: text(r, "currency")?,
        status,
        created_at: int(r, "created_at")?,
        sent_at: opt_int(r, "sent_at")?,
    })
}

fn todo(r: &AnyRow) -> StoreResult<Todo> {
    Ok(Todo { id: text(r, "id")?, title: text(r, "title")?, done: flag(r, "done")?, created_at: int(r, "created_at")? })
}

#[async_trait]
impl DemoStore for SqlStore {
    async fn customers(&self, user_id: &str) -> StoreResult<Vec<Customer>> {
        let rows = sqlx::query(
            "SELECT id, name, email, created_at FROM demo_customers WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(customer).collect()
    }

    async fn customer(&self, user_id: &str, id: &str) -> StoreResult<Option<Customer>> {
        let row = sqlx::query("SELECT id, name, email, created_at FROM demo_customers WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(customer).transpose()
    }

    async fn insert_customer(&self, user_id: &str, c: &Customer) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO demo_customers (id, user_id, name, email, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&c.id)
            .bind(user_id)
            .bind(&c.name)
            .bind(c.email.clone())
            .bind(c.created_at),
        )
        .await?;
        Ok(())
    }

    async fn invoices(&self, user_id: &str) -> StoreResult<Vec<Invoice>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, amount_cents, currency, status, created_at, sent_at FROM demo_invoices \
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(invoice).collect()
    }

    async fn insert_invoice(&self, user_id: &str, i: &Invoice) -> StoreResult<()> {
        let status = match i.status {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Sent => "sent",
        };
        self.execute(sqlx::query(
            "INSERT INTO demo_invoices (id, user_id, customer_id, amount_cents, currency, status, created_at, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&i.id)
        .bind(user_id)
        .bind(&i.customer_id)
        .bind(i.amount_cents)
        .bind(&i.currency)
        .bind(status)
        .bind(i.created_at)
        .bind(i.sent_at)
        ).await?;
        Ok(())
    }

    async fn send_invoice(&self, user_id: &str, id: &str, now: UnixTime) -> StoreResult<Option<bool>> {
        let n = self.execute(sqlx::query("UPDATE demo_invoices SET status = 'sent', sent_at = $1 WHERE user_id = $2 AND id = $3 AND status = 'draft'")
            .bind(now)
            .bind(user_id)
            .bind(id)
            ).await?;
        if n == 1 {
            return Ok(Some(true));
        }
        let exists = sqlx::query("SELECT id FROM demo_invoices WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .is_some();
        Ok(exists.then_some(false))
    }

    async fn todos(&self, user_id: &str) -> StoreResult<Vec<Todo>> {
        let rows = sqlx::query(
            "SELECT id, title, done, created_at FROM demo_todos WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(todo).collect()
    }

    async fn insert_todo(&self, user_id: &str, t: &Todo) -> StoreResult<()> {
        self.execute(
            sqlx::query("INSERT INTO demo_todos (id, user_id, title, done, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&t.id)
                .bind(user_id)
                .bind(&t.title)
                .bind(i64::from(t.done))
                .bind(t.created_at),
        )
        .await?;
        Ok(())
    }

    async fn complete_todo(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE demo_todos SET done = 1 WHERE user_id = $1 AND id = $2").bind(user_id).bind(id),
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_todo(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let n = self
            .execute(sqlx::query("DELETE FROM demo_todos WHERE user_id = $1 AND id = $2").bind(user_id).bind(id))
            .await?;
        Ok(n == 1)
    }
}
