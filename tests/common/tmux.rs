//! A console in a real terminal: a detached tmux session driven with send-keys and read with
//! capture-pane, killed when dropped.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    pub session: String,
}

impl Tmux {
    /// Start `cmd` in a new session of `width`×`height`, named after `prefix` and this run.
    pub fn start(prefix: &str, cmd: &str, width: u16, height: u16) -> Tmux {
        let session = super::aws::unique(prefix);
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", &width.to_string(), "-y", &height.to_string(), cmd])
            .env_remove("TMUX")
            .status()
            .expect("tmux must be installed (scripts/test.sh installs it)");
        assert!(ok.success(), "tmux new-session failed");
        Tmux { session }
    }

    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = Command::new("tmux").args(["send-keys", "-t", &self.session, k]).status().expect("send-keys");
            assert!(ok.success());
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// `:` and a command line, typed as a person does, then Enter.
    pub fn command(&self, line: &str) {
        self.keys(&[":"]);
        for c in line.chars() {
            let k = if c == ' ' { "Space".to_string() } else { c.to_string() };
            self.keys(&[&k]);
        }
        self.keys(&["Enter"]);
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.session]).output().expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait up to `secs` until `ok` holds for the screen (or fail showing the screen).
    pub fn wait_until_for(&self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(secs), "screen never showed {what}:\n{s}");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Wait until `ok` holds for the screen (60 s at most).
    pub fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait_until_for(60, what, ok)
    }

    /// Wait until the screen shows `text` (20 s at most).
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_until_for(20, &format!("{text:?}"), |s| s.contains(text))
    }

    pub fn alive(&self) -> bool {
        Command::new("tmux").args(["has-session", "-t", &self.session]).output().map(|o| o.status.success()).unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.session]).stderr(std::process::Stdio::null()).status();
    }
}
