//! `sediment completions SHELL` and `sediment man`: generated from the same clap
//! definitions as the parser (src/cli.rs), so they can never disagree with it.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Prints the completion script of `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut Cli::command(), "sediment", &mut out);
    out.flush()
        .context("cannot write the completion script to stdout")
}

/// Prints sediment(1) on stdout, or writes it and one page per subcommand
/// (`sediment-restore.1`, ...) into `args.out_dir`.
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let command = Cli::command();
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {} (--out-dir)", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .and_then(|()| out.flush())
                .context("cannot write the man page to stdout")
        }
    }
}
