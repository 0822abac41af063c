//! `dingbind status`: every tenant's status, from the store (local mode) or
//! from the API server (`--kube`). `-o json` is stable (docs/status-json.md).

use std::io::Write;

use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use crate::{
    api::{Tenant, TenantKey, TenantStatus, condition},
    core::conditions,
    store::Store,
};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Directory store holding local mode's statuses.
    #[arg(long, env = "DINGBIND_STORE", hide_env_values = true, default_value = crate::store::DEFAULT_URL)]
    pub store: String,
    /// Read Tenants from the Kubernetes API server instead of the store.
    #[arg(long)]
    pub kube: bool,
    /// With --kube: only this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// One tenant in `-o json`.
#[derive(Debug, Serialize)]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub status: TenantStatus,
}

/// The `-o json` document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tenants: Vec<Row>,
}

pub async fn run(
    args: &StatusArgs,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut rows = if args.kube {
        from_kube(args.namespace.as_deref()).await?
    } else {
        from_store(&args.store).await?
    };
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    match args.output {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &Report { tenants: rows })?;
            writeln!(out)?;
        }
        Format::Table => write_table(&rows, out)?,
    }
    Ok(())
}

async fn from_store(url: &str) -> Result<Vec<Row>, crate::store::Error> {
    let store = Store::connect(url).await?;
    Ok(store
        .documents(crate::reconcile::STATUS_DOCUMENT)
        .await?
        .into_iter()
        .map(|(TenantKey { namespace, name }, v)| Row {
            namespace,
            name,
            status: serde_json::from_value(v).unwrap_or_default(),
        })
        .collect())
}

async fn from_kube(namespace: Option<&str>) -> Result<Vec<Row>, kube::Error> {
    let client = Client::try_default().await?;
    let api: Api<Tenant> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    Ok(api
        .list(&Default::default())
        .await?
        .into_iter()
        .map(|t| Row {
            namespace: t.namespace().unwrap_or_default(),
            name: t.name_any(),
            status: t.status.unwrap_or_default(),
        })
        .collect())
}

fn write_table(rows: &[Row], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<28} {:<9} {:<16} {:>8}  {:<6} {:<26} LAST SYNC",
        "TENANT", "MODE", "CORP", "MEMBERS", "READY", "REASON"
    )?;
    for r in rows {
        let s = &r.status;
        let ready = conditions::get(&s.conditions, condition::READY);
        writeln!(
            out,
            "{:<28} {:<9} {:<16} {:>8}  {:<6} {:<26} {}",
            format!("{}/{}", r.namespace, r.name),
            s.mode.map_or("-", |m| m.as_str()),
            s.bound_corp_id.as_deref().unwrap_or("-"),
            s.directory.as_ref().map_or(0, |d| d.members),
            ready.map_or("-", |c| c.status.as_str()),
            ready.map_or("-", |c| c.reason.as_str()),
            s.directory
                .as_ref()
                .and_then(|d| d.last_sync_time.as_ref())
                .map_or("-".to_string(), |t| t.0.to_string()),
        )?;
    }
    Ok(())
}
