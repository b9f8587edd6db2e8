//! `sextant events list`: change events as JSON lines, optionally following new ones.

use std::io::Write;
use std::time::Duration;

use clap::Subcommand;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print change events after a sequence number, one JSON object per line.
    List {
        /// Only events with a seq greater than this.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Only this integration's events.
        #[arg(long)]
        integration: Option<String>,
        /// Keep running and print new events as syncs commit them.
        #[arg(long)]
        follow: bool,
        /// How often --follow looks for new events.
        #[arg(long, default_value = "1s", value_parser = super::duration_arg)]
        poll: Duration,
    },
}

const BATCH: usize = 10_000;

pub fn run(cx: &Context, cmd: EventsCommand) -> anyhow::Result<i32> {
    let EventsCommand::List {
        since,
        integration,
        follow,
        poll,
    } = cmd;
    let store = cx.store()?;
    let mut cursor = since;
    loop {
        let events = store.events(cursor, integration.as_deref(), BATCH)?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for event in &events {
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
            cursor = cursor.max(event.seq);
        }
        out.flush()?;
        if events.len() == BATCH {
            continue;
        }
        if !follow {
            return Ok(0);
        }
        std::thread::sleep(poll);
    }
}
