//! `dingbind plan -f PATH`: what applying these manifests would do, without
//! doing it. For GitOps pull requests.

use std::{io::Write, path::PathBuf};

use jiff::Timestamp;

use crate::{
    api::TenantKey,
    core::binding::Step,
    dev::source,
    dingtalk,
    reconcile::{Reconciler, Secrets},
    store::Store,
    validate::{
        Severity, TenantValidator,
        admission::{self as accept, ACCEPTED, Accepted, Admission},
    },
};

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// A manifest file or folder (Tenants, and the Secrets they reference).
    #[arg(short = 'f', long = "filename")]
    pub path: PathBuf,
    /// Directory store with the tenants' current state.
    #[arg(long, env = "DINGBIND_STORE", hide_env_values = true, default_value = crate::store::DEFAULT_URL)]
    pub store: String,
    /// DingTalk base URL (both families) to read scopes and directories from.
    /// Without it (or `--live`) DingTalk is not read.
    #[arg(long, conflicts_with = "live")]
    pub dingtalk_url: Option<String>,
    /// Read scopes and directories from the real DingTalk, with the
    /// credentials in the manifests' Secrets.
    #[arg(long)]
    pub live: bool,
    /// The marketplace suite's Secret in the folder, for marketplace tenants
    /// (default: the folder's Secret named `dingbind-suite`).
    /// Its newest ticket is the store's.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub suite_secret: Option<TenantKey>,
}

/// Prints the plan; returns whether every manifest would be accepted.
pub async fn run(
    args: &PlanArgs,
    out: &mut impl Write,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    // Read-only: a plan never creates, migrates or writes the store.
    let opened = Store::open_read_only(&args.store).await?;
    if !opened.existed {
        writeln!(
            out,
            "note: the store {} does not exist yet: planning as for new tenants",
            opened.store.url()
        )?;
    }
    let store = opened.store;
    if !args.path.exists() {
        return Err(format!("{}: no such file or folder", args.path.display()).into());
    }
    // A file or a folder: its Tenants and the Secrets next to them.
    let manifests = source::read(&args.path);
    let mut all_ok = manifests.errors.is_empty();
    for e in &manifests.errors {
        writeln!(out, "ERROR: {e}")?;
    }
    // DingTalk is read only when the command says where.
    let read_dingtalk = args.dingtalk_url.is_some() || args.live;
    if !read_dingtalk {
        writeln!(
            out,
            "note: DingTalk is not read (give --dingtalk-url URL, or --live for the real service): scope and directory changes are not shown"
        )?;
    }
    let client = dingtalk::Client::new(match &args.dingtalk_url {
        Some(url) => dingtalk::Config::with_base_url(url),
        None => dingtalk::Config::default(),
    })?;
    let mut reconciler = Reconciler::new(store.clone(), client);
    if let Some(suite) = source::suite(&manifests.secrets, args.suite_secret.as_ref())? {
        reconciler = reconciler.with_suite(suite);
        reconciler.restore_suite_ticket().await?;
    }
    let validator = TenantValidator::new();
    for doc in &manifests.tenants {
        let key: TenantKey = doc.object_name().parse()?;
        writeln!(out, "Tenant {key} ({})", doc.file.display())?;
        let previous: Option<Accepted> = store.typed_document(&key, ACCEPTED).await?;
        let status = store
            .typed_document(&key, crate::reconcile::STATUS_DOCUMENT)
            .await?;
        let accepted = match accept::admit(&validator, doc, previous.as_ref(), status.as_ref()) {
            Admission::Refused(findings) => {
                all_ok = false;
                for f in findings.iter().filter(|f| f.severity == Severity::Error) {
                    writeln!(
                        out,
                        "  REFUSED: {}: {}",
                        if f.field.is_empty() { "-" } else { &f.field },
                        f.message
                    )?;
                }
                continue;
            }
            Admission::Unchanged => match previous {
                Some(p) => {
                    writeln!(out, "  unchanged")?;
                    p
                }
                None => continue,
            },
            Admission::Accepted(a, warnings) => {
                for w in warnings {
                    writeln!(out, "  warning: {}", w.message)?;
                }
                a
            }
        };
        let tenant = accept::tenant(&accepted, status)?;
        let ns = key.namespace.clone();
        let secrets = Secrets::resolve(&tenant, |name| {
            manifests
                .secrets
                .get(&TenantKey {
                    namespace: ns.clone(),
                    name: name.into(),
                })
                .map(|s| s.0.clone())
        });
        let plan = reconciler
            .plan(&tenant, &secrets, Timestamp::now(), read_dingtalk)
            .await?;
        match plan.step {
            Step::Suspended => writeln!(out, "  suspended: nothing happens")?,
            Step::Public => writeln!(out, "  public mode")?,
            Step::Unbound {
                unbind,
                rebind_requested: false,
            } => writeln!(
                out,
                "  stays in public mode (unbound for good on {})",
                unbind.at
            )?,
            Step::Unbound {
                unbind,
                rebind_requested: true,
            } => {
                all_ok = false;
                writeln!(
                    out,
                    "  REFUSED: unbound from DingTalk on {}; a tenant cannot return to DingTalk mode",
                    unbind.at
                )?;
            }
            Step::TrialEndedBeforeBinding { ended } => writeln!(
                out,
                "  not bound: the trial ended on {ended}, before the tenant was bound"
            )?,
            Step::UnbindTrialExpired { bound } => writeln!(
                out,
                "  UNBIND now from {bound}: the trial expired (irreversible)"
            )?,
            Step::BindingChanged { bound, declared } => {
                all_ok = false;
                let declared = declared.map_or_else(|| "no DingTalk app".into(), |d| d.to_string());
                writeln!(
                    out,
                    "  REFUSED: bound to {bound}; the binding identity cannot change to {declared}"
                )?;
            }
            Step::RequestedUnbind { bound } => writeln!(
                out,
                "  UNBIND requested (irreversible once carried out) from {bound}: waits until the creator has a contact and a password, and DingTalk shows the app disabled"
            )?,
            Step::Operate => writeln!(out, "  DingTalk mode")?,
        }
        if let Some(scope) = &plan.scope {
            if scope.is_empty() {
                writeln!(out, "  visible scope: unchanged")?;
            } else {
                writeln!(out, "  visible scope: {}", scope.summary())?;
            }
        }
        if let Some(sync) = &plan.sync {
            let d = &sync.guarded.diff;
            writeln!(
                out,
                "  directory: members +{} ~{} -{}, departments +{} ~{} -{} -> {} members",
                d.add_members.len(),
                d.update_members.len(),
                d.remove_members.len(),
                d.add_departments.len(),
                d.update_departments.len(),
                d.remove_departments.len(),
                sync.members_after
            )?;
            for m in d.add_members.iter().take(20) {
                writeln!(out, "    + {} ({})", m.name, m.userid)?;
            }
            for u in d.remove_members.iter().take(20) {
                writeln!(out, "    - {u}")?;
            }
            if sync.guarded.held > 0 {
                writeln!(
                    out,
                    "  {} removals would be held back by sync.maxDeletions until approved",
                    sync.guarded.held
                )?;
            }
        }
        if let Some(n) = &plan.note {
            writeln!(out, "  note: {n}")?;
        }
        if let Some(p) = &plan.problem {
            // Told to read DingTalk and could not: the plan is incomplete.
            all_ok = false;
            writeln!(out, "  ERROR: {p}")?;
        }
    }
    Ok(all_ok)
}
