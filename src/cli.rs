//! Command-line surface. `--json` output has the shape of the matching AWS
//! Step Functions API response, so scripts work against either backend.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use lightbox::asl::model::{Definition, DefinitionError};
use lightbox::audit;
use lightbox::engine::ephemeral::{self, RunOptions};
use lightbox::engine::tasks::{Mocks, TaskRunner};
use lightbox::engine::{Clock, Engine, EngineError, short_token};
use lightbox::history::ExecutionStatus;
use lightbox::model::{ExecutionFilter, ExecutionSummary, PendingTask};
use lightbox::store::{Store, StoreError};

/// Print a line to standard output; a closed pipe (`| head`) ends the program quietly.
/// One line (or lines) on standard output, defanged: whatever a field held, no control character
/// other than a newline, and no bidirectional override, reaches the terminal raw (see [`defang`]).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), "{}", crate::cli::defang(&format!($($arg)*))).is_err() {
            std::process::exit(0);
        }
    }};
}

/// [`say!`] for standard error: warnings and notes, defanged the same way.
macro_rules! warn_err {
    ($($arg:tt)*) => {{
        eprintln!("{}", crate::cli::defang(&format!($($arg)*)));
    }};
}

mod remote;

#[derive(Parser, Debug)]
#[command(name = "lightbox", version, about = "Radiology workflow operations console with an embedded Step Functions engine")]
struct Cli {
    /// Where the engine keeps its database and logs (default: the platform data directory).
    #[arg(long, global = true, env = "LIGHTBOX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file (default: config.toml in the platform config directory).
    #[arg(long, global = true, env = "LIGHTBOX_CONFIG")]
    config: Option<PathBuf>,
    /// Print AWS-shaped JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Refuse every action that changes a workflow (approve, reject, redrive, stop, …).
    #[arg(long, global = true)]
    read_only: bool,
    /// Who is acting, for the audit log (default: `user` in config, else the OS user).
    #[arg(long, global = true, env = "LIGHTBOX_USER")]
    user: Option<String>,
    /// Use a named context from the config's [contexts.NAME] (its data dir, read-only, accent…).
    #[arg(long, global = true, env = "LIGHTBOX_CONTEXT")]
    context: Option<String>,
    /// Which control plane the console and the operator commands drive: `local` (the embedded
    /// engine) or `aws` (AWS Step Functions, with the context's region, profile, endpoint,
    /// machines and log group; without a context, the AWS environment: AWS_REGION, AWS_PROFILE,
    /// AWS_ENDPOINT_URL). On `aws`, executions, tasks, events, slo, outbox and audit work; the
    /// embedded engine's own commands (state-machines, executions start, engine, serve, demo,
    /// bench, store, dependencies) are refused.
    #[arg(long, global = true, env = "LIGHTBOX_BACKEND", value_parser = ["local", "aws"])]
    backend: Option<String>,
    /// Console colour theme: dark, light, high-contrast, deuteranopia, tritanopia, or NAME for
    /// <config dir>/themes/NAME.toml (default: `theme` in config, else dark).
    #[arg(long, global = true, env = "LIGHTBOX_THEME")]
    theme: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a definition once, to completion, on an in-memory store.
    Run(RunArgs),
    /// The reason codes an action taken for a reason needs (`--reason-code`; config `[reasons] codes`).
    Reasons,
    /// The TestState API: run one state with mocks and report what each processing step produced.
    #[command(name = "test-state")]
    TestState {
        /// A single state, or a whole state machine (then name the state with `stateName` in the request).
        #[arg(long)]
        definition: PathBuf,
        /// State input JSON file (default: {}).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Request JSON: inspectionLevel, mock, stateConfiguration, stateName, context, variables.
        #[arg(long)]
        request: Option<PathBuf>,
    },
    /// Check a definition and list every problem, each naming the state and field.
    Validate {
        /// The state machine definition (ASL JSON) to check.
        #[arg(long)]
        definition: PathBuf,
    },
    /// Create and list state machines.
    #[command(subcommand, name = "state-machines")]
    StateMachines(SmCmd),
    /// Start, inspect, stop and redrive executions.
    #[command(subcommand)]
    Executions(ExecCmd),
    /// The review queue: pending task tokens, and approving or rejecting them.
    #[command(subcommand)]
    Tasks(TaskCmd),
    /// The console (the default command): a keyboard-first dashboard on the embedded engine.
    Console {
        /// Run the demo hospital in the background (default: on when the data directory is new
        /// or already holds the demo).
        #[arg(long, conflicts_with = "no_demo")]
        demo: bool,
        /// Never run the demo hospital (a data directory that holds it shows it paused).
        #[arg(long)]
        no_demo: bool,
    },
    /// Run the demo hospital headless: start synthetic studies, clear their reviews, print their statuses.
    Demo {
        /// How long to run, in real seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Simulated minutes per real minute.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// Seed of the synthetic workload (the same seed gives the same hospital).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Measure the durable engine: transitions/s, step latency, list and restart times.
    Bench {
        /// Concurrent executions of the 10-state callback workflow.
        #[arg(long, default_value_t = 1000)]
        executions: usize,
        /// Stored executions to list over.
        #[arg(long, default_value_t = 100_000)]
        list_rows: usize,
        /// In-flight executions to resume after a restart.
        #[arg(long, default_value_t = 10_000)]
        restart: usize,
        /// Directory for the benchmark's databases (default: a fresh temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Measure the console instead: first frame, frame times, memory and idle CPU
        /// with --list-rows executions and --reviews pending reviews in the store.
        #[arg(long)]
        console: bool,
        /// Pending reviews for --console.
        #[arg(long, default_value_t = 10_000)]
        reviews: usize,
        /// Only seed the --console store (the benchmark runs this in a child process).
        #[arg(long, hide = true)]
        seed_only: bool,
        /// Measure the outbox relay instead: events/s to an NDJSON file and (in builds with
        /// `--features bench-stub`) to a loopback webhook.
        #[arg(long)]
        relay: bool,
        /// Events for --relay.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Measure event pattern matching instead: events/s, each tested against 100 patterns.
        #[arg(long)]
        patterns: bool,
        /// Measure `lightbox serve` instead: W1 (10 chained Pass states) executions/s through
        /// boto3 (--executions of them), beside moto's server on the same machine. Needs a
        /// python with boto3 and moto[server]: LIGHTBOX_BENCH_PYTHON, else LIGHTBOX_TEST_PYTHON
        /// (scripts/py-env.sh makes one), else python3.
        #[arg(long)]
        serve: bool,
        /// Measure the AWS backend's API calls per minute instead, in steady state with 10,
        /// 1,000 and 10,000 running executions, against a scripted loopback endpoint (in
        /// builds with `--features bench-stub`).
        #[arg(long)]
        aws_calls: bool,
        /// Seconds of steady state measured per size for --aws-calls.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// The audit log of operator actions: list it, or verify its hash chain.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The store file: a full check, and consistent online backups.
    #[command(subcommand)]
    Store(StoreCmd),
    /// Run the engine headless: fire timers and dispatch tasks for every execution.
    Engine {
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Serve the Step Functions API (AWS JSON 1.0) on the embedded engine, for the AWS SDKs and
    /// CLI (`--endpoint-url`); runs the engine's timers and tasks as `lightbox engine` does.
    Serve {
        /// Address to listen on (default: `bind` in [serve], else 127.0.0.1:8083; port 0 picks
        /// one). Off loopback, [serve] credentials and TLS (or --insecure-no-tls) are required.
        #[arg(long)]
        bind: Option<String>,
        /// PEM certificate chain for TLS (with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for TLS (with --tls-cert).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on a non-loopback address (requests are still SigV4-verified).
        #[arg(long, conflicts_with = "tls_cert")]
        insecure_no_tls: bool,
    },
    /// Print a shell completion script for lightbox (source it, or install it where your shell looks).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Manual pages: the top page on standard output, or one page per command in --out DIR.
    Man {
        /// Write lightbox.1 and one lightbox-COMMAND.1 page per subcommand into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The outbox relay: sinks, their backlog and parked rows; retry, park, requeue, pause, resume.
    #[command(subcommand)]
    Outbox(OutboxCmd),
    /// Dependencies of tasks ([[dependencies]]): their circuit breakers and operator holds.
    #[command(subcommand)]
    Dependencies(DepCmd),
    /// SLO clocks: every open clock by time to breach, and compliance and burn rate per SLO.
    #[command(subcommand)]
    Slo(SloCmd),
    /// Workflow events (EventBridge shape): list them, filtered by an event pattern, or test a pattern.
    #[command(subcommand)]
    Events(EventsCmd),
}

#[derive(Subcommand, Debug)]
enum OutboxCmd {
    /// Every sink (breaker, backlog, oldest age, rate, failures, parked) and the rows behind it.
    List {
        /// Only this sink.
        #[arg(long)]
        sink: Option<String>,
        /// Only parked rows.
        #[arg(long)]
        parked: bool,
        /// At most this many rows per sink.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Retry now: one row (ROW --sink S) or every waiting row of a sink (--sink S).
    Retry {
        /// The outbox row id (as `outbox list` shows it).
        row: Option<i64>,
        /// The sink.
        #[arg(long)]
        sink: String,
    },
    /// Park a row for a sink: it is kept, not delivered, until requeued.
    Park {
        /// The outbox row id.
        row: i64,
        /// The sink.
        #[arg(long)]
        sink: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
    /// Requeue parked rows: one (ROW --sink S) or all of a sink (--sink S --parked).
    Requeue {
        /// The outbox row id.
        row: Option<i64>,
        /// The sink.
        #[arg(long)]
        sink: String,
        /// Every parked row of the sink.
        #[arg(long, conflicts_with = "row")]
        parked: bool,
    },
    /// Pause delivery to a sink (events queue up).
    Pause {
        /// The sink.
        sink: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
    /// Resume delivery to a paused sink.
    Resume {
        /// The sink.
        sink: String,
    },
}

#[derive(Subcommand, Debug)]
enum DepCmd {
    /// Every configured dependency: breaker state, failures, hold, waiting executions.
    List,
    /// Hold a dependency: its tasks wait (durably) instead of being sent, until released.
    Hold {
        /// The dependency's name (as in [[dependencies]]).
        name: String,
        /// Why (the audit log records it).
        #[arg(long)]
        reason: String,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
    /// Release a hold: the tasks that waited are sent on the engine's next tick.
    Release {
        /// The dependency's name (as in [[dependencies]]).
        name: String,
        /// What was checked (the audit log records it).
        #[arg(long)]
        reason: String,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
    /// Close an open breaker by hand, after checking the dependency answers again.
    Reset {
        /// The dependency's name (as in [[dependencies]]).
        name: String,
        /// What was checked (the audit log records it).
        #[arg(long)]
        reason: String,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum SloCmd {
    /// Open clocks, least time to breach first, then compliance and burn rate per SLO.
    List {
        /// Also list the clocks that closed within the window.
        #[arg(long)]
        all: bool,
        /// Evaluate the clocks as of this time (RFC 3339; default: now).
        #[arg(long)]
        at: Option<String>,
        /// The compliance window: a duration like 90s, 15m, 4h, 2d.
        #[arg(long, default_value = "24h")]
        window: String,
    },
}

#[derive(Subcommand, Debug)]
enum EventsCmd {
    /// Workflow events, newest first (patient data masked unless --reveal --reason).
    List {
        /// An EventBridge event pattern: JSON, @FILE, or the name of one in config's [[event_patterns]].
        #[arg(long)]
        pattern: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        phi: RevealArgs,
    },
    /// Whether an event matches a pattern, as `aws events test-event-pattern` answers: {"Result": true|false}.
    /// An invalid pattern exits 2, naming what is wrong.
    #[command(name = "test-pattern")]
    TestPattern {
        /// The event pattern: JSON or @FILE.
        #[arg(long)]
        pattern: String,
        /// The event: JSON or @FILE.
        #[arg(long)]
        event: String,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The state machine definition (ASL JSON) to run.
    #[arg(long)]
    definition: PathBuf,
    /// Execution input JSON file (default: {}).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Run waits, retries and timeouts on a virtual clock, instantly.
    #[arg(long)]
    virtual_time: bool,
    /// Include the execution history (GetExecutionHistory shape).
    #[arg(long)]
    history: bool,
    /// Mocked task results (AWS Step Functions Local mock-config format).
    #[arg(long, requires = "test_case")]
    mock_config: Option<PathBuf>,
    /// Test case in the mock config.
    #[arg(long, requires = "mock_config")]
    test_case: Option<String>,
    /// State machine name (mock configs are keyed by it).
    #[arg(long, default_value = "LocalTesting")]
    name: String,
}

#[derive(Subcommand, Debug)]
enum SmCmd {
    /// Create a state machine from a definition (the same name with another definition is refused).
    Create {
        /// The state machine's name (letters, digits, `-` and `_`; at most 80 characters).
        #[arg(long)]
        name: String,
        /// The definition file (ASL JSON).
        #[arg(long)]
        definition: PathBuf,
        /// An IAM role ARN, kept for AWS compatibility (the embedded engine does not use it).
        #[arg(long)]
        role_arn: Option<String>,
    },
    /// List state machines: name and ARN.
    List,
}

#[derive(Subcommand, Debug)]
enum ExecCmd {
    /// Start an execution and drive it until it first waits.
    Start {
        /// State machine ARN or name.
        #[arg(long)]
        state_machine: String,
        /// The execution's name (default: a new UUID); a running execution with the same name and input is returned.
        #[arg(long)]
        name: Option<String>,
        /// Input JSON file, or `-` for standard input.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Input JSON given inline.
        #[arg(long, conflicts_with = "input")]
        input_json: Option<String>,
    },
    /// List executions, newest first.
    List {
        /// Only executions of this state machine (ARN or name).
        #[arg(long)]
        state_machine: Option<String>,
        /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or PENDING_REDRIVE.
        #[arg(long)]
        status: Option<String>,
        /// Only executions redriven at least once.
        #[arg(long)]
        redriven: bool,
        /// At most this many executions (1–1000).
        #[arg(long, default_value_t = 100)]
        max_results: usize,
        /// Continue a listing: the token the previous page printed.
        #[arg(long)]
        next_token: Option<String>,
        #[command(flatten)]
        phi: RevealArgs,
    },
    /// One execution: status, times, error and cause (with --json: input and output too).
    Describe {
        /// The execution's ARN.
        arn: String,
        #[command(flatten)]
        phi: RevealArgs,
    },
    /// An execution's history events, oldest first.
    History {
        /// The execution's ARN.
        arn: String,
        /// Newest events first.
        #[arg(long)]
        reverse_order: bool,
        /// At most this many events (1–1000).
        #[arg(long, default_value_t = 1000)]
        max_results: usize,
        /// Continue a listing: the token the previous page printed.
        #[arg(long)]
        next_token: Option<String>,
        #[command(flatten)]
        phi: RevealArgs,
    },
    /// Redrive a failed, timed-out or aborted execution from the state that failed (says first what it will do).
    Redrive {
        /// The execution's ARN.
        arn: String,
    },
    /// Undo what a FAILED, TIMED_OUT or ABORTED execution did: start its compensation state machine
    /// (`[compensation.<machine>]` in config) once, with the compensable states that completed, newest first.
    Compensate {
        /// The execution's ARN.
        arn: String,
        /// Why it is compensated (kept in the audit log and passed to the compensation).
        #[arg(long, required_unless_present = "dry_run")]
        reason: Option<String>,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
        /// Show the plan only; start nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Let a quarantined execution (failed with Lightbox.Quarantined: applying an input to it
    /// crashed the engine twice) try once more, from its state before that input.
    Release {
        /// The execution's ARN.
        arn: String,
        /// Why it is safe to try again (kept in the audit log).
        #[arg(long)]
        reason: String,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
    /// Stop a running execution (it ends ABORTED).
    Stop {
        /// The execution's ARN.
        arn: String,
        /// The error recorded on the execution.
        #[arg(long)]
        error: Option<String>,
        /// The cause recorded on the execution (a sentence for whoever reads it later).
        #[arg(long)]
        cause: Option<String>,
    },
}

/// Patient data in a read command's output is masked unless revealed, with a reason the audit log keeps.
#[derive(Args, Debug, Clone, Default)]
struct RevealArgs {
    /// Show patient identifiers unmasked (needs --reason; recorded in the audit log).
    #[arg(long)]
    reveal: bool,
    /// Why patient data must show, in a few words (e.g. "wrong-patient hold on ACC-1 for Dr Lee").
    #[arg(long, requires = "reveal")]
    reason: Option<String>,
    /// The reason code (one of `lightbox reasons`), required beside --reason.
    #[arg(long, requires = "reveal")]
    reason_code: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Entries, newest first.
    List {
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only entries by this user.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (approve, reject, claim, unclaim, escalate, heartbeat, redrive, stop, reveal-phi, …).
        #[arg(long)]
        action: Option<String>,
        /// An execution ARN or a task token.
        #[arg(long)]
        target: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Also list the intent rows written before each action (by default only intents
        /// without an outcome are listed).
        #[arg(long)]
        intents: bool,
        /// Reasons and causes operators typed can quote patient data: masked unless revealed.
        #[command(flatten)]
        phi: RevealArgs,
    },
    /// Check the hash chain, the anchor file and that every intent has its outcome:
    /// exits 3 if any entry was edited, removed or reordered, or an action went unrecorded.
    Verify,
    /// Record what happened to an action whose process died before its outcome was
    /// recorded (an intent without an outcome, as `audit verify` lists them).
    Resolve {
        /// The intent's seq.
        seq: i64,
        /// What you found (for example "approval took effect: execution SUCCEEDED").
        #[arg(long)]
        reason: String,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
    /// Start a new anchor file when it is missing (deleted, or the log predates anchoring);
    /// recorded in the audit log with your reason.
    Reanchor {
        /// Why the anchor is restarted (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum StoreCmd {
    /// Full integrity check of the live store, or of a copy: exits 3 if it is damaged.
    Check {
        /// A copy made with `store backup` (default: the live store).
        file: Option<PathBuf>,
    },
    /// A consistent copy of the live store, taken while Lightbox keeps running (SQLite's
    /// online backup API). FILE must not exist; it is created readable by its owner only.
    Backup {
        /// Where to write the copy (must not exist).
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TaskCmd {
    /// Task tokens (default: pending ones, oldest first).
    List {
        /// PENDING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or ALL.
        #[arg(long, default_value = "PENDING")]
        status: String,
        /// Only the tokens of this execution (ARN).
        #[arg(long)]
        execution: Option<String>,
        /// At most this many tokens.
        #[arg(long, default_value_t = 1000)]
        max_results: usize,
        #[command(flatten)]
        phi: RevealArgs,
    },
    /// SendTaskSuccess: complete a pending token with output.
    Approve {
        /// The task token, or a unique prefix of at least 8 characters (as tables show it).
        token: String,
        /// Output JSON (default: {}).
        #[arg(long)]
        output: Option<String>,
        /// Answer a review someone else has claimed (needs --reason; the audit log records it).
        #[arg(long, requires = "reason")]
        override_claim: bool,
        /// Why the claim is overridden.
        #[arg(long, requires = "override_claim")]
        reason: Option<String>,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
    /// SendTaskFailure: fail a pending token.
    Reject {
        /// The task token, or a unique prefix of at least 8 characters (as tables show it).
        token: String,
        /// The error the task fails with (the gate's Catch decides where it goes).
        #[arg(long)]
        error: Option<String>,
        /// Why, in a sentence (recorded with the failure and in the audit log).
        #[arg(long)]
        cause: Option<String>,
        /// Answer a review someone else has claimed (needs --reason; the audit log records it).
        #[arg(long, requires = "reason")]
        override_claim: bool,
        /// Why the claim is overridden.
        #[arg(long, requires = "override_claim")]
        reason: Option<String>,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
    },
    /// SendTaskHeartbeat: push back a pending token's heartbeat deadline.
    Heartbeat {
        /// The task token, or a unique prefix of at least 8 characters (as tables show it).
        token: String,
    },
    /// Claim a pending review (others see who has it; a heartbeat keeps it alive).
    Claim {
        /// The task token, or a unique prefix of at least 8 characters (as tables show it).
        token: String,
    },
    /// Give a claimed review back.
    Unclaim {
        /// The task token, or a unique prefix of at least 8 characters (as tables show it).
        token: String,
    },
    /// Escalate a review: fails the task with Review.Escalated; where that goes is up to the gate's Catch (printed first).
    Escalate {
        /// The task token, or a unique prefix of at least 8 characters (as tables show it).
        token: String,
        /// Why it is escalated (default: "escalated by USER"); `--cause` is the older name.
        /// With --override-claim it is also the reason for overriding the claim.
        #[arg(long, alias = "cause")]
        reason: Option<String>,
        /// The reason code (one of `lightbox reasons`), required beside --reason.
        #[arg(long, requires = "reason")]
        reason_code: Option<String>,
        /// Answer a review someone else has claimed (needs --reason; the audit log records it).
        #[arg(long, requires = "reason")]
        override_claim: bool,
    },
}

/// A problem with what the user gave (a missing or unreadable input file): exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Commands that only read the store: they work on a data directory this process may
/// not write, and on a damaged store (with a warning).
fn reads_only(command: &Command, read_only: bool) -> bool {
    match command {
        Command::Executions(
            ExecCmd::List { .. } | ExecCmd::Describe { .. } | ExecCmd::History { .. } | ExecCmd::Compensate { dry_run: true, .. },
        )
        | Command::Tasks(TaskCmd::List { .. })
        | Command::StateMachines(SmCmd::List)
        | Command::Dependencies(DepCmd::List)
        | Command::Audit(AuditCmd::List { .. } | AuditCmd::Verify)
        | Command::Slo(SloCmd::List { .. })
        | Command::Events(_)
        | Command::Store(_) => true,
        Command::Console { .. } => read_only,
        _ => false,
    }
}

pub fn main() -> Result<ExitCode> {
    let mut cli = Cli::parse();
    let command = cli.command.take().unwrap_or(Command::Console { demo: false, no_demo: false });
    if let Some(refused) = remote::refuse_early(&cli, &command) {
        return Err(refused.into());
    }
    match &command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "lightbox", &mut out);
            say!("{}", String::from_utf8_lossy(&out).trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out } => cmd_man(out.as_deref()),
        Command::Run(a) => cmd_run(a),
        Command::Validate { definition } => cmd_validate(definition, cli.json),
        Command::TestState { definition, input, request } => cmd_test_state(definition, input.as_deref(), request.as_deref()),
        Command::Bench { patterns: true, .. } => cmd_bench_patterns(cli.json),
        Command::Bench { console: true, seed_only: true, list_rows, reviews, dir: Some(dir), .. } => {
            lightbox::bench::seed_console_store(dir, *list_rows, *reviews)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { aws_calls: true, seconds, .. } => cmd_bench_aws_calls(*seconds, cli.json),
        Command::Bench { serve: true, executions, dir, .. } => cmd_bench_serve(*executions, dir.as_deref(), cli.json),
        Command::Bench { relay: true, events, dir, .. } => cmd_bench_relay(*events, dir.as_deref(), cli.json),
        Command::Bench { console: true, list_rows, reviews, dir, .. } => cmd_bench_console(*list_rows, *reviews, dir.as_deref(), cli.json),
        Command::Bench { executions, list_rows, restart, dir, .. } => {
            cmd_bench(*executions, *list_rows, *restart, dir.as_deref(), cli.json)
        }
        Command::Store(StoreCmd::Check { file: Some(file) }) => cmd_store_check(file, cli.json),
        Command::Events(EventsCmd::TestPattern { pattern, event }) => cmd_events_test(pattern, event),
        _ => {
            let base_config = load_config(&cli)?;
            let config = base_config.clone().with_context(cli.context.as_deref())?;
            if let Command::Reasons = &command {
                return cmd_reasons(&config, cli.json);
            }
            let reasons = config.reasons.codes()?;
            lightbox::ops::slo::check_all(&config.slo)?;
            // `--backend aws` (or an `aws` context): the console and the CLI twins on AWS Step
            // Functions; a command of the embedded engine's only is refused before the store opens.
            let remote = match cli.backend.as_deref() {
                Some("local") => None,
                Some(_) => Some(config.remote.clone().unwrap_or_default()),
                None => config.remote.clone(),
            };
            if remote.is_some()
                && let Some(refused) = remote::refusal(&command)
            {
                return Err(refused.into());
            }
            // The theme is checked before the store is opened: a wrong --theme touches no data.
            // (`demo` draws no console, but a --theme given to it must still name a theme.)
            let theme = match &command {
                Command::Console { .. } | Command::Demo { .. } => Some(console::theme(cli.theme.as_deref(), &config)?),
                _ => None,
            };
            let data_dir = data_dir(&cli, &config)?;
            let _log = init_logging(&data_dir, config.log.as_deref());
            audit::set_key(audit_key(&config)?)?;
            let read_only = cli.read_only || config.read_only;
            let db = data_dir.join("lightbox.db");
            if let Command::Store(StoreCmd::Check { file: None }) = &command {
                return cmd_store_check(&db, cli.json);
            }
            let store = open_store(&db, reads_only(&command, read_only))?;
            let mut tasks = TaskRunner::new();
            lightbox::sim::register_handlers(&mut tasks);
            let mut engine = Engine::new(store, tasks, Clock::Real);
            // The machines are read once: whether the store holds the demo decides its defaults.
            let machines: Vec<String> = engine.store.state_machines()?.into_iter().map(|m| m.name).collect();
            let holds_demo = lightbox::sim::holds_demo(&machines);
            let demo_store = holds_demo || matches!(command, Command::Demo { .. });
            let sinks = config.sinks_for(&data_dir, demo_store)?;
            configure_resilience(&mut engine, &config, demo_store, &sinks)?;
            let mut ctx = Ctx {
                json: cli.json,
                read_only: read_only || engine.store.is_read_only(),
                user: lightbox::audit::actor(cli.user.as_deref().or(config.user.as_deref())),
                phi: config.phi.masker()?,
                reasons,
                sinks,
                compensation: compensation_config(&config)?,
                slo: config.slo.clone(),
            };
            if let Some(aws) = remote {
                let name = config.context.clone().unwrap_or_else(|| "aws".into());
                let Command::Console { .. } = &command else {
                    return remote::run(&command, &ctx, &config, &mut engine, &db, &name, &aws);
                };
                let Some(theme) = theme else { bail!("no theme") };
                let conn = rusqlite::Connection::open(&db).with_context(|| format!("opening the local audit store {}", db.display()))?;
                let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
                let cp = lightbox::backend::aws::Aws::connect(&name, &aws, Some(conn))?
                    .with_compensation(ctx.compensation.clone())
                    .with_phi(ctx.phi.clone());
                let contexts = console::Contexts::new(&cli, base_config, format!("aws:{name}"), console::Kept::default());
                return console::run_remote(engine, &ctx, &config, &data_dir, Box::new(cp), theme, contexts);
            }
            if let (Command::Console { demo, no_demo }, Some(theme)) = (&command, theme) {
                let demo = console::demo_mode(machines.is_empty(), holds_demo, *demo, *no_demo, engine.store.is_read_only());
                let demo_store = holds_demo || matches!(demo, console::DemoMode::Running { .. });
                ctx.sinks = config.sinks_for(&data_dir, demo_store)?;
                configure_resilience(&mut engine, &config, demo_store, &ctx.sinks)?;
                let kept = console::Kept {
                    read_only_store: engine.store.is_read_only(),
                    demo: matches!(demo, console::DemoMode::Running { .. } | console::DemoMode::Paused(_)),
                };
                let contexts = console::Contexts::new(&cli, base_config, console::local_key(&db), kept).with_no_demo(*no_demo);
                return console::run(engine, &ctx, &config, &data_dir, demo, theme, contexts);
            }
            if let Command::Serve { bind, tls_cert, tls_key, insecure_no_tls } = command {
                let tls = tls_cert.zip(tls_key);
                return cmd_serve(engine, &ctx, &config, bind, tls, insecure_no_tls);
            }
            if let Command::Events(EventsCmd::List { pattern, limit, phi }) = &command {
                return cmd_events_list(&engine, &ctx, &config, pattern.as_deref(), *limit, phi);
            }
            dispatch(&command, &ctx, &mut engine)
        }
    }
}

/// Open the store: for writing, or, for a command that only reads, read-only when this
/// process may not write it or it is damaged (with one warning on standard error).
fn open_store(db: &Path, reads_only: bool) -> Result<Store> {
    match Store::open(db) {
        Ok(s) => {
            // Data directories made by older versions were world-readable: make them private.
            if let Some(dir) = db.parent() {
                let changed = lightbox::store::tighten_permissions(dir, db);
                if !changed.is_empty() {
                    tracing::info!(changed = %changed.join(", "), "made the data directory and its files readable by their owner only");
                }
            }
            Ok(s)
        }
        Err(e @ (StoreError::ReadOnly { .. } | StoreError::Damaged { .. })) if reads_only => {
            let s = match Store::open_read_only(db) {
                Ok(s) => s,
                // For a command that only reads, the read-only open's error is the one that counts.
                Err(ro) if matches!(e, StoreError::ReadOnly { .. }) => return Err(ro.into()),
                Err(ro) => return Err(anyhow!("{e} (opening it read-only failed too: {ro})")),
            };
            match s.damage() {
                Some(d) => warn_err!(
                    "lightbox: warning: the store {} is damaged ({d}); showing what can be read. Run `lightbox store check` and restore a backup",
                    db.display()
                ),
                None if matches!(e, StoreError::Damaged { .. }) => warn_err!("lightbox: warning: {e}"),
                None => {}
            }
            Ok(s)
        }
        Err(e) => Err(e.into()),
    }
}

/// The audit key: `LIGHTBOX_AUDIT_KEY` (the key itself), else the file named by
/// `audit_key_file` in config (its contents, trimmed).
fn audit_key(config: &Config) -> Result<Option<Vec<u8>>> {
    if let Ok(k) = std::env::var("LIGHTBOX_AUDIT_KEY")
        && !k.trim().is_empty()
    {
        return Ok(Some(k.trim().as_bytes().to_vec()));
    }
    let Some(path) = &config.audit_key_file else { return Ok(None) };
    let text = read_file(path, "audit_key_file")?;
    Ok(Some(text.trim().as_bytes().to_vec()))
}

/// `lightbox man`: the top page on standard output, or with `--out DIR` one page per command
/// (`lightbox.1`, `lightbox-executions.1`, `lightbox-executions-list.1`, …).
fn cmd_man(out: Option<&Path>) -> Result<ExitCode> {
    let Some(dir) = out else {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        cmd.build();
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).context("rendering the man page")?;
        say!("{}", String::from_utf8_lossy(&buf).trim_end());
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))?;
    let written = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".1")).count())
        .unwrap_or(0);
    say!("{written} man pages written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn cmd_store_check(file: &Path, j: bool) -> Result<ExitCode> {
    let mut problems: Vec<String> = vec![];
    let mut counts = json!({});
    let marker = lightbox::store::marker_path(file);
    let meta = std::fs::metadata(file);
    match meta {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if marker.exists() {
                problems.push(format!("the file is missing, but {} says a store was created here (its data was lost)", marker.display()));
            } else {
                return Err(UsageError(format!("{} does not exist", file.display())).into());
            }
        }
        Err(e) => return Err(UsageError(format!("{} cannot be read: {e}", file.display())).into()),
        Ok(m) if m.is_dir() => return Err(UsageError(format!("{} is a directory, not a store file", file.display())).into()),
        Ok(_) => match lightbox::store::header_problem(file).with_context(|| format!("reading {}", file.display()))? {
            Some(p) => problems.push(p),
            None => match Store::open_read_only(file) {
                // Not a finding about the file: this process may not open it (needs write access).
                Err(e) if e.is_read_only() => return Err(e.into()),
                Err(e) => problems.push(e.to_string()),
                Ok(store) => {
                    match store.integrity_check() {
                        Ok(p) => problems.extend(p),
                        Err(e) => problems.push(e.to_string()),
                    }
                    if problems.is_empty() {
                        let n = |sql: &str| store.conn().query_row(sql, [], |r| r.get::<_, i64>(0)).ok();
                        counts = json!({
                            "stateMachines": n("SELECT COUNT(*) FROM state_machines"),
                            "executions": n("SELECT COUNT(*) FROM executions"),
                            // No audit table yet: nothing was audited.
                            "auditRows": n("SELECT COUNT(*) FROM audit_log").unwrap_or(0),
                        });
                        if counts["executions"].is_null() {
                            problems.push("the file is an SQLite database but not a Lightbox store (no executions table)".into());
                        }
                    }
                }
            },
        },
    }
    if j {
        print_json(
            &json!({"file": file.display().to_string(), "result": if problems.is_empty() {"OK"} else {"DAMAGED"}, "problems": problems, "counts": counts}),
        );
    } else if problems.is_empty() {
        say!(
            "{}: OK (integrity check passed; {} state machines, {} executions, {} audit rows)",
            file.display(),
            counts["stateMachines"],
            counts["executions"],
            counts["auditRows"]
        );
    } else {
        say!("{}: DAMAGED", file.display());
        for p in &problems {
            say!("  {p}");
        }
        say!(
            "  the way back: restore the last good copy made with `lightbox store backup FILE` (check it first with `lightbox store check FILE`)"
        );
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// `config.toml`: see config.example.toml for every option.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The file this came from (for errors that name it); not a key.
    #[serde(skip)]
    source: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    log: Option<String>,
    /// The operator's name in the audit log (default: the OS user).
    user: Option<String>,
    /// Refuse actions that change workflows.
    #[serde(default)]
    read_only: bool,
    /// Console colour theme.
    theme: Option<String>,
    /// Accent colour for this context, e.g. "#ff0000" so production looks different.
    accent: Option<String>,
    /// Name of this context, shown in the header (default "local").
    context: Option<String>,
    /// Lock the console after this many idle minutes.
    idle_lock_minutes: Option<u32>,
    /// How often views refresh, in milliseconds.
    refresh_ms: Option<u32>,
    /// Reason codes offered when rejecting a review: "Code: text".
    reject_reasons: Option<Vec<String>>,
    /// A file holding the audit key (at least 16 bytes): the audit chain is then HMAC-signed
    /// and `audit verify` detects a rewrite of the whole chain. `LIGHTBOX_AUDIT_KEY` overrides it.
    audit_key_file: Option<PathBuf>,
    /// Rebind console keys: action name = ["key", …].
    #[serde(default)]
    keys: std::collections::BTreeMap<String, Vec<String>>,
    /// Which fields are patient identifiers, and how long a console reveal lasts.
    #[serde(default)]
    phi: PhiConfig,
    /// `[reasons]`: the reason codes every action taken for a reason picks from.
    #[serde(default)]
    reasons: ReasonsConfig,
    /// Named contexts (e.g. a training copy and production), chosen with --context.
    #[serde(default)]
    contexts: std::collections::BTreeMap<String, ContextConfig>,
    /// `[[outbox.sinks]]`: where the relay delivers workflow events.
    #[serde(default)]
    outbox: lightbox::outbox::OutboxConfig,
    /// `[[escalation]]`: escalation ladders per review gate (the demo's when none).
    #[serde(default)]
    escalation: Vec<lightbox::engine::escalation::EscalationConfig>,
    /// `[[dependencies]]`: task dependencies with circuit breakers and holds (the demo's when none).
    #[serde(default)]
    dependencies: Vec<lightbox::engine::dependencies::DependencyConfig>,
    /// `[compensation.<machine>]`: the state machine that undoes a failed execution, and its compensable states.
    #[serde(default)]
    compensation: lightbox::ops::compensation::CompensationMap,
    /// SLO targets (`[[slo]]`); none: the demo hospital's defaults when the store holds the demo.
    #[serde(default, rename = "slo")]
    slo: Vec<lightbox::ops::slo::SloConfig>,
    /// `[serve]`: `lightbox serve`'s address, credentials (SigV4) and TLS files.
    #[serde(default)]
    serve: lightbox::serve::ServeConfig,
    /// Named event patterns: `lightbox events list --pattern NAME`, `:events NAME`.
    #[serde(default, rename = "event_patterns")]
    event_patterns: Vec<lightbox::events::feed::NamedPattern>,
    /// `[engine]`: what one step of an execution may spend (evaluation work, wall-clock time).
    #[serde(default)]
    engine: lightbox::engine::StepBudget,
    /// The chosen context's backend (`aws` contexts carry where to connect).
    #[serde(skip)]
    remote: Option<lightbox::backend::aws::AwsContext>,
}

/// `[phi]`: identifier field names and JSON paths (`fields`/`paths` replace the defaults,
/// `extra_fields`/`extra_paths` add to them) and the console's reveal time.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PhiConfig {
    fields: Option<Vec<String>>,
    #[serde(default)]
    extra_fields: Vec<String>,
    paths: Option<Vec<String>>,
    #[serde(default)]
    extra_paths: Vec<String>,
    reveal_minutes: Option<u32>,
}

impl PhiConfig {
    fn masker(&self) -> Result<lightbox::phi::Masker> {
        lightbox::phi::Masker::from_config(self.fields.as_deref(), &self.extra_fields, self.paths.as_deref(), &self.extra_paths)
            .context("config [phi]")
    }
}

/// `[reasons] codes = [...]`: the reason codes (default `direct-care`, `quality-review`,
/// `operations-incident`, `patient-request`, `other`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonsConfig {
    codes: Option<Vec<String>>,
}

impl ReasonsConfig {
    fn codes(&self) -> Result<lightbox::phi::ReasonCodes> {
        match &self.codes {
            Some(c) => lightbox::phi::ReasonCodes::new(c).context("config [reasons] codes"),
            None => Ok(lightbox::phi::ReasonCodes::default()),
        }
    }
}

/// `lightbox reasons`: the reason codes in force, one a line (`--json`: `{"reasonCodes": [...]}`).
fn cmd_reasons(config: &Config, json: bool) -> Result<ExitCode> {
    let codes = config.reasons.codes()?;
    if json {
        print_json(&json!({"reasonCodes": codes.codes()}));
    } else {
        for c in codes.codes() {
            say!("{c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a named context overrides.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextConfig {
    data_dir: Option<PathBuf>,
    read_only: Option<bool>,
    accent: Option<String>,
    theme: Option<String>,
    user: Option<String>,
    /// `local` (default) or `aws`.
    backend: Option<String>,
    // For `backend = "aws"`:
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    #[serde(default)]
    state_machines: Vec<String>,
    log_group: Option<String>,
    audit_log_group: Option<String>,
    outbox_endpoint: Option<String>,
    #[serde(default)]
    event_log_groups: Vec<String>,
}

impl ContextConfig {
    /// The AWS settings of an `aws` context (`None` for a local one).
    fn aws(&self, name: &str) -> Result<Option<lightbox::backend::aws::AwsContext>> {
        match self.backend.as_deref() {
            None | Some("local") => Ok(None),
            Some("aws") => Ok(Some(lightbox::backend::aws::AwsContext {
                region: self.region.clone(),
                profile: self.profile.clone(),
                endpoint_url: self.endpoint_url.clone(),
                state_machines: self.state_machines.clone(),
                log_group: self.log_group.clone(),
                audit_log_group: self.audit_log_group.clone(),
                outbox_endpoint: self.outbox_endpoint.clone(),
                event_log_groups: self.event_log_groups.clone(),
            })),
            Some(other) => bail!("context {name:?}: backend {other:?} is not one of local, aws"),
        }
    }
}

impl Config {
    /// Apply the chosen context (`--context`, else `context` in config, if it names one).
    fn with_context(mut self, chosen: Option<&str>) -> Result<Config> {
        let name = match chosen.or(self.context.as_deref()) {
            Some(n) => n.to_string(),
            None => return Ok(self),
        };
        let Some(c) = self.contexts.get(&name).cloned() else {
            if chosen.is_some() {
                let known: Vec<&str> = self.contexts.keys().map(String::as_str).collect();
                bail!(
                    "context {name:?} is not in the config (contexts: {})",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                );
            }
            return Ok(self);
        };
        self.remote = c.aws(&name)?;
        self.context = Some(name);
        self.data_dir = c.data_dir.or(self.data_dir);
        self.read_only = c.read_only.unwrap_or(self.read_only);
        self.accent = c.accent.or(self.accent);
        self.theme = c.theme.or(self.theme);
        self.user = c.user.or(self.user);
        Ok(self)
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => match directories::ProjectDirs::from("org", "lightbox", "lightbox") {
            Some(d) => (d.config_dir().join("config.toml"), false),
            None => return Ok(Config::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        // The default config is optional: one that cannot be read is skipped, with a warning.
        Err(e) if !explicit => {
            warn_err!("lightbox: warning: config file {} cannot be read ({e}); using the defaults", path.display());
            return Ok(Config::default());
        }
        Err(e) => return Err(e).with_context(|| format!("reading config file {}", path.display())),
    };
    let mut config: Config = toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))?;
    config.source = Some(path);
    config.check()?;
    // Every engine this process makes (CLI, console, `lightbox engine`, `lightbox serve`) starts with it.
    lightbox::engine::StepBudget::set_process_default(config.engine);
    Ok(config)
}

impl Config {
    /// `config file F is not valid`, for the context of an error in a key's value.
    fn invalid(&self) -> String {
        format!(
            "config file {} is not valid",
            self.source.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "(defaults)".into())
        )
    }

    /// Every section's values, checked when the file is read and before anything opens the
    /// store: each error names the file, the key path and what is wrong. (NDJSON paths are
    /// checked again against the data directory, by [`Config::sinks`].)
    fn check(&self) -> Result<()> {
        lightbox::events::feed::compile_named(&self.event_patterns).with_context(|| self.invalid())?;
        lightbox::ops::slo::check_all(&self.slo).with_context(|| self.invalid())?;
        self.outbox.sinks(Path::new("")).with_context(|| self.invalid())?;
        lightbox::engine::escalation::validate(&self.escalation).with_context(|| self.invalid())?;
        if !self.outbox.sinks.is_empty() {
            // Without sinks of its own, the config's ladders are checked against the sinks in
            // force (the demo's) when the engine is configured.
            let sinks = self.outbox.sinks(Path::new("")).with_context(|| self.invalid())?;
            lightbox::engine::escalation::check_sinks(&mut self.escalation.clone(), &sinks).with_context(|| self.invalid())?;
        }
        lightbox::engine::dependencies::validate(&self.dependencies).with_context(|| self.invalid())?;
        lightbox::ops::compensation::validate(&self.compensation).with_context(|| self.invalid())?;
        self.engine.check().map_err(anyhow::Error::msg).with_context(|| self.invalid())?;
        Ok(())
    }

    /// The sinks, their relative paths under `data_dir`.
    fn sinks(&self, data_dir: &Path) -> Result<Vec<lightbox::outbox::Sink>> {
        self.outbox.sinks(data_dir).with_context(|| self.invalid())
    }

    /// The sinks in force: the config's, else the demo's archive when the store holds the demo
    /// (or is about to).
    fn sinks_for(&self, data_dir: &Path, demo: bool) -> Result<Vec<lightbox::outbox::Sink>> {
        if self.outbox.sinks.is_empty() && demo {
            return Ok(lightbox::sim::outbox_defaults().sinks(data_dir)?);
        }
        self.sinks(data_dir)
    }
}

fn data_dir(cli: &Cli, config: &Config) -> Result<PathBuf> {
    if let Some(d) = cli.data_dir.as_ref().or(config.data_dir.as_ref()) {
        return Ok(d.clone());
    }
    let dirs = directories::ProjectDirs::from("org", "lightbox", "lightbox")
        .context("no home directory to keep Lightbox's data in; pass --data-dir")?;
    Ok(dirs.data_dir().to_path_buf())
}

/// Logs go to `<data dir>/logs/`. When that cannot be written (a read-only data
/// directory) logging is off, with one warning: commands that only read still work.
fn init_logging(data_dir: &Path, level: Option<&str>) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let logs = data_dir.join("logs");
    let appender = lightbox::store::create_private_dir(&logs).map_err(|e| e.to_string()).and_then(|()| {
        tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("lightbox.log")
            .build(&logs)
            .map_err(|e| e.to_string())
    });
    let appender = match appender {
        Ok(a) => a,
        Err(e) => {
            warn_err!("lightbox: warning: logging is off: cannot write to {} ({e})", logs.display());
            return None;
        }
    };
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIGHTBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    let _ = tracing_subscriber::fmt().with_writer(writer).with_ansi(false).with_env_filter(filter).try_init();
    Some(guard)
}

/// Read an input file named on the command line (`-` is standard input). A missing,
/// unreadable, non-UTF-8 or directory input is a [`UsageError`] (exit 2) naming the file.
///
/// Reading stops past the most the file may hold (a definition 1,048,576 bytes and an
/// execution input 262,144 bytes, Step Functions' limits; anything else 16 MiB), so
/// `/dev/zero` or a runaway pipe is refused instead of filling memory.
fn read_file(path: &Path, what: &str) -> Result<String> {
    use std::io::Read as _;
    let limit: u64 = match what {
        "--definition" => 1_048_576,
        "--input" => 262_144,
        _ => 16 * 1_048_576,
    };
    let shown = || if path == Path::new("-") { "standard input".to_string() } else { format!("file {}", path.display()) };
    let too_big = || UsageError(format!("{what} {} is larger than {limit} bytes, the most it may hold", shown()));
    let bytes = if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut b)
            .map_err(|e| UsageError(format!("{what}: reading standard input failed: {e}")))?;
        b
    } else {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(UsageError(format!("{what} file {} does not exist", path.display())).into());
            }
            Ok(m) if m.is_dir() => return Err(UsageError(format!("{what} {} is a directory, not a file", path.display())).into()),
            _ => {}
        }
        let cannot = |e: std::io::Error| UsageError(format!("{what} file {} cannot be read: {e}", path.display()));
        let mut b = Vec::new();
        std::fs::File::open(path).map_err(cannot)?.take(limit + 1).read_to_end(&mut b).map_err(cannot)?;
        b
    };
    if bytes.len() as u64 > limit {
        return Err(too_big().into());
    }
    String::from_utf8(bytes).map_err(|e| {
        let shown = if path == Path::new("-") { "standard input".to_string() } else { format!("file {}", path.display()) };
        UsageError(format!("{what} {shown} is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to())).into()
    })
}

/// An invalid definition on standard error: one problem a line, each escaped (state names
/// come from the file and may hold control characters).
fn say_invalid(path: &Path, e: &DefinitionError) {
    match e {
        DefinitionError::Invalid(ps) => {
            warn_err!("lightbox: {} is not a valid state machine: {} problem(s):", path.display(), ps.len());
            for p in ps {
                warn_err!("  - {}: {}", esc(&p.location), esc(&p.message));
            }
        }
        other => warn_err!("lightbox: {} is not a valid state machine: {}", path.display(), esc(&other.to_string())),
    }
}

/// A string from a definition or an input, safe to print in a table: control
/// characters and bidirectional overrides are shown escaped (`\u{1b}`), never sent to the terminal.
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    escape_where(s, |c| c.is_control() || is_bidi(c))
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn escape_where(s: &str, bad: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(&bad) {
        return s.into();
    }
    s.chars().map(|c| if bad(c) { c.escape_debug().to_string() } else { c.to_string() }).collect::<String>().into()
}

/// The last line of defence for everything the CLI prints (tables, messages, errors): control
/// characters other than a newline, and bidirectional overrides, are shown escaped (`\u{1b}`),
/// so a sink name, reason, user, dependency or event field never drives the terminal, even in
/// a message that forgot [`esc`]. Already escaped text passes unchanged.
pub fn defang(s: &str) -> std::borrow::Cow<'_, str> {
    escape_where(s, |c| (c.is_control() && c != '\n') || is_bidi(c))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Pretty JSON on standard output. JSON escapes control characters itself; bidirectional
/// overrides (legal raw in a JSON string) are written as `\uXXXX` escapes, which parse back
/// to the same value, so the text stays valid JSON and [`say!`] has nothing left to defang.
fn print_json(v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let text: String = if text.chars().any(is_bidi) {
        text.chars().map(|c| if is_bidi(c) { format!("\\u{:04x}", u32::from(c)) } else { c.to_string() }).collect()
    } else {
        text
    };
    say!("{text}");
}

fn cmd_run(a: &RunArgs) -> Result<ExitCode> {
    let def = read_file(&a.definition, "--definition")?;
    if let Err(e) = Definition::parse_str(&def) {
        say_invalid(&a.definition, &e);
        return Ok(ExitCode::from(2));
    }
    let input = match &a.input {
        Some(p) => read_file(p, "--input")?,
        None => "{}".to_string(),
    };
    let mocks = match (&a.mock_config, &a.test_case) {
        (Some(p), Some(tc)) => {
            read_file(p, "--mock-config")?;
            Some(Mocks::load(&p.to_string_lossy(), &a.name, tc)?)
        }
        _ => None,
    };
    let opts =
        RunOptions { virtual_time: a.virtual_time, history: a.history, mocks, state_machine_name: a.name.clone(), ..RunOptions::default() };
    match ephemeral::run(&def, &input, opts) {
        Ok(v) => {
            say!("{}", serde_json::to_string(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(ephemeral::RunError::Engine(EngineError::InvalidInput(m))) => {
            warn_err!("lightbox: invalid input: {m}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

fn cmd_test_state(definition: &Path, input: Option<&Path>, request: Option<&Path>) -> Result<ExitCode> {
    let def = read_file(definition, "--definition")?;
    let input = match input {
        Some(p) => read_file(p, "--input")?,
        None => "{}".into(),
    };
    let request: Value = match request {
        Some(p) => serde_json::from_str(&read_file(p, "--request")?).with_context(|| format!("{} is not valid JSON", p.display()))?,
        None => json!({}),
    };
    match lightbox::engine::test_state::run(&def, &input, &request) {
        Ok(v) => {
            say!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            warn_err!("lightbox: test-state: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn cmd_validate(path: &Path, as_json: bool) -> Result<ExitCode> {
    let text = read_file(path, "--definition")?;
    let problems: Vec<(String, String)> = match Definition::parse_str(&text) {
        Ok(_) => vec![],
        Err(DefinitionError::Json(e)) => vec![("(definition)".into(), format!("not valid JSON: {e}"))],
        Err(DefinitionError::Invalid(ps)) => ps.into_iter().map(|p| (p.location, p.message)).collect(),
    };
    if as_json {
        let diags: Vec<Value> = problems
            .iter()
            .map(|(l, m)| json!({"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "location": l, "message": m}))
            .collect();
        print_json(&json!({"result": if problems.is_empty() {"OK"} else {"FAIL"}, "diagnostics": diags}));
    } else if problems.is_empty() {
        say!("{}: OK", path.display());
    } else {
        say!("{}: {} problem(s)", path.display(), problems.len());
        for (l, m) in &problems {
            say!("  {}: {}", esc(l), esc(m));
        }
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

struct Ctx {
    json: bool,
    read_only: bool,
    user: String,
    /// Masks patient identifiers in what read commands print.
    phi: lightbox::phi::Masker,
    /// The reason codes in force (`[reasons] codes`).
    reasons: lightbox::phi::ReasonCodes,
    /// The outbox relay's sinks (validated `[[outbox.sinks]]`).
    sinks: Vec<lightbox::outbox::Sink>,
    /// Compensation config in effect (the demo's defaults and `[compensation]`).
    compensation: lightbox::ops::compensation::CompensationMap,
    /// The config's `[[slo]]` entries (checked at start-up).
    slo: Vec<lightbox::ops::slo::SloConfig>,
}

impl Ctx {
    fn entry(&self, action: audit::Action) -> audit::AuditEntry {
        audit::AuditEntry::new(self.user.clone(), audit::Source::Cli, action)
    }
    fn refuse(&self, what: &str) -> Result<()> {
        if self.read_only {
            bail!("read-only: {what} is disabled (started with --read-only or read_only = true in config)");
        }
        Ok(())
    }
}

/// `--reason-code CODE --reason TEXT`: a checked reason ([`lightbox::phi::Reason`]), or a usage
/// error (exit 2) naming the flag at fault and, for the code, the codes to pick from.
fn checked_reason(ctx: &Ctx, code: Option<&str>, note: Option<&str>) -> Result<lightbox::phi::Reason> {
    use lightbox::phi::PhiError;
    lightbox::phi::Reason::new(&ctx.reasons, code.unwrap_or_default(), note.unwrap_or_default()).map_err(|e| {
        let codes = ctx.reasons.codes().join(", ");
        UsageError(match e {
            PhiError::MissingReasonCode { .. } => {
                format!("--reason-code CODE is required beside --reason: one of {codes} (`lightbox reasons` lists them)")
            }
            PhiError::UnknownReasonCode { code, .. } => format!("--reason-code {code:?} is not a reason code: one of {codes}"),
            other => format!("--reason: {other}"),
        })
        .into()
    })
}

fn status_of(engine: &Engine, arn: &str) -> Value {
    match engine.store.execution(arn) {
        Ok(Some(r)) => json!({"status": r.status.as_str()}),
        _ => json!({"status": null}),
    }
}

/// Who answers a token from the CLI, and the audit note for a claim override. Before acting,
/// says on stderr what the answer will do (`error`: the failure it sends; `None`: success).
fn acting_on(
    engine: &Engine,
    ctx: &Ctx,
    token: &str,
    override_claim: bool,
    (reason, code): (Option<&str>, Option<&str>),
    error: Option<&str>,
) -> Result<(lightbox::engine::Acting, Option<String>)> {
    let mut acting = lightbox::engine::Acting::user(ctx.user.clone());
    let t = engine.resolve_token(token).ok();
    if override_claim {
        acting = acting.overriding(checked_reason(ctx, code, reason)?.to_string());
    }
    let holder = t.as_ref().and_then(|t| t.claimed_by.clone()).filter(|h| *h != ctx.user);
    let note = match (&holder, &acting.override_reason) {
        (Some(h), Some(r)) => Some(format!("override of the claim held by {h}: {r}")),
        _ => None,
    };
    if !ctx.json
        && let Some(t) = t.as_ref().filter(|t| t.status == "PENDING")
        && let Ok(Some(l)) = engine.store.load(&t.execution_arn)
        && let Ok(def) = lightbox::asl::model::Definition::parse_str(&l.definition)
        && let Some(g) = lightbox::ops::consequence::gate(&def, &t.state_name)
    {
        let c = match error {
            None => g.on_success(),
            Some(e) => g.on_error(e),
        };
        // The error an operator types is free text (it may quote the patient): masked.
        let known =
            engine.store.execution(&t.execution_arn).ok().flatten().map(|x| ctx.phi.identifiers_in_text(&x.input)).unwrap_or_default();
        warn_err!("consequence: {}", esc(&ctx.phi.mask_text_with(&c.text, &known)));
    }
    Ok((acting, note))
}

/// A refusal because someone else holds the claim says how to override it.
fn claim_hint(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<EngineError>() {
        Some(EngineError::ClaimedByOther { .. }) => anyhow!("{e} (to answer it anyway: --override-claim --reason-code CODE --reason TEXT)"),
        _ => e,
    }
}

/// An operator action on a task token, recorded in the audit log with its outcome.
fn token_action(
    engine: &mut Engine,
    ctx: &Ctx,
    action: audit::Action,
    token: &str,
    reason: Option<String>,
    f: impl FnOnce(&mut Engine, &str) -> std::result::Result<PendingTask, EngineError>,
) -> Result<PendingTask> {
    ctx.refuse(action.as_str())?;
    check_token_arg(token)?;
    let arn = engine.resolve_token(token).map(|t| t.execution_arn).ok();
    let mut entry = ctx.entry(action).token(token);
    if let Some(a) = &arn {
        entry = entry.execution(a.clone());
    }
    if let Some(r) = reason.filter(|r| !r.is_empty()) {
        entry = entry.reason(r);
    }
    let intent = audit::begin(engine.store.conn(), &entry, Utc::now())?;
    let before = arn.as_deref().map(|a| status_of(engine, a));
    let r = f(engine, token);
    crash_point();
    let after = arn.as_deref().map(|a| status_of(engine, a));
    if let Some(b) = before {
        entry = entry.before(b);
    }
    if let Some(a) = after {
        entry = entry.after(a);
    }
    entry = entry.outcome(match &r {
        Ok(_) => audit::Outcome::Ok,
        Err(e) => audit::Outcome::Error(e.to_string()),
    });
    audit::finish(engine.store.conn(), intent, &entry, Utc::now())?;
    Ok(r?)
}

/// A read command's `--reveal --reason`: `Ok(true)` when patient data may show. A reveal
/// without a reason of substance exits 2 (`Err(code)`); the audit row is checked first
/// ([`audit::preflight`]) and written by [`reveal_record`] before anything is printed.
fn reveal_check(engine: &Engine, ctx: &Ctx, r: &RevealArgs, arn: Option<&str>) -> Result<std::result::Result<bool, ExitCode>> {
    if !r.reveal {
        return Ok(Ok(false));
    }
    if let Err(e) = checked_reason(ctx, r.reason_code.as_deref(), r.reason.as_deref()) {
        warn_err!("lightbox: --reveal needs --reason-code and --reason: {e}");
        return Ok(Err(ExitCode::from(2)));
    }
    audit::preflight(engine.store.conn(), &reveal_entry(ctx, r, arn))?;
    Ok(Ok(true))
}

fn reveal_entry(ctx: &Ctx, r: &RevealArgs, arn: Option<&str>) -> audit::AuditEntry {
    let mut e = match checked_reason(ctx, r.reason_code.as_deref(), r.reason.as_deref()) {
        Ok(why) => ctx.entry(audit::Action::RevealPhi).why(&why),
        Err(_) => ctx.entry(audit::Action::RevealPhi).reason(r.reason.clone().unwrap_or_default().trim().to_string()),
    };
    if let Some(a) = arn {
        e = e.execution(a.to_string());
    }
    e
}

/// Record a reveal (before the revealed output is printed: no row, no output).
fn reveal_record(engine: &Engine, ctx: &Ctx, r: &RevealArgs, arn: Option<&str>) -> Result<()> {
    audit::record(engine.store.conn(), &reveal_entry(ctx, r, arn).outcome(audit::Outcome::Ok), Utc::now())?;
    Ok(())
}

/// Tests kill the process here, between an action taking effect and its audit outcome
/// (`LIGHTBOX_CRASH_AT=action-done`), as a power cut or `kill -9` would. A crash point
/// ([`lightbox::crash`]): only in test builds.
fn crash_point() {
    lightbox::crash::point("action-done", "cli");
}

fn dispatch(command: &Command, ctx: &Ctx, engine: &mut Engine) -> Result<ExitCode> {
    let j = ctx.json;
    match command {
        Command::StateMachines(SmCmd::Create { name, definition, role_arn }) => {
            let text = read_file(definition, "--definition")?;
            let row = match engine.create_state_machine(name, &text, role_arn.as_deref()) {
                Ok(r) => r,
                Err(EngineError::Definition(e)) => {
                    say_invalid(definition, &e);
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            if j {
                print_json(&json!({"stateMachineArn": row.arn, "creationDate": ts(row.created_at)}));
            } else {
                say!("{}", row.arn);
            }
        }
        Command::StateMachines(SmCmd::List) => {
            let rows = engine.store.state_machines()?;
            if j {
                let v: Vec<Value> = rows
                    .iter()
                    .map(|r| json!({"stateMachineArn": r.arn, "name": r.name, "type": r.kind, "creationDate": ts(r.created_at)}))
                    .collect();
                print_json(&json!({"stateMachines": v}));
            } else {
                say!("{:<40} {}", "NAME", "STATE MACHINE ARN");
                for r in rows {
                    say!("{:<40} {}", esc(&r.name), esc(&r.arn));
                }
            }
        }
        Command::Executions(ExecCmd::Start { state_machine, name, input, input_json }) => {
            let input = match (input, input_json) {
                (Some(p), _) => read_file(p, "--input")?,
                (None, Some(s)) => s.clone(),
                (None, None) => "{}".into(),
            };
            let row = engine.start_execution(state_machine, name.as_deref(), &input)?;
            if j {
                print_json(&json!({"executionArn": row.arn, "startDate": ts(row.start)}));
            } else {
                say!("{} {}", row.arn, row.status);
            }
        }
        Command::Executions(ExecCmd::List { state_machine, status, redriven, max_results, next_token, phi }) => {
            let reveal = match reveal_check(engine, ctx, phi, None)? {
                Ok(r) => r,
                Err(code) => return Ok(code),
            };
            let status = match status {
                Some(s) => Some(ExecutionStatus::parse(s).with_context(|| {
                    format!("--status {s:?} is not an execution status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE)")
                })?),
                None => None,
            };
            let sm = match state_machine {
                Some(s) => {
                    Some(engine.store.state_machine(s)?.map(|r| r.arn).with_context(|| format!("state machine {s:?} does not exist"))?)
                }
                None => None,
            };
            let after = match next_token {
                Some(t) => Some(decode_token(t)?),
                None => None,
            };
            let limit = (*max_results).clamp(1, 1000);
            let rows = engine.store.executions(&ExecutionFilter {
                state_machine_arn: sm,
                status,
                redriven: *redriven,
                limit: limit + 1,
                after,
            })?;
            let more = rows.len() > limit;
            let rows = &rows[..rows.len().min(limit)];
            if reveal {
                reveal_record(engine, ctx, phi, None)?;
            }
            print_executions(ctx, rows, more, reveal);
        }
        Command::Executions(ExecCmd::Describe { arn, phi }) => {
            let reveal = match reveal_check(engine, ctx, phi, Some(arn))? {
                Ok(r) => r,
                Err(code) => return Ok(code),
            };
            let mut r = engine.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.clone()))?;
            if reveal {
                reveal_record(engine, ctx, phi, Some(arn))?;
            } else {
                let known = ctx.phi.identifiers_in_text(&r.input);
                r.cause = r.cause.map(|c| ctx.phi.mask_text_with(&c, &known));
                r.error = r.error.map(|c| ctx.phi.mask_text_with(&c, &known));
            }
            let links = lightbox::engine::compensation::links(&ctx.compensation, &engine.store, &r)?;
            print_describe(ctx, &r, &links, reveal);
        }
        Command::Executions(ExecCmd::History { arn, reverse_order, max_results, next_token, phi }) => {
            let reveal = match reveal_check(engine, ctx, phi, Some(arn))? {
                Ok(r) => r,
                Err(code) => return Ok(code),
            };
            let row = engine.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.clone()))?;
            let known = ctx.phi.identifiers_in_text(&row.input);
            let after: i64 = match next_token {
                Some(t) => t.parse().with_context(|| format!("--next-token {t:?} is not a token this command printed"))?,
                None => 0,
            };
            let limit = (*max_results).clamp(1, 1000);
            let events = engine.store.history(arn, after, limit + 1, *reverse_order)?;
            let more = events.len() > limit;
            let events = &events[..events.len().min(limit)];
            if reveal {
                reveal_record(engine, ctx, phi, Some(arn))?;
            }
            print_history(ctx, events, more, reveal, &known);
        }
        Command::Executions(ExecCmd::Redrive { arn }) => {
            ctx.refuse("redrive")?;
            // Say what the redrive will do (or why it cannot), as the console's dialog does.
            if let Some(row) = engine.store.execution(arn)? {
                let def = engine.store.load(arn).ok().flatten().and_then(|l| Definition::parse_str(&l.definition).ok());
                // When it cannot be redriven, the engine refuses below (and the refusal is audited).
                if let (Ok(c), false) = (lightbox::ops::consequence::redrive(def.as_ref(), &row, Utc::now()), j) {
                    warn_err!("consequence: {}", esc(&c.text));
                }
            }
            let intent = audit::begin(engine.store.conn(), &ctx.entry(audit::Action::Redrive).execution(arn.clone()), Utc::now())?;
            let before = status_of(engine, arn);
            let res = engine.redrive_execution(arn);
            crash_point();
            let entry = ctx
                .entry(audit::Action::Redrive)
                .execution(arn.clone())
                .before(before)
                .after(status_of(engine, arn))
                .outcome(outcome(&res));
            audit::finish(engine.store.conn(), intent, &entry, Utc::now())?;
            let r = res?;
            if j {
                print_json(&json!({"redriveDate": r.redrive.map(ts)}));
            } else {
                say!("{} redriven ({}), now {}", r.arn, r.redrive_count, r.status);
            }
        }
        Command::Executions(ExecCmd::Compensate { arn, reason, reason_code, dry_run }) => {
            return cmd_compensate(ctx, engine, arn, (reason.as_deref(), reason_code.as_deref()), *dry_run);
        }
        Command::Executions(ExecCmd::Release { arn, reason, reason_code }) => {
            ctx.refuse("release")?;
            let reason = &checked_reason(ctx, reason_code.as_deref(), Some(reason))?.to_string();
            let action = audit::Action::Other("release".into());
            let intent = audit::begin(engine.store.conn(), &ctx.entry(action.clone()).execution(arn.clone()).reason(reason), Utc::now())?;
            let before = status_of(engine, arn);
            let res = engine.release_execution(arn);
            crash_point();
            let entry =
                ctx.entry(action).execution(arn.clone()).reason(reason).before(before).after(status_of(engine, arn)).outcome(outcome(&res));
            audit::finish(engine.store.conn(), intent, &entry, Utc::now())?;
            let r = match res {
                Err(e @ EngineError::NotQuarantined(_)) => return Err(UsageError(e.to_string()).into()),
                other => other?,
            };
            if j {
                print_json(&json!({"executionArn": r.arn, "status": r.status.as_str(), "redriveCount": r.redrive_count}));
            } else {
                say!("{} released for one more try ({}), now {}", r.arn, r.redrive_count, r.status);
            }
        }
        Command::Executions(ExecCmd::Stop { arn, error, cause }) => {
            ctx.refuse("stop")?;
            let intent = audit::begin(engine.store.conn(), &ctx.entry(audit::Action::Stop).execution(arn.clone()), Utc::now())?;
            let before = status_of(engine, arn);
            let res = engine.stop_execution(arn, error.clone(), cause.clone());
            crash_point();
            let mut entry =
                ctx.entry(audit::Action::Stop).execution(arn.clone()).before(before).after(status_of(engine, arn)).outcome(outcome(&res));
            if let Some(c) = cause.clone().or(error.clone()) {
                entry = entry.reason(c);
            }
            audit::finish(engine.store.conn(), intent, &entry, Utc::now())?;
            let r = res?;
            if j {
                print_json(&json!({"stopDate": r.stop.map(ts)}));
            } else {
                say!("{} {}", r.arn, r.status);
            }
        }
        Command::Tasks(TaskCmd::List { status, execution, max_results, phi }) => {
            let st = status.to_ascii_uppercase();
            if !["PENDING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "ALL"].contains(&st.as_str()) {
                bail!("--status {status:?} is not a token status (PENDING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, ALL)");
            }
            let reveal = match reveal_check(engine, ctx, phi, execution.as_deref())? {
                Ok(r) => r,
                Err(code) => return Ok(code),
            };
            let rows = engine.store.tokens((st != "ALL").then_some(st.as_str()), execution.as_deref(), *max_results)?;
            if reveal {
                reveal_record(engine, ctx, phi, execution.as_deref())?;
            }
            print_tasks(ctx, &rows, reveal);
        }
        Command::Tasks(TaskCmd::Approve { token, output, override_claim, reason, reason_code }) => {
            let out = output.clone().unwrap_or_else(|| "{}".into());
            let (acting, note) = acting_on(engine, ctx, token, *override_claim, (reason.as_deref(), reason_code.as_deref()), None)?;
            let t = token_action(engine, ctx, audit::Action::Approve, token, note, |e, tok| e.send_task_success_as(tok, &out, &acting))
                .map_err(claim_hint)?;
            task_done(j, &t, "approved", &ctx.user);
        }
        Command::Tasks(TaskCmd::Reject { token, error, cause, override_claim, reason, reason_code }) => {
            let why = [error.clone(), cause.clone()].into_iter().flatten().collect::<Vec<_>>().join(": ");
            let over = (reason.as_deref(), reason_code.as_deref());
            let (acting, note) = acting_on(engine, ctx, token, *override_claim, over, Some(error.as_deref().unwrap_or("")))?;
            let note = [Some(why).filter(|w| !w.is_empty()), note].into_iter().flatten().collect::<Vec<_>>().join("; ");
            let t = token_action(engine, ctx, audit::Action::Reject, token, Some(note), |e, tok| {
                e.send_task_failure_as(tok, error.as_deref(), cause.as_deref(), &acting)
            })
            .map_err(claim_hint)?;
            task_done(j, &t, "rejected", &ctx.user);
        }
        Command::Tasks(TaskCmd::Heartbeat { token }) => {
            let acting = lightbox::engine::Acting::user(ctx.user.clone());
            let t = token_action(engine, ctx, audit::Action::Heartbeat, token, None, |e, tok| e.send_task_heartbeat_as(tok, &acting))?;
            task_done(j, &t, "heartbeat sent", &ctx.user);
        }
        Command::Tasks(TaskCmd::Claim { token }) => {
            let by = ctx.user.clone();
            let t = token_action(engine, ctx, audit::Action::Claim, token, None, |e, tok| e.claim_task(tok, &by))?;
            task_done(j, &t, "claimed", &ctx.user);
        }
        Command::Tasks(TaskCmd::Unclaim { token }) => {
            let by = ctx.user.clone();
            let t = token_action(engine, ctx, audit::Action::Unclaim, token, None, |e, tok| e.unclaim_task(tok, &by))?;
            task_done(j, &t, "unclaimed", &ctx.user);
        }
        Command::Tasks(TaskCmd::Escalate { token, override_claim, reason, reason_code }) => {
            let cause = escalation_cause(ctx, reason.as_deref(), reason_code.as_deref())?;
            let over = (reason.as_deref().filter(|_| *override_claim), reason_code.as_deref());
            let (acting, note) = acting_on(engine, ctx, token, *override_claim, over, Some(lightbox::engine::ESCALATED))?;
            let note = [Some(cause.clone()), note].into_iter().flatten().collect::<Vec<_>>().join("; ");
            let t =
                token_action(engine, ctx, audit::Action::Escalate, token, Some(note), |e, tok| e.escalate_task_as(tok, &cause, &acting))
                    .map_err(claim_hint)?;
            task_done(j, &t, "escalated", &ctx.user);
        }
        Command::Audit(AuditCmd::List { since, actor, action, target, limit, intents, phi }) => {
            let reveal = match reveal_check(engine, ctx, phi, None)? {
                Ok(r) => r,
                Err(code) => return Ok(code),
            };
            let since = match since {
                Some(s) => Some(
                    DateTime::parse_from_rfc3339(s)
                        .with_context(|| format!("--since {s:?} is not an RFC 3339 time like 2026-01-31T08:00:00Z"))?
                        .with_timezone(&Utc),
                ),
                None => None,
            };
            let filter = audit::AuditFilter {
                since,
                actor: actor.clone(),
                action: action.clone(),
                target: target.clone(),
                before_seq: None,
                hide_closed_intents: !*intents,
                limit: *limit,
            };
            let mut rows = audit::list(engine.store.conn(), &filter)?;
            if reveal {
                reveal_record(engine, ctx, phi, None)?;
            } else {
                // Free text an operator typed (a reject cause quoting the patient): masked with
                // the identifiers of the execution it names, and JSON inside it masked too.
                let mut known_by_arn: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
                for r in &mut rows {
                    let known = match &r.execution_arn {
                        Some(a) => known_by_arn
                            .entry(a.clone())
                            .or_insert_with(|| {
                                engine.store.execution(a).ok().flatten().map(|x| ctx.phi.identifiers_in_text(&x.input)).unwrap_or_default()
                            })
                            .clone(),
                        None => vec![],
                    };
                    r.reason = r.reason.take().map(|t| ctx.phi.mask_text_with(&t, &known));
                    r.error = r.error.take().map(|t| ctx.phi.mask_text_with(&t, &known));
                }
            }
            if j {
                print_json(&json!({"entries": rows.iter().map(|r| r.to_json()).collect::<Vec<_>>()}));
            } else {
                audit_table(&rows);
            }
        }
        Command::Audit(AuditCmd::Verify) => {
            let report = audit::verify(engine.store.conn())?;
            if j {
                print_json(&report.to_json());
            } else {
                say!("{report}");
            }
            if !report.ok {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Audit(AuditCmd::Resolve { seq, reason, reason_code }) => {
            ctx.refuse("audit resolve")?;
            let reason = &checked_reason(ctx, reason_code.as_deref(), Some(reason))?.to_string();
            let arn: Option<String> =
                engine.store.conn().query_row("SELECT execution_arn FROM audit_log WHERE seq = ?1", [seq], |r| r.get(0)).ok().flatten();
            let found = arn.as_deref().map(|a| status_of(engine, a));
            let rec = audit::resolve(engine.store.conn(), *seq, &ctx.user, reason, found, Utc::now())?;
            if j {
                print_json(&rec.to_json());
            } else {
                say!("{rec}");
            }
        }
        Command::Audit(AuditCmd::Reanchor { reason, reason_code }) => {
            ctx.refuse("audit reanchor")?;
            let reason = &checked_reason(ctx, reason_code.as_deref(), Some(reason))?.to_string();
            let rec = audit::reanchor(engine.store.conn(), &ctx.user, reason, Utc::now())?;
            if j {
                print_json(&rec.to_json());
            } else {
                say!("{rec}");
            }
        }
        Command::Store(StoreCmd::Backup { file }) => {
            let src = engine.store.path().map(|p| p.display().to_string()).unwrap_or_default();
            engine.store.backup_to(file).with_context(|| format!("backing up {src} to {}", file.display()))?;
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            if j {
                print_json(&json!({"source": src, "backup": file.display().to_string(), "bytes": size}));
            } else {
                say!("{src} copied to {} ({size} bytes); check the copy with `lightbox store check {}`", file.display(), file.display());
            }
        }
        Command::Engine { seconds } => run_engine(engine, *seconds, &ctx.sinks, &ctx.slo)?,
        Command::Dependencies(cmd) => return cmd_dependencies(cmd, ctx, engine),
        Command::Demo { seconds, speed, seed } => run_demo(engine, *seconds, *speed, *seed, j, &ctx.sinks)?,
        Command::Outbox(cmd) => return cmd_outbox(cmd, ctx, engine),
        Command::Slo(SloCmd::List { all, at, window }) => cmd_slo_list(ctx, engine, *all, at.as_deref(), window)?,
        Command::Run(_)
        | Command::Completions { .. }
        | Command::Reasons
        | Command::Man { .. }
        | Command::Validate { .. }
        | Command::TestState { .. }
        | Command::Bench { .. }
        | Command::Console { .. }
        | Command::Serve { .. }
        | Command::Events(_)
        | Command::Store(StoreCmd::Check { .. }) => {
            bail!("internal error: this command is handled before the store opens")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `executions list`: a page of executions (masked unless revealed), and where the next starts.
fn print_executions(ctx: &Ctx, rows: &[ExecutionSummary], more: bool, reveal: bool) {
    if ctx.json {
        let items = rows.iter().map(exec_list_item).map(|v| if reveal { v } else { ctx.phi.mask_envelope(&v, &[]) });
        let mut v = json!({"executions": items.collect::<Vec<_>>()});
        if let (true, Some(last), Some(o)) = (more, rows.last(), v.as_object_mut()) {
            o.insert("nextToken".into(), Value::String(encode_token(last)));
        }
        print_json(&v);
    } else {
        say!("{:<10} {:<24} {}", "STATUS", "STARTED", "EXECUTION ARN");
        for r in rows {
            // An execution that ended in error says which after its ARN (a quarantined one
            // `Lightbox.Quarantined`): error names are not patient data.
            match &r.error {
                Some(e) if r.status != lightbox::history::ExecutionStatus::Running => {
                    say!("{:<10} {:<24} {}  {}", r.status.as_str(), ts(r.start), r.arn, esc(e))
                }
                _ => say!("{:<10} {:<24} {}", r.status.as_str(), ts(r.start), r.arn),
            }
        }
        if more && let Some(last) = rows.last() {
            say!("(more: --next-token {})", encode_token(last));
        }
    }
}

/// `executions describe`: one execution (its error and cause already masked unless revealed)
/// with its links to and from compensations.
fn print_describe(ctx: &Ctx, r: &ExecutionSummary, links: &[(&'static str, String)], reveal: bool) {
    if ctx.json {
        let mut v = describe(r);
        if let Some(o) = v.as_object_mut() {
            for (k, arn) in links {
                o.insert((*k).into(), Value::String(arn.clone()));
            }
        }
        print_json(&if reveal { v } else { ctx.phi.mask_envelope(&v, &[]) });
    } else {
        for (k, arn) in links {
            say!("  {}: {}", if *k == "compensates" { "compensates" } else { "compensated by" }, esc(arn));
        }
        say!("{}\n  status: {}\n  started: {}", r.arn, r.status, ts(r.start));
        if let Some(s) = r.stop {
            say!("  stopped: {}", ts(s));
        }
        if let Some(e) = &r.error {
            say!("  error: {}", esc(e));
        }
        if let Some(c) = &r.cause {
            say!("  cause: {}", esc(c));
        }
        if r.redrive_count > 0 {
            say!("  redrives: {}", r.redrive_count);
        }
    }
}

/// `executions history`: a page of events (masked with the execution's identifiers unless revealed).
fn print_history(ctx: &Ctx, events: &[lightbox::history::HistoryEvent], more: bool, reveal: bool, known: &[String]) {
    if ctx.json {
        let items = events.iter().map(|e| e.to_aws_json()).map(|v| if reveal { v } else { ctx.phi.mask_envelope(&v, known) });
        let mut v = json!({"events": items.collect::<Vec<_>>()});
        if let (true, Some(last), Some(o)) = (more, events.last(), v.as_object_mut()) {
            o.insert("nextToken".into(), Value::String(last.id.to_string()));
        }
        print_json(&v);
    } else {
        say!("{:>5} {:<24} {:<28} {}", "ID", "TIME", "TYPE", "STATE");
        for e in events {
            say!("{:>5} {} {:<28} {}", e.id, ts(e.timestamp), e.event_type, esc(e.state_name().unwrap_or("")));
        }
    }
}

/// `tasks list`: task tokens (their parameters masked unless revealed; tables show a token's first 8 characters).
fn print_tasks(ctx: &Ctx, rows: &[PendingTask], reveal: bool) {
    if ctx.json {
        let items = rows.iter().map(token_json).map(|v| if reveal { v } else { ctx.phi.mask_envelope(&v, &[]) });
        print_json(&json!({"tasks": items.collect::<Vec<_>>()}));
    } else {
        say!("{:<10} {:<10} {:<24} {:<24} {}", "TOKEN", "STATUS", "STATE", "ISSUED", "EXECUTION ARN");
        for t in rows {
            say!("{:<10} {:<10} {:<24} {:<24} {}", short_token(&t.token), t.status, esc(&t.state_name), ts(t.issued), t.execution_arn);
        }
    }
}

/// Escalation ladders and dependencies from the config; with `demo` (the store holds the demo,
/// or `lightbox demo` is about to install it) the demo's where the config names none. The
/// config's ladders are checked against `sinks`, the sinks in force.
fn configure_resilience(engine: &mut Engine, config: &Config, demo: bool, sinks: &[lightbox::outbox::Sink]) -> Result<()> {
    lightbox::engine::escalation::validate(&config.escalation)?;
    lightbox::engine::dependencies::validate(&config.dependencies)?;
    engine.escalation = config.escalation.clone();
    engine.dependencies = config.dependencies.clone();
    // The config's ladders notify the sinks in force (the config's, else the demo's).
    lightbox::engine::escalation::check_sinks(&mut engine.escalation, sinks).with_context(|| config.invalid())?;
    if demo {
        let (ladders, deps) = lightbox::sim::resilience_defaults();
        if config.escalation.is_empty() {
            // The demo's ladders page the demo's sinks; with a site's own sinks their notices
            // are events like any other (archived, shown in Events), as they name no sink there.
            engine.escalation = ladders;
        }
        if config.dependencies.is_empty() {
            engine.dependencies = deps;
        }
    }
    Ok(())
}

/// `lightbox dependencies list|hold|release|reset`.
fn cmd_dependencies(cmd: &DepCmd, ctx: &Ctx, engine: &mut Engine) -> Result<ExitCode> {
    use lightbox::engine::dependencies as deps;
    let now = engine.clock.now();
    let (store, list) = (&engine.store, &engine.dependencies);
    let done = |what: &str, name: &str, changed: bool, extra: Value| {
        if ctx.json {
            print_json(&json!({"dependency": name, "action": what, "changed": changed, "by": ctx.user, "detail": extra}));
        } else if changed {
            say!("{}: {what} by {}", esc(name), esc(&ctx.user));
        } else {
            say!("{}: nothing to do ({what} already in effect)", esc(name));
        }
    };
    let writable = || if ctx.read_only { bail!("read-only: dependency holds and breakers cannot be changed") } else { Ok(()) };
    match cmd {
        DepCmd::List => {
            let rows = deps::dependencies(store, list, now)?;
            if ctx.json {
                print_json(&serde_json::to_value(&rows)?);
            } else if rows.is_empty() {
                say!("no dependencies configured ([[dependencies]] in the config)");
            } else {
                say!("{:<20} {:<36} {:<10} {:>8} {:<8} {:>7}  {}", "NAME", "MATCH", "BREAKER", "FAILURES", "HELD", "WAITING", "OPEN LEFT");
                for r in rows {
                    let left = r.open_seconds_left.map(|s| format!("{}m{:02}s", s / 60, s % 60)).unwrap_or_else(|| "-".into());
                    let held = if r.held { format!("by {}", esc(&r.held_by.unwrap_or_default())) } else { "no".into() };
                    say!(
                        "{:<20} {:<36} {:<10} {:>8} {:<8} {:>7}  {}",
                        esc(&r.name),
                        esc(&r.matches),
                        r.breaker,
                        format!("{}/{}", r.failures, r.threshold),
                        held,
                        r.waiting,
                        left
                    );
                }
            }
        }
        DepCmd::Hold { name, reason, reason_code } => {
            let reason = &checked_reason(ctx, reason_code.as_deref(), Some(reason))?.to_string();
            writable()?;
            let changed = deps::hold(store.conn(), list, name, &ctx.user, audit::Source::Cli, reason, now)?;
            done("held", name, changed, json!({}));
        }
        DepCmd::Release { name, reason, reason_code } => {
            let reason = &checked_reason(ctx, reason_code.as_deref(), Some(reason))?.to_string();
            writable()?;
            let woken = deps::release(store.conn(), list, name, &ctx.user, audit::Source::Cli, reason, now)?;
            done("released", name, woken.is_some(), json!({"resumed": woken.unwrap_or(0)}));
        }
        DepCmd::Reset { name, reason, reason_code } => {
            let reason = &checked_reason(ctx, reason_code.as_deref(), Some(reason))?.to_string();
            writable()?;
            let changed = deps::reset(store.conn(), list, name, &ctx.user, audit::Source::Cli, reason, now)?;
            done("reset", name, changed, json!({}));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn outcome<T>(r: &std::result::Result<T, EngineError>) -> audit::Outcome {
    match r {
        Ok(_) => audit::Outcome::Ok,
        Err(e) => audit::Outcome::Error(e.to_string()),
    }
}

/// What a token command did, and who did it (the acting user: `--user`, config, else the OS account).
fn task_done(j: bool, t: &PendingTask, verb: &str, user: &str) {
    if j {
        print_json(&json!({}));
    } else {
        say!("{} {verb} by {} ({}), now {} ({})", short_token(&t.token), esc(user), esc(&t.state_name), t.status, t.execution_arn);
    }
}

/// `audit list` as a table: a header, then one row per entry, columns aligned.
fn audit_table(rows: &[audit::AuditRecord]) {
    let width = |f: &dyn Fn(&audit::AuditRecord) -> usize, head: &str| rows.iter().map(f).chain([head.len()]).max().unwrap_or(0);
    let (actor_w, action_w, target_w) = (
        width(&|r| esc(&r.actor).chars().count(), "ACTOR"),
        width(&|r| r.action.chars().count(), "ACTION"),
        width(&|r| r.target().chars().count(), "TARGET"),
    );
    say!("{:>6}  {:<24}  {:<actor_w$}  {:<7}  {:<action_w$}  {:<target_w$}  OUTCOME", "SEQ", "TIME", "ACTOR", "SOURCE", "ACTION", "TARGET");
    for r in rows {
        let outcome = match &r.error {
            Some(e) if !r.is_ok() => format!("error: {}", esc(e)),
            _ => r.result.clone(),
        };
        let reason = match (&r.reason_code, &r.reason) {
            (Some(c), x) => format!("  reason: [{}] {}", esc(c), esc(x.as_deref().unwrap_or_default())),
            (None, Some(x)) => format!("  reason: {}", esc(x)),
            (None, None) => String::new(),
        };
        say!(
            "{:>6}  {:<24}  {:<actor_w$}  {:<7}  {:<action_w$}  {:<target_w$}  {outcome}{reason}",
            r.seq,
            ts(r.time),
            esc(&r.actor),
            r.source,
            r.action,
            r.target()
        );
    }
}

/// An error and its causes, each said once. An error that wraps another and repeats its text
/// (`#[error("{0}")]` over a source) would otherwise print the same sentence twice.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.is_empty() {
            out = c;
        } else if !c.is_empty() && !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// A token or token prefix from the command line: a prefix shorter than 8 characters names
/// too many tokens to be safe, and says so (exit 2) before anything is done or recorded.
fn check_token_arg(token: &str) -> Result<()> {
    let t = token.trim().trim_end_matches('…');
    let n = t.chars().count();
    if n < 8 {
        return Err(UsageError(format!(
            "token {:?} is too short: a token prefix needs at least 8 characters ({n} given; `lightbox tasks list` shows the first 8)",
            esc(t)
        ))
        .into());
    }
    Ok(())
}

fn token_json(t: &PendingTask) -> Value {
    json!({
        "taskToken": t.token,
        "executionArn": t.execution_arn,
        "stateName": t.state_name,
        "resource": t.resource,
        "status": t.status,
        "input": t.parameters,
        "issuedDate": ts(t.issued),
        "timeoutDate": t.timeout.map(ts),
        "heartbeatDate": t.heartbeat.map(ts),
        "closedDate": t.closed.map(ts),
        "claimedBy": t.claimed_by,
    })
}

fn exec_list_item(r: &ExecutionSummary) -> Value {
    let mut v = json!({
        "executionArn": r.arn,
        "stateMachineArn": r.state_machine_arn,
        "name": r.name,
        "status": r.status.as_str(),
        "startDate": ts(r.start),
    });
    if let Some(o) = v.as_object_mut() {
        if let Some(s) = r.stop {
            o.insert("stopDate".into(), Value::String(ts(s)));
        }
        if r.redrive_count > 0 {
            o.insert("redriveCount".into(), Value::from(r.redrive_count));
        }
        if let Some(d) = r.redrive {
            o.insert("redriveDate".into(), Value::String(ts(d)));
        }
    }
    v
}

/// `[compensation]` from config, checked, over the demo's defaults.
fn compensation_config(config: &Config) -> Result<lightbox::ops::compensation::CompensationMap> {
    lightbox::ops::compensation::validate(&config.compensation).map_err(|e| UsageError(e.to_string()))?;
    Ok(lightbox::ops::compensation::effective(&config.compensation))
}

/// `executions compensate`: the plan (masked), then, unless --dry-run, the compensation started
/// once (audited: intent, then outcome) or the one that already exists.
fn cmd_compensate(ctx: &Ctx, engine: &mut Engine, arn: &str, reason: (Option<&str>, Option<&str>), dry_run: bool) -> Result<ExitCode> {
    use lightbox::engine::compensation::{CompensateError, run};
    use lightbox::ops::compensation::CompensationError;
    let reason = compensate_reason(ctx, reason, dry_run)?;
    let known = engine.store.execution(arn)?.map(|r| ctx.phi.identifiers_in_text(&r.input)).unwrap_or_default();
    let res = if dry_run {
        run(engine, &ctx.compensation, arn, &reason, true)
    } else {
        let intent = audit::begin(
            engine.store.conn(),
            &ctx.entry(audit::Action::Compensate).execution(arn.to_string()).reason(reason.clone()),
            Utc::now(),
        )?;
        let res = run(engine, &ctx.compensation, arn, &reason, false);
        crash_point();
        let mut entry = ctx.entry(audit::Action::Compensate).execution(arn.to_string()).reason(reason.clone());
        entry = match &res {
            Ok(o) => entry.after(Value::Object(compensation_after(o))),
            Err(e) => entry.outcome(audit::Outcome::Error(ctx.phi.mask_text_with(&e.to_string(), &known))),
        };
        audit::finish(engine.store.conn(), intent, &entry, Utc::now())?;
        res
    };
    let o = match res {
        Ok(o) => o,
        Err(CompensateError::Compensation(e @ (CompensationError::NotCompensable { .. } | CompensationError::NotConfigured { .. }))) => {
            return Err(UsageError(e.to_string()).into());
        }
        Err(e) => return Err(e.into()),
    };
    print_compensation(ctx, &o, &known, dry_run);
    Ok(ExitCode::SUCCESS)
}

/// `executions compensate`'s reason: required (and the action refused when read-only) unless
/// it is a dry run.
/// A reason (`--reason-code` and `--reason`) reads `[code] note` where it travels (the audit
/// row takes the code apart; the compensation receives both).
fn compensate_reason(ctx: &Ctx, (reason, code): (Option<&str>, Option<&str>), dry_run: bool) -> Result<String> {
    if dry_run {
        return Ok(reason.map(str::trim).unwrap_or_default().to_string());
    }
    ctx.refuse("compensate")?;
    Ok(checked_reason(ctx, code, reason)?.to_string())
}

/// `tasks escalate`'s cause, which its audit row says too: `[code] note` of `--reason-code
/// --reason` (the row keeps the code apart), or "escalated by USER" when no reason is given.
fn escalation_cause(ctx: &Ctx, reason: Option<&str>, code: Option<&str>) -> Result<String> {
    if reason.is_none() && code.is_none() {
        return Ok(format!("escalated by {}", ctx.user));
    }
    Ok(checked_reason(ctx, code, reason)?.to_string())
}

/// What a compensation did, for its audit row: the compensation execution, whether this call
/// started it, and how many steps it undoes.
fn compensation_after(o: &lightbox::ops::compensation::Outcome) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("compensation".into(), json!(o.started.as_ref().or(o.existing.as_ref()).map(|r| r.arn.clone())));
    m.insert("started".into(), json!(o.started.is_some()));
    m.insert("steps".into(), json!(o.plan.steps.len()));
    m
}

/// What `executions compensate` says: the plan (masked with the execution's identifiers), and
/// what was started or found (on a dry run only what exists already).
fn print_compensation(ctx: &Ctx, o: &lightbox::ops::compensation::Outcome, known: &[String], dry_run: bool) {
    use lightbox::ops::compensation as comp;
    let comp_row = o.started.as_ref().or(o.existing.as_ref());
    if ctx.json {
        let mut v = comp::plan_json(&o.plan);
        if let Some(m) = v.as_object_mut() {
            m.insert("dryRun".into(), Value::Bool(dry_run));
            m.insert("started".into(), Value::Bool(o.started.is_some()));
            m.insert("alreadyCompensated".into(), Value::Bool(o.existing.is_some()));
            if let Some(r) = comp_row {
                m.insert("compensationExecutionArn".into(), Value::String(r.arn.clone()));
                m.insert("compensationStatus".into(), Value::String(r.status.as_str().into()));
            }
            m.insert("message".into(), Value::String(o.message()));
        }
        print_json(&ctx.phi.mask_envelope(&v, known));
        return;
    }
    say!("plan for {} ({}): {}", esc(&o.plan.execution_arn), o.plan.status, esc(&o.plan.summary()));
    for (i, s) in o.plan.steps.iter().enumerate() {
        let short = |v: &Value| {
            let t = ctx.phi.mask_value_with(v, known).to_string();
            if t.chars().count() > 100 { format!("{}…", t.chars().take(99).collect::<String>()) } else { t }
        };
        say!("  {}. {}  input {}  output {}", i + 1, esc(&s.state), esc(&short(&s.input)), esc(&short(&s.output)));
    }
    if !dry_run || comp_row.is_some() {
        say!("{}", esc(&o.message()));
    }
}

fn describe(r: &ExecutionSummary) -> Value {
    let mut v = exec_list_item(r);
    if let Some(o) = v.as_object_mut() {
        o.insert("input".into(), Value::String(r.input.clone()));
        o.insert("inputDetails".into(), json!({"included": true}));
        if let Some(out) = &r.output {
            o.insert("output".into(), Value::String(out.clone()));
            o.insert("outputDetails".into(), json!({"included": true}));
        }
        if let Some(e) = &r.error {
            o.insert("error".into(), Value::String(e.clone()));
        }
        if let Some(c) = &r.cause {
            o.insert("cause".into(), Value::String(c.clone()));
        }
        o.insert("redriveCount".into(), Value::from(r.redrive_count));
        let (st, reason) = if r.status.is_redrivable() {
            ("REDRIVABLE", None)
        } else if r.status == ExecutionStatus::Running {
            ("NOT_REDRIVABLE", Some("Execution is RUNNING and cannot be redriven"))
        } else {
            ("NOT_REDRIVABLE", Some("Execution is SUCCEEDED and cannot be redriven"))
        };
        o.insert("redriveStatus".into(), Value::String(st.into()));
        if let Some(reason) = reason {
            o.insert("redriveStatusReason".into(), Value::String(reason.into()));
        }
    }
    v
}

fn encode_token(last: &ExecutionSummary) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{}", last.start.timestamp_millis(), last.arn))
}

fn decode_token(t: &str) -> Result<(i64, String)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).ok().and_then(|b| String::from_utf8(b).ok());
    let (ms, arn) = raw
        .as_deref()
        .and_then(|s| s.split_once('|'))
        .with_context(|| format!("--next-token {t:?} is not a token this command printed"))?;
    Ok((ms.parse().with_context(|| format!("--next-token {t:?} is not a token this command printed"))?, arn.to_string()))
}

/// `lightbox outbox …`: the relay's sinks and rows, and the operator's actions on them (audited).
fn cmd_outbox(cmd: &OutboxCmd, ctx: &Ctx, engine: &mut Engine) -> Result<ExitCode> {
    use lightbox::outbox;
    let conn = engine.store.conn();
    let action = match cmd {
        OutboxCmd::List { sink, parked, limit } => {
            let sinks: Vec<outbox::Sink> = match sink {
                Some(n) => vec![outbox::find_sink(&ctx.sinks, n)?.clone()],
                None => ctx.sinks.clone(),
            };
            if engine.store.is_read_only() {
                bail!("the outbox cannot be listed from a read-only store yet");
            }
            let status = outbox::status(conn, &sinks, Utc::now().timestamp_millis())?;
            let mut rows = vec![];
            for s in &sinks {
                rows.extend(outbox::rows(conn, s, *parked, *limit)?);
            }
            print_outbox(ctx, &status, &rows, sinks.is_empty());
            return Ok(ExitCode::SUCCESS);
        }
        other => outbox_action(ctx, other)?,
    };
    ctx.refuse(action.name())?;
    let said = outbox::act(conn, &ctx.sinks, &action, &ctx.user, audit::Source::Cli, Utc::now())?;
    print_outbox_done(ctx, &action, &said);
    Ok(ExitCode::SUCCESS)
}

/// The relay action an `outbox` command (other than `list`) asks for.
fn outbox_action(ctx: &Ctx, cmd: &OutboxCmd) -> Result<lightbox::outbox::Action> {
    use lightbox::outbox::Action;
    Ok(match cmd {
        OutboxCmd::List { .. } => bail!("internal error: outbox list is not an action"),
        OutboxCmd::Retry { row, sink } => Action::Retry { sink: sink.clone(), row: *row },
        OutboxCmd::Park { row, sink, reason, reason_code } => {
            Action::Park { sink: sink.clone(), row: *row, reason: checked_reason(ctx, reason_code.as_deref(), Some(reason))?.to_string() }
        }
        OutboxCmd::Requeue { row, sink, parked } => {
            if row.is_none() && !parked {
                bail!("name a row to requeue, or --parked for every parked row of {sink}");
            }
            Action::Requeue { sink: sink.clone(), row: *row }
        }
        OutboxCmd::Pause { sink, reason, reason_code } => {
            Action::Pause { sink: sink.clone(), reason: checked_reason(ctx, reason_code.as_deref(), Some(reason))?.to_string() }
        }
        OutboxCmd::Resume { sink } => Action::Resume { sink: sink.clone() },
    })
}

/// What an outbox action did.
fn print_outbox_done(ctx: &Ctx, action: &lightbox::outbox::Action, said: &str) {
    if ctx.json {
        print_json(&json!({"action": action.name(), "sink": action.sink(), "result": said}));
    } else {
        say!("{said}");
    }
}

/// `outbox list`: every sink's status (`no_sinks`: none is configured), then the rows behind them.
fn print_outbox(ctx: &Ctx, status: &[lightbox::outbox::SinkStatus], rows: &[lightbox::outbox::DeliveryRow], no_sinks: bool) {
    use lightbox::outbox;
    if ctx.json {
        print_json(&json!({
            "sinks": status.iter().map(outbox::SinkStatus::to_json).collect::<Vec<_>>(),
            "rows": rows.iter().map(outbox::DeliveryRow::to_json).collect::<Vec<_>>(),
        }));
    } else if no_sinks {
        say!("no sinks configured: add [[outbox.sinks]] to the config (see config.example.toml)");
    } else {
        // Columns as wide as the longest name and kind (with its format when not
        // eventbridge), so long names keep the table aligned.
        let kind = |s: &lightbox::outbox::SinkStatus| {
            if s.format == "eventbridge" { s.kind.clone() } else { format!("{}/{}", s.kind, s.format) }
        };
        let nw = status.iter().map(|s| esc(&s.name).chars().count()).max().unwrap_or(0).max(16);
        let kw = status.iter().map(|s| kind(s).len()).max().unwrap_or(0).max(8);
        say!(
            "{:<nw$} {:<kw$} {:<10} {:>8} {:>9} {:>7} {:>9} {:>8} {:>7}",
            "SINK",
            "KIND",
            "BREAKER",
            "BACKLOG",
            "OLDEST",
            "RATE/m",
            "DELIVERED",
            "FAILURES",
            "PARKED"
        );
        for s in status {
            let breaker = match s.breaker_left_ms {
                Some(ms) => format!("{} {}s", s.breaker.as_str(), ms / 1000),
                None if s.paused => "PAUSED".into(),
                None => s.breaker.as_str().into(),
            };
            let oldest = s.oldest_age_ms.map(|m| format!("{}s", m / 1000)).unwrap_or_else(|| "-".into());
            say!(
                "{:<nw$} {:<kw$} {:<10} {:>8} {:>9} {:>7} {:>9} {:>8} {:>7}",
                esc(&s.name),
                kind(s),
                breaker,
                s.backlog,
                oldest,
                s.rate_per_min,
                s.delivered,
                s.failures,
                s.parked
            );
        }
        // When each open breaker lets its next trial row through.
        let now = chrono::Utc::now().timestamp_millis();
        for s in status {
            if let Some(at) = s.next_trial_ms {
                let when = lightbox::events::time(lightbox::store::from_ms(at));
                let left = (at - now).max(0).saturating_add(999) / 1000;
                let next = if left == 0 { "now".to_string() } else { format!("in {left}s") };
                say!("{}: breaker {}, next trial {next} ({when})", esc(&s.name), s.breaker.as_str());
            }
        }
        if !rows.is_empty() {
            say!("");
            say!("{:>7} {:<16} {:>8} {:<7} {:<32} EXECUTION", "ROW", "SINK", "ATTEMPTS", "PARKED", "DETAIL-TYPE");
            for r in rows {
                say!(
                    "{:>7} {:<16} {:>8} {:<7} {:<32} {}",
                    r.row_id,
                    esc(&r.sink),
                    r.attempts,
                    if r.parked { "yes" } else { "" },
                    esc(&r.detail_type),
                    esc(&r.stream)
                );
            }
        }
    }
}

/// Start the outbox relay beside the engine (its own thread and connection); stop it on drop.
struct RelayGuard(Option<(std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<()>)>);

impl RelayGuard {
    fn start(engine: &Engine, sinks: &[lightbox::outbox::Sink]) -> Result<RelayGuard> {
        let Some(db) = engine.store.path() else { return Ok(RelayGuard(None)) };
        RelayGuard::start_at(db, engine.store.is_read_only(), sinks)
    }

    /// The relay of the store at `db` (none for a store this process may not write, or no sinks).
    fn start_at(db: &Path, read_only: bool, sinks: &[lightbox::outbox::Sink]) -> Result<RelayGuard> {
        if sinks.is_empty() || read_only {
            return Ok(RelayGuard(None));
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = lightbox::outbox::spawn(db.to_path_buf(), sinks.to_vec(), stop.clone()).context("starting the outbox relay")?;
        Ok(RelayGuard(Some((stop, h))))
    }
}

impl Drop for RelayGuard {
    fn drop(&mut self) {
        if let Some((stop, h)) = self.0.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

fn run_engine(
    engine: &mut Engine,
    seconds: Option<u64>,
    sinks: &[lightbox::outbox::Sink],
    slo: &[lightbox::ops::slo::SloConfig],
) -> Result<()> {
    let _relay = RelayGuard::start(engine, sinks)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stop_at = seconds.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    let mut slo = slo_watcher(slo)?;
    rt.block_on(async {
        tracing::info!(owner = engine.lease_owner(), "engine worker started");
        loop {
            if stop_at.is_some_and(|t| std::time::Instant::now() >= t) {
                return Ok(());
            }
            if let Err(e) = slo.tick(&engine.store, engine.clock.now()) {
                tracing::warn!(error = %e, "evaluating SLO clocks failed");
            }
            let n = engine.run_due(256)?;
            if n > 0 {
                continue;
            }
            let next = engine.store.next_timer()?;
            let wait = next.map(|t| (t - Utc::now()).to_std().unwrap_or_default()).unwrap_or(std::time::Duration::from_millis(500));
            let wait = wait.clamp(std::time::Duration::from_millis(10), std::time::Duration::from_millis(500));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tokio::signal::ctrl_c() => { tracing::info!("engine worker interrupted"); return Ok(()); }
            }
        }
    })
}

/// `lightbox serve`: the Step Functions API on this engine until interrupted, with the outbox
/// relay and the SLO watcher beside it as in `lightbox engine`.
fn cmd_serve(
    engine: Engine,
    ctx: &Ctx,
    config: &Config,
    bind: Option<String>,
    tls: Option<(PathBuf, PathBuf)>,
    insecure_no_tls: bool,
) -> Result<ExitCode> {
    let cfg = &config.serve;
    let bind_text = bind.or_else(|| cfg.bind.clone()).unwrap_or_else(|| "127.0.0.1:8083".into());
    let addr: std::net::SocketAddr = bind_text
        .parse()
        .map_err(|e| UsageError(format!("--bind {bind_text:?} is not an address and port such as 127.0.0.1:8083 ({e})")))?;
    let tls = tls.or_else(|| cfg.tls_cert.clone().zip(cfg.tls_key.clone()));
    let opts = lightbox::serve::Options {
        bind: addr,
        credentials: cfg.all_credentials()?,
        tls,
        insecure_no_tls,
        read_only: ctx.read_only,
        sync_timeout: std::time::Duration::from_secs(cfg.sync_timeout_seconds.unwrap_or(60).clamp(1, 3600)),
        max_connections: cfg.max_connections.unwrap_or(128).clamp(1, 10_000),
        sinks: ctx.sinks.clone(),
        reasons: ctx.reasons.clone(),
    };
    opts.check()?;
    let _relay = RelayGuard::start(&engine, &ctx.sinks)?;
    let mut slo = slo_watcher(&ctx.slo)?;
    let tick = Box::new(move |engine: &Engine| {
        if let Err(e) = slo.tick(&engine.store, engine.clock.now()) {
            tracing::warn!(error = %e, "evaluating SLO clocks failed");
        }
    });
    let signed = !opts.credentials.is_empty();
    lightbox::serve::run(engine, opts, tick, |addr, tls| {
        let scheme = if tls { "https" } else { "http" };
        say!("lightbox serve: listening on {scheme}://{addr}{}", if signed { " (SigV4 required)" } else { "" });
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Start synthetic studies on the demo definitions, play the radiologist (approve most
/// AI drafts, reject one), and print where every study ended up.
fn run_demo(engine: &mut Engine, seconds: u64, speed: f64, seed: u64, j: bool, sinks: &[lightbox::outbox::Sink]) -> Result<()> {
    if !(speed > 0.0 && speed <= 10_000.0) {
        bail!("--speed {speed} must be between 0 and 10000 simulated minutes per minute");
    }
    lightbox::sim::Demo::install(engine)?;
    // The relay delivers the demo's events while it runs, as `lightbox engine` and the console do.
    let _relay = RelayGuard::start(engine, sinks)?;
    let mut demo = lightbox::sim::Demo::new(seed, speed);
    let (mut started, mut approved, mut rejected) = (0, 0, 0);
    let mut minutes = 0.0;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < until {
        let r = demo.tick(engine)?;
        started += r.started;
        approved += r.approved;
        rejected += r.rejected;
        minutes = r.sim_minutes;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let stages = lightbox::sim::stage_map();
    let rows = engine.store.executions(&ExecutionFilter { limit: 100_000, ..Default::default() })?;
    let studies: Vec<lightbox::ops::project::Study> =
        rows.iter().filter_map(|r| lightbox::ops::project::Study::from_execution(r, &stages)).collect();
    let counts = lightbox::ops::project::StageCounts::of(&studies);
    let mut by_status = std::collections::BTreeMap::new();
    for r in &rows {
        *by_status.entry(r.status.as_str()).or_insert(0usize) += 1;
    }
    let pending = engine.store.tokens(Some("PENDING"), None, 100_000)?.len();
    if j {
        print_json(&json!({
            "simulatedMinutes": minutes,
            "started": started,
            "approved": approved,
            "rejected": rejected,
            "pendingReviews": pending,
            "executions": by_status,
            "stages": counts.by_stage.iter().map(|(s, (n, stat))| (s.as_str().to_string(), json!({"total": n, "stat": stat}))).collect::<serde_json::Map<_, _>>(),
            "exceptions": counts.exceptions.iter().map(|(e, n)| (e.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        }));
    } else {
        say!("Lightbox demo hospital: {seconds} s at {speed}x = {minutes:.0} simulated minutes (synthetic patients)");
        say!("  orders started {started}, reviews approved {approved}, rejected {rejected}, pending {pending}");
        say!("  executions: {}", by_status.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", "));
        say!(
            "  in flight by stage: {}",
            counts.by_stage.iter().map(|(s, (n, _))| format!("{} {n}", s.as_str())).collect::<Vec<_>>().join(", ")
        );
        if !counts.exceptions.is_empty() {
            say!("  exceptions: {}", counts.exceptions.iter().map(|(e, n)| format!("{} {n}", e.as_str())).collect::<Vec<_>>().join(", "));
        }
    }
    Ok(())
}

fn cmd_bench(executions: usize, list_rows: usize, restart: usize, dir: Option<&Path>, j: bool) -> Result<ExitCode> {
    let (_scratch, dir) = bench_dir(dir)?;
    let r = lightbox::bench::run(&dir, executions, list_rows, restart)?;
    if j {
        print_json(&r.to_json());
    } else {
        say!("durable engine, SQLite WAL, {} executions of a 10-state callback workflow", r.executions);
        say!("  transitions: {} in {:.2} s = {:.0} transitions/s", r.transitions, r.seconds, r.transitions_per_second);
        say!("  step latency: p50 {:.3} ms, p99 {:.3} ms", r.step_p50_ms, r.step_p99_ms);
        say!("  executions list (100 rows) over {} stored: {:.2} ms", r.list_rows, r.list_ms);
        say!("  restart: {} in-flight executions resumed in {:.0} ms", r.restart_inflight, r.restart_ms);
        say!("  SLO clocks: {} recomputed (read, sorted by time to breach, compliance) in {:.1} ms", r.slo_clocks, r.slo_recompute_ms);
        for f in &r.fanout {
            say!(
                "  fan-out: Map over {} items ({}): {} in {:.2} s ({:.1} µs/item), {} steps, {} events, longest step {:.1} ms",
                f.items,
                f.mode,
                f.status,
                f.seconds,
                f.seconds * 1e6 / f.items.max(1) as f64,
                f.steps,
                f.events,
                f.max_step_ms
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A child process killed when this goes out of scope.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `lightbox bench --serve`: W1 through boto3 against `lightbox serve`, then against moto's
/// server, each on 127.0.0.1 (scripts/bench_serve.py does the driving).
fn cmd_bench_serve(executions: usize, dir: Option<&Path>, j: bool) -> Result<ExitCode> {
    use std::io::BufRead as _;
    let python = std::env::var_os("LIGHTBOX_BENCH_PYTHON")
        .or_else(|| std::env::var_os("LIGHTBOX_TEST_PYTHON"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let has = |module: &str| {
        std::process::Command::new(&python).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
    };
    if !has("boto3") {
        bail!("{} has no boto3: run scripts/py-env.sh and set LIGHTBOX_BENCH_PYTHON to the python it prints", python.display());
    }
    let (_scratch, dir) = bench_dir(dir)?;
    let script = dir.join("bench_serve.py");
    std::fs::write(&script, include_str!("../scripts/bench_serve.py")).with_context(|| format!("writing {}", script.display()))?;
    let empty_config = dir.join("bench-config.toml");
    std::fs::write(&empty_config, "").with_context(|| format!("writing {}", empty_config.display()))?;
    let threads = 4;
    let drive = |url: &str| -> Result<Value> {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args([url, &executions.to_string(), &threads.to_string()])
            .output()
            .context("running the boto3 benchmark")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default();
        if !out.status.success() {
            bail!(
                "the boto3 benchmark against {url} failed: {last} {}",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
            );
        }
        serde_json::from_str(last).with_context(|| format!("the benchmark printed {last:?}"))
    };
    // lightbox serve, on a fresh store.
    let exe = std::env::current_exe().context("finding the lightbox binary")?;
    let mut child = std::process::Command::new(&exe)
        .arg("--config")
        .arg(&empty_config)
        .arg("--data-dir")
        .arg(dir.join("serve-data"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting lightbox serve")?;
    let stdout = child.stdout.take().context("lightbox serve's output")?;
    let serve = ChildGuard(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).context("reading where lightbox serve listens")?;
    let url = line.split_whitespace().find(|w| w.starts_with("http")).context("lightbox serve did not say where it listens")?.to_string();
    let lightbox = drive(&url)?;
    drop(serve);
    // moto's server beside it, when installed.
    let moto_bin = python.with_file_name("moto_server");
    let moto = if moto_bin.exists() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let moto = ChildGuard(
            std::process::Command::new(&moto_bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("starting moto_server")?,
        );
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let r = http.post(format!("{url}/moto-api/config")).json(&json!({"stepfunctions": {"execute_state_machine": true}})).send();
            if r.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("moto_server did not come up on {url}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let r = drive(&url)?;
        drop(moto);
        r
    } else {
        json!({"error": format!("moto_server is not installed beside {}", python.display())})
    };
    let report = json!({
        "workload": "W1: 10 chained Pass states",
        "executions": executions,
        "clientThreads": threads,
        "lightboxServe": lightbox,
        "moto": moto,
    });
    if j {
        print_json(&report);
    } else {
        say!("W1 (10 chained Pass states) through boto3, {executions} executions from {threads} client threads:");
        for (name, r) in [("lightbox serve", &report["lightboxServe"]), ("moto server", &report["moto"])] {
            match r.get("perSecond") {
                Some(p) => say!("  {name:15} {p:>8} executions/s   StartExecution p50 {} ms, p99 {} ms", r["p50ms"], r["p99ms"]),
                None => say!("  {name:15} {}", r["error"].as_str().unwrap_or("no result")),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_bench_relay(events: usize, dir: Option<&Path>, j: bool) -> Result<ExitCode> {
    let (_scratch, dir) = bench_dir(dir)?;
    let r = lightbox::bench::relay(&dir, events.max(1))?;
    if j {
        print_json(&r.to_json());
    } else {
        say!("outbox relay, {} events over 100 executions", r.events);
        say!(
            "  to NDJSON (marks per {} rows, fsync at least every 200 ms): {:.0} events/s",
            lightbox::outbox::MARK_EVERY,
            r.ndjson_per_second
        );
        match r.webhook_per_second {
            Some(w) => say!("  to a loopback webhook (one POST per event, each marked as it completes): {w:.0} events/s"),
            None => say!("  to a loopback webhook: not measured (a build with `--features bench-stub` has the loopback webhook)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Without the `bench-stub` feature there is no scripted endpoint to measure against.
#[cfg(not(feature = "bench-stub"))]
fn cmd_bench_aws_calls(_seconds: u64, _j: bool) -> Result<ExitCode> {
    bail!(UsageError(
        "bench --aws-calls measures against a scripted loopback endpoint, which only a build with the bench-stub feature has: \
         cargo run --release --features bench-stub -- bench --aws-calls"
            .into()
    ))
}

#[cfg(feature = "bench-stub")]
fn cmd_bench_aws_calls(seconds: u64, j: bool) -> Result<ExitCode> {
    let window = std::time::Duration::from_secs(seconds.clamp(1, 3600));
    let mut reports = vec![];
    for n in [10, 1_000, 10_000] {
        let r = lightbox::backend::aws::budget::calls_per_minute(n, window)?;
        if !j {
            let by: Vec<String> = r.calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
            say!(
                "{:>6} running: {:>4.0} calls/min ({}; first sweep {:.1} s)",
                r.running,
                r.per_minute,
                by.join(", "),
                r.first_sweep.as_secs_f64()
            );
        }
        reports.push(r);
    }
    if j {
        print_json(&json!({"windowSeconds": window.as_secs(), "runs": reports.iter().map(|r| r.to_json()).collect::<Vec<_>>()}));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_bench_console(executions: usize, reviews: usize, dir: Option<&Path>, j: bool) -> Result<ExitCode> {
    let (_scratch, dir) = bench_dir(dir)?;
    // Seed in a child process, so the console's memory is measured alone.
    let exe = std::env::current_exe().context("finding the lightbox binary")?;
    let status = std::process::Command::new(exe)
        .args(["bench", "--console", "--seed-only", "--list-rows", &executions.to_string(), "--reviews", &reviews.to_string(), "--dir"])
        .arg(&dir)
        .status()
        .context("seeding the console benchmark")?;
    if !status.success() {
        bail!("seeding the console benchmark failed");
    }
    let r = lightbox::bench::console(&dir, executions, reviews)?;
    if j {
        print_json(&r.to_json());
    } else {
        say!("console with {} executions and {} pending reviews (160x48)", r.executions, r.reviews);
        say!("  first frame: {:.0} ms; first frame with data: {:.0} ms", r.first_frame_ms, r.first_data_frame_ms);
        say!("  frame render: p50 {:.2} ms, p99 {:.2} ms", r.frame_p50_ms, r.frame_p99_ms);
        say!("  peak memory: {:.0} MB; idle CPU: {:.1}% of a core", r.peak_rss_mb, r.idle_cpu_percent);
    }
    Ok(ExitCode::SUCCESS)
}

/// A benchmark's scratch directory: removed when the benchmark ends, however it ends (a
/// 100,000-execution store is gigabytes; runs must not pile them up in the temp dir).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directory a benchmark works in: the one given, or a scratch one removed at the end
/// (keep the guard alive as long as the directory is used).
fn bench_dir(dir: Option<&Path>) -> Result<(Option<ScratchDir>, PathBuf)> {
    Ok(match dir {
        Some(d) => (None, d.to_path_buf()),
        None => {
            let s = tempfile_dir()?;
            let p = s.0.clone();
            (Some(s), p)
        }
    })
}

fn tempfile_dir() -> Result<ScratchDir> {
    let d = std::env::temp_dir().join(format!("lightbox-bench-{}", std::process::id()));
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("clearing {}", d.display()))?;
    }
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(ScratchDir(d))
}

// ----- SLO clocks -------------------------------------------------------------

/// The SLOs in force for this store: the config's, else the demo's when it holds the demo.
fn slos_in_force(engine: &Engine, cfgs: &[lightbox::ops::slo::SloConfig]) -> Result<Vec<lightbox::ops::slo::Slo>> {
    let machines: Vec<String> = engine.store.state_machines()?.into_iter().map(|m| m.name).collect();
    Ok(lightbox::ops::slo::in_force(cfgs, lightbox::sim::holds_demo(&machines))?)
}

/// The background evaluator that emits "SLO At Risk" / "SLO Breached" once per clock.
fn slo_watcher(cfgs: &[lightbox::ops::slo::SloConfig]) -> Result<lightbox::engine::slo_watch::Watcher> {
    Ok(lightbox::engine::slo_watch::Watcher::new(cfgs)?)
}

/// `lightbox slo list`.
fn cmd_slo_list(ctx: &Ctx, engine: &Engine, all: bool, at: Option<&str>, window: &str) -> Result<()> {
    let (now, window) = slo_args(at, window)?;
    let slos = slos_in_force(engine, &ctx.slo)?;
    let clocks = lightbox::engine::slo_watch::load(&engine.store, &slos, now, window)?;
    print_slo(ctx, &slos, &clocks, now, window, all);
    Ok(())
}

/// `slo list --at --window`: the time the clocks are read at, and the compliance window.
fn slo_args(at: Option<&str>, window: &str) -> Result<(DateTime<Utc>, chrono::Duration)> {
    use lightbox::ops::slo;
    let now = match at {
        Some(t) => {
            DateTime::parse_from_rfc3339(t).map_err(|e| UsageError(format!("--at {t:?} is not an RFC 3339 time: {e}")))?.with_timezone(&Utc)
        }
        None => Utc::now(),
    };
    let window_ms = slo::parse_duration(window).ok_or_else(|| {
        UsageError(format!("--window {window:?} is not a duration like 90s, 15m, 4h or 2d ({})", lightbox::duration::RANGE))
    })?;
    Ok((now, chrono::Duration::milliseconds(window_ms)))
}

/// `slo list`: open clocks by time to breach (with `all`, those closed within the window too),
/// then compliance and burn rate per SLO.
fn print_slo(
    ctx: &Ctx,
    slos: &[lightbox::ops::slo::Slo],
    clocks: &[lightbox::ops::slo::Clock],
    now: DateTime<Utc>,
    window: chrono::Duration,
    all: bool,
) {
    use lightbox::ops::slo;
    let window_ms = window.num_milliseconds();
    let mut shown = slo::open_readings(clocks, now);
    if all {
        let since = now - window;
        let mut closed: Vec<_> =
            clocks.iter().filter(|c| c.stopped.is_some_and(|s| s >= since && s <= now)).map(|c| (c, c.read(now))).collect();
        closed.sort_by_key(|(c, _)| std::cmp::Reverse(c.stopped));
        shown.extend(closed);
    }
    let compliance = slo::compliance(slos, clocks, now, window);
    if ctx.json {
        print_json(&json!({
            "at": lightbox::events::time(now),
            "windowSeconds": window.num_seconds(),
            "clocks": shown.iter().map(|(c, r)| slo::clock_json(c, r)).collect::<Vec<_>>(),
            "slos": compliance,
        }));
        return;
    }
    if slos.is_empty() {
        say!("No SLOs: add [[slo]] entries to the config (see config.example.toml).");
        return;
    }
    if shown.is_empty() {
        say!("No open SLO clocks.");
    } else {
        say!("{:<24} {:<18} {:>10} {:>10} {:>8}  {:<22} {}", "SLO", "STATUS", "REMAINING", "ELAPSED", "TARGET", "STATE", "EXECUTION");
    }
    for (c, r) in &shown {
        let status = if r.open { r.status.as_str().to_string() } else { format!("{} (closed)", r.status.as_str()) };
        let name = c.execution_arn.rsplit(':').next().unwrap_or(&c.execution_arn);
        say!(
            "{:<24} {:<18} {:>10} {:>10} {:>8}  {:<22} {}",
            esc(&c.slo),
            status,
            slo::human_ms(r.remaining_ms),
            slo::human_ms(r.elapsed_ms),
            slo::human_ms(c.target_ms),
            esc(&c.where_now()),
            esc(name)
        );
    }
    say!("\nCompliance over the last {} (burn rate = breached fraction / (1 - objective)):", slo::human_ms(window_ms));
    say!("{:<24} {:>5} {:>8} {:>10} {:>11} {:>11} {:>7}", "SLO", "OPEN", "AT RISK", "BREACHING", "MET/CLOSED", "COMPLIANCE", "BURN");
    for c in &compliance {
        say!(
            "{:<24} {:>5} {:>8} {:>10} {:>11} {:>11} {:>7}",
            esc(&c.name),
            c.open,
            c.at_risk,
            c.breaching,
            format!("{}/{}", c.met, c.closed),
            c.compliance.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "-".into()),
            c.burn_rate.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "-".into())
        );
    }
}

/// Starting the console: settings from config and flags, the demo hospital, the audit hook.
mod console {
    use super::*;
    use lightbox::backend::ControlPlane as _;
    use lightbox::backend::local::Local;
    use lightbox::backend::shared::Shared;
    use lightbox::tui::app::{App, Mutation, Settings};
    use lightbox::tui::keymap::Keymap;
    use lightbox::tui::theme::Theme;

    /// What the console does with the demo hospital.
    #[derive(Debug, Clone, PartialEq)]
    pub enum DemoMode {
        /// The workload runs: on a new data directory, with --demo, or `resumed` on a data
        /// directory that already holds the demo.
        Running {
            resumed: bool,
        },
        /// The data directory holds the demo, but its workload does not run (the reason).
        Paused(String),
        Off,
    }

    /// The demo hospital runs on a new data directory, with `--demo`, and on a data directory
    /// that already holds it (it resumes), unless `--no-demo` or the store cannot be written.
    pub fn demo_mode(fresh: bool, holds_demo: bool, demo: bool, no_demo: bool, read_only_store: bool) -> DemoMode {
        if read_only_store {
            return if holds_demo { DemoMode::Paused("the data directory is read-only".into()) } else { DemoMode::Off };
        }
        if no_demo {
            return if holds_demo { DemoMode::Paused("started with --no-demo".into()) } else { DemoMode::Off };
        }
        if demo || fresh || holds_demo {
            return DemoMode::Running { resumed: holds_demo };
        }
        DemoMode::Off
    }

    /// The theme from `--theme` (or `LIGHTBOX_THEME`), else `theme` in config, else dark; a
    /// theme of the user's whose colours fail the contrast check loads with a warning.
    pub fn theme(chosen: Option<&str>, config: &Config) -> Result<(Theme, Option<String>)> {
        let theme_name = chosen.or(config.theme.as_deref()).unwrap_or("dark");
        let user_themes = directories::ProjectDirs::from("org", "lightbox", "lightbox").map(|d| d.config_dir().join("themes"));
        let theme = Theme::load(theme_name, user_themes.as_deref())?.with_accent(config.accent.as_deref())?;
        let warning = theme.contrast_warning();
        if let Some(w) = &warning {
            warn_err!("lightbox: warning: {w}");
            tracing::warn!(theme = %theme.name, "theme below WCAG AA contrast");
        }
        Ok((theme, warning))
    }

    /// The console on a remote control plane (AWS): no demo; claims and the audit log stay in
    /// the local store of `data_dir`.
    pub fn run_remote(
        engine: Engine,
        ctx: &Ctx,
        config: &Config,
        data_dir: &Path,
        remote: Box<dyn lightbox::backend::ControlPlane>,
        theme: (Theme, Option<String>),
        contexts: Contexts,
    ) -> Result<ExitCode> {
        run_with(engine, ctx, config, data_dir, DemoMode::Off, theme, Some(remote), contexts)
    }

    pub fn run(
        engine: Engine,
        ctx: &Ctx,
        config: &Config,
        data_dir: &Path,
        demo_mode: DemoMode,
        theme: (Theme, Option<String>),
        contexts: Contexts,
    ) -> Result<ExitCode> {
        run_with(engine, ctx, config, data_dir, demo_mode, theme, None, contexts)
    }

    /// What `:ctx NAME` needs to build another context's control plane: the config before
    /// any context was applied, and the flags that override every context. The control
    /// plane switched away from is kept (parked) for switching back: a data directory's
    /// store is opened once per process. A local context runs what the one the console
    /// started on runs — the outbox relay for its sinks, the demo workload when its store
    /// holds the demo, its escalation and dependency configuration, its SLO clocks — while it
    /// is live: a parked control plane is not ticked (its workload and clocks stand still),
    /// and only the live context's relay runs (stopped and joined at each switch).
    pub struct Contexts {
        /// `--no-demo` at start-up: no context's demo workload runs.
        no_demo: bool,
        /// The live context's outbox relay and the database it delivers from; shared with
        /// the console's start-up, which stops it when the console ends.
        relay: LiveRelay,
        /// How to run each known control plane's relay, by key (none: no relay).
        relays: std::collections::HashMap<String, RelaySpec>,
        base: Config,
        cli_data_dir: Option<PathBuf>,
        cli_read_only: bool,
        cli_user: Option<String>,
        cli_theme: Option<String>,
        /// The live control plane's key (`local:<database>` or `aws:<context>`).
        live_key: String,
        /// The key of the one switched away from, until it is parked.
        previous: Option<String>,
        /// Parked control planes by key, with their audit hooks and what else holds for them.
        parked: std::collections::HashMap<String, (Box<dyn lightbox::backend::ControlPlane>, lightbox::tui::jobs::OnAction, Kept)>,
        /// What holds for the live control plane (kept with it when it is parked).
        live: Kept,
        previous_kept: Kept,
    }

    /// The live context's outbox relay, if it runs one, with the database it delivers from.
    pub type LiveRelay = std::sync::Arc<std::sync::Mutex<Option<(PathBuf, RelayGuard)>>>;

    /// A context's outbox relay: its store's database and sinks.
    #[derive(Clone)]
    pub struct RelaySpec {
        pub db: PathBuf,
        pub read_only: bool,
        pub sinks: Vec<lightbox::outbox::Sink>,
    }

    /// What holds for a control plane besides its context's config.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Kept {
        /// Its store could be opened only read-only.
        pub read_only_store: bool,
        /// It holds the demo hospital (the header says DEMO; its workload runs while it is
        /// live, unless the console started with --no-demo or the store is read-only).
        pub demo: bool,
    }

    /// The key of a local context: its database file.
    pub fn local_key(db: &Path) -> String {
        format!("local:{}", std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf()).display())
    }

    impl Contexts {
        /// `live_key`: the live control plane's key; `live`: what holds for it.
        pub fn new(cli: &Cli, base: Config, live_key: String, live: Kept) -> Contexts {
            Contexts {
                base,
                cli_data_dir: cli.data_dir.clone(),
                cli_read_only: cli.read_only,
                cli_user: cli.user.clone(),
                cli_theme: cli.theme.clone(),
                live_key,
                previous: None,
                parked: Default::default(),
                live,
                previous_kept: Kept::default(),
                no_demo: false,
                relay: Default::default(),
                relays: Default::default(),
            }
        }

        /// The console started with --no-demo: no context runs the demo workload.
        pub fn with_no_demo(mut self, no_demo: bool) -> Contexts {
            self.no_demo = no_demo;
            self
        }

        /// Run the live (start-up) control plane's relay as `spec` says; it is stopped when
        /// another context goes live, started again when this one does, and stopped at the
        /// end through the handle returned.
        pub fn start_relay(&mut self, spec: Option<RelaySpec>) -> Result<LiveRelay> {
            if let Some(spec) = spec {
                self.relays.insert(self.live_key.clone(), spec);
            }
            self.swap_relay(&self.live_key.clone())?;
            Ok(self.relay.clone())
        }

        /// Make `key`'s relay the one that runs: the live one is stopped (its thread joined),
        /// unless it delivers from the same database already (one relay per store, never
        /// two). On an error the running relay is left as it was.
        fn swap_relay(&mut self, key: &str) -> Result<()> {
            let spec = self.relays.get(key);
            // The same database by whichever path it was named.
            let canonical = |db: &Path| std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
            let mut live = self.relay.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(spec), Some((db, _))) = (spec, live.as_ref())
                && *db == canonical(&spec.db)
            {
                return Ok(());
            }
            let next = match spec {
                Some(spec) => Some((canonical(&spec.db), RelayGuard::start_at(&spec.db, spec.read_only, &spec.sinks)?)),
                None => None,
            };
            // Dropping the old guard stops its thread and waits for it.
            drop(std::mem::replace(&mut *live, next));
            Ok(())
        }

        fn build(&mut self, name: &str) -> Result<lightbox::tui::jobs::Connected> {
            if !self.base.contexts.contains_key(name) {
                bail!("no context {name:?} in the config");
            }
            let config = self.base.clone().with_context(Some(name))?;
            let dir = match self.cli_data_dir.clone().or(config.data_dir.clone()) {
                Some(d) => d,
                None => directories::ProjectDirs::from("org", "lightbox", "lightbox")
                    .context("no home directory to keep Lightbox's data in; pass --data-dir")?
                    .data_dir()
                    .to_path_buf(),
            };
            lightbox::store::create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let db = dir.join("lightbox.db");
            let key = match &config.remote {
                Some(_) => format!("aws:{name}"),
                None => local_key(&db),
            };
            if key == self.live_key {
                bail!("it is the live control plane already (the same data directory {})", dir.display());
            }
            let user = lightbox::audit::actor(self.cli_user.as_deref().or(config.user.as_deref()));
            // Its theme and accent (production may look different), checked before connecting.
            let theme_name = self.cli_theme.as_deref().or(config.theme.as_deref()).unwrap_or("dark");
            let user_themes = directories::ProjectDirs::from("org", "lightbox", "lightbox").map(|d| d.config_dir().join("themes"));
            let theme = Theme::load(theme_name, user_themes.as_deref())?.with_accent(config.accent.as_deref())?;
            let mut relay: Option<RelaySpec> = None;
            let parked = self.parked.remove(&key);
            let from_parked = parked.is_some();
            let (cp, on_action, kept) = match parked {
                Some(p) => p,
                None => {
                    let compensation = compensation_config(&config)?;
                    let (cp, kept): (Box<dyn lightbox::backend::ControlPlane>, Kept) = match &config.remote {
                        Some(aws) => {
                            let conn = rusqlite::Connection::open(&db)
                                .with_context(|| format!("opening the local audit store {}", db.display()))?;
                            let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
                            let mut cp = lightbox::backend::aws::Aws::connect(name, aws, Some(conn))?
                                .with_compensation(compensation)
                                .with_phi(config.phi.masker()?);
                            // A context that does not answer is not switched to.
                            cp.probe().map_err(|e| anyhow!("{e}"))?;
                            (Box::new(cp), Kept::default())
                        }
                        None => {
                            let store = open_store(&db, false)?;
                            // The demo hospital's synthetic data says DEMO; its workload runs here
                            // as in the data directory the console started on (resumed).
                            let machines: Vec<String> = store.state_machines()?.into_iter().map(|m| m.name).collect();
                            let kept = Kept { read_only_store: store.is_read_only(), demo: lightbox::sim::holds_demo(&machines) };
                            let mut tasks = TaskRunner::new();
                            lightbox::sim::register_handlers(&mut tasks);
                            let mut engine = Engine::new(store, tasks, Clock::Real);
                            let sinks = config.sinks_for(&dir, kept.demo)?;
                            configure_resilience(&mut engine, &config, kept.demo, &sinks)?;
                            let running = demo_mode(false, kept.demo, false, self.no_demo, kept.read_only_store);
                            let running = matches!(running, DemoMode::Running { .. });
                            if running {
                                lightbox::sim::Demo::install(&mut engine)?;
                            }
                            let mut slo = slo_watcher(&config.slo)?;
                            let mut demo = running.then(demo_driver);
                            let local = Local::new(engine, dir.clone())
                                .with_sinks(sinks.clone())
                                .with_compensation(compensation)
                                .with_driver(Box::new(move |engine: &mut Engine| {
                                    if let Some(d) = demo.as_mut() {
                                        d(engine);
                                    }
                                    if let Err(e) = slo.tick(&engine.store, engine.clock.now()) {
                                        tracing::warn!(error = %e, "evaluating SLO clocks failed");
                                    }
                                }));
                            relay = Some(RelaySpec { db: db.clone(), read_only: kept.read_only_store, sinks });
                            (Box::new(local), kept)
                        }
                    };
                    let conn = rusqlite::Connection::open(&db).with_context(|| format!("opening the audit log {}", db.display()))?;
                    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
                    // The audit hook asks the same control plane as the jobs thread (a token's
                    // execution, the status after an action), as at start-up.
                    let cp = Shared::new(cp);
                    let hook: lightbox::tui::jobs::OnAction = Box::new(ConsoleAudit::new(conn, user.clone(), cp.clone()));
                    (Box::new(cp) as Box<dyn lightbox::backend::ControlPlane>, hook, kept)
                }
            };
            // Its relay runs from now on, the one of the context switched from stops.
            if let Some(spec) = relay {
                self.relays.insert(key.clone(), spec);
            }
            if let Err(e) = self.swap_relay(&key) {
                if from_parked {
                    self.parked.insert(key, (cp, on_action, kept));
                }
                return Err(e);
            }
            let read_only = self.cli_read_only || config.read_only || kept.read_only_store;
            self.previous = Some(std::mem::replace(&mut self.live_key, key));
            self.previous_kept = std::mem::replace(&mut self.live, kept);
            Ok(lightbox::tui::jobs::Connected { cp, on_action, read_only, user, theme: Some(theme), demo: kept.demo })
        }
    }

    impl lightbox::tui::jobs::Connector for Contexts {
        fn connect(&mut self, name: &str) -> std::result::Result<lightbox::tui::jobs::Connected, String> {
            self.build(name).map_err(|e| error_text(&e))
        }

        fn park(&mut self, _name: &str, cp: Box<dyn lightbox::backend::ControlPlane>, on_action: lightbox::tui::jobs::OnAction) {
            if let Some(k) = self.previous.take() {
                self.parked.insert(k, (cp, on_action, self.previous_kept));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_with(
        mut engine: Engine,
        ctx: &Ctx,
        config: &Config,
        data_dir: &Path,
        demo_mode: DemoMode,
        (theme, theme_warning): (Theme, Option<String>),
        remote: Option<Box<dyn lightbox::backend::ControlPlane>>,
        mut contexts: Contexts,
    ) -> Result<ExitCode> {
        let demo = matches!(demo_mode, DemoMode::Running { .. });
        let keymap = Keymap::default().with_overrides(&config.keys).context("config [keys]")?;
        let mut settings = Settings {
            user: ctx.user.clone(),
            read_only: ctx.read_only,
            demo: demo_mode != DemoMode::Off,
            backend: remote.as_ref().map(|r| r.name()).unwrap_or_else(|| "local".into()),
            location: remote.as_ref().map(|r| r.location()).unwrap_or_else(|| data_dir.display().to_string()),
            context: config.context.clone().unwrap_or_else(|| if remote.is_some() { "aws".into() } else { "local".into() }),
            contexts: config.contexts.keys().cloned().collect(),
            event_patterns: lightbox::events::feed::compile_named(&config.event_patterns)?,
            ..Settings::default()
        };
        if let Some(m) = config.idle_lock_minutes {
            settings.idle_lock = chrono::Duration::minutes(i64::from(m.max(1)));
        }
        settings.phi = config.phi.masker()?;
        settings.reason_codes = config.reasons.codes()?;
        settings.slo = std::sync::Arc::new(if config.slo.is_empty() && demo_mode != DemoMode::Off {
            lightbox::ops::slo::check_all(&lightbox::ops::slo::demo_defaults())?
        } else {
            slos_in_force(&engine, &config.slo)?
        });
        if let Some(m) = config.phi.reveal_minutes {
            settings.reveal_for = chrono::Duration::minutes(i64::from(m.clamp(1, 60)));
        }
        if let Some(ms) = config.refresh_ms {
            settings.refresh = chrono::Duration::milliseconds(i64::from(ms.max(100)));
        }
        if let Some(r) = &config.reject_reasons {
            if r.is_empty() {
                bail!("config reject_reasons must list at least one reason");
            }
            settings.reject_reasons = r.clone();
        }
        if demo {
            lightbox::sim::Demo::install(&mut engine)?;
        }
        // Say at once whether the demo's workload runs: a reopened demo that stood still looked broken.
        let in_flight = || {
            engine
                .store
                .executions(&ExecutionFilter { status: Some(ExecutionStatus::Running), limit: 100_000, ..Default::default() })
                .map(|r| r.len())
                .unwrap_or(0)
        };
        let demo_note = match &demo_mode {
            DemoMode::Running { resumed: true } => {
                Some(format!("demo running: resumed on this data directory ({} studies in flight)", in_flight()))
            }
            DemoMode::Running { resumed: false } => {
                Some("demo running: the demo hospital starts on this new data directory (synthetic patients)".to_string())
            }
            DemoMode::Paused(why) => Some(format!("demo paused: {why} ({} studies in flight stand still)", in_flight())),
            DemoMode::Off => None,
        };
        // The relay delivers outbox rows to the configured sinks while this context is live
        // (`:ctx` stops it while another one is, and starts it again on the way back).
        let spec = engine.store.path().map(|db| RelaySpec {
            db: db.to_path_buf(),
            read_only: engine.store.is_read_only(),
            sinks: ctx.sinks.clone(),
        });
        let relay = contexts.start_relay(spec)?;
        let mut slo = slo_watcher(&config.slo)?;
        let mut local =
            Local::new(engine, data_dir.to_path_buf()).with_sinks(ctx.sinks.clone()).with_compensation(ctx.compensation.clone());
        let mut driver = demo.then(demo_driver);
        local = local.with_driver(Box::new(move |engine: &mut Engine| {
            if let Some(d) = driver.as_mut() {
                d(engine);
            }
            if let Err(e) = slo.tick(&engine.store, engine.clock.now()) {
                tracing::warn!(error = %e, "evaluating SLO clocks failed");
            }
        }));
        let db = data_dir.join("lightbox.db");
        let user = ctx.user.clone();
        let cp = Shared::new(match remote {
            Some(r) => r,
            None => Box::new(local),
        });
        // Audit from the job thread through its own connection (appends are safe across connections).
        let on_action: lightbox::tui::jobs::OnAction = match rusqlite::Connection::open(&db) {
            Ok(conn) => {
                let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
                Box::new(ConsoleAudit::new(conn, user, cp.clone()))
            }
            Err(e) => {
                tracing::warn!(error = %e, "no audit connection: every action is refused");
                Box::new(NoAudit(format!("cannot open {}: {e}", db.display())))
            }
        };
        let mut app = App::new(settings, keymap, theme, Utc::now());
        let note = [demo_note, theme_warning].into_iter().flatten().collect::<Vec<_>>().join("; ");
        if !note.is_empty() {
            app.message = Some((note, false));
        }
        tracing::info!(demo, paused = matches!(demo_mode, DemoMode::Paused(_)), read_only = ctx.read_only, "console started");
        if cp.name() != "local" {
            app.message = Some(("AWS backend: claims and the audit log are kept in the local store of this data directory".into(), false));
        }
        let live = app.settings.context.clone();
        let ran = lightbox::tui::run_with(app, Box::new(cp), lightbox::sim::stage_map(), on_action, Some((live, Box::new(contexts))));
        // Whichever context is live at the end: its relay stops and is waited for.
        drop(relay.lock().unwrap_or_else(|p| p.into_inner()).take());
        ran?;
        Ok(ExitCode::SUCCESS)
    }

    /// The console's audit hook: its own connection to the store's database, and the control
    /// plane acted on, which names a token's execution and an execution's status after the
    /// action (on every backend alike).
    pub(super) struct ConsoleAudit {
        conn: rusqlite::Connection,
        user: String,
        cp: Shared,
        /// The intent committed for the target being acted on.
        intent: Option<(String, audit::Intent)>,
        /// The execution the target being acted on names, looked up before the action (an
        /// answered token may be forgotten by the backend after it).
        execution: Option<(String, Option<String>)>,
    }

    /// A hook that refuses every action: the audit log cannot be opened.
    struct NoAudit(String);

    impl lightbox::tui::jobs::AuditHook for NoAudit {
        fn check(&mut self, _: &Mutation) -> std::result::Result<(), String> {
            Err(self.0.clone())
        }
        fn record(&mut self, _: &Mutation, _: &str, _: &std::result::Result<(), String>) {}
    }

    fn action_of(m: &Mutation) -> audit::Action {
        match m {
            Mutation::Approve { .. } => audit::Action::Approve,
            Mutation::Reject { .. } => audit::Action::Reject,
            Mutation::Redrive { .. } => audit::Action::Redrive,
            Mutation::Stop { .. } => audit::Action::Stop,
            Mutation::Claim { claim: true, .. } => audit::Action::Claim,
            Mutation::Claim { claim: false, .. } => audit::Action::Unclaim,
            Mutation::Escalate { .. } => audit::Action::Escalate,
            Mutation::RevealPhi { .. } => audit::Action::RevealPhi,
            Mutation::Outbox { action } => audit::Action::Other(action.name().into()),
            Mutation::Compensate { .. } => audit::Action::Compensate,
            // Audited by the backend under the CLI twin's name; checked here before it runs.
            Mutation::Dependency { op, .. } => audit::Action::Other(op.audit_name().into()),
        }
    }

    impl lightbox::tui::jobs::AuditHook for ConsoleAudit {
        fn check(&mut self, m: &Mutation) -> std::result::Result<(), String> {
            let entry = audit::AuditEntry::new(self.user.clone(), audit::Source::Console, action_of(m));
            audit::preflight(&self.conn, &entry).map_err(|e| e.to_string())
        }

        fn intent(&mut self, m: &Mutation, target: &str) -> std::result::Result<(), String> {
            self.execution = Some((target.to_string(), self.cp.execution_of(target)));
            let e = self.entry(m, target);
            let intent = audit::begin(&self.conn, &e, Utc::now()).map_err(|e| e.to_string())?;
            self.intent = Some((target.to_string(), intent));
            Ok(())
        }

        fn record(&mut self, m: &Mutation, target: &str, r: &std::result::Result<(), String>) {
            let mut e = self.entry(m, target);
            if let Some(a) = e.execution_arn.clone() {
                // What the backend can vouch for now: the committed state on the embedded
                // engine; on AWS read afresh after the call (one DescribeExecution), with when.
                e = e.after(self.cp.status_after(&a).map(|s| s.to_json()).unwrap_or_else(|| json!({ "status": null })));
            }
            e = e.outcome(match r {
                Ok(()) => audit::Outcome::Ok,
                Err(err) => audit::Outcome::Error(err.clone()),
            });
            let done = match self.intent.take() {
                Some((t, intent)) if t == target => audit::finish(&self.conn, intent, &e, Utc::now()),
                _ => audit::record(&self.conn, &e, Utc::now()),
            };
            if let Err(err) = done {
                tracing::error!(error = %err, "console action could not be audited");
            }
        }
    }

    impl ConsoleAudit {
        pub(super) fn new(conn: rusqlite::Connection, user: String, cp: Shared) -> ConsoleAudit {
            ConsoleAudit { conn, user, cp, intent: None, execution: None }
        }

        /// The entry for an action on one target, without its outcome.
        fn entry(&self, m: &Mutation, target: &str) -> audit::AuditEntry {
            let mut e = audit::AuditEntry::new(self.user.clone(), audit::Source::Console, action_of(m));
            // Name the execution a token belongs to (as the backend said before the action).
            let arn: Option<String> = match &self.execution {
                Some((t, a)) if t == target => a.clone(),
                _ => self.cp.execution_of(target),
            };
            if !target.starts_with("arn:") && target != "phi" {
                e = e.token(target);
            }
            if let Some(a) = arn {
                e = e.execution(a);
            }
            let reason = match m {
                Mutation::Approve { comment, .. } => comment.clone(),
                Mutation::Reject { error, cause, .. } => format!("{error}: {cause}"),
                Mutation::Stop { cause, .. } | Mutation::Escalate { cause, .. } => cause.clone(),
                Mutation::Outbox {
                    action: lightbox::outbox::Action::Pause { reason, .. } | lightbox::outbox::Action::Park { reason, .. },
                } => reason.clone(),
                Mutation::RevealPhi { reason, .. } | Mutation::Compensate { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            // An answer that took over someone else's claim says so, with whose and why.
            let acting = match m {
                Mutation::Approve { acting, .. } | Mutation::Reject { acting, .. } | Mutation::Escalate { acting, .. } => Some(acting),
                _ => None,
            };
            let reason = match acting.and_then(|a| a.override_reason.as_ref()) {
                Some(why) => {
                    let holder: Option<String> =
                        self.conn.query_row("SELECT claimed_by FROM claims WHERE token = ?1", [target], |r| r.get(0)).ok();
                    match holder.filter(|h| *h != self.user) {
                        Some(h) => [reason, format!("override of the claim held by {h}: {why}")]
                            .into_iter()
                            .filter(|x| !x.is_empty())
                            .collect::<Vec<_>>()
                            .join("; "),
                        None => reason,
                    }
                }
                None => reason,
            };
            if !reason.is_empty() {
                e = e.reason(reason);
            }
            e
        }
    }

    fn demo_driver() -> lightbox::backend::local::Driver {
        // 20x: an hour of hospital in three minutes, slow enough to work the review queue by hand.
        let mut demo = lightbox::sim::Demo::new(Utc::now().timestamp_millis() as u64, 20.0);
        Box::new(move |engine: &mut Engine| {
            if let Err(e) = demo.tick(engine) {
                tracing::warn!(error = %e, "demo hospital tick failed");
            }
        })
    }
}

// ----- events ------------------------------------------------------------------------

/// A pattern or event argument: JSON, or `@FILE`.
fn json_arg(text: &str, what: &str) -> Result<String> {
    match text.strip_prefix('@') {
        Some(path) => read_file(Path::new(path), what),
        None => Ok(text.to_string()),
    }
}

/// `events test-pattern`: `{"Result": true|false}`; an invalid pattern or event exits 2.
fn cmd_events_test(pattern: &str, event: &str) -> Result<ExitCode> {
    use lightbox::events::pattern::Pattern;
    let p = Pattern::parse(&json_arg(pattern, "--pattern")?).map_err(|e| UsageError(e.to_string()))?;
    let event: Value =
        serde_json::from_str(&json_arg(event, "--event")?).map_err(|e| UsageError(format!("--event is not valid JSON: {e}")))?;
    if !event.is_object() {
        return Err(UsageError("--event must be a JSON object".into()).into());
    }
    print_json(&json!({"Result": p.matches(&event)}));
    Ok(ExitCode::SUCCESS)
}

/// `events list`: newest first, masked unless revealed.
fn cmd_events_list(engine: &Engine, ctx: &Ctx, config: &Config, pattern: Option<&str>, limit: usize, phi: &RevealArgs) -> Result<ExitCode> {
    use lightbox::events::feed;
    let named = feed::compile_named(&config.event_patterns)?;
    let pattern = match pattern {
        Some(p) if p.starts_with('@') => Some(std::borrow::Cow::Owned(
            lightbox::events::pattern::Pattern::parse(&json_arg(p, "--pattern")?).map_err(|e| UsageError(e.to_string()))?,
        )),
        Some(p) => Some(feed::resolve(p, &named).map_err(|e| UsageError(e.to_string()))?),
        None => None,
    };
    let reveal = match reveal_check(engine, ctx, phi, None)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let rows = feed::latest(engine.store.conn(), pattern.as_deref(), limit.clamp(1, 10_000))?;
    if reveal {
        reveal_record(engine, ctx, phi, None)?;
    }
    // The identifiers of each event's study, to mask free text (causes) that names them.
    let mut known: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    let mut shown = Vec::with_capacity(rows.len());
    for r in &rows {
        if reveal {
            shown.push(r.event.clone());
            continue;
        }
        let ids = match known.get(&r.stream) {
            Some(k) => k.clone(),
            None => {
                let k = if r.stream.starts_with("arn:") {
                    engine.store.execution(&r.stream)?.map(|x| ctx.phi.identifiers_in_text(&x.input)).unwrap_or_default()
                } else {
                    vec![]
                };
                known.insert(r.stream.clone(), k.clone());
                k
            }
        };
        shown.push(ctx.phi.mask_envelope(&r.event, &ids));
    }
    print_events(ctx, &shown);
    Ok(ExitCode::SUCCESS)
}

/// `events list`: EventBridge-shaped events (already masked unless revealed), newest first.
fn print_events(ctx: &Ctx, shown: &[Value]) {
    if ctx.json {
        print_json(&json!({"events": shown}));
        return;
    }
    say!("{:<20} {:<10} {:<38} {:<40} {}", "TIME", "SOURCE", "DETAIL-TYPE", "EXECUTION", "STATE/STATUS");
    for e in shown {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
        let d = |k: &str| e["detail"].get(k).and_then(Value::as_str).unwrap_or_default();
        let arn = e["resources"].get(0).and_then(Value::as_str).unwrap_or_default();
        let exec = arn.rsplit(':').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("/");
        let where_ = [d("stateName"), d("status")].into_iter().filter(|x| !x.is_empty()).collect::<Vec<_>>().join(" ");
        say!("{:<20} {:<10} {:<38} {:<40} {}", s("time"), esc(s("source")), esc(s("detail-type")), esc(&exec), esc(&where_));
    }
}

/// `bench --patterns`: event pattern matching throughput.
fn cmd_bench_patterns(j: bool) -> Result<ExitCode> {
    let r = lightbox::events::pattern::bench(20_000, 100)?;
    if j {
        print_json(&json!({"events": r.events, "patterns": r.patterns, "matches": r.matches, "seconds": r.seconds,
            "eventsPerSecond": r.events_per_second}));
    } else {
        say!("event patterns: {} events, each against {} patterns ({} matches)", r.events, r.patterns, r.matches);
        say!("  {:.2} s = {:.0} events/s", r.seconds, r.events_per_second);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand and every argument of the whole command tree says what it is for:
    /// `--help`, the completions and the man pages all show these texts.
    #[test]
    fn every_command_and_argument_has_help_text() {
        let mut root = Cli::command();
        root.build();
        let mut missing = vec![];
        let mut pending = vec![(String::from("lightbox"), root)];
        while let Some((path, cmd)) = pending.pop() {
            if path != "lightbox" && cmd.get_about().is_none() && cmd.get_long_about().is_none() {
                missing.push(format!("command `{path}`"));
            }
            for a in cmd.get_arguments() {
                let generated = matches!(a.get_id().as_str(), "help" | "version");
                if !generated && !a.is_hide_set() && a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("`{path}` argument {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                pending.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
        Cli::command().debug_assert();
    }

    #[test]
    fn an_error_that_repeats_its_source_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("execution X is not running")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Outer(#[from] Inner);
        let e = anyhow::Error::from(Outer(Inner));
        assert_eq!(format!("{e:#}"), "execution X is not running: execution X is not running", "the chain as anyhow prints it");
        assert_eq!(error_text(&e), "execution X is not running");
        let e = anyhow::Error::from(Inner).context("stopping X");
        assert_eq!(error_text(&e), "stopping X: execution X is not running", "context that adds something is kept");
    }

    #[test]
    fn the_demo_resumes_on_a_data_directory_that_holds_it() {
        use console::{DemoMode, demo_mode};
        // (fresh, holds_demo, --demo, --no-demo, read-only store)
        assert_eq!(demo_mode(true, false, false, false, false), DemoMode::Running { resumed: false });
        assert_eq!(demo_mode(false, true, false, false, false), DemoMode::Running { resumed: true });
        assert_eq!(demo_mode(false, false, false, false, false), DemoMode::Off);
        assert_eq!(demo_mode(false, false, true, false, false), DemoMode::Running { resumed: false });
        assert!(matches!(demo_mode(false, true, false, true, false), DemoMode::Paused(w) if w.contains("--no-demo")));
        assert_eq!(demo_mode(true, false, false, true, false), DemoMode::Off);
        assert!(matches!(demo_mode(false, true, false, false, true), DemoMode::Paused(w) if w.contains("read-only")));
    }

    /// The console's audit record names the token's execution and the status after the action
    /// from the control plane, so on the AWS backend (here against `lightbox serve` in this
    /// process) those fields are filled as on the embedded engine, the status read afresh.
    #[test]
    fn the_console_audit_record_names_execution_and_status_on_the_aws_backend() {
        use lightbox::backend::ControlPlane;
        use lightbox::backend::aws::{Aws, AwsContext};
        use lightbox::backend::shared::Shared;
        use lightbox::tui::app::Mutation;
        use lightbox::tui::jobs::AuditHook;
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("serve")).expect("dir");
        let store = Store::open(&dir.path().join("serve/lightbox.db")).expect("serve store");
        let mut tasks = TaskRunner::new();
        lightbox::sim::register_handlers(&mut tasks);
        let engine = Engine::new(store, tasks, Clock::Real);
        let opts = lightbox::serve::Options {
            bind: "127.0.0.1:0".parse().expect("addr"),
            credentials: vec![],
            tls: None,
            insecure_no_tls: false,
            read_only: false,
            sync_timeout: Duration::from_secs(10),
            max_connections: 16,
            sinks: vec![],
            reasons: lightbox::phi::ReasonCodes::default(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // Serves until the test process ends.
        std::thread::spawn(move || {
            let _ = lightbox::serve::run(engine, opts, Box::new(|_: &Engine| {}), move |addr, _| {
                let _ = tx.send(addr);
            });
        });
        let url = format!("http://{}", rx.recv_timeout(Duration::from_secs(20)).expect("serve listens"));
        let call = |op: &str, body: Value| -> Value {
            let r = reqwest::blocking::Client::new()
                .post(&url)
                .header("X-Amz-Target", format!("AWSStepFunctions.{op}"))
                .header("Content-Type", "application/x-amz-json-1.0")
                .body(body.to_string())
                .send()
                .expect("call serve");
            assert!(r.status().is_success(), "{op}: {}", r.status());
            r.json().expect("json")
        };
        let def = json!({"StartAt": "Review", "States": {"Review": {"Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}}, "End": true}}});
        let sm = call(
            "CreateStateMachine",
            json!({"name": "review", "definition": def.to_string(), "roleArn": "arn:aws:iam::000000000000:role/r"}),
        );
        let sm = sm["stateMachineArn"].as_str().expect("arn").to_string();
        let start = |name: &str| {
            call("StartExecution", json!({"stateMachineArn": sm, "name": name, "input": "{}"}))["executionArn"]
                .as_str()
                .expect("arn")
                .to_string()
        };
        let (approved, stopped) = (start("ACC-1"), start("ACC-2"));

        // The console's side: a local store of its own for claims and the audit log.
        let local = dir.path().join("console/lightbox.db");
        std::fs::create_dir_all(local.parent().expect("parent")).expect("dir");
        drop(Store::open(&local).expect("local store"));
        let cfg = AwsContext {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.clone()),
            state_machines: vec![sm.clone()],
            ..Default::default()
        };
        let aws = Aws::connect_with("serve", &cfg, Some(rusqlite::Connection::open(&local).expect("conn")), Some(("test", "test")))
            .expect("connect")
            .with_pacing(Duration::from_millis(200), Duration::from_millis(200));
        let mut cp = Shared::new(Box::new(aws));
        let mut hook = console::ConsoleAudit::new(rusqlite::Connection::open(&local).expect("conn"), "dr.lee".into(), cp.clone());
        let end = Instant::now() + Duration::from_secs(30);
        let token = loop {
            cp.tick().expect("tick");
            if let Some(t) = cp.pending_tasks(10).expect("pending").into_iter().find(|t| t.execution_arn == approved) {
                break t.token;
            }
            assert!(Instant::now() < end, "no pending callback within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        };
        // As the console's job thread does: check, intent, act, record.
        let mut act = |m: &Mutation, target: &str, f: &mut dyn FnMut(&mut Shared) -> lightbox::backend::Result<()>| {
            hook.check(m).expect("check");
            hook.intent(m, target).expect("intent");
            let r = f(&mut cp).map_err(|e| e.to_string());
            hook.record(m, target, &r);
            r.expect("the action");
        };
        let acting = lightbox::backend::Acting::user("dr.lee");
        let approve =
            Mutation::Approve { tokens: vec![token.clone()], output: "{}".into(), comment: "fine".into(), acting: acting.clone() };
        act(&approve, &token, &mut |cp| cp.approve(&token, "{}", &acting));
        let stop = Mutation::Stop { arns: vec![stopped.clone()], cause: "wrong patient".into() };
        act(&stop, &stopped, &mut |cp| cp.stop(&stopped, "Ops.Stopped", "wrong patient"));

        let conn = rusqlite::Connection::open(&local).expect("conn");
        let rows = audit::list(&conn, &audit::AuditFilter { limit: 100, ..Default::default() }).expect("audit");
        let outcome = |action: &str| {
            rows.iter()
                .find(|r| r.action == action && r.intent_seq.is_some())
                .cloned()
                .unwrap_or_else(|| panic!("no {action} outcome: {rows:?}"))
        };
        let a = outcome("approve");
        assert_eq!(a.execution_arn.as_deref(), Some(approved.as_str()), "the token's execution, from the backend");
        assert!(a.task_token.is_some());
        // The answer let the execution finish: the record says so, read from the service after
        // the call and as of when — not the RUNNING the backend had cached before it.
        let after: Value = serde_json::from_str(a.after.as_deref().expect("after")).expect("json");
        assert_eq!(after["status"], "SUCCEEDED", "the status read afresh after the answer: {after}");
        let as_of = after["asOf"].as_str().map(DateTime::parse_from_rfc3339).and_then(|t| t.ok()).expect("asOf").with_timezone(&Utc);
        let intent = rows.iter().find(|r| r.action == "approve" && r.intent_seq.is_none()).expect("the approve intent");
        assert!(intent.time <= as_of && as_of <= a.time, "read after the intent, before the outcome: {after} ({intent:?}, {a:?})");
        assert!(after.get("lastKnown").is_none(), "{after}");
        let s = outcome("stop");
        assert_eq!(s.execution_arn.as_deref(), Some(stopped.as_str()));
        let after: Value = serde_json::from_str(s.after.as_deref().expect("after")).expect("json");
        assert_eq!(after["status"], "ABORTED", "{after}");
        assert!(after["asOf"].is_string(), "{after}");
        // The intent rows name the execution too.
        assert!(rows.iter().filter(|r| r.action == "approve").all(|r| r.execution_arn.as_deref() == Some(approved.as_str())), "{rows:?}");
    }
}
