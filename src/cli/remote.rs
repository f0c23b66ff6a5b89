//! The CLI twins on AWS Step Functions (`--backend aws`, or a context with `backend = "aws"`):
//! the operator commands through the same [`ControlPlane`] the console drives, with the output,
//! exit codes, confirmations, read-only rules and PHI masking of the embedded engine's. Every
//! action is audited in the local store of the data directory as the console's AWS audit hook
//! does it: an intent row before, the outcome after (source `cli`), with the execution's status
//! read afresh after the action ([`ControlPlane::status_now`]). Claims stay in the local store.
//! Commands that exist only for the embedded engine are refused, naming what to use instead.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use lightbox::backend::aws::{Aws, AwsContext};
use lightbox::backend::{BackendError, ControlPlane};
use lightbox::outbox::Action as OutboxAction;

/// How long a command waits, at most, for the backend to have read once what it needs (the
/// list of executions, the execution log, the histories behind the review queue).
const WARM_FOR: Duration = Duration::from_secs(30);
/// A task token given whole is sent as given even when the review queue does not list it
/// (Step Functions says whether it exists): tokens are at least this long, prefixes shorter.
const WHOLE_TOKEN: usize = 64;
/// Events of the AWS feed read to find `events list`'s newest matches.
const FEED_READ: usize = 5000;

/// A command that exists only for the embedded engine: its name and what to use on AWS instead.
pub fn embedded_only(command: &Command) -> Option<(&'static str, &'static str)> {
    Some(match command {
        Command::StateMachines(SmCmd::Create { .. }) => {
            ("state-machines create", "create state machines in AWS (aws stepfunctions create-state-machine, CloudFormation or the CDK)")
        }
        Command::StateMachines(SmCmd::List) => ("state-machines list", "aws stepfunctions list-state-machines"),
        Command::Executions(ExecCmd::Start { .. }) => ("executions start", "aws stepfunctions start-execution"),
        Command::Executions(ExecCmd::Release { .. }) => {
            ("executions release", "Step Functions has no quarantine; `aws stepfunctions redrive-execution` tries a failed execution again")
        }
        Command::Engine { .. } => {
            ("engine", "Step Functions runs the workflows; `lightbox engine` without --backend aws runs the embedded engine")
        }
        Command::Serve { .. } => ("serve", "`lightbox serve` without --backend aws serves the embedded engine"),
        Command::Demo { .. } => ("demo", "`lightbox demo` without --backend aws runs the demo hospital on the embedded engine"),
        Command::Bench { .. } => {
            ("bench", "`lightbox bench` without --backend aws (`bench --aws-calls` measures the AWS backend against a scripted endpoint)")
        }
        Command::Store(_) => {
            ("store", "`lightbox store` without --backend aws checks and backs up the local store (claims and the audit log)")
        }
        Command::Dependencies(_) => (
            "dependencies",
            "dependency breakers and holds guard the embedded engine's tasks; on AWS, retries and quotas are the service's",
        ),
        _ => return None,
    })
}

/// The refusal of an embedded-only command on AWS (exit 2).
pub fn refusal(command: &Command) -> Option<UsageError> {
    embedded_only(command).map(|(name, instead)| {
        UsageError(format!("`lightbox {name}` works on the embedded engine only, not on --backend aws; instead: {instead}"))
    })
}

/// For the commands handled before the config is read (`bench`, `store check FILE`): their
/// refusal when `--backend aws`, or the context chosen (`--context`, else the config's), says
/// AWS. A config that cannot be read refuses nothing here (the command reports it, if it reads one).
pub fn refuse_early(cli: &Cli, command: &Command) -> Option<UsageError> {
    if !matches!(command, Command::Bench { .. } | Command::Store(StoreCmd::Check { file: Some(_) })) {
        return None;
    }
    let aws = match cli.backend.as_deref() {
        Some(b) => b == "aws",
        None => load_config(cli).ok().and_then(|c| c.with_context(cli.context.as_deref()).ok()).is_some_and(|c| c.remote.is_some()),
    };
    if aws { refusal(command) } else { None }
}

/// Run `command` on the AWS context `name`. `engine` holds the local store of the data
/// directory (`db`): the audit log, claims and reveals.
pub fn run(
    command: &Command,
    ctx: &Ctx,
    config: &Config,
    engine: &mut Engine,
    db: &Path,
    name: &str,
    aws: &AwsContext,
) -> Result<ExitCode> {
    if let Some(r) = refusal(command) {
        return Err(r.into());
    }
    // The audit log is the local store's, whichever backend acted.
    if let Command::Audit(_) = command {
        return dispatch(command, ctx, engine);
    }
    let conn = rusqlite::Connection::open(db).with_context(|| format!("opening the local audit store {}", db.display()))?;
    let _ = conn.busy_timeout(Duration::from_secs(10));
    let cp = Aws::connect(name, aws, Some(conn))?.with_compensation(ctx.compensation.clone()).with_phi(ctx.phi.clone());
    let mut r = Remote {
        cp,
        name: name.to_string(),
        has_log: aws.log_group.is_some(),
        has_event_groups: !aws.event_log_groups.is_empty(),
        ctx,
        engine,
    };
    match command {
        Command::Executions(cmd) => r.executions(cmd),
        Command::Tasks(cmd) => r.tasks(cmd),
        Command::Events(EventsCmd::List { pattern, limit, phi }) => r.events(config, pattern.as_deref(), *limit, phi),
        Command::Slo(SloCmd::List { all, at, window }) => r.slo(*all, at.as_deref(), window),
        Command::Outbox(cmd) => r.outbox(cmd),
        _ => bail!("internal error: `{command:?}` has no AWS twin"),
    }
}

struct Remote<'a> {
    cp: Aws,
    name: String,
    has_log: bool,
    /// The context reads EventBridge events from `event_log_groups`.
    has_event_groups: bool,
    ctx: &'a Ctx,
    /// The local store: the audit log, reveals.
    engine: &'a mut Engine,
}

/// What a command needs the backend to have read once before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The watched machines' executions.
    List,
    /// And the review queue: the execution log, and the histories of listed executions.
    Reviews,
    /// And the execution log (the events feed).
    Events,
}

impl Remote<'_> {
    fn conn(&self) -> &rusqlite::Connection {
        self.engine.store.conn()
    }

    /// Tick the backend until it has read what `need` says once, for at most [`WARM_FOR`].
    /// Nothing listed and an error: the error (exit 1). Listed, but something short of what was
    /// needed: a warning, and the command answers from what was read.
    fn warm(&mut self, need: Need) -> Result<()> {
        if need != Need::List && !self.has_log {
            warn_err!(
                "lightbox: note: AWS context {} has no log_group: {}",
                esc(&self.name),
                if need == Need::Events && self.has_event_groups {
                    "workflow events come from the machines' execution log, so only the EventBridge events of event_log_groups are listed (set log_group in the context)"
                } else if need == Need::Events {
                    "workflow events come from the machines' execution log, so there are none to list (set log_group in the context)"
                } else {
                    "the review queue is read from the executions' histories instead of the execution log (set log_group in the context)"
                }
            );
        }
        let end = Instant::now() + WARM_FOR;
        // No call of the backend outlasts the wait (a slow endpoint's calls are cut off).
        self.cp.set_deadline(Some(end));
        let r = self.warm_until(need, end);
        self.cp.set_deadline(None);
        r
    }

    fn warm_until(&mut self, need: Need, end: Instant) -> Result<()> {
        loop {
            self.cp.tick()?;
            let r = self.cp.readiness();
            let log_done = need == Need::List || r.log_read != Some(false);
            let histories_done = need != Need::Reviews || r.unread == 0;
            if r.listed && log_done && histories_done {
                return Ok(());
            }
            // Out of time first: a call cut off at the end would read as a lost network.
            if Instant::now() >= end {
                if !r.listed {
                    bail!("AWS context {}: the executions could not be listed within {} s", self.name, WARM_FOR.as_secs());
                }
                warn_err!(
                    "lightbox: warning: AWS context {}: within {} s {}; what follows may be incomplete",
                    esc(&self.name),
                    WARM_FOR.as_secs(),
                    if !log_done {
                        "the execution log was not read".to_string()
                    } else {
                        format!("{} execution histories were not read (the API budget)", r.unread)
                    }
                );
                return Ok(());
            }
            if let Some(c) = &r.condition {
                if !r.listed {
                    bail!("AWS context {}: {c}", self.name);
                }
                warn_err!("lightbox: warning: AWS context {}: {c}; what follows may be incomplete", esc(&self.name));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250).min(end.saturating_duration_since(Instant::now())));
        }
    }

    /// An execution, or the embedded engine's error for one that does not exist.
    fn execution(&mut self, arn: &str) -> Result<ExecutionSummary> {
        Ok(self.cp.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?)
    }

    /// Carry out an action on execution `arn` with its audit record: the intent row first,
    /// the outcome after with the status before (`row`) and the status read afresh after.
    fn audited(
        &mut self,
        entry: audit::AuditEntry,
        arn: &str,
        row: Option<&ExecutionSummary>,
        act: impl FnOnce(&mut Aws) -> std::result::Result<(), BackendError>,
    ) -> Result<()> {
        let intent = audit::begin(self.conn(), &entry, Utc::now())?;
        let res = act(&mut self.cp);
        crash_point();
        let after = self.status_after(arn);
        let entry = entry.before(status_json(row)).after(after).outcome(outcome_of(&res));
        audit::finish(self.conn(), intent, &entry, Utc::now())?;
        Ok(res?)
    }

    /// What the audit record's `after` says: the status read afresh after the action.
    fn status_after(&mut self, arn: &str) -> Value {
        match self.cp.status_now(arn) {
            Ok(Some(s)) => s.to_json(),
            Ok(None) => json!({"status": null}),
            Err(e) => {
                tracing::warn!(error = %e, "an execution's status could not be looked up for the audit log");
                json!({"status": null})
            }
        }
    }

    /// Every history event of an execution, oldest first (the backend pages and caches them).
    fn full_history(&mut self, arn: &str) -> Result<Vec<lightbox::history::HistoryEvent>> {
        let mut out: Vec<lightbox::history::HistoryEvent> = vec![];
        loop {
            let after = out.last().map(|e| e.id).unwrap_or(0);
            let page = self.cp.history(arn, after, 1000)?;
            if page.is_empty() || out.len() >= 25_000 {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    // ----- executions ---------------------------------------------------------------

    fn executions(&mut self, cmd: &ExecCmd) -> Result<ExitCode> {
        let ctx = self.ctx;
        match cmd {
            ExecCmd::List { state_machine, status, redriven, max_results, next_token, phi } => {
                let reveal = match reveal_check(self.engine, ctx, phi, None)? {
                    Ok(r) => r,
                    Err(code) => return Ok(code),
                };
                let status = match status {
                    Some(s) => Some(ExecutionStatus::parse(s).with_context(|| {
                        format!(
                            "--status {s:?} is not an execution status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE)"
                        )
                    })?),
                    None => None,
                };
                let after = match next_token {
                    Some(t) => Some(decode_token(t)?),
                    None => None,
                };
                self.warm(Need::List)?;
                let limit = (*max_results).clamp(1, 1000);
                let by_arn = state_machine.as_ref().filter(|s| s.starts_with("arn:")).cloned();
                let mut rows =
                    self.cp.executions(&ExecutionFilter { state_machine_arn: by_arn, status, redriven: *redriven, limit: 0, after })?;
                // A machine named, not given by ARN: the executions of the watched machine of that name.
                if let Some(n) = state_machine.as_ref().filter(|s| !s.starts_with("arn:")) {
                    rows.retain(|r| r.state_machine_arn.rsplit(':').next() == Some(n.as_str()));
                }
                let more = rows.len() > limit;
                rows.truncate(limit);
                if reveal {
                    reveal_record(self.engine, ctx, phi, None)?;
                }
                print_executions(ctx, &rows, more, reveal);
            }
            ExecCmd::Describe { arn, phi } => {
                let reveal = match reveal_check(self.engine, ctx, phi, Some(arn))? {
                    Ok(r) => r,
                    Err(code) => return Ok(code),
                };
                let mut r = self.execution(arn)?;
                if reveal {
                    reveal_record(self.engine, ctx, phi, Some(arn))?;
                } else {
                    let known = ctx.phi.identifiers_in_text(&r.input);
                    r.cause = r.cause.map(|c| ctx.phi.mask_text_with(&c, &known));
                    r.error = r.error.map(|c| ctx.phi.mask_text_with(&c, &known));
                }
                let cp = &mut self.cp;
                let links = lightbox::ops::compensation::links(&ctx.compensation, &r, |a| cp.execution(a).map(|x| x.is_some()))?;
                print_describe(ctx, &r, &links, reveal);
            }
            ExecCmd::History { arn, reverse_order, max_results, next_token, phi } => {
                let reveal = match reveal_check(self.engine, ctx, phi, Some(arn))? {
                    Ok(r) => r,
                    Err(code) => return Ok(code),
                };
                let row = self.execution(arn)?;
                let known = ctx.phi.identifiers_in_text(&row.input);
                let after: i64 = match next_token {
                    Some(t) => t.parse().with_context(|| format!("--next-token {t:?} is not a token this command printed"))?,
                    None => 0,
                };
                let limit = (*max_results).clamp(1, 1000);
                let all = self.full_history(arn)?;
                // The page the embedded engine's store gives: after `after` oldest first, or
                // before it newest first.
                let events: Vec<_> = if *reverse_order {
                    let before = if after <= 0 { i64::MAX } else { after };
                    all.into_iter().rev().filter(|e| e.id < before).take(limit + 1).collect()
                } else {
                    all.into_iter().filter(|e| e.id > after).take(limit + 1).collect()
                };
                let more = events.len() > limit;
                let events = &events[..events.len().min(limit)];
                if reveal {
                    reveal_record(self.engine, ctx, phi, Some(arn))?;
                }
                print_history(ctx, events, more, reveal, &known);
            }
            ExecCmd::Redrive { arn } => {
                ctx.refuse("redrive")?;
                let row = self.cp.execution(arn)?;
                // Say what the redrive will do (or why it cannot), as the console's dialog does.
                if let (Some(row), false) = (&row, ctx.json) {
                    let defs = self.cp.definitions_of(std::slice::from_ref(arn))?;
                    if let Ok(c) = lightbox::ops::consequence::redrive(defs.get(arn.as_str()).map(|d| d.as_ref()), row, Utc::now()) {
                        warn_err!("consequence: {}", esc(&c.text));
                    }
                }
                let entry = ctx.entry(audit::Action::Redrive).execution(arn.clone());
                self.audited(entry, arn, row.as_ref(), |cp| cp.redrive(arn))?;
                let r = self.execution(arn)?;
                if ctx.json {
                    print_json(&json!({"redriveDate": r.redrive.map(ts)}));
                } else {
                    say!("{} redriven ({}), now {}", r.arn, r.redrive_count, r.status);
                }
            }
            ExecCmd::Stop { arn, error, cause } => {
                ctx.refuse("stop")?;
                let row = self.cp.execution(arn)?;
                let mut entry = ctx.entry(audit::Action::Stop).execution(arn.clone());
                if let Some(c) = cause.clone().or(error.clone()) {
                    entry = entry.reason(c);
                }
                self.audited(entry, arn, row.as_ref(), |cp| {
                    cp.stop(arn, error.as_deref().unwrap_or_default(), cause.as_deref().unwrap_or_default())
                })?;
                let r = self.execution(arn)?;
                if ctx.json {
                    print_json(&json!({"stopDate": r.stop.map(ts)}));
                } else {
                    say!("{} {}", r.arn, r.status);
                }
            }
            ExecCmd::Compensate { arn, reason, reason_code, dry_run } => {
                return self.compensate(arn, (reason.as_deref(), reason_code.as_deref()), *dry_run);
            }
            ExecCmd::Start { .. } | ExecCmd::Release { .. } => bail!("internal error: this command is refused on AWS before this"),
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `executions compensate` on AWS: the plan from the execution's history, then, unless
    /// --dry-run, the configured compensation machine started once (audited: intent, outcome).
    fn compensate(&mut self, arn: &str, reason: (Option<&str>, Option<&str>), dry_run: bool) -> Result<ExitCode> {
        use lightbox::ops::compensation::{CompensationError, Outcome};
        let ctx = self.ctx;
        let reason = compensate_reason(ctx, reason, dry_run)?;
        let known = self.cp.execution(arn)?.map(|r| ctx.phi.identifiers_in_text(&r.input)).unwrap_or_default();
        let res: std::result::Result<Outcome, BackendError> = if dry_run {
            self.cp.compensation_plan(arn)
        } else {
            let entry = ctx.entry(audit::Action::Compensate).execution(arn.to_string()).reason(reason.clone());
            let intent = audit::begin(self.conn(), &entry, Utc::now())?;
            // The plan before (a compensation that exists already), the start, then the plan
            // again, which finds the compensation this call started.
            let res = self.cp.compensation_plan(arn).and_then(|before| {
                self.cp.compensate(arn, &reason)?;
                let now = self.cp.compensation_plan(arn)?;
                Ok(match before.existing {
                    Some(_) => now,
                    None => Outcome { plan: now.plan, started: now.existing, existing: None },
                })
            });
            crash_point();
            let mut after = self.status_after(arn);
            let entry = match &res {
                Ok(o) => {
                    if let Some(m) = after.as_object_mut() {
                        m.extend(compensation_after(o));
                    }
                    entry.after(after)
                }
                Err(e) => entry.after(after).outcome(audit::Outcome::Error(ctx.phi.mask_text_with(&e.to_string(), &known))),
            };
            audit::finish(self.conn(), intent, &entry, Utc::now())?;
            res
        };
        let o = match res {
            Ok(o) => o,
            Err(BackendError::Compensation(e @ (CompensationError::NotCompensable { .. } | CompensationError::NotConfigured { .. }))) => {
                return Err(UsageError(e.to_string()).into());
            }
            Err(e) => return Err(e.into()),
        };
        print_compensation(ctx, &o, &known, dry_run);
        Ok(ExitCode::SUCCESS)
    }

    // ----- tasks ----------------------------------------------------------------------

    fn tasks(&mut self, cmd: &TaskCmd) -> Result<ExitCode> {
        let ctx = self.ctx;
        let j = ctx.json;
        match cmd {
            TaskCmd::List { status, execution, max_results, phi } => {
                let st = status.to_ascii_uppercase();
                if !["PENDING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "ALL"].contains(&st.as_str()) {
                    bail!("--status {status:?} is not a token status (PENDING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, ALL)");
                }
                if st != "PENDING" && st != "ALL" {
                    return Err(UsageError(format!(
                        "--status {st}: on --backend aws only pending task tokens are known (the review queue is read from the execution log); \
                         answered ones show in `lightbox executions history`"
                    ))
                    .into());
                }
                let reveal = match reveal_check(self.engine, ctx, phi, execution.as_deref())? {
                    Ok(r) => r,
                    Err(code) => return Ok(code),
                };
                self.warm(Need::Reviews)?;
                let mut rows = self.cp.pending_tasks(100_000)?;
                if let Some(a) = execution {
                    rows.retain(|t| &t.execution_arn == a);
                }
                rows.truncate(*max_results);
                if reveal {
                    reveal_record(self.engine, ctx, phi, execution.as_deref())?;
                }
                print_tasks(ctx, &rows, reveal);
            }
            TaskCmd::Approve { token, output, override_claim, reason, reason_code } => {
                let out = output.clone().unwrap_or_else(|| "{}".into());
                let t = self.task(audit::Action::Approve, token)?;
                let (acting, note) = self.acting_on(&t, *override_claim, (reason.as_deref(), reason_code.as_deref()), None)?;
                self.token_action(audit::Action::Approve, &t, note, |cp, tok| cp.approve(tok, &out, &acting)).map_err(claim_hint_remote)?;
                task_done(j, &answered(&t, "SUCCEEDED"), "approved", &ctx.user);
            }
            TaskCmd::Reject { token, error, cause, override_claim, reason, reason_code } => {
                let why = [error.clone(), cause.clone()].into_iter().flatten().collect::<Vec<_>>().join(": ");
                let t = self.task(audit::Action::Reject, token)?;
                let over = (reason.as_deref(), reason_code.as_deref());
                let (acting, note) = self.acting_on(&t, *override_claim, over, Some(error.as_deref().unwrap_or("")))?;
                let note = [Some(why).filter(|w| !w.is_empty()), note].into_iter().flatten().collect::<Vec<_>>().join("; ");
                self.token_action(audit::Action::Reject, &t, Some(note), |cp, tok| {
                    cp.reject(tok, error.as_deref().unwrap_or_default(), cause.as_deref().unwrap_or_default(), &acting)
                })
                .map_err(claim_hint_remote)?;
                task_done(j, &answered(&t, "FAILED"), "rejected", &ctx.user);
            }
            TaskCmd::Heartbeat { token } => {
                let t = self.task(audit::Action::Heartbeat, token)?;
                self.token_action(audit::Action::Heartbeat, &t, None, |cp, tok| cp.heartbeat(tok))?;
                task_done(j, &answered(&t, "PENDING"), "heartbeat sent", &ctx.user);
            }
            TaskCmd::Claim { token } => {
                let by = ctx.user.clone();
                let t = self.task(audit::Action::Claim, token)?;
                self.token_action(audit::Action::Claim, &t, None, |cp, tok| cp.claim(tok, &by))?;
                let mut t = answered(&t, "PENDING");
                t.claimed_by = Some(ctx.user.clone());
                task_done(j, &t, "claimed", &ctx.user);
            }
            TaskCmd::Unclaim { token } => {
                let by = ctx.user.clone();
                let t = self.task(audit::Action::Unclaim, token)?;
                self.token_action(audit::Action::Unclaim, &t, None, |cp, tok| cp.unclaim(tok, &by))?;
                let mut t = answered(&t, "PENDING");
                t.claimed_by = None;
                task_done(j, &t, "unclaimed", &ctx.user);
            }
            TaskCmd::Escalate { token, override_claim, reason, reason_code } => {
                let cause = escalation_cause(ctx, reason.as_deref(), reason_code.as_deref())?;
                let over = (reason.as_deref().filter(|_| *override_claim), reason_code.as_deref());
                let t = self.task(audit::Action::Escalate, token)?;
                let (acting, note) = self.acting_on(&t, *override_claim, over, Some(lightbox::engine::ESCALATED))?;
                let note = [Some(cause.clone()), note].into_iter().flatten().collect::<Vec<_>>().join("; ");
                self.token_action(audit::Action::Escalate, &t, Some(note), |cp, tok| cp.escalate(tok, &cause, &acting))
                    .map_err(claim_hint_remote)?;
                task_done(j, &answered(&t, "FAILED"), "escalated", &ctx.user);
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The pending task a token argument names: the whole token, or a unique prefix of at
    /// least 8 characters, looked up in the review queue (read once first). A whole token the
    /// queue does not list is sent as given: Step Functions says whether it exists.
    fn task(&mut self, action: audit::Action, token: &str) -> Result<PendingTask> {
        self.ctx.refuse(action.as_str())?;
        check_token_arg(token)?;
        let token = token.trim().trim_end_matches('…');
        if token.len() > 1024 {
            return Err(EngineError::InvalidToken(token.to_string()).into());
        }
        self.warm(Need::Reviews)?;
        let queue = self.cp.pending_tasks(100_000)?;
        if let Some(t) = queue.iter().find(|t| t.token == token) {
            return Ok(t.clone());
        }
        let mut found: Vec<&PendingTask> = queue.iter().filter(|t| t.token.starts_with(token)).collect();
        match found.len() {
            1 => return Ok(found.remove(0).clone()),
            0 => {}
            _ => return Err(EngineError::InvalidToken(format!("{token} (more than one token starts so: give more characters)")).into()),
        }
        if token.len() < WHOLE_TOKEN {
            return Err(EngineError::TaskDoesNotExist(token.to_string()).into());
        }
        Ok(PendingTask::unknown(token, Utc::now()))
    }

    /// Who answers, and the audit note for a claim override; says on stderr first what the
    /// answer will do (`error`: the failure it sends; `None`: success), as the local CLI does.
    fn acting_on(
        &mut self,
        t: &PendingTask,
        override_claim: bool,
        (reason, code): (Option<&str>, Option<&str>),
        error: Option<&str>,
    ) -> Result<(lightbox::engine::Acting, Option<String>)> {
        let ctx = self.ctx;
        let mut acting = lightbox::engine::Acting::user(ctx.user.clone());
        if override_claim {
            acting = acting.overriding(checked_reason(ctx, code, reason)?.to_string());
        }
        let holder = t.claimed_by.clone().filter(|h| *h != ctx.user);
        let note = match (&holder, &acting.override_reason) {
            (Some(h), Some(r)) => Some(format!("override of the claim held by {h}: {r}")),
            _ => None,
        };
        if !ctx.json && !t.execution_arn.is_empty() {
            let arn = t.execution_arn.clone();
            let defs = self.cp.definitions_of(std::slice::from_ref(&arn)).unwrap_or_default();
            if let Some(g) = defs.get(&arn).and_then(|d| lightbox::ops::consequence::gate(d, &t.state_name)) {
                let c = match error {
                    None => g.on_success(),
                    Some(e) => g.on_error(e),
                };
                // The error an operator types is free text (it may quote the patient): masked.
                let known = self.cp.execution(&arn).ok().flatten().map(|x| ctx.phi.identifiers_in_text(&x.input)).unwrap_or_default();
                warn_err!("consequence: {}", esc(&ctx.phi.mask_text_with(&c.text, &known)));
            }
        }
        Ok((acting, note))
    }

    /// An action on a task token, audited as the console's AWS hook does: the intent naming
    /// the token and its execution, the action, then the outcome with the status read afresh.
    fn token_action(
        &mut self,
        action: audit::Action,
        t: &PendingTask,
        reason: Option<String>,
        f: impl FnOnce(&mut Aws, &str) -> lightbox::backend::Result<()>,
    ) -> Result<()> {
        let arn = Some(t.execution_arn.clone()).filter(|a| !a.is_empty());
        let mut entry = self.ctx.entry(action).token(t.token.clone());
        if let Some(a) = &arn {
            entry = entry.execution(a.clone());
        }
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            entry = entry.reason(r);
        }
        let intent = audit::begin(self.conn(), &entry, Utc::now())?;
        let r = f(&mut self.cp, &t.token);
        crash_point();
        if let Some(a) = &arn {
            entry = entry.after(self.status_after(a));
        }
        entry = entry.outcome(outcome_of(&r));
        audit::finish(self.conn(), intent, &entry, Utc::now())?;
        Ok(r?)
    }

    // ----- events, SLO clocks, the outbox ---------------------------------------------

    /// `events list` on AWS: the feed the backend reads from the execution log, as the
    /// EventBridge events the embedded engine publishes (status changes and task events).
    fn events(&mut self, config: &Config, pattern: Option<&str>, limit: usize, phi: &RevealArgs) -> Result<ExitCode> {
        use lightbox::events::feed;
        let ctx = self.ctx;
        let named = feed::compile_named(&config.event_patterns)?;
        let pattern = match pattern {
            Some(p) if p.starts_with('@') => Some(std::borrow::Cow::Owned(
                lightbox::events::pattern::Pattern::parse(&json_arg(p, "--pattern")?).map_err(|e| UsageError(e.to_string()))?,
            )),
            Some(p) => Some(feed::resolve(p, &named).map_err(|e| UsageError(e.to_string()))?),
            None => None,
        };
        let reveal = match reveal_check(self.engine, ctx, phi, None)? {
            Ok(r) => r,
            Err(code) => return Ok(code),
        };
        self.warm(Need::Events)?;
        let limit = limit.clamp(1, 10_000);
        let feed = self.cp.events_after(None, FEED_READ)?;
        let mut rows: HashMap<String, Option<ExecutionSummary>> = HashMap::new();
        let mut shown = vec![];
        for fe in feed.iter().rev() {
            if shown.len() >= limit {
                break;
            }
            let row = match rows.get(&fe.execution_arn) {
                Some(r) => r.clone(),
                None => {
                    let r = self.cp.execution(&fe.execution_arn).ok().flatten();
                    rows.insert(fe.execution_arn.clone(), r.clone());
                    r
                }
            };
            // An EventBridge event from an event log group is listed as read (its detail masked
            // already), whether or not it names an execution that exists; a history event
            // becomes an event with its execution's facts.
            let (event, input) = match (&fe.envelope, &row) {
                (Some(e), _) => (Some(e.clone()), row.as_ref().map(|r| r.input.as_str()).unwrap_or_default()),
                (None, Some(row)) => {
                    let facts = lightbox::events::ExecutionFacts {
                        execution_arn: &row.arn,
                        state_machine_arn: &row.state_machine_arn,
                        name: &row.name,
                        start: row.start,
                        input: &row.input,
                        redrive_count: row.redrive_count,
                        redrive_date: row.redrive,
                    };
                    let event = lightbox::events::status_change(&facts, &fe.event)
                        .or_else(|| lightbox::events::task_event(&facts, &fe.event, fe.state_name()));
                    (event, row.input.as_str())
                }
                (None, None) => continue,
            };
            let Some(event) = event else { continue };
            if pattern.as_deref().is_some_and(|p| !p.matches(&event)) {
                continue;
            }
            shown.push(if reveal { event } else { ctx.phi.mask_envelope(&event, &ctx.phi.identifiers_in_text(input)) });
        }
        if reveal {
            reveal_record(self.engine, ctx, phi, None)?;
        }
        print_events(ctx, &shown);
        Ok(ExitCode::SUCCESS)
    }

    /// `slo list` on AWS: the console's view 5 projection (the watched executions and their
    /// histories) with the SLOs in force.
    fn slo(&mut self, all: bool, at: Option<&str>, window: &str) -> Result<ExitCode> {
        let (now, window) = slo_args(at, window)?;
        let slos = slos_in_force(self.engine, &self.ctx.slo)?;
        let clocks = if slos.is_empty() {
            vec![]
        } else {
            self.warm(Need::List)?;
            let rows = self.cp.executions(&ExecutionFilter { limit: 5000, ..Default::default() })?;
            let cp = &mut self.cp;
            lightbox::ops::slo::collect(&rows, &slos, now, window, |arn| cp.history(arn, 0, 10_000))?
        };
        print_slo(self.ctx, &slos, &clocks, now, window, all);
        Ok(ExitCode::SUCCESS)
    }

    /// `outbox …` on AWS: the relay behind the context's `outbox_endpoint`; actions are
    /// audited here (intent, outcome) and by the server under the caller's key.
    fn outbox(&mut self, cmd: &OutboxCmd) -> Result<ExitCode> {
        let ctx = self.ctx;
        if let OutboxCmd::List { sink, parked, limit } = cmd {
            let snap = self.cp.outbox(*limit)?;
            if let Some(n) = sink
                && !snap.sinks.iter().any(|s| &s.name == n)
            {
                return Err(lightbox::outbox::OutboxError::UnknownSink(n.clone()).into());
            }
            let keep = |name: &str| sink.as_ref().is_none_or(|n| n == name);
            let status: Vec<_> = snap.sinks.into_iter().filter(|s| keep(&s.name)).collect();
            let mut rows: Vec<_> = snap.rows.into_iter().filter(|r| keep(&r.sink) && (!parked || r.parked)).collect();
            // At most `limit` rows per sink, in the order the server gave them.
            let mut per: HashMap<String, usize> = HashMap::new();
            rows.retain(|r| {
                let n = per.entry(r.sink.clone()).or_default();
                *n += 1;
                *n <= *limit
            });
            if status.is_empty() && !ctx.json {
                // The sinks are the server's: its config, not this one, would name them.
                say!("no sinks configured at the outbox endpoint of AWS context {} (the server's [[outbox.sinks]])", esc(&self.name));
            } else {
                print_outbox(ctx, &status, &rows, false);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let action = outbox_action(ctx, cmd)?;
        ctx.refuse(action.name())?;
        let mut entry = ctx.entry(audit::Action::Other(action.name().into()));
        if let OutboxAction::Park { reason, .. } | OutboxAction::Pause { reason, .. } = &action {
            entry = entry.reason(reason.clone());
        }
        let intent = audit::begin(self.conn(), &entry, Utc::now())?;
        let res = self.cp.outbox_act(&action);
        crash_point();
        let entry = entry.after(json!({"sink": action.sink()})).outcome(outcome_of(&res));
        audit::finish(self.conn(), intent, &entry, Utc::now())?;
        let said = res?;
        print_outbox_done(ctx, &action, &said);
        Ok(ExitCode::SUCCESS)
    }
}

/// A task after an action, for [`task_done`]: its status as the answer leaves it.
fn answered(t: &PendingTask, status: &str) -> PendingTask {
    PendingTask { status: status.to_string(), ..t.clone() }
}

/// `{"status": …}` of an execution as read before an action (`null` when unknown).
fn status_json(row: Option<&ExecutionSummary>) -> Value {
    json!({"status": row.map(|r| r.status.as_str())})
}

fn outcome_of<T>(r: &std::result::Result<T, BackendError>) -> audit::Outcome {
    match r {
        Ok(_) => audit::Outcome::Ok,
        Err(e) => audit::Outcome::Error(e.to_string()),
    }
}

/// A refusal because someone else holds the claim says how to override it.
fn claim_hint_remote(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<BackendError>() {
        Some(BackendError::Engine(EngineError::ClaimedByOther { .. })) => {
            anyhow!("{e} (to answer it anyway: --override-claim --reason-code CODE --reason TEXT)")
        }
        _ => e,
    }
}
