//! The console: ratatui/crossterm front end over a [`ControlPlane`].
//!
//! `app` holds state and the pure key/data handler, `render` draws it,
//! `jobs` loads data and runs actions in the background, `keymap` and
//! `theme` are data.

pub mod app;
pub mod command;
pub mod detail;
pub mod jobs;
pub mod keymap;
pub mod outbox;
pub mod render;
pub mod rows;
pub mod slo;
pub mod table;
pub mod theme;

use std::time::Duration;

use chrono::Utc;
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use self::app::{App, AppEvent, Effect};
use self::jobs::{Job, OnAction, Worker};
use crate::backend::ControlPlane;
use crate::ops::StageMap;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("terminal error: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the console until the operator quits. The terminal is restored on exit and on panic.
pub fn run(app: App, cp: Box<dyn ControlPlane>, stages: StageMap, on_action: OnAction) -> Result<(), ConsoleError> {
    run_with(app, cp, stages, on_action, None)
}

/// As [`run`]; with `contexts` (the live context's name, and what connects the others),
/// `:ctx NAME` switches the live control plane.
pub fn run_with(
    mut app: App,
    cp: Box<dyn ControlPlane>,
    stages: StageMap,
    on_action: OnAction,
    contexts: Option<(String, Box<dyn jobs::Connector>)>,
) -> Result<(), ConsoleError> {
    let worker = Worker::spawn_with(cp, stages, on_action, Duration::from_millis(250), contexts);
    let mut terminal = ratatui::init();
    quiet_background_panics();
    let result = (|| -> Result<(), ConsoleError> {
        for e in app.handle(AppEvent::Tick(Utc::now())) {
            dispatch(&worker, e);
        }
        let mut dirty = true;
        let mut last_second = 0;
        loop {
            // Draw when something changed or the header clock ticked over: an idle console sleeps.
            let second = Utc::now().timestamp();
            if dirty || second != last_second {
                terminal.draw(|f| app.render(f))?;
                dirty = false;
                last_second = second;
            }
            if event::poll(Duration::from_millis(200))? {
                dirty = true;
                match event::read()? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        for e in app.handle(AppEvent::Key(k)) {
                            dispatch(&worker, e);
                        }
                    }
                    _ => {}
                }
            }
            while let Ok((loaded, at, generation)) = worker.rx.try_recv() {
                dirty = true;
                let refresh = matches!(loaded, app::Loaded::Done { .. } | app::Loaded::Switched { .. }) && generation >= app.generation;
                app.handle(AppEvent::LoadedFrom(loaded, at, generation));
                if refresh {
                    for r in app.refresh_requests() {
                        worker.send(Job::Load(r));
                    }
                }
            }
            for e in app.handle(AppEvent::Tick(Utc::now())) {
                dispatch(&worker, e);
            }
            if app.quit {
                return Ok(());
            }
        }
    })();
    ratatui::restore();
    // Back to the default hook: the console no longer owns the terminal.
    drop(std::panic::take_hook());
    result
}

/// A panic the engine catches on the jobs thread (it fails that one execution) must not
/// tear down the screen or print over it: off the UI thread, a panic is only logged,
/// with its location (its message may quote workflow data). On the UI thread, ratatui's
/// hook restores the terminal first, then the message prints as usual.
fn quiet_background_panics() {
    let ui = std::thread::current().id();
    let terminal_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui {
            terminal_hook(info);
        } else {
            let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            tracing::error!(location = %at, "panic off the console's UI thread (the engine fails only the execution involved)");
        }
    }));
}

fn dispatch(worker: &Worker, e: Effect) {
    match e {
        Effect::Load(r) => worker.send(Job::Load(r)),
        Effect::Mutate(m) => worker.send(Job::Mutate(m)),
        Effect::Switch { name, generation } => worker.send(Job::Switch { name, generation }),
        Effect::Quit => {}
    }
}
