//! The command line's own surface and the console's look: help, completions, man pages,
//! table headers, messages said once, `--theme` everywhere README promises it, theme
//! contrast and background, and who acts when `$USER` is unset. The real binary on a real store.

mod common;

use common::Lb;

use std::process::Command;

use chrono::Utc;
use lightbox::tui::app::{App, AppEvent, Settings};
use lightbox::tui::keymap::Keymap;
use lightbox::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use serde_json::{Value, json};

fn review_machine(lb: &Lb) -> String {
    let def = lb.file(
        "review.json",
        &json!({"StartAt": "Review", "States": {
            "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 3600, "Next": "Done"},
            "Done": {"Type": "Pass", "End": true}}}),
    );
    lb.json(&["state-machines", "create", "--name", "review", "--definition", &def]);
    let started = lb.json(&["executions", "start", "--state-machine", "review", "--name", "acc-1"]);
    started["executionArn"].as_str().expect("arn").to_string()
}

fn token(lb: &Lb) -> String {
    lb.json(&["tasks", "list"])["tasks"][0]["taskToken"].as_str().expect("token").to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The subcommand names listed under "Commands:" in a `--help` text (without `help`).
fn commands_in_help(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n != "help")
        .collect()
}

/// Every command path of the tree, read off the binary's own help: ["run", "executions list", …].
fn command_tree(lb: &Lb) -> Vec<String> {
    let mut all = vec![];
    for top in commands_in_help(&lb.ok(&["--help"])) {
        all.push(top.clone());
        for sub in commands_in_help(&lb.ok(&[top.as_str(), "--help"])) {
            all.push(format!("{top} {sub}"));
        }
    }
    all
}

#[test]
fn completions_for_every_shell_cover_the_whole_command_tree() {
    let lb = Lb::new();
    let tree = command_tree(&lb);
    assert!(tree.contains(&"executions list".to_string()) && tree.contains(&"completions".to_string()), "{tree:?}");
    let bash = lb.ok(&["completions", "bash"]);
    for path in &tree {
        for word in path.split(' ') {
            assert!(bash.contains(word), "bash completion lacks {word:?} (of {path:?})");
        }
        // bash completes nested commands by their joined path.
        let f = format!("lightbox__subcmd__{}", path.replace([' ', '-'], "__subcmd__"));
        assert!(bash.contains(&f), "bash completion lacks {path:?} ({f})");
    }
    assert!(bash.contains("--theme") && bash.contains("--state-machine"), "options are completed too");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = lb.ok(&["completions", shell]);
        assert!(out.contains("executions") && out.contains("redrive"), "{shell}: {out}");
    }
    let out = lb.run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
    assert!(!lb.data().exists(), "completions touch no data directory");
}

#[test]
fn man_pages_name_every_command_one_page_each() {
    let lb = Lb::new();
    let tree = command_tree(&lb);
    let top = lb.ok(&["man"]);
    assert!(top.starts_with(".ie") || top.contains(".TH lightbox 1"), "{top}");
    for path in tree.iter().filter(|p| !p.contains(' ')) {
        assert!(top.contains(&format!("lightbox\\-{}", path.replace('-', "\\-"))), "the top page lacks {path:?}");
    }
    let dir = lb.path("man");
    let said = lb.ok(&["man", "--out", dir.to_str().expect("p")]);
    assert!(said.contains("man pages written"), "{said}");
    for path in std::iter::once("".to_string()).chain(tree.iter().map(|p| format!("-{}", p.replace(' ', "-")))) {
        let page = dir.join(format!("lightbox{path}.1"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".SH NAME"), "{}", page.display());
    }
    let stop = std::fs::read_to_string(dir.join("lightbox-executions-stop.1")).expect("stop page");
    assert!(stop.contains("Stop a running execution") && stop.contains("\\-\\-cause"), "{stop}");
}

/// Seen: `executions` subcommands and `--state-machine`/`--execution` had blank help.
#[test]
fn help_describes_the_executions_commands_and_their_options() {
    let lb = Lb::new();
    let help = lb.ok(&["executions", "--help"]);
    for line in help.lines().skip_while(|l| !l.starts_with("Commands:")).skip(1).take_while(|l| l.starts_with("  ")) {
        assert!(line.split_whitespace().count() > 1, "a command without help: {line:?}\n{help}");
    }
    let list = lb.ok(&["executions", "list", "--help"]);
    let sm = list.lines().find(|l| l.contains("--state-machine")).unwrap_or_default();
    assert!(sm.split_whitespace().count() > 2, "{list}");
    let tasks = lb.ok(&["tasks", "list", "--help"]);
    let ex = tasks.lines().find(|l| l.contains("--execution")).unwrap_or_default();
    assert!(ex.split_whitespace().count() > 2, "{tasks}");
}

#[test]
fn every_table_has_a_header_row() {
    let lb = Lb::new();
    let arn = review_machine(&lb);
    lb.ok(&["tasks", "claim", &token(&lb)]);
    for (args, head) in [
        (vec!["state-machines", "list"], vec!["NAME", "STATE MACHINE ARN"]),
        (vec!["executions", "list"], vec!["STATUS", "STARTED", "EXECUTION ARN"]),
        (vec!["executions", "history", arn.as_str()], vec!["ID", "TIME", "TYPE", "STATE"]),
        (vec!["tasks", "list"], vec!["TOKEN", "STATUS", "STATE", "ISSUED", "EXECUTION ARN"]),
        (vec!["audit", "list"], vec!["SEQ", "TIME", "ACTOR", "SOURCE", "ACTION", "TARGET", "OUTCOME"]),
    ] {
        let out = lb.ok(&args);
        let first = out.lines().next().unwrap_or_default();
        for h in head {
            assert!(first.contains(h), "{args:?}: header lacks {h}: {out}");
        }
        assert!(out.lines().count() >= 2, "{args:?}: {out}");
    }
    // The audit table's columns line up under its header.
    let audit = lb.ok(&["audit", "list"]);
    let col = |l: &str| l.find("cli").unwrap_or(0);
    let head = audit.lines().next().unwrap_or_default();
    assert!(audit.lines().skip(1).all(|l| col(l) == head.find("SOURCE").unwrap_or(1)), "{audit}");
}

/// Seen: `executions stop` on a stopped execution printed its message twice.
#[test]
fn an_error_is_printed_once() {
    let lb = Lb::new();
    let def = lb.file("w.json", &json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1000, "End": true}}}));
    lb.json(&["state-machines", "create", "--name", "w", "--definition", &def]);
    let arn = lb.json(&["executions", "start", "--state-machine", "w", "--name", "e"])["executionArn"].as_str().expect("arn").to_string();
    lb.ok(&["executions", "stop", &arn]);
    let err = lb.fails(&["executions", "stop", &arn]);
    assert_eq!(err.matches("is not running").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_token_prefix_under_8_characters_says_8_are_needed_and_does_nothing() {
    let lb = Lb::new();
    review_machine(&lb);
    let t = token(&lb);
    let audited = lb.json(&["audit", "list", "--intents"])["entries"].as_array().map(Vec::len);
    for cmd in ["approve", "reject", "claim", "heartbeat", "escalate"] {
        let out = lb.run(&["tasks", cmd, &t[..5]]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        assert!(stderr(&out).contains("at least 8 characters"), "{cmd}: {}", stderr(&out));
    }
    assert_eq!(lb.json(&["audit", "list", "--intents"])["entries"].as_array().map(Vec::len), audited, "nothing was recorded");
    assert_eq!(lb.json(&["tasks", "list"])["tasks"][0]["status"], "PENDING");
}

/// Seen: with `$USER` unset (root under a service manager) the actor was "unknown". The OS
/// account's name acts instead, and the approval's own output names it, as the audit log does.
#[test]
fn with_no_user_in_the_environment_the_account_approves_and_is_named() {
    let lb = Lb::new();
    review_machine(&lb);
    let t = token(&lb);
    let account = String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id").stdout).trim().to_string();
    let out =
        lb.cmd().env_remove("USER").env_remove("LOGNAME").env_remove("USERNAME").args(["tasks", "approve", &t]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("approved by {account}")) && said.contains("SUCCEEDED"), "{said}");
    let entries = lb.json(&["audit", "list"]);
    let approve: Vec<&Value> = entries["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "approve").collect();
    assert_eq!(approve.len(), 1, "{entries}");
    assert_eq!(approve[0]["actor"], account.as_str(), "{entries}");
    assert!(lb.ok(&["audit", "list"]).contains(&format!("  {account}  ")), "the audit table names the account");
}

/// Seen: only `lightbox console --theme` worked; README promises `--theme` on the bare command.
#[test]
fn theme_is_honoured_on_the_bare_command_console_and_demo() {
    let lb = Lb::new();
    for args in [
        vec!["--theme", "no-such"],
        vec!["console", "--theme", "no-such"],
        vec!["--theme", "no-such", "console"],
        vec!["demo", "--seconds", "0", "--theme", "no-such"],
    ] {
        let err = lb.fails(&args);
        assert!(err.contains("theme \"no-such\" not found") && err.contains("high-contrast"), "{args:?}: {err}");
    }
    assert!(!lb.data().exists(), "a wrong theme touches no data directory");
    // LIGHTBOX_THEME and the config key `theme` name it too.
    let out = lb.cmd().env("LIGHTBOX_THEME", "no-such").output().expect("run");
    assert!(stderr(&out).contains("theme \"no-such\" not found"), "{}", stderr(&out));
    let config = lb.file("config.toml", "theme = \"no-such\"\n");
    let err = lb.fails(&["--config", &config, "demo", "--seconds", "0"]);
    assert!(err.contains("theme \"no-such\" not found"), "{err}");
    // A good one runs.
    let out = lb.run(&["--theme", "light", "demo", "--seconds", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn a_user_theme_below_wcag_aa_loads_with_a_warning() {
    let lb = Lb::new();
    let themes = lb.dir.path().join(".config/lightbox/themes");
    std::fs::create_dir_all(&themes).expect("mkdir");
    let dark = lightbox::tui::theme::BUILTIN[0].1;
    std::fs::write(themes.join("dim.toml"), dark.replace("name = \"dark\"", "name = \"dim\"").replace("#858a9a", "#303438"))
        .expect("write");
    let out = lb.cmd().env_remove("XDG_CONFIG_HOME").args(["--theme", "dim", "demo", "--seconds", "0"]).output().expect("run");
    assert!(out.status.success(), "the theme still loads: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("warning") && err.contains("WCAG AA") && err.contains("muted #303438"), "{err}");
    assert!(!err.contains("text #"), "only the failing colours are named: {err}");
}

/// A theme's `background` fills the frame (seen: it was never applied), under the theme's text colour.
#[test]
fn the_theme_background_fills_every_cell() {
    for name in ["light", "dark", "high-contrast"] {
        let theme = Theme::load(name, None).expect("theme");
        let (bg, fg) = (theme.background, theme.text);
        let mut app = App::new(Settings::default(), Keymap::default(), theme, Utc::now());
        // The main screen, then a dialog (help) drawn over it.
        for dialog in [false, true] {
            if dialog {
                app.handle(AppEvent::Key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE)));
                assert!(app.dialog.is_some(), "? opens help");
            }
            let mut term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
            term.draw(|f| app.render(f)).expect("draw");
            let buf = term.backend().buffer().clone();
            let cells: Vec<_> = (0..24).flat_map(|y| (0..80).map(move |x| (x, y))).collect();
            let off: Vec<_> = cells.iter().filter(|&&(x, y)| buf[(x, y)].bg != bg).collect();
            assert!(
                off.len() < cells.len() / 20,
                "{name} (dialog {dialog}): {} of {} cells lack the background {bg:?}",
                off.len(),
                cells.len()
            );
            assert!(
                cells.iter().all(|&(x, y)| buf[(x, y)].bg != Color::Reset),
                "{name} (dialog {dialog}): a cell kept the terminal's background"
            );
            // Blank cells (no widget set a colour) show the theme's text colour, not the terminal's.
            assert!(cells.iter().any(|&(x, y)| buf[(x, y)].fg == fg), "{name}");
            assert!(
                cells.iter().all(|&(x, y)| buf[(x, y)].fg != Color::Reset),
                "{name} (dialog {dialog}): a cell kept the terminal's colour"
            );
        }
    }
}
