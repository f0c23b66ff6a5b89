//! The demo hospital's workload: synthetic orders for three workflow families,
//! arriving as Poisson processes on an accelerated clock, with injected faults,
//! and simulated readers who answer part of the review queue.
//!
//! ```no_run
//! # use lightbox::{engine::{Engine, Clock, tasks::TaskRunner}, store::Store, sim::Demo};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut engine = Engine::new(Store::in_memory()?, TaskRunner::new(), Clock::Real);
//! Demo::install(&mut engine)?; // state machines + handlers; idempotent
//! let mut demo = Demo::new(7, 60.0); // seed 7; an hour passes in a minute
//! loop {
//!     demo.tick(&mut engine)?; // start due orders, run due work, play the readers
//!     # break;
//!     std::thread::sleep(std::time::Duration::from_secs(1));
//! }
//! # Ok(()) }
//! ```
//!
//! Time: the demo starts at its first tick (the *epoch*). A simulated duration `d`
//! takes `d / speed` on the engine clock; every wait and review deadline in the
//! definitions comes from the order's `timing` (engine seconds, already scaled), so
//! the whole hospital runs at `speed`. Everything generated is a function of the
//! seed and the epoch: the same seed on a virtual clock gives the same run.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::{DEMO_MARKER, definitions, is_demo_machine, register_handlers};
use crate::engine::{Engine, EngineError};

// ----- deterministic randomness ------------------------------------------------

/// FNV-1a over the parts, finished with a SplitMix64 mix: a stable 64-bit hash.
pub fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash as a number in `[0, 1)`.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    fn f(&mut self) -> f64 {
        unit(self.next())
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    /// Between `lo` and `hi`, skewed towards `lo` (most steps are quick, a few are slow).
    fn span(&mut self, (lo, hi): (f64, f64)) -> f64 {
        let u = self.f();
        lo + (hi - lo) * u * u
    }
    fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo) + 1)
    }
    fn weighted<'a, T>(&mut self, items: &'a [(T, f64)]) -> &'a T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.f() * total;
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        &items[items.len() - 1].0
    }
    fn exp_minutes(&mut self, per_hour: f64) -> f64 {
        -(1.0 - self.f()).ln() * 60.0 / per_hour
    }
}

// ----- configuration -----------------------------------------------------------

/// The workflow families the workload starts (see the domain primer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Formal order → schedule → arrival → acquisition → read → sign → bill.
    Scheduled,
    /// Point-of-care images with no prior order; context reconciled afterwards.
    Encounter,
    /// Read at another site, with priors delivered.
    Teleradiology,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Scheduled, Family::Encounter, Family::Teleradiology];

    pub fn machine(self) -> &'static str {
        match self {
            Family::Scheduled => "scheduled-imaging",
            Family::Encounter => "encounter-imaging",
            Family::Teleradiology => "teleradiology",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Scheduled => "scheduled",
            Family::Encounter => "encounter",
            Family::Teleradiology => "teleradiology",
        }
    }
}

/// A fault window in simulated minutes after the demo starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start_minutes: f64,
    pub minutes: f64,
}

/// How often each injected fault happens (share of the orders it can apply to).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRates {
    /// Scheduled orders cancelled before the patient arrives.
    pub cancelled: f64,
    /// Scheduled exams the modality reports as MPPS DISCONTINUED.
    pub discontinued: f64,
    /// Archive stores and publications that are refused once or twice as busy (the retries absorb it).
    pub archive_busy: f64,
    /// Publications the archive rejects outright (the publish-failed exception lane).
    pub archive_rejects: f64,
    /// Claims the payer denies.
    pub claim_denied: f64,
    /// Encounter-based studies whose patient and encounter do not match exactly.
    pub context_mismatch: f64,
}

/// How the simulated readers work the review queue. They leave STAT reviews, and a
/// share of the rest, to the humans at the console.
#[derive(Debug, Clone, PartialEq)]
pub struct Readers {
    /// Reviews younger than this (simulated minutes) are left alone.
    pub min_age_minutes: f64,
    /// Share of non-STAT reviews the simulated readers answer; the rest time out and escalate.
    pub answer_share: f64,
    /// Whether simulated readers answer STAT reviews at the first gate (never, by default).
    pub answer_stat: bool,
    /// Of the answered reviews: share rejected (manual dictation) and flagged wrong-patient.
    pub reject_share: f64,
    pub wrong_patient_share: f64,
    /// Share of senior escalations and reconciliation holds that someone answers.
    pub senior_share: f64,
    pub reconcile_share: f64,
    /// Share of critical-result acknowledgements the simulated ordering clinicians give (the
    /// rest time out: the study stops for the quality team).
    pub critical_ack_share: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub seed: u64,
    /// Simulated seconds per engine second (60: an hour passes in a minute).
    pub speed: f64,
    /// Arrivals per simulated hour, by family (scheduled, encounter, teleradiology).
    pub per_hour: [f64; 3],
    pub rates: FaultRates,
    pub readers: Readers,
    /// The report archive refuses connections (publications fail after their retries).
    pub archive_outage: Option<Window>,
    /// The claims clearinghouse does not answer (claim submissions fail after their retries).
    pub clearinghouse_down: Option<Window>,
    /// At most this many orders start in one tick (the rest start on the next).
    pub max_starts_per_tick: usize,
}

impl Default for DemoConfig {
    fn default() -> DemoConfig {
        DemoConfig {
            seed: 1,
            speed: 60.0,
            per_hour: [16.0, 3.0, 5.0],
            rates: FaultRates {
                cancelled: 0.04,
                discontinued: 0.02,
                archive_busy: 0.10,
                archive_rejects: 0.01,
                claim_denied: 0.06,
                context_mismatch: 0.25,
            },
            readers: Readers {
                min_age_minutes: 20.0,
                answer_share: 0.85,
                answer_stat: false,
                reject_share: 0.08,
                wrong_patient_share: 0.02,
                senior_share: 0.95,
                reconcile_share: 0.8,
                critical_ack_share: 0.97,
            },
            archive_outage: Some(Window { start_minutes: 180.0, minutes: 60.0 }),
            clearinghouse_down: Some(Window { start_minutes: 480.0, minutes: 60.0 }),
            max_starts_per_tick: 500,
        }
    }
}

impl DemoConfig {
    pub fn new(seed: u64, speed: f64) -> DemoConfig {
        DemoConfig { seed, speed, ..DemoConfig::default() }
    }
}

// ----- orders ------------------------------------------------------------------

struct Procedure {
    modality: &'static str,
    code: &'static str,
    description: &'static str,
    body: &'static str,
    series: (u64, u64),
    dx: &'static str,
}

const fn p(
    modality: &'static str,
    code: &'static str,
    description: &'static str,
    body: &'static str,
    series: (u64, u64),
    dx: &'static str,
) -> Procedure {
    Procedure { modality, code, description, body, series, dx }
}

/// CPT codes and ICD-10 reasons for a small, realistic procedure catalogue.
const PROCEDURES: &[Procedure] = &[
    p("CT", "70450", "CT head without contrast", "head", (2, 4), "R51.9"),
    p("CT", "71275", "CT angiography chest", "chest", (3, 5), "R07.9"),
    p("CT", "74177", "CT abdomen and pelvis with contrast", "abdomen", (3, 6), "R10.9"),
    p("MR", "70553", "MR brain without and with contrast", "brain", (6, 9), "G43.909"),
    p("MR", "72148", "MR lumbar spine without contrast", "lumbar spine", (4, 6), "M54.50"),
    p("XR", "71046", "XR chest 2 views", "chest", (1, 2), "R05.9"),
    p("XR", "73110", "XR wrist 3+ views", "wrist", (1, 3), "M25.531"),
    p("US", "76700", "US abdomen complete", "abdomen", (1, 2), "R10.11"),
    p("US", "76770", "US retroperitoneal (renal) complete", "kidney", (1, 2), "N28.9"),
    p("NM", "78306", "NM bone scan whole body", "whole body", (2, 3), "M89.9"),
    p("PET", "78815", "PET/CT skull base to mid-thigh", "whole body", (3, 4), "C34.90"),
];

const GIVEN: &[&str] =
    &["Ada", "Bao", "Cyra", "Dev", "Enzo", "Fenna", "Gil", "Hana", "Ines", "Jonas", "Kemi", "Lars", "Mina", "Noor", "Otto", "Priya"];
/// Family names that no one will mistake for a real patient's.
pub const SYNTHETIC_FAMILY_NAMES: &[&str] =
    &["Testperson", "Synthetic", "Demopatient", "Fakename", "Sampleton", "Mockley", "Placeholder", "Testcase"];
const DOCTORS: &[&str] = &["Dr Ordering Testdoc", "Dr Sample Referrer", "Dr Demo Clinician"];
const READERS: &[&str] = &["dr.sim-ahmed", "dr.sim-baker", "dr.sim-chen", "dr.sim-diaz", "dr.sim-evans", "dr.sim-fischer"];

/// How an order's waits and deadlines are expressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// Realistic simulated durations, divided by this speed factor.
    Scaled(f64),
    /// About a second per wait, a minute per review deadline (quick CLI runs).
    Quick,
}

impl Timing {
    pub fn quick() -> Timing {
        Timing::Quick
    }
}

fn by_priority<T>(priority: &str, stat: T, urgent: T, routine: T) -> T {
    match priority {
        "STAT" => stat,
        "URGENT" => urgent,
        _ => routine,
    }
}

/// Per-step durations in simulated minutes, by priority and patient class.
fn timing(rng: &mut Rng, priority: &str, class: &str, modality: &str, t: &Timing) -> Value {
    let stat = priority == "STAT";
    let by_prio = |s, u, r| by_priority(priority, s, u, r);
    let minutes = [
        ("protocolSeconds", rng.span(by_prio((1.0, 5.0), (5.0, 45.0), (20.0, 180.0)))),
        (
            "arrivalSeconds",
            rng.span(match class {
                "ED" => (2.0, 10.0),
                "INPATIENT" => (15.0, 90.0),
                _ => (30.0, 240.0),
            }),
        ),
        ("scanWaitSeconds", rng.span(if stat { (2.0, 10.0) } else { (10.0, 60.0) })),
        (
            "scanSeconds",
            rng.span(match modality {
                "XR" => (3.0, 10.0),
                "CT" => (5.0, 20.0),
                "US" => (15.0, 40.0),
                "MR" => (25.0, 60.0),
                "NM" => (30.0, 90.0),
                _ => (60.0, 100.0), // PET: uptake time, then the scan
            }),
        ),
        ("draftSeconds", rng.span((2.0, 8.0))),
        ("signatureSeconds", rng.span(by_prio((1.0, 5.0), (5.0, 30.0), (10.0, 120.0)))),
        // Coding and payer turnaround take days to weeks in life; compressed so a demo day shows them.
        ("codingSeconds", rng.span((60.0, 360.0))),
        ("remittanceSeconds", rng.span((120.0, 600.0))),
        // Deadlines: STAT reads within the hour, urgent within hours (Wait Time Alliance defaults).
        ("reviewTimeoutSeconds", by_priority(priority, 15.0, 120.0, 480.0)),
        ("seniorTimeoutSeconds", by_priority(priority, 30.0, 120.0, 480.0)),
        ("seniorHeartbeatSeconds", by_priority(priority, 10.0, 30.0, 120.0)),
        ("reconcileTimeoutSeconds", if stat { 60.0 } else { 240.0 }),
        // The ordering clinician's acknowledgement of a critical finding (the loop's target is an hour).
        ("ackTimeoutSeconds", 240.0),
    ];
    let mut out = serde_json::Map::new();
    for (k, m) in minutes {
        let secs = match t {
            Timing::Scaled(speed) => (m * 60.0 / speed.max(0.001)).ceil().max(1.0) as u64,
            Timing::Quick if k.contains("Timeout") => 60,
            Timing::Quick if k.contains("Heartbeat") => 30,
            Timing::Quick => 1,
        };
        out.insert(k.to_string(), json!(secs));
    }
    Value::Object(out)
}

/// One synthetic order of `family`, number `n` (its accession is `ACC-n`). Deterministic in
/// `(seed, n, family)`. Fault windows are left empty (`null`); [`Demo`] fills them in.
pub fn synthetic_order(seed: u64, n: u64, family: Family, t: &Timing, rates: &FaultRates) -> Value {
    let mut rng = Rng::new(hash(&[&seed.to_string(), family.as_str(), &n.to_string()]));
    let class = *rng.weighted(match family {
        Family::Scheduled => &[("ED", 25.0), ("INPATIENT", 25.0), ("OUTPATIENT", 50.0)],
        Family::Encounter => &[("ED", 60.0), ("INPATIENT", 40.0), ("OUTPATIENT", 0.0)],
        Family::Teleradiology => &[("ED", 70.0), ("INPATIENT", 30.0), ("OUTPATIENT", 0.0)],
    });
    let priority = *rng.weighted(match class {
        "ED" => &[("STAT", 45.0), ("URGENT", 45.0), ("ROUTINE", 10.0)],
        "INPATIENT" => &[("STAT", 10.0), ("URGENT", 45.0), ("ROUTINE", 45.0)],
        _ => &[("STAT", 0.0), ("URGENT", 5.0), ("ROUTINE", 95.0)],
    });
    let modality = *rng.weighted(match family {
        Family::Scheduled => &[("XR", 38.0), ("CT", 24.0), ("US", 16.0), ("MR", 14.0), ("NM", 4.0), ("PET", 4.0)],
        Family::Encounter => &[("XR", 60.0), ("US", 40.0), ("CT", 0.0), ("MR", 0.0), ("NM", 0.0), ("PET", 0.0)],
        Family::Teleradiology => &[("CT", 70.0), ("XR", 15.0), ("MR", 15.0), ("US", 0.0), ("NM", 0.0), ("PET", 0.0)],
    });
    let choices: Vec<(&Procedure, f64)> = PROCEDURES.iter().filter(|p| p.modality == modality).map(|p| (p, 1.0)).collect();
    let proc = *rng.weighted(&choices);
    let site = *rng.weighted(match (family, class) {
        (Family::Teleradiology, _) => &[("RIVERSIDE", 60.0), ("LAKESHORE", 40.0), ("", 0.0)],
        (_, "OUTPATIENT") => &[("EAST-OP", 60.0), ("MAIN", 40.0), ("", 0.0)],
        _ => &[("MAIN", 60.0), ("NORTH", 25.0), ("SOUTH", 15.0)],
    });
    let given = GIVEN[rng.int(0, GIVEN.len() as u64 - 1) as usize];
    let family_name = SYNTHETIC_FAMILY_NAMES[rng.int(0, SYNTHETIC_FAMILY_NAMES.len() as u64 - 1) as usize];
    let age = match class {
        "OUTPATIENT" => rng.int(18, 85),
        _ => rng.int(1, 95),
    };
    let birth = format!("{}-{:02}-{:02}", 2025 - age, rng.int(1, 12), rng.int(1, 28));
    let scheduled = family == Family::Scheduled;
    let study_uid = format!("2.25.{}{:05}", rng.next() >> 4, n % 100_000);
    let archive_busy = if rng.chance(rates.archive_busy) { rng.int(1, 2) } else { 0 };
    json!({
        DEMO_MARKER: true,
        "workflow": family.as_str(),
        "accession": format!("ACC-{n}"),
        "orderId": if family == Family::Encounter { Value::Null } else { json!(format!("ORD-{}", 500_000 + n)) },
        "encounterId": format!("ENC-{}", 700_000 + n),
        "studyUid": study_uid,
        "patient": {
            "name": format!("{given} {family_name}"),
            "given": given,
            "family": family_name,
            "mrn": format!("SYN-{:06}", rng.int(0, 999_999)),
            "birthDate": birth,
            "sex": if rng.chance(0.5) { "F" } else { "M" },
        },
        "modality": modality,
        "bodyPart": proc.body,
        "procedureCode": proc.code,
        "procedureDescription": proc.description,
        "expectedSeries": rng.int(proc.series.0, proc.series.1),
        "diagnosisCodes": [proc.dx],
        "priority": priority,
        "patientClass": class,
        "site": site,
        // About one study in twelve has a critical finding its report will flag (its own hash,
        // so the rest of the order is as before): the closed-loop "critical-result" SLO clock.
        "criticalFinding": unit(hash(&[&seed.to_string(), family.as_str(), &n.to_string(), "critical"])) < 0.08,
        "orderingPhysician": {"npi": format!("9{:09}", rng.int(0, 999_999_999)), "name": DOCTORS[rng.int(0, DOCTORS.len() as u64 - 1) as usize]},
        "timing": timing(&mut rng, priority, class, modality, t),
        "faults": {
            "cancelled": scheduled && rng.chance(rates.cancelled),
            "discontinued": scheduled && rng.chance(rates.discontinued),
            "archiveBusy": archive_busy,
            "archiveRejects": rng.chance(rates.archive_rejects),
            "claimDenied": rng.chance(rates.claim_denied),
            "contextMismatch": family == Family::Encounter && rng.chance(rates.context_mismatch),
            "archiveOutage": null,
            "clearinghouseDown": null,
        },
    })
}

// ----- the running demo -------------------------------------------------------

/// What one [`Demo::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TickReport {
    /// Simulated minutes since the demo started.
    pub sim_minutes: f64,
    pub started: usize,
    /// Orders whose execution name was already taken (a restarted demo on the same store).
    pub skipped: usize,
    pub approved: usize,
    pub rejected: usize,
    pub heartbeats: usize,
    pub reconciled: usize,
    /// Critical findings the simulated ordering clinicians acknowledged.
    pub acknowledged: usize,
    /// Executions the engine drove because a timer was due.
    pub driven: usize,
}

/// The demo hospital, running against an engine. See the module docs.
#[derive(Debug, Clone)]
pub struct Demo {
    cfg: DemoConfig,
    epoch: Option<DateTime<Utc>>,
    /// The accession number of this run's first order.
    base: u64,
    /// Per family: the next arrival (simulated minutes after the epoch) and the arrival stream.
    next: [f64; 3],
    arrivals: [Rng; 3],
    started: u64,
    last_tick: Option<DateTime<Utc>>,
}

impl Demo {
    pub fn new(seed: u64, speed: f64) -> Demo {
        Demo::with_config(DemoConfig::new(seed, speed))
    }

    pub fn with_config(cfg: DemoConfig) -> Demo {
        let seed = cfg.seed.to_string();
        let mut arrivals = Family::ALL.map(|f| Rng::new(hash(&[&seed, f.as_str(), "arrivals"])));
        let mut next = [f64::INFINITY; 3];
        for (i, rng) in arrivals.iter_mut().enumerate() {
            if cfg.per_hour[i] > 0.0 {
                // The hospital opens with one study of each family under way, so a fresh
                // console has work to show at once; later arrivals follow the rates.
                rng.exp_minutes(cfg.per_hour[i]);
                next[i] = 0.0;
            }
        }
        Demo { cfg, epoch: None, base: 0, next, arrivals, started: 0, last_tick: None }
    }

    pub fn config(&self) -> &DemoConfig {
        &self.cfg
    }

    /// Create (or update) the demo's state machines and register their handlers. Idempotent.
    pub fn install(engine: &mut Engine) -> Result<usize, EngineError> {
        register_handlers(&mut engine.tasks);
        for (name, def) in definitions().into_iter().chain(crate::sim::undo_definitions()) {
            engine.put_state_machine(name, def, None)?;
        }
        Ok(definitions().len())
    }

    /// When the demo started (its first tick), on the engine clock.
    pub fn epoch(&self) -> Option<DateTime<Utc>> {
        self.epoch
    }

    /// How many orders this demo has started.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Engine time for `minutes` simulated minutes after the epoch.
    pub fn engine_time(&self, minutes: f64) -> Option<DateTime<Utc>> {
        let ms = (minutes * 60_000.0 / self.cfg.speed.max(0.001)).round();
        self.epoch.map(|e| e + Duration::milliseconds(ms as i64))
    }

    /// Simulated minutes since the epoch at engine time `now`.
    pub fn sim_minutes(&self, now: DateTime<Utc>) -> f64 {
        self.epoch.map(|e| (now - e).num_milliseconds() as f64 * self.cfg.speed / 60_000.0).unwrap_or(0.0)
    }

    /// A fault window on the engine clock.
    pub fn window_times(&self, w: &Window) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        Some((self.engine_time(w.start_minutes)?, self.engine_time(w.start_minutes + w.minutes)?))
    }

    /// The configured fault windows on the engine clock: (what, from, until).
    pub fn outages(&self) -> Vec<(&'static str, DateTime<Utc>, DateTime<Utc>)> {
        [("archive outage", self.cfg.archive_outage), ("clearinghouse down", self.cfg.clearinghouse_down)]
            .into_iter()
            .filter_map(|(what, w)| w.and_then(|w| self.window_times(&w)).map(|(from, until)| (what, from, until)))
            .collect()
    }

    fn window_json(&self, w: Option<Window>) -> Value {
        match w.and_then(|w| self.window_times(&w)) {
            Some((from, until)) => json!({"from": rfc3339(from), "until": rfc3339(until)}),
            None => Value::Null,
        }
    }

    /// The order that arrives as this demo's `index`-th (0-based) order, of `family`, at `minutes`.
    fn order(&self, index: u64, family: Family, minutes: f64) -> Value {
        let mut o = synthetic_order(self.cfg.seed, self.base + index, family, &Timing::Scaled(self.cfg.speed), &self.cfg.rates);
        o["faults"]["archiveOutage"] = self.window_json(self.cfg.archive_outage);
        o["faults"]["clearinghouseDown"] = self.window_json(self.cfg.clearinghouse_down);
        o["orderedAt"] = json!(self.engine_time(minutes).map(rfc3339));
        o["simulation"] = json!({"seed": self.cfg.seed, "speed": self.cfg.speed});
        o
    }

    /// One step of the hospital at the engine clock's now (with a virtual clock, advance it
    /// first): start the orders that have arrived, run due engine work, and let the simulated
    /// readers work the review queue. Call it every second or so (at most every couple of
    /// simulated minutes, so claimed escalations keep their heartbeats).
    pub fn tick(&mut self, engine: &mut Engine) -> Result<TickReport, EngineError> {
        let now = engine.clock.now();
        if self.epoch.is_none() {
            self.epoch = Some(now);
            let run = hash(&[&self.cfg.seed.to_string(), &now.timestamp_millis().to_string()]);
            self.base = 10_000 + (run % 800) * 100;
        }
        let sim = self.sim_minutes(now);
        let mut report = TickReport { sim_minutes: sim, ..TickReport::default() };
        while report.started + report.skipped < self.cfg.max_starts_per_tick {
            let Some((i, at)) = self.next.iter().copied().enumerate().min_by(|a, b| a.1.total_cmp(&b.1)) else { break };
            if at > sim {
                break;
            }
            let family = Family::ALL[i];
            let order = self.order(self.started, family, at);
            let name = order["accession"].as_str().unwrap_or_default().to_string();
            self.started += 1;
            self.next[i] = at + self.arrivals[i].exp_minutes(self.cfg.per_hour[i]);
            match engine.start_execution(family.machine(), Some(&name), &order.to_string()) {
                Ok(_) => report.started += 1,
                Err(EngineError::ExecutionAlreadyExists(_)) => report.skipped += 1,
                Err(e) => return Err(e),
            }
        }
        self.run_due(engine, &mut report)?;
        self.play_readers(engine, now, &mut report)?;
        self.last_tick = Some(now);
        Ok(report)
    }

    fn run_due(&self, engine: &mut Engine, report: &mut TickReport) -> Result<(), EngineError> {
        for _ in 0..32 {
            let n = engine.run_due(1024)?;
            report.driven += n;
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Simulated readers: each pending gate of a demo execution gets a fixed fate from the
    /// seed, the execution and the time it was issued (answered or left, after how long, how).
    fn play_readers(&self, engine: &mut Engine, now: DateTime<Utc>, report: &mut TickReport) -> Result<(), EngineError> {
        let r = &self.cfg.readers;
        let seed = self.cfg.seed.to_string();
        let since_last = self.last_tick.map(|t| (now - t).num_milliseconds() as f64 * self.cfg.speed / 60_000.0).unwrap_or(0.0);
        for t in engine.store.tokens(Some("PENDING"), None, 10_000)? {
            // Execution ARNs end in `:<state machine>:<execution name>`.
            // Simulated readers leave other machines' tasks and reviews a human has claimed alone.
            if !is_demo_machine(t.execution_arn.rsplit(':').nth(1).unwrap_or_default()) || t.claimed_by.is_some() {
                continue;
            }
            let params: Value = serde_json::from_str(&t.parameters).unwrap_or(Value::Null);
            let payload = params.get("Payload").unwrap_or(&params);
            let stat = payload.get("priority").and_then(Value::as_str) == Some("STAT");
            let age = (now - t.issued).num_milliseconds() as f64 * self.cfg.speed / 60_000.0;
            let issued = t.issued.timestamp_millis().to_string();
            let roll = |what: &str| unit(hash(&[&seed, &t.execution_arn, &t.state_name, &issued, what]));
            let reader = READERS[(hash(&[&seed, &t.execution_arn, &issued]) % READERS.len() as u64) as usize];
            let answer = match t.state_name.as_str() {
                "RadiologistReview" => {
                    if (stat && !r.answer_stat) || roll("answer") >= r.answer_share {
                        continue;
                    }
                    let spread = if stat {
                        5.0
                    } else if payload.get("priority").and_then(Value::as_str) == Some("URGENT") {
                        40.0
                    } else {
                        120.0
                    };
                    if age < r.min_age_minutes + roll("delay") * spread {
                        continue;
                    }
                    let d = roll("decision");
                    if d < r.wrong_patient_share {
                        Err(("Review.WrongPatient", format!("{reader}: the images do not match the patient on the order")))
                    } else if d < r.wrong_patient_share + r.reject_share {
                        Err(("Review.Rejected", format!("{reader}: the draft misses findings; dictating manually")))
                    } else {
                        Ok(json!({"approved": true, "reviewer": reader, "comment": "Agree with the draft"}))
                    }
                }
                "SeniorReview" => {
                    if roll("answer") >= r.senior_share || age < 2.0 + roll("claim") * 4.0 {
                        continue;
                    }
                    if age < 5.0 + roll("delay") * 20.0 {
                        // Claimed: keep the page alive with heartbeats until the answer.
                        let left = t.heartbeat.map(|h| (h - now).num_milliseconds() as f64 * self.cfg.speed / 60_000.0);
                        if left.is_some_and(|l| l < (2.0 * since_last).max(4.0)) && ok_unless_closed(engine.send_task_heartbeat(&t.token))?
                        {
                            report.heartbeats += 1;
                        }
                        continue;
                    }
                    if roll("decision") < 0.05 {
                        Err(("Review.Rejected", format!("{reader} (senior): dictating manually")))
                    } else {
                        Ok(json!({"approved": true, "reviewer": format!("{reader}-senior"), "escalated": true}))
                    }
                }
                "HoldForReconciliation" => {
                    if roll("answer") >= r.reconcile_share || age < 10.0 + roll("delay") * 50.0 {
                        continue;
                    }
                    if roll("decision") < 0.1 {
                        Err(("Reconcile.Rejected", "him.sim: the images belong to a different encounter".to_string()))
                    } else {
                        Ok(json!({"reconciled": true, "by": "him.sim", "comment": "Patient and encounter confirmed"}))
                    }
                }
                "AcknowledgeCriticalResult" => {
                    // Most acknowledge within the hour; a few late (the clock breaches), a few never.
                    let delay = roll("delay");
                    if roll("answer") >= r.critical_ack_share || age < 3.0 + delay * delay * 90.0 {
                        continue;
                    }
                    let by = payload.get("communicatedTo").and_then(Value::as_str).unwrap_or("ordering clinician");
                    Ok(json!({"acknowledgedBy": by, "readBack": true}))
                }
                _ => continue,
            };
            match answer {
                Ok(output) => {
                    if ok_unless_closed(engine.send_task_success(&t.token, &output.to_string()))? {
                        if t.state_name == "HoldForReconciliation" {
                            report.reconciled += 1;
                        } else if t.state_name == "AcknowledgeCriticalResult" {
                            report.acknowledged += 1;
                        } else {
                            report.approved += 1;
                        }
                    }
                }
                Err((error, cause)) => {
                    if ok_unless_closed(engine.send_task_failure(&t.token, Some(error), Some(&cause)))? {
                        report.rejected += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A token that timed out or closed between listing and answering is not an error here.
fn ok_unless_closed<T>(r: Result<T, EngineError>) -> Result<bool, EngineError> {
    match r {
        Ok(_) => Ok(true),
        Err(EngineError::TaskTimedOut { .. } | EngineError::TaskDoesNotExist(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_deterministic_and_synthetic() {
        let rates = DemoConfig::default().rates;
        let a = synthetic_order(7, 10_001, Family::Scheduled, &Timing::Scaled(60.0), &rates);
        assert_eq!(a, synthetic_order(7, 10_001, Family::Scheduled, &Timing::Scaled(60.0), &rates));
        assert_ne!(a, synthetic_order(8, 10_001, Family::Scheduled, &Timing::Scaled(60.0), &rates));
        assert_eq!(a["accession"], "ACC-10001");
        assert!(a["patient"]["mrn"].as_str().is_some_and(|m| m.starts_with("SYN-")));
        assert!(a["timing"]["arrivalSeconds"].as_u64().is_some_and(|s| s >= 1));
    }

    #[test]
    fn the_mix_is_realistic() {
        let rates = DemoConfig::default().rates;
        let orders: Vec<Value> = (0..2000).map(|n| synthetic_order(3, n, Family::Scheduled, &Timing::Quick, &rates)).collect();
        let share = |k: &str, v: &str| orders.iter().filter(|o| o[k] == v).count() as f64 / orders.len() as f64;
        assert!((0.05..0.25).contains(&share("priority", "STAT")), "STAT {}", share("priority", "STAT"));
        assert!(share("priority", "ROUTINE") > 0.45);
        assert!(share("modality", "XR") > share("modality", "CT"));
        assert!(share("modality", "PET") > 0.0 && share("modality", "NM") > 0.0);
        assert!(orders.iter().all(|o| o["patientClass"] != "OUTPATIENT" || o["priority"] != "STAT"));
    }

    #[test]
    fn arrivals_follow_the_rate() {
        let mut rng = Rng::new(5);
        let mean: f64 = (0..5000).map(|_| rng.exp_minutes(12.0)).sum::<f64>() / 5000.0;
        assert!((4.5..5.5).contains(&mean), "{mean}");
    }
}
